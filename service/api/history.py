"""History: per-epoch params, loss and metrics of a run, or of a model across its runs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from service.api import views
from service.api.deps import PageSize, RuntimeDep
from service.api.problems import responses
from service.api.recent import Recent
from service.api.schemas import INT32_END, HistoryColumns, HistoryPage
from service.store import repo
from service.store.tables import FINAL_STATUSES

router = APIRouter(tags=["history"])

Format = Annotated[
    Literal["rows", "columns"],
    Query(description="`rows`: a list of row objects; `columns`: one list per field."),
]
Limit = Annotated[
    PageSize | None, Query(description="Rows per page (by default the largest page).")
]
# A chart is at most a few thousand pixels wide; more points than this draw nothing new.
MAX_POINTS = 10_000
MaxPoints = Annotated[
    int | None,
    Query(
        ge=4,
        le=MAX_POINTS,
        description="Downsample to at most this many rows, all after `after` in one answer "
        "(`limit` does not apply): the rows are cut into `max_points // 4` equal buckets, each "
        "keeping its first, last, lowest-loss and highest-loss row, so the first and last "
        "epoch and every bucket's loss extremes are kept. Every row when they fit.",
    ),
]


# Rendered `max_points` answers about finished runs: their history never changes again.
finished_answers: Recent[bytes] = Recent(32)


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
    limit: Limit = None,
    max_points: MaxPoints = None,
) -> Response:
    """The model at the start of each epoch (params; W and b where the kind has them) and the
    loss and metrics there, as the tutorial logs W, b and the loss; with `max_points`, a
    chart's worth of them."""
    settings = runtime.settings
    with runtime.sessions() as session:
        finished = repo.get_run(session, run_id).status in FINAL_STATUSES
        key = (id(runtime.sessions), run_id, after, max_points, format)
        if max_points is not None and finished:
            body = finished_answers.get(key)
            if body is not None:
                return Response(body, media_type="application/json")
        if max_points is not None:
            rows, more = repo.run_history_sample(session, run_id, after, max_points), False
        else:
            rows, more = repo.run_history(session, run_id, after,
                                          limit or settings.max_page_size)
        answer = views.rendered(views.history(rows, more, format, "epoch"))
    if max_points is not None and finished:
        finished_answers.put(key, bytes(answer.body))
    return answer


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
    limit: Limit = None,
    max_points: MaxPoints = None,
) -> Response:
    """Every epoch of every run of the model in order; `step` numbers them across runs. With
    `max_points`, a chart's worth of them."""
    settings = runtime.settings
    with runtime.sessions() as session:
        repo.get_model(session, model_id)
        if max_points is not None:
            rows, more = repo.model_history_sample(session, model_id, after, max_points), False
        else:
            rows, more = repo.model_history(session, model_id, after,
                                            limit or settings.max_page_size)
        return views.rendered(views.history(rows, more, format, "step"))
