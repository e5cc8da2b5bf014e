"""A study's create request checked once and stored as its spec, and each trial's model and run
made from that spec and the trial's point, as the API makes a model and a run from their
requests (the same schemas, the same checks).

Before anything is stored, every dimension of the space is tried at its extremes (each of a
choice's values, a range's two ends) in the model and run bodies, and all dimensions at their
lows and at their highs: a path that leads nowhere, or a value that makes an invalid model or
run, is a 422 naming the space's path.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from service.api.http.tenant_store import default_quotas
from service.api.model_requests import REQUEST_FIELDS, initial_params
from service.api.run_requests import run_spec
from service.api.schemas.models import ModelCreate
from service.api.schemas.runs import RunCreate
from service.api.schemas.studies import Asha, FloatDimension, IntDimension, StudyCreate
from service.config import Settings
from service.jobs.studies import Waits
from service.store import keys
from service.store.repo import NotFound, Repository
from service.store.tables import DatasetRow, StudyRow
from service.training import specs
from service.training import studies as plans
from service.training.errors import SpecError
from service.training.metrics import METRICS

MODEL_BODY: TypeAdapter[Any] = TypeAdapter(ModelCreate)
SPACE = ("body", "space")
# The most values a float dimension's step may cut its range into (doubles' exact integers).
MAX_STEPS = 2.0**53


def set_path(bodies: dict[str, Any], path: str, value: Any) -> None:
    """Set ``model.a.b`` / ``run.a.b`` in ``bodies`` to a copy of ``value``, making the
    objects on the way; a :class:`SpecError` when the way goes through a non-object."""
    parts = path.split(".")
    where: Any = bodies
    for depth, part in enumerate(parts[:-1]):
        if where.get(part) is None:
            where[part] = {}
        where = where[part]
        if not isinstance(where, dict):
            raise SpecError((*SPACE, path), f"{'.'.join(parts[:depth + 1])} is not an object "
                                            "in the study's bodies: the path leads nowhere")
    where[parts[-1]] = copy.deepcopy(value)


def with_point(spec: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """The study's model and run bodies with a point's values set at their paths."""
    bodies = {"model": copy.deepcopy(spec["model"]), "run": copy.deepcopy(spec["run"])}
    for path, value in point.items():
        set_path(bodies, path, value)
    return bodies


@dataclass(frozen=True)
class TrialBodies:
    """One trial's model and run, as the API would make them: the model's kind, config and
    params (and the seed that made them), and the run's columns."""

    kind: str
    config: dict[str, Any]
    params: dict[str, np.ndarray]
    random_seed: int | None
    run: dict[str, Any]


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def build(settings: Settings, bodies: Mapping[str, Any], dataset: DatasetRow,
          datasets: Callable[[str], specs.DatasetMeta], seed: int | None,
          make_params: bool = True) -> TrialBodies:
    """A trial's model and run from its bodies, checked as the API checks a model's and a
    run's requests (pydantic's errors and :class:`SpecError` pass through). With ``seed``, a
    model without ``initial`` of a randomly initialised kind takes it, and so does a run
    without ``shuffle_seed``."""
    model = MODEL_BODY.validate_json(json.dumps(bodies["model"]))
    fields = model.model_dump(exclude=REQUEST_FIELDS)
    kind = specs.validate_model(model.kind, fields, settings.max_params).build()
    params: dict[str, np.ndarray] = {}
    random_seed = None
    if make_params:
        if model.initial is None and kind.random_default and seed is not None:
            params, random_seed = kind.initial(seed), seed
        else:
            params, random_seed = initial_params(kind, model.initial)
    run_body = dict(bodies["run"], dataset_id=dataset.id)
    if seed is not None and run_body.get("shuffle_seed") is None:
        run_body["shuffle_seed"] = seed
    run = RunCreate.model_validate_json(json.dumps(run_body))
    draft = run_spec(run, specs.record_params(run.record_params, kind.param_count(),
                                              settings.history_params_max))
    checked = specs.validate_run(specs.ModelSpec.of(kind), draft, specs.DatasetMeta.of(dataset),
                                 datasets=datasets)
    return TrialBodies(kind.name, kind.config(), params, random_seed, checked.columns())


