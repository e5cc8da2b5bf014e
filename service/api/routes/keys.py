"""API keys (/v1/keys), the caller (/v1/me) and tenants' quotas (/v1/tenants/{tenant}/quotas).

An ``admin`` key manages its own tenant's keys; an admin of tenant ``admin`` (and a keyless
operator, where keys are off or not yet needed) manages every tenant's keys and quotas.
Another tenant's key id answers 404, like any unknown id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from service.api.http.access import key_secret
from service.api.http.auth import Authorized, Caller, CallerDep
from service.api.http.problems import forbidden, responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import RuntimeDep
from service.api.http.tenant_store import StoreDep, default_quotas
from service.api.schemas.keys import (
    ApiKey,
    ApiKeyList,
    KeyCreate,
    Me,
    NewApiKey,
    Quotas,
    QuotasUpdate,
    TenantName,
    Usage,
)
from service.store import keys
from service.store.repo import Conflict
from service.store.tables import ApiKeyRow

ADMIN = {"x-scope": "admin"}
keys_router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Authorized])
tenants_router = APIRouter(tags=["tenants"], dependencies=[Authorized])


def operator(caller: Caller) -> bool:
    """Whether the caller manages every tenant: an admin of tenant ``admin``, or keyless."""
    return caller.key_id is None or caller.tenant == keys.ADMIN_TENANT


def _view(row: ApiKeyRow) -> ApiKey:
    return ApiKey(id=row.id, tenant=row.tenant, name=row.name, scopes=row.scopes,
                  prefix=row.prefix, created_at=row.created_at, expires_at=row.expires_at,
                  last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def _tenant_of_request(caller: Caller, tenant: str | None) -> str:
    if tenant is None or tenant == caller.tenant:
        return caller.tenant
    if not operator(caller):
        raise forbidden(f"only an admin of tenant {keys.ADMIN_TENANT!r} manages another "
                        "tenant's keys")
    return tenant


@keys_router.post("", status_code=201, summary="Create an API key", dependencies=[JsonBody],
                  responses=responses(400, 401, 403, 413, 415, 422, 429), openapi_extra=ADMIN)
def create(body: KeyCreate, runtime: RuntimeDep, caller: CallerDep, request: Request,
           response: Response) -> NewApiKey:
    """A new key of the caller's tenant (or of `tenant`, for an admin of tenant `admin`). The
    answer holds the key; it is never shown again."""
    tenant = _tenant_of_request(caller, body.tenant)
    with runtime.sessions.begin() as session:
        row, key = keys.create_key(session, tenant=tenant, scopes=list(body.scopes),
                                   name=body.name, expires_at=keys.expiry(body.expires_in_days),
                                   secret=key_secret(runtime.settings))
        view = NewApiKey(**_view(row).model_dump(), key=key)
    request.app.state.access.key_created()
    response.headers["Location"] = f"/v1/keys/{view.id}"
    return view


@keys_router.get("", summary="List API keys", responses=responses(401, 403, 422, 429),
                 openapi_extra=ADMIN)
def list_(
    runtime: RuntimeDep,
    caller: CallerDep,
    tenant: Annotated[TenantName | None, Query(description="Only this tenant's keys.")] = None,
) -> ApiKeyList:
    """The keys of the caller's tenant (every tenant's, or `tenant`'s, for an admin of tenant
    `admin`), revoked ones included."""
    whose = tenant if operator(caller) else _tenant_of_request(caller, tenant)
    with runtime.sessions() as session:
        return ApiKeyList(items=[_view(row) for row in keys.list_keys(session, whose)])


@keys_router.delete("/{key_id}", status_code=204, summary="Revoke an API key",
                    responses=responses(401, 403, 404, 409, 429), openapi_extra=ADMIN)
def delete(key_id: str, runtime: RuntimeDep, caller: CallerDep, request: Request) -> Response:
    """Revoke a key: its next request to this server answers 401 (to other replicas, within
    `TAPELINE_KEY_CACHE_SECONDS`, 1 s by default). Revoking twice changes nothing. A key cannot
    revoke itself (409), so an admin cannot lock itself out by mistake: use another admin
    key, or `tapeline keys revoke`."""
    if key_id == caller.key_id:
        raise Conflict(f"key {key_id!r} is the one making this request; revoke it with another "
                       "admin key or `tapeline keys revoke`")
    with runtime.sessions.begin() as session:
        keys.revoke(session, key_id, None if operator(caller) else caller.tenant)
    request.app.state.access.key_revoked(key_id)
    return Response(status_code=204)


@tenants_router.get("/v1/me", summary="The caller: tenant, scopes, quotas, usage",
                    responses=responses(401, 429))
def me(store: StoreDep) -> Me:
    """Who the key speaks for, what it may do, the tenant's quotas and what it uses now."""
    with store.read() as repo:
        quotas = store.quotas(repo)
        usage = repo.usage()
    caller = store.caller
    return Me(
        tenant=caller.tenant,
        scopes=sorted(caller.scopes, key=keys.SCOPES.index),  # type: ignore[arg-type]
        key_id=caller.key_id,
        quotas=None if quotas is None else Quotas(**quotas.__dict__),
        usage=Usage(**usage),
    )


@tenants_router.put("/v1/tenants/{tenant}/quotas", summary="Set a tenant's quotas",
                    dependencies=[JsonBody], responses=responses(400, 401, 403, 413, 415, 422,
                                                                 429),
                    openapi_extra=ADMIN)
def set_quotas(
    tenant: Annotated[str, Path(pattern=keys.TENANT_PATTERN, description="The tenant.")],
    body: QuotasUpdate,
    runtime: RuntimeDep,
    caller: CallerDep,
    request: Request,
) -> Quotas:
    """Replace a tenant's own limits (a null or absent one: the service's default); only an
    admin of tenant `admin`. Answers the limits now in force."""
    if not operator(caller):
        raise forbidden(f"only an admin of tenant {keys.ADMIN_TENANT!r} sets quotas")
    with runtime.sessions.begin() as session:
        keys.set_quotas(session, tenant, body.model_dump())
        found = keys.quotas(session, tenant, default_quotas(runtime.settings))
    request.app.state.access.quotas_changed(tenant)
    return Quotas(**found.__dict__)
