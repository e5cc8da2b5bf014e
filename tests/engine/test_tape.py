"""GradientTape semantics, one test per behaviour TensorFlow's tape has."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import numpy as np
import pytest

from service import engine as tg
from service.engine import tape as tape_module


def test_trainable_variables_read_inside_the_tape_are_watched() -> None:
    W, b, unused = tg.Variable(2.0), tg.Variable(1.0), tg.Variable(7.0)
    x = tg.constant([1.0, 2.0, 3.0])
    with tg.GradientTape() as tape:
        y = tg.reduce_sum(W * x + b)
    assert tape.watched_variables() == (W, b)
    dW, db, du = tape.gradient(y, [W, b, unused])
    assert float(dW) == 6.0 and float(db) == 3.0 and du is None


def test_a_single_source_gives_a_single_gradient() -> None:
    W = tg.Variable(3.0)
    with tg.GradientTape() as tape:
        y = W * W
    grad = tape.gradient(y, W)
    assert isinstance(grad, tg.Tensor) and float(grad) == 6.0


def test_sources_keep_their_structure() -> None:
    W, b = tg.Variable([1.0, 2.0]), tg.Variable(0.5)
    with tg.GradientTape(persistent=True) as tape:
        y = tg.reduce_sum(W * 3.0) + b * 2.0
    by_name = tape.gradient(y, {"W": W, "b": b})
    assert set(by_name) == {"W", "b"}
    np.testing.assert_array_equal(by_name["W"].numpy(), [3.0, 3.0])
    assert float(by_name["b"]) == 2.0
    as_tuple = tape.gradient(y, (b, W))
    assert isinstance(as_tuple, tuple) and float(as_tuple[0]) == 2.0
    nested = tape.gradient(y, {"params": [W, {"bias": b}]})
    assert float(nested["params"][1]["bias"]) == 2.0


def test_watch_makes_tensors_sources() -> None:
    x = tg.constant(3.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x * x
    assert float(tape.gradient(y, x)) == 27.0


def test_unwatched_tensors_get_none_or_zeros() -> None:
    x, other = tg.constant([1.0, 2.0]), tg.constant([[1.0, 2.0]], dtype="float64")
    with tg.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tg.reduce_sum(x * 2.0)
    assert tape.gradient(y, other) is None
    zeros = tape.gradient(y, [x, other], unconnected_gradients="zero")[1]
    assert zeros.shape == (1, 2) and zeros.dtype == tg.float64
    np.testing.assert_array_equal(zeros.numpy(), 0.0)
    zero = tape.gradient(y, tg.Variable(1.0), unconnected_gradients=tg.UnconnectedGradients.ZERO)
    assert float(zero) == 0.0
    with pytest.raises(ValueError, match="sometimes"):
        tape.gradient(y, x, unconnected_gradients="sometimes")


def test_a_watched_tensor_the_target_does_not_depend_on_is_unconnected() -> None:
    x, z = tg.constant(1.0), tg.constant(2.0)
    with tg.GradientTape() as tape:
        tape.watch([x, z])
        y = x * 4.0
    grads = tape.gradient(y, [x, z], unconnected_gradients="zero")
    assert float(grads[0]) == 4.0 and float(grads[1]) == 0.0


def test_non_trainable_variables_get_none_unless_watched() -> None:
    frozen = tg.Variable(2.0, trainable=False)
    with tg.GradientTape() as tape:
        y = frozen * frozen
    assert tape.watched_variables() == ()
    assert tape.gradient(y, frozen) is None

    with tg.GradientTape() as tape:
        tape.watch(frozen)
        y = frozen * frozen
    assert float(tape.gradient(y, frozen)) == 4.0


def test_watch_accessed_variables_false_watches_only_what_is_asked() -> None:
    W, b = tg.Variable(2.0), tg.Variable(1.0)
    with tg.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(W)
        y = W * b
    assert tape.watched_variables() == (W,)
    dW, db = tape.gradient(y, [W, b])
    assert float(dW) == 1.0 and db is None


def test_integer_tensors_and_variables_get_none() -> None:
    n, counter = tg.constant([1, 2, 3]), tg.Variable(4)
    assert n.dtype == tg.int32 and counter.dtype == tg.int32
    with tg.GradientTape() as tape:
        tape.watch(n)
        y = tg.reduce_sum(n * counter)
    assert tape.gradient(y, [n, counter], unconnected_gradients="zero") == [None, None]


def test_persistent_tapes_answer_repeatedly_and_others_only_once() -> None:
    x = tg.constant(2.0)
    with tg.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y, z = x * x, x * x * x
    assert float(tape.gradient(y, x)) == 4.0
    assert float(tape.gradient(z, x)) == 12.0
    assert float(tape.gradient(y, x)) == 4.0

    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, x)


def test_stop_recording_leaves_ops_off_the_tape() -> None:
    x = tg.constant(3.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        with tape.stop_recording():
            z = x * x
        total = y + z
    assert float(tape.gradient(total, x)) == 6.0  # z counts as a constant

    with pytest.raises(RuntimeError, match="recording"), tape.stop_recording():
        pass


def test_reset_forgets_and_keeps_recording() -> None:
    x = tg.constant(3.0)
    with tg.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        tape.reset()
        z = x * x * x  # x is no longer watched
        tape.watch(x)
        w = x * 2.0
    assert tape.gradient(y, x) is None
    assert tape.gradient(z, x) is None
    assert float(tape.gradient(w, x)) == 2.0


def test_reset_makes_a_used_tape_usable_again() -> None:
    x = tg.constant(3.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    tape.gradient(y, x)
    tape.reset()
    with tape:
        tape.watch(x)
        y = x * 5.0
    assert float(tape.gradient(y, x)) == 5.0


def test_nested_tapes_give_the_second_derivative_of_x_cubed() -> None:
    x = tg.constant([-2.0, 0.5, 3.0], dtype="float64")
    with tg.GradientTape() as outer:
        outer.watch(x)
        with tg.GradientTape() as inner:
            inner.watch(x)
            y = x**3
        dy_dx = inner.gradient(y, x)
    d2y_dx2 = outer.gradient(dy_dx, x)
    np.testing.assert_allclose(dy_dx.numpy(), 3 * x.numpy() ** 2)
    np.testing.assert_allclose(d2y_dx2.numpy(), 6 * x.numpy())


def test_a_persistent_tape_differentiates_its_own_gradient() -> None:
    x = tg.Variable(2.0)
    with tg.GradientTape(persistent=True) as tape:
        y = x * x * x
        dy_dx = tape.gradient(y, x)
    assert float(dy_dx) == 12.0
    assert float(tape.gradient(dy_dx, x)) == 12.0


def test_third_derivative_through_three_tapes() -> None:
    x = tg.constant(1.5, dtype="float64")
    with tg.GradientTape() as t3:
        t3.watch(x)
        with tg.GradientTape() as t2:
            t2.watch(x)
            with tg.GradientTape() as t1:
                t1.watch(x)
                y = tg.exp(2.0 * x)
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    np.testing.assert_allclose(float(d3), 8 * np.exp(3.0))


def test_a_non_scalar_target_means_its_sum() -> None:
    x = tg.constant([1.0, 2.0, 3.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [2.0, 4.0, 6.0])


def test_output_gradients_weight_the_target() -> None:
    x = tg.constant([1.0, 2.0, 3.0])
    with tg.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
    grad = tape.gradient(y, x, output_gradients=tg.constant([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(grad.numpy(), [2.0, 0.0, -6.0])
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        tape.gradient(y, x, output_gradients=tg.constant([1.0, 2.0]))


def test_a_list_of_targets_adds_up() -> None:
    x = tg.constant(2.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        targets = [x * x, x * 3.0]
    assert float(tape.gradient(targets, x)) == 7.0


def test_gradients_of_sources_used_many_times_accumulate() -> None:
    x = tg.Variable([1.0, 2.0])
    with tg.GradientTape() as tape:
        y = tg.reduce_sum(x * x + x + tg.exp(x) * 0.0 + x[0])
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [5.0, 5.0])  # x[0] is added twice


def test_gradients_of_intermediate_tensors() -> None:
    x = tg.constant(3.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        h = x * x
        y = h * 2.0 + x
    dh, dx = tape.gradient(y, [h, x])
    assert float(dh) == 2.0 and float(dx) == 13.0


def test_gradient_keeps_float32() -> None:
    W = tg.Variable([[1.0], [2.0]])
    x = tg.constant([[1.0, 2.0], [3.0, 4.0]])
    with tg.GradientTape() as tape:
        loss = tg.reduce_mean(tg.square(tg.matmul(x, W) - 1.0))
    grad = tape.gradient(loss, W)
    assert loss.dtype == tg.float32 and grad.dtype == tg.float32 and grad.shape == (2, 1)


def test_assign_does_not_change_what_the_tape_saved() -> None:
    W = tg.Variable(3.0)
    x = tg.constant(2.0)
    with tg.GradientTape() as tape:
        y = W * W * x
        W.assign(100.0)
        W.assign_add(1.0)
        W.assign_sub(2.0)
    assert float(tape.gradient(y, W)) == 12.0  # 2 * W * x at W = 3
    assert float(W) == 99.0


def test_updates_are_not_recorded() -> None:
    W = tg.Variable(3.0)
    with tg.GradientTape() as tape:
        W.assign_sub(W * 0.5)
        y = W * 1.0
    assert float(tape.gradient(y, W)) == 1.0


def test_reads_before_and_after_assign_both_count() -> None:
    W = tg.Variable(1.0)
    with tg.GradientTape() as tape:
        first = W * 2.0
        W.assign(5.0)
        y = first + W * W
    assert float(tape.gradient(y, W)) == 12.0  # 2 from the first read, 2 * 5 from the second


def test_an_op_without_a_gradient_rule_raises_lookup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(tape_module.VJPS, "exp")
    x = tg.constant(1.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.exp(x) * 2.0
    with pytest.raises(LookupError, match="'exp'"):
        tape.gradient(y, x)


def test_a_chain_of_100000_ops_differentiates() -> None:
    x = tg.Variable(1.0, dtype="float64")
    start = time.perf_counter()
    with tg.GradientTape() as tape:
        y = x
        for _ in range(100_000):
            y = y * 1.00001
    grad = tape.gradient(y, x)
    np.testing.assert_allclose(float(grad), 1.00001**100_000, rtol=1e-9)
    assert time.perf_counter() - start < 20


def test_a_non_persistent_tape_frees_what_it_held() -> None:
    x = tg.constant(np.ones(1000))
    with tg.GradientTape() as tape:
        tape.watch(x)
        hidden = tg.exp(x)  # the exp rule keeps its output for the backward pass
        y = tg.reduce_sum(hidden)
    array = weakref.ref(hidden.numpy())
    del hidden
    gc.collect()
    assert array() is not None  # held by the tape
    tape.gradient(y, x)
    gc.collect()
    assert array() is None


def test_large_values_no_rule_reads_are_not_held() -> None:
    x = tg.constant(np.ones(100_000))
    with tg.GradientTape() as tape:
        tape.watch(x)
        hidden = tg.concat([x, x], axis=0)  # concat's rule needs shapes only
        y = tg.reduce_sum(hidden)
    array = weakref.ref(hidden.numpy())
    del hidden
    gc.collect()
    assert array() is None
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), 2.0)


def test_gradient_inside_a_non_persistent_tape_stops_its_recording() -> None:
    x = tg.constant(2.0)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        grad = tape.gradient(y, x)
        z = grad * x
    assert float(z) == 8.0
    with pytest.raises(RuntimeError):
        tape.gradient(z, x)


def test_ops_no_tape_follows_leave_no_trace() -> None:
    x = tg.Variable(2.0, trainable=False)
    outside = x * x + 1.0
    with tg.GradientTape() as tape:
        unwatched = x * x + 1.0
    assert outside._key is None and unwatched._key is None  # no bookkeeping was done
    assert tape.gradient(unwatched, x) is None


def test_watch_rejects_what_is_not_a_tensor() -> None:
    with tg.GradientTape() as tape, pytest.raises(TypeError, match="str"):
        tape.watch("x")


def test_tapes_record_only_their_own_thread() -> None:
    x = tg.Variable(3.0)
    other: dict[str, object] = {}

    def elsewhere() -> None:
        other["y"] = x * x  # while the main thread's tape records
        with tg.GradientTape() as tape:
            z = x * x * x
        other["dz"] = tape.gradient(z, x)

    with tg.GradientTape() as tape:
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        y = x * 2.0
    assert float(tape.gradient(y, x)) == 2.0  # the worker's x * x is not on this tape
    assert float(other["dz"]) == 27.0  # type: ignore[arg-type]
