"""A study's decisions, as a pure function of its spec and its trials' results in trial-number
order: which point each trial gets (Optuna's samplers through ask and tell, rebuilt from the
results at every ask and seeded from the study's seed and the trial's number), which trials a
rung promotes or prunes (synchronous successive halving within each batch), and when the study
ends. No I/O, no clock: the same inputs give the same decisions, whatever the timing.

A study runs its trials in batches of ``trials_per_batch``: the points of batch b are sampled
knowing every result of the batches before it and nothing else. With ASHA, the rungs are
``min_epochs * reduction_factor**k`` epochs while below ``epochs``, then ``epochs``; a rung
decides once every trial of the batch that reached it has reported (or failed): the best
``max(1, n // reduction_factor)`` of its ``n`` reports go on (ties to the lower number), the
others are pruned there.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SAMPLERS = ("grid", "random", "tpe", "qmc")
MAX_DIMENSIONS = 32
# Trials per batch without a scheduler, when the spec does not say.
DEFAULT_BATCH = 8
ACTIVE = ("queued", "running")
FINAL = ("pruned", "completed", "failed")


@dataclass(frozen=True)
class Dimension:
    """One axis of the space: a dotted path into the model or run body and its distribution
    (``float``/``int``: ``low``, ``high``, ``log``, ``step``; ``choice``: ``values``)."""

    path: str
    type: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    values: tuple[Any, ...] = ()

    def grid(self) -> list[Any]:
        """The dimension's values in a grid, in order: every choice, every int from ``low``
        by ``step``, every float from ``low`` by ``step`` (a float needs a step). It holds
        :meth:`grid_size` values: only for spaces known to be small (tests, docs)."""
        return [self.value_at(i) for i in range(self.grid_size())]

    def value_at(self, index: int) -> Any:
        """Value ``index`` of :meth:`grid`, computed without making the grid (a range of
        2**53 ints has one)."""
        if self.type == "choice":
            return self.values[index]
        if self.type == "int":
            return int(self.low) + index * int(self.step or 1)
        assert self.step is not None
        return self.low + index * self.step

    def last(self) -> Any:
        """The grid's last value (``high`` itself for a range without a step)."""
        if self.type != "choice" and self.step is None:
            return self.high
        return self.value_at(self.grid_size() - 1)

    def grid_size(self) -> int:
        """How many values :meth:`grid` holds (without making them)."""
        if self.type == "choice":
            return len(self.values)
        if self.type == "int":
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        assert self.step is not None
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1


@dataclass(frozen=True)
class Plan:
    """What decisions need of a study's spec (validated already)."""

    space: tuple[Dimension, ...]
    sampler: str
    seed: int
    goal: Literal["minimize", "maximize"]
    rungs: tuple[int, ...]
    reduction_factor: int | None
    trials_per_batch: int
    max_trials: int
    concurrency: int

    @property
    def asha(self) -> bool:
        """Whether successive halving schedules the trials."""
        return self.reduction_factor is not None


def rungs_of(epochs: int, min_epochs: int | None, reduction_factor: int | None) -> tuple[int, ...]:
    """The rungs' epochs: ``min_epochs * reduction_factor**k`` while below ``epochs``, then
    ``epochs`` (just ``epochs`` without a scheduler)."""
    if min_epochs is None or reduction_factor is None:
        return (epochs,)
    found: list[int] = []
    at = min_epochs
    while at < epochs:
        found.append(at)
        at *= reduction_factor
    return (*found, epochs)


def default_batch(rungs: Sequence[int], reduction_factor: int | None) -> int:
    """``reduction_factor**(rungs - 1)`` with ASHA (one bracket, one survivor), else 8."""
    if reduction_factor is None:
        return DEFAULT_BATCH
    return int(reduction_factor ** (len(rungs) - 1))


