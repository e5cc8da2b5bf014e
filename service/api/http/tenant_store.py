"""The store as the caller's tenant sees it: every repository a route opens is bound to that
tenant, and the tenant's quotas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from service.api.http import dryrun
from service.api.http.auth import Caller, CallerDep
from service.api.http.problems import over_quota
from service.api.http.runtime import Runtime
from service.config import Settings
from service.store import keys
from service.store.repo import Repository


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


def check_stored_bytes(repo: Repository, quotas: keys.Quotas, what: str) -> None:
    """429 when the tenant's stored bytes, counted with what this transaction added
    (``what``), pass its quota; raising undoes the transaction. The caller holds the
    tenant's lock (``Repository.lock_tenant``) since before it wrote."""
    stored = repo.stored_bytes()
    if stored > quotas.max_stored_bytes:
        raise over_quota(
            f"tenant {repo.tenant!r} would store {stored} bytes with {what}, more than its "
            f"quota of {quotas.max_stored_bytes} bytes (datasets, models' params, runs' "
            f"histories and checkpoints count); delete some, or ask for more",
            quotas.max_stored_bytes, stored)


def default_quotas(settings: Settings) -> keys.Quotas:
    """The quotas of a tenant that has none of its own."""
    return keys.Quotas(settings.tenant_max_active_runs, settings.tenant_max_stored_bytes,
                       settings.tenant_rate_limit)


async def tenant_store(request: Request, caller: CallerDep) -> TenantStore:
    """The store bound to the caller's tenant."""
    runtime: Runtime = request.app.state.runtime
    return TenantStore(runtime.sessions, caller, runtime.settings)


StoreDep = Annotated[TenantStore, Depends(tenant_store)]
