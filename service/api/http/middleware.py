"""Pure ASGI middleware: request ids, logs and metrics; a cap on requests served at once; the
Host and Origin checks that keep browser pages elsewhere out; CORS; HEAD; and a body that must
arrive within its size and time limits. :func:`install` adds them to an app in order."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.http.problems import MEDIA_TYPE, problem_body
from service.api.http.telemetry import Metrics
from service.config import Settings

log = logging.getLogger("tapeline.access")
errors = logging.getLogger("tapeline.api")

CLOSE = {"Connection": "close"}
# Answer headers a browser page of an allowed origin may read.
EXPOSED_HEADERS = ["Location", "Preference-Applied", "Retry-After", "X-Request-ID",
                   "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                   "WWW-Authenticate"]


async def send_problem(
    scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Answer with a problem+json document, from middleware (outside the app's handlers)."""
    body = json.dumps(problem_body(status, detail, scope.get("path", ""))).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """The request body went past the configured limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes", CLOSE)


class BodyTimeout(HTTPException):
    """The request body did not arrive whole in time."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s", CLOSE)


class BodyMiddleware:
    """A request body may hold at most ``limit`` bytes (413: at once when Content-Length says
    so, else as soon as the bytes read pass it) and must arrive whole within ``timeout``
    seconds of the app asking for it (408), so slow or stalled clients cannot hold a request
    open. Either answer, and any answer given before the body was read, closes the connection."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                await send_problem(scope, send, 400, "Content-Length is not a number", CLOSE)
                return
            if too_large:
                detail = f"request body exceeds the limit of {self.limit} bytes"
                await send_problem(scope, send, 413, detail, CLOSE)
                return
        body_done = declared in (None, "0") and "transfer-encoding" not in headers
        received = 0
        deadline: float | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, deadline, body_done
            if body_done:
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.timeout
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                body_done = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:  # the rest of the body was never read: do not reuse
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, guarded_receive, closing_send)
        except (BodyTooLarge, BodyTimeout) as error:
            if started:
                raise
            await send_problem(scope, send, error.status_code, str(error.detail), CLOSE)


class HeadMiddleware:
    """HEAD wherever GET: the GET's status and headers, no body (a stream ends at once)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        inner = {**scope, "method": "GET"}
        async with anyio.create_task_group() as group:

            async def headers_only(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await send(message)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    group.cancel_scope.cancel()

            await self.app(inner, receive, headers_only)
        scope.update({key: value for key, value in inner.items() if key != "method"})


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(host: str) -> str:
    """``localhost`` from ``LocalHost:8000``, ``::1`` from ``[::1]:8000``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


class BrowserGuardMiddleware:
    """Refuse what a web page elsewhere could make a browser send: a ``Host`` this service does
    not answer to (400: DNS rebinding), and a state-changing request that its ``Origin`` or
    ``Sec-Fetch-Site`` shows to come from another site not in ``origins`` (403: CSRF)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str], origins: Iterable[str]) -> None:
        self.app = app
        self.hosts = {h.strip().lower().rstrip(".") for h in hosts}
        self.origins = {o.strip().lower().rstrip("/") for o in origins}

    def _host_allowed(self, host: str | None) -> bool:
        if "*" in self.hosts:
            return True
        if not host:
            return False
        name = _host_name(host)
        return name in self.hosts or any(
            pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in self.hosts
        )

    def _cross_site(self, headers: Headers) -> bool:
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return site in ("same-site", "cross-site")
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins or "*" in self.origins:
            return False
        if site:
            return True
        return urlsplit(origin).netloc != headers.get("host", "").strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self._host_allowed(host):
            detail = f"this service does not answer to the host {host!r} (TAPELINE_ALLOWED_HOSTS)"
            await send_problem(scope, send, 400, detail[:300])
            return
        if scope["method"] not in SAFE_METHODS and self._cross_site(headers):
            detail = (
                "a page on another site may not change anything here; "
                "allow its origin with TAPELINE_CORS_ORIGINS"
            )
            await send_problem(scope, send, 403, detail)
            return
        await self.app(scope, receive, send)


class ConcurrencyLimitMiddleware:
    """At most ``limit`` requests (each holding a connection) are served at once; beyond, 503
    with ``Retry-After`` and the connection closed, so a crowd cannot exhaust open files."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            detail = f"the service is serving its limit of {self.limit} requests; try again"
            await send_problem(scope, send, 503, detail, {"Retry-After": "1", **CLOSE})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class RequestContextMiddleware:
    """Give every request an id (``X-Request-ID``, kept if the client sent one), mark every
    answer ``nosniff``, log each request with its status and latency, count it in the
    metrics, and answer an unexpected error with a 500 that carries only the request id (the
    log has the rest)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = [*message.get("headers", []),
                           (b"x-request-id", request_id.encode("latin-1"))]
                if all(name.lower() != b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                rate = scope["state"].get("rate_headers")
                if rate and all(name.lower() != b"ratelimit-limit" for name, _ in headers):
                    headers.extend((k.lower().encode(), v.encode()) for k, v in rate.items())
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            errors.exception(
                "unexpected error",
                extra={"fields": {"request_id": request_id, "method": scope["method"],
                                  "path": scope["path"]}},
            )
            if not started:
                detail = f"an unexpected error occurred; it is logged under request id {request_id}"
                await send_problem(scope, send_with_id, 500, detail)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            self.metrics.observe_request(scope["method"], route, status, elapsed)
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                    }
                },
            )


def _route_template(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


def install(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Add the middleware to ``app``: a request meets the request context first, then the
    cap on requests served at once, the browser guard, CORS (when origins are allowed), HEAD
    and the body limits."""
    # Added innermost first: a request meets them in the opposite order.
    app.add_middleware(
        BodyMiddleware, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds
    )
    app.add_middleware(HeadMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(
        BrowserGuardMiddleware, hosts=settings.hosts(), origins=settings.cors_origins
    )
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_connections)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
