"""Execute one attempt of a run: claim it (fenced), load it and its checkpoint from the store,
train epoch by epoch, write history and checkpoints as it goes, and hand it back when the
worker drains."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from service.jobs.checkpoint import pack_checkpoint, unpack_checkpoint
from service.store import lifecycle, repo
from service.store.codec import unpack_params
from service.store.tables import FINAL_STATUSES, RunRow, RunStatus
from service.training.kinds import Model, make_kind
from service.training.loop import Diverged, Examples, Fit, validation_split
from service.training.records import EarlyStopping, EpochRecord, FitSpec, Outcome

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
    checkpoints, and whether steps are compiled (the worker's ``TAPELINE_COMPILE``; ``None``:
    the environment's, read at each run)."""

    worker: str = "local"
    timeout: float = 30.0
    max_attempts: int = 3
    checkpoint_seconds: float = 5.0
    compile: bool | None = None


class Heartbeat:
    """A thread that shows the store this attempt is alive while an epoch takes long (a
    flush of history does it too), and notices when the attempt lost the run."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str, attempt: int,
                 every: float) -> None:
        self.lost = False
        self.status: str | None = None
        self._stop = threading.Event()
        self._args = (sessions, run_id, attempt)
        self._thread = threading.Thread(target=self._beat, args=(every,), daemon=True,
                                        name=f"heartbeat-{run_id}")
        self._thread.start()

    def _beat(self, every: float) -> None:
        sessions, run_id, attempt = self._args
        while not self._stop.wait(every):
            try:
                with sessions.begin() as session:
                    self.status = lifecycle.heartbeat(session, run_id, attempt)
            except lifecycle.Fenced:
                self.lost = True
                return
            except Exception:  # the store is away for a moment: try again next beat
                log.warning("heartbeat of run %s failed", run_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def execute_run(
    sessions: sessionmaker[Session],
    run_id: str,
    *,
    claim: Claim | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    draining: Callable[[], bool] = lambda: False,
    announce: Callable[[str, bool | None], None] = lambda run_id, ended: None,
    stored: Callable[[int], None] = lambda count: None,
) -> str | None:
    """Claim the run ``run_id`` with a new attempt and train it from its checkpoint (or its
    start) to its end; return its final status, ``"queued"`` when the worker handed it back
    (``draining``), or ``None`` if it was not claimable (or this attempt lost it).
    ``cancelled`` and ``draining`` are polled at every epoch boundary; ``announce`` is called
    whenever new history is stored, with whether the run ended (None: not known), ``stored``
    with how many epochs were."""
    one_blas_thread()
    claim = claim or Claim()
    with sessions.begin() as session:
        started = lifecycle.claim_run(session, run_id, claim.worker, timeout=claim.timeout,
                                      max_attempts=claim.max_attempts)
        if started is None:
            return None
        run, attempt = started.run, started.attempt
        kind = make_kind(started.kind, started.config)
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
        elif run.options["validation"] is not None:
            train, validation = validation_split(train, run.options["validation"]["fraction"])
        spec = fit_spec(run)
    announce(run_id, False)
    context = {"fields": {"run_id": run_id, "attempt": attempt, "worker": claim.worker}}
    log.info("run %s attempt %d started at epoch %d", run_id, attempt, started.checkpoint_epoch,
             extra=context)

    fit = Fit(model, train, spec, validation, state=state, compiled=claim.compile)
    pending: list[EpochRecord] = []
    completed = started.checkpoint_epoch
    last_flush = last_poll = last_checkpoint = time.monotonic()
    status_says_stop = run.status == RunStatus.CANCELLING
    handing_over = False
    beat = Heartbeat(sessions, run_id, attempt, max(claim.timeout / 3, 0.05))

    def checkpoint_due() -> bool:
        return run.record_params or time.monotonic() - last_checkpoint >= claim.checkpoint_seconds

    def flush(session: Session | None = None, keep: bool = False) -> None:
        """Store the pending epochs (fenced), and a checkpoint at this epoch boundary when one
        is due (or ``keep``)."""
        nonlocal last_flush, last_checkpoint
        if session is None:
            with sessions.begin() as own:
                flush(own, keep)
            announce(run_id, False)
            return
        if pending:
            lifecycle.append_epochs(session, run, pending, attempt)
            stored(len(pending))
            pending.clear()
        else:
            lifecycle.heartbeat(session, run_id, attempt)
        if keep or checkpoint_due():
            state_now = fit.state()
            lifecycle.save_checkpoint(session, run_id, attempt, state_now.epoch,
                                      pack_checkpoint(model.params(), state_now))
            last_checkpoint = time.monotonic()
        last_flush = time.monotonic()

    def finish(status: str, **outcome: Any) -> None:
        with sessions.begin() as session:
            if pending:
                lifecycle.append_epochs(session, run, pending, attempt)
                stored(len(pending))
                pending.clear()
            lifecycle.finish_run(session, run_id, status, completed=completed, attempt=attempt,
                                 **outcome)

    def should_stop() -> bool:
        nonlocal last_poll, status_says_stop, handing_over
        if beat.lost:
            raise lifecycle.Fenced(run_id, attempt)
        if cancelled() or status_says_stop:
            return True
        if draining():
            handing_over = True
            return True
        if time.monotonic() - last_poll >= STATUS_POLL_SECONDS:
            last_poll = time.monotonic()
            with sessions() as session:
                status_says_stop = lifecycle.run_status(session, run_id) in (None,
                                                                        RunStatus.CANCELLING)
        return status_says_stop

    status: str | None
    try:
        for item in fit.run(should_stop):
            if isinstance(item, Outcome):
                if item.cancelled and handing_over:
                    with sessions.begin() as session:
                        flush(session, keep=True)
                        lifecycle.release_run(session, run_id, attempt)
                    status = RunStatus.QUEUED
                    log.info("run %s handed back at epoch %d", run_id, completed, extra=context)
                elif item.cancelled:
                    status = RunStatus.CANCELLED
                    finish(
                        status,
                        error=(
                            "cancelled",
                            f"cancelled on request after {completed} epochs",
                            completed,
                        ),
                    )
                else:
                    status = RunStatus.SUCCEEDED
                    finish(status, final=item)
                break
            pending.append(item)
            completed += 1
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                flush()
        else:  # pragma: no cover - the loop always ends with an outcome
            status = None
    except lifecycle.Fenced:
        log.warning("run %s: attempt %d lost the run to another worker; it writes nothing "
                    "more", run_id, attempt, extra=context)
        beat.stop()
        return None
    except Diverged as diverged:
        status = RunStatus.DIVERGED
        try:
            finish(status, error=("diverged", diverged.detail, diverged.epoch))
        except lifecycle.Fenced:
            status = None
    except Exception:  # any other failure ends the run, never the worker
        # Clients read error.detail: it says what happened and where to look, never how.
        reference = uuid.uuid4().hex[:12]
        log.exception("run %s failed", run_id, extra={"fields": {"reference": reference,
                                                                 **context["fields"]}})
        status = RunStatus.FAILED
        pending.clear()
        detail = f"the run failed unexpectedly; the server log has the details (ref {reference})"
        try:
            with sessions.begin() as session:
                lifecycle.finish_run(session, run_id, status, error=("error", detail, None),
                                     attempt=attempt)
        except lifecycle.Fenced:
            status = None
    finally:
        beat.stop()
    announce(run_id, None if status is None else status in FINAL_STATUSES)
    return status


def fit_spec(run: RunRow) -> FitSpec:
    """How the loop trains a stored run."""
    options = run.options
    stopping = options["early_stopping"]
    return FitSpec(
        epochs=run.epochs,
        optimizer=dict(run.optimizer),
        loss=options["loss"],
        huber_delta=options["huber_delta"],
        l1=options["regularization"]["l1"],
        l2=options["regularization"]["l2"],
        batch_size=run.batch_size,
        shuffle=options["shuffle"],
        shuffle_seed=run.shuffle_seed,
        early_stopping=None if stopping is None else EarlyStopping(**stopping),
        record_params=run.record_params,
    )
