"""Execute one run: load it from the store, train epoch by epoch, write history as it goes."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from service.store import lifecycle, repo
from service.store.codec import unpack_params
from service.store.tables import RunRow, RunStatus
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


def execute_run(
    sessions: sessionmaker[Session],
    run_id: str,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    announce: Callable[[str], None] = lambda run_id: None,
) -> str | None:
    """Train the queued run ``run_id`` to its end and return its final status (``None`` if it
    was no longer queued). ``cancelled`` is polled at every epoch boundary; ``announce`` is
    called whenever new history is stored."""
    one_blas_thread()
    with sessions.begin() as session:
        started = lifecycle.start_run(session, run_id)
        if started is None:
            return None
        run = started.run
        kind = make_kind(started.kind, started.config)
        model = Model(kind, unpack_params(run.initial_params), dtype=run.dtype)
        x, y = repo.load_arrays(session, run.dataset_id)
        train, validation = Examples(x, y), None
        if run.validation_dataset_id is not None:
            validation = Examples(*repo.load_arrays(session, run.validation_dataset_id))
        elif run.options["validation"] is not None:
            train, validation = validation_split(train, run.options["validation"]["fraction"])
        spec = fit_spec(run)

    pending: list[EpochRecord] = []
    completed = 0
    last_flush = last_poll = time.monotonic()
    status_says_stop = False

    def flush(session: Session | None = None) -> None:
        nonlocal last_flush
        if pending:
            if session is None:
                with sessions.begin() as own:
                    lifecycle.append_epochs(own, run, pending)
                announce(run_id)
            else:  # finishing: finish_run counts the epochs in the same transaction
                lifecycle.append_epochs(session, run, pending, count=False)
            pending.clear()
        last_flush = time.monotonic()

    def finish(status: str, **outcome: Any) -> None:
        with sessions.begin() as session:
            flush(session)
            lifecycle.finish_run(session, run_id, status, completed=completed, **outcome)

    def should_stop() -> bool:
        nonlocal last_poll, status_says_stop
        if cancelled() or status_says_stop:
            return True
        if time.monotonic() - last_poll >= STATUS_POLL_SECONDS:
            last_poll = time.monotonic()
            with sessions() as session:
                status_says_stop = lifecycle.run_status(session, run_id) in (None,
                                                                        RunStatus.CANCELLING)
        return status_says_stop

    status: str
    try:
        for item in Fit(model, train, spec, validation).run(should_stop):
            if isinstance(item, Outcome):
                if item.cancelled:
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
    except Diverged as diverged:
        status = RunStatus.DIVERGED
        finish(status, error=("diverged", diverged.detail, diverged.epoch))
    except Exception:  # any other failure ends the run, never the worker
        # Clients read error.detail: it says what happened and where to look, never how.
        reference = uuid.uuid4().hex[:12]
        log.exception("run %s failed", run_id, extra={"fields": {"reference": reference}})
        status = RunStatus.FAILED
        pending.clear()
        detail = f"the run failed unexpectedly; the server log has the details (ref {reference})"
        with sessions.begin() as session:
            lifecycle.finish_run(session, run_id, status, error=("error", detail, None))
    announce(run_id)
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
