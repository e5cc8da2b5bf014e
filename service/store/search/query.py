"""A tenant's runs, filtered in SQL, sorted and paged with a cursor.

With no ``sort``, runs come in creation order (or newest first) and the cursor is the last
one's position, as every list of the API pages. With ``sort``, runs come by the sort fields;
runs without the first field come after all that have it (in either direction), each later
field places its missing values last too, and ties break by id in the direction of the last
field. The query runs in two parts, runs that have the first field, then those that lack it,
so that an index on (owner, field, id) hands out the first part already in order; the cursor
(opaque) holds the sort, the part, the last run's sort values and its id.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, defer

from service.store import annotations as annotated
from service.store.dialects import ValueType, ordered
from service.store.search.compile import compile_filter, parse_time
from service.store.search.errors import QueryError
from service.store.search.fields import Field, Join, lookup
from service.store.search.grammar import parse
from service.store.tables import DatasetRow, ModelRow, RunRow

MAX_SORT_FIELDS = 4
CURSOR_PREFIX = "k"

# How many of a page's runs (from the first) fit an answer, given each run with the stored
# bytes of its initial and of its final params (0 without): the runs come with both deferred,
# so a page of large models' runs is judged before their params are read.
Fitting = Callable[[Sequence[tuple[RunRow, int, int]]], int]
_SIZES = (func.length(RunRow.initial_params),
          func.coalesce(func.length(RunRow.final_params), 0))
_DEFERRED = (defer(RunRow.initial_params), defer(RunRow.final_params))


@dataclass(frozen=True)
class SortKey:
    """One sort field and its direction."""

    field: Field
    descending: bool

    @property
    def text(self) -> str:
        """The key as ``sort`` spells it."""
        return ("-" if self.descending else "") + self.field.name


def parse_sort(text: str) -> list[SortKey]:
    """``sort``'s comma-separated fields, each with an optional ``-`` for descending; a
    :class:`QueryError` (param ``sort``) naming the column of a field that cannot sort."""
    keys: list[SortKey] = []
    position = 0
    for part in text.split(","):
        column = position + len(part) - len(part.lstrip()) + 1
        position += len(part) + 1
        name = part.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-").removeprefix("+").strip()
        if not name:
            raise QueryError("sort", column, f"expected a field at column {column}")
        found = lookup(name, column, "sort")
        if found.type == ValueType.LIST:
            raise QueryError("sort", column, f"'{name}' holds lists, which do not sort "
                                             f"(column {column})")
        if any(key.field.name == found.name for key in keys):
            raise QueryError("sort", column, f"'{name}' is named twice (column {column})")
        keys.append(SortKey(found, descending))
    if len(keys) > MAX_SORT_FIELDS:
        raise QueryError("sort", 1, f"{len(keys)} sort fields; at most {MAX_SORT_FIELDS}")
    return keys


@dataclass(frozen=True)
class RunQuery:
    """What a list of runs asks for: a filter, a sort, a page size and cursor, creation order
    (when unsorted), tags (key, or key and value) and a name prefix, and the model."""

    filter: str | None = None
    sort: str | None = None
    limit: int = 100
    cursor: str | None = None
    newest_first: bool = False
    tags: Sequence[tuple[str, str | None]] = ()
    name_prefix: str | None = None
    model_id: str | None = None


@dataclass
class _Plan:
    """A query's base (filters applied) and what is needed to run it."""

    base: Select[Any]
    dialect: str
    keys: list[SortKey] = field(default_factory=list)


def _encode(values: Sequence[Any]) -> list[Any]:
    return [value.isoformat() if isinstance(value, datetime) else value for value in values]


