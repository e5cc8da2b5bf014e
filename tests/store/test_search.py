"""The run search language against both stores, from one table of cases: each case is an
expression (and maybe a sort) and the same predicate written in Python; the expected run ids
are the predicate evaluated over the fixture rows (tests/store/search_runs.py), ordered as
the sort says (missing values last, ties by id in the last field's direction). Every case
runs on SQLite and on PostgreSQL, whole and a page of 3 at a time through the cursor. Then the
errors: each names its parameter, its column and what was expected."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.search.errors import QueryError
from service.store.search.query import RunQuery, RunSearch
from service.store.tables import RunRow
from tests.conftest import POSTGRES_PARAM
from tests.store import search_runs
from tests.store.search_runs import OTHER_TENANT, TENANT
from tests.support.stores import store_url

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _compare(op: Callable[[Any, Any], bool], name: str, value: Any) -> Predicate:
    return lambda r: r.get(name) is not None and op(r[name], value)


def eq(name: str, value: Any) -> Predicate:
    return _compare(operator.eq, name, value)


def ne(name: str, value: Any) -> Predicate:
    return lambda r: r.get(name) is None or r[name] != value


def lt(name: str, value: Any) -> Predicate:
    return _compare(operator.lt, name, value)


def le(name: str, value: Any) -> Predicate:
    return _compare(operator.le, name, value)


def gt(name: str, value: Any) -> Predicate:
    return _compare(operator.gt, name, value)


def ge(name: str, value: Any) -> Predicate:
    return _compare(operator.ge, name, value)


def among(name: str, *values: Any) -> Predicate:
    return lambda r: r.get(name) is not None and r[name] in values


def missing(name: str) -> Predicate:
    return lambda r: r.get(name) is None


def matches(name: str, pattern: str) -> Predicate:
    """``LIKE`` as a regular expression over the whole value (case-sensitive)."""
    return lambda r: r.get(name) is not None and re.fullmatch(pattern, r[name], re.S) is not None


def not_(p: Predicate) -> Predicate:
    return lambda r: not p(r)


def all_(*ps: Predicate) -> Predicate:
    return lambda r: all(p(r) for p in ps)


def any_(*ps: Predicate) -> Predicate:
    return lambda r: any(p(r) for p in ps)


def everything(r: Row) -> bool:
    return True


@dataclass(frozen=True)
class Case:
    """An expression, its predicate in Python, and a sort."""

    expression: str
    predicate: Predicate
    sort: str | None = None


LR = "params.optimizer.learning_rate"
CASES = [
    # strings and the statuses
    Case("status = 'succeeded'", eq("status", "succeeded")),
    Case("status != 'succeeded'", ne("status", "succeeded")),
    Case("status <> 'succeeded'", ne("status", "succeeded")),
    Case("status IN ('failed', 'diverged')", among("status", "failed", "diverged")),
    Case("status NOT IN ('succeeded', 'queued')", not_(among("status", "succeeded", "queued"))),
    Case("params.optimizer.kind = 'adam'", eq("params.optimizer.kind", "adam")),
    Case('params.optimizer.kind != "adam"', ne("params.optimizer.kind", "adam")),
    Case("params.loss IN ('huber', 'cross_entropy')",
         among("params.loss", "huber", "cross_entropy")),
    Case("model.kind = 'mlp'", eq("model.kind", "mlp")),
    Case("model.activation = 'tanh'", eq("model.activation", "tanh")),
    Case("model.task != 'regression'", ne("model.task", "regression")),
    Case("model.name = 'shared'", eq("model.name", "shared")),
    Case("model.name IS NULL", missing("model.name")),
    Case("dataset.name = 'moons'", eq("dataset.name", "moons")),
    Case("dataset.name IS NULL", missing("dataset.name")),
    Case("dataset.id = '{ds:gone}'", eq("dataset.label", "gone")),
    Case("model.id IN ('{model:a}', '{model:k}')", lambda r: r["label"] in ("a", "k")),
    Case("id = '{c}'", lambda r: r["label"] == "c"),
    # numbers
    Case(f"{LR} < 0.05", lt(LR, 0.05)),
    Case(f"{LR} <= 0.01", le(LR, 0.01)),
    Case(f"{LR} >= 0.01 AND {LR} < 0.1", all_(ge(LR, 0.01), lt(LR, 0.1))),
    Case(f"{LR} = 0.1", eq(LR, 0.1)),
    Case(f"{LR} = 1e-3", eq(LR, 1e-3)),
    Case(f"{LR} > .05", gt(LR, 0.05)),
    Case("params.batch_size = 32", eq("params.batch_size", 32)),
    Case("params.batch_size != 32", ne("params.batch_size", 32)),
    Case("params.batch_size IS NULL", missing("params.batch_size")),
    Case("params.batch_size > 16.5", gt("params.batch_size", 16.5)),
    Case("params.batch_size IN (16, 128)", among("params.batch_size", 16, 128)),
    Case("params.epochs >= 10", ge("params.epochs", 10)),
    Case("params.epochs NOT IN (5, 20)", not_(among("params.epochs", 5, 20))),
    Case("params.regularization.l2 > 0", gt("params.regularization.l2", 0)),
    Case("params.huber_delta = 2.5", eq("params.huber_delta", 2.5)),
    Case("params.validation.fraction = 0.2", eq("params.validation.fraction", 0.2)),
    Case("params.validation.fraction IS NOT NULL", not_(missing("params.validation.fraction"))),
    Case("params.validation.dataset_id = 'ds_elsewhere'",
         eq("params.validation.dataset_id", "ds_elsewhere")),
    Case("params.early_stopping.patience < 5", lt("params.early_stopping.patience", 5)),
    Case("params.early_stopping.monitor = 'val_loss'",
         eq("params.early_stopping.monitor", "val_loss")),
    Case("params.optimizer.momentum > 0.5", gt("params.optimizer.momentum", 0.5)),
    Case("params.optimizer.beta_1 IS NOT NULL", not_(missing("params.optimizer.beta_1"))),
    Case("params.shuffle_seed = 123456789012", eq("params.shuffle_seed", 123456789012)),
    Case("params.dtype = 'float32'", eq("params.dtype", "float32")),
    Case("metrics.loss < 0.5", lt("metrics.loss", 0.5)),
    Case("metrics.loss > -1", gt("metrics.loss", -1)),
    Case("metrics.val_loss < 0.3 OR metrics.accuracy > 0.9",
         any_(lt("metrics.val_loss", 0.3), gt("metrics.accuracy", 0.9))),
    Case("metrics.val_loss IS NULL", missing("metrics.val_loss")),
    Case("NOT metrics.val_loss < 0.3", not_(lt("metrics.val_loss", 0.3))),
    Case("metrics.accuracy >= 0.96", ge("metrics.accuracy", 0.96)),
    Case("metrics.rmse IS NOT NULL AND metrics.rmse <= 1",
         all_(not_(missing("metrics.rmse")), le("metrics.rmse", 1))),
    Case("metrics.val_accuracy > 0.8", gt("metrics.val_accuracy", 0.8)),
    Case("metrics.r2 < 0", lt("metrics.r2", 0)),
    Case("duration_ms > 1000", gt("duration_ms", 1000)),
    Case("duration_ms IS NULL", missing("duration_ms")),
    Case("duration_ms = 90.5", eq("duration_ms", 90.5)),
    Case("epochs_completed = 0", eq("epochs_completed", 0)),
    Case("epochs_completed < 5", lt("epochs_completed", 5)),
    # booleans and lists
    Case("params.shuffle = false", eq("params.shuffle", False)),
    Case("params.shuffle != TRUE", ne("params.shuffle", True)),
    Case("params.optimizer.nesterov = true", eq("params.optimizer.nesterov", True)),
    Case("params.early_stopping.restore_best = false",
         eq("params.early_stopping.restore_best", False)),
    Case("model.hidden = [16, 16]", eq("model.hidden", [16, 16])),
    Case("model.hidden != [16]", ne("model.hidden", [16])),
    Case("model.hidden = [32]", eq("model.hidden", [32])),
    Case("model.features = 2", eq("model.features", 2)),
    Case("model.classes >= 3", ge("model.classes", 3)),
    # tags
    Case("tags.team = 'cv'", eq("tags.team", "cv")),
    Case("tags.team != 'cv'", ne("tags.team", "cv")),
    Case("tags.team IN ('cv', 'nlp')", among("tags.team", "cv", "nlp")),
    Case("tags.team NOT IN ('cv')", not_(among("tags.team", "cv"))),
    Case("tags.team IS NULL", missing("tags.team")),
    Case("tags.team IS NOT NULL AND tags.priority IS NOT NULL",
         all_(not_(missing("tags.team")), not_(missing("tags.priority")))),
    Case("tags.v1.2 = 'x'", eq("tags.v1.2", "x")),
    Case("tags.best = ''", eq("tags.best", "")),
    Case("tags.team LIKE 'c%'", matches("tags.team", "c.*")),
    Case("tags.priority > 'high'", gt("tags.priority", "high")),
    # LIKE and names
    Case("name LIKE 'sweep-%'", matches("name", "sweep-.*")),
    Case("name LIKE 'Sweep%'", matches("name", "Sweep.*")),
    Case("name NOT LIKE 'sweep-%'", not_(matches("name", "sweep-.*"))),
    Case("name LIKE 'sweep-_1'", matches("name", "sweep-.1")),
    Case(r"name LIKE '100\%\_done'", eq("name", "100%_done")),
    Case(r"name LIKE '100\%%'", matches("name", "100%.*")),
    Case("name LIKE 'odd[x]*?'", eq("name", "odd[x]*?")),
    Case("name LIKE '%[x]%'", matches("name", r".*\[x\].*")),
    Case("name < 'a'", lt("name", "a")),
    Case("name > 'sweep-05'", gt("name", "sweep-05")),
    Case("name IS NULL", missing("name")),
    Case("description LIKE '%baseline%'", matches("description", ".*baseline.*")),
    # times
    Case("created_at >= 2024-01-01T05:00:00Z", ge("created_at", t("2024-01-01T05:00:00Z"))),
    Case("created_at < '2024-01-01T03:30:00+01:00'",
         lt("created_at", t("2024-01-01T03:30:00+01:00"))),
    Case("created_at = 2024-01-01T04:00:00Z", eq("created_at", t("2024-01-01T04:00:00Z"))),
    Case("finished_at IS NULL", missing("finished_at")),
    Case("finished_at > '2024-01-01 06:00'", gt("finished_at", t("2024-01-01T06:00:00Z"))),
    Case("started_at IS NULL OR created_at > 2024-01-01T09:30:00.5+00:00",
         any_(missing("started_at"), gt("created_at", t("2024-01-01T09:30:00.5+00:00")))),
    # logic
    Case("NOT (tags.team = 'cv' OR params.optimizer.kind = 'sgd')",
         not_(any_(eq("tags.team", "cv"), eq("params.optimizer.kind", "sgd")))),
    Case("NOT NOT status = 'failed'", eq("status", "failed")),
    Case("(status = 'succeeded' AND metrics.loss < 1) OR (status = 'failed' AND "
         "tags.team = 'nlp')",
         any_(all_(eq("status", "succeeded"), lt("metrics.loss", 1)),
              all_(eq("status", "failed"), eq("tags.team", "nlp")))),
    Case("status = 'succeeded' AND NOT (params.batch_size IS NULL) AND model.kind != 'linear'",
         all_(eq("status", "succeeded"), not_(missing("params.batch_size")),
              ne("model.kind", "linear"))),
    Case("not status = 'succeeded' and params.optimizer.kind = 'adam'",
         all_(ne("status", "succeeded"), eq("params.optimizer.kind", "adam"))),
    Case("run.optimizer.kind = 'adam'", eq("params.optimizer.kind", "adam")),
    Case("NOT (metrics.val_loss > 0.2 AND metrics.val_loss < 0.4)",
         not_(all_(gt("metrics.val_loss", 0.2), lt("metrics.val_loss", 0.4)))),
    Case("params.optimizer.kind = 'adam' OR params.optimizer.kind = 'sgd' OR "
         "params.optimizer.kind = 'momentum'", everything),
    Case("NOT (tags.team != 'cv')", eq("tags.team", "cv")),
    Case("NOT tags.team IN ('nlp') AND NOT name LIKE '%-1_'",
         all_(not_(among("tags.team", "nlp")), not_(matches("name", ".*-1."))),
         ),
    Case(r"name = '\'; DROP TABLE runs; --'", eq("name", "'; DROP TABLE runs; --")),
    # sorted
    Case("status = 'succeeded'", eq("status", "succeeded"), "metrics.val_loss"),
    Case("", everything, "-metrics.accuracy"),
    Case("", everything, "params.batch_size,-created_at"),
    Case("", everything, "name"),
    Case("", everything, "-name"),
    Case("", everything, "-model.name,params.optimizer.learning_rate"),
    Case("tags.team IS NOT NULL", not_(missing("tags.team")), "tags.team,-metrics.loss"),
    Case("", everything, "-duration_ms"),
    Case("", everything, "created_at"),
    Case("", everything, "-created_at"),
    Case("", everything, "params.shuffle,id"),
    Case("", everything, "dataset.name"),
    Case("", everything, "-tags.priority"),
    Case(f"{LR} < 0.1", lt(LR, 0.1), f"-{LR}"),
    Case("status IN ('succeeded', 'failed')", among("status", "succeeded", "failed"),
         "-metrics.val_loss,-epochs_completed"),
]


def fill(expression: str, ids: dict[str, str]) -> str:
    """The expression with each ``{label}`` replaced by that fixture's id."""
    return re.sub(r"\{([a-z]+(?::[a-z]+)?)\}", lambda m: ids[m.group(1)], expression)


