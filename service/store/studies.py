"""Studies in the store: the tenant-bound reads and writes the API makes (create, list, read,
trials, events, cancel, delete) and the driver's side (the study locked while it decides, its
trials, its event stream), with the webhook events of a study's changes.

A study's driver holds the study's row lock for the whole of one decision (a row lock on
PostgreSQL, the database's write lock on SQLite), and each trial number is a primary key: two
drivers never decide at once, and a trial is never made twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, false, func, select, update
from sqlalchemy.orm import Session

from service.store import outbox
from service.store.documents import Document, rfc3339
from service.store.repo import Conflict, NotFound, Repository, new_id, now
from service.store.tables import (
    ACTIVE_STATUSES,
    EpochRow,
    ModelRow,
    RunRow,
    RunStatus,
    StudyEventRow,
    StudyRow,
    StudyStatus,
    TrialRow,
    TrialStatus,
)

FINAL_TRIALS = (TrialStatus.PRUNED, TrialStatus.COMPLETED, TrialStatus.FAILED)


def lock(session: Session, study_id: str, owner: str | None = None) -> StudyRow | None:
    """The study, locked until the transaction ends (its row on PostgreSQL, the database's
    write lock on SQLite), or None; with ``owner``, only that tenant's."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(StudyRow).where(false()).values(id=StudyRow.id)
                        .execution_options(synchronize_session=False))
    query = select(StudyRow).where(StudyRow.id == study_id).with_for_update()
    if owner is not None:
        query = query.where(StudyRow.owner == owner)
    return session.scalar(query.execution_options(populate_existing=True))


def trials(session: Session, study_id: str) -> list[TrialRow]:
    """A study's trials in number order."""
    return list(session.scalars(select(TrialRow).where(TrialRow.study_id == study_id)
                                .order_by(TrialRow.number)))


def running(session: Session) -> list[str]:
    """The ids of every running study, oldest first."""
    return list(session.scalars(select(StudyRow.id).where(
        StudyRow.status == StudyStatus.RUNNING).order_by(StudyRow.seq)))


def add_event(session: Session, study: StudyRow, kind: str, data: dict[str, Any]) -> None:
    """Append an event to the study's stream (the caller holds the study's lock)."""
    study.events += 1
    session.add(StudyEventRow(study_id=study.id, seq=study.events, type=kind, data=data,
                              created_at=now()))


def webhook(session: Session, study: StudyRow, event_type: str) -> None:
    """Record a webhook event of the study (the outbox), its snapshot the study as this
    transaction leaves it."""
    outbox.record(session, study.owner, event_type, f"study:{study.id}",
                  lambda: document(session, study))


def trial_document(row: TrialRow) -> Document:
    """A trial as the API answers it."""
    return {"number": row.number, "params": row.params, "status": row.status,
            "epochs": row.epochs, "rungs": list(row.rungs),
            "objective": row.rungs[-1] if row.rungs else None,
            "run_id": row.run_id, "model_id": row.model_id}


def document(session: Session, row: StudyRow) -> Document:
    """A study as the API answers it (its counts read from its trials)."""
    spec = row.spec
    counts = {str(s): 0 for s in TrialStatus}
    for status, count in session.execute(
            select(TrialRow.status, func.count()).where(TrialRow.study_id == row.id)
            .group_by(TrialRow.status)).all():
        counts[status] = int(count)
    requested = spec.get("concurrency_requested", spec["concurrency"])
    return {
        "id": row.id, "name": row.name, "description": row.description,
        "tags": row.tags or {}, "dataset_id": row.dataset_id, "status": row.status,
        "error": row.error, "model": spec["model"], "run": spec["run"], "space": spec["space"],
        "objective": spec["objective"], "sampler": spec["sampler"],
        "scheduler": spec["scheduler"], "rungs": spec["rungs"],
        "trials_per_batch": spec["trials_per_batch"], "max_trials": spec["max_trials"],
        "concurrency": {"requested": requested, "effective": spec["concurrency"],
                        "capped_by_quota": spec["concurrency"] < requested},
        "counts": counts, "best": row.best, "epochs_trained": row.epochs_trained,
        "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
        "finished_at": None if row.finished_at is None else rfc3339(row.finished_at),
    }


