"""Requests per tenant, counted against its rate limit in this process's memory or in Redis
(shared by every replica)."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from service.api.http.problems import unavailable
from service.config import Settings

log = logging.getLogger("tapeline.api")

# How a tenant's requests are counted against its rate limit (see RateLimiter).
STRATEGY = SlidingWindowCounterRateLimiter


class RateLimiter:
    """Requests per tenant, counted by the ``limits`` library's sliding window counter
    (:data:`STRATEGY`): in this process's memory, or in Redis so that every replica shares
    one budget. Its asyncio flavour: counting runs on the event loop, with no thread (the
    threaded in-memory storage starts a thread every 10 ms to expire entries, which cost a
    keyed request about 1 ms here)."""

    def __init__(self, settings: Settings) -> None:
        if settings.redis_url:
            storage = storage_from_string(f"async+{settings.redis_url}", wrap_exceptions=True,
                                          implementation="redispy")
        else:
            storage = storage_from_string("async+memory://", wrap_exceptions=True)
        self._limiter = STRATEGY(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, text: str) -> RateLimitItem:
        item = self._items.get(text)
        if item is None:
            item = self._items[text] = parse(text)
        return item

    async def hit(self, tenant: str, limit: str) -> tuple[bool, dict[str, str]]:
        """Count a request of ``tenant``: whether it is allowed, and the ``RateLimit-*``
        headers (with ``Retry-After`` when it is not)."""
        item = self._item(limit)
        try:
            allowed = await self._limiter.hit(item, "tenant", tenant)
            stats = await self._limiter.get_window_stats(item, "tenant", tenant)
        except StorageError as error:  # Redis down: refuse for now rather than fail or let all in
            log.warning("rate limiter storage unavailable: %s", type(error.storage_error).__name__)
            raise unavailable("the rate limiter's store (TAPELINE_REDIS_URL) does not answer; "
                              "try again shortly") from None
        reset = max(math.ceil(stats.reset_time - time.time()), 0)
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(stats.remaining),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(reset, 1))
        return allowed, headers
