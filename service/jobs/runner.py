"""Execute one run: load it from the store, train epoch by epoch, write history as it goes."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.store import repo
from service.store.codec import unpack_vector
from service.training.loop import Diverged, fit
from service.training.models import LinearModel
from service.training.optimizers import make_optimizer
from service.training.records import EpochRecord, Outcome

log = logging.getLogger("tapeline.jobs")

# History is written in batches at most this far apart, so live readers see epochs arrive
# while a run trains without a commit per epoch for runs of many tiny epochs.
FLUSH_SECONDS = 0.02
# How often a running job also looks at its status in the store (a cancel from elsewhere).
STATUS_POLL_SECONDS = 0.25


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
    with sessions.begin() as session:
        run = repo.start_run(session, run_id)
        if run is None:
            return None
        x, y = repo.load_arrays(session, run.dataset_id)
        spec = dict(run.optimizer)
        model = LinearModel(unpack_vector(run.initial_W), run.initial_b, dtype=run.dtype)
        epochs, batch_size, shuffle_seed = run.epochs, run.batch_size, run.shuffle_seed

    pending: list[EpochRecord] = []
    completed = 0
    last_flush = last_poll = time.monotonic()
    status_says_stop = False

    def flush(session: Session | None = None) -> None:
        nonlocal last_flush
        if pending:
            if session is None:
                with sessions.begin() as own:
                    repo.append_epochs(own, run, pending)
                announce(run_id)
            else:
                repo.append_epochs(session, run, pending)
            pending.clear()
        last_flush = time.monotonic()

    def finish(status: str, **outcome: Any) -> None:
        with sessions.begin() as session:
            flush(session)
            repo.finish_run(session, run_id, status, completed=completed, **outcome)

    def should_stop() -> bool:
        nonlocal last_poll, status_says_stop
        if cancelled() or status_says_stop:
            return True
        if time.monotonic() - last_poll >= STATUS_POLL_SECONDS:
            last_poll = time.monotonic()
            with sessions() as session:
                status_says_stop = repo.run_status(session, run_id) in (None, "cancelling")
        return status_says_stop

    status: str
    try:
        for item in fit(
            model,
            x,
            y,
            epochs=epochs,
            optimizer=make_optimizer(spec),
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            should_stop=should_stop,
        ):
            if isinstance(item, Outcome):
                if item.cancelled:
                    status = "cancelled"
                    finish(
                        status,
                        error=(
                            "cancelled",
                            f"cancelled on request after {completed} epochs",
                            completed,
                        ),
                    )
                else:
                    status = "succeeded"
                    finish(status, final=(item.W, item.b, item.loss))
                break
            pending.append(item)
            completed += 1
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                flush()
    except Diverged as diverged:
        status = "diverged"
        finish(status, error=("diverged", diverged.detail, diverged.epoch))
    except Exception:  # any other failure ends the run, never the worker
        # Clients read error.detail: it says what happened and where to look, never how.
        reference = uuid.uuid4().hex[:12]
        log.exception("run %s failed", run_id, extra={"fields": {"reference": reference}})
        status = "failed"
        pending.clear()
        detail = f"the run failed unexpectedly; the server log has the details (ref {reference})"
        with sessions.begin() as session:
            repo.finish_run(session, run_id, status, error=("error", detail, None))
    announce(run_id)
    return status
