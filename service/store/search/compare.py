"""Runs side by side, across models: each run's settings, results and tags flattened to the
search language's field names (``model.hidden``, ``params.optimizer.learning_rate``,
``metrics.val_loss``, ``tags.team``), which of them differ, and one metric per epoch of each
run reduced to a chart's worth of points.

A field that some runs lack differs; numbers compare exactly.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.dialects import ValueType, json_value
from service.store.repo import NotFound
from service.store.sampling import minmax_rows
from service.store.search.errors import QueryError
from service.store.search.fields import catalog, leaves
from service.store.tables import ACTIVE_STATUSES, EpochRow, ModelRow, RunRow
from service.training import specs

MIN_RUNS, MAX_RUNS = 2, 50
# Where each group of fields comes in a comparison.
GROUPS = ("model.", "params.", "metrics.", "tags.")


@dataclass(frozen=True)
class Compared:
    """One run in a comparison: the run, its model, and its fields by name (only those it
    has)."""

    run: RunRow
    model: ModelRow
    values: dict[str, Any]


def run_params(run: RunRow) -> dict[str, Any]:
    """A run's options as the API shows them (the run spec's fields), nested."""
    spec = specs.RunSpec.from_columns(run)
    columns = spec.columns()
    options = columns.pop("options")
    kept = {name: value for name, value in columns.items()
            if name in specs.RunSpec.__dataclass_fields__ and name != "record_params"}
    return {**kept, **options}


def run_fields(run: RunRow, model: ModelRow) -> dict[str, Any]:
    """Every field a run has, by its search name: its model's kind and config, its options,
    its final metrics (``metrics.loss`` the final loss) and its tags."""
    values: dict[str, Any] = {"model.kind": model.kind}
    values |= {"model." + ".".join(keys): value for keys, value in leaves(model.config)}
    values |= {"params." + ".".join(keys): value for keys, value in leaves(run_params(run))}
    if run.final_loss is not None:
        values["metrics.loss"] = run.final_loss
    values |= {f"metrics.{name}": value for name, value in (run.final_metrics or {}).items()}
    values |= {f"tags.{key}": value for key, value in sorted((run.tags or {}).items())}
    return values


def _order(names: set[str]) -> list[str]:
    """Fields grouped (model, params, metrics, tags), each group in the catalog's order, the
    others by name."""
    known = list(catalog())

    def key(name: str) -> tuple[int, int, str]:
        group = next((i for i, prefix in enumerate(GROUPS) if name.startswith(prefix)), 0)
        return group, known.index(name) if name in known else len(known), name

    return sorted(names, key=key)


def differing(compared: Sequence[Compared]) -> list[str]:
    """The fields whose values are not the same in every run (missing counts as a value)."""
    names = set().union(*(c.values for c in compared))
    missing = object()
    return _order({name for name in names
                   if len({_hashable(c.values.get(name, missing)) for c in compared}) > 1})


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def check_ids(ids: Sequence[str]) -> None:
    """A :class:`QueryError` (param ``ids``) unless 2 to 50 distinct ids."""
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise QueryError("ids", 1, f"{len(ids)} run ids; compare {MIN_RUNS} to {MAX_RUNS}")
    seen: set[str] = set()
    for i, run_id in enumerate(ids):
        if run_id in seen:
            column = sum(len(x) + 1 for x in ids[:i]) + 1
            raise QueryError("ids", column, f"run {run_id!r} is named twice (column {column})")
        seen.add(run_id)


def compare(session: Session, tenant: str, ids: Sequence[str]) -> list[Compared]:
    """The tenant's runs ``ids`` in that order, each with its model and fields; a
    :class:`NotFound` for one that is not the tenant's."""
    check_ids(ids)
    found = {run.id: (run, model) for run, model in session.execute(
        select(RunRow, ModelRow).join(ModelRow, ModelRow.id == RunRow.model_id)
        .where(RunRow.owner == tenant, RunRow.id.in_(list(ids))))}
    for run_id in ids:
        if run_id not in found:
            raise NotFound("run", run_id)
    return [Compared(run, model, run_fields(run, model))
            for run, model in (found[run_id] for run_id in ids)]


def fields_of(compared: Sequence[Compared]) -> list[str]:
    """Every field any of the runs has, in order."""
    return _order(set().union(*(c.values for c in compared)))


def metric_names() -> list[str]:
    """The metrics an epoch may record (``loss`` first)."""
    return [name.removeprefix("metrics.") for name in catalog() if name.startswith("metrics.")]


def metric_history(session: Session, run_id: str, metric: str,
                   max_points: int) -> tuple[list[int], list[float]]:
    """One run's ``metric`` per epoch (epochs without it left out), reduced to at most
    ``max_points`` rows by the same min/max buckets as history (the run is the caller's,
    found by it)."""
    dialect = session.get_bind().dialect.name
    value = EpochRow.loss if metric == "loss" else json_value(
        EpochRow.metrics, dialect, (metric,), ValueType.NUMBER)
    rows = session.execute(select(EpochRow.epoch, value).where(
        EpochRow.run_id == run_id, value.is_not(None)).order_by(EpochRow.epoch)).all()
    if not rows:
        return [], []
    epochs = np.fromiter((row[0] for row in rows), np.int64, len(rows))
    values = np.fromiter((row[1] for row in rows), np.float64, len(rows))
    chosen = minmax_rows(values, max_points)
    return epochs[chosen].tolist(), values[chosen].tolist()


def final_point(run: RunRow, metric: str, epochs: Sequence[int]) -> tuple[int, float] | None:
    """An ended run's final state as the last point of its ``metric``'s trajectory: the
    model after its last epoch, at x = the epochs it completed, when that follows the
    history's ``epochs`` (None while the run is active, or without that value)."""
    if run.status in ACTIVE_STATUSES:
        return None
    value = run.final_loss if metric == "loss" else (run.final_metrics or {}).get(metric)
    at = run.epochs_completed
    if value is None or (epochs and at <= epochs[-1]):
        return None
    return at, float(value)


def check_metric(metric: str) -> None:
    """A :class:`QueryError` (param ``metric``) naming the closest metric for an unknown one."""
    names = metric_names()
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=1, cutoff=0.6)
        hint = f": did you mean '{close[0]}'?" if close else f" (metrics: {', '.join(names)})"
        raise QueryError("metric", 1, f"unknown metric '{metric}'{hint}")

