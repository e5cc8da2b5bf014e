"""What a running app holds (settings, the store, the executor, run wake-ups, live feeds, the
large-body decoder, metrics, the webhook dispatcher), and the dependency that hands it to a route.

Dependencies here and in :mod:`service.api.http` are ``async`` because they never block:
FastAPI runs a plain ``def`` dependency in a worker thread, a trip that costs more than they
do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.feeds import Feeds
from service.api.http.large_bodies import BodyDecoder
from service.api.http.telemetry import Metrics
from service.config import Settings
from service.jobs.executors import Executor
from service.jobs.progress import Progress
from service.jobs.studies import Driver
from service.jobs.webhooks.dispatch import Dispatcher


@dataclass
class Runtime:
    """What a running app holds: settings, the store, the executor, run wake-ups, the live
    feeds of runs being streamed and the process that decodes large bodies."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    executor: Executor
    progress: Progress
    feeds: Feeds
    decoder: BodyDecoder
    metrics: Metrics
    dispatcher: Dispatcher
    studies: Driver


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
