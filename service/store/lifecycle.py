"""The run lifecycle as the training side sees it: claim a run with a fenced attempt, append
its epochs and checkpoints, finish it, pause it or hand it back, settle runs a stop or crash
left active, and count runs for the metrics. Also the pause and resume of runs as any caller
asks for them (the API, a study's scheduler): :func:`request_pause` and :func:`resume_run`.

These functions act for the service itself, not for a caller: they are not bound to a
tenant. Each takes an open :class:`~sqlalchemy.orm.Session`; the caller owns the transaction,
in which a run's start and end write their events to the outbox.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from service.store import documents, outbox, usage
from service.store.codec import pack_params
from service.store.event_types import RUN_STATUS_EVENTS
from service.store.repo import Conflict, NotFound, Repository, now
from service.store.tables import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    CheckpointRow,
    DatasetRow,
    EpochRow,
    ModelRow,
    RunRow,
    RunStatus,
)
from service.training.records import EpochRecord, Outcome

EPOCHS: Table = EpochRow.__table__  # type: ignore[assignment]
RUNS: Table = RunRow.__table__  # type: ignore[assignment]
MODELS: Table = ModelRow.__table__  # type: ignore[assignment]
# The PostgreSQL channel that announces a run's news to every replica (payload: the run id).
CHANNEL = "tapeline_runs"
TRAINING = (RunStatus.RUNNING, RunStatus.CANCELLING)


class Fenced(RuntimeError):
    """This attempt no longer owns the run (another worker took it over, or it ended): the
    database refused the write, and the caller must stop training it."""

    def __init__(self, run_id: str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of run {run_id} no longer owns it")
        self.run_id, self.attempt = run_id, attempt


class OverQuota(RuntimeError):
    """Storing the next epoch would take the run's tenant past its byte quota: the ``stored``
    epochs before it were written, the rest were not, and the run must end."""

    def __init__(self, tenant: str, limit: int, adding: int, stored: int) -> None:
        super().__init__(
            f"the next epoch ({adding} bytes) would take tenant {tenant!r} past its quota of "
            f"{limit} stored bytes (max_stored_bytes: datasets, models' params, runs' "
            f"histories and checkpoints count)")
        self.tenant, self.limit, self.adding, self.stored = tenant, limit, adding, stored


def announce(session: Session, run_id: str) -> None:
    """Tell every replica listening on PostgreSQL that the run has news, when this
    transaction commits (nothing on SQLite, whose one server announces in process)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"run_id": run_id})


