"""Schemas of studies: the spec of a hyperparameter search (a model and a run body, a space of
dotted paths into them, an objective, a sampler and a scheduler), the study as a resource, its
trials and pages of both."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, create_model

from service.api.schemas.annotations import ETAG_DESCRIPTION, Description, Tags
from service.api.schemas.common import NO_NUL, RFC3339, Name, Public, Request, Seed
from service.api.schemas.limits import Limit
from service.api.schemas.models import ModelCreate
from service.api.schemas.runs import RunCreate
from service.store.tables import StudyStatus, TrialStatus
from service.training.fields import integral
from service.training.studies import MAX_DIMENSIONS

Bound = Annotated[float, Field(ge=-1e15, le=1e15)]
IntBound = Annotated[int, Field(ge=-(2**53) + 1, le=2**53 - 1), BeforeValidator(integral)]
MAX_CHOICES = 1000

# A run body without its dataset (the study gives it once).
StudyRun: Any = create_model(  # type: ignore[call-overload]
    "StudyRunBody",
    __base__=Request,
    __doc__="A run body as `POST /v1/models/{id}/runs` takes it, without `dataset_id`.",
    **{name: (info.annotation, info) for name, info in RunCreate.model_fields.items()
       if name != "dataset_id"},
)


class FloatDimension(Request):
    """A float from `low` to `high`, on a log scale when `log`, in multiples of `step` from
    `low` when given (a grid needs `step`)."""

    type: Literal["float"]
    low: Bound
    high: Bound
    log: bool = False
    step: Annotated[float, Field(gt=0, le=1e15)] | None = None


class IntDimension(Request):
    """An integer from `low` to `high` (both included), on a log scale when `log`, every
    `step` from `low`."""

    type: Literal["int"]
    low: IntBound
    high: IntBound
    log: bool = False
    step: Annotated[int, Field(ge=1, le=2**53 - 1), BeforeValidator(integral)] = 1


class ChoiceDimension(Request):
    """One of `values`: any JSON values (objects included, e.g. whole optimizer specs)."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1, max_length=MAX_CHOICES)


Dimension = Annotated[FloatDimension | IntDimension | ChoiceDimension,
                      Field(discriminator="type")]
SpacePath = Annotated[str, Field(pattern=r"^(model|run)(\.[A-Za-z0-9_]{1,64}){1,8}$")]


def _space_schema(schema: dict[str, Any]) -> None:
    """The space as a map whose every value is a dimension (``additionalProperties``) and whose
    keys are paths (``propertyNames``), rather than pydantic's ``patternProperties``: code
    generators (openapi-python-client) ignore ``patternProperties`` and would drop every
    dimension."""
    ((pattern, dimension),) = schema.pop("patternProperties").items()
    schema["propertyNames"] = {"pattern": pattern}
    schema["additionalProperties"] = dimension


class Objective(Request):
    """What the study optimises: a metric the trials' runs report (`loss`, `val_loss`,
    `accuracy`, `val_accuracy`, ...) after the epochs of a rung."""

    metric: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    goal: Literal["minimize", "maximize"]


class Sampler(Request):
    """How points are sampled: `grid` (every combination once, in order), `random`, `tpe` or
    `qmc` (scrambled Sobol), seeded by `seed` (random when absent, reported back)."""

    kind: Literal["grid", "random", "tpe", "qmc"] = "tpe"
    seed: Seed | None = None


class NoScheduler(Request):
    """Every trial trains all `run.epochs`."""

    kind: Literal["none"]


class Asha(Request):
    """Synchronous successive halving in each batch: rungs at `min_epochs *
    reduction_factor^k` epochs while below `run.epochs`, then `run.epochs`; at each rung the
    best `max(1, floor(n / reduction_factor))` of its `n` trials go on, the others are
    pruned (their runs pause at the rung and end there)."""

    kind: Literal["asha"]
    min_epochs: Annotated[int, Field(ge=1), Limit("max_epochs"), BeforeValidator(integral)] = 1
    reduction_factor: Annotated[int, Field(ge=2, le=1000), BeforeValidator(integral)] = 3


Scheduler = Annotated[NoScheduler | Asha, Field(discriminator="kind")]