def expected(rows: list[Row], case: Case, newest_first: bool = False) -> list[str]:
    """The labels of the rows the predicate selects, in the case's order."""
    chosen = [r for r in rows if case.predicate(r)]
    if not case.sort:
        return [r["label"] for r in (reversed(chosen) if newest_first else chosen)]
    keys = [(part.lstrip("-"), part.startswith("-")) for part in case.sort.split(",")]
    last_descending = keys[-1][1]
    chosen.sort(key=lambda r: r["id"], reverse=last_descending)
    for name, descending in reversed(keys):  # stable sorts, least significant first
        present = [r for r in chosen if r.get(name) is not None]
        absent = [r for r in chosen if r.get(name) is None]
        present.sort(key=lambda r, n=name: r[n], reverse=descending)
        chosen = present + absent
    return [r["label"] for r in chosen]


@dataclass
class Fixture:
    """The fixture runs in one store: its sessions, their ids and rows."""

    sessions: sessionmaker[Session]
    ids: dict[str, str]
    rows: list[Row]

    def search(self, query: RunQuery) -> list[str]:
        with self.sessions() as session:
            found, _ = RunSearch(session, TENANT).runs(query)
        labels = {run_id: label for label, run_id in self.ids.items()}
        return [labels[run.id] for run in found]

    def paged(self, query: RunQuery, size: int) -> list[str]:
        labels = {run_id: label for label, run_id in self.ids.items()}
        got, cursor = [], None
        for _ in range(100):
            with self.sessions() as session:
                page, cursor = RunSearch(session, TENANT).runs(
                    RunQuery(filter=query.filter, sort=query.sort, limit=size, cursor=cursor,
                             newest_first=query.newest_first))
            assert len(page) <= size
            got += [labels[run.id] for run in page]
            if cursor is None:
                return got
        raise AssertionError("paging did not end")