def _typed(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """An UPDATE's values as binds of their columns' types. A plain value becomes a bind of a
    new NullType, whose cache key SQLAlchemy derives afresh on every statement by inspecting
    the type's constructors; a column's own type computes it once. (With Core tables, not the
    ORM's bulk UPDATE path, which rebuilds each value's bind.)"""
    return {name: value if isinstance(value, ClauseElement)
            else literal(value, table.c[name].type) for name, value in values.items()}


# Statements run for every run (or every flush), built once with their parameters bound at
# each call: SQLAlchemy then neither rebuilds them nor recomputes their cache keys. (Bind
# names differ from column names, which an UPDATE reserves for its own SET binds.)
_NOTIFY = select(func.pg_notify(CHANNEL, bindparam("run_id")))
_OF_MODEL = ModelRow.id == RunRow.model_id
_CLAIM = (
    update(RunRow)
    .where(
        RunRow.id == bindparam("b_run_id"),
        or_(
            RunRow.status == RunStatus.QUEUED,
            and_(
                RunRow.status.in_(TRAINING),
                or_(
                    RunRow.heartbeat_at.is_(None),
                    RunRow.heartbeat_at < bindparam("b_stale", type_=RUNS.c.heartbeat_at.type),
                ),
            ),
        ),
    )
    .values(
        status=case(
            (RunRow.status == RunStatus.QUEUED, RunStatus.RUNNING.value),
            else_=RunRow.status,
        ),
        attempt=RunRow.attempt + 1,
        worker=bindparam("b_worker", type_=RUNS.c.worker.type),
        heartbeat_at=bindparam("b_stamp", type_=RUNS.c.heartbeat_at.type),
        started_at=func.coalesce(RunRow.started_at,
                                 bindparam("b_stamp", type_=RUNS.c.started_at.type)),
        history_base=select(ModelRow.history_rows).where(_OF_MODEL).scalar_subquery(),
        initial_params=select(ModelRow.params).where(_OF_MODEL).scalar_subquery(),
    )
    .returning(
        RunRow,
        select(ModelRow.kind).where(_OF_MODEL).scalar_subquery(),
        select(ModelRow.config).where(_OF_MODEL).scalar_subquery(),
    )
    .execution_options(synchronize_session=False)
)
_OWNED = and_(RUNS.c.id == bindparam("b_run_id"), RUNS.c.attempt == bindparam("b_attempt"),
              RUNS.c.status.in_([str(s) for s in TRAINING]))
_APPEND_FENCE = update(RUNS).where(_OWNED).values(
    epochs_completed=bindparam("b_completed", type_=RUNS.c.epochs_completed.type),
    heartbeat_at=bindparam("b_stamp", type_=RUNS.c.heartbeat_at.type),
    stored_bytes=RUNS.c.stored_bytes + bindparam("b_added", type_=RUNS.c.stored_bytes.type))
_INSERT_EPOCHS = insert(EPOCHS)
_RUN_STATUS = select(RunRow.status).where(RunRow.id == bindparam("run_id"))
_RUN_CONTROL = select(RunRow.status, RunRow.pause_at).where(RunRow.id == bindparam("run_id"))
_TO_FINISH = (
    select(RunRow.model_id, RunRow.history_base, RunRow.started_at, DatasetRow.classes,
           RunRow.owner)
    .outerjoin(DatasetRow, DatasetRow.id == RunRow.dataset_id)
    .where(RunRow.id == bindparam("run_id"))
)
_DROP_CHECKPOINT = delete(CheckpointRow).where(CheckpointRow.run_id == bindparam("run_id"))


def _owned_core(run_id: str, attempt: int) -> Any:
    return and_(RUNS.c.id == run_id, RUNS.c.attempt == attempt,
                RUNS.c.status.in_([str(s) for s in TRAINING]))


def _owned(run_id: str, attempt: int) -> Any:
    return and_(RunRow.id == run_id, RunRow.attempt == attempt, RunRow.status.in_(TRAINING))


def _run_event(session: Session, owner: str, run_id: str, status: str) -> None:
    """Record the event of a run's new status in the outbox (none for a status that makes
    none), its snapshot the run as this transaction leaves it."""
    event_type = RUN_STATUS_EVENTS.get(status)
    if event_type is not None:
        outbox.record(session, owner, event_type, f"run:{run_id}", lambda: documents.run(
            session.scalars(select(RunRow).where(RunRow.id == run_id)
                            .execution_options(populate_existing=True)).one()))


def queue_rank(session: Session, run_id: str) -> tuple[str, int]:
    """The run's owner and how many of that owner's runs are queued before it."""
    owner, seq = session.execute(
        select(RunRow.owner, RunRow.seq).where(RunRow.id == run_id)
    ).one()
    ahead = session.scalar(
        select(func.count()).where(
            RunRow.owner == owner, RunRow.status == RunStatus.QUEUED, RunRow.seq < seq
        )
    )
    return owner, int(ahead or 0)


@dataclass(frozen=True)
class Started:
    """A run an attempt has just claimed: the run, its model's kind and config, the attempt's
    number, and the run's checkpoint blob and its epoch (``None`` and 0 without one)."""

    run: RunRow
    kind: str
    config: dict[str, Any]
    attempt: int
    checkpoint: bytes | None = None
    checkpoint_epoch: int = 0


def claim_run(
    session: Session,
    run_id: str,
    worker: str,
    *,
    timeout: float,
    max_attempts: int,
) -> Started | None:
    """Start a new attempt of a run: a queued one, or an active one whose worker has not shown
    it is alive for ``timeout`` seconds (a takeover). One conditional UPDATE bumps the attempt,
    so from its commit on every write of the previous attempt is refused. Epochs stored after
    the run's checkpoint are deleted (the new attempt trains them again from there). ``None``
    when the run is not claimable (final, cancelled, or held by a live worker); a run past
    ``max_attempts`` (hand-backs not counted) is failed with reason ``worker_lost`` and
    ``None`` returned."""
    stamp = now()
    found = session.execute(_CLAIM, {
        "b_run_id": run_id, "b_stamp": stamp, "b_worker": worker,
        "b_stale": stamp - timedelta(seconds=timeout)}).one_or_none()
    if found is None:
        return None
    run: RunRow = found[0]
    if run.attempt - run.handbacks > max_attempts:
        finish_run(
            session,
            run_id,
            RunStatus.FAILED,
            error=(
                "worker_lost",
                f"the workers training this run were lost {max_attempts} times",
                None,
            ),
            attempt=run.attempt,
        )
        return None
    checkpoint = session.execute(
        select(CheckpointRow.epoch, CheckpointRow.state).where(CheckpointRow.run_id == run_id)
    ).one_or_none()
    resume_at = 0 if checkpoint is None else checkpoint.epoch
    session.execute(delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch >= resume_at))
    session.execute(
        update(RunRow).where(RunRow.id == run_id).values(epochs_completed=resume_at)
        .execution_options(synchronize_session=False)
    )
    session.execute(usage.recount(run_id))
    run.epochs_completed = resume_at
    announce(session, run_id)
    if run.started_at == stamp:  # its first start (not a takeover, nor a hand-back resumed)
        _run_event(session, run.owner, run_id, RunStatus.RUNNING)
    return Started(
        run,
        found[1],
        found[2],
        attempt=run.attempt,
        checkpoint=None if checkpoint is None else bytes(checkpoint.state),
        checkpoint_epoch=resume_at,
    )


