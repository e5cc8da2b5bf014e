"""A parsed filter as a SQL condition with bound parameters, checked against the fields'
types on the way, in two-valued logic as a person reads it.

A comparison on a field a run lacks (or holds null) is false; ``!=``, ``NOT IN`` and
``NOT LIKE`` are the plain negations of ``=``, ``IN`` and ``LIKE``, so they are true for it;
``NOT`` negates plainly; ``IS NULL`` is true for it. SQL's NULL would make ``NOT (x = 1)``
unknown instead, so negations are pushed down to the comparisons (De Morgan), where each
negated comparison says ``x IS NULL OR NOT (...)`` in so many words; a comparison that is not
negated stays plain, the form an index answers.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, cast, literal, not_, or_
from sqlalchemy.dialects.postgresql import JSONB

from service.store.dialects import ValueType, like, ordered
from service.store.search.errors import QueryError
from service.store.search.fields import Field, Join, lookup
from service.store.search.grammar import (
    All,
    Any_,
    Compare,
    IsNull,
    Like,
    Member,
    Node,
    Not,
    Value,
)
from service.store.tables import RunRow

ORDERING = {"<", "<=", ">", ">="}
# What each type's literals look like, for error messages.
EXPECTED = {
    ValueType.NUMBER: ("numbers", "a number"),
    ValueType.STRING: ("strings", "a quoted string"),
    ValueType.TIME: ("times", "an ISO 8601 time"),
    ValueType.BOOLEAN: ("true or false", "true or false"),
    ValueType.LIST: ("lists", "a list such as [16, 16]"),
}
FITS = {
    ValueType.NUMBER: {"number"},
    ValueType.STRING: {"string"},
    ValueType.TIME: {"time", "string"},
    ValueType.BOOLEAN: {"boolean"},
    ValueType.LIST: {"list"},
}


@dataclass
class Compiled:
    """A filter's SQL condition and the tables it needs joined to the runs."""

    condition: Any
    joins: set[Join] = field(default_factory=set)


def parse_time(text: str, param: str, column: int) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without a zone is UTC)."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(param, column, f"expected an ISO 8601 time at column {column}, "
                                        f"found '{text}'") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


