"""A run's attempt on a real SQLite store, with no server: trained to each of its ends
(succeeded, cancelled here or in the store, handed back and resumed bit for bit, diverged,
failed), and the ways it loses the run (taken over while finishing, noticed by its heartbeat),
and its heartbeat outliving a store that is away for a moment."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.jobs import attempt as attempt_module
from service.jobs.attempt import Claim, execute_run
from service.jobs.heartbeat import Heartbeat
from service.store import lifecycle, repo
from service.store.codec import unpack_params
from service.store.tables import RunStatus
from service.training.kinds import Model, make_kind
from service.training.loop import Examples, fit
from service.training.records import EpochRecord, FitSpec, Outcome
from tests.jobs.stored import (
    MINI_BATCHES,
    a_run,
    checkpoint_epoch,
    history,
    model_row,
    run_row,
)


class Calls:
    """A hook of an attempt that records its calls and answers ``answer(call number)``."""

    def __init__(self, answer: Callable[[int], Any] = lambda n: False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._answer = answer

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self._answer(len(self.calls))


def losses_and_params(sessions: sessionmaker[Session], run_id: str
                      ) -> list[tuple[float, dict[str, np.ndarray]]]:
    """Each stored epoch's loss and params."""
    return [(row.loss, unpack_params(row.params)) for row in history(sessions, run_id)
            if row.params is not None]


def same_history(mine: list[tuple[float, dict[str, np.ndarray]]],
                 theirs: list[tuple[float, dict[str, np.ndarray]]]) -> None:
    assert len(mine) == len(theirs)
    for (loss_a, params_a), (loss_b, params_b) in zip(mine, theirs, strict=True):
        assert loss_a == loss_b
        for name in params_a:
            assert params_a[name].dtype == params_b[name].dtype
            assert np.array_equal(params_a[name], params_b[name]), name


def test_an_attempt_trains_a_run_to_its_end_as_the_loop_does(
        sessions: sessionmaker[Session]) -> None:
    """Every epoch stored and announced, the final params become the model's, the checkpoint
    goes, and the history is the loop's own on the stored run's data and settings."""
    run_id = a_run(sessions, epochs=6)
    announce, stored = Calls(), Calls()
    assert execute_run(sessions, run_id, claim=Claim(worker="w"), announce=announce,
                       stored=stored) == RunStatus.SUCCEEDED
    run = run_row(sessions, run_id)
    assert (run.status, run.attempt, run.worker, run.epochs_completed) == ("succeeded", 1, "w", 6)
    assert [row.epoch for row in history(sessions, run_id)] == list(range(6))
    assert sum(count for count, in stored.calls) == 6
    assert announce.calls[0] == (run_id, False) and announce.calls[-1] == (run_id, True)
    assert checkpoint_epoch(sessions, run_id) is None
    trained = model_row(sessions, run_id)
    assert trained.epochs_trained == 6 and trained.last_loss == run.final_loss
    assert trained.params == run.final_params

    with sessions() as session:
        x, y = repo.load_arrays(session, run.dataset_id)
    model = Model(make_kind("linear", {"features": 2}),
                  {"W": np.zeros(2), "b": np.array(0.0)}, dtype="float32")
    control = list(fit(model, Examples(x, y), FitSpec(
        epochs=6, optimizer={"kind": "sgd", "learning_rate": 0.1}, loss="mse")))
    records = [item for item in control if isinstance(item, EpochRecord)]
    assert isinstance(control[-1], Outcome) and control[-1].loss == run.final_loss
    same_history(losses_and_params(sessions, run_id),
                 [(r.loss, r.params or {}) for r in records])


def test_a_run_that_is_not_claimable_is_left_alone(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions)
    with sessions.begin() as session:
        repo.Repository(session, "default").request_cancel(run_id)  # cancelled while queued
    announce = Calls()
    assert execute_run(sessions, run_id, announce=announce) is None
    assert announce.calls == [] and run_row(sessions, run_id).attempt == 0


def test_a_cancel_stops_the_run_at_an_epoch_boundary(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions, epochs=50)
    announce = Calls()
    cancelled = Calls(lambda call: call > 2)  # asked before epochs 0, 1, then 2: stop
    assert execute_run(sessions, run_id, cancelled=cancelled,
                       announce=announce) == RunStatus.CANCELLED
    run = run_row(sessions, run_id)
    assert (run.status, run.error_reason, run.error_epoch) == ("cancelled", "cancelled", 2)
    assert run.error_detail == "cancelled on request after 2 epochs"
    assert [row.epoch for row in history(sessions, run_id)] == [0, 1]
    assert announce.calls[-1] == (run_id, True)
    assert model_row(sessions, run_id).epochs_trained == 0  # a cancelled run trains nothing


