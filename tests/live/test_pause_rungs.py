"""Pause and resume as a study's scheduler uses them, with no HTTP: runs made with
``pause_at`` through the store, resumed at the next rung with
:func:`service.jobs.executors.resume_and_submit`, on the real executors (the ``local`` pool of
processes on SQLite and on PostgreSQL; the ``queue`` executor with a real ``tapeline worker``).
Paused at 1, 3 and 9 of 27 epochs, a run ends with the history and final params of one
uninterrupted run of the same model, options and initial params, bit for bit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs.executors import Executor, resume_and_submit, submit_run
from service.jobs.local import LocalExecutor
from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.tables import EpochRow, RunRow
from tests.jobs.stored import MINI_BATCHES, history, learnable, run_row
from tests.store.rows import model, own
from tests.support.postgres import fresh_schema
from tests.support.servers import sqlite_url, start_worker

pytestmark = [pytest.mark.live, pytest.mark.slow]

RUNGS = [(1, 3), (3, 9), (9, None)]  # (paused at, next pause_at) of 27 epochs


@pytest.fixture
def executor(request: pytest.FixtureRequest, tmp_path: Path, store: str, kind: str
             ) -> Iterator[tuple[sessionmaker[Session], Executor]]:
    """Sessions of a fresh store and a started executor of ``kind`` training its runs."""
    with ExitStack() as stack:
        if store == "sqlite":
            url = sqlite_url(tmp_path)
        else:
            url = stack.enter_context(fresh_schema(request.getfixturevalue("postgres_base")))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        runner: Executor
        if kind == "local":
            runner = LocalExecutor(Settings(database_url=url, workers=1), sessions,
                                   lambda run_id, ended: None)
        else:
            from service.jobs.queue import QueueExecutor, ensure_queue_schema

            ensure_queue_schema(engine)
            runner = QueueExecutor(url, sessions)
            worker = start_worker(url, tmp_path / "worker.log")
            stack.callback(worker.stop)
        runner.start()
        stack.callback(runner.stop)
        yield sessions, runner


def queue(sessions: sessionmaker[Session], runner: Executor, dataset_id: str,
          pause_at: int | None) -> str:
    """A run of 27 epochs of a new model (W = [0, 0], b = 0) under Adam on shuffled
    mini-batches, handed to the executor."""
    with sessions.begin() as session:
        repo = own(session)
        run = repo.create_run(model=model(session, [0.0, 0.0], 0.0),
                              dataset=repo.get_dataset(dataset_id), epochs=27, pause_at=pause_at,
                              batch_size=MINI_BATCHES["batch_size"],
                              shuffle_seed=MINI_BATCHES["shuffle_seed"], dtype="float32",
                              optimizer=MINI_BATCHES["optimizer"],
                              options=MINI_BATCHES["options"])
        run_id = run.id
    submit_run(runner, run_id, "default")
    return run_id


def wait_for(sessions: sessionmaker[Session], run_id: str, *statuses: str) -> RunRow:
    deadline = time.monotonic() + 120
    while (run := run_row(sessions, run_id)).status not in statuses:
        assert time.monotonic() < deadline, f"run {run_id} is {run.status}, not {statuses}"
        time.sleep(0.05)
    return run


def computed(rows: list[EpochRow]) -> list[tuple[Any, ...]]:
    return [(r.epoch, r.loss, r.metrics, r.params) for r in rows]


@pytest.mark.parametrize("store,kind", [
    ("sqlite", "local"),
    pytest.param("postgres", "local", marks=pytest.mark.postgres),
    pytest.param("postgres", "queue", marks=pytest.mark.postgres)])
def test_a_run_paused_at_rungs_by_a_scheduler_ends_as_an_uninterrupted_one(
        executor: tuple[sessionmaker[Session], Executor]) -> None:
    sessions, runner = executor
    with sessions.begin() as session:
        dataset_id = learnable(session, rows=200)
    control = wait_for(sessions, queue(sessions, runner, dataset_id, None), "succeeded")
    run_id = queue(sessions, runner, dataset_id, 1)
    for rung, after in RUNGS:
        paused = wait_for(sessions, run_id, "paused", "succeeded", "failed")
        assert (paused.status, paused.epochs_completed) == ("paused", rung)
        assert [r.epoch for r in history(sessions, run_id)] == list(range(rung))
        resume_and_submit(sessions, runner, run_id, after)
    run = wait_for(sessions, run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error_detail
    assert computed(history(sessions, run_id)) == computed(history(sessions, control.id))
    assert run.final_params == control.final_params and run.final_loss == control.final_loss
    assert np.isfinite(run.final_loss)
