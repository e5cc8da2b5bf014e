"""Metrics on the API's /metrics read from the store when scraped: scale-out (workers alive,
attempts made (more than one per run means takeovers or hand-overs), queue depth) and
webhooks (attempts by outcome, the oldest undelivered event)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from service.store import deliveries
from service.store.repo import now
from service.store.tables import RunRow, RunStatus


@dataclass(frozen=True)
class ScaleFigures:
    workers: int
    attempts: int
    retried_runs: int
    queued: int


def read_figures(sessions: sessionmaker[Session], workers: Callable[[Session], int]
                 ) -> ScaleFigures:
    """The figures as the store has them now; ``workers`` counts the live workers."""
    with sessions() as session:
        attempts, retried = session.execute(
            select(func.coalesce(func.sum(RunRow.attempt), 0),
                   func.count().filter(RunRow.attempt > 1))
        ).one()
        queued = session.scalar(select(func.count()).where(RunRow.status == RunStatus.QUEUED))
        return ScaleFigures(workers(session), int(attempts), int(retried), int(queued or 0))


# Each `tapeline worker` process runs two procrastinate workers: one trains, one delivers
# webhooks (they start and stop together).
PROCRASTINATE_WORKERS_PER_PROCESS = 2


def queue_workers(timeout: float) -> Callable[[Session], int]:
    """Live ``tapeline worker`` processes: procrastinate's heartbeats within ``timeout``, two
    a process."""
    def count(session: Session) -> int:
        live = int(session.scalar(text(
            "SELECT count(*) FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => :timeout)"),
            {"timeout": timeout}) or 0)
        return -(-live // PROCRASTINATE_WORKERS_PER_PROCESS)
    return count


class ScaleCollector(Collector):
    def __init__(self, read: Callable[[], ScaleFigures]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        figures = self._read()
        yield GaugeMetricFamily("tapeline_workers", "Worker processes alive (for `queue`: "
                                "procrastinate heartbeats within TAPELINE_WORKER_TIMEOUT).",
                                value=figures.workers)
        yield GaugeMetricFamily("tapeline_queue_depth", "Runs queued in the database.",
                                value=figures.queued)
        yield CounterMetricFamily("tapeline_run_attempts", "Attempts started by all runs.",
                                  value=figures.attempts)
        yield GaugeMetricFamily("tapeline_runs_retried", "Runs that needed more than one "
                                "attempt (a worker lost, drained or restarted).",
                                value=figures.retried_runs)


class WebhookCollector(Collector):
    """Webhook figures on the API's /metrics, read from the store when scraped: attempts by
    outcome (of every process that delivers) and the age of the oldest undelivered event."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Any]:
        with self._sessions() as session:
            counts = deliveries.counts(session)
            oldest = deliveries.oldest_pending(session)
        attempts = CounterMetricFamily(
            "tapeline_webhook_deliveries", "Webhook delivery attempts by outcome: succeeded "
            "(2xx), failed (another status), gone (410), error (no answer), refused (an address "
            "not allowed).", labels=["outcome"])
        for outcome in deliveries.OUTCOMES:
            attempts.add_metric([outcome], counts.get(outcome, 0))
        yield attempts
        yield GaugeMetricFamily(
            "tapeline_webhook_oldest_pending_seconds", "Age of the oldest event not yet "
            "delivered to an enabled endpoint (0: none).",
            value=0.0 if oldest is None else max((now() - oldest).total_seconds(), 0.0))


class StudyCollector(Collector):
    """Studies' figures on the API's /metrics, read from the store when scraped: trials by
    status and studies by outcome (``running`` for those not yet ended)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Any]:
        from service.store.tables import StudyRow, StudyStatus, TrialRow, TrialStatus

        with self._sessions() as session:
            trials = dict(session.execute(select(TrialRow.status, func.count())
                                          .group_by(TrialRow.status)).all())
            studies = dict(session.execute(select(StudyRow.status, func.count())
                                           .group_by(StudyRow.status)).all())
        by_trial = CounterMetricFamily("tapeline_study_trials", "Trials of studies by status.",
                                       labels=["status"])
        for status in TrialStatus:
            by_trial.add_metric([str(status)], trials.get(status, 0))
        yield by_trial
        by_outcome = CounterMetricFamily("tapeline_studies", "Studies by outcome (running: "
                                         "not ended yet).", labels=["outcome"])
        for outcome in StudyStatus:
            by_outcome.add_metric([str(outcome)], studies.get(outcome, 0))
        yield by_outcome
