"""The service itself: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service.api.http.auth import authenticate
from service.api.http.problems import ProblemError, forbidden, responses
from service.api.http.runtime import RuntimeDep
from service.api.schemas.health import Health
from service.store.db import ping

router = APIRouter(tags=["service"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is alive and its event loop answers (no other check, so it stays fast)."""
    return Health(status="ok")


@router.get("/readyz", summary="Readiness", responses=responses(503))
async def readyz(runtime: RuntimeDep) -> Health:
    """The store answers a query; 503 otherwise."""
    try:
        await run_in_threadpool(ping, runtime.engine)
    except SQLAlchemyError as error:
        raise ProblemError(503, f"the store is unreachable: {type(error).__name__}") from error
    return Health(status="ok")


async def metrics_access(request: Request, runtime: RuntimeDep) -> None:
    """401 / 403 unless the caller has an ``admin`` key, or the metrics are public."""
    if runtime.settings.metrics_public:
        return
    if not (await authenticate(request, runtime)).may("admin"):
        raise forbidden("the metrics need an admin key (or TAPELINE_METRICS_PUBLIC=true)")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(401, 403, 429),
    },
    dependencies=[Depends(metrics_access)],
    openapi_extra={"x-scope": "admin"},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """HTTP requests and latency, runs by status, epochs trained, executor load."""
    body = await run_in_threadpool(runtime.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
