"""Typed specs of a model and of a run: what a request asks for, validated once (a model's
kind and its starting params: :func:`validate_model`, :func:`tutorial_params`,
:func:`named_params`; a run against the model and the dataset's metadata: :func:`validate_run`;
each raising a :class:`SpecError` that names the field at fault), written to and read from the
store by one codec (``columns`` / ``from_columns``: the exact columns and JSON the store
keeps), and handed to the epoch loop as its :class:`FitSpec`.

A run spec built from a request is a draft: its ``loss`` and early stopping's ``monitor`` may
be left out (None); :func:`validate_run` resolves them (the kind's default loss; ``val_loss``
with validation, else ``loss``). Names of losses, metrics and optimizers come checked by the
request's schema.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from service.training.errors import SpecError
from service.training.kinds import KINDS, Kind, make_kind
from service.training.losses import LOSSES
from service.training.metrics import METRICS
from service.training.metrics import names as metric_names
from service.training.records import EarlyStopping, FitSpec

__all__ = [
    "DatasetMeta",
    "EarlyStoppingSpec",
    "ModelSpec",
    "Regularization",
    "RunSpec",
    "SpecError",
    "StoredDataset",
    "StoredRun",
    "ValidationDataset",
    "ValidationFraction",
    "named_params",
    "record_params",
    "tutorial_params",
    "validate_model",
    "validate_run",
]

Location = tuple[str | int, ...]


# ------------------------------------------------------------------ models


class StoredModel(Protocol):
    """What a stored model says of its kind (a row of the models table, or a claimed run's
    model)."""

    @property
    def kind(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...


def stored_kind(model: StoredModel) -> Kind:
    """The model kind of a stored model: the one place a kind is rebuilt from the store."""
    return ModelSpec.from_row(model).build()


@dataclass(frozen=True)
class ModelSpec:
    """A model's kind and its config, as the store keeps them (``models.kind``,
    ``models.config``: the config as :meth:`Kind.config` writes it)."""

    kind: str
    config: Mapping[str, Any]

    @classmethod
    def of(cls, kind: Kind) -> ModelSpec:
        """The spec of a kind."""
        return cls(kind.name, kind.config())

    @classmethod
    def from_row(cls, model: StoredModel) -> ModelSpec:
        """The spec a stored model's ``kind`` and ``config`` columns hold."""
        return cls(model.kind, model.config)

    def build(self) -> Kind:
        """The kind this spec describes."""
        return make_kind(self.kind, self.config)

    def columns(self) -> dict[str, Any]:
        """The spec as the store's models table keeps it (``kind``, ``config``)."""
        return {"kind": self.kind, "config": dict(self.config)}


def validate_model(kind: str, fields: Mapping[str, Any], max_params: int) -> ModelSpec:
    """The model a create request (or an imported file) describes: the kind named ``kind``
    from its config ``fields`` (the request's fields of the kind's schema, ``kind``,
    ``initial`` and ``name`` left out). A :class:`SpecError` names a field that does not fit
    the others, or the field whose size makes the model hold more than ``max_params``."""
    built = KINDS[kind].from_request(fields)
    count = built.param_count()
    if count > max_params:
        raise SpecError(("body", built.size_field),
                        f"the model would have {count} parameters, more than the limit of "
                        f"{max_params} (TAPELINE_MAX_PARAMS)")
    return ModelSpec.of(built)


def tutorial_params(kind: Kind, W: Sequence[float], b: float) -> dict[str, np.ndarray]:
    """Starting params given as the tutorial's fields (one weight per feature and a bias), for
    the kinds whose params are exactly those; a :class:`SpecError` at ``initial.W`` otherwise."""
    shapes = kind.shapes()
    where: Location = ("body", "initial", "W")
    if set(shapes) != {"W", "b"} or shapes["b"] != ():
        raise SpecError(where, f"a {kind.name} model with these settings has params "
                               f"{', '.join(shapes)}: give them as initial.params")
    if len(W) != kind.features:
        raise SpecError(where, f"has {len(W)} weights but the model has {kind.features} "
                               "feature(s)")
    return {"W": np.asarray(W, dtype=np.float64), "b": np.array(b)}


