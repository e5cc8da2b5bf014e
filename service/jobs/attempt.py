"""One attempt of a run, as an object whose methods are its steps: claim the run (fenced) and
load it with its checkpoint from the store, train epoch by epoch, flush history and checkpoints
as it goes, then finish the run, pause it at an epoch boundary when asked (``pause_at``), or
release it to the queue when the worker drains.

Every write of an attempt is fenced: once another attempt has claimed the run, the store
refuses them (:class:`~service.store.lifecycle.Fenced`) and this one stops, writing nothing.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from service.config import Settings
from service.jobs.checkpoint import pack_checkpoint, unpack_checkpoint
from service.jobs.heartbeat import Heartbeat
from service.store import keys, lifecycle, repo
from service.store.codec import unpack_params
from service.store.tables import FINAL_STATUSES, RunRow, RunStatus
from service.training.kinds import Model
from service.training.loop import Diverged, Examples, Fit, validation_split
from service.training.records import EpochRecord, FitSpec, LoopState, Outcome
from service.training.specs import RunSpec, ValidationFraction, stored_kind

log = logging.getLogger("tapeline.jobs")

# History is written in batches at most this far apart, so live readers see epochs arrive
# while a run trains without a commit per epoch for runs of many tiny epochs.
FLUSH_SECONDS = 0.02
# How often a running job also looks at its status in the store (a cancel from elsewhere).
STATUS_POLL_SECONDS = 0.25


@functools.cache
def one_blas_thread() -> object:
    """Limit this process's BLAS to one thread, once. A worker trains one run on one core
    while the other workers use the others; BLAS threads only compete with them, and after a
    large product (an epoch's full-data pass) they spin on and slow the many small products
    of the mini-batches that follow (by half, on two cores)."""
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class Claim:
    """Who trains and how: the worker's name (logged and stored with the run), how long a
    silent worker keeps its runs, how many attempts a run gets, how often a large model
    checkpoints, whether steps are compiled (the worker's ``TAPELINE_COMPILE``; ``None``:
    the environment's, read at each run), and the byte quota of a tenant without one of its
    own (``TAPELINE_TENANT_MAX_STORED_BYTES``)."""

    worker: str = "local"
    timeout: float = 30.0
    max_attempts: int = 3
    checkpoint_seconds: float = 5.0
    compile: bool | None = None
    max_stored_bytes: int = 1024**3

    @classmethod
    def of(cls, settings: Settings, worker: str) -> Claim:
        """How a worker named ``worker`` claims runs under these settings."""
        return cls(worker=worker, timeout=settings.worker_timeout,
                   max_attempts=settings.max_attempts,
                   checkpoint_seconds=settings.checkpoint_seconds, compile=settings.compile,
                   max_stored_bytes=settings.tenant_max_stored_bytes)


@dataclass(frozen=True)
class Hooks:
    """How an attempt and the process running it talk: ``cancelled`` and ``draining`` are
    asked at every epoch boundary; ``looked`` too: a number that changes whenever the process
    was told the run's controls changed in the store (a pause asked), so the attempt reads
    them at once rather than at its next timed look; ``announce`` is told whenever new history
    is stored, with whether the run ended (None: not known), ``stored`` how many epochs were."""

    cancelled: Callable[[], bool] = lambda: False
    draining: Callable[[], bool] = lambda: False
    looked: Callable[[], int] = lambda: 0
    announce: Callable[[str, bool | None], None] = lambda run_id, ended: None
    stored: Callable[[int], None] = lambda count: None


def execute_run(
    sessions: sessionmaker[Session],
    run_id: str,
    *,
    claim: Claim | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    draining: Callable[[], bool] = lambda: False,
    announce: Callable[[str, bool | None], None] = lambda run_id, ended: None,
    stored: Callable[[int], None] = lambda count: None,
    looked: Callable[[], int] = lambda: 0,
) -> str | None:
    """Claim the run ``run_id`` with a new attempt and train it from its checkpoint (or its
    start) to its end; return its final status, ``"queued"`` when the worker handed it back
    (``draining``), or ``None`` if it was not claimable (or this attempt lost it)."""
    one_blas_thread()
    hooks = Hooks(cancelled, draining, looked, announce, stored)
    attempt = Attempt.claim(sessions, run_id, claim or Claim(), hooks)
    return None if attempt is None else attempt.train()


@dataclass(frozen=True)
class Loaded:
    """What an attempt trains: the model (from its checkpoint, if the run has one), the
    training and validation examples, how to train, and the loop's state to resume from."""

    model: Model
    train: Examples
    validation: Examples | None
    spec: FitSpec
    state: LoopState | None


class Attempt:
    """One attempt of one run, claimed and loaded: :meth:`train` runs it to its end."""

    @classmethod
    def claim(cls, sessions: sessionmaker[Session], run_id: str, claim: Claim,
              hooks: Hooks) -> Attempt | None:
        """Start a new attempt of the run and load it, in one transaction; ``None`` when the
        run is not claimable (final, cancelled, held by a live worker, out of attempts)."""
        # Before the claim reads the run: a pause asked after this read is told by ``looked``.
        looked = hooks.looked()
        with sessions.begin() as session:
            started = lifecycle.claim_run(session, run_id, claim.worker, timeout=claim.timeout,
                                          max_attempts=claim.max_attempts)
            if started is None:
                return None
            loaded = cls.load(session, started)
        hooks.announce(run_id, False)
        log.info("run %s attempt %d started at epoch %d", run_id, started.attempt,
                 started.checkpoint_epoch,
                 extra={"fields": {"run_id": run_id, "attempt": started.attempt,
                                   "worker": claim.worker}})
        return cls(sessions, started, loaded, claim, hooks, looked)

    @staticmethod
    def load(session: Session, started: lifecycle.Started) -> Loaded:
        """The run's model at its checkpoint (or its start), its examples and its spec."""
        run = started.run
        kind = stored_kind(started)
        spec = RunSpec.from_columns(run)
        state = None
        params = unpack_params(run.initial_params)
        if started.checkpoint is not None:
            saved = unpack_checkpoint(started.checkpoint)
            params, state = saved.params, saved.state
        model = Model(kind, params, dtype=run.dtype)
        x, y = repo.load_arrays(session, run.dataset_id)
        train, validation = Examples(x, y), None
        if run.validation_dataset_id is not None:
            validation = Examples(*repo.load_arrays(session, run.validation_dataset_id))
        elif isinstance(spec.validation, ValidationFraction):
            train, validation = validation_split(train, spec.validation.fraction)
        return Loaded(model, train, validation, spec.fit(), state)

    def __init__(self, sessions: sessionmaker[Session], started: lifecycle.Started,
                 loaded: Loaded, claim: Claim, hooks: Hooks, looked: int = 0) -> None:
        """Ready to train: the loop built on what was loaded, the heartbeat not yet beating."""
        self.run: RunRow = started.run
        self.run_id: str = started.run.id
        self.number: int = started.attempt
        self.completed: int = started.checkpoint_epoch  # epochs of history stored or pending
        self.pending: list[EpochRecord] = []
        self._sessions, self._claim, self._hooks = sessions, claim, hooks
        self._model = loaded.model
        self._every_row = loaded.spec.record_params == 1
        self._fit = Fit(loaded.model, loaded.train, loaded.spec, loaded.validation,
                        state=loaded.state, compiled=claim.compile)
        self._context = {"fields": {"run_id": self.run_id, "attempt": self.number,
                                    "worker": claim.worker}}
        self._last_flush = self._last_checkpoint = time.monotonic()
        self._last_poll = -math.inf  # the first boundary reads the controls: see should_stop
        self._looked = looked
        self._status_says_stop = self.run.status == RunStatus.CANCELLING
        self._pause_at: int | None = self.run.pause_at
        self._handing_over = self._pausing = False
        self._over: lifecycle.OverQuota | None = None  # the byte quota ended the run
        self._beat = Heartbeat(sessions, self.run_id, self.number,
                               max(claim.timeout / 3, 0.05))

    def train(self) -> str | None:
        """Train to the run's end and record it; the run's final status, ``"queued"`` when it
        was handed back, ``None`` when this attempt lost it (it then writes nothing more)."""
        self._beat.start()
        status: str | None
        try:
            status = self._epochs()
        except lifecycle.Fenced:
            log.warning("run %s: attempt %d lost the run to another worker; it writes nothing "
                        "more", self.run_id, self.number, extra=self._context)
            self._beat.stop()
            return None
        except lifecycle.OverQuota:
            try:
                status = self.finish(RunStatus.FAILED)  # failed for the quota: see finish
            except lifecycle.Fenced:
                status = None
        except Diverged as diverged:
            status = RunStatus.DIVERGED
            try:
                status = self.finish(status, error=("diverged", diverged.detail,
                                                    diverged.epoch))
            except lifecycle.Fenced:
                status = None
        except Exception:  # any other failure ends the run, never the worker
            status = RunStatus.FAILED
            try:
                self.fail()
            except lifecycle.Fenced:
                status = None
        finally:
            self._beat.stop()
        self._hooks.announce(self.run_id, None if status is None else status in FINAL_STATUSES)
        return status

    def _epochs(self) -> str | None:
        """The loop: each epoch's record is kept pending and flushed every ``FLUSH_SECONDS``;
        the outcome ends the run (or hands it back)."""
        for item in self._fit.run(self.should_stop):
            if isinstance(item, Outcome):
                return self.end(item)
            self.pending.append(item)
            self.completed += 1
            if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self.flush()
        return None  # pragma: no cover - the loop always ends with an outcome

    def should_stop(self) -> bool:
        """Asked at every epoch boundary: stop for a cancel (of this process or in the store),
        a pause (the run's ``pause_at`` reached) or a drain; raises
        :class:`~service.store.lifecycle.Fenced` once the heartbeat saw the run taken over.
        The run's status and ``pause_at`` are read from the store at the first boundary, at
        any boundary after this process was told they changed (``looked``: the local
        executor's pause), and otherwise every ``STATUS_POLL_SECONDS`` (a queue worker, told
        nothing, sees a pause within that much of its next boundary)."""
        if self._beat.lost:
            raise lifecycle.Fenced(self.run_id, self.number)
        if self._hooks.cancelled() or self._status_says_stop:
            return True
        looked = self._hooks.looked()
        if looked != self._looked or time.monotonic() - self._last_poll >= STATUS_POLL_SECONDS:
            self._last_poll, self._looked = time.monotonic(), looked
            with self._sessions() as session:
                status, self._pause_at = lifecycle.run_control(session, self.run_id)
            self._status_says_stop = status in (None, RunStatus.CANCELLING)
            if self._status_says_stop:
                return True
        if self._pause_at is not None and self._fit.epoch >= self._pause_at:
            self._pausing = True
            return True
        if self._hooks.draining():
            self._handing_over = True
            return True
        return False

    def flush(self) -> None:
        """Store the pending epochs (fenced) and, when one is due, a checkpoint; then tell
        readers. Raises :class:`~service.store.lifecycle.OverQuota` once the epochs that fit
        the tenant's byte quota are stored and the next would not."""
        with self._sessions.begin() as session:
            self._write(session)
        self._hooks.announce(self.run_id, False)
        if self._over is not None:
            raise self._over

    def _write(self, session: Session, keep: bool = False,
               measured: Outcome | None = None) -> None:
        """Store the pending epochs (or only beat when there are none) and a checkpoint at
        this epoch boundary when one is due (or ``keep``; none once the quota ended it),
        with the loop's ``measured`` outcome there when it has one."""
        if not self._append_pending(session):
            lifecycle.heartbeat(session, self.run_id, self.number)
        if self._over is None and (keep or self._checkpoint_due()):
            state = self._fit.state()
            lifecycle.save_checkpoint(
                session, self.run_id, self.number, state.epoch,
                pack_checkpoint(self._model.params(), state),
                None if measured is None else (measured.loss, measured.metrics))
            self._last_checkpoint = time.monotonic()
        self._last_flush = time.monotonic()

    def _append_pending(self, session: Session) -> bool:
        """Store the pending epochs, fenced, and within the tenant's byte quota when it
        applies to the run (those that fit: the others are dropped, and ``_over`` says the
        quota ended the run); whether there were any."""
        if not self.pending:
            return False
        quota = None
        if self.run.stored_quota:
            defaults = keys.Quotas(0, self._claim.max_stored_bytes, "")
            quota = keys.quotas(session, self.run.owner, defaults).max_stored_bytes
        stored = len(self.pending)
        try:
            lifecycle.append_epochs(session, self.run, self.pending, self.number, quota)
        except lifecycle.OverQuota as over:
            self._over, stored = over, over.stored
            self.completed -= len(self.pending) - stored
        self._hooks.stored(stored)
        self.pending.clear()
        return True

    def _checkpoint_due(self) -> bool:
        """A run that records params in every row checkpoints at every flush (its epochs are
        cheap to store anyway), any other every ``checkpoint_seconds``."""
        return (self._every_row
                or time.monotonic() - self._last_checkpoint >= self._claim.checkpoint_seconds)

    def end(self, outcome: Outcome) -> str:
        """The loop's outcome: hand the run back (draining), or finish it cancelled or
        succeeded; the run's status."""
        if outcome.cancelled and self._pausing and self.pause(outcome):
            return RunStatus.PAUSED
        if outcome.cancelled and self._handing_over:
            self.release()
            return RunStatus.QUEUED
        if outcome.cancelled:
            return self.finish(RunStatus.CANCELLED, error=(
                "cancelled", f"cancelled on request after {self.completed} epochs",
                self.completed))
        return self.finish(RunStatus.SUCCEEDED, final=outcome)

    def finish(self, status: str, **outcome: Any) -> str:
        """Store the pending epochs and end the run with ``status`` (and ``final`` params or
        an ``error``), in one fenced transaction; the status it ended with: ``failed`` with
        reason ``quota`` instead when the tenant's byte quota stopped its history (the
        epochs stored until then are kept)."""
        with self._sessions.begin() as session:
            self._append_pending(session)
            if self._over is not None:
                status, outcome = RunStatus.FAILED, {"error": self._quota_error(self._over)}
            lifecycle.finish_run(session, self.run_id, status, completed=self.completed,
                                 attempt=self.number, **outcome)
        return status

    def _quota_error(self, over: lifecycle.OverQuota) -> tuple[str, str, int]:
        log.warning("run %s stopped at epoch %d: %s", self.run_id, self.completed, over,
                    extra=self._context)
        return ("quota", f"{over}: the run stopped at epoch {self.completed}, its history up "
                         f"to there kept", self.completed)

    def release(self) -> None:
        """Hand the run back to the queue with a checkpoint here (the worker is draining):
        the next attempt resumes at this epoch. When the byte quota stopped its history
        instead, raises :class:`~service.store.lifecycle.OverQuota` (the run is then
        finished, not handed back)."""
        with self._sessions.begin() as session:
            self._write(session, keep=True)
            if self._over is None:
                lifecycle.release_run(session, self.run_id, self.number)
        if self._over is not None:
            raise self._over
        log.info("run %s handed back at epoch %d", self.run_id, self.completed,
                 extra=self._context)

    def pause(self, outcome: Outcome) -> bool:
        """Pause the run here: its epochs and a checkpoint at this boundary stored, with the
        loop's ``outcome`` there (the objective and metrics a study's rung reads), and the run
        paused, held by nobody, in one fenced transaction; the next attempt (once resumed)
        resumes at this epoch. False when the run was cancelled meanwhile (the caller ends
        it). When the byte quota stopped its history instead, raises
        :class:`~service.store.lifecycle.OverQuota` (the run is then finished)."""
        with self._sessions.begin() as session:
            self._write(session, keep=True, measured=outcome)
            paused = self._over is None and lifecycle.pause_run(session, self.run_id,
                                                                self.number)
        if self._over is not None:
            raise self._over
        if paused:
            log.info("run %s paused at epoch %d", self.run_id, self.completed,
                     extra=self._context)
        return paused

    def fail(self) -> None:
        """End the run as failed by an unexpected error (called while handling it): the log
        has the traceback under a reference, the client's detail says where to look."""
        # Clients read error.detail: it says what happened and where to look, never how.
        reference = uuid.uuid4().hex[:12]
        log.exception("run %s failed", self.run_id,
                      extra={"fields": {"reference": reference, **self._context["fields"]}})
        self.pending.clear()
        detail = f"the run failed unexpectedly; the server log has the details (ref {reference})"
        with self._sessions.begin() as session:
            lifecycle.finish_run(session, self.run_id, RunStatus.FAILED,
                                 error=("error", detail, None), attempt=self.number)

