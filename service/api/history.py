"""History: per-epoch W / b / loss of a run, or of a model across its runs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from service.api import views
from service.api.deps import RuntimeDep
from service.api.problems import responses
from service.api.schemas import INT32_END, LIMITS, HistoryColumns, HistoryPage
from service.store import repo

router = APIRouter(tags=["history"])

Format = Annotated[
    Literal["rows", "columns"],
    Query(description="`rows`: a list of row objects; `columns`: one list per field."),
]
Limit = Annotated[int, Query(ge=1, le=LIMITS.max_page_size, description="Rows per page.")]


@router.get(
    "/v1/runs/{run_id}/history",
    summary="A run's per-epoch history",
    response_model=HistoryPage | HistoryColumns,
    response_description="Rows (`HistoryPage`, the default) or columns (`HistoryColumns`).",
    responses=responses(404, 422),
)
def run(
    run_id: str,
    runtime: RuntimeDep,
    format: Format = "rows",
    after: Annotated[
        int | None, Query(ge=-1, lt=INT32_END, description="Only epochs after this one.")
    ] = None,
    limit: Limit = LIMITS.max_page_size,
) -> Response:
    """W and b at the start of each epoch and the loss there, as the tutorial logs them."""
    with runtime.sessions() as session:
        repo.get_run(session, run_id)
        rows, more = repo.run_history(session, run_id, after, limit)
        return views.rendered(views.history(rows, more, format, "epoch"))


@router.get(
    "/v1/models/{model_id}/history",
    summary="A model's history across its runs",
    response_model=HistoryPage | HistoryColumns,
    response_description="Rows (`HistoryPage`, the default) or columns (`HistoryColumns`).",
    responses=responses(404, 422),
)
def model(
    model_id: str,
    runtime: RuntimeDep,
    format: Format = "rows",
    after: Annotated[
        int | None, Query(ge=-1, lt=INT32_END, description="Only rows after this `step`.")
    ] = None,
    limit: Limit = LIMITS.max_page_size,
) -> Response:
    """Every epoch of every run of the model in order; `step` numbers them across runs."""
    with runtime.sessions() as session:
        repo.get_model(session, model_id)
        rows, more = repo.model_history(session, model_id, after, limit)
        return views.rendered(views.history(rows, more, format, "step"))
