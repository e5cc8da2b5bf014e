"""The ``local`` executor and its process pool on a real SQLite store, with no server: runs
trained in worker processes and their news relayed, a queued run dropped and a training one
stopped on cancel, a dead worker replaced and its run failed or resumed as the policy says,
and a stop that abandons what it had; the pool's fair queue on its own."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs import pool as pool_module
from service.jobs.attempt import Claim
from service.jobs.local import LocalExecutor
from service.jobs.pool import FairQueue, ProcessPool
from service.store.tables import RunRow
from tests.jobs.stored import a_run, history, run_row

LONG = 10**7  # epochs: a run that trains until it is stopped
EPOCHS = 10_000  # a run still training when the test kills its worker


class News:
    """What a pool reports, collected from its thread."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool | None]] = []
        self.crashed: list[str] = []
        self.lock = threading.Lock()

    def news(self, run_id: str, ended: bool | None) -> None:
        with self.lock:
            self.items.append((run_id, ended))

    def crash(self, run_id: str) -> None:
        with self.lock:
            self.crashed.append(run_id)


def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


def status_is(sessions: sessionmaker[Session], run_id: str, *statuses: str,
              epochs: int = 0) -> Callable[[], RunRow | None]:
    def check() -> RunRow | None:
        run = run_row(sessions, run_id)
        return run if run.status in statuses and run.epochs_completed >= epochs else None
    return check


def worker_process() -> Any:
    """The pool's worker process (of a pool of one)."""
    return until(lambda: next((p for p in mp.active_children()
                               if p.name == "tapeline-worker-0"), None), "no worker process")


@pytest.fixture
def news() -> News:
    return News()


@pytest.fixture
def pool(database_url: str, news: News) -> Iterator[ProcessPool]:
    """A pool of one worker process on the test's store."""
    started = ProcessPool(database_url, 1, on_news=news.news, on_crash=news.crash,
                          claim=Claim(worker="local:test"))
    started.start()
    yield started
    started.stop()


def test_the_pool_trains_a_submitted_run_and_relays_its_news(
        pool: ProcessPool, sessions: sessionmaker[Session], news: News) -> None:
    run_id = a_run(sessions, epochs=5)
    pool.submit(run_id, "tenant")
    run = until(status_is(sessions, run_id, "succeeded"), "the run did not succeed")
    assert (run.worker, run.attempt, run.epochs_completed) == ("local:test", 1, 5)
    until(lambda: news.items and news.items[-1] == (run_id, True), "no news of its end")
    assert news.items[0] == (run_id, False) and news.crashed == []
    until(lambda: pool.busy == 0, "the worker stayed busy")
    assert pool.queued == 0 and pool.stop() == []


def test_a_cancel_drops_a_queued_run_and_stops_a_training_one(
        pool: ProcessPool, sessions: sessionmaker[Session]) -> None:
    training, waiting = a_run(sessions, epochs=LONG), a_run(sessions, epochs=5)
    pool.submit(training, "a")
    pool.submit(waiting, "b")
    until(status_is(sessions, training, "running", epochs=1), "the run did not start")
    assert (pool.busy, pool.queued) == (1, 1)
    pool.cancel(waiting)
    assert pool.queued == 0
    pool.cancel(training)
    run = until(status_is(sessions, training, "cancelled"), "the run was not stopped")
    assert run.error_reason == "cancelled" and run.epochs_completed < LONG
    until(lambda: pool.busy == 0, "the worker stayed busy")
    assert run_row(sessions, waiting).status == "queued"  # the pool never started it


def test_stop_abandons_the_training_and_the_queued_runs(
        pool: ProcessPool, sessions: sessionmaker[Session]) -> None:
    training, waiting = a_run(sessions, epochs=LONG), a_run(sessions, epochs=5)
    pool.submit(training, "a")
    pool.submit(waiting, "a")
    until(status_is(sessions, training, "running", epochs=1), "the run did not start")
    process = worker_process()
    assert pool.stop(timeout=5) == [training, waiting]
    assert not process.is_alive()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_dead_worker_is_replaced_and_its_run_settled_by_the_policy(
        policy: str, database_url: str, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL the worker mid-run: ``fail`` ends the run as ``worker_crashed``; ``requeue``
    resumes it from its checkpoint on the new worker, history kept up to there."""
    monkeypatch.setattr(pool_module, "RESPAWN_BACKOFF_SECONDS", 0.1)
    news = News()
    settings = Settings(database_url=database_url, workers=1, on_interrupted=policy)
    executor = LocalExecutor(settings, sessions, news.news)
    executor.start()
    try:
        run_id = a_run(sessions, epochs=EPOCHS)  # checkpointed at every flush
        executor.submit(run_id)  # its owner looked up in the store
        until(status_is(sessions, run_id, "running", epochs=1), "the run did not start")
        dead = worker_process()
        os.kill(dead.pid, signal.SIGKILL)
        until(lambda: (run_id, None) in news.items, "no news of the crash")
        if policy == "fail":
            run = until(status_is(sessions, run_id, "failed"), "the run was not failed")
            assert run.error_reason == "worker_crashed" and run.attempt == 1
        else:
            run = until(status_is(sessions, run_id, "succeeded"), "the run was not resumed",
                        timeout=120)
            assert run.attempt == 2 and run.epochs_completed == EPOCHS
            assert [row.epoch for row in history(sessions, run_id)] == list(range(EPOCHS))
        assert worker_process() is not dead  # a new worker took its place
        again = a_run(sessions, epochs=3)
        executor.submit(again, "default")
        until(status_is(sessions, again, "succeeded"), "the new worker does not train")
    finally:
        executor.stop()


def test_the_fair_queue_takes_turns_across_owners() -> None:
    queue = FairQueue()
    for run_id, owner in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"),
                          ("b2", "b")):
        queue.append(run_id, owner)
    assert len(queue) == 6 and "b2" in queue
    queue.remove("a2")
    queue.remove("c1")  # its owner's turn goes with its last run
    assert "a2" not in queue and len(queue) == 4
    assert queue.popleft() == "a1"
    assert queue.drain() == ["b1", "a3", "b2"]
    assert not queue and len(queue) == 0
