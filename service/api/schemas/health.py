"""Schemas of the service's own state: liveness and readiness."""

from __future__ import annotations

from typing import Literal

from service.api.schemas.common import Public


class Health(Public):
    """Liveness or readiness."""

    status: Literal["ok"]
