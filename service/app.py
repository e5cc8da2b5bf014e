"""create_app(settings): wiring and lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select

from service import __version__
from service.api import (
    datasets,
    events,
    history,
    models,
    pages,
    problems,
    runs,
    tenants,
    transfer,
)
from service.api import service as service_routes
from service.api.auth import BEARER, Access, authorize, key_secret
from service.api.bodies import BodyDecoder
from service.api.deps import Runtime, every_request
from service.api.feeds import Feeds
from service.api.limits import bound
from service.api.middleware import (
    BodyMiddleware,
    BrowserGuardMiddleware,
    ConcurrencyLimitMiddleware,
    HeadMiddleware,
    RequestContextMiddleware,
)
from service.api.service import metrics_access
from service.api.telemetry import Metrics
from service.config import DEFAULT_DATABASE_URL, Settings, get_settings
from service.jobs.executors import scale_collector, start_executor
from service.jobs.progress import Progress
from service.logs import configure_logging
from service.store import keys, lifecycle
from service.store.db import make_sessionmaker, open_store
from service.store.tables import RunRow

log = logging.getLogger("tapeline.app")

# Answer headers a browser page of an allowed origin may read.
EXPOSED_HEADERS = ["Location", "Preference-Applied", "Retry-After", "X-Request-ID",
                   "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                   "WWW-Authenticate"]

DESCRIPTION = """Train models over HTTP on Tapeline's own NumPy autodiff engine — linear and
logistic regression, softmax classifiers, small neural networks — and read or stream the
per-epoch parameters, loss and metrics. With its defaults it reproduces TensorFlow's
"Custom training: basics" tutorial: 1000 noisy points around W = 3, b = 2, a linear model
starting at W = 5, b = 0, ten epochs of gradient descent at learning rate 0.1.

Every error is `application/problem+json` (RFC 9457). Requests carry an API key,
`Authorization: Bearer tl_...`; each key belongs to one tenant, which sees only its own
datasets, models and runs."""


def operation_id(route: APIRoute) -> str:
    """``<tag>-<name>``, e.g. ``datasets-create-synthetic``."""
    return f"{route.tags[0]}-{route.name.rstrip('_').replace('_', '-')}"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application for the given settings (the environment's by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await asyncio.to_thread(
            open_store,
            settings.database_url,
            create_folder=settings.database_url == DEFAULT_DATABASE_URL,
        )
        sessions = make_sessionmaker(engine)
        progress = Progress()
        progress.bind(asyncio.get_running_loop())

        if settings.bootstrap_admin_key is not None:
            with sessions.begin() as session:
                added = keys.register_bootstrap(
                    session, settings.bootstrap_admin_key.get_secret_value(), key_secret(settings)
                )
            log.info("bootstrap admin key %s", "registered" if added else "already stored")
        executor, requeued, listener = await asyncio.to_thread(
            start_executor, settings, engine, sessions, progress
        )
        feeds = Feeds(progress, partial(events.read_items, sessions))
        decoder = BodyDecoder()
        runtime = Runtime(settings, engine, sessions, executor, progress, feeds, decoder, metrics)
        app.state.runtime = runtime
        metrics.watch_store(lambda: _store_metrics(runtime))
        metrics.registry.register(scale_collector(settings, sessions, executor))
        log.info(
            "started",
            extra={
                "fields": {
                    "database": engine.url.render_as_string(),
                    "executor": settings.executor,
                    "workers": settings.workers if settings.executor == "local" else 0,
                    "requeued": len(requeued),
                }
            },
        )
        try:
            yield
        finally:
            decoder.close()
            if listener is not None:
                listener.stop()
            abandoned = await asyncio.to_thread(executor.stop)
            if abandoned:
                with sessions.begin() as session:
                    lifecycle.resolve_interrupted(session, settings.on_interrupted, abandoned)
            engine.dispose()
            log.info("stopped", extra={"fields": {"abandoned_runs": len(abandoned)}})

    app = FastAPI(
        title="Tapeline",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (service/api/pages.py)
        redoc_url=None,
        generate_unique_id_function=operation_id,
        separate_input_output_schemas=False,
        dependencies=[Depends(every_request)],
        openapi_tags=[
            {"name": "datasets", "description": "Data to train on: inline, synthetic, uploaded."},
            {"name": "models", "description": "Models and their current parameters."},
            {"name": "runs", "description": "Training runs: start, watch, cancel."},
            {"name": "history", "description": "Per-epoch params, loss and metrics, as rows or "
                                               "columns."},
            {"name": "events", "description": "Live streams of a run's epochs."},
            {"name": "keys", "description": "API keys: create, list, revoke (admin)."},
            {"name": "tenants", "description": "The caller, and tenants' quotas."},
            {"name": "service", "description": "Health, readiness and metrics."},
        ],
    )
    app.state.settings = settings
    app.state.access = Access(settings)
    problems.install(app)
    for module in (datasets, models, transfer, runs, history):
        app.include_router(module.router)
    app.include_router(tenants.keys_router)
    app.include_router(tenants.tenants_router)
    for router in events.routers():
        app.include_router(router)
    app.include_router(service_routes.router)
    app.include_router(pages.router)
    app.mount("/ui/assets", pages.assets(), name="ui-assets")
    # Added innermost first: a request meets them in the opposite order.
    app.add_middleware(
        BodyMiddleware, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds
    )
    app.add_middleware(HeadMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(
        BrowserGuardMiddleware, hosts=settings.hosts(), origins=settings.cors_origins
    )
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_connections)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def begin_shutdown(app: FastAPI) -> None:
    """Called when the server is told to stop: end live streams now rather than make the
    graceful shutdown wait out its timeout on them. Safe from a signal handler."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    if runtime is not None:
        runtime.progress.close_threadsafe()