def heartbeat(session: Session, run_id: str, attempt: int) -> str:
    """Show that ``attempt`` is alive and still owns the run; the run's status (raises
    :class:`Fenced` when the attempt no longer owns it)."""
    status = session.scalar(
        update(RunRow).where(_owned(run_id, attempt)).values(heartbeat_at=now())
        .returning(RunRow.status).execution_options(synchronize_session=False)
    )
    if status is None:
        raise Fenced(run_id, attempt)
    return str(status)


def save_checkpoint(session: Session, run_id: str, attempt: int, epoch: int,
                    state: bytes, measured: tuple[float, dict[str, float]] | None = None
                    ) -> None:
    """Keep the loop's state at the start of ``epoch`` as the run's checkpoint (the caller
    has fenced this transaction with :func:`append_epochs` or :func:`heartbeat`), with the
    model's objective and metrics there when the attempt ``measured`` them (at a pause)."""
    loss, metrics = (None, None) if measured is None else measured
    values = {"attempt": attempt, "epoch": epoch, "state": state, "created_at": now(),
              "loss": loss, "metrics": metrics}
    updated = session.execute(
        update(CheckpointRow).where(CheckpointRow.run_id == run_id).values(values)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(insert(CheckpointRow).values(run_id=run_id, **values))


def release_run(session: Session, run_id: str, attempt: int) -> bool:
    """Hand a run back to the queue (its worker is stopping): queued again, held by nobody,
    to resume from its checkpoint; a cancelling run stays cancelling for the next attempt to
    end. False when this attempt no longer owned it."""
    released = session.execute(
        update(RunRow)
        .where(_owned(run_id, attempt))
        .values(
            status=text(
                "CASE WHEN status = 'cancelling' THEN 'cancelling' ELSE 'queued' END"
            ),
            worker=None,
            heartbeat_at=None,
            handbacks=RunRow.handbacks + 1,
        )
        .execution_options(synchronize_session=False)
    )
    announce(session, run_id)
    return bool(released.rowcount)  # type: ignore[attr-defined]


def run_status(session: Session, run_id: str) -> str | None:
    """The run's current status (``None`` if it was deleted)."""
    return session.scalar(_RUN_STATUS, {"run_id": run_id})


def run_control(session: Session, run_id: str) -> tuple[str | None, int | None]:
    """What a training attempt polls: the run's status (``None`` if it was deleted) and its
    ``pause_at``."""
    found = session.execute(_RUN_CONTROL, {"run_id": run_id}).one_or_none()
    return (None, None) if found is None else (str(found.status), found.pause_at)


def request_pause(session: Session, run_id: str, at_epoch: int | None = None) -> None:
    """Ask a run to pause (for any caller: not bound to a tenant, whose check is the
    caller's). The run pauses at the first epoch boundary where its epochs completed reach
    ``at_epoch`` (``None``: at the end of the epoch it trains now): a running run's worker
    stores its epochs and a checkpoint there (params, optimizer state, random stream) and lets
    go of the run, which becomes ``paused``; a queued run that has reached ``at_epoch``
    already (always, for ``None``) becomes ``paused`` at once, any other queued run keeps
    ``at_epoch`` for when it trains. A run whose ``at_epoch`` is its number of epochs (or
    more) does not pause: it ends as usual. A paused run stays paused (idempotent; its
    ``pause_at`` is unchanged). A paused run holds no worker and does not count toward its
    tenant's active-run quota, but keeps its model (``training``: no other run starts on it)
    and its datasets. Writes ``run.paused`` to the outbox when the run pauses here (the worker
    writes it otherwise). Raises :class:`NotFound` for no such run, :class:`Conflict` for a
    final or cancelling run, :class:`ValueError` for a negative ``at_epoch``."""
    if at_epoch is not None and at_epoch < 0:
        raise ValueError(f"at_epoch must be 0 or more, not {at_epoch}")
    target = 0 if at_epoch is None else at_epoch
    while True:  # a conditional UPDATE per state the run may be in; retried if it moved on
        found = session.execute(
            select(RunRow.status, RunRow.epochs_completed, RunRow.owner)
            .where(RunRow.id == run_id)).one_or_none()
        if found is None:
            raise NotFound("run", run_id)
        status = found.status
        if status == RunStatus.PAUSED:
            return
        if status in FINAL_STATUSES or status == RunStatus.CANCELLING:
            raise Conflict(f"run {run_id!r} is {status}: only a queued or running run can be "
                           f"paused")
        if status == RunStatus.QUEUED and found.epochs_completed >= target:
            paused = session.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == RunStatus.QUEUED)
                .values(status=RunStatus.PAUSED.value, pause_at=None, worker=None,
                        heartbeat_at=None)
                .execution_options(synchronize_session=False))
            if paused.rowcount:  # type: ignore[attr-defined]
                announce(session, run_id)
                _run_event(session, found.owner, run_id, RunStatus.PAUSED)
                return
            continue
        asked = session.execute(
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.status == status)
            .values(pause_at=target)
            .execution_options(synchronize_session=False))
        if asked.rowcount:  # type: ignore[attr-defined]
            announce(session, run_id)
            return


