"""The fields a run search names, each with the type of its values and where the store keeps
it, derived from the registries that define them: a run's options from the run spec's codec
(and each optimizer's settings), a model's config from the kinds, metrics from the metrics
table, statuses from :class:`~service.store.tables.RunStatus`. ``tags.<key>`` is any tag;
``run.<path>`` is another name for ``params.<path>`` (a study's space paths).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import InstrumentedAttribute

from service.store.annotations import TAG_KEY_RE
from service.store.dialects import ValueType, json_value
from service.store.search.errors import QueryError
from service.store.tables import DatasetRow, ModelRow, RunRow, RunStatus
from service.training import specs
from service.training.kinds import KINDS
from service.training.metrics import METRICS
from service.training.optimizers import OPTIMIZERS

Join = Literal["model", "dataset"]
# Run spec fields the server decides, not the client: not searchable options.
INTERNAL_OPTIONS = frozenset({"record_params"})


@dataclass(frozen=True)
class Field:
    """A searchable field: its name, the type of its values, the column holding it (and the
    keys inside it, for a JSON column), the table to join for it, and its allowed values."""

    name: str
    type: ValueType
    column: InstrumentedAttribute[Any]
    keys: tuple[str, ...] = ()
    join: Join | None = None
    allowed: tuple[str, ...] | None = None

    def expression(self, dialect: str) -> Any:
        """The field's value in SQL on ``dialect`` (NULL where a run lacks it)."""
        if not self.keys:
            return self.column
        return json_value(self.column, dialect, self.keys, self.type)

    @property
    def integral(self) -> bool:
        """Whether the column holds integers (numbers compared with it are bound as such)."""
        return not self.keys and self.type == ValueType.NUMBER and \
            self.column.type.python_type is int


def value_type(sample: Any) -> ValueType:
    """The type of a sample value."""
    if isinstance(sample, bool):
        return ValueType.BOOLEAN
    if isinstance(sample, int | float):
        return ValueType.NUMBER
    if isinstance(sample, list | tuple):
        return ValueType.LIST
    return ValueType.STRING


def leaves(value: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], Any]]:
    """Every leaf of nested mappings, as (keys, value); None leaves are left out."""
    for key, item in value.items():
        if isinstance(item, Mapping):
            yield from leaves(item, (*prefix, key))
        elif item is not None:
            yield (*prefix, key), item


def _samples() -> list[dict[str, Any]]:
    """Run options as the API shows them, with every optional part present: the run spec's
    fields (its codec's columns and options) and each optimizer's settings."""
    full = specs.RunSpec(batch_size=1, shuffle_seed=1,
                         validation=specs.ValidationFraction(0.5),
                         early_stopping=specs.EarlyStoppingSpec(monitor="loss"), loss="mse")
    other = specs.RunSpec(validation=specs.ValidationDataset("ds"))
    samples = []
    for spec in (full, other):
        columns = spec.columns()
        options = columns.pop("options")
        public = {name: value for name, value in columns.items()
                  if name in specs.RunSpec.__dataclass_fields__ and name not in INTERNAL_OPTIONS}
        samples.append({**public, **options})
    for kind, optimizer in OPTIMIZERS.items():
        settings = {name: parameter.default for name, parameter
                    in inspect.signature(optimizer.__init__).parameters.items()
                    if parameter.default is not inspect.Parameter.empty}
        samples.append({"optimizer": {"kind": kind, **settings}})
    return samples


def _param_fields() -> dict[str, Field]:
    options = set(specs.RunSpec().options())
    found: dict[str, Field] = {}
    for sample in _samples():
        for keys, value in leaves(sample):
            name = "params." + ".".join(keys)
            if name in found:
                continue
            if keys[0] in options:
                column, inner = RunRow.options, keys
            else:
                column = getattr(RunRow, keys[0])
                inner = keys[1:]
            found[name] = Field(name, value_type(value), column, inner)
    return found


def _model_fields() -> dict[str, Field]:
    found = {
        "model.id": Field("model.id", ValueType.STRING, RunRow.model_id),
        "model.name": Field("model.name", ValueType.STRING, ModelRow.name, join="model"),
        "model.kind": Field("model.kind", ValueType.STRING, ModelRow.kind, join="model"),
    }
    for kind in KINDS.values():
        for keys, value in leaves(kind().config()):
            name = "model." + ".".join(keys)
            found.setdefault(name, Field(name, value_type(value), ModelRow.config, keys,
                                         join="model"))
    return found


def _metric_fields() -> dict[str, Field]:
    found = {"metrics.loss": Field("metrics.loss", ValueType.NUMBER, RunRow.final_loss)}
    for metric in ("val_loss", *METRICS, *(f"val_{name}" for name in METRICS)):
        name = f"metrics.{metric}"
        found[name] = Field(name, ValueType.NUMBER, RunRow.final_metrics, (metric,))
    return found


@functools.cache
def catalog() -> dict[str, Field]:
    """Every field but tags, by name."""
    return {
        "id": Field("id", ValueType.STRING, RunRow.id),
        "name": Field("name", ValueType.STRING, RunRow.name),
        "description": Field("description", ValueType.STRING, RunRow.description),
        "status": Field("status", ValueType.STRING, RunRow.status,
                        allowed=tuple(str(status) for status in RunStatus)),
        "created_at": Field("created_at", ValueType.TIME, RunRow.created_at),
        "started_at": Field("started_at", ValueType.TIME, RunRow.started_at),
        "finished_at": Field("finished_at", ValueType.TIME, RunRow.finished_at),
        "duration_ms": Field("duration_ms", ValueType.NUMBER, RunRow.duration_ms),
        "epochs_completed": Field("epochs_completed", ValueType.NUMBER,
                                  RunRow.epochs_completed),
        **_model_fields(),
        "dataset.id": Field("dataset.id", ValueType.STRING, RunRow.dataset_id),
        "dataset.name": Field("dataset.name", ValueType.STRING, DatasetRow.name,
                              join="dataset"),
        **_param_fields(),
        **_metric_fields(),
    }


def names() -> list[str]:
    """Every field's name (``tags.<key>`` as such), for the manual and the dashboard."""
    return [*catalog(), "tags.<key>"]


def lookup(name: str, column: int, param: str = "filter") -> Field:
    """The field called ``name`` (``run.<path>`` for ``params.<path>``); a
    :class:`QueryError` at ``column`` naming the closest field when there is none."""
    if name.startswith("run."):
        name = "params." + name.removeprefix("run.")
    if name.startswith("tags."):
        key = name.removeprefix("tags.")
        if not TAG_KEY_RE.match(key):
            raise QueryError(param, column, f"'{name}' is not a tag: tag keys are 1 to 64 "
                                            "of a-z 0-9 _ . -")
        return Field(name, ValueType.STRING, RunRow.tags, (key,))
    found = catalog().get(name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, list(catalog()), n=1, cutoff=0.6)
    hint = f": did you mean '{close[0]}'?" if close else \
        " (fields: id, name, status, created_at, ..., model.*, dataset.*, params.*, " \
        "metrics.*, tags.*)"
    raise QueryError(param, column, f"unknown field '{name}' at column {column}{hint}")
