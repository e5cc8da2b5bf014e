"""create_app(settings): wiring and lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI

from service import __version__
from service.api import openapi
from service.api.feeds import Feeds
from service.api.http import middleware, problems
from service.api.http.access import Access, key_secret
from service.api.http.large_bodies import BodyDecoder
from service.api.http.request_checks import every_request
from service.api.http.runtime import Runtime
from service.api.http.telemetry import Metrics
from service.api.routes import ROUTERS
from service.api.routes.pages import assets
from service.api.stream_items import read_items
from service.api.study_requests import trial_maker
from service.config import DEFAULT_DATABASE_URL, Settings, get_settings
from service.jobs.executors import scale_collector, start_executor
from service.jobs.metrics import StudyCollector, WebhookCollector
from service.jobs.progress import Progress
from service.jobs.studies import Driver
from service.jobs.webhooks.dispatch import start_dispatcher
from service.logs import configure_logging
from service.store import keys, lifecycle, repo
from service.store.db import make_sessionmaker, open_store

log = logging.getLogger("tapeline.app")


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
        feeds = Feeds(progress, partial(read_items, sessions))
        decoder = BodyDecoder()
        dispatcher = await start_dispatcher(settings, sessions, progress)
        studies = Driver(sessions, trial_maker(settings), executor.submit)
        progress.listen(studies.poke)
        runtime = Runtime(settings, engine, sessions, executor, progress, feeds, decoder, metrics,
                          dispatcher, studies)
        app.state.runtime = runtime
        metrics.watch_store(lambda: _store_metrics(runtime))
        metrics.registry.register(scale_collector(settings, sessions, executor))
        metrics.registry.register(WebhookCollector(sessions))
        metrics.registry.register(StudyCollector(sessions))
        studies.start()
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
            await asyncio.to_thread(studies.stop)
            await dispatcher.stop()
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
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (service/api/routes/pages.py)
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
        separate_input_output_schemas=False,
        dependencies=[Depends(every_request)],
        openapi_tags=openapi.TAGS,
    )
    app.state.settings = settings
    app.state.access = Access(settings)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/ui/assets", assets(), name="ui-assets")
    middleware.install(app, settings, metrics)
    openapi.install(app)
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
        epochs = repo.epochs_trained(session)
    return by_status, epochs, runtime.executor.busy, runtime.executor.queued
