"""Scale-out at the store: fenced attempts (a superseded worker's writes are refused by the
database), takeover of silent workers, attempts running out, checkpoints that resume a run
bit for bit, and dispatch that is fair across tenants. SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from service.jobs.checkpoint import pack_checkpoint, unpack_checkpoint
from service.jobs.pool import FairQueue
from service.jobs.queue import QUEUE, defer_options
from service.store import lifecycle, repo
from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.tables import CheckpointRow, EpochRow, RunRow
from service.training.kinds import Model, make_kind
from service.training.loop import Examples, Fit
from service.training.records import EarlyStopping, EpochRecord, FitSpec, LoopState, Outcome
from tests.store.rows import outcome, queued_run, record

CLAIM: dict[str, Any] = {"timeout": 30.0, "max_attempts": 3}


def claim(sessions: sessionmaker[Session], run_id: str, worker: str,
          **options: Any) -> lifecycle.Started | None:
    with sessions.begin() as session:
        return lifecycle.claim_run(session, run_id, worker, **{**CLAIM, **options})


def stored(sessions: sessionmaker[Session], run_id: str) -> tuple[RunRow, list[int]]:
    with sessions() as session:
        run = repo.Repository(session, "default").get_run(run_id)
        epochs = list(session.scalars(
            select(EpochRow.epoch).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch)))
        return run, epochs


def test_a_live_worker_keeps_its_run_and_a_silent_one_loses_it(
        sessions: sessionmaker[Session]) -> None:
    run_id, _, _ = queued_run(sessions)
    first = claim(sessions, run_id, "a")
    assert first is not None and first.attempt == 1 and first.run.status == "running"
    assert claim(sessions, run_id, "b") is None  # a's heartbeat is fresh
    second = claim(sessions, run_id, "b", timeout=0.0)  # a has been silent "too long"
    assert second is not None and second.attempt == 2
    run, _ = stored(sessions, run_id)
    assert (run.attempt, run.worker, run.status) == (2, "b", "running")


def test_a_superseded_attempt_writes_nothing(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, _ = queued_run(sessions, epochs=4)
    first = claim(sessions, run_id, "a")
    assert first is not None
    with sessions.begin() as session:
        lifecycle.append_epochs(session, first.run, [record(0, [0, 0], 0, 9.0)], first.attempt)
        lifecycle.save_checkpoint(session, run_id, first.attempt, 1, b"state-at-1")
    with sessions.begin() as session:  # an epoch after the checkpoint: the successor redoes it
        lifecycle.append_epochs(session, first.run, [record(1, [1, 1], 1, 8.0)], first.attempt)
    second = claim(sessions, run_id, "b", timeout=0.0)
    assert second is not None and second.checkpoint == b"state-at-1"
    assert second.checkpoint_epoch == 1 and stored(sessions, run_id)[1] == [0]
    # Every kind of write of the old attempt is refused, and leaves nothing behind.
    for write in (
        lambda s: lifecycle.append_epochs(s, first.run, [record(1, [7, 7], 7, 7.0)], 1),
        lambda s: lifecycle.heartbeat(s, run_id, 1),
        lambda s: lifecycle.finish_run(s, run_id, "succeeded", final=outcome([7, 7], 7, 7.0),
                                       completed=2, attempt=1),
        lambda s: lifecycle.release_run(s, run_id, 1) or (_ for _ in ()).throw(
            lifecycle.Fenced(run_id, 1)),
    ):
        with pytest.raises(lifecycle.Fenced), sessions.begin() as session:
            write(session)
    run, epochs = stored(sessions, run_id)
    assert (run.status, run.attempt, run.epochs_completed, epochs) == ("running", 2, 1, [0])
    with sessions() as session:
        assert repo.Repository(session, "default").get_model(model_id).epochs_trained == 0
    # The owner writes on and finishes.
    with sessions.begin() as session:
        lifecycle.append_epochs(session, second.run, [record(1, [1, 1], 1, 8.0)], 2)
        lifecycle.finish_run(session, run_id, "succeeded", final=outcome([2, 2], 2, 1.0),
                             completed=2, attempt=2)
    run, epochs = stored(sessions, run_id)
    assert (run.status, epochs) == ("succeeded", [0, 1])
    with sessions() as session:
        assert session.scalar(select(CheckpointRow).where(CheckpointRow.run_id == run_id)) \
            is None  # a finished run keeps no checkpoint


def waiting_on_lock(engine: Engine, holder: int, timeout: float = 10.0) -> None:
    """Return once a PostgreSQL backend waits for a lock that backend ``holder`` holds."""
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while not connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND :holder = ANY(pg_blocking_pids(pid))"), {"holder": holder}):
            assert time.monotonic() < deadline, "nobody waits on the row lock"
            connection.rollback()
            time.sleep(0.02)


@pytest.mark.postgres
def test_two_writers_at_once_one_wins(postgres_url: str) -> None:
    """On PostgreSQL (SQLite has one writer at a time), the old attempt holds the run's row in
    an open transaction while the successor claims it: the claim waits for that commit, then
    wins; the old attempt's next write is refused."""
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    run_id, _, _ = queued_run(sessions, epochs=5)
    first = claim(sessions, run_id, "a")
    assert first is not None
    holding, claimed = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def successor() -> None:
        holding.wait(5)
        result["second"] = claim(sessions, run_id, "b", timeout=0.0)
        claimed.set()

    thread = threading.Thread(target=successor)
    thread.start()
    with sessions.begin() as session:
        lifecycle.append_epochs(session, first.run, [record(0, [0, 0], 0, 9.0)], 1)
        holder = session.scalar(text("SELECT pg_backend_pid()"))
        holding.set()
        waiting_on_lock(engine, holder)  # the successor's claim waits for this commit...
        assert not claimed.is_set()  # ... and has not got past it
    thread.join(10)
    assert result["second"] is not None and result["second"].attempt == 2
    with pytest.raises(lifecycle.Fenced), sessions.begin() as session:
        lifecycle.append_epochs(session, first.run, [record(1, [1, 1], 1, 8.0)], 1)
    assert stored(sessions, run_id)[1] == []  # no checkpoint: the successor starts over
    engine.dispose()


