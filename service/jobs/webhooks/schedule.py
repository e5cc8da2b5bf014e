"""What follows an attempt: nothing more (it succeeded), another attempt later (exponential
backoff with jitter: about 5 s, 30 s, 2 min, 10 min, 1 h, then every 6 h), or giving up once
the next attempt would come more than 3 days after the delivery's first one, which disables
the endpoint (``failing``); a ``410 Gone`` disables it at once (``gone``). A ping is attempted
once. ``TAPELINE_WEBHOOK_RETRY_SCALE`` multiplies the delays and the 3 days alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.store.deliveries import Attempted, Claimed
from service.store.event_types import PING

DELAYS_SECONDS = (5.0, 30.0, 120.0, 600.0, 3600.0, 6 * 3600.0)
GIVE_UP_SECONDS = 3 * 24 * 3600.0
JITTER = 0.2  # each delay drawn within ±20 %


@dataclass(frozen=True)
class Plan:
    """When to attempt again (None: never), and why to disable the endpoint (None: not)."""

    next_attempt_at: datetime | None = None
    disable: str | None = None


def delay(previous_attempts: int, scale: float, draw: float | None = None) -> timedelta:
    """The wait before the next attempt, after ``previous_attempts`` + 1 attempts."""
    base = DELAYS_SECONDS[min(previous_attempts, len(DELAYS_SECONDS) - 1)]
    jitter = 1 + JITTER * (2 * (random.random() if draw is None else draw) - 1)
    return timedelta(seconds=base * scale * jitter)


def plan(claimed: Claimed, attempted: Attempted, scale: float) -> Plan:
    """What follows ``attempted``, the attempt number ``claimed.attempts`` + 1 of a delivery."""
    if attempted.outcome == "succeeded":
        return Plan()
    if attempted.outcome == "gone":
        return Plan(disable="gone")
    if claimed.event_type == PING:
        return Plan()
    first = claimed.first_attempt_at or attempted.at
    following = attempted.at + delay(claimed.attempts, scale)
    if following - first > timedelta(seconds=GIVE_UP_SECONDS * scale):
        return Plan(disable="failing")
    return Plan(next_attempt_at=following)
