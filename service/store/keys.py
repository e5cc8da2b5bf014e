"""API keys and tenants' quotas in the store.

A key is ``tl_`` and 43 URL-safe characters (32 random bytes). It is shown once, when made;
the store keeps only its SHA-256 (an HMAC-SHA256 under ``TAPELINE_SECRET_KEY`` when that is
set) and a short prefix to recognise it by. Nothing here logs or returns a key or a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store.repo import NotFound, new_id, now
from service.store.tables import ApiKeyRow, QuotaRow

SCOPES = ("read", "write", "admin")
# The scopes each scope grants: admin ⊇ write ⊇ read.
GRANTS = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}
KEY_PATTERN = re.compile(r"tl_[A-Za-z0-9_-]{43,200}")
PREFIX_LENGTH = 11  # "tl_" and 8 characters: enough to tell keys apart, useless to guess one
ADMIN_TENANT = "admin"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# last_used_at is written at most this often per key by each server process (a write per
# request would cost more than the rest of authentication); a process sees the other processes'
# writes when it reads the key's record again (TAPELINE_KEY_CACHE_SECONDS).
TOUCH_EVERY = timedelta(minutes=1)


class KeyRejected(Exception):
    """The request's key does not authenticate it; the message says why, never the key."""


def generate() -> str:
    """A new key: ``tl_`` and 32 random bytes, URL-safe base64."""
    return f"tl_{secrets.token_urlsafe(32)}"


def digest(key: str, secret: str | None) -> str:
    """What the store keeps of a key: its SHA-256, or its HMAC-SHA256 under ``secret``."""
    if secret:
        return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()


def granted(scopes: list[str]) -> set[str]:
    """Every scope a key with these scopes has."""
    return set().union(*(GRANTS[s] for s in scopes if s in GRANTS))


def create_key(
    session: Session,
    *,
    tenant: str,
    scopes: list[str],
    name: str | None,
    expires_at: datetime | None,
    secret: str | None,
    key: str | None = None,
) -> tuple[ApiKeyRow, str]:
    """Store a new key of ``tenant`` (``key`` when the operator made one) and return its row
    and the key itself, which nothing keeps."""
    key = key or generate()
    row = ApiKeyRow(
        id=new_id("key"),
        tenant=tenant,
        name=name,
        scopes=sorted(set(scopes), key=SCOPES.index),
        key_hash=digest(key, secret),
        prefix=key[:PREFIX_LENGTH],
        expires_at=expires_at,
        created_at=now(),
    )
    session.add(row)
    session.flush()
    return row, key