def resume_run(session: Session, run_id: str, pause_at: int | None = None, *,
               end: bool = False) -> RunRow:
    """Resume a paused run (for any caller: not bound to a tenant, whose check is the
    caller's): it is queued again, to continue from its checkpoint exactly as it would have
    gone on had it never paused (its final params bit for bit the same), and pause again
    when its epochs completed reach ``pause_at`` (``None``: it trains to its end; a
    ``pause_at`` of its number of epochs or more ends it as usual). Returns the run, queued.
    The caller must then hand it to the executor as a new run is, after this transaction
    commits: :func:`service.jobs.executors.resume_and_submit` does both. Writes
    ``run.resumed`` to the outbox. With ``end``, the run is resumed only to end where it
    paused (successive halving's pruned trial): its ``epochs`` become the epochs it has
    completed, so the worker that takes it trains none, measures the final loss and metrics
    at its checkpoint's params (exactly those a run of that many epochs ends with) and ends it
    ``succeeded``, its params becoming its model's. Raises :class:`NotFound` for no such run,
    :class:`Conflict` for a run that is not paused, :class:`ValueError` for a ``pause_at``
    not after the epochs it has completed (or any ``pause_at`` with ``end``)."""
    found = session.execute(
        select(RunRow.status, RunRow.epochs_completed, RunRow.owner)
        .where(RunRow.id == run_id)).one_or_none()
    if found is None:
        raise NotFound("run", run_id)
    if pause_at is not None and (end or pause_at <= found.epochs_completed):
        raise ValueError(f"pause_at ({pause_at}) must be after the {found.epochs_completed} "
                         f"epochs the run has completed, and not given with end")
    values: dict[str, Any] = {"status": RunStatus.QUEUED.value, "pause_at": pause_at,
                              "worker": None, "heartbeat_at": None}
    if end:
        values["epochs"] = found.epochs_completed
    resumed = session.execute(
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.status == RunStatus.PAUSED)
        .values(values)
        .execution_options(synchronize_session=False))
    if not resumed.rowcount:  # type: ignore[attr-defined]
        status = run_status(session, run_id)
        raise Conflict(f"run {run_id!r} is {status}: only a paused run can be resumed")
    announce(session, run_id)
    outbox.record(session, found.owner, "run.resumed", f"run:{run_id}", lambda: documents.run(
        session.scalars(select(RunRow).where(RunRow.id == run_id)
                        .execution_options(populate_existing=True)).one()))
    return session.scalars(select(RunRow).where(RunRow.id == run_id)
                           .execution_options(populate_existing=True)).one()