def test_a_cancel_asked_in_the_store_is_seen_by_the_attempt(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (an API replica) marks the run cancelling: the attempt reads its status
    every ``STATUS_POLL_SECONDS`` and ends it cancelled."""
    monkeypatch.setattr(attempt_module, "STATUS_POLL_SECONDS", 0.0)
    run_id = a_run(sessions, epochs=50)

    def elsewhere(call: int) -> bool:
        if call == 3:
            with sessions.begin() as session:
                assert repo.Repository(session, "default").request_cancel(run_id).status == \
                    "cancelling"
        return False

    assert execute_run(sessions, run_id, cancelled=Calls(elsewhere)) == RunStatus.CANCELLED
    run = run_row(sessions, run_id)
    assert (run.status, run.epochs_completed) == ("cancelled", 2)


def test_a_draining_worker_hands_the_run_back_and_the_next_attempt_resumes_it_bit_for_bit(
        sessions: sessionmaker[Session]) -> None:
    """Shuffled mini-batches under Adam: handed back after 3 epochs with a checkpoint there,
    then resumed by another attempt, the run stores what an uninterrupted one stores."""
    control = a_run(sessions, epochs=8, **MINI_BATCHES)
    assert execute_run(sessions, control) == RunStatus.SUCCEEDED
    run_id = a_run(sessions, epochs=8, dataset_id=run_row(sessions, control).dataset_id,
                   **MINI_BATCHES)
    announce = Calls()
    assert execute_run(sessions, run_id, claim=Claim(worker="a"), draining=Calls(lambda n: n > 3),
                       announce=announce) == RunStatus.QUEUED
    run = run_row(sessions, run_id)
    assert (run.status, run.worker, run.heartbeat_at, run.handbacks) == ("queued", None, None, 1)
    assert checkpoint_epoch(sessions, run_id) == 3 and run.epochs_completed == 3
    assert announce.calls[-1] == (run_id, False)  # it goes on
    assert execute_run(sessions, run_id, claim=Claim(worker="b")) == RunStatus.SUCCEEDED
    resumed = run_row(sessions, run_id)
    assert (resumed.attempt, resumed.worker, resumed.epochs_completed) == (2, "b", 8)
    same_history(losses_and_params(sessions, run_id), losses_and_params(sessions, control))
    assert resumed.final_params == run_row(sessions, control).final_params


def test_a_large_model_checkpoints_every_checkpoint_seconds(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that does not record params checkpoints only when ``checkpoint_seconds`` have
    passed at a flush; one that does, at every flush."""
    monkeypatch.setattr(attempt_module, "FLUSH_SECONDS", 0.0)
    seen: dict[str, list[int | None]] = {"rare": [], "due": [], "every": []}
    for name, record_params, seconds in (("rare", False, 3600.0), ("due", False, 0.0),
                                         ("every", True, 3600.0)):
        run_id = a_run(sessions, epochs=4, record_params=record_params)
        announce = Calls(lambda n, run_id=run_id, name=name: seen[name].append(
            checkpoint_epoch(sessions, run_id)))
        execute_run(sessions, run_id, claim=Claim(checkpoint_seconds=seconds), announce=announce)
    assert seen["rare"] == [None] * 6  # at its start, after each of 4 epochs, at its end
    for name in ("due", "every"):  # the checkpoint goes with the finished run
        assert seen[name] == [None, 1, 2, 3, 4, None]


def test_a_diverging_run_ends_diverged_at_its_epoch(sessions: sessionmaker[Session]) -> None:
    run_id = a_run(sessions, epochs=500, optimizer={"kind": "sgd", "learning_rate": 1e4})
    announce = Calls()
    assert execute_run(sessions, run_id, announce=announce) == RunStatus.DIVERGED
    run = run_row(sessions, run_id)
    assert run.status == "diverged" and run.error_reason == "diverged"
    assert run.error_epoch is not None and 0 < run.error_epoch < 500
    assert str(run.error_epoch) in (run.error_detail or "")
    assert announce.calls[-1] == (run_id, True)


def test_an_unexpected_error_fails_the_run_and_the_log_has_its_reference(
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    run_id = a_run(sessions, epochs=5)

    def broken(count: int) -> None:
        raise RuntimeError("the disk is on fire")

    with caplog.at_level(logging.ERROR, logger="tapeline.jobs"):
        assert execute_run(sessions, run_id, stored=broken) == RunStatus.FAILED
    run = run_row(sessions, run_id)
    assert (run.status, run.error_reason, run.epochs_completed) == ("failed", "error", 0)
    found = re.fullmatch(r"the run failed unexpectedly; the server log has the details "
                         r"\(ref ([0-9a-f]{12})\)", run.error_detail or "")
    assert found is not None and "fire" not in (run.error_detail or "")
    [logged] = [r for r in caplog.records if r.getMessage() == f"run {run_id} failed"]
    assert logged.exc_info is not None and "fire" in str(logged.exc_info[1])
    assert logged.fields["reference"] == found.group(1)  # type: ignore[attr-defined]
    assert history(sessions, run_id) == []


def test_an_attempt_that_loses_the_run_while_finishing_writes_nothing(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another attempt claims the run during its last epoch: the finishing transaction is
    refused as a whole (no epoch, no final params, no model update), and the attempt says
    nothing more of the run."""
    monkeypatch.setattr(attempt_module, "FLUSH_SECONDS", float("inf"))  # all pending till the end
    run_id = a_run(sessions, epochs=3)

    def taken_over(call: int) -> bool:
        if call == 3:  # before the last epoch
            with sessions.begin() as session:
                assert lifecycle.claim_run(session, run_id, "b", timeout=0.0,
                                           max_attempts=3) is not None
        return False

    announce = Calls()
    with caplog.at_level(logging.WARNING, logger="tapeline.jobs"):
        assert execute_run(sessions, run_id, claim=Claim(worker="a"), cancelled=Calls(taken_over),
                           announce=announce) is None
    run = run_row(sessions, run_id)
    assert (run.status, run.attempt, run.worker) == ("running", 2, "b")
    assert run.final_params is None and history(sessions, run_id) == []
    assert model_row(sessions, run_id).epochs_trained == 0
    assert announce.calls == [(run_id, False)]  # its start only
    assert f"run {run_id}: attempt 1 lost the run to another worker" in caplog.text


class Recorded(Heartbeat):
    """A heartbeat that the test can watch."""

    made: ClassVar[list[Heartbeat]] = []

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        Recorded.made.append(self)


def test_the_heartbeat_notices_a_takeover_and_the_attempt_stops_at_the_next_epoch(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """A long epoch with no flush: the heartbeat finds the run taken over, and the attempt
    stops at the next boundary without training on."""
    monkeypatch.setattr(attempt_module, "FLUSH_SECONDS", float("inf"))
    monkeypatch.setattr(attempt_module, "Heartbeat", Recorded)
    Recorded.made.clear()
    run_id = a_run(sessions, epochs=50)

    def taken_over(call: int) -> bool:
        if call == 2:
            with sessions.begin() as session:
                assert lifecycle.claim_run(session, run_id, "b", timeout=0.0,
                                           max_attempts=3) is not None
            deadline = time.monotonic() + 10
            while not Recorded.made[0].lost:
                assert time.monotonic() < deadline, "the heartbeat did not notice"
                time.sleep(0.01)
        return False

    cancelled = Calls(taken_over)
    assert execute_run(sessions, run_id, claim=Claim(timeout=0.15),
                       cancelled=cancelled) is None
    assert len(cancelled.calls) == 2  # it stopped at the next boundary
    assert history(sessions, run_id) == [] and run_row(sessions, run_id).attempt == 2


class Flaky:
    """Sessions whose transactions fail the first ``failures`` times a heartbeat opens one."""

    def __init__(self, sessions: sessionmaker[Session], failures: int) -> None:
        self._sessions = sessions
        self.failures = failures
        self.beats = 0

    def __call__(self) -> Session:
        return self._sessions()

    def begin(self) -> Any:
        if threading.current_thread().name.startswith("heartbeat-"):
            self.beats += 1
            if self.beats <= self.failures:
                raise OperationalError("UPDATE runs", {}, Exception("the store is away"))
        return self._sessions.begin()


def test_the_heartbeat_retries_when_the_store_is_away(
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    """Beats the store refuses (not a takeover) are tried again: the attempt keeps its run
    and trains it to its end."""
    run_id = a_run(sessions, epochs=50)
    flaky = Flaky(sessions, failures=3)

    def slow(call: int) -> bool:
        if call == 2:  # an epoch that takes long: the heartbeat fails three times, then beats
            deadline = time.monotonic() + 10
            while flaky.beats < 5:
                assert time.monotonic() < deadline, "the heartbeat gave up"
                time.sleep(0.01)
        return False

    with caplog.at_level(logging.WARNING, logger="tapeline.jobs"):
        status = execute_run(flaky, run_id, claim=Claim(timeout=0.15),  # type: ignore[arg-type]
                             cancelled=Calls(slow))
    assert status == RunStatus.SUCCEEDED
    assert caplog.text.count(f"heartbeat of run {run_id} failed") == 3
    assert run_row(sessions, run_id).attempt == 1
