"""The studies' driver: the effectful side of a study's decisions.

:func:`advance` moves one study on from what the store holds, in one transaction under the
study's lock: it reads each unfinished trial's run (paused at a rung: the objective there is
recorded; ended: the trial is completed or failed), asks :func:`service.training.studies.decide`
what comes next, and does it (trials created with their model and run, paused trials resumed
or ended at their rung, the study ended). It is idempotent: run it twice, or after a crash at
any point, and it does what is left, never anything twice. The runs it queued or resumed are
handed to the executor after the commit (a run queued but never handed over is found by the
executor's own recovery: the local pool's start-up, the queue's sweep).

The transaction holds the queue's lock (every tenant's run creation waits for it), so it does
no training-side work when it can help it: a paused trial's model is measured at its
checkpoint (its objective at the rung, and a pruned trial's final loss and metrics) before
the transaction, by :func:`measure_paused`, and handed to :func:`advance` as ``measured``.
A measurement depends only on the run's checkpoint, which does not change while the run is
paused, so it is kept for as long as the run stays paused at that epoch (and made again after
a restart: the same bits).

:class:`Driver` runs it in the server: for every running study at start-up and every
``POLL_SECONDS``, and at once when a run ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker
from threadpoolctl import threadpool_limits

from service.jobs.attempt import Attempt
from service.jobs.checkpoint import unpack_checkpoint
from service.store import lifecycle
from service.store import studies as stored
from service.store.repo import Repository, now
from service.store.tables import (
    CheckpointRow,
    ModelRow,
    RunRow,
    RunStatus,
    StudyRow,
    StudyStatus,
    TrialRow,
    TrialStatus,
)
from service.training import studies as plans
from service.training.loop import Fit
from service.training.records import Outcome

log = logging.getLogger("tapeline.studies")

POLL_SECONDS = 1.0
PAUSED = "paused"
_FINAL = (TrialStatus.PRUNED, TrialStatus.COMPLETED, TrialStatus.FAILED)


class Waits(Exception):
    """A trial cannot be made now but may be later (its tenant stores more bytes than its
    quota): it waits, and so do the trials after it."""


class TrialMaker(Protocol):
    """Makes trials' models and runs as the API would, within the limits a client's runs
    have."""

    def __call__(self, session: Session, study: StudyRow, number: int,
                 point: dict[str, Any], pause_at: int | None) -> tuple[str, str]:
        """Make trial ``number``'s model and run (queued, pausing at ``pause_at`` epochs
        when given) in the session; their ids. Raises ``LookupError`` when the study's
        dataset is gone, ``ValueError`` when the point makes an invalid model or run and
        :class:`Waits` when the tenant's byte quota has no room for them now."""

    def room(self, session: Session, study: StudyRow, queued: int) -> int | None:
        """How many more of the study's runs may be queued now (new trials or promoted
        ones): the server's queue limit (``queued`` runs wait, every tenant's) and the
        tenant's active-run quota when it applies to the study; None for no limit. Asked
        under the queue's lock."""


@dataclass
class Advanced:
    """What one advance did: the runs to hand to the executor, and whether it changed
    anything."""

    submit: list[str] = field(default_factory=list)
    changed: bool = False


def _run(session: Session, run_id: str | None) -> RunRow | None:
    if run_id is None:
        return None
    return session.scalar(select(RunRow).where(RunRow.id == run_id)
                          .execution_options(populate_existing=True))


def _runs(session: Session, run_ids: list[str]) -> dict[str, RunRow]:
    """The runs with these ids as the store has them now, in one query, their params not
    read (what a trial's refresh looks at: status, epochs, final loss and metrics)."""
    if not run_ids:
        return {}
    return {run.id: run for run in session.scalars(
        select(RunRow).where(RunRow.id.in_(run_ids))
        .options(defer(RunRow.initial_params), defer(RunRow.final_params))
        .execution_options(populate_existing=True))}