def named_params(kind: Kind, given: Mapping[str, Any],
                 location: Location = ("body", "initial", "params")) -> dict[str, np.ndarray]:
    """Every param of ``kind`` from ``given`` by name (nested lists, or numbers), as float64
    arrays; a :class:`SpecError` (under ``location``) names an unknown, missing, ragged or
    misshapen one."""
    shapes = kind.shapes()
    for name in given:
        if name not in shapes:
            raise SpecError((*location, name),
                            f"the model has no param {name!r} (it has {', '.join(shapes)})")
    params = {}
    for name, shape in shapes.items():
        if name not in given:
            raise SpecError((*location, name), f"missing: shape {list(shape)}")
        try:
            value = np.asarray(given[name], dtype=np.float64)
        except ValueError as error:  # ragged nested lists
            raise SpecError((*location, name),
                            f"expected shape {list(shape)}, got ragged lists") from error
        if value.shape != shape:
            raise SpecError((*location, name),
                            f"expected shape {list(shape)}, got {list(value.shape)}")
        params[name] = value
    return params


# ---------------------------------------------------------------- datasets


class StoredDataset(Protocol):
    """What :meth:`DatasetMeta.of` reads of a stored dataset (the store's row)."""

    @property
    def num_examples(self) -> int: ...
    @property
    def features(self) -> int: ...
    @property
    def classes(self) -> list[str] | None: ...
    @property
    def y_integral(self) -> bool: ...
    @property
    def y_min(self) -> float: ...
    @property
    def y_max(self) -> float: ...


@dataclass(frozen=True)
class DatasetMeta:
    """What a run's checks know of a dataset: its rows and features, its class names (when
    its labels had names), and the range of its y and whether every y is integral."""

    num_examples: int
    features: int
    classes: list[str] | None
    y_integral: bool
    y_min: float
    y_max: float

    @classmethod
    def of(cls, dataset: StoredDataset) -> DatasetMeta:
        """The metadata of a stored dataset."""
        return cls(dataset.num_examples, dataset.features,
                   None if dataset.classes is None else list(dataset.classes),
                   dataset.y_integral, dataset.y_min, dataset.y_max)


# -------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Regularization:
    """``l1 Σ|w| + l2 Σw²`` over the kernels, added to the objective."""

    l1: float = 0.0
    l2: float = 0.0


@dataclass(frozen=True)
class ValidationFraction:
    """Validate on the last rows: the first ceil(n (1 - fraction)) rows train, the rest
    validate."""

    fraction: float


@dataclass(frozen=True)
class ValidationDataset:
    """Validate on another dataset (same features)."""

    dataset_id: str


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """Early stopping as a run asks for it; ``monitor`` None (in a draft) is ``val_loss`` with
    validation, else ``loss``."""

    monitor: str | None = None
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True


def _sgd() -> dict[str, Any]:
    return {"kind": "sgd", "learning_rate": 0.1}


# By default a model's history rows hold this many of its numbers per row on average: every
# row keeps the params of a model of at most this many, one row in ceil(count / this) those of
# a larger one (a 4,096-parameter MLP: every 8th).
PARAMS_PER_ROW = 512


