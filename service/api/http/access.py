"""What authentication keeps between requests: whether any key exists, the records of keys
recently read (trusted for a few seconds), and the rate limiter; and how a key is admitted."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from service.api.http.rate_limits import RateLimiter
from service.config import Settings, is_loopback
from service.store import keys
from service.store.repo import now

# How long "no key exists" is believed before the store is asked again (``auto`` mode on
# loopback): a key made by this process ends keyless access at once, one made by another
# process (`tapeline keys create`) within this long.
NO_KEY_SECONDS = 1.0


def key_secret(settings: Settings) -> str | None:
    """The secret API keys are hashed under (``TAPELINE_SECRET_KEY``), if any."""
    return None if settings.secret_key is None else settings.secret_key.get_secret_value()


class KeyCache:
    """The records of keys this process has read, by digest, each trusted for ``seconds``
    after it was read (``TAPELINE_KEY_CACHE_SECONDS``; 0 keeps nothing). A change made here
    (a key revoked, a tenant's quotas set) drops the records it touches at once, and a read
    that began before such a change is not kept, so it cannot bring the old record back."""

    MAX_RECORDS = 100_000  # a bound on memory; every key there is would fit many times over

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._records: dict[str, tuple[float, keys.KeyRecord]] = {}
        self.generation = 0  # bumped by every forget()

    def get(self, hashed: str) -> keys.KeyRecord | None:
        """The record of this digest if it was read less than ``seconds`` ago."""
        entry = self._records.get(hashed)
        if entry is None or time.monotonic() - entry[0] >= self.seconds:
            return None
        return entry[1]

    def put(self, hashed: str, record: keys.KeyRecord, read_at: float, generation: int) -> None:
        """Keep a record read at ``read_at`` (monotonic), when nothing was forgotten since the
        read began (``generation``)."""
        if self.seconds <= 0 or generation != self.generation:
            return
        if len(self._records) >= self.MAX_RECORDS:
            self._records.clear()
        self._records[hashed] = (read_at, record)

    def replace(self, hashed: str, record: keys.KeyRecord) -> None:
        """Update a kept record (its ``last_used_at``), keeping the time it was read."""
        entry = self._records.get(hashed)
        if entry is not None:
            self._records[hashed] = (entry[0], record)

    def forget(self, key_id: str | None = None, tenant: str | None = None) -> None:
        """Drop the record of key ``key_id``, or those of ``tenant``'s keys."""
        self.generation += 1
        for hashed, (_, record) in list(self._records.items()):
            if record.key_id == key_id or record.tenant == tenant:
                self._records.pop(hashed, None)


class Access:
    """What authentication keeps between requests: whether a key exists (once one does, it
    stays so), the records of keys recently read, and the rate limiter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = key_secret(settings)
        self.limiter = RateLimiter(settings)
        self.cache = KeyCache(settings.key_cache_seconds)
        self._keys_exist = False
        self._none_seen_at = -math.inf
        self._lock = threading.Lock()

    def key_created(self) -> None:
        """A key was just stored by this process: keyless requests end here and now."""
        with self._lock:
            self._keys_exist = True

    def key_revoked(self, key_id: str) -> None:
        """A key was just revoked by this process: its next request here reads the store."""
        self.cache.forget(key_id=key_id)

    def quotas_changed(self, tenant: str) -> None:
        """A tenant's quotas were just set by this process: its keys' next requests here read
        its rate limit from the store."""
        self.cache.forget(tenant=tenant)

    def keyless_known(self) -> bool | None:
        """Whether a request without a key may pass, when that is known without the store:
        never with ``required``, always with ``off``; with ``auto`` only on loopback while no
        key exists, which the store said less than ``NO_KEY_SECONDS`` ago (None: ask it)."""
        mode = self.settings.auth
        if mode != "auto":
            return mode == "off"
        if not is_loopback(self.settings.host) or self._keys_exist:
            return False
        if time.monotonic() - self._none_seen_at < NO_KEY_SECONDS:
            return True
        return None

    def keyless_allowed(self, engine: Engine) -> bool:
        """:meth:`keyless_known`, asking the store whether a key exists when it must."""
        known = self.keyless_known()
        if known is not None:
            return known
        with engine.connect() as connection:
            exists = keys.any_key(connection)
        with self._lock:
            if exists:
                self._keys_exist = True
            else:
                self._none_seen_at = time.monotonic()
        return not exists

    async def admit(self, engine: Engine, token: str, default_limit: str) -> Admission:
        """The key's record, after checking it is known, unexpired (at this instant) and not
        revoked, and its request counted by the rate limiter; :class:`keys.KeyRejected`
        otherwise. All on the event loop, without I/O, when the record is kept and its
        ``last_used_at`` is recent (and the limiter is in memory); the store is read or
        written in one worker-thread call otherwise."""
        if not keys.well_formed(token):
            raise keys.KeyRejected(
                "the API key is malformed (expected tl_ and 43 or more characters)")
        hashed = keys.digest(token, self.secret)
        stamp = now()
        record = self.cache.get(hashed)
        if record is None or record.due_a_touch(stamp):
            record = await run_in_threadpool(self._read_and_touch, engine, hashed, record,
                                             stamp)
        record.check(stamp)
        limit = record.rate_limit or default_limit
        allowed, headers = await self.limiter.hit(record.tenant, limit)
        return Admission(record, limit, allowed, headers)

    def _read_and_touch(self, engine: Engine, hashed: str, record: keys.KeyRecord | None,
                        stamp: datetime) -> keys.KeyRecord:
        """In a worker thread: the key's record read from the store unless kept, and its
        ``last_used_at`` written if due (a revoked or expired key's is not)."""
        with engine.connect() as connection:
            if record is None:
                generation, read_at = self.cache.generation, time.monotonic()
                record = keys.read_key(connection, hashed)
                self.cache.put(hashed, record, read_at, generation)
            record.check(stamp)
            if record.due_a_touch(stamp):
                record = replace(record, last_used_at=stamp)
                self.cache.replace(hashed, record)
                keys.touch(connection, record.key_id, stamp)
        return record


@dataclass(frozen=True)
class Admission:
    """A known, valid key's record, the rate limit it was counted against, whether the
    request is within it and the ``RateLimit-*`` headers."""

    record: keys.KeyRecord
    limit: str
    allowed: bool
    headers: dict[str, str]
