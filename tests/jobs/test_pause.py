"""Pausing and resuming runs on a real SQLite store, with no server: a run paused at rungs
(``pause_at``) and resumed ends bit for bit as one uninterrupted run; a pause asked while it
trains stops it at the next epoch's end; a paused run holds its model but no worker and no
quota; it is cancelled at once; a crash of the service leaves it paused; its events go to the
outbox."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.jobs import attempt as attempt_module
from service.jobs import studies
from service.jobs.attempt import Claim, execute_run
from service.store import lifecycle
from service.store.codec import unpack_params
from service.store.repo import Conflict
from service.store.tables import CheckpointRow, RunStatus, WebhookEventRow
from service.store.webhooks import Webhooks
from tests.jobs.stored import MINI_BATCHES, a_run, checkpoint_epoch, history, model_row, run_row
from tests.store.rows import V1_OPTIONS, own, queued_run
from tests.store.test_outbox import BOX

# Adam on shuffled mini-batches, validation and early stopping that never stops: every piece
# of state a checkpoint must carry (optimizer slots and step, the shuffling stream, the best
# state so far).
EVERYTHING: dict[str, Any] = {
    **MINI_BATCHES,
    "options": {**V1_OPTIONS, "validation": {"fraction": 0.25},
                "early_stopping": {"monitor": "val_loss", "patience": 1000, "min_delta": 0.0,
                                   "restore_best": True}},
}


def resume(sessions: sessionmaker[Session], run_id: str, pause_at: int | None) -> None:
    with sessions.begin() as session:
        assert lifecycle.resume_run(session, run_id, pause_at).status == RunStatus.QUEUED


def same_run(sessions: sessionmaker[Session], mine: str, control: str) -> None:
    """The two runs stored the same history (epochs, losses, metrics, params) and the same
    final params, bit for bit."""
    ours, theirs = history(sessions, mine), history(sessions, control)
    assert [r.epoch for r in ours] == [r.epoch for r in theirs] == list(range(len(theirs)))
    for a, b in zip(ours, theirs, strict=True):
        assert (a.loss, a.metrics) == (b.loss, b.metrics)
        assert a.params == b.params
    final, expected = run_row(sessions, mine), run_row(sessions, control)
    assert final.final_params is not None and final.final_params == expected.final_params
    assert (final.final_loss, final.final_metrics) == (expected.final_loss,
                                                       expected.final_metrics)
    left, right = unpack_params(final.final_params), unpack_params(expected.final_params)
    assert all(np.array_equal(left[k], right[k]) for k in right)


@pytest.mark.parametrize("settings", [MINI_BATCHES, EVERYTHING], ids=["adam", "everything"])
def test_a_run_paused_at_rungs_and_resumed_ends_bit_for_bit_as_an_uninterrupted_one(
        sessions: sessionmaker[Session], settings: dict[str, Any]) -> None:
    """Paused at 1, 3 and 9 of 27 epochs (as successive halving does), each time by a new
    attempt of another worker, then resumed to its end."""
    control = a_run(sessions, epochs=27, **settings)
    assert execute_run(sessions, control) == RunStatus.SUCCEEDED
    dataset_id = run_row(sessions, control).dataset_id
    run_id = a_run(sessions, epochs=27, dataset_id=dataset_id, pause_at=1, **settings)
    for worker, (rung, after) in enumerate([(1, 3), (3, 9), (9, None)]):
        assert execute_run(sessions, run_id, claim=Claim(worker=f"w{worker}")) == "paused"
        run = run_row(sessions, run_id)
        assert (run.status, run.epochs_completed, run.worker, run.heartbeat_at,
                run.pause_at) == ("paused", rung, None, None, None)
        assert checkpoint_epoch(sessions, run_id) == rung
        assert [r.epoch for r in history(sessions, run_id)] == list(range(rung))
        assert model_row(sessions, run_id).epochs_trained == 0  # not final: the model waits
        assert execute_run(sessions, run_id) is None  # a paused run is not claimable
        resume(sessions, run_id, after)
    assert execute_run(sessions, run_id, claim=Claim(worker="last")) == RunStatus.SUCCEEDED
    assert run_row(sessions, run_id).attempt == 4
    same_run(sessions, run_id, control)
    assert model_row(sessions, run_id).params == run_row(sessions, control).final_params


def test_a_pause_at_the_runs_last_epoch_just_ends_it(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions, epochs=4, pause_at=4)
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    assert (run_row(sessions, run_id).epochs_completed,
            run_row(sessions, run_id).pause_at) == (4, None)


def test_a_pause_asked_while_it_trains_stops_it_at_the_next_epochs_end(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempt sees the request at its next look at the store (each boundary here), stores
    its epochs and a checkpoint there, and lets go; resumed, it ends as the control run."""
    monkeypatch.setattr(attempt_module, "STATUS_POLL_SECONDS", 0.0)
    monkeypatch.setattr(attempt_module, "FLUSH_SECONDS", 0.0)
    control = a_run(sessions, epochs=12, **MINI_BATCHES)
    assert execute_run(sessions, control) == RunStatus.SUCCEEDED
    run_id = a_run(sessions, epochs=12, dataset_id=run_row(sessions, control).dataset_id,
                   **MINI_BATCHES)
    flushes = []

    def announce(news_of: str, ended: bool | None) -> None:  # after each flush commits
        flushes.append(ended)
        if len(flushes) == 4:
            with sessions.begin() as session:
                lifecycle.request_pause(session, run_id, None)

    assert execute_run(sessions, run_id, announce=announce) == RunStatus.PAUSED
    paused = run_row(sessions, run_id)
    assert paused.status == "paused" and 2 <= paused.epochs_completed < 12
    assert checkpoint_epoch(sessions, run_id) == paused.epochs_completed
    with sessions.begin() as session:  # idempotent: still paused, nothing changes
        lifecycle.request_pause(session, run_id, None)
    assert run_row(sessions, run_id).status == "paused"
    resume(sessions, run_id, None)
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    same_run(sessions, run_id, control)