class StudyStore:
    """The studies of one tenant, in ``repo``'s session: every query filters by the tenant."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.session = repo.session
        self.tenant = repo.tenant

    def create(self, *, dataset_id: str, spec: dict[str, Any], name: str | None,
               description: str | None, tags: dict[str, str] | None) -> StudyRow:
        """Store a running study (its driver makes its trials)."""
        stamp = now()
        row = StudyRow(id=new_id("st"), owner=self.tenant, name=name, description=description,
                       tags=tags or {}, dataset_id=dataset_id, spec=spec,
                       status=StudyStatus.RUNNING, version=0, best=None, epochs_trained=0,
                       error=None, events=0, created_at=stamp, updated_at=stamp)
        self.session.add(row)
        self.session.flush()
        add_event(self.session, row, "study.created", {"id": row.id})
        webhook(self.session, row, "study.created")
        return row

    def get(self, study_id: str) -> StudyRow:
        """The tenant's study, or :class:`NotFound`."""
        row = self.session.scalar(select(StudyRow).where(StudyRow.id == study_id,
                                                         StudyRow.owner == self.tenant))
        if row is None:
            raise NotFound("study", study_id)
        return row

    def trials_page(self, study_id: str, after: int, limit: int) -> tuple[list[TrialRow], bool]:
        """The study's trials numbered above ``after``, ``limit`` of them, and whether more
        follow."""
        self.get(study_id)
        rows = list(self.session.scalars(
            select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.number > after)
            .order_by(TrialRow.number).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def events_after(self, study_id: str, after: int, limit: int = 500
                     ) -> tuple[list[StudyEventRow], str]:
        """The study's events after ``after`` and its status now."""
        row = self.get(study_id)
        found = list(self.session.scalars(
            select(StudyEventRow).where(StudyEventRow.study_id == study_id,
                                        StudyEventRow.seq > after)
            .order_by(StudyEventRow.seq).limit(limit)))
        return found, row.status

    def cancel(self, study_id: str) -> tuple[StudyRow, list[str]]:
        """Stop a running study: its queued runs are cancelled, its running ones asked to
        stop, its paused ones ended cancelled; the ids of the runs asked to stop. A study
        already ended is returned unchanged."""
        from service.store import lifecycle

        self.repo.lock_queue()
        row = lock(self.session, study_id, self.tenant)
        if row is None:
            raise NotFound("study", study_id)
        if row.status != StudyStatus.RUNNING:
            return row, []
        stopping: list[str] = []
        for trial in trials(self.session, study_id):
            if trial.run_id is None or trial.status in FINAL_TRIALS:
                continue
            status = lifecycle.run_status(self.session, trial.run_id)
            if status == "paused":
                lifecycle.finish_run(self.session, trial.run_id, RunStatus.CANCELLED,
                                     error=("cancelled", "its study was cancelled", None))
            elif status in ACTIVE_STATUSES:
                self.repo.request_cancel(trial.run_id)
                stopping.append(trial.run_id)
            trial.status = TrialStatus.FAILED
            trial.updated_at = now()
        row.status, row.finished_at = StudyStatus.CANCELLED, now()
        row.updated_at, row.version = row.finished_at, row.version + 1
        add_event(self.session, row, "end", {"status": row.status})
        webhook(self.session, row, "study.cancelled")
        self.session.flush()
        return row, stopping

    def delete(self, study_id: str) -> None:
        """Delete a study with its trials' models, runs and histories; :class:`Conflict`
        while it runs or while one of its runs is still active."""
        self.repo.lock_queue()
        row = lock(self.session, study_id, self.tenant)
        if row is None:
            raise NotFound("study", study_id)
        if row.status == StudyStatus.RUNNING:
            raise Conflict(f"study {study_id!r} is running; cancel it first")
        rows = trials(self.session, study_id)
        model_ids = [t.model_id for t in rows if t.model_id is not None]
        busy = self.session.scalar(select(RunRow.id).where(
            RunRow.model_id.in_(model_ids), RunRow.status.in_(ACTIVE_STATUSES)).limit(1)
        ) if model_ids else None
        if busy is not None:
            raise Conflict(f"run {busy!r} of study {study_id!r} is still stopping; try again "
                           "in a moment")
        webhook(self.session, row, "study.deleted")
        if model_ids:
            self.session.execute(delete(EpochRow).where(EpochRow.model_id.in_(model_ids)))
            self.session.execute(delete(RunRow).where(RunRow.model_id.in_(model_ids)))
            self.session.execute(delete(ModelRow).where(ModelRow.id.in_(model_ids),
                                                        ModelRow.owner == self.tenant))
        self.session.execute(delete(StudyEventRow).where(StudyEventRow.study_id == study_id))
        self.session.execute(delete(TrialRow).where(TrialRow.study_id == study_id))
        self.session.delete(row)

    def page(self, limit: int, after_seq: int | None, newest_first: bool = False,
             *where: Any) -> tuple[Sequence[StudyRow], int | None]:
        """A page of the tenant's studies."""
        return self.repo.page(StudyRow, limit, after_seq, *where, newest_first=newest_first)