def _cursor(sort: str, part: str, values: Sequence[Any], run_id: str) -> str:
    payload = json.dumps({"s": sort, "p": part, "v": _encode(values), "i": run_id},
                         separators=(",", ":"))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _read_cursor(text: str, sort: str, keys: list[SortKey]) -> tuple[str, list[Any], str]:
    """A sorted search's cursor: its part, the last run's sort values, its id."""
    wrong = QueryError("cursor", 1, "not a cursor of this search: start again without it")
    if not text.startswith(CURSOR_PREFIX):
        raise QueryError("cursor", 1, "this cursor pages runs in creation order, not by "
                                      "`sort`: start again without it")
    try:
        raw = base64.urlsafe_b64decode(text[1:] + "=" * (-len(text[1:]) % 4))
        payload = json.loads(raw)
        part, values, run_id = payload["p"], payload["v"], payload["i"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise wrong from None
    if payload.get("s") != sort:
        raise QueryError("cursor", 1, f"this cursor pages sort={payload.get('s')!r}, not "
                                      f"sort={sort!r}: start again without it")
    used = keys if part == "a" else keys[1:]
    if part not in ("a", "b") or not isinstance(values, list) or len(values) != len(used) \
            or not isinstance(run_id, str):
        raise wrong
    decoded = []
    for key, value in zip(used, values, strict=True):
        if value is not None and key.field.type == ValueType.TIME:
            if not isinstance(value, str):
                raise wrong
            value = parse_time(value, "cursor", 1)
        elif isinstance(value, dict | list):
            raise wrong
        decoded.append(value)
    return part, decoded, run_id


class RunSearch:
    """Searches of one tenant's runs in one session."""

    def __init__(self, session: Session, tenant: str) -> None:
        self.session = session
        self.tenant = tenant
        self.dialect = session.get_bind().dialect.name

    def _plan(self, query: RunQuery) -> _Plan:
        joins: set[Join] = set()
        conditions: list[Any] = [RunRow.owner == self.tenant]
        if query.model_id is not None:
            conditions.append(RunRow.model_id == query.model_id)
        for key, value in query.tags:
            conditions.append(annotated.tag_condition(RunRow, self.dialect, key, value))
        if query.name_prefix:
            conditions.append(annotated.name_prefix(RunRow, self.dialect, query.name_prefix))
        if query.filter and query.filter.strip():
            compiled = compile_filter(parse(query.filter), self.dialect)
            conditions.append(compiled.condition)
            joins |= compiled.joins
        keys = parse_sort(query.sort) if query.sort else []
        joins |= {key.field.join for key in keys if key.field.join is not None}
        base = select(RunRow)
        if "model" in joins:
            base = base.join(ModelRow, ModelRow.id == RunRow.model_id)
        if "dataset" in joins:
            base = base.outerjoin(DatasetRow, DatasetRow.id == RunRow.dataset_id)
        return _Plan(base.where(*conditions), self.dialect, keys)

    def runs(self, query: RunQuery,
             fitting: Fitting | None = None) -> tuple[list[RunRow], str | None]:
        """One page of runs and the cursor of the next (None after the last); a
        :class:`QueryError` for a filter, sort or cursor it cannot take. With ``fitting``, the
        runs come without their params (deferred), and the page ends after the runs it keeps
        (the cursor continues from there)."""
        plan = self._plan(query)
        if not plan.keys:
            return self._in_creation_order(plan, query, fitting)
        return self._sorted(plan, query, fitting)

    @staticmethod
    def _kept(found: Sequence[tuple[RunRow, int, int]], limit: int,
              fitting: Fitting | None) -> int:
        keep = min(limit, len(found))
        return keep if fitting is None else min(keep, fitting(found[:keep]))

    # -------------------------------------------------------------- creation order

    def _in_creation_order(self, plan: _Plan, query: RunQuery,
                           fitting: Fitting | None) -> tuple[list[RunRow], str | None]:
        after: int | None = None
        if query.cursor is not None:
            if not query.cursor.isdigit():
                raise QueryError("cursor", 1, "this cursor pages runs by `sort`: pass the "
                                              "same sort, or start again without it")
            after = int(query.cursor)
        order = RunRow.seq.desc() if query.newest_first else RunRow.seq
        statement = plan.base.order_by(order).limit(query.limit + 1)
        if after is not None:
            statement = statement.where(RunRow.seq < after if query.newest_first
                                        else RunRow.seq > after)
        if fitting is None:
            found = [(row, 0, 0) for row in self.session.scalars(statement)]
        else:
            found = [(row, int(initial), int(final)) for row, initial, final in
                     self.session.execute(statement.add_columns(*_SIZES).options(*_DEFERRED))]
        rows = [row for row, _, _ in found]
        keep = self._kept(found, query.limit, fitting)
        if keep < len(rows):
            return rows[:keep], str(rows[keep - 1].seq)
        return rows, None

    # ------------------------------------------------------------------ sorted

    def _expressions(self, keys: Sequence[SortKey]) -> list[tuple[Any, bool]]:
        return [(ordered(key.field.expression(self.dialect), self.dialect, key.field.type),
                 key.descending) for key in keys]

    def _sorted(self, plan: _Plan, query: RunQuery,
                fitting: Fitting | None) -> tuple[list[RunRow], str | None]:
        sort = ",".join(key.text for key in plan.keys)
        part, values, last_id = "a", None, None
        if query.cursor is not None:
            part, values, last_id = _read_cursor(query.cursor, sort, plan.keys)
        wanted = query.limit + 1
        sized = fitting is not None
        found: list[tuple[str, RunRow, list[Any], tuple[int, int]]] = []
        if part == "a":
            found += self._part(plan, "a", wanted, values, last_id, sized)
            values, last_id = None, None
        if len(found) < wanted:
            found += self._part(plan, "b", wanted - len(found), values, last_id, sized)
        keep = self._kept([(row, *size) for _, row, _, size in found], query.limit, fitting)
        if keep == len(found):
            return [row for _, row, _, _ in found], None
        last_part, last_row, last_values, _ = found[keep - 1]
        return ([row for _, row, _, _ in found[:keep]],
                _cursor(sort, last_part, last_values, last_row.id))

    def _part(self, plan: _Plan, part: str, limit: int, values: list[Any] | None,
              last_id: str | None,
              sized: bool = False) -> list[tuple[str, RunRow, list[Any], tuple[int, int]]]:
        """Runs that have the first sort field (part ``a``) or lack it (``b``), in order,
        after the cursor's position when given; with ``sized``, without their params and
        with the params' stored bytes (else 0, 0)."""
        expressions = self._expressions(plan.keys)
        used = expressions if part == "a" else expressions[1:]
        descending = plan.keys[-1].descending
        first = plan.keys[0].field.expression(self.dialect)  # as a partial index says it
        condition = first.is_not(None) if part == "a" else first.is_(None)
        statement = plan.base.add_columns(*(e.label(f"k{i}") for i, (e, _) in enumerate(used)))
        statement = statement.where(condition)
        if last_id is not None and values is not None:
            statement = statement.where(self._after(used, values, last_id, descending,
                                                    first_known=part == "a"))
        order = []
        for i, (expr, desc) in enumerate(used):
            term = expr.desc() if desc else expr.asc()
            # The first field of part a is never null: its order stays plain, the one an
            # index scan gives in either direction on both stores.
            order.append(term if (part == "a" and i == 0) else term.nulls_last())
        order.append(RunRow.id.desc() if descending else RunRow.id.asc())
        statement = statement.order_by(*order).limit(limit)
        if not sized:
            return [(part, row[0], list(row[1:]), (0, 0))
                    for row in self.session.execute(statement)]
        rows = self.session.execute(statement.add_columns(*_SIZES).options(*_DEFERRED)).all()
        return [(part, row[0], list(row[1:-2]), (int(row[-2]), int(row[-1]))) for row in rows]

    @staticmethod
    def _after(used: list[tuple[Any, bool]], values: list[Any], last_id: str,
               descending: bool, first_known: bool) -> Any:
        """The condition "comes after (values, last_id)" in the order of ``used`` (missing
        values last), then of id."""
        if first_known and len(used) == 1 and used[0][1] == descending:
            expr = used[0][0]  # one field: a row comparison, which an index range answers
            mine = tuple_(expr, RunRow.id)
            theirs = tuple_(literal(values[0], expr.type), literal(last_id))
            return mine < theirs if descending else mine > theirs
        alternatives, equal = [], []
        for (expr, desc), value in zip(used, values, strict=True):
            if value is None:
                equal.append(expr.is_(None))
                continue
            bound = literal(value, expr.type)
            beyond = expr < bound if desc else expr > bound
            alternatives.append(and_(*equal, or_(expr.is_(None), beyond)))
            equal.append(expr == bound)
        alternatives.append(and_(*equal, RunRow.id < last_id if descending
                                 else RunRow.id > last_id))
        return or_(*alternatives)
