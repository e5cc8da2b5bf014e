"""/v1/webhooks: endpoints that receive the tenant's events, signed (Standard Webhooks), with
their delivery log; rotating a secret, sending a test ping, redelivering.

Managing webhooks needs the ``write`` scope, reading them too (a URL may carry a token). A URL
whose host resolves to a loopback, private, link-local, multicast or metadata address is
refused (422), as at every delivery; a secret is shown when made or rotated, never again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from service.api import list_answers
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.paging import CURSOR, PageDep, PageSize, encode_cursor
from service.api.http.problems import ProblemError, invalid, responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore
from service.api.schemas.webhooks import (
    Delivery,
    DeliveryPage,
    DeliveryStatus,
    NewSecret,
    Webhook,
    WebhookCreate,
    WebhookPage,
    WebhookUpdate,
)
from service.config import Settings, is_loopback
from service.jobs.webhooks import targets
from service.jobs.webhooks.dispatch import secret_box
from service.store.event_types import EVENT_TYPES, PING
from service.store.tables import WebhookRow
from service.store.webhooks import Webhooks, document

WRITE = {"x-scope": "write"}
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Authorized],
                   responses=AUTH_ERRORS)
EventType: Any = Literal.__getitem__((*EVENT_TYPES, PING))  # type: ignore[attr-defined]


def checked_url(url: str, settings: Settings) -> str:
    """``url`` if events may be posted to it: absolute http(s), its host's addresses allowed
    (a name that does not resolve yet is checked again at each attempt); a 422 otherwise."""
    try:
        targets.addresses(targets.parse(url), settings.webhook_allow_private,
                          settings.webhook_hosts_file)
    except targets.Refused as error:
        raise invalid(["body", "url"], str(error)) from None
    except targets.Unresolved:
        pass
    return url


@contextmanager
def _endpoints(store: TenantStore, settings: Settings, write: bool = True
               ) -> Iterator[Webhooks]:
    """The tenant's endpoints in a transaction committed when the block ends (or, not to
    ``write``, in a session that writes nothing)."""
    with store.write() if write else store.read() as repo:
        yield Webhooks(repo, secret_box(settings))


@router.post("", status_code=201, summary="Create a webhook endpoint", dependencies=[JsonBody],
             responses=responses(400, 413, 415, 422, 503), openapi_extra=WRITE)
def create(body: WebhookCreate, runtime: RuntimeDep, store: StoreDep,
           response: Response) -> NewSecret:
    """An endpoint that receives the tenant's events of the types in `events` (`run.*` for a
    family, `*` for all), each posted as `{"type", "timestamp", "data"}` with Standard
    Webhooks headers. The answer holds its signing `secret`: it is never shown again."""
    settings = runtime.settings
    if settings.secret_key is None and not is_loopback(settings.host):
        raise ProblemError(503, "webhooks need TAPELINE_SECRET_KEY on a server bound to a "
                                "non-loopback address: their secrets are stored encrypted "
                                "under it")
    url = checked_url(body.url, settings)
    with _endpoints(store, settings) as webhooks:
        row, secret = webhooks.create(url=url, events=list(dict.fromkeys(body.events)),
                                      description=body.description, enabled=body.enabled,
                                      most=settings.max_webhooks)
        made = NewSecret.model_validate({**document(row), "secret": secret})
    response.headers["Location"] = f"/v1/webhooks/{made.id}"
    return made


@router.get("", summary="List webhook endpoints", response_model=WebhookPage,
            responses=responses(422), openapi_extra=WRITE)
def list_(runtime: RuntimeDep, store: StoreDep, page: PageDep) -> Response:
    """The tenant's endpoints, a page at a time (ended early, as every list, when its bytes
    would pass TAPELINE_MAX_ANSWER_BYTES)."""
    written: dict[str, bytes] = {}

    def fitting(rows: Sequence[WebhookRow]) -> int:
        for row in rows:
            written[row.id] = Webhook.model_validate(document(row)).model_dump_json().encode()
        return list_answers.fitting((len(written[row.id]) for row in rows),
                                    runtime.settings.max_answer_bytes)

    with _endpoints(store, runtime.settings, write=False) as webhooks:
        rows, after = webhooks.page(page.limit, page.after_seq, page.newest_first, fitting)
    return list_answers.answer(list_answers.page(([written[row.id]] for row in rows),
                                                 encode_cursor(after)),
                               sum(len(written[row.id]) for row in rows))


@router.get("/{webhook_id}", summary="Get a webhook endpoint", responses=responses(404),
            openapi_extra=WRITE)
def get(webhook_id: str, runtime: RuntimeDep, store: StoreDep) -> Webhook:
    """An endpoint: its URL, events, whether it is enabled (and why not)."""
    with _endpoints(store, runtime.settings, write=False) as webhooks:
        return Webhook.model_validate(document(webhooks.get(webhook_id)))


@router.patch("/{webhook_id}", summary="Change a webhook endpoint", dependencies=[JsonBody],
              responses=responses(400, 404, 413, 415, 422), openapi_extra=WRITE)
def update(webhook_id: str, body: WebhookUpdate, runtime: RuntimeDep,
           store: StoreDep) -> Webhook:
    """Change the URL, events, description, or enable or disable the endpoint. Enabling one
    the service disabled resumes its pending deliveries, their retries anew."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("url", "events", "enabled"):
        if name in changes and changes[name] is None:
            raise invalid(["body", name], "may not be null")
    if "url" in changes:
        checked_url(changes["url"], runtime.settings)
    if "events" in changes:
        changes["events"] = list(dict.fromkeys(changes["events"]))
    with _endpoints(store, runtime.settings) as webhooks:
        return Webhook.model_validate(document(webhooks.update(webhook_id, changes)))


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook endpoint",
               responses=responses(404), openapi_extra=WRITE)