def test_a_pause_the_process_is_told_of_lands_at_the_end_of_the_epoch_in_progress(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The local executor bumps ``looked`` after a pause commits: the attempt reads the store
    at the very next boundary, however long until its next timed look (an hour here), so a
    run with one epoch left pauses rather than ends. A pause asked between the claim and the
    first boundary is read there too (the first boundary always reads)."""
    monkeypatch.setattr(attempt_module, "STATUS_POLL_SECONDS", 3600.0)
    run_id = a_run(sessions, epochs=12, **MINI_BATCHES)
    told = [0]
    boundaries = []

    def cancelled() -> bool:  # asked at each boundary, before ``looked``
        boundaries.append(True)
        if len(boundaries) == 6:  # epoch 5 ends: a pause is asked and the process told
            with sessions.begin() as session:
                lifecycle.request_pause(session, run_id, None)
            told[0] += 1
        return False

    assert execute_run(sessions, run_id, cancelled=cancelled,
                       looked=lambda: told[0]) == RunStatus.PAUSED
    assert run_row(sessions, run_id).epochs_completed == 5
    untold = a_run(sessions, epochs=12, dataset_id=run_row(sessions, run_id).dataset_id,
                   **MINI_BATCHES)
    boundaries.clear()
    run_id = untold  # the same request, the process not told: the timed look is an hour off
    assert execute_run(sessions, untold, cancelled=cancelled) == RunStatus.SUCCEEDED

    asked_early = a_run(sessions, epochs=12, dataset_id=run_row(sessions, untold).dataset_id,
                        **MINI_BATCHES)

    def announce(news_of: str, ended: bool | None) -> None:  # the claim committed: running
        if ended is False and run_row(sessions, asked_early).epochs_completed == 0:
            with sessions.begin() as session:
                lifecycle.request_pause(session, asked_early, None)

    assert execute_run(sessions, asked_early, announce=announce) == RunStatus.PAUSED
    assert run_row(sessions, asked_early).epochs_completed == 0


def test_a_queued_run_pauses_at_once_or_keeps_its_rung(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions, epochs=6)
    with sessions.begin() as session:
        lifecycle.request_pause(session, run_id, 2)  # not reached: kept for when it trains
    assert (run_row(sessions, run_id).status, run_row(sessions, run_id).pause_at) == ("queued", 2)
    with sessions.begin() as session:
        lifecycle.request_pause(session, run_id, None)  # at once
    run = run_row(sessions, run_id)
    assert (run.status, run.pause_at, run.epochs_completed) == ("paused", None, 0)
    assert execute_run(sessions, run_id) is None
    resume(sessions, run_id, 2)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    assert run_row(sessions, run_id).epochs_completed == 2
    resume(sessions, run_id, None)
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    assert [r.epoch for r in history(sessions, run_id)] == list(range(6))


def test_what_cannot_be_paused_or_resumed(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions, epochs=3, pause_at=1)
    with sessions.begin() as session, pytest.raises(Conflict, match="only a paused run"):
        lifecycle.resume_run(session, run_id, None)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    for bad in (0, 1):  # not after the epochs it completed
        with sessions.begin() as session, pytest.raises(ValueError, match="pause_at"):
            lifecycle.resume_run(session, run_id, bad)
    with sessions.begin() as session, pytest.raises(ValueError, match="at_epoch"):
        lifecycle.request_pause(session, run_id, -1)
    resume(sessions, run_id, None)
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    with sessions.begin() as session, pytest.raises(Conflict, match="succeeded"):
        lifecycle.request_pause(session, run_id, None)
    with sessions.begin() as session, pytest.raises(Conflict, match="succeeded"):
        lifecycle.resume_run(session, run_id, None)
    with sessions.begin() as session, pytest.raises(ValueError, match="pause_at"):
        own(session).create_run(**_like(session, run_id), pause_at=0)


def _like(session: Session, run_id: str) -> dict[str, Any]:
    repo = own(session)
    run = repo.get_run(run_id)
    return {"model": repo.get_model(run.model_id), "dataset": repo.get_dataset(run.dataset_id),
            "epochs": 3, "optimizer": {"kind": "sgd", "learning_rate": 0.1},
            "batch_size": None, "shuffle_seed": None, "dtype": "float32",
            "options": V1_OPTIONS}


def test_a_paused_run_keeps_its_model_and_datasets_but_no_quota(
        sessions: sessionmaker[Session]) -> None:
    run_id, model_id, dataset_id = queued_run(sessions, epochs=5, pause_at=2)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    with sessions.begin() as session:
        repo = own(session)
        assert repo.active_runs() == 0  # the quota does not count it
        assert repo.active_run_id(model_id) == run_id
        assert repo.training_model_ids([model_id]) == {model_id}
        with pytest.raises(Conflict, match="already has an active run"):
            repo.create_run(**_like(session, run_id))
    with sessions.begin() as session, pytest.raises(Conflict, match="is training"):
        own(session).delete_model(model_id)
    with sessions.begin() as session, pytest.raises(Conflict, match="in use"):
        own(session).delete_dataset(dataset_id)


def test_a_paused_run_is_cancelled_at_once_with_its_history(
        sessions: sessionmaker[Session]) -> None:
    run_id, model_id, _ = queued_run(sessions, epochs=5, pause_at=2)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    with sessions.begin() as session:
        assert lifecycle.cancel_paused(session, run_id)
    with sessions.begin() as session:
        assert not lifecycle.cancel_paused(session, run_id)  # no longer paused
    run = run_row(sessions, run_id)
    assert (run.status, run.epochs_completed, run.error_reason) == ("cancelled", 2, "cancelled")
    assert checkpoint_epoch(sessions, run_id) is None
    assert model_row(sessions, run_id).history_rows == 2  # the next run's steps follow
    again, _, _ = queued_run(sessions, model_id=model_id, epochs=2)
    assert execute_run(sessions, again) == RunStatus.SUCCEEDED
    assert [r.step for r in history(sessions, again)] == [2, 3]


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_stop_of_the_service_leaves_a_paused_run_paused(
        sessions: sessionmaker[Session], policy: str) -> None:
    run_id = a_run(sessions, epochs=5, pause_at=3)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    with sessions.begin() as session:
        assert lifecycle.resolve_interrupted(session, policy) == []
    assert run_row(sessions, run_id).status == "paused"
    assert checkpoint_epoch(sessions, run_id) == 3


def test_pause_and_resume_write_their_events(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        Webhooks(own(session), BOX).create(url="https://hooks.example.com/x", events=["run.*"],
                                           description=None, enabled=True, most=20)
    run_id = a_run(sessions, epochs=4, pause_at=2)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    resume(sessions, run_id, None)
    with sessions.begin() as session:
        lifecycle.request_pause(session, run_id, None)  # queued: paused at once
    resume(sessions, run_id, None)
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    with sessions() as session:
        rows = session.scalars(select(WebhookEventRow).order_by(WebhookEventRow.seq)).all()
        found = [(row.type, json.loads(row.body)["data"]) for row in rows]
    assert [t for t, _ in found] == ["run.created", "run.started", "run.paused", "run.resumed",
                                     "run.paused", "run.resumed", "run.succeeded"]
    assert [(d["status"], d["epochs_completed"]) for _, d in found[2:6]] == [
        ("paused", 2), ("queued", 2), ("paused", 2), ("queued", 2)]


def test_a_paused_run_resumed_to_end_where_it_paused_ends_as_a_run_of_that_many_epochs(
        sessions: sessionmaker[Session]) -> None:
    """Successive halving's pruned trial: resumed with ``end``, it trains nothing more and
    succeeds with the final params, loss and metrics of a run asked for 3 epochs."""
    control = a_run(sessions, epochs=3, **EVERYTHING)
    assert execute_run(sessions, control) == RunStatus.SUCCEEDED
    run_id = a_run(sessions, epochs=27, dataset_id=run_row(sessions, control).dataset_id,
                   pause_at=3, **EVERYTHING)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    with sessions.begin() as session, pytest.raises(ValueError, match="not given with end"):
        lifecycle.resume_run(session, run_id, 9, end=True)
    with sessions.begin() as session:
        assert lifecycle.resume_run(session, run_id, end=True).epochs == 3
    assert execute_run(sessions, run_id) == RunStatus.SUCCEEDED
    same_run(sessions, run_id, control)
    assert model_row(sessions, run_id).params == run_row(sessions, control).final_params
    assert model_row(sessions, run_id).epochs_trained == 3


def kept_measure(sessions: sessionmaker[Session], run_id: str) -> tuple[Any, Any]:
    with sessions() as session:
        return session.execute(select(CheckpointRow.loss, CheckpointRow.metrics)
                               .where(CheckpointRow.run_id == run_id)).one()


def test_a_pause_keeps_the_models_measure_with_its_checkpoint_bit_for_bit(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The pausing attempt keeps its loop's outcome at the pause with the checkpoint; a
    study's rung reads it (``measure``) as it is, and it is, bit for bit, what the loop
    rebuilt from the checkpoint measures (as ``measure`` still does for a checkpoint from
    before revision 0011, which has none). A checkpoint taken without a pause (a worker
    handing the run back) keeps none."""
    run_id = a_run(sessions, epochs=9, pause_at=3, **EVERYTHING)
    assert execute_run(sessions, run_id) == RunStatus.PAUSED
    loss, metrics = kept_measure(sessions, run_id)
    assert loss is not None and set(metrics) >= {"mae", "val_loss"}, metrics
    with sessions() as session:
        kept = studies.measure(session, run_id)
    with sessions.begin() as session:  # as a checkpoint written before revision 0011
        session.execute(update(CheckpointRow).where(CheckpointRow.run_id == run_id)
                        .values(loss=None, metrics=None))
    with sessions() as session:
        rebuilt = studies.measure(session, run_id)
    assert (kept.loss, kept.metrics) == (rebuilt.loss, rebuilt.metrics) == (loss, metrics)
    assert kept.params.keys() == rebuilt.params.keys()
    assert all(np.array_equal(kept.params[k], rebuilt.params[k]) for k in kept.params)

    handed = a_run(sessions, epochs=9, pause_at=3, **EVERYTHING)
    assert execute_run(sessions, handed) == RunStatus.PAUSED
    resume(sessions, handed, None)
    assert execute_run(sessions, handed, draining=lambda: True) == RunStatus.QUEUED
    assert checkpoint_epoch(sessions, handed) == 3 and kept_measure(sessions, handed) == (
        None, None)

    def rebuild(*args: Any) -> Any:
        raise AssertionError("measured again")

    paused = a_run(sessions, epochs=9, pause_at=3,
                   dataset_id=run_row(sessions, run_id).dataset_id, **EVERYTHING)
    assert execute_run(sessions, paused) == RunStatus.PAUSED
    monkeypatch.setattr(studies.Attempt, "load", rebuild)
    with sessions() as session:
        again = studies.measure(session, paused)
    assert (again.loss, again.metrics) == (kept.loss, kept.metrics)
