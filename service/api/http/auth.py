"""Who is calling: API keys (``Authorization: Bearer tl_...``), scopes and rate limits (what
is kept between requests is in :mod:`~service.api.http.access`).

Every route of the resource routers depends on :func:`authorize`, which yields the
:class:`Caller` (tenant, scopes, key id) or answers 401 / 403 / 429. The scope an operation
needs is ``read`` for GET and HEAD and ``write`` otherwise, unless its route says
(``openapi_extra={"x-scope": ...}``); ``admin`` grants ``write``, which grants ``read``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.api.http.access import Access
from service.api.http.problems import ProblemError, forbidden, responses, unauthorized
from service.api.http.runtime import Runtime
from service.store import keys

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


KEYLESS = Caller(KEYLESS_TENANT, frozenset(keys.SCOPES), None)


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


NO_KEY = ("this operation needs an API key: send `Authorization: Bearer tl_...` (the terminal "
          "client: --key or TAPELINE_API_KEY; the dashboard asks for it)")


async def authenticate(request: Request, runtime: Runtime) -> Caller:
    """The caller a request's key (or its absence, where allowed) makes it; 401 otherwise.
    On the loop, except the store lookups (a key's record not kept by
    :class:`~service.api.http.access.KeyCache`, or whether any key exists) and a Redis rate
    count, which run in a worker thread: a keyless request on a laptop, and a keyed one whose
    record is kept, cost no thread hop at all."""
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
        raise unauthorized(NO_KEY)
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
    of the operations that use it is written by :mod:`service.api.openapi`
    (``secured_operations``)."""
    caller = await authenticate(request, request.app.state.runtime)
    scope = required_scope(request)
    if not caller.may(scope):
        have = ", ".join(sorted(caller.scopes, key=keys.SCOPES.index)) or "none"
        raise forbidden(f"this operation needs the {scope!r} scope; the key has {have}")
    return caller


CallerDep = Annotated[Caller, Depends(authorize)]
Authorized = Depends(authorize)