def _probes(space: Mapping[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Points to try: each dimension at each extreme (others at their lows), then every
    dimension at its low and every one at its high; each with the path it blames."""
    lows = {path: _extremes(d)[0] for path, d in space.items()}
    highs = {path: _extremes(d)[-1] for path, d in space.items()}
    found: list[tuple[str | None, dict[str, Any]]] = []
    for path, d in space.items():
        found.extend((path, {**lows, path: value}) for value in _extremes(d))
    found.append((None, highs))
    return found


def _extremes(dimension: Any) -> list[Any]:
    if isinstance(dimension, FloatDimension | IntDimension):
        high = dimension.high
        if dimension.step is not None and not dimension.log:
            high = plans.dimension_of("x", dimension.model_dump()).last()
        return [dimension.low, high]
    return list(dimension.values)


def _check_dimension(path: str, d: Any, sampler: str) -> None:
    where = (*SPACE, path)
    if isinstance(d, FloatDimension | IntDimension):
        if d.low > d.high:
            raise SpecError(where, f"low ({d.low}) is above high ({d.high})")
        if d.log and d.low <= 0:
            raise SpecError(where, f"a log scale needs low > 0 (low is {d.low})")
    if isinstance(d, FloatDimension):
        if d.log and d.step is not None:
            raise SpecError(where, "a float on a log scale takes no step")
        if d.step is not None and not (d.high - d.low) / d.step <= MAX_STEPS:
            raise SpecError(where, f"a step of {d.step} cuts {d.low} to {d.high} into more "
                                   f"than 2^53 values: take a larger step")
        if sampler == "grid" and d.step is None:
            raise SpecError(where, "a grid over a float needs a step (a continuous range has "
                                   "no grid)")
    if isinstance(d, IntDimension) and d.log and d.step != 1:
        raise SpecError(where, "an int on a log scale takes step 1 only")


def _check_objective(body: StudyCreate, task: str, validated: bool) -> None:
    metric = body.objective.metric
    name = metric.removeprefix("val_")
    where = ("body", "objective", "metric")
    known = name == "loss" or (name in METRICS and METRICS[name].task == task)
    if not known:
        names = ["loss", *(n for n, m in METRICS.items() if m.task == task)]
        raise SpecError(where, f"{metric!r} is not a metric this model's runs report "
                               f"({', '.join(names)}, and val_ of each with validation)")
    if metric.startswith("val_") and not validated:
        raise SpecError(where, f"{metric} needs validation rows (set run.validation)")


def prepare(body: StudyCreate, settings: Settings, dataset: DatasetRow,
            datasets: Callable[[str], specs.DatasetMeta],
            max_active_runs: int | None) -> dict[str, Any]:
    """The spec a study is stored with, every default resolved; a :class:`SpecError` (a 422
    naming the field) for anything that could make a trial's model or run invalid, or passes
    a limit. Nothing is stored here."""
    sampler = body.sampler.kind
    for path, d in body.space.items():
        _check_dimension(path, d, sampler)
    # With their defaults, so that a path into a default (run.optimizer.learning_rate of the
    # default SGD) changes that default.
    bodies = {"model": body.model.model_dump(mode="json", exclude_none=True),
              "run": body.run.model_dump(mode="json", exclude_none=True)}
    base = _built(settings, bodies, dataset, datasets, None)
    asha = isinstance(body.scheduler, Asha)
    if asha:
        if base.run["options"].get("early_stopping") is not None:
            raise SpecError(("body", "run", "early_stopping"),
                            "early stopping is the scheduler's job in an ASHA study: leave it "
                            "out")
        for path in body.space:
            if path == "run.epochs" or path.startswith("run.early_stopping"):
                raise SpecError((*SPACE, path), "an ASHA study's rungs need fixed epochs and "
                                                "no early stopping")
    for blamed, point in _probes(body.space):
        probe = with_point(bodies, point)
        try:
            _built(settings, probe, dataset, datasets, 0)
        except SpecError as error:
            if error.location[:2] == SPACE:
                raise
            raise SpecError((*SPACE, blamed or next(iter(body.space))),
                            f"{_shown(point, blamed)} makes an invalid trial: "
                            f"{'.'.join(map(str, error.location[1:]))}: {error.message}"
                            ) from None
    kind = specs.validate_model(bodies["model"]["kind"],
                                body.model.model_dump(exclude=REQUEST_FIELDS),
                                settings.max_params).build()
    _check_objective(body, kind.task, base.run["options"].get("validation") is not None
                     or base.run.get("validation_dataset_id") is not None)
    space = {path: d.model_dump(mode="json") for path, d in body.space.items()}
    plan_space = tuple(plans.dimension_of(path, d) for path, d in space.items())
    epochs = int(base.run["epochs"])
    scheduler: dict[str, Any] = body.scheduler.model_dump(mode="json")
    rungs = plans.rungs_of(epochs, scheduler.get("min_epochs"),
                           scheduler.get("reduction_factor"))
    per_batch = body.trials_per_batch or plans.default_batch(
        rungs, scheduler.get("reduction_factor") if asha else None)
    if sampler == "grid":
        size = plans.grid_size(plan_space)
        if body.max_trials is None and size > settings.max_trials:
            raise SpecError(SPACE, f"the grid has {size} points, more than the limit of "
                                   f"{settings.max_trials} trials (TAPELINE_MAX_TRIALS)")
        max_trials = min(body.max_trials or size, size)
    else:
        max_trials = body.max_trials or min(per_batch, settings.max_trials)
    effective = body.concurrency
    if max_active_runs is not None:
        effective = max(1, min(effective, max_active_runs))
    seed = body.sampler.seed if body.sampler.seed is not None else secrets.randbits(32)
    return {
        "model": bodies["model"], "run": bodies["run"], "space": space,
        "objective": body.objective.model_dump(mode="json"),
        "sampler": {"kind": sampler, "seed": seed},
        "scheduler": scheduler, "rungs": list(rungs), "trials_per_batch": per_batch,
        "max_trials": max_trials, "concurrency": effective,
        "concurrency_requested": body.concurrency,
        # Whether the tenant's quotas apply to its trials (its creator's key brought them).
        "quotas": max_active_runs is not None,
    }


def _shown(point: Mapping[str, Any], blamed: str | None) -> str:
    if blamed is None:
        return "every dimension at its high end"
    return f"{json.dumps(point[blamed])} at {blamed}"


def _built(settings: Settings, bodies: Mapping[str, Any], dataset: DatasetRow,
           datasets: Callable[[str], specs.DatasetMeta], seed: int | None) -> TrialBodies:
    """:func:`build` with pydantic's errors as :class:`SpecError` at the model or run body
    (an unknown field, a value out of range)."""
    try:
        return build(settings, bodies, dataset, datasets, seed,
                     make_params=bodies["model"].get("initial") is not None)
    except ValidationError as error:
        side = "model" if error.title != RunCreate.__name__ else "run"
        raise SpecError(("body", side), _problem(error)) from None


class TrialMaker:
    """The driver's maker of trials: trial ``number``'s model and run, made from the study's
    spec and its point as the API makes them, tagged ``study`` and ``trial`` (tags no client
    may set), seeded from the study's seed and the number where the spec leaves seeds out;
    within the tenant's quotas when its creator's key brought them (the spec's ``quotas``),
    as a client's own runs are."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _quotas(self, session: Session, study: StudyRow) -> keys.Quotas | None:
        if not study.spec.get("quotas"):
            return None
        return keys.quotas(session, study.owner, default_quotas(self.settings))

    def room(self, session: Session, study: StudyRow, queued: int) -> int | None:
        """How many more of the study's runs may be queued now: the server's queue limit,
        and the tenant's active-run quota when it applies (paused trials do not count)."""
        free = self.settings.max_queued_runs - queued
        quotas = self._quotas(session, study)
        if quotas is not None:
            active = Repository(session, study.owner).active_runs()
            free = min(free, quotas.max_active_runs - active)
        return free

    def __call__(self, session: Session, study: StudyRow, number: int, point: dict[str, Any],
                 pause_at: int | None) -> tuple[str, str]:
        repo = Repository(session, study.owner)
        try:
            dataset = repo.get_dataset(study.dataset_id)
        except NotFound as error:
            raise LookupError(str(error)) from error

        def lookup(dataset_id: str) -> specs.DatasetMeta:
            return specs.DatasetMeta.of(repo.get_dataset(dataset_id))

        spec = study.spec
        seed = plans.trial_seed(int(spec["sampler"]["seed"]), number)
        bodies = with_point(spec, point)
        try:
            built = build(self.settings, bodies, dataset, lookup, seed)
        except (ValidationError, SpecError, NotFound) as error:
            raise ValueError(str(error)) from error
        quotas = self._quotas(session, study)
        if quotas is not None:
            repo.lock_tenant()  # held since before the writes, as the API's are
        label = f"{study.name or study.id} #{number}"
        reserved = {"study": study.id, "trial": str(number)}
        model = repo.create_model(
            kind=built.kind, config=built.config, params=built.params, name=label,
            random_seed=built.random_seed,
            tags={**(bodies["model"].get("tags") or {}), **reserved})
        extra: dict[str, Any] = {} if pause_at is None else {"pause_at": pause_at}
        run = repo.create_run(model=model, dataset=dataset, name=label,
                              tags={**(bodies["run"].get("tags") or {}), **reserved},
                              stored_quota=quotas is not None, **built.run, **extra)
        if quotas is not None:
            stored = repo.stored_bytes()
            if stored > quotas.max_stored_bytes:
                raise Waits(f"tenant {study.owner!r} would store {stored} bytes with trial "
                            f"{number}'s model and run, more than its quota of "
                            f"{quotas.max_stored_bytes} bytes")
        return model.id, run.id


def trial_maker(settings: Settings) -> TrialMaker:
    """The driver's maker of trials with these settings."""
    return TrialMaker(settings)