class Compiler:
    """Translates one filter for one SQL dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str, param: str = "filter") -> None:
        self.dialect = dialect
        self.param = param
        self.joins: set[Join] = set()

    def compile(self, node: Node) -> Compiled:
        """The condition of ``node``, and the joins it needs."""
        return Compiled(self._node(node, negated=False), self.joins)

    # -------------------------------------------------------------- structure

    def _node(self, node: Node, negated: bool) -> Any:
        if isinstance(node, Not):
            return self._node(node.operand, not negated)
        if isinstance(node, All | Any_):
            parts = [self._node(operand, negated) for operand in node.operands]
            conjunction = isinstance(node, All) != negated  # De Morgan
            return and_(*parts) if conjunction else or_(*parts)
        found = self._field(node.field, node.column)
        if isinstance(node, IsNull):
            expr = self._expr(found)
            if self._pg_tags(found):
                has = RunRow.tags.op("?", is_comparison=True)(literal(found.keys[0]))
                return has if node.negated != negated else not_(has)
            return expr.is_not(None) if node.negated != negated else expr.is_(None)
        if isinstance(node, Compare):
            op, negated = ("=", not negated) if node.op in ("!=", "<>") else (node.op, negated)
            return self._negatable(found, self._compare(found, op, node.value), negated)
        if isinstance(node, Member):
            return self._negatable(found, self._member(found, node), negated != node.negated)
        return self._negatable(found, self._like(found, node), negated != node.negated)

    def _negatable(self, found: Field, positive: Any, negated: bool) -> Any:
        """``positive``, or its two-valued negation: true where the field is missing."""
        if not negated:
            return positive
        return or_(self._expr(found).is_(None), not_(positive))

    # ------------------------------------------------------------- fields

    def _field(self, name: str, column: int) -> Field:
        found = lookup(name, column, self.param)
        if found.join is not None:
            self.joins.add(found.join)
        return found

    def _expr(self, found: Field) -> Any:
        return found.expression(self.dialect)

    def _pg_tags(self, found: Field) -> bool:
        return self.dialect == "postgresql" and found.column is RunRow.tags

    def _error(self, column: int, message: str) -> QueryError:
        return QueryError(self.param, column, message)

    # ------------------------------------------------------------- values

    def _literal(self, found: Field, value: Value) -> Any:
        """A literal as the field's values are bound: checked to be of the field's type."""
        holds, expected = EXPECTED[found.type]
        if value.kind not in FITS[found.type]:
            hint = " (tags are strings: quote the value)" if found.column is RunRow.tags \
                and value.kind == "number" else ""
            raise self._error(value.column, f"'{found.name}' holds {holds}: expected "
                                            f"{expected} at column {value.column}, found "
                                            f"{value.text}{hint}")
        if found.type == ValueType.TIME:
            return parse_time(value.value, self.param, value.column)
        if found.type == ValueType.NUMBER:
            number = value.value
            if not found.keys:  # a column: integers stay integers (an index on it answers)
                return int(number) if found.integral and float(number).is_integer() else number
            return float(number)
        if found.type == ValueType.BOOLEAN and self.dialect == "sqlite":
            return int(value.value)  # SQLite's JSON reads true and false as 1 and 0
        if found.type == ValueType.LIST:
            text = json.dumps(value.value, separators=(",", ":"))
            return cast(literal(text), JSONB) if self.dialect == "postgresql" else text
        if found.allowed is not None and value.value not in found.allowed:
            close = difflib.get_close_matches(value.value, found.allowed, n=1, cutoff=0.5)
            hint = f": did you mean '{close[0]}'?" if close else ""
            raise self._error(value.column, f"unknown {found.name} '{value.value}' at column "
                                            f"{value.column}{hint} ({found.name} is one of "
                                            f"{', '.join(found.allowed)})")
        return value.value

    def _compare(self, found: Field, op: str, value: Value) -> Any:
        if op in ORDERING and found.type in (ValueType.BOOLEAN, ValueType.LIST):
            raise self._error(value.column, f"'{found.name}' holds {EXPECTED[found.type][0]}: "
                                            f"compare it with = or != (column {value.column})")
        bound = self._literal(found, value)
        if self._pg_tags(found) and op == "=":
            return self._contains(found, bound)
        expr = ordered(self._expr(found), self.dialect, found.type) if op in ORDERING \
            else self._expr(found)
        if op == "=":
            return expr == bound
        return {"<": expr < bound, "<=": expr <= bound, ">": expr > bound,
                ">=": expr >= bound}[op]

    def _contains(self, found: Field, value: str) -> Any:
        """``tags @> {"key": value}``: the GIN index on tags answers it."""
        document = json.dumps({found.keys[0]: value})
        return RunRow.tags.op("@>", is_comparison=True)(cast(literal(document), JSONB))

    def _member(self, found: Field, node: Member) -> Any:
        if found.type == ValueType.LIST:
            raise self._error(node.column, f"'{found.name}' holds lists: compare it with = "
                                           f"or != (column {node.column})")
        values = [self._literal(found, value) for value in node.values]
        if self._pg_tags(found):
            return or_(*(self._contains(found, value) for value in values))
        return self._expr(found).in_(values)

    def _like(self, found: Field, node: Like) -> Any:
        if found.type != ValueType.STRING:
            raise self._error(node.column, f"'{found.name}' holds {EXPECTED[found.type][0]}: "
                                           f"LIKE takes a field of strings (column "
                                           f"{node.column})")
        if node.pattern.kind != "string":
            raise self._error(node.pattern.column, f"LIKE expects a quoted pattern at column "
                                                   f"{node.pattern.column}, found "
                                                   f"{node.pattern.text}")
        return like(self._expr(found), self.dialect, node.pattern.value)


def compile_filter(node: Node, dialect: str, param: str = "filter") -> Compiled:
    """The SQL condition of a parsed filter on ``dialect``, and the joins it needs."""
    return Compiler(dialect, param).compile(node)