class StudyCreate(Request):
    """A hyperparameter search: trials of `model` trained as `run` says on `dataset_id`, each
    with a point of `space` (dotted paths into `model` and `run`) chosen by the `sampler`."""

    name: Name = None
    description: Description = None
    tags: Tags = None
    dataset_id: str = Field(max_length=40, pattern=NO_NUL)
    model: ModelCreate
    run: StudyRun = Field(default_factory=lambda: StudyRun())
    space: dict[SpacePath, Dimension] = Field(
        min_length=1, max_length=MAX_DIMENSIONS, json_schema_extra=_space_schema)
    objective: Objective
    sampler: Sampler = Field(default_factory=Sampler)
    scheduler: Scheduler = Field(default_factory=lambda: NoScheduler(kind="none"))
    trials_per_batch: Annotated[int, Field(ge=1), Limit("max_trials"),
                                BeforeValidator(integral)] | None = Field(
        None, description="Trials sampled together (ASHA: reduction_factor^(rungs - 1); "
                          "else 8).")
    max_trials: Annotated[int, Field(ge=1), Limit("max_trials"),
                          BeforeValidator(integral)] | None = Field(
        None, description="Trials in all (a grid: its size; else one batch).")
    concurrency: Annotated[int, Field(ge=1, le=1024), BeforeValidator(integral)] = Field(
        4, description="Trials training at once, at most (capped by the tenant's active-run "
                       "quota).")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "moons-mlp",
        "dataset_id": "ds_0123456789abcdef0123",
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [16]},
        "run": {"epochs": 9, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.2}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.0001,
                                                  "high": 0.1, "log": True},
                  "model.hidden": {"type": "choice", "values": [[8], [16], [32, 32]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "tpe", "seed": 7},
        "scheduler": {"kind": "asha", "min_epochs": 1, "reduction_factor": 3},
        "max_trials": 18, "concurrency": 4}]})


class Best(Public):
    """The best trial so far: of the trials at the highest rung reached, the best objective."""

    number: int
    run_id: str | None
    model_id: str | None
    params: dict[str, Any]
    objective: float


class Concurrency(Public):
    """Trials training at once: as asked and as granted (the tenant's active-run quota caps
    it)."""

    requested: int
    effective: int
    capped_by_quota: bool


class Study(Public):
    """A study: its spec, status, trials counted by status, best trial and epochs trained."""

    id: str
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dataset_id: str
    status: StudyStatus = Field(description="`running`, `completed`, `cancelled` or `failed` "
                                            "(values may be added).")
    error: str | None = None
    model: dict[str, Any]
    run: dict[str, Any]
    space: dict[str, Any]
    objective: Objective
    sampler: Sampler
    scheduler: dict[str, Any]
    rungs: list[int] = Field(description="The epochs at which trials report (the last: "
                                         "`run.epochs`).")
    trials_per_batch: int
    max_trials: int
    concurrency: Concurrency
    counts: dict[str, int] = Field(description="Trials by status.")
    best: Best | None = None
    epochs_trained: int
    created_at: RFC3339
    updated_at: RFC3339
    finished_at: RFC3339 | None = None
    etag: str = Field("", description=ETAG_DESCRIPTION)


class StudyPage(Public):
    """A page of studies; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Study]
    next_cursor: str | None


class StudyTrial(Public):
    """Trial `number` of a study: its point (by path), status, epochs trained, the objective
    at each rung reached and its model and run."""

    number: int
    params: dict[str, Any]
    status: TrialStatus = Field(description="`queued`, `running`, `paused`, `pruned`, "
                                            "`completed` or `failed` (values may be added).")
    epochs: int
    rungs: list[float]
    objective: float | None
    run_id: str | None
    model_id: str | None


class TrialPage(Public):
    """A page of trials in number order; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[StudyTrial]
    next_cursor: str | None


class StudyEvent(Public):
    """One event of a study's stream (`seq` counts them from 1): `trial.created`,
    `trial.reported`, `trial.paused`, `trial.promoted`, `trial.pruned`, `trial.completed`,
    `trial.failed`, `best.changed`, then `end` with the study in its final state."""

    type: str
    seq: int
    data: dict[str, Any]
