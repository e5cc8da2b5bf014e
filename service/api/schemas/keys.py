"""Schemas of tenants and API keys: key requests and listings, quotas, usage and the caller."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from service.api.schemas.common import NO_NUL, RFC3339, SAFE_INT_END, Public, Request, integral
from service.store.keys import TENANT_PATTERN

Scope = Literal["read", "write", "admin"]
TenantName = Annotated[
    str,
    Field(pattern=TENANT_PATTERN,
          description="A tenant: lowercase letters, digits, `-` and `_`, at most 64."),
]


class KeyCreate(Request):
    """A new API key: its tenant (the caller's by default), name, scopes and lifetime."""

    tenant: TenantName | None = Field(
        None, description="Whose key; only an admin of tenant `admin` names another tenant."
    )
    name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    scopes: list[Scope] = Field(
        ["read", "write"], min_length=1, max_length=3,
        description="`read` reads; `write` also creates, trains, cancels and deletes; "
        "`admin` also manages keys and quotas.",
    )
    expires_in_days: Annotated[int, Field(ge=1, le=3650), BeforeValidator(integral)] | None = (
        Field(None, description="The key stops working this many days from now.")
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"tenant": "team-a", "name": "ci", "scopes": ["read"],
                                         "expires_in_days": 90}]}
    )


class ApiKey(Public):
    """An API key as listed: never the key itself, only its first characters."""

    id: str
    tenant: str
    name: str | None
    scopes: list[Scope]
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: RFC3339
    expires_at: RFC3339 | None
    last_used_at: RFC3339 | None = Field(description="Updated at most once a minute.")
    revoked_at: RFC3339 | None


class NewApiKey(ApiKey):
    """A key just made: `key` is shown this once and stored only as a hash."""

    key: str = Field(description="The key: send it as `Authorization: Bearer <key>`.")


class ApiKeyList(Public):
    """API keys, oldest first."""

    items: list[ApiKey]


class Quotas(Public):
    """A tenant's limits in force."""

    max_active_runs: int = Field(description="Most queued or running runs.")
    max_stored_bytes: int = Field(description="Most bytes stored: datasets, models' params, "
                                              "runs' histories and checkpoints.")
    rate_limit: str = Field(description="Requests allowed, e.g. `50/second`.")


class QuotasUpdate(Request):
    """A tenant's own limits; an absent or null field falls back to the service's default."""

    max_active_runs: Annotated[int, Field(ge=0, le=1_000_000), BeforeValidator(integral)] | None \
        = None
    max_stored_bytes: Annotated[int, Field(ge=0, lt=SAFE_INT_END),
                                BeforeValidator(integral)] | None = None
    rate_limit: str | None = Field(
        None, pattern=r"^[1-9][0-9]{0,8} ?(/|per) ?([1-9][0-9]{0,5} )?(second|minute|hour|day)s?$",
        description="e.g. `50/second`, `1000 per minute`, `10/5 seconds`.",
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"max_active_runs": 4, "rate_limit": "20/second"}]}
    )


class StoredBytes(Public):
    """The bytes a tenant stores, by what holds them."""

    datasets: int = Field(description="Datasets' arrays.")
    models: int = Field(description="Models' params.")
    runs: int = Field(description="Runs' own: initial and final params and history rows (each "
                                  "row's params, and 128 bytes for the rest of it).")
    checkpoints: int = Field(description="The checkpoints of active runs.")


class Usage(Public):
    """What a tenant uses now."""

    active_runs: int
    stored_bytes: int = Field(description="Every byte the tenant stores, as its quota counts "
                                          "them: the sum of `stored`.")
    stored: StoredBytes
    datasets: int
    models: int


class Me(Public):
    """The caller: its tenant, scopes, key (null without one), quotas and usage."""

    tenant: str
    scopes: list[Scope]
    key_id: str | None
    quotas: Quotas | None = Field(description="Null for a keyless caller: no quotas apply.")
    usage: Usage