def test_a_run_past_its_attempts_fails_as_worker_lost(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, _ = queued_run(sessions)
    for attempt in (1, 2):
        started = claim(sessions, run_id, f"w{attempt}", timeout=0.0, max_attempts=2)
        assert started is not None and started.attempt == attempt
    assert claim(sessions, run_id, "w3", timeout=0.0, max_attempts=2) is None
    run, _ = stored(sessions, run_id)
    assert (run.status, run.error_reason, run.attempt) == ("failed", "worker_lost", 3)
    next_run, _, _ = queued_run(sessions, model_id)  # the model is free for the next run
    assert stored(sessions, next_run)[0].status == "queued"


def test_requeue_keeps_history_up_to_the_checkpoint(sessions: sessionmaker[Session]) -> None:
    run_id, _, _ = queued_run(sessions, epochs=5)
    first = claim(sessions, run_id, "a")
    assert first is not None
    with sessions.begin() as session:
        lifecycle.append_epochs(session, first.run, [record(e, [e, e], e, 9.0 - e)
                                                     for e in range(3)], 1)
        lifecycle.save_checkpoint(session, run_id, 1, 2, b"at-2")
    with sessions.begin() as session:
        assert lifecycle.resolve_interrupted(session, "requeue") == [run_id]
    run, epochs = stored(sessions, run_id)
    assert (run.status, run.epochs_completed, epochs) == ("queued", 2, [0, 1])
    again = claim(sessions, run_id, "b")
    assert again is not None and (again.attempt, again.checkpoint) == (2, b"at-2")


def test_a_released_run_is_queued_for_the_next_worker(sessions: sessionmaker[Session]) -> None:
    run_id, _, _ = queued_run(sessions)
    first = claim(sessions, run_id, "a")
    assert first is not None
    with sessions.begin() as session:
        assert lifecycle.release_run(session, run_id, 1)
    run, _ = stored(sessions, run_id)
    assert (run.status, run.worker, run.handbacks) == ("queued", None, 1)
    assert claim(sessions, run_id, "b") is not None  # at once: nobody holds it


def test_hand_backs_are_not_lost_workers(sessions: sessionmaker[Session]) -> None:
    """A run drained by three rolling restarts still gets its attempts for real losses."""
    run_id, _, _ = queued_run(sessions)
    for attempt in (1, 2, 3):
        assert claim(sessions, run_id, f"w{attempt}", max_attempts=2) is not None
        with sessions.begin() as session:
            assert lifecycle.release_run(session, run_id, attempt)
    started = claim(sessions, run_id, "w4", max_attempts=2)
    assert started is not None and started.attempt == 4
    assert claim(sessions, run_id, "w5", timeout=0.0, max_attempts=2) is not None  # a loss
    assert claim(sessions, run_id, "w6", timeout=0.0, max_attempts=2) is None  # two losses
    run, _ = stored(sessions, run_id)
    assert (run.status, run.error_reason) == ("failed", "worker_lost")


def test_dispatch_takes_turns_across_tenants(sessions: sessionmaker[Session]) -> None:
    """One tenant queues many runs, another queues two later: the second tenant's runs are
    taken second and fourth, not after all of the first's."""
    ids: dict[str, list[str]] = {"big": [], "small": []}
    for owner, count in (("big", 6), ("small", 2)):
        for _ in range(count):
            run_id, _, _ = queued_run(sessions)
            with sessions.begin() as session:
                session.execute(update(RunRow).where(RunRow.id == run_id).values(owner=owner))
            ids[owner].append(run_id)
    big, small = ids["big"], ids["small"]
    turns = [big[0], small[0], big[1], small[1], *big[2:]]
    with sessions() as session:
        assert lifecycle.queue_rank(session, small[1]) == ("small", 1)
        assert lifecycle.queue_rank(session, big[5]) == ("big", 5)
        # The queue executor's jobs: procrastinate takes the highest priority first (then
        # the oldest), and a run's priority is minus its owner's runs queued before it.
        assert defer_options(session, small[1]) == {
            "queue": QUEUE, "priority": -1, "queueing_lock": small[1]}
        jobs = sorted((-defer_options(session, run_id)["priority"], seq, run_id)
                      for seq, run_id in enumerate([*big, *small]))
        assert [run_id for _, _, run_id in jobs] == turns
    queue = FairQueue()  # the local executor's in-memory queue does the same
    for owner in ("big", "small"):
        for run_id in ids[owner]:
            queue.append(run_id, owner)
    assert [queue.popleft() for _ in range(len(queue))] == turns


# ----------------------------------------------------------------- resuming bit for bit


def _fit_all(spec: FitSpec, params: dict[str, np.ndarray], data: Examples,
             stop_at: int | None = None, state: LoopState | None = None
             ) -> tuple[list[EpochRecord | Outcome], Fit]:
    kind = make_kind("mlp", {"features": 2, "hidden": [4], "activation": "tanh"})
    model = Model(kind, params, dtype="float32")
    fit = Fit(model, data, spec, None, state=state)
    items: list[EpochRecord | Outcome] = []
    for item in fit.run():
        items.append(item)
        if stop_at is not None and isinstance(item, EpochRecord) and item.epoch + 1 == stop_at:
            break
    return items, fit


def _same(a: EpochRecord | Outcome, b: EpochRecord | Outcome) -> None:
    assert type(a) is type(b) and a.loss == b.loss and a.metrics == b.metrics
    params_a, params_b = a.params or {}, b.params or {}
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        assert params_a[name].dtype == params_b[name].dtype
        assert np.array_equal(params_a[name], params_b[name]), name


@pytest.mark.parametrize("optimizer", [
    {"kind": "adam", "learning_rate": 0.05},
    {"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9},
])
def test_a_checkpoint_resumes_a_run_bit_for_bit(optimizer: dict[str, Any]) -> None:
    """Shuffled mini-batches, Adam / momentum slots and early stopping's memory all survive
    the blob: a run stopped at epoch 3, packed, unpacked and resumed matches the run never
    stopped, row for row and in its final params."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    data = Examples(x, (x @ np.array([1.5, -2.0]) + 0.3).astype(np.float32))
    spec = FitSpec(epochs=30, optimizer=optimizer, loss="mse", batch_size=8, shuffle_seed=3,
                   early_stopping=EarlyStopping(patience=3, min_delta=1e-2))
    kind = make_kind("mlp", {"features": 2, "hidden": [4], "activation": "tanh"})
    initial = kind.initial(11)
    control, _ = _fit_all(spec, initial, data)
    head, fit = _fit_all(spec, initial, data, stop_at=3)
    blob = pack_checkpoint(fit.model.params(), fit.state())
    saved = unpack_checkpoint(blob)
    assert saved.state.epoch == 3 and saved.state.rng == fit.state().rng
    tail, _ = _fit_all(spec, saved.params, data, state=saved.state)
    assert len(head) + len(tail) == len(control) > 4
    assert isinstance(control[-1], Outcome) and control[-1].stopped_early is not None
    for mine, theirs in zip([*head, *tail], control, strict=True):
        _same(mine, theirs)


def test_start_up_settles_only_runs_whose_worker_is_gone(
        sessions: sessionmaker[Session]) -> None:
    """A `local` server starting next to live workers leaves their runs alone: it settles a
    run of a silent worker, or of a server on this host whose process is gone, never one a
    live worker (of another replica or machine) trains."""
    import os
    import socket
    import subprocess
    import sys

    from service.jobs.local import owner_alive

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    holders = {"queue": f"{host}:{os.getpid()}:abc:0", "remote": "elsewhere:1:local",
               "gone": f"local:{host}:{dead.pid}", "silent": "elsewhere:2:abc:0"}
    runs = {}
    for name, worker in holders.items():
        run_id, _, _ = queued_run(sessions)
        assert claim(sessions, run_id, worker) is not None
        runs[name] = run_id
    with sessions.begin() as session:
        session.execute(update(RunRow).where(RunRow.id == runs["silent"])
                        .values(heartbeat_at=lifecycle.now() - timedelta(seconds=60)))
    with sessions.begin() as session:
        requeued = lifecycle.resolve_interrupted(
            session, "requeue", keep=lambda row: owner_alive(row, 30.0))
    assert sorted(requeued) == sorted([runs["gone"], runs["silent"]])
    for name in ("queue", "remote"):
        assert stored(sessions, runs[name])[0].status == "running"