def cancel_paused(session: Session, run_id: str) -> bool:
    """Cancel a paused run at once (no worker holds it): it ends ``cancelled`` with the
    history it has, its checkpoint dropped, as a run cancelled while training. False when
    the run is not paused (the caller cancels it as usual)."""
    held = session.execute(
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.status == RunStatus.PAUSED)
        .values(status=RunStatus.CANCELLING.value)
        .returning(RunRow.epochs_completed)
        .execution_options(synchronize_session=False)).one_or_none()
    if held is None:
        return False
    completed = held.epochs_completed
    finish_run(session, run_id, RunStatus.CANCELLED, completed=completed, error=(
        "cancelled", f"cancelled on request while paused after {completed} epochs", completed))
    return True


def pause_run(session: Session, run_id: str, attempt: int) -> bool:
    """Pause a running run at an epoch boundary (its worker's side of :func:`request_pause`;
    the caller has stored its epochs and its checkpoint there in this transaction): paused,
    held by nobody, its ``pause_at`` cleared, the attempt counted as handed back (pauses never
    use up the run's ``max_attempts``). False when the run is being cancelled instead
    (the caller then ends it); :class:`Fenced` when ``attempt`` no longer owns it."""
    paused = session.execute(
        update(RunRow)
        .where(_owned(run_id, attempt), RunRow.status == RunStatus.RUNNING)
        .values(status=RunStatus.PAUSED.value, pause_at=None, worker=None, heartbeat_at=None,
                handbacks=RunRow.handbacks + 1)  # an attempt that ended well: not a loss
        .returning(RunRow.owner)
        .execution_options(synchronize_session=False)).one_or_none()
    if paused is None:
        if session.scalar(select(RunRow.id).where(_owned(run_id, attempt))) is None:
            raise Fenced(run_id, attempt)
        return False
    announce(session, run_id)
    _run_event(session, paused.owner, run_id, RunStatus.PAUSED)
    return True


def stored_room(session: Session, tenant: str, limit: int) -> int:
    """How many more bytes ``tenant`` may store under a quota of ``limit``, counted under the
    tenant's lock (held until the transaction ends), as the API counts its writes."""
    bound = Repository(session, tenant)
    bound.lock_tenant()
    return limit - bound.stored_bytes()


def append_epochs(
    session: Session,
    run: RunRow,
    records: Sequence[EpochRecord],
    attempt: int,
    quota: int | None = None,
) -> None:
    """Add history rows to a run and count them as completed epochs (and their bytes as the
    run's), while ``attempt`` owns the run: the run's row is updated first on that condition,
    which also locks it until commit, so a superseded attempt gets :class:`Fenced` and writes
    nothing. With a byte ``quota`` for the run's tenant, the rows that fit within it are
    written and then :class:`OverQuota` says how many (the caller may commit them). (The rows
    go in with a Core INSERT: they need none of the ORM's bookkeeping.)"""
    if not records:
        return
    blobs = [None if r.params is None else pack_params(r.params) for r in records]
    costs = [usage.history_bytes(blob) for blob in blobs]
    fitting = len(records)
    if quota is not None:
        room = stored_room(session, run.owner, quota)
        fitting = bisect_right(list(accumulate(costs)), room)
    if fitting:
        owned = session.execute(_APPEND_FENCE, {
            "b_run_id": run.id, "b_attempt": attempt,
            "b_completed": records[fitting - 1].epoch + 1, "b_stamp": now(),
            "b_added": sum(costs[:fitting])})
        if owned.rowcount == 0:  # type: ignore[attr-defined]
            raise Fenced(run.id, attempt)
        session.execute(_INSERT_EPOCHS, [
            {
                "run_id": run.id,
                "epoch": r.epoch,
                "model_id": run.model_id,
                "step": run.history_base + r.epoch,
                "params": blob,
                "loss": r.loss,
                "metrics": r.metrics,
                "elapsed_ms": r.elapsed_ms,
            }
            for r, blob in zip(records[:fitting], blobs, strict=False)
        ])
        announce(session, run.id)
    if fitting < len(records):
        raise OverQuota(run.owner, quota or 0, costs[fitting], fitting)


