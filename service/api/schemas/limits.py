"""Limits from the answering app's own settings, applied where requests are validated.

A request field annotated with ``Limit("max_epochs")`` may not exceed that setting (a list
may not have more items): 422 naming the field. The spec an app serves shows the setting as
the field's ``maximum`` (``maxItems``). Both read the settings bound to the request being
answered (:func:`bind_settings`, from the app-wide dependency) or to the spec being written
(:func:`bound`); outside either, the process's settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from service.config import Settings, get_settings

_bound: ContextVar[Settings | None] = ContextVar("tapeline_settings", default=None)


def current() -> Settings:
    """The settings of the app answering now (the process's when none is bound)."""
    return _bound.get() or get_settings()


@contextmanager
def bound(settings: Settings) -> Iterator[None]:
    """Bind ``settings`` for the code inside (writing an app's spec)."""
    token = _bound.set(settings)
    try:
        yield
    finally:
        _bound.reset(token)


async def bind_settings(request: Request) -> None:
    """Bind the app's settings for the rest of this request (async, so that validation after
    it, in the same task, sees them)."""
    _bound.set(request.app.state.settings)


@dataclass(frozen=True)
class Limit:
    """Annotated marker: at most the value of a ``Settings`` field (items, for a list)."""

    setting: str

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        key = "maxItems" if json_schema.get("type") == "array" else "maximum"
        json_schema[key] = getattr(current(), self.setting)
        return json_schema

    def _check(self, value: Any) -> Any:
        limit = getattr(current(), self.setting)
        if isinstance(value, list):
            if len(value) > limit:
                raise PydanticCustomError("too_long", "at most {limit} items (the limit set by "
                                          "{setting})", {"limit": limit,
                                                         "setting": self._variable()})
        elif value > limit:
            raise PydanticCustomError("less_than_equal", "at most {limit} (the limit set by "
                                      "{setting})", {"limit": limit, "setting": self._variable()})
        return value

    def _variable(self) -> str:
        return f"TAPELINE_{self.setting.upper()}"
