"""Who is calling: API keys (``Authorization: Bearer tl_...``), scopes and rate limits.

Every route of the resource routers depends on :func:`authorize`, which yields the
:class:`Caller` (tenant, scopes, key id) or answers 401 / 403 / 429. The scope an operation
needs is ``read`` for GET and HEAD and ``write`` otherwise, unless its route says
(``openapi_extra={"x-scope": ...}``); ``admin`` grants ``write``, which grants ``read``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api import dryrun
from service.api.deps import Runtime
from service.api.problems import ProblemError, forbidden, responses, unauthorized, unavailable
from service.config import Settings, is_loopback
from service.store import keys
from service.store.repo import Repository, now

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key: `Authorization: Bearer tl_...` (`tapeline keys create`). "
    "Not needed by a server on loopback with `TAPELINE_AUTH=auto` before any key exists.",
)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# The answers any authorised operation may give: no or a bad key, too few scopes, too fast.
AUTH_ERRORS = responses(401, 403, 429)
KEYLESS_TENANT = "default"


@dataclass(frozen=True)
class Caller:
    """The tenant a request acts for, the scopes it has and the key it used (None without
    one: keys are off, or not yet needed on loopback)."""

    tenant: str
    scopes: frozenset[str]
    key_id: str | None

    def may(self, scope: str) -> bool:
        """Whether the caller has ``scope``."""
        return scope in self.scopes


log = logging.getLogger("tapeline.api")

# How long "no key exists" is believed before the store is asked again (``auto`` mode on
# loopback): a key made by this process ends keyless access at once, one made by another
# process (`tapeline keys create`) within this long.
NO_KEY_SECONDS = 1.0

KEYLESS = Caller(KEYLESS_TENANT, frozenset(keys.SCOPES), None)

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


def required_scope(request: Request) -> str:
    """The scope the request's operation needs."""
    extra = getattr(request.scope.get("route"), "openapi_extra", None) or {}
    scope = extra.get("x-scope")
    if scope:
        return str(scope)
    return "read" if request.method in SAFE_METHODS else "write"


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be `Bearer <API key>`", "invalid_request")
    return token.strip()


async def authenticate(request: Request, runtime: Runtime) -> Caller:
    """The caller a request's key (or its absence, where allowed) makes it; 401 otherwise.
    On the loop, except the store lookups (a key's record not kept by :class:`KeyCache`, or
    whether any key exists) and a Redis rate count, which run in a worker thread: a keyless
    request on a laptop, and a keyed one whose record is kept, cost no thread hop at all."""
    access: Access = request.app.state.access
    if access.settings.auth == "off":
        return KEYLESS
    token = _bearer_token(request)
    if token is None:
        allowed = access.keyless_known()
        if allowed is None:
            allowed = await run_in_threadpool(access.keyless_allowed, runtime.engine)
        if allowed:
            return KEYLESS
        raise unauthorized("this operation needs an API key: `Authorization: Bearer tl_...`")
    try:
        admitted = await access.admit(runtime.engine, token, runtime.settings.tenant_rate_limit)
    except keys.KeyRejected as error:
        raise unauthorized(str(error), "invalid_token") from None
    headers = admitted.headers
    request.scope.setdefault("state", {})["rate_headers"] = headers
    found = admitted.record
    if not admitted.allowed:
        raise ProblemError(
            429,
            f"tenant {found.tenant!r} is over its rate limit of {admitted.limit}; retry "
            f"after {headers['Retry-After']} s",
            headers=headers,
        )
    return Caller(found.tenant, found.scopes, found.key_id)


async def authorize(request: Request) -> Caller:
    """The caller, if its scopes allow the operation; 403 otherwise. One dependency with no
    sub-dependencies (each one costs FastAPI work on every request); the spec's ``security``
    of the operations that use it is written by ``service.app`` (``secured_operations``)."""
    caller = await authenticate(request, request.app.state.runtime)
    scope = required_scope(request)
    if not caller.may(scope):
        have = ", ".join(sorted(caller.scopes, key=keys.SCOPES.index)) or "none"
        raise forbidden(f"this operation needs the {scope!r} scope; the key has {have}")
    return caller


CallerDep = Annotated[Caller, Depends(authorize)]


@dataclass(frozen=True)
class TenantStore:
    """The store as the caller's tenant sees it: every repository it opens is bound to that
    tenant. Quotas apply to callers with a key (a keyless caller is the machine's one user)."""

    sessions: sessionmaker[Session]
    caller: Caller
    settings: Settings

    @contextmanager
    def read(self) -> Iterator[Repository]:
        """A repository of the tenant in a session that writes nothing."""
        with self.sessions() as session:
            yield Repository(session, self.caller.tenant)

    @contextmanager
    def write(self, dry_run: bool = False) -> Iterator[Repository]:
        """A repository of the tenant in a transaction committed when the block ends (rolled
        back for a dry run)."""
        with dryrun.transaction(self.sessions, dry_run) as session:
            yield Repository(session, self.caller.tenant)

    def quotas(self, repo: Repository) -> keys.Quotas | None:
        """The tenant's quotas in force, or None for a keyless caller."""
        if self.caller.key_id is None:
            return None
        return keys.quotas(repo.session, repo.tenant, default_quotas(self.settings))


def default_quotas(settings: Settings) -> keys.Quotas:
    """The quotas of a tenant that has none of its own."""
    return keys.Quotas(settings.tenant_max_active_runs, settings.tenant_max_stored_bytes,
                       settings.tenant_rate_limit)


async def tenant_store(request: Request, caller: CallerDep) -> TenantStore:
    """The store bound to the caller's tenant."""
    runtime: Runtime = request.app.state.runtime
    return TenantStore(runtime.sessions, caller, runtime.settings)


StoreDep = Annotated[TenantStore, Depends(tenant_store)]
Authorized = Depends(authorize)