def measure(session: Session, run_id: str) -> Outcome:
    """A paused run's model at its checkpoint: its params, objective and metrics over its
    training (and validation) rows, as the run's ``final`` would say had it been asked for
    those epochs: as the pausing attempt measured them and kept them with the checkpoint, or
    (a checkpoint from before revision 0011) measured here by the loop rebuilt from it,
    uncompiled and with one BLAS thread as a worker's: the same bits."""
    run = _run(session, run_id)
    if run is None:
        raise LookupError(run_id)
    if run.final_metrics is not None and run.final_params is not None:
        from service.store.codec import unpack_params

        return Outcome(False, unpack_params(run.final_params), float(run.final_loss or 0.0),
                       dict(run.final_metrics))
    model = session.scalar(select(ModelRow).where(ModelRow.id == run.model_id))
    checkpoint = session.execute(
        select(CheckpointRow.epoch, CheckpointRow.state, CheckpointRow.loss,
               CheckpointRow.metrics).where(CheckpointRow.run_id == run_id)).one_or_none()
    if model is None or checkpoint is None:
        raise LookupError(run_id)
    if checkpoint.loss is not None and checkpoint.metrics is not None:
        return Outcome(False, unpack_checkpoint(bytes(checkpoint.state)).params,
                       float(checkpoint.loss), dict(checkpoint.metrics))
    started = lifecycle.Started(run, model.kind, model.config, attempt=run.attempt,
                                checkpoint=bytes(checkpoint.state),
                                checkpoint_epoch=checkpoint.epoch)
    loaded = Attempt.load(session, started)
    fit = Fit(loaded.model, loaded.train, loaded.spec, loaded.validation, state=loaded.state,
              compiled=False)
    # With one BLAS thread, as the workers measure: OpenBLAS's threaded products of a
    # large split may differ from its one-thread ones in their last bits.
    with threadpool_limits(limits=1, user_api="blas"):
        params, loss, metrics = fit.measured()
    return Outcome(False, params, loss, metrics)


def objective_of(metric: str, loss: float | None, metrics: dict[str, float] | None
                 ) -> float | None:
    """The objective's value among a run's loss and metrics (None when it is not there)."""
    if metric == "loss":
        return loss
    return None if metrics is None else metrics.get(metric)


Measured = dict[tuple[str, int], Outcome]
"""Paused runs' measurements, by run id and the epochs the run had completed when measured."""


def measure_paused(session: Session, study_id: str, known: Measured | None = None) -> Measured:
    """The measurements of the study's paused trials' runs, taking those still valid from
    ``known`` and making the others (outside any lock: call it in a transaction of its own
    before :func:`advance`). A run that is gone or lost its checkpoint meanwhile is left out
    (``advance`` finds out for itself)."""
    found = session.execute(
        select(RunRow.id, RunRow.epochs_completed)
        .join(TrialRow, TrialRow.run_id == RunRow.id)
        .where(TrialRow.study_id == study_id, TrialRow.status.not_in(_FINAL),
               RunRow.status == PAUSED)
        .order_by(TrialRow.number)).all()
    measured: Measured = {}
    for run_id, epochs in found:
        key = (run_id, epochs)
        outcome = None if known is None else known.get(key)
        if outcome is None:
            try:
                outcome = measure(session, run_id)
            except LookupError:
                continue
        measured[key] = outcome
    return measured


def _measured(session: Session, run: RunRow, measured: Measured | None) -> Outcome:
    """The paused run's measurement: made before the transaction when it could be, else
    here (the run paused in between)."""
    outcome = None if measured is None else measured.get((run.id, run.epochs_completed))
    return measure(session, run.id) if outcome is None else outcome


def _view(row: TrialRow) -> plans.Trial:
    return plans.Trial(row.number, row.status, tuple(row.rungs), row.params)


def _refresh(session: Session, study: StudyRow, plan: plans.Plan, trial: TrialRow,
             events: list[tuple[str, dict[str, Any]]], measured: Measured | None,
             run: RunRow | None) -> None:
    """Bring a trial up to date with its run (``run``: None when it is gone)."""
    metric = study.spec["objective"]["metric"]
    before = trial.status
    if run is None:
        trial.status = TrialStatus.FAILED
    else:
        trial.epochs = run.epochs_completed
        status = run.status
        if status == RunStatus.QUEUED:
            trial.status = TrialStatus.QUEUED
        elif status in (RunStatus.RUNNING, RunStatus.CANCELLING):
            trial.status = TrialStatus.RUNNING
        elif status == PAUSED:
            k = len(trial.rungs)
            if k < len(plan.rungs) - 1 and run.epochs_completed == plan.rungs[k]:
                outcome = _measured(session, run, measured)
                value = objective_of(metric, outcome.loss, outcome.metrics)
                if value is None:
                    trial.status = TrialStatus.FAILED
                else:
                    trial.rungs = [*trial.rungs, value]
                    events.append(("trial.reported", {"number": trial.number, "rung": k,
                                                      "epochs": run.epochs_completed,
                                                      "objective": value}))
                    trial.status = TrialStatus.PAUSED
            else:
                trial.status = TrialStatus.PAUSED
        elif status == RunStatus.SUCCEEDED:
            value = objective_of(metric, run.final_loss, run.final_metrics)
            if value is None:
                trial.status = TrialStatus.FAILED
            else:
                if len(trial.rungs) < len(plan.rungs):
                    trial.rungs = [*trial.rungs, value]
                    events.append(("trial.reported", {"number": trial.number,
                                                      "rung": len(trial.rungs) - 1,
                                                      "epochs": run.epochs_completed,
                                                      "objective": value}))
                trial.status = TrialStatus.COMPLETED
        else:
            trial.status = TrialStatus.FAILED
    if trial.status != before:
        trial.updated_at = now()
        if trial.status in (TrialStatus.PAUSED, TrialStatus.COMPLETED, TrialStatus.FAILED):
            events.append((f"trial.{trial.status}", {"number": trial.number,
                                                     "run_id": trial.run_id,
                                                     "epochs": trial.epochs}))


