"""Schemas of webhooks: an endpoint's create and update requests, the endpoint (its secret only
when made or rotated), its deliveries and their attempts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from service.api.schemas.common import NO_NUL, RFC3339, Public, Request
from service.store.event_types import patterns

EventPattern: Any = Annotated[
    Literal.__getitem__(tuple(patterns())),  # type: ignore[attr-defined]
    Field(description="An event type, a family's prefix (`run.*`) or `*` (everything)."),
]
Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=NO_NUL,
                           description="Where events are posted: an absolute http(s) URL.")]
Events = Annotated[list[EventPattern], Field(min_length=1, max_length=64,
                                             description="The events the endpoint receives.")]
Description = Annotated[str | None, Field(max_length=500, pattern=NO_NUL,
                                          description="A note of your choice.")]
EXAMPLE: dict[str, Any] = {"url": "https://hooks.example.com/tapeline",
                           "events": ["run.succeeded", "run.failed"],
                           "description": "tell the team"}


class WebhookCreate(Request):
    """A new endpoint: where to post, which events, and whether it starts enabled."""

    url: Url
    events: Events
    description: Description = None
    enabled: bool = True

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})


class WebhookUpdate(Request):
    """Changes to an endpoint: only the fields given change (`description: null` clears it;
    `enabled: true` re-enables one the service disabled)."""

    url: Url | SkipJsonSchema[None] = None
    events: Events | SkipJsonSchema[None] = None
    description: Description = None
    enabled: bool | SkipJsonSchema[None] = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})


class Webhook(Public):
    """An endpoint (never its secret)."""

    id: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the service disabled it: `gone` (it answered 410) or `failing` "
                    "(deliveries failed for 3 days); null otherwise.")
    previous_secret_expires_at: RFC3339 | None = Field(
        description="Until when the secret before the last rotation still signs too.")
    created_at: RFC3339
    updated_at: RFC3339


class NewSecret(Webhook):
    """An endpoint with its signing secret: shown when made or rotated, never again."""

    secret: str = Field(description="`whsec_` and base64: verify signatures with it (Standard "
                                    "Webhooks).")


class WebhookPage(Public):
    """A page of endpoints."""

    items: list[Webhook]
    next_cursor: str | None


class DeliveryAttempt(Public):
    """One HTTP attempt of a delivery."""

    at: RFC3339
    status_code: int | None = Field(description="The answer's status; null with no answer.")
    latency_ms: float
    error: str | None = Field(description="What went wrong, if anything.")
    response: str | None = Field(description="The first KiB of the answer's body.")
    outcome: str = Field(description="`succeeded` (2xx), `failed` (another status), `gone` "
                                     "(410), `error` (no answer), `refused` (an address not "
                                     "allowed).")


class Delivery(Public):
    """One event to one endpoint: pending until delivered (`succeeded`) or given up
    (`failed`), with its latest attempts."""

    id: str
    webhook_id: str
    event_id: str = Field(description="The `webhook-id` every attempt of it carries.")
    event_type: str
    status: str = Field(description="`pending`, `succeeded` or `failed`.")
    attempt_count: int
    created_at: RFC3339
    last_attempt_at: RFC3339 | None
    next_attempt_at: RFC3339 | None = Field(description="When a pending one is attempted next.")
    last_status_code: int | None
    attempts: list[DeliveryAttempt] = Field(description="The latest attempts, oldest first.")


class DeliveryPage(Public):
    """A page of deliveries, newest first."""

    items: list[Delivery]
    next_cursor: str | None


DeliveryStatus = Literal["pending", "succeeded", "failed"]