@pytest.fixture(scope="module", params=["sqlite", pytest.param(POSTGRES_PARAM,
                                                               marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    """The fixture runs in a fresh store of each kind, and a neighbour tenant's copy of them."""
    with ExitStack() as stack:
        url = store_url(request, tmp_path_factory.mktemp("search"), stack)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        with sessions.begin() as session:
            search_runs.insert(session, OTHER_TENANT)
        with sessions.begin() as session:
            ids = search_runs.insert(session, TENANT)
        yield Fixture(sessions, ids, search_runs.rows(ids))


def test_the_table_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({(c.expression, c.sort) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.expression}|{c.sort or ''}")
def test_a_case_answers_as_python_evaluates_it(store: Fixture, case: Case) -> None:
    expression = fill(case.expression, store.ids)
    want = expected(store.rows, case)
    query = RunQuery(filter=expression, sort=case.sort)
    assert store.search(query) == want
    assert store.paged(query, 3) == want
    if not case.sort:
        newest = RunQuery(filter=expression, newest_first=True)
        assert store.search(newest) == expected(store.rows, case, newest_first=True)


def test_every_field_of_the_rows_is_searched_somewhere() -> None:
    """The table names every kind of field the fixture rows hold (nothing left untested)."""
    named = " ".join(f"{c.expression} {c.sort}" for c in CASES)
    groups = {"params.", "metrics.", "model.", "dataset.", "tags.", "run.", "created_at",
              "finished_at", "started_at", "duration_ms", "epochs_completed", "name",
              "description", "status", "id"}
    assert all(group in named for group in groups)


def test_search_never_crosses_tenants(store: Fixture) -> None:
    """The neighbour has the same runs (same names, tags, metrics); none of its ids come
    back, whatever the filter, and its ids are unknown ids."""
    with store.sessions() as session:
        theirs = set(session.scalars(select(RunRow.id).where(RunRow.owner == OTHER_TENANT)))
        search = RunSearch(session, TENANT)
        for case in CASES:
            found, _ = search.runs(RunQuery(filter=fill(case.expression, store.ids),
                                            sort=case.sort, limit=1000))
            assert not theirs & {run.id for run in found}
        other = sorted(theirs)[0]
        found, _ = search.runs(RunQuery(filter=f"id = '{other}'"))
        assert found == []


def test_an_injection_attempt_is_a_value(store: Fixture) -> None:
    assert store.search(RunQuery(filter="name = 'x'' OR 1=1 --'")) == []
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RunRow)) == 2 * len(
            search_runs.SPECS)


ERRORS = [
    ("metrics.vall_loss < 1", "filter", 1,
     "unknown field 'metrics.vall_loss' at column 1: did you mean 'metrics.val_loss'?"),
    ("metrics.val_loss < ", "filter", 19, "expected a value after '<' at column 19"),
    ("params.batch_size = 32 AND metrics.loss <", "filter", 42,
     "expected a value after '<' at column 42"),
    ("status = 'sucess'", "filter", 10, "did you mean 'succeeded'?"),
    ("tags.team = 3", "filter", 13, "'tags.team' holds strings: expected a quoted string"),
    ("params.batch_size = '32'", "filter", 21, "'params.batch_size' holds numbers"),
    ("created_at > 'yesterday'", "filter", 14, "expected an ISO 8601 time at column 14"),
    ("model.hidden < [16]", "filter", 16, "compare it with = or !="),
    ("model.hidden IN ([16])", "filter", 1, "'model.hidden' holds lists"),
    ("params.shuffle > false", "filter", 18, "compare it with = or !="),
    ("metrics.loss LIKE '1%'", "filter", 1, "LIKE takes a field of strings"),
    ("name LIKE 3", "filter", 11, "LIKE expects a quoted pattern"),
    ("tags.Team = 'x'", "filter", 1, "'tags.Team' is not a tag"),
    ("(status = 'failed'", "filter", 19, "expected AND, OR or ')' after 'failed' at column 19"),
    ("status = 'failed')", "filter", 18, "expected AND, OR or the end"),
    ("status == 'failed'", "filter", 9, "expected a value after '=' at column 9"),
    ("= 1", "filter", 1, "expected a field, NOT or '(' at column 1"),
    ("name = 'open", "filter", 8, "expected a value after '=' at column 8"),
    ("x" * 1990 + " = 1 AND y = 2", "filter", 2001, "at most 2000"),
    ("(" * 33 + "status = 'failed'" + ")" * 33, "filter", 33, "more than 32 levels of nesting"),
    ("NOT " * 33 + "status = 'failed'", "filter", 129, "more than 32 levels of nesting"),
    ("epochs_completed IN (" + ", ".join(map(str, range(101))) + ")", "filter", 1,
     "101 values in the IN of 'epochs_completed' at column 1; at most 100"),
    ("metrics.loss < 1e999", "filter", 16, "too large"),
]


@pytest.mark.parametrize(("expression", "param", "column", "message"), ERRORS,
                         ids=[e[0][:40] for e in ERRORS])
def test_a_bad_filter_names_its_column_and_what_was_expected(
        store: Fixture, expression: str, param: str, column: int, message: str) -> None:
    with pytest.raises(QueryError) as raised:
        store.search(RunQuery(filter=expression))
    assert (raised.value.param, raised.value.column) == (param, column), raised.value.message
    assert message in raised.value.message


def test_bounds_are_inclusive(store: Fixture) -> None:
    """2,000 characters, 32 levels and 100 values are allowed; one more is not."""
    deep = "(" * 32 + "status = 'failed'" + ")" * 32
    assert store.search(RunQuery(filter=deep)) == ["d"]
    values = "epochs_completed IN (" + ", ".join(map(str, range(100))) + ")"
    assert len(store.search(RunQuery(filter=values))) == len(search_runs.SPECS)
    long = "status = 'failed'" + " " * (2000 - len("status = 'failed'"))
    assert len(long) == 2000 and store.search(RunQuery(filter=long)) == ["d"]


@pytest.mark.parametrize(("sort", "column", "message"), [
    ("metrics.vall_loss", 1, "did you mean 'metrics.val_loss'?"),
    ("name,-model.hidden", 6, "'model.hidden' holds lists, which do not sort"),
    ("name,,id", 6, "expected a field at column 6"),
    ("name,-name", 6, "'name' is named twice"),
    ("a,b,c,d,e", 1, "unknown field 'a'"),
    ("name,id,created_at,status,duration_ms", 1, "5 sort fields; at most 4"),
])
def test_a_bad_sort_names_its_column(store: Fixture, sort: str, column: int,
                                     message: str) -> None:
    with pytest.raises(QueryError) as raised:
        store.search(RunQuery(sort=sort))
    assert raised.value.param == "sort" and raised.value.column == column
    assert message in raised.value.message


def test_a_cursor_pages_only_its_own_sort(store: Fixture) -> None:
    with store.sessions() as session:
        search = RunSearch(session, TENANT)
        _, by_name = search.runs(RunQuery(sort="name", limit=2))
        _, by_seq = search.runs(RunQuery(limit=2))
        assert by_name is not None and by_seq is not None
        for query, message in [
            (RunQuery(sort="-name", cursor=by_name), "this cursor pages sort='name'"),
            (RunQuery(cursor=by_name), "pages runs by `sort`"),
            (RunQuery(sort="name", cursor=by_seq), "pages runs in creation order"),
            (RunQuery(sort="name", cursor="kbm90IGpzb24"), "not a cursor of this search"),
        ]:
            with pytest.raises(QueryError) as raised:
                search.runs(query)
            assert raised.value.param == "cursor" and message in raised.value.message