def record_params(asked: int | None, param_count: int, params_max: int) -> int:
    """Which history rows keep the params, as every k-th epoch (0: none): ``asked``, or by
    default every row for a model of at most :data:`PARAMS_PER_ROW` params, every
    ceil(count / PARAMS_PER_ROW)-th for a larger one, and none for a model of more than
    ``params_max`` (``TAPELINE_HISTORY_PARAMS_MAX``), whose params no row keeps: asking for
    them is a :class:`SpecError`."""
    if param_count > params_max:
        if asked:
            raise SpecError(("body", "record_params"),
                            f"the model has {param_count} parameters, more than the "
                            f"{params_max} history rows keep (TAPELINE_HISTORY_PARAMS_MAX): "
                            f"set 0 or leave it out")
        return 0
    if asked is not None:
        return asked
    return -(-param_count // PARAMS_PER_ROW)


@dataclass(frozen=True)
class RunSpec:
    """How a run trains (on what is the run's dataset): every field of a run's request but
    the dataset, and which history rows keep the params (``record_params``: every k-th
    epoch's, 0 none). The defaults are the tutorial's: ten full-batch epochs of SGD at 0.1
    in float32, every row's params. ``optimizer`` is the optimizer's JSON (``kind`` and its
    settings), as the store keeps it and :func:`~service.training.optimizers.make_optimizer`
    reads it."""

    epochs: int = 10
    optimizer: Mapping[str, Any] = field(default_factory=_sgd)
    batch_size: int | None = None
    shuffle_seed: int | None = None
    dtype: Literal["float32", "float64"] = "float32"
    loss: str | None = None
    huber_delta: float = 1.0
    regularization: Regularization = Regularization()
    validation: ValidationFraction | ValidationDataset | None = None
    early_stopping: EarlyStoppingSpec | None = None
    shuffle: bool = True
    record_params: int = 1

    # ------------------------------------------------------------ the codec

    def options(self) -> dict[str, Any]:
        """The JSON of the store's ``runs.options``: loss, huber_delta, regularization,
        validation, early_stopping, shuffle, and record_params when it is neither every row
        (1) nor none (0): the store's boolean column ``record_params`` tells those apart, as it
        did for every run stored before the option, whose JSON is unchanged."""
        validation: dict[str, Any] | None = None
        if isinstance(self.validation, ValidationFraction):
            validation = {"fraction": self.validation.fraction}
        elif isinstance(self.validation, ValidationDataset):
            validation = {"dataset_id": self.validation.dataset_id}
        stopping = self.early_stopping
        return {
            "loss": self.loss,
            "huber_delta": self.huber_delta,
            "regularization": {"l1": self.regularization.l1, "l2": self.regularization.l2},
            "validation": validation,
            "early_stopping": None if stopping is None else {
                "monitor": stopping.monitor,
                "patience": stopping.patience,
                "min_delta": stopping.min_delta,
                "restore_best": stopping.restore_best,
            },
            "shuffle": self.shuffle,
        } | ({} if self.record_params in (0, 1) else {"record_params": self.record_params})

    def columns(self) -> dict[str, Any]:
        """The spec as the store's runs table keeps it: the keyword arguments of
        ``Repository.create_run`` besides the model and the dataset."""
        return {
            "epochs": self.epochs,
            "optimizer": dict(self.optimizer),
            "batch_size": self.batch_size,
            "shuffle_seed": self.shuffle_seed,
            "dtype": self.dtype,
            "options": self.options(),
            "record_params": self.record_params > 0,
            "validation_dataset_id": self.validation.dataset_id
            if isinstance(self.validation, ValidationDataset) else None,
        }

    @classmethod
    def from_columns(cls, run: StoredRun) -> RunSpec:
        """The spec of a stored run (its columns as :meth:`columns` writes them)."""
        options = run.options
        validation = options["validation"]
        stopping = options["early_stopping"]
        return cls(
            epochs=run.epochs,
            optimizer=dict(run.optimizer),
            batch_size=run.batch_size,
            shuffle_seed=run.shuffle_seed,
            dtype=run.dtype,  # type: ignore[arg-type]
            loss=options["loss"],
            huber_delta=options["huber_delta"],
            regularization=Regularization(**options["regularization"]),
            validation=None if validation is None
            else ValidationFraction(**validation) if "fraction" in validation
            else ValidationDataset(**validation),
            early_stopping=None if stopping is None else EarlyStoppingSpec(**stopping),
            shuffle=options["shuffle"],
            record_params=options.get("record_params", 1 if run.record_params else 0),
        )

    # ------------------------------------------------------------- the loop

    def fit(self) -> FitSpec:
        """What the epoch loop takes (a validated spec: ``loss`` and ``monitor`` resolved)."""
        if self.loss is None:
            raise ValueError("a draft run spec: resolve its loss with validate_run")
        rule = None
        if self.early_stopping is not None:
            stopping = self.early_stopping
            if stopping.monitor is None:
                raise ValueError("a draft run spec: resolve its monitor with validate_run")
            rule = EarlyStopping(stopping.monitor, stopping.patience, stopping.min_delta,
                                 stopping.restore_best)
        return FitSpec(
            epochs=self.epochs,
            optimizer=dict(self.optimizer),
            loss=self.loss,
            huber_delta=self.huber_delta,
            l1=self.regularization.l1,
            l2=self.regularization.l2,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            shuffle_seed=self.shuffle_seed,
            early_stopping=rule,
            record_params=self.record_params,
        )


class StoredRun(Protocol):
    """What :meth:`RunSpec.from_columns` reads of a stored run (the store's row)."""

    @property
    def epochs(self) -> int: ...
    @property
    def optimizer(self) -> dict[str, Any]: ...
    @property
    def batch_size(self) -> int | None: ...
    @property
    def shuffle_seed(self) -> int | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    def record_params(self) -> bool: ...


# --------------------------------------------------------------- validation


def check_data(kind: Kind, dataset: DatasetMeta, class_names: Sequence[str] | None,
               location: Location) -> None:
    """A :class:`SpecError` at ``location`` unless ``dataset`` fits a model of ``kind``: its
    features, and for a classifier labels that are class indices in [0, K) (their names, if
    both the dataset and the model's ``class_names`` have them, alike)."""
    if dataset.features != kind.features:
        raise SpecError(location, f"the dataset has {dataset.features} feature(s) but the "
                                  f"model has {kind.features}")
    classes = kind.num_classes
    if classes is None:
        if dataset.classes is not None:
            raise SpecError(location, "the dataset's labels are strings but the model does "
                                      "regression (use a logistic or classification model)")
        return
    if not (dataset.y_integral and dataset.y_min >= 0 and dataset.y_max < classes):
        raise SpecError(location, f"labels must be class indices in [0, {classes}) for the "
                                  f"model's {classes} classes; the dataset's y spans "
                                  f"[{dataset.y_min:g}, {dataset.y_max:g}]"
                                  f"{'' if dataset.y_integral else ' with fractions'}")
    if class_names and dataset.classes and list(class_names) != dataset.classes:
        raise SpecError(location, f"the dataset's classes {dataset.classes} differ from those "
                                  f"the model was trained on {list(class_names)}")


def validate_run(
    model: ModelSpec,
    run: RunSpec,
    dataset: DatasetMeta,
    *,
    class_names: Sequence[str] | None = None,
    datasets: Callable[[str], DatasetMeta] | None = None,
) -> RunSpec:
    """``run`` checked against the model and the dataset it trains on, its loss and early
    stopping's monitor resolved; a :class:`SpecError` names the first field at fault, in this
    order: the dataset, the validation dataset (found with ``datasets``, whose own errors
    pass through), the loss, the validation fraction, early stopping's monitor.
    ``class_names`` are those the model was trained on, if any."""
    kind = model.build()
    check_data(kind, dataset, class_names, ("body", "dataset_id"))
    validation = run.validation
    if isinstance(validation, ValidationDataset):
        if datasets is None:
            raise ValueError("a run validated on another dataset needs `datasets` to find it")
        check_data(kind, datasets(validation.dataset_id), class_names,
                   ("body", "validation", "dataset_id"))
    loss = run.loss or kind.default_loss
    if LOSSES[loss].task != kind.task:
        raise SpecError(("body", "loss"), f"{loss} fits {LOSSES[loss].task}; this model does "
                                          f"{kind.task} ({kind.default_loss} fits it)")
    if isinstance(validation, ValidationFraction):
        cut = math.ceil(dataset.num_examples * (1 - validation.fraction))
        if cut == 0 or cut == dataset.num_examples:
            side = "training" if cut == 0 else "validation"
            raise SpecError(("body", "validation", "fraction"),
                            f"leaves no {side} row of the dataset's {dataset.num_examples}")
    stopping = run.early_stopping
    if stopping is not None:
        monitor = stopping.monitor or ("val_loss" if validation is not None else "loss")
        where: Location = ("body", "early_stopping", "monitor")
        if monitor.startswith("val_") and validation is None:
            raise SpecError(where, f"{monitor} needs validation (set `validation`)")
        name = monitor.removeprefix("val_")
        if name != "loss" and METRICS[name].task != kind.task:
            raise SpecError(where, f"{name} is a {METRICS[name].task} metric; this model does "
                                   f"{kind.task} ({', '.join(metric_names(kind.task))})")
        stopping = replace(stopping, monitor=monitor)
    return replace(run, loss=loss, early_stopping=stopping)
