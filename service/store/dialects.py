"""The few SQL forms that differ between SQLite and PostgreSQL, written so that both stores
answer alike: a value inside a JSON column (of a given type), a case-sensitive ``LIKE``, and
strings ordered byte by byte.

JSON keys are rendered into the SQL text, not bound: an expression index matches a query only
when the two expressions are the same, path included. Every key comes from the search's field
catalog or matches the tag key pattern, and is checked here to hold no quote.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, Text, cast, func, literal_column
from sqlalchemy.dialects.postgresql import JSONB

_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class ValueType(StrEnum):
    """What a searchable value holds."""

    NUMBER = "number"
    STRING = "string"
    TIME = "time"
    BOOLEAN = "boolean"
    LIST = "list"


def _literal(text: str) -> Any:
    return literal_column(f"'{text}'")


def _checked(keys: tuple[str, ...]) -> tuple[str, ...]:
    for key in keys:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a key the store names: {key!r}")
    return keys


def json_value(column: Any, dialect: str, keys: tuple[str, ...],
               kind: ValueType = ValueType.STRING) -> Any:
    """The value at ``keys`` inside a JSON ``column`` (SQL NULL when absent or JSON null): on
    SQLite ``json_extract`` (numbers as numbers, booleans as 0/1, lists as minified JSON text);
    on PostgreSQL ``->``/``->>`` cast to the type of ``kind`` (a list as JSONB)."""
    keys = _checked(keys)
    if dialect == "sqlite":
        path = "$" + "".join(f'."{key}"' for key in keys)
        return func.json_extract(column, _literal(path))
    value = column
    for key in keys[:-1]:
        value = value.op("->")(_literal(key))
    if kind == ValueType.LIST:
        return cast(value.op("->")(_literal(keys[-1])), JSONB)
    text = value.op("->>", return_type=Text)(_literal(keys[-1]))
    if kind == ValueType.NUMBER:
        return cast(text, Float(precision=53))
    if kind == ValueType.BOOLEAN:
        return cast(text, Boolean)
    return text


def ordered(expr: Any, dialect: str, kind: ValueType) -> Any:
    """``expr`` as ``<`` and ``ORDER BY`` should see it: strings in byte order on PostgreSQL
    (``COLLATE "C"``), as SQLite's BINARY collation orders them."""
    if dialect == "postgresql" and kind == ValueType.STRING:
        return expr.collate("C")
    return expr


def escape_like(text: str) -> str:
    """``text`` as a ``LIKE`` pattern matching itself (``%``, ``_`` and ``\\`` escaped)."""
    return re.sub(r"([\\%_])", r"\\\1", text)


def _glob(pattern: str) -> str:
    """A ``LIKE`` pattern (``%``, ``_``, backslash escapes) as the GLOB pattern SQLite matches
    case-sensitively."""
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars, "\\")
            out.append(f"[{char}]" if char in "*?[" else char)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


def like(expr: Any, dialect: str, pattern: str) -> Any:
    """``expr LIKE pattern``, case-sensitive on both stores (SQLite's own LIKE ignores ASCII
    case, so there it is a GLOB); ``\\`` escapes ``%`` and ``_``."""
    if dialect == "sqlite":
        return expr.op("GLOB", is_comparison=True)(_glob(pattern))
    return expr.like(pattern, escape="\\")