def finish_run(
    session: Session,
    run_id: str,
    status: str,
    *,
    final: Outcome | None = None,
    error: tuple[str, str, int | None] | None = None,
    completed: int | None = None,
    attempt: int | None = None,
) -> None:
    """End a run; a succeeded run's final params and loss become its model's (with the class
    names of its dataset, if its labels had names). ``completed`` is the number of history
    rows the run has (counted when not given). With ``attempt``, only while that attempt
    owns the run (else :class:`Fenced`, and nothing is written)."""
    found = session.execute(_TO_FINISH, {"run_id": run_id}).one_or_none()
    if found is None:
        raise NotFound("run", run_id)
    if completed is None:
        completed = session.scalar(select(func.count()).where(EpochRow.run_id == run_id)) or 0
    stamp = now()
    run: dict[str, Any] = {"status": status, "finished_at": stamp, "epochs_completed": completed,
                           "pause_at": None}
    if found.started_at is not None:
        run["duration_ms"] = max((stamp - found.started_at).total_seconds() * 1000.0, 0.0)
    model: dict[str, Any] = {"history_rows": found.history_base + completed, "updated_at": stamp}
    if final is not None:
        params = pack_params(final.params)
        run |= {"final_params": params, "final_loss": final.loss, "final_metrics": final.metrics,
                "stored_bytes": RUNS.c.stored_bytes + len(params)}
        if final.stopped_early is not None:
            run |= {"stopped_epoch": final.stopped_early.epoch,
                    "best_epoch": final.stopped_early.best_epoch}
        if status == RunStatus.SUCCEEDED:
            model |= {
                "params": params,
                "last_loss": final.loss,
                "epochs_trained": MODELS.c.epochs_trained + completed,
            }
            if found.classes is not None:
                model["class_names"] = found.classes
    if error is not None:
        run |= {"error_reason": error[0], "error_detail": error[1], "error_epoch": error[2]}
    where = RUNS.c.id == run_id if attempt is None else _owned_core(run_id, attempt)
    ended = session.execute(update(RUNS).where(where).values(_typed(RUNS, run)))
    if attempt is not None and ended.rowcount == 0:  # type: ignore[attr-defined]
        raise Fenced(run_id, attempt)
    session.execute(_DROP_CHECKPOINT, {"run_id": run_id})
    announce(session, run_id)
    session.execute(update(MODELS).where(MODELS.c.id == found.model_id)
                    .values(_typed(MODELS, model)))
    _run_event(session, found.owner, run_id, status)


def in_study(row: RunRow) -> bool:
    """Whether the run is a study's trial: resumed from its checkpoint after a crash whatever
    ``TAPELINE_ON_INTERRUPTED`` says (a study's results must not depend on crashes)."""
    return "study" in (row.tags or {})


def resolve_interrupted(
    session: Session,
    policy: str,
    only: Sequence[str] | None = None,
    keep: Callable[[RunRow], bool] | None = None,
) -> list[str]:
    """Active runs that a stop or crash interrupted (all of them, or ``only`` these): fail them
    (``fail``), or re-queue them (``requeue``; always for a study's trial) to resume from
    their checkpoint (the epochs after it are deleted when the next attempt claims the run);
    returns the re-queued ids.
    Runs for which ``keep`` says true (their worker is alive) are left alone."""
    query = select(RunRow).where(RunRow.status.in_(ACTIVE_STATUSES)).order_by(RunRow.seq)
    if only is not None:
        query = query.where(RunRow.id.in_(only))
    rows = session.scalars(query).all()
    requeued: list[str] = []
    for row in rows:
        if keep is not None and keep(row):
            continue  # a live worker elsewhere trains it
        if (policy == "requeue" or in_study(row)) and row.status != RunStatus.CANCELLING:
            resume_at = session.scalar(
                select(CheckpointRow.epoch).where(CheckpointRow.run_id == row.id)
            ) or 0
            session.execute(
                delete(EpochRow).where(EpochRow.run_id == row.id, EpochRow.epoch >= resume_at)
            )
            session.execute(usage.recount(row.id))
            row.status, row.epochs_completed = RunStatus.QUEUED, resume_at
            row.worker, row.heartbeat_at = None, None
            if resume_at == 0:
                row.started_at = None
            requeued.append(row.id)
        else:
            finish_run(
                session,
                row.id,
                RunStatus.FAILED if row.status != RunStatus.CANCELLING else RunStatus.CANCELLED,
                error=(
                    "interrupted",
                    "the service stopped while this run was active",
                    row.epochs_completed,
                ),
            )
    session.flush()
    return requeued


def count_runs_by_status(session: Session) -> dict[str, int]:
    """How many runs are in each status."""
    return dict(session.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all())