def register_bootstrap(session: Session, key: str, secret: str | None) -> bool:
    """Make ``key`` an ``admin`` key of tenant ``admin`` unless it is stored already (then
    leave it as it is, revoked or not); whether it was added. Safe to run from every replica
    at once."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError("TAPELINE_BOOTSTRAP_ADMIN_KEY must be tl_ and at least 43 URL-safe "
                         "characters (make one with: tapeline keys generate)")
    hashed = digest(key, secret)
    if session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.key_hash == hashed)) is not None:
        return False
    try:
        with session.begin_nested():
            create_key(session, tenant=ADMIN_TENANT, scopes=["admin"], name="bootstrap",
                       expires_at=None, secret=secret, key=key)
    except IntegrityError:  # another replica registered it meanwhile
        return False
    return True


@dataclass(frozen=True)
class KeyRecord:
    """What authentication needs of a stored key: its id, tenant, scopes (as granted), expiry,
    revocation, when it was last used, and its tenant's own rate limit if set. Never the key
    or its hash."""

    key_id: str
    tenant: str
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None
    rate_limit: str | None

    def check(self, stamp: datetime) -> None:
        """:class:`KeyRejected` unless the key is unrevoked and unexpired at ``stamp``."""
        if self.revoked:
            raise KeyRejected("the API key is revoked")
        if self.expires_at is not None and self.expires_at <= stamp:
            raise KeyRejected("the API key is expired")

    def due_a_touch(self, stamp: datetime) -> bool:
        """Whether ``last_used_at`` is older than :data:`TOUCH_EVERY` at ``stamp``."""
        return self.last_used_at is None or stamp - self.last_used_at >= TOUCH_EVERY


# One query: the key's row and its tenant's own rate limit (Core, not the ORM: a quarter of
# the time).
_LOOKUP = (
    select(ApiKeyRow.id, ApiKeyRow.tenant, ApiKeyRow.scopes, ApiKeyRow.key_hash,
           ApiKeyRow.expires_at, ApiKeyRow.last_used_at, ApiKeyRow.revoked_at,
           QuotaRow.rate_limit)
    .outerjoin(QuotaRow, QuotaRow.tenant == ApiKeyRow.tenant)
    .where(ApiKeyRow.key_hash == bindparam("hashed"))
)


def well_formed(key: str) -> bool:
    """Whether ``key`` has the shape of a key (``tl_`` and 43 or more URL-safe characters)."""
    return KEY_PATTERN.fullmatch(key) is not None


def read_key(connection: Connection, hashed: str) -> KeyRecord:
    """The record of the key whose digest is ``hashed``; :class:`KeyRejected` if none is."""
    row = connection.execute(_LOOKUP, {"hashed": hashed}).first()
    if row is None or not hmac.compare_digest(row.key_hash, hashed):
        raise KeyRejected("the API key is unknown")
    return KeyRecord(row.id, row.tenant, frozenset(granted(row.scopes)), row.expires_at,
                     row.revoked_at is not None, row.last_used_at, row.rate_limit)


def touch(connection: Connection, key_id: str, stamp: datetime) -> None:
    """Record that the key was used at ``stamp`` (committed)."""
    connection.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id)
                       .values(last_used_at=stamp))
    connection.commit()


def any_key(connection: Connection | Session) -> bool:
    """Whether any key was ever made (revoked ones count: keys are then required)."""
    return connection.execute(select(ApiKeyRow.id).limit(1)).first() is not None


def list_keys(session: Session, tenant: str | None) -> list[ApiKeyRow]:
    """Every key of ``tenant`` (of every tenant when None), oldest first."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if tenant is not None:
        query = query.where(ApiKeyRow.tenant == tenant)
    return list(session.scalars(query))


def revoke(session: Session, key_id: str, tenant: str | None) -> ApiKeyRow:
    """Revoke a key of ``tenant`` (of any tenant when None); :class:`NotFound` otherwise.
    Revoking twice keeps the first time."""
    query = select(ApiKeyRow).where(ApiKeyRow.id == key_id)
    if tenant is not None:
        query = query.where(ApiKeyRow.tenant == tenant)
    row = session.scalar(query)
    if row is None:
        raise NotFound("key", key_id)
    if row.revoked_at is None:
        row.revoked_at = now()
        session.flush()
    return row


@dataclass(frozen=True)
class Quotas:
    """A tenant's limits in force: its own where set, else the settings' defaults."""

    max_active_runs: int
    max_stored_bytes: int
    rate_limit: str


def quotas(session: Session, tenant: str, defaults: Quotas) -> Quotas:
    """The limits in force for ``tenant``."""
    row = session.get(QuotaRow, tenant)
    if row is None:
        return defaults
    return Quotas(
        defaults.max_active_runs if row.max_active_runs is None else row.max_active_runs,
        defaults.max_stored_bytes if row.max_stored_bytes is None else row.max_stored_bytes,
        row.rate_limit or defaults.rate_limit,
    )


def set_quotas(session: Session, tenant: str, values: dict[str, Any]) -> None:
    """Give ``tenant`` its own limits (a None value: the default again)."""
    row = session.get(QuotaRow, tenant)
    if row is None:
        row = QuotaRow(tenant=tenant)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now()
    session.flush()


def expiry(days: int | None) -> datetime | None:
    """The expiry of a key that lives ``days`` days from now (never when None)."""
    return None if days is None else now() + timedelta(days=days)