def delete(webhook_id: str, runtime: RuntimeDep, store: StoreDep) -> Response:
    """Delete an endpoint and its delivery log; nothing more is sent to it."""
    with _endpoints(store, runtime.settings) as webhooks:
        webhooks.delete(webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", summary="Rotate a webhook's secret",
             responses=responses(404), openapi_extra=WRITE)
def rotate_secret(webhook_id: str, runtime: RuntimeDep, store: StoreDep) -> NewSecret:
    """A new signing secret, shown this once. For 24 hours the previous one signs too (each
    request then carries two signatures), so receivers can switch without missing one."""
    with _endpoints(store, runtime.settings) as webhooks:
        row, secret = webhooks.rotate_secret(webhook_id)
        return NewSecret.model_validate({**document(row), "secret": secret})


def _ping(store: TenantStore, runtime: Runtime, webhook_id: str) -> str:
    with _endpoints(store, runtime.settings) as webhooks:
        return webhooks.ping(webhook_id, runtime.dispatcher.courier.lease_end())


def _delivery(store: TenantStore, runtime: Runtime, webhook_id: str,
              delivery_id: str) -> Delivery:
    with _endpoints(store, runtime.settings, write=False) as webhooks:
        return Delivery.model_validate(webhooks.delivery(webhook_id, delivery_id))


@router.post("/{webhook_id}/test", summary="Send a test ping", responses=responses(404, 409),
             openapi_extra=WRITE)
async def test(webhook_id: str, runtime: RuntimeDep, store: StoreDep) -> Delivery:
    """Post a `ping` event (its data: the endpoint) now, once, and answer its delivery with
    that attempt: the status code, latency and the start of the answer, or what went
    wrong."""
    courier = runtime.dispatcher.courier
    delivery_id = await run_in_threadpool(_ping, store, runtime, webhook_id)
    claimed = await run_in_threadpool(courier.held, delivery_id)
    if claimed is not None:
        await courier.deliver(claimed)
    return await run_in_threadpool(_delivery, store, runtime, webhook_id, delivery_id)


@router.get("/{webhook_id}/deliveries", summary="List a webhook's deliveries",
            responses=responses(404, 422), openapi_extra=WRITE)
def deliveries(
    webhook_id: str,
    runtime: RuntimeDep,
    store: StoreDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only these.")] = None,
    event_type: Annotated[EventType | None, Query(description="Only events of this type.")] =
    None,
    limit: Annotated[PageSize, Query(description="Page size.")] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR,
                                        description="`next_cursor` of the previous page.")] =
    None,
) -> DeliveryPage:
    """The delivery log, newest first: each event sent to the endpoint, its status and its
    attempts (time, status code, latency, error, the first KiB of the answer). Deliveries
    older than `TAPELINE_WEBHOOK_RETENTION_DAYS` are pruned."""
    with _endpoints(store, runtime.settings, write=False) as webhooks:
        items, after = webhooks.deliveries(webhook_id, limit,
                                           None if cursor is None else int(cursor),
                                           status, event_type)
        return DeliveryPage(items=[Delivery.model_validate(item) for item in items],
                            next_cursor=encode_cursor(after))


@router.get("/{webhook_id}/deliveries/{delivery_id}", summary="Get a delivery",
            responses=responses(404), openapi_extra=WRITE)
def delivery(webhook_id: str, delivery_id: str, runtime: RuntimeDep,
             store: StoreDep) -> Delivery:
    """One delivery with its latest attempts."""
    return _delivery(store, runtime, webhook_id, delivery_id)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202,
             summary="Redeliver an event", responses=responses(404, 409), openapi_extra=WRITE)
def redeliver(webhook_id: str, delivery_id: str, runtime: RuntimeDep,
              store: StoreDep) -> Delivery:
    """Send a delivered or failed event again, with the same body and `webhook-id` (so a
    receiver that de-duplicates sees it once), and a new round of retries."""
    with _endpoints(store, runtime.settings) as webhooks:
        return Delivery.model_validate(webhooks.redeliver(webhook_id, delivery_id))
