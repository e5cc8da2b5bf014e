"""tg.function: tracing, replaying bit-identical to eager, the trace cache, variables updated in
place, and the errors for what cannot be compiled."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import pytest

from service import engine as tg
from tests.engine.gradcheck import assert_bitwise_equal


def vector(*values: float, dtype: Any = tg.float32) -> tg.Tensor:
    return tg.constant(np.array(values), dtype=dtype)


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


# Tracing and replaying


def test_the_first_call_traces_and_later_calls_replay_the_plan() -> None:
    runs = []

    @tg.function
    def f(x: tg.Tensor) -> tg.Tensor:
        runs.append(1)  # a Python side effect: it happens while tracing only
        return tg.reduce_sum(tg.square(x) * 3.0)

    assert float(f(vector(1.0, 2.0))) == 15.0
    assert float(f(vector(3.0, 4.0))) == 75.0
    assert float(f(vector(0.5, 0.5))) == 1.5
    assert f.trace_count == 1 and len(runs) == 1


def test_results_come_back_in_the_structure_the_function_gives() -> None:
    W = tg.Variable(2.0)

    @tg.function
    def f(x: tg.Tensor) -> dict[str, Any]:
        return {"pair": (x * W, [x + 1.0]), "constant": tg.constant(7.0), "none": None,
                "variable": W, "label": "ok", "count": 3}

    for _ in range(2):
        out = f(vector(1.0, 2.0))
        assert list(out["pair"][0].numpy()) == [2.0, 4.0]
        assert list(out["pair"][1][0].numpy()) == [2.0, 3.0]
        assert isinstance(out["pair"], tuple) and isinstance(out["pair"][1], list)
        assert float(out["constant"]) == 7.0 and out["none"] is None and out["variable"] is W
        assert out["label"] == "ok" and out["count"] == 3
    assert isinstance(f(vector(1.0)), dict) and f.trace_count == 2


def test_returned_tensors_do_not_change_when_the_function_is_called_again() -> None:
    W = tg.Variable([1.0, 1.0])

    @tg.function
    def f(x: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
        y = x * 2.0
        W.assign_add(y)
        return y, W.value()

    f(vector(1.0, 1.0))
    y, w = f(vector(1.0, 2.0))
    f(vector(10.0, 10.0))
    assert list(y.numpy()) == [2.0, 4.0] and list(w.numpy()) == [5.0, 7.0]
    assert list(W.numpy()) == [25.0, 27.0]


def test_a_numpy_array_argument_is_a_tensor_inside() -> None:
    @tg.function
    def f(x: Any) -> tg.Tensor:
        assert isinstance(x, tg.Tensor)
        return x * 2.0

    array = np.array([1.0, 2.0], np.float32)
    first = f(array)
    array[0] = 5.0  # the call took a copy
    assert list(first.numpy()) == [2.0, 4.0] and list(f(array).numpy()) == [10.0, 4.0]
    assert f.trace_count == 1


def test_a_method_is_compiled_per_instance() -> None:
    class Scale:
        def __init__(self, factor: float) -> None:
            self.factor = tg.Variable(factor)

        @tg.function
        def __call__(self, x: tg.Tensor) -> tg.Tensor:
            return x * self.factor

    double, triple = Scale(2.0), Scale(3.0)
    for _ in range(2):
        assert float(double(vector(1.0))[0]) == 2.0 and float(triple(vector(1.0))[0]) == 3.0
    assert Scale.__call__.trace_count == 2


def test_a_compiled_function_called_while_tracing_is_traced_inline() -> None:
    @tg.function
    def inner(x: tg.Tensor) -> tg.Tensor:
        return tg.exp(x)

    @tg.function
    def outer(x: tg.Tensor) -> tg.Tensor:
        return inner(x) + 1.0

    for value in (0.0, 1.0, 2.0):
        assert same_bits(outer(vector(value)).numpy(), np.exp(np.float32([value])) + 1.0)
    assert outer.trace_count == 1 and inner.trace_count == 0


def test_the_generated_code_is_there_to_read() -> None:
    @tg.function
    def f(x: tg.Tensor, y: tg.Tensor) -> tg.Tensor:
        return tg.reduce_sum(x * y)

    f(vector(1.0, 2.0), vector(3.0, 4.0))
    (plan,) = f.plans()
    assert plan.source.startswith("def run(a0, a1):") and "(a0, a1, b0)" in plan.source


# The trace cache


def test_a_new_shape_dtype_or_layout_traces_again() -> None:
    @tg.function
    def f(x: tg.Tensor) -> tg.Tensor:
        return tg.reduce_sum(x, axis=0)

    matrix = np.arange(6.0).reshape(2, 3)
    calls = [(matrix, 1), (matrix + 1, 1), (matrix[:1], 2), (matrix.astype(np.float32), 3),
             (np.asfortranarray(matrix), 4), (matrix, 4)]
    for value, traces in calls:
        out = f(tg.constant(value))
        assert same_bits(out.numpy(), np.add.reduce(value, axis=0))
        assert f.trace_count == traces


def test_python_arguments_are_part_of_the_signature_by_value() -> None:
    @tg.function
    def f(x: tg.Tensor, scale: float, options: dict[str, Any]) -> tg.Tensor:
        y = x * scale
        return -y if options["negate"] else y

    x = vector(1.0, 2.0)
    assert list(f(x, 2.0, {"negate": False}).numpy()) == [2.0, 4.0]
    assert list(f(x, 2.0, options={"negate": False}).numpy()) == [2.0, 4.0]
    assert f.trace_count == 2  # the same values, passed by keyword: another signature
    assert list(f(x, 2.0, {"negate": False}).numpy()) == [2.0, 4.0]
    assert f.trace_count == 2
    assert list(f(x, 3.0, {"negate": False}).numpy()) == [3.0, 6.0]
    assert list(f(x, 3.0, {"negate": True}).numpy()) == [-3.0, -6.0]
    assert f.trace_count == 4
    assert same_bits(f(x, -0.0, {"negate": False}).numpy(), np.float32([-0.0, -0.0]))
    assert same_bits(f(x, 0.0, {"negate": False}).numpy(), np.float32([0.0, 0.0]))
    assert f.trace_count == 6  # 0.0 and -0.0 are different arguments


def test_the_cache_keeps_the_most_recently_used_plans() -> None:
    @tg.function(cache_size=2)
    def f(x: tg.Tensor) -> tg.Tensor:
        return x + 1.0

    a, b, c = vector(1.0), vector(1.0, 2.0), vector(1.0, 2.0, 3.0)
    f(a)
    f(b)
    f(a)  # a is now more recent than b
    with pytest.warns(RuntimeWarning, match="cache_size"):
        f(c)  # b goes
    assert f.trace_count == 3 and len(f.plans()) == 2
    f(a)
    f(c)
    assert f.trace_count == 3
    f(b)
    assert f.trace_count == 4 and len(f.plans()) == 2


def test_a_step_counter_in_a_variable_does_not_retrace() -> None:
    step = tg.Variable(0, dtype=tg.int64, trainable=False)

    @tg.function
    def decay(x: tg.Tensor) -> tg.Tensor:
        step.assign_add(1)
        return x * 0.5 ** tg.cast(step, tg.float32)

    for t in range(1, 6):
        assert same_bits(decay(vector(1.0)).numpy(), np.float32([0.5 ** t]))
    assert decay.trace_count == 1 and int(step.numpy()) == 5


def test_calls_from_threads_are_serialized() -> None:
    total = tg.Variable(np.zeros(1000))

    @tg.function
    def add(x: tg.Tensor) -> tg.Tensor:
        total.assign_add(x)
        return tg.reduce_sum(total)

    ones = tg.constant(np.ones(1000))
    add(ones)

    def work() -> None:
        for _ in range(200):
            add(ones)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert np.all(total.numpy() == 801.0)


# Variables


def test_variables_are_read_and_assigned_like_eager() -> None:
    def make() -> tuple[list[tg.Variable], Any]:
        v = [tg.Variable([1.0, 2.0]), tg.Variable(0.5), tg.Variable([[1.0], [2.0]]),
             tg.Variable(3, dtype=tg.int32)]

        def f(x: tg.Tensor) -> tg.Tensor:
            old = v[0].value()
            v[0].assign(v[0] * x)  # a new value computed from the old one
            v[1].assign_sub(tg.reduce_sum(old) * 0.25)
            v[2].assign_add(tg.reshape(old, (2, 1)))
            v[2].assign(v[2] * 2.0)  # assigned twice
            v[3].assign(v[3] + 1)
            return old + v[0] + v[1]  # the old value is still needed after the assignment

        return v, f

    eager_vars, eager = make()
    compiled_vars, compiled = make()
    compiled = tg.function(compiled)
    for value in (1.5, -2.0, 0.25, 3.0):
        x = vector(value, value / 3)
        assert_bitwise_equal(compiled(x), eager(x))
        for e, c in zip(eager_vars, compiled_vars, strict=True):
            assert same_bits(c.numpy(), e.numpy())
    assert compiled.trace_count == 1


def test_a_variable_is_updated_in_place() -> None:
    W = tg.Variable(np.zeros(4))

    @tg.function
    def step(g: tg.Tensor) -> None:
        W.assign_sub(0.5 * g)

    g = tg.constant(np.ones(4))
    step(g)
    step(g)
    buffer = weakref.ref(W.value().numpy().base)  # (a reference would make the plan move it)
    for _ in range(3):
        step(g)
    assert W.value().numpy().base is buffer() and np.all(W.numpy() == -2.5)


def test_a_value_held_outside_is_not_overwritten() -> None:
    W = tg.Variable(np.zeros(3))

    @tg.function
    def step() -> None:
        W.assign_add(tg.ones(3, tg.float64))

    step()
    step()
    held_array, held_tensor = W.numpy(), W.value()
    step()
    assert np.all(held_array == 2.0) and np.all(held_tensor.numpy() == 2.0)
    assert np.all(W.numpy() == 3.0)
    del held_array, held_tensor
    step()
    assert np.all(W.numpy() == 4.0)


def test_the_old_value_of_a_variable_can_be_returned() -> None:
    W = tg.Variable([1.0, 2.0])

    @tg.function
    def f() -> tuple[tg.Tensor, tg.Tensor]:
        old = W.value()
        W.assign(W * 2.0)
        return old, old[::-1]

    for start in ([1.0, 2.0], [2.0, 4.0], [4.0, 8.0]):
        old, reversed_old = f()
        assert list(old.numpy()) == start and list(reversed_old.numpy()) == start[::-1]
    assert list(W.numpy()) == [8.0, 16.0]


def test_a_view_of_a_variable_held_outside_is_not_overwritten() -> None:
    W = tg.Variable(np.zeros(4))

    @tg.function
    def step() -> None:
        W.assign_add(tg.ones(4, tg.float64))

    step()
    step()
    head = W.value()[:2]  # a view of the variable's memory
    step()
    assert list(head.numpy()) == [2.0, 2.0] and np.all(W.numpy() == 3.0)


def test_a_tensor_of_a_variable_taken_before_the_first_call_stays_what_it_was() -> None:
    def make() -> tuple[tg.Variable, Any]:
        W = tg.Variable([1.0, 2.0])
        first = W.value()

        def f() -> tg.Tensor:
            W.assign(W * 2.0)
            return first + W

        return W, f

    (W_eager, eager), (W_compiled, compiled) = make(), make()
    compiled = tg.function(compiled)
    for _ in range(3):
        assert_bitwise_equal(compiled(), eager())
    assert same_bits(W_compiled.numpy(), W_eager.numpy())


def test_a_variable_assigned_outside_between_calls_is_seen() -> None:
    W = tg.Variable(np.ones(3))

    @tg.function
    def double() -> tg.Tensor:
        W.assign(W * 2.0)
        return tg.reduce_sum(W)

    double()
    double()
    W.assign([1.0, 2.0, 3.0])
    assert float(double()) == 12.0 and list(W.numpy()) == [2.0, 4.0, 6.0]
    W.assign_sub([1.0, 1.0, 1.0])
    assert float(double()) == 18.0
    assert double.trace_count == 1


def test_every_way_of_reading_a_variable_follows_its_value() -> None:
    readers = {
        "constant": lambda W: tg.constant(W), "Tensor": lambda W: tg.Tensor(W),
        "convert_to_tensor": lambda W: tg.convert_to_tensor(W), "value": lambda W: W.value(),
        "read_value": lambda W: W.read_value(), "stop_gradient": lambda W: tg.stop_gradient(W),
        "operator": lambda W: W * 1.0, "index": lambda W: W[::1], "cast": lambda W: tg.cast(
            W, tg.float64), "assign": lambda W: tg.Variable.assign(U, W).value(),
    }
    U = tg.Variable([0.0, 0.0])
    for name, read in readers.items():
        W = tg.Variable([1.0, 2.0])
        f = tg.function(lambda: read(W))  # noqa: B023
        for value in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]):
            W.assign(value)
            assert list(f().numpy()) == value, name


def test_a_variable_read_only_follows_outside_assignments() -> None:
    W = tg.Variable([1.0, 2.0])

    @tg.function
    def f(x: tg.Tensor) -> tg.Tensor:
        return x * W

    x = vector(1.0, 1.0, dtype=tg.float32)
    assert list(f(x).numpy()) == [1.0, 2.0]
    W.assign([5.0, 6.0])
    assert list(f(x).numpy()) == [5.0, 6.0] and f.trace_count == 1


def test_a_variable_whose_memory_layout_changes_gets_a_new_trace() -> None:
    W = tg.Variable(np.arange(6.0).reshape(2, 3))
    U = tg.Variable(np.ones((2, 3)))

    @tg.function
    def f() -> tg.Tensor:
        U.assign(U * 2.0)
        return tg.reduce_sum(W * U, axis=0)

    f()
    f()
    W.assign(np.asfortranarray(W.numpy()) + 1.0)  # read only: checked on each call
    column_sums = np.array([5.0, 7.0, 9.0])
    assert list(f().numpy()) == list(8.0 * column_sums) and f.trace_count == 2
    U.assign(np.asfortranarray(U.numpy()))  # updated in place: checked before a call
    assert list(f().numpy()) == list(16.0 * column_sums) and f.trace_count == 3
    assert W.numpy().flags.f_contiguous and U.numpy().flags.f_contiguous


# Random draws


def test_a_draw_inside_is_made_on_every_call_as_eager_makes_it() -> None:
    def noisy(x: tg.Tensor) -> tg.Tensor:
        return x + tg.random.normal((3,), stddev=0.1) + tg.random.uniform((3,))

    compiled = tg.function(noisy)
    tg.random.set_seed(7)
    got = [compiled(vector(1.0, 2.0, 3.0)).numpy() for _ in range(3)]
    tg.random.set_seed(7)
    want = [noisy(vector(1.0, 2.0, 3.0)).numpy() for _ in range(3)]
    assert all(same_bits(g, w) for g, w in zip(got, want, strict=True))
    assert not same_bits(got[1], got[2])

    @tg.function
    def two_draws() -> tg.Tensor:
        return tg.random.normal((2,)) - tg.random.normal((2,))  # two draws, not one twice

    assert np.all(two_draws().numpy() != 0) and np.all(two_draws().numpy() != 0)

    @tg.function
    def seeded() -> tg.Tensor:
        return tg.random.normal((2,), seed=3)

    assert same_bits(seeded().numpy(), seeded().numpy())


# What cannot be compiled


def _cannot(f: Any, *args: Any, match: str) -> str:
    with pytest.raises(tg.TraceError, match=match) as caught:
        tg.function(f)(*args)
    message = str(caught.value)
    assert "test_function.py:" in message  # names the line
    return message


def test_python_control_flow_on_a_tensor_value_is_refused() -> None:
    def f(x: tg.Tensor) -> tg.Tensor:
        if tg.reduce_sum(x) > 0:
            return x
        return -x

    message = _cannot(f, vector(1.0), match=r"bool\(\) of a traced tensor")
    assert "if tg.reduce_sum(x) > 0:" in message and "tg.where" in message


@pytest.mark.parametrize(("convert", "what"), [
    (float, r"float\(\)"), (int, r"int\(\)"), (lambda t: range(t), r"operator.index\(\)"),
    (lambda t: t.numpy(), r"numpy\(\)"), (np.asarray, r"numpy\(\)"),
    (lambda t: f"{t:.3f}", r"numpy\(\)"),
])
def test_reading_a_traced_value_into_python_is_refused(convert: Any, what: str) -> None:
    _cannot(lambda x: convert(tg.reduce_sum(x)), vector(1.0), match=what + " of a traced tensor")


def test_reading_a_variable_into_python_is_refused() -> None:
    W = tg.Variable(1.0)
    _cannot(lambda x: x * float(W), vector(1.0), match=r"float\(\) of a traced variable")


@pytest.mark.parametrize(("f", "what"), [
    (lambda x: tg.where(x > 0), r"tg.where\(<traced condition>\) without x and y"),
    (lambda x: x[x > 0], "indexing with a traced boolean mask"),
    (lambda x: tg.reshape(x, tg.cast(tg.reduce_sum(x), tg.int32)),
     "a shape taken from a traced tensor"),
    (lambda x: tg.reduce_sum(x, axis=tg.cast(x[0], tg.int32)),
     "an axis taken from a traced tensor"),
    (lambda x: tg.zeros(tg.cast(x, tg.int32)), "a shape taken from a traced tensor"),
    (lambda x: tg.constant(x, shape=(2,)), r"tg.constant\(<traced tensor>, shape=...\)"),
])
def test_values_that_set_shapes_must_be_known_while_tracing(f: Any, what: str) -> None:
    _cannot(f, vector(1.0, 2.0), match=what)


def test_creating_a_variable_inside_is_refused() -> None:
    message = _cannot(lambda x: tg.Variable(0.0) + x, vector(1.0),
                      match="creating a tg.Variable")
    assert "before the first call" in message


def test_a_call_while_a_tape_records_is_refused() -> None:
    f = tg.function(lambda x: x * 2.0)
    x = vector(1.0)
    with tg.GradientTape() as tape, pytest.raises(tg.TraceError, match="GradientTape records"):
        tape.watch(x)
        f(x)


def test_returning_anything_but_tensors_and_python_values_is_refused() -> None:
    def f(x: tg.Tensor) -> Any:
        with tg.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        return y, tape

    with pytest.raises(tg.TraceError, match="returning a value of type GradientTape"):
        tg.function(f)(vector(1.0))