def grid_size(space: Sequence[Dimension]) -> int:
    """How many points the space's grid has."""
    return math.prod(d.grid_size() for d in space)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``: its sampler's, its initial params' and its shuffling's
    when the spec does not fix them (a function of the study's seed and the number only)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1, np.uint32)[0])


# ---------------------------------------------------------------- the trials as seen


@dataclass(frozen=True)
class Trial:
    """A trial as the store records it: its status and the objective at each rung it reached
    (in order), with the point it got (by path)."""

    number: int
    status: str
    rungs: tuple[float, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


def batch_of(plan: Plan, number: int) -> int:
    """The batch trial ``number`` belongs to."""
    return number // plan.trials_per_batch


def _better(plan: Plan, value: float) -> float:
    """A key that sorts the best objective first."""
    return value if plan.goal == "minimize" else -value


# ------------------------------------------------------------------------- sampling


def _distributions(plan: Plan) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, Any] = {}
    for d in plan.space:
        if d.type == "choice":  # any JSON value: Optuna sees its index
            found[d.path] = CategoricalDistribution(list(range(len(d.values))))
        elif d.type == "int":
            found[d.path] = IntDistribution(int(d.low), int(d.high), log=d.log,
                                            step=int(d.step or 1))
        else:
            found[d.path] = FloatDistribution(d.low, d.high, log=d.log, step=d.step)
    return found


def _external(plan: Plan, internal: Mapping[str, Any]) -> dict[str, Any]:
    """A sampled point with each choice's index made its value, in the space's order."""
    point: dict[str, Any] = {}
    for d in plan.space:
        value = internal[d.path]
        if d.type == "choice":
            point[d.path] = d.values[int(value)]
        elif d.type == "int":
            point[d.path] = int(value)
        else:
            point[d.path] = float(value)
    return point


def _internal(plan: Plan, point: Mapping[str, Any]) -> dict[str, Any]:
    internal: dict[str, Any] = {}
    for d in plan.space:
        value = point[d.path]
        internal[d.path] = d.values.index(value) if d.type == "choice" else value
    return internal


def load_samplers() -> None:
    """Import Optuna, whose samplers :func:`sample` asks (once per process; about 12 MB): a
    server's driver does it in its thread as it starts, so that its first study does not wait
    for it (its first trial started 0.2 s sooner)."""
    import optuna  # noqa: F401


def sample(plan: Plan, number: int, history: Sequence[Trial]) -> dict[str, Any]:
    """The point of trial ``number``, knowing ``history``: the trials of the batches before
    its own (others are ignored, so a batch's points never depend on its own results). A
    grid takes its ``number``-th combination (the product of the dimensions in the space's
    order, each in :meth:`Dimension.grid` order)."""
    if plan.sampler == "grid":
        index, point = number, {}
        for d in reversed(plan.space):
            index, at = divmod(index, d.grid_size())
            point[d.path] = d.value_at(at)
        return {d.path: point[d.path] for d in plan.space}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    distributions = _distributions(plan)
    if plan.sampler == "qmc":
        return _sample_qmc(plan, number, distributions)
    seed = trial_seed(plan.seed, number)
    if plan.sampler == "random":
        # Optuna's random sampler draws from its seed alone, whatever the trials before: none
        # are loaded (the same point; a study of n trials would rebuild n^2 / 2 of them).
        study = optuna.create_study(direction=plan.goal,
                                    sampler=optuna.samplers.RandomSampler(seed=seed))
        return _external(plan, study.ask(distributions).params)
    before = batch_of(plan, number)
    known = sorted((t for t in history if batch_of(plan, t.number) < before),
                   key=lambda t: t.number)
    study = optuna.create_study(direction=plan.goal,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    for t in known:
        study.add_trial(_frozen(plan, t, distributions))
    return _external(plan, study.ask(distributions).params)


def _frozen(plan: Plan, trial: Trial, distributions: dict[str, Any]) -> Any:
    """A stored trial as Optuna's record: complete with its objective, pruned with its rungs
    as intermediate values, failed otherwise."""
    from optuna.trial import TrialState, create_trial

    intermediate = {plan.rungs[k]: v for k, v in enumerate(trial.rungs)}
    common: dict[str, Any] = {"params": _internal(plan, trial.params),
                              "distributions": distributions,
                              "intermediate_values": intermediate}
    if trial.status == "completed" and trial.rungs:
        return create_trial(state=TrialState.COMPLETE, value=trial.rungs[-1], **common)
    if trial.status == "pruned" and trial.rungs:
        return create_trial(state=TrialState.PRUNED, **common)
    return create_trial(state=TrialState.FAIL, **common)


def _sample_qmc(plan: Plan, number: int, distributions: dict[str, Any]) -> dict[str, Any]:
    """Point ``number`` of the study's scrambled Sobol sequence (seeded by the study's seed),
    through Optuna's QMC sampler asked for that point of the sequence."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" (since Optuna 3.0)
        sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=plan.seed,
                                             warn_independent_sampling=False)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    # The sampler counts its points in the study's system attributes: start it at `number`.
    sampler._find_sample_id(study, distributions)
    for key in study._storage.get_study_system_attrs(study._study_id):
        if key.startswith("qmc:"):
            study._storage.set_study_system_attr(study._study_id, key, number - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol's balance warning for n not a power of two
        point = sampler.sample_relative(study, frozen, distributions)
    return _external(plan, point)


# ------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Promotion:
    """Resume trial ``number`` to train up to ``pause_at`` epochs (None: to the end)."""

    number: int
    pause_at: int | None


@dataclass(frozen=True)
class Decisions:
    """What a study's driver does next: trials to create (in order), paused trials to
    promote or prune, and whether the study ends (``completed`` or ``failed``, with why)."""

    create: tuple[int, ...] = ()
    promote: tuple[Promotion, ...] = ()
    prune: tuple[int, ...] = ()
    end: str | None = None
    reason: str | None = None


def pause_at(plan: Plan, rung: int) -> int | None:
    """Where a trial heading for rung ``rung`` pauses: that rung's epochs, none at the last."""
    return None if rung >= len(plan.rungs) - 1 else plan.rungs[rung]


def survivors(plan: Plan, reports: Sequence[tuple[int, float]]) -> list[int]:
    """The trials a rung keeps of its ``(number, objective)`` reports: the best
    ``max(1, n // reduction_factor)``, ties to the lower number, in number order."""
    if not reports:
        return []
    rf = plan.reduction_factor or 1
    keep = max(1, len(reports) // rf)
    ranked = sorted(reports, key=lambda r: (_better(plan, r[1]), r[0]))
    return sorted(number for number, _ in ranked[:keep])


def decide(plan: Plan, trials: Sequence[Trial], capacity: int | None = None) -> Decisions:
    """The next decisions of a study with these trials (any order; numbers unique).
    ``capacity`` bounds how many runs may be queued or resumed now (the study's concurrency
    less its trials training, by default); it changes when things happen, never what."""
    by_number = {t.number: t for t in trials}
    if capacity is None:
        capacity = plan.concurrency - sum(t.status in ACTIVE for t in trials)
    batch = 0
    size = plan.trials_per_batch
    while True:
        lo, hi = batch * size, min((batch + 1) * size, plan.max_trials)
        if lo >= plan.max_trials:
            return Decisions(end="completed")
        members = [by_number.get(n) for n in range(lo, hi)]
        if all(t is not None and t.status in FINAL for t in members):
            if all(t is not None and t.status == "failed" for t in members):
                return Decisions(end="failed",
                                 reason=f"every trial of batch {batch} (trials {lo} to "
                                        f"{hi - 1}) failed")
            batch += 1
            continue
        return _within(plan, by_number, range(lo, hi), max(capacity, 0))


def _within(plan: Plan, by_number: Mapping[int, Trial], numbers: range,
            capacity: int) -> Decisions:
    """The decisions inside the current batch: create its missing trials, then decide each
    rung that every trial which reached it has reported at."""
    missing = [n for n in numbers if n not in by_number]
    if missing:
        return Decisions(create=tuple(missing[:capacity]))
    promote: list[Promotion] = []
    prune: list[int] = []
    heading = list(numbers)  # the trials that go for rung k
    for k in range(len(plan.rungs) - 1):
        trials = [by_number[n] for n in heading]
        if any(t.status != "failed" and len(t.rungs) <= k for t in trials):
            break  # rung k waits for a trial still training towards it
        reports = [(t.number, t.rungs[k]) for t in trials if len(t.rungs) > k]
        kept = survivors(plan, reports)
        for t in trials:
            if t.status == "paused" and len(t.rungs) == k + 1:
                if t.number in kept:
                    promote.append(Promotion(t.number, pause_at(plan, k + 1)))
                else:
                    prune.append(t.number)
        heading = kept
    return Decisions(promote=tuple(promote[:capacity]), prune=tuple(prune))


def best(plan: Plan, trials: Sequence[Trial]) -> Trial | None:
    """The best trial: of those that reached the last rung any trial reached, the one with the
    best objective there (ties to the lower number); None before any report."""
    reported = [t for t in trials if t.rungs]
    if not reported:
        return None
    top = max(len(t.rungs) for t in reported)
    return min((t for t in reported if len(t.rungs) == top),
               key=lambda t: (_better(plan, t.rungs[-1]), t.number))


def epochs_of(plan: Plan, trials: Sequence[Trial]) -> int:
    """The epochs successive halving trains for these finished trials: each trial's last rung
    reached (a failed trial's aside: its run says)."""
    return sum(plan.rungs[len(t.rungs) - 1] for t in trials if t.rungs and t.status != "failed")


def grid_points(plan: Plan) -> list[dict[str, Any]]:
    """Every point of the grid in trial order (tests and docs)."""
    values = [d.grid() for d in plan.space]
    return [dict(zip([d.path for d in plan.space], combo, strict=True))
            for combo in itertools.product(*values)]


def dimension_of(path: str, spec: Mapping[str, Any]) -> Dimension:
    """A space entry as stored (``{"type": "float", "low": ...}``) as a :class:`Dimension`."""
    if spec["type"] == "choice":
        return Dimension(path, "choice", values=tuple(spec["values"]))
    return Dimension(path, spec["type"], low=spec["low"], high=spec["high"],
                     log=bool(spec.get("log", False)), step=spec.get("step"))


def plan_of(spec: Mapping[str, Any]) -> Plan:
    """The plan of a stored study spec (the API's, its defaults resolved)."""
    scheduler = spec["scheduler"]
    asha = scheduler["kind"] == "asha"
    rf = scheduler["reduction_factor"] if asha else None
    return Plan(
        space=tuple(dimension_of(path, d) for path, d in spec["space"].items()),
        sampler=spec["sampler"]["kind"],
        seed=int(spec["sampler"]["seed"]),
        goal=spec["objective"]["goal"],
        rungs=rungs_of(int(spec["run"]["epochs"]), scheduler.get("min_epochs") if asha else None,
                       rf),
        reduction_factor=rf,
        trials_per_batch=int(spec["trials_per_batch"]),
        max_trials=int(spec["max_trials"]),
        concurrency=int(spec["concurrency"]),
    )