def advance(session: Session, study_id: str, make: TrialMaker,
            measured: Measured | None = None) -> Advanced:
    """Move the study on from what the store holds (see the module's docstring);
    ``measured``: its paused runs measured beforehand (:func:`measure_paused`), any others
    are measured here."""
    done = Advanced()
    owner = session.scalar(select(StudyRow.owner).where(StudyRow.id == study_id))
    if owner is None:
        return done
    queued = Repository(session, owner).lock_queue()
    study = stored.lock(session, study_id)
    if study is None or study.status != StudyStatus.RUNNING:
        return done
    plan = plans.plan_of(study.spec)
    rows = stored.trials(session, study_id)
    events: list[tuple[str, dict[str, Any]]] = []
    # Room is counted before the runs are read: only the queue's lock (held) lets a run become
    # active, so a run that ends in between leaves room smaller than it is, never a trial
    # shown running beside one made in its place (PostgreSQL reads each statement anew).
    room = make.room(session, study, queued)
    runs = _runs(session, [row.run_id for row in rows
                           if row.status not in _FINAL and row.run_id is not None])
    for row in rows:
        if row.status not in _FINAL:
            _refresh(session, study, plan, row, events, measured,
                     None if row.run_id is None else runs.get(row.run_id))
    by_number = {row.number: row for row in rows}
    views = [_view(r) for r in rows]
    # Trials wait for room (the study's concurrency, the tenant's active-run quota, the
    # queue's limit): that changes when they train, never what is decided.
    capacity = plan.concurrency - sum(v.status in plans.ACTIVE for v in views)
    if room is not None:
        capacity = min(capacity, room)
    decisions = plans.decide(plan, views, capacity)
    for number in decisions.prune:
        row = by_number[number]
        run = _run(session, row.run_id)
        assert run is not None
        outcome = _measured(session, run, measured)
        lifecycle.finish_run(session, run.id, RunStatus.SUCCEEDED, final=outcome,
                             completed=row.epochs)
        row.status, row.updated_at = TrialStatus.PRUNED, now()
        events.append(("trial.pruned", {"number": number, "epochs": row.epochs}))
    for promotion in decisions.promote:
        row = by_number[promotion.number]
        assert row.run_id is not None
        lifecycle.resume_run(session, row.run_id, promotion.pause_at)
        row.status, row.updated_at = TrialStatus.QUEUED, now()
        done.submit.append(row.run_id)
        events.append(("trial.promoted", {"number": promotion.number,
                                          "pause_at": promotion.pause_at}))
    history = [_view(r) for r in rows]
    for number in decisions.create:
        point = plans.sample(plan, number, history)
        row = TrialRow(study_id=study_id, number=number, params=point,
                       status=TrialStatus.QUEUED, epochs=0, rungs=[], created_at=now(),
                       updated_at=now())
        try:
            with session.begin_nested():
                row.model_id, row.run_id = make(session, study, number, point,
                                                plans.pause_at(plan, 0))
        except LookupError:
            _end(session, study, StudyStatus.FAILED, "its dataset was deleted", events)
            break
        except Waits as waiting:
            log.info("study %s: trial %d waits: %s", study_id, number, waiting,
                     extra={"fields": {"study_id": study_id}})
            break
        except ValueError as error:
            row.status = TrialStatus.FAILED
            events.append(("trial.failed", {"number": number, "error": str(error)[:500]}))
        session.add(row)
        rows.append(row)
        if row.run_id is not None and row.status == TrialStatus.QUEUED:
            done.submit.append(row.run_id)
        events.append(("trial.created", {"number": number, "params": point,
                                         "run_id": row.run_id, "model_id": row.model_id}))
    if decisions.end is not None and study.status == StudyStatus.RUNNING:
        _end(session, study, StudyStatus(decisions.end), decisions.reason, events)
    session.flush()
    _account(session, study, plan, rows, events)
    if events:
        for kind, data in events:
            if kind != "end":
                stored.add_event(session, study, kind, data)
        if any(kind == "end" for kind, _ in events):
            stored.add_event(session, study, "end", {"status": study.status})
        study.version += 1
        study.updated_at = now()
        done.changed = True
    return done