def _store_metrics(runtime: Runtime) -> tuple[dict[str, int], int, int, int]:
    with runtime.sessions() as session:
        by_status = lifecycle.count_runs_by_status(session)
        epochs = session.scalar(select(func.coalesce(func.sum(RunRow.epochs_completed), 0)))
    return by_status, int(epochs or 0), runtime.executor.busy, runtime.executor.queued


def _not_null(schema: dict[str, Any]) -> None:
    """Drop the ``null`` branch of an optional parameter: a query or header value is absent or
    a string, never JSON null (generators would otherwise type it ``T | None`` or send "null")."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema.update(options[0])


def _describe(answer: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A success answer's description: its schema's (FastAPI writes "Successful Response")."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in [schema, *schema.get("anyOf", [])]
             if "$ref" in ref]
    texts = [schemas[name].get("description", name).rstrip(".") for name in names]
    return "; or ".join(texts) + "." if texts else "Done; no content."


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema and the alternatives of its unions, depth first (the first one first)."""
    found = [schema]
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            found.extend(_alternatives(option))
    return found


def secured_operations(app: FastAPI) -> set[tuple[str, str]]:
    """The (path, method) of every operation that checks the caller's key: those depending on
    :func:`~service.api.auth.authorize` or the metrics' own check. They are found from the
    routes' dependencies (no ``Security`` dependency runs on each request just for the spec)."""
    checks = (authorize, metrics_access)

    def checked(dependant: Dependant) -> bool:
        return dependant.call in checks or any(checked(d) for d in dependant.dependencies)

    found = set()
    for route in iter_route_contexts(app.routes):  # each with its routers' dependencies
        if isinstance(route.original_route, APIRoute) and route.include_in_schema and \
                route.path_format is not None and checked(route.dependant):
            found |= {(route.path_format, method.lower()) for method in route.methods or ()}
    return found


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with error answers described only as problem+json and each request body
    showing its schema's example (what `/docs` pre-fills and generated docs display)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    with bound(app.state.settings):  # limits show as this app's constraints
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            separate_input_output_schemas=False,
        )
    problem = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    schemas = spec["components"]["schemas"]
    secured = secured_operations(app)
    if secured:
        spec["components"]["securitySchemes"] = {
            BEARER.scheme_name:
                BEARER.model.model_dump(mode="json", by_alias=True, exclude_none=True)}
    for route_path, path in spec.get("paths", {}).items():
        for method, operation in list(path.items()):
            if (route_path, method) in secured:  # where FastAPI's own would be
                items = list(operation.items())
                keys_ = [key for key, _ in items]
                at = keys_.index("parameters") if "parameters" in keys_ else \
                    keys_.index("responses") + 1
                path[method] = operation = dict(
                    [*items[:at], ("security", [{BEARER.scheme_name: []}]), *items[at:]])
            if "security" in operation:  # the scope a key needs (service.api.auth)
                operation.setdefault("x-scope", "read" if method in ("get", "head") else "write")
            for media in operation.get("requestBody", {}).get("content", {}).values():
                refs = _alternatives(media["schema"])
                examples = [
                    example
                    for ref in refs
                    if "$ref" in ref
                    for example in schemas[ref["$ref"].rsplit("/", 1)[-1]].get("examples", [])
                ]
                if examples and "example" not in media:
                    media["example"] = examples[0]
            for parameter in operation.get("parameters", []):
                _not_null(parameter["schema"])
                if parameter["in"] == "path" and parameter["name"].endswith("_id"):
                    parameter.setdefault("description", f"Id of the {parameter['name'][:-3]}.")
            for status, answer in operation.get("responses", {}).items():
                for media in answer.get("content", {}).values():
                    if "itemSchema" in media:  # a stream is described item by item
                        media.pop("schema", None)
                if answer.get("description") == "Successful Response":
                    answer["description"] = _describe(answer, schemas)
                if status[0] in "45":
                    answer["content"] = problem
                    if status == "422":
                        answer["description"] = "Invalid input"
    for unused in ("HTTPValidationError", "ValidationError"):
        spec["components"]["schemas"].pop(unused, None)
    app.openapi_schema = spec
    return spec
