"""A study's decisions as a pure function of its spec and its trials' results: the grid's
order, sampling that depends on the study's seed, the trial's number and the earlier batches
only, synchronous successive halving (who goes on, ties, when a rung decides), batches,
capacity, the end, the best trial and successive halving's accounting of epochs."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from service.training.studies import (
    Decisions,
    Dimension,
    Plan,
    Promotion,
    Trial,
    best,
    decide,
    default_batch,
    epochs_of,
    grid_points,
    grid_size,
    rungs_of,
    sample,
    survivors,
    trial_seed,
)

SPACE = (Dimension("run.optimizer.learning_rate", "float", 1e-4, 0.1, log=True),
         Dimension("model.hidden", "choice", values=([8], [16], [32, 32])),
         Dimension("run.batch_size", "int", 16, 128, log=True))


def plan(**changes: object) -> Plan:
    base = Plan(space=SPACE, sampler="tpe", seed=7, goal="minimize", rungs=(1, 3, 9),
                reduction_factor=3, trials_per_batch=9, max_trials=18, concurrency=4)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_rungs_grow_by_the_reduction_factor_then_end_at_the_epochs() -> None:
    assert rungs_of(27, 1, 3) == (1, 3, 9, 27)
    assert rungs_of(20, 2, 3) == (2, 6, 18, 20)
    assert rungs_of(5, 5, 2) == (5,)
    assert rungs_of(10, None, None) == (10,)
    assert default_batch((1, 3, 9, 27), 3) == 27
    assert default_batch((10,), None) == 8


def test_a_grid_covers_every_combination_once_in_order() -> None:
    space = (Dimension("a", "choice", values=("x", "y", {"kind": "sgd"})),
             Dimension("b", "int", 1, 7, step=3),
             Dimension("c", "float", 0.0, 1.0, step=0.25))
    grid = plan(space=space, sampler="grid", reduction_factor=None, rungs=(5,),
                max_trials=45, trials_per_batch=8)
    assert grid_size(space) == 3 * 3 * 5
    points = [sample(grid, n, []) for n in range(45)]
    assert points == grid_points(grid)
    combos = {(str(p["a"]), p["b"], p["c"]) for p in points}
    assert len(combos) == 45
    assert points[0] == {"a": "x", "b": 1, "c": 0.0}
    assert points[1] == {"a": "x", "b": 1, "c": 0.25}
    assert points[-1] == {"a": {"kind": "sgd"}, "b": 7, "c": 1.0}
    expected = list(itertools.product(["x", "y", {"kind": "sgd"}], [1, 4, 7],
                                      [0.0, 0.25, 0.5, 0.75, 1.0]))
    assert [tuple(p.values()) for p in points] == expected


@pytest.mark.parametrize("sampler", ["random", "tpe", "qmc"])
def test_a_point_depends_on_the_seed_the_number_and_earlier_batches_only(sampler: str) -> None:
    p = plan(sampler=sampler)
    first = [sample(p, n, []) for n in range(9)]
    assert first == [sample(p, n, []) for n in range(9)]  # rebuilt at every ask: the same
    assert len({str(point) for point in first}) == 9
    for point in first:
        assert 1e-4 <= point["run.optimizer.learning_rate"] <= 0.1
        assert point["model.hidden"] in ([8], [16], [32, 32])
        assert 16 <= point["run.batch_size"] <= 128
        assert isinstance(point["run.batch_size"], int)
    history = [Trial(n, "completed", (float(n),), first[n]) for n in range(9)]
    # A trial of batch 0 ignores results of its own batch.
    assert sample(p, 4, history) == first[4]
    # Batch 1 knows batch 0; the same results give the same point.
    assert sample(p, 9, history) == sample(p, 9, list(reversed(history)))
    assert sample(dataclasses.replace(p, seed=8), 0, []) != first[0]


def test_a_random_point_is_optunas_with_the_earlier_batches_loaded_or_not() -> None:
    """The random sampler is asked without the trials before (Optuna's draws from its seed
    alone): its points are those Optuna gives with every earlier batch loaded, as the TPE
    sampler is asked."""
    import optuna

    from service.training.studies import _distributions, _external, _frozen

    p = plan(sampler="random", trials_per_batch=6, max_trials=30)
    history: list[Trial] = []
    for n in range(30):
        point = sample(p, n, history)
        study = optuna.create_study(direction=p.goal,
                                    sampler=optuna.samplers.RandomSampler(seed=trial_seed(7, n)))
        for t in history:
            if t.number // 6 < n // 6:
                study.add_trial(_frozen(p, t, _distributions(p)))
        assert point == _external(p, study.ask(_distributions(p)).params)
        status = ("completed", "pruned", "failed")[n % 3]
        history.append(Trial(n, status, (float(n % 7),) if status != "failed" else (), point))


def test_tpe_uses_the_results_of_earlier_batches() -> None:
    p = plan(sampler="tpe", trials_per_batch=12, max_trials=24)
    points = [sample(p, n, []) for n in range(12)]
    good = [Trial(n, "completed", (points[n]["run.optimizer.learning_rate"],), points[n])
            for n in range(12)]
    bad = [Trial(n, "completed", (-points[n]["run.optimizer.learning_rate"],), points[n])
           for n in range(12)]
    assert sample(p, 12, good) != sample(p, 12, bad)


def test_trial_seeds_differ_by_number_and_study() -> None:
    seeds = {trial_seed(7, n) for n in range(1000)}
    assert len(seeds) == 1000
    assert trial_seed(7, 3) == trial_seed(7, 3) != trial_seed(8, 3)


def test_survivors_keep_the_best_third_ties_to_the_lower_number() -> None:
    p = plan()
    reports = [(0, 0.5), (1, 0.1), (2, 0.3), (3, 0.1), (4, 0.9), (5, 0.2), (6, 0.7),
               (7, 0.4), (8, 0.6)]
    assert survivors(p, reports) == [1, 3, 5]
    assert survivors(p, [(4, 0.2), (2, 0.2), (9, 0.2)]) == [2]
    assert survivors(p, [(3, 1.0)]) == [3]  # max(1, floor(1 / 3))
    assert survivors(p, [(3, 1.0), (1, 2.0)]) == [3]
    assert survivors(p, []) == []
    assert survivors(plan(goal="maximize"), reports) == [4, 6, 8]


def test_the_first_batch_is_created_as_capacity_allows() -> None:
    p = plan()
    assert decide(p, []) == Decisions(create=(0, 1, 2, 3))
    running = [Trial(n, "running") for n in range(4)]
    assert decide(p, running) == Decisions()
    one_done = [Trial(0, "paused", (0.5,)), *running[1:]]
    assert decide(p, one_done) == Decisions(create=(4,))
    assert decide(p, [], capacity=0) == Decisions()


def _paused_at_first_rung(values: list[float]) -> list[Trial]:
    return [Trial(n, "paused", (v,)) for n, v in enumerate(values)]


def test_a_rung_decides_once_every_trial_of_the_batch_reported() -> None:
    p = plan()
    values = [0.5, 0.1, 0.3, 0.15, 0.9, 0.2, 0.7, 0.4, 0.6]
    trials = _paused_at_first_rung(values)
    waiting = [*trials[:8], Trial(8, "running")]
    assert decide(p, waiting) == Decisions()
    decided = decide(p, trials)
    assert decided.promote == (Promotion(1, 3), Promotion(3, 3), Promotion(5, 3))
    assert decided.prune == (0, 2, 4, 6, 7, 8)
    capped = decide(p, trials, capacity=2)
    assert capped.promote == (Promotion(1, 3), Promotion(3, 3))
    assert capped.prune == decided.prune  # pruning takes no capacity


def test_failed_trials_do_not_count_at_a_rung() -> None:
    p = plan()
    trials = _paused_at_first_rung([0.5, 0.1, 0.3, 0.15, 0.9, 0.2])
    trials += [Trial(6, "failed"), Trial(7, "failed"), Trial(8, "failed")]
    decided = decide(p, trials)
    assert decided.promote == (Promotion(1, 3), Promotion(3, 3))  # floor(6 / 3) of 6
    assert decided.prune == (0, 2, 4, 5)


def test_the_last_rung_runs_to_the_end_and_the_batch_then_the_study_ends() -> None:
    p = plan(max_trials=9)
    first = [Trial(n, "pruned", (0.5 + n,)) for n in range(9) if n not in (1, 3, 5)]
    second = [Trial(1, "paused", (0.1, 0.3)), Trial(3, "paused", (0.15, 0.2)),
              Trial(5, "pruned", (0.2, 0.9))]
    decided = decide(p, first + second)
    # Rung 1 keeps max(1, floor(3 / 3)) = 1: trial 3, which goes on to the end.
    assert decided.promote == (Promotion(3, None),)
    assert decided.prune == (1,)
    finished = [*first, Trial(1, "pruned", (0.1, 0.3)), Trial(5, "pruned", (0.2, 0.9)),
                Trial(3, "completed", (0.15, 0.2, 0.05))]
    assert decide(p, finished) == Decisions(end="completed")
    top = best(p, finished)
    assert top is not None and top.number == 3
    # 6 pruned at 1 epoch, 2 at 3, one trained to 9: successive halving's accounting.
    assert epochs_of(p, finished) == 6 * 1 + 2 * 3 + 9


def test_the_next_batch_starts_when_the_previous_is_decided() -> None:
    p = plan(reduction_factor=None, rungs=(5,), trials_per_batch=3, max_trials=7,
             concurrency=10)
    done = [Trial(n, "completed", (float(n),)) for n in range(3)]
    assert decide(p, [*done[:2], Trial(2, "running")]) == Decisions()
    assert decide(p, done) == Decisions(create=(3, 4, 5))
    later = done + [Trial(n, "completed", (1.0,)) for n in range(3, 6)]
    assert decide(p, later) == Decisions(create=(6,))  # the last batch is short
    assert decide(p, [*later, Trial(6, "completed", (0.0,))]) == Decisions(end="completed")


def test_a_batch_all_failed_fails_the_study() -> None:
    p = plan(reduction_factor=None, rungs=(5,), trials_per_batch=3, max_trials=9)
    failed = [Trial(n, "failed") for n in range(3)]
    decided = decide(p, failed)
    assert decided.end == "failed" and decided.reason is not None
    some = [Trial(0, "failed"), Trial(1, "completed", (1.0,)), Trial(2, "failed")]
    assert decide(p, some) == Decisions(create=(3, 4, 5))


def test_the_best_is_at_the_highest_rung_reached() -> None:
    p = plan()
    assert best(p, []) is None
    trials = [Trial(0, "paused", (0.01,)), Trial(1, "running", (0.3, 0.2)),
              Trial(2, "paused", (0.2, 0.25))]
    top = best(p, trials)
    assert top is not None and top.number == 1
    tied = [Trial(4, "completed", (0.1, 0.1, 0.1)), Trial(2, "completed", (0.2, 0.2, 0.1))]
    top = best(p, tied)
    assert top is not None and top.number == 2
    high = best(plan(goal="maximize"), trials)
    assert high is not None and high.number == 2


def test_decisions_do_not_depend_on_the_order_trials_are_given_in() -> None:
    p = plan()
    trials = _paused_at_first_rung([0.5, 0.1, 0.3, 0.15, 0.9, 0.2, 0.7, 0.4, 0.6])
    assert decide(p, trials) == decide(p, list(reversed(trials)))