def _account(session: Session, study: StudyRow, plan: plans.Plan, rows: list[TrialRow],
             events: list[tuple[str, dict[str, Any]]]) -> None:
    """The study's epochs trained and best trial, from its trials; ``best.changed`` when the
    best moved."""
    study.epochs_trained = sum(r.epochs for r in rows)
    top = plans.best(plan, [_view(r) for r in rows])
    best = None
    if top is not None:
        row = next(r for r in rows if r.number == top.number)
        best = {"number": row.number, "run_id": row.run_id, "model_id": row.model_id,
                "params": row.params, "objective": top.rungs[-1]}
    if best != study.best:
        study.best = best
        if best is not None:
            events.append(("best.changed", best))
            stored.webhook(session, study, "study.best_changed")


def _end(session: Session, study: StudyRow, status: StudyStatus, reason: str | None,
         events: list[tuple[str, dict[str, Any]]]) -> None:
    study.status, study.error = status, reason
    study.finished_at = now()
    events.append(("end", {"status": status}))
    stored.webhook(session, study, f"study.{status}")
    log.info("study %s %s", study.id, status, extra={"fields": {"study_id": study.id}})


# ---------------------------------------------------------------------- the driver


class Driver:
    """Advances running studies in a thread of the server: all of them at start and every
    ``POLL_SECONDS``, and at once when told a run ended (:meth:`poke`) or when news of one of
    the runs it handed over finds the run no longer queued or running (a trial paused at its
    rung: its worker's news says only that the run goes on)."""

    def __init__(self, sessions: sessionmaker[Session], make: TrialMaker,
                 submit: Callable[[str, str | None], None]) -> None:
        self._sessions, self._make, self._submit = sessions, make, submit
        self._measured: dict[str, Measured] = {}
        self._lock = threading.Lock()
        self._handed: set[str] = set()  # runs handed over, whose pauses the driver awaits
        self._moving: set[str] = set()  # of those, runs with news since last looked at
        self._due = True  # advance at the next wake, without looking at the runs first
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tapeline-studies",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self, run_id: str | None = None, ended: bool | None = None,
             first: bool = False) -> None:
        """News of a run: look at the studies now unless it says the run goes on; when it
        says so of a run the driver handed over, look at the run first (it may have
        paused)."""
        with self._lock:
            if ended is not False:
                self._due = True
                if ended and run_id is not None:
                    self._handed.discard(run_id)
            elif run_id is not None and run_id in self._handed:
                self._moving.add(run_id)
            else:
                return
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def advance_all(self) -> None:
        """Advance every running study once."""
        with self._sessions() as session:
            ids = stored.running(session)
        for gone in set(self._measured) - set(ids):
            del self._measured[gone]
        for study_id in ids:
            if self._stop.is_set():
                return
            self.advance(study_id)

    def advance(self, study_id: str) -> Advanced:
        """Measure its paused runs, advance the study in a transaction of its own, then hand
        its runs over."""
        try:
            with self._sessions() as session:
                measured = measure_paused(session, study_id, self._measured.get(study_id))
            self._measured[study_id] = measured
            with self._sessions.begin() as session:
                done = advance(session, study_id, self._make, measured)
                owner = session.scalar(select(StudyRow.owner).where(StudyRow.id == study_id))
        except Exception:
            log.exception("study %s: could not advance it; trying again later", study_id)
            return Advanced()
        self._hand_over(done.submit, owner)
        return done

    def _hand_over(self, run_ids: Iterable[str], owner: str | None) -> None:
        with self._lock:
            self._handed.update(run_ids)
        for run_id in run_ids:
            try:
                self._submit(run_id, owner)
            except Exception:
                log.warning("could not hand run %s over; recovery will", run_id, exc_info=True)

    def _moved(self) -> bool:
        """Whether a handed-over run with news since last looked at is neither queued nor
        running any more (one query; the runs found so are no longer awaited)."""
        with self._lock:
            ids, self._moving = self._moving, set()
        if not ids:
            return False
        with self._sessions() as session:
            moved = set(session.scalars(select(RunRow.id).where(
                RunRow.id.in_(ids),
                RunRow.status.not_in((RunStatus.QUEUED, RunStatus.RUNNING)))))
        with self._lock:
            self._handed -= moved
        return bool(moved)

    def _loop(self) -> None:
        plans.load_samplers()  # here, rather than in the first study's first advance
        poll = 0.0
        while not self._stop.is_set():
            with self._lock:
                due, self._due = self._due, False
            try:
                if due or time.monotonic() >= poll or self._moved():
                    poll = time.monotonic() + POLL_SECONDS
                    self.advance_all()
            except Exception:
                log.exception("advancing studies failed")
            self._wake.wait(max(poll - time.monotonic(), 0.0))
            self._wake.clear()
