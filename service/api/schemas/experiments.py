"""Schemas of run comparisons: runs side by side with their fields by search name (and which
differ), and one metric per epoch of each."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.api.schemas.common import Public
from service.store.tables import RunStatus


class ComparedRun(Public):
    """One run of a comparison: who it is, and its fields by the search language's names
    (`model.<config>`, `params.<option path>`, `metrics.<name>`, `tags.<key>`), only those it
    has."""

    id: str
    name: str | None
    status: RunStatus
    model_id: str
    model_name: str | None
    dataset_id: str
    values: dict[str, Any] = Field(description="Field name to value (a number, string, "
                                               "boolean or list).")


class RunComparison(Public):
    """Runs side by side (across models), in the order asked."""

    runs: list[ComparedRun]
    fields: list[str] = Field(description="The fields shown, in order: every field of any "
                                          "run, or with `only_diff` those that differ.")
    differing: list[str] = Field(description="The fields whose values are not the same in "
                                             "every run (a field some runs lack differs).")


class FinalPoint(Public):
    """A run's final model as the last point of its trajectory: after its last epoch."""

    epoch: int = Field(description="The epochs the run completed: the x after its last row.")
    value: float


class MetricSeries(Public):
    """One run's metric per epoch (epochs that did not record it left out), and the ended
    run's final state after them."""

    id: str
    name: str | None
    epoch: list[int]
    values: list[float]
    final: FinalPoint | None = Field(
        None, description="The metric of the run's final model (its `final`), after its last "
                          "epoch; null while the run is active or without that value.")


class ComparisonHistory(Public):
    """One metric per epoch of each run, downsampled like history's `max_points`."""

    metric: str
    runs: list[MetricSeries]
