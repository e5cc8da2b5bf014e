"""The catalogue of events: every type a webhook endpoint may subscribe to, in one place.

A type is ``<family>.<what>``; an endpoint subscribes to types by name, to a family by prefix
(``run.*``) or to everything (``*``). Families come from the catalogue, so a new resource's
events (``study.created``, ...) are one entry each here and their prefix is valid at once.
``ping`` is not in it: a test sends it to one endpoint, whatever its subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.store.tables import RunStatus

EVENT_TYPES: dict[str, str] = {
    "run.created": "A run was queued.",
    "run.started": "A worker started training a run (its first attempt).",
    "run.succeeded": "A run ended with its final params.",
    "run.failed": "A run ended by an error.",
    "run.diverged": "A run ended because its loss or params stopped being finite.",
    "run.cancelled": "A run ended on request.",
    "run.paused": "A run paused (at an epoch's end, with a checkpoint; or at once if queued).",
    "run.resumed": "A paused run was queued again, to continue from its checkpoint.",
    "model.created": "A model was made (or imported).",
    "model.deleted": "A model was deleted with its runs.",
    "dataset.created": "A dataset was stored.",
    "dataset.deleted": "A dataset was deleted.",
    "study.created": "A study was made (its trials follow).",
    "study.best_changed": "A study's best trial changed.",
    "study.completed": "A study decided its last batch.",
    "study.failed": "A study could not go on (its dataset deleted, or every trial of a batch "
                    "failed).",
    "study.cancelled": "A study was cancelled on request.",
    "study.deleted": "A study was deleted with its trials' models and runs.",
    "webhook.disabled": "An endpoint was disabled: it answered 410 Gone, or failed for 3 days.",
}
PING = "ping"
EVERYTHING = "*"
# A run's status as it changes, and the event it makes (a status not here makes none).
RUN_STATUS_EVENTS: dict[str, str] = {
    RunStatus.RUNNING: "run.started",
    RunStatus.SUCCEEDED: "run.succeeded",
    RunStatus.FAILED: "run.failed",
    RunStatus.DIVERGED: "run.diverged",
    RunStatus.CANCELLED: "run.cancelled",
    RunStatus.PAUSED: "run.paused",
}


def families() -> list[str]:
    """The families of the catalogue (``run``, ``model``, ...), in its order."""
    return list(dict.fromkeys(name.split(".", 1)[0] for name in EVENT_TYPES))


def patterns() -> list[str]:
    """Every subscription pattern: ``*``, each family's prefix, each type."""
    return [EVERYTHING, *(f"{family}.*" for family in families()), *EVENT_TYPES]


def matches(subscribed: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``subscribed`` receives events of ``event_type``."""
    family = event_type.split(".", 1)[0]
    return any(p in (EVERYTHING, event_type, f"{family}.*") for p in subscribed)
