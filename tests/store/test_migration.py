"""A store written by v1 (tests/fixtures/v1_database.sqlite, made by make_v1_database.py with
the code of commit 3744ea8) upgrades to the newest schema, on SQLite and on PostgreSQL, and
every dataset, model, run and history row reads back through the API as v1 answered it
(tests/fixtures/v1_database.json): each field v1 had, with the same value, owned by tenant
``default`` (what a keyless caller on loopback is)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, create_engine, select, text

from service.app import create_app
from service.config import Settings
from service.store.db import MIGRATIONS, make_engine
from tests.support.servers import sqlite_url

FIXTURES = Path(__file__).parent.parent / "fixtures"
V1_DATABASE = FIXTURES / "v1_database.sqlite"
V1_ANSWERS = json.loads((FIXTURES / "v1_database.json").read_text())
WAIT = {"prefer": "wait=60"}


def assert_keeps(new: Any, old: Any, where: str = "") -> None:
    """Every field of ``old`` is in ``new`` with the same value (lists item by item)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            assert key in new, f"{where}.{key} is gone"
            assert_keeps(new[key], value, f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_keeps(a, b, f"{where}[{i}]")
    else:
        assert new == old and type(new) is type(old), f"{where}: {new!r} != {old!r}"


def answers(client: TestClient) -> dict[str, Any]:
    """The same reads make_v1_database.py made, from this app."""
    datasets = client.get("/v1/datasets").json()["items"]
    models = client.get("/v1/models").json()["items"]
    runs = [run for model in models
            for run in client.get(f"/v1/models/{model['id']}/runs").json()["items"]]
    return {
        "datasets": datasets,
        "data": {d["id"]: client.get(f"/v1/datasets/{d['id']}/data").json() for d in datasets},
        "models": models,
        "runs": runs,
        "run_history": {r["id"]: client.get(f"/v1/runs/{r['id']}/history").json()
                        for r in runs},
        "run_history_columns": {
            r["id"]: client.get(f"/v1/runs/{r['id']}/history",
                                params={"format": "columns"}).json() for r in runs},
        "model_history": {m["id"]: client.get(f"/v1/models/{m['id']}/history").json()
                          for m in models},
        "predictions": {m["id"]: client.post(f"/v1/models/{m['id']}/predict",
                                             json={"x": [[0.5] * m["features"]]}).json()
                        for m in models},
    }


def check_upgraded(client: TestClient) -> None:
    found = answers(client)
    assert_keeps(found, V1_ANSWERS)
    assert {r["status"] for r in found["runs"]} == {"succeeded", "cancelled", "diverged"}
    rows = [row for page in found["run_history"].values() for row in page["items"]]
    assert len(rows) == sum(r["epochs_completed"] for r in found["runs"]) > 30
    for row in rows:
        assert row["params"] == {"W": row["W"], "b": row["b"]} and row["metrics"] == {}
    for model in found["models"]:
        assert model["params"] == {"W": model["W"], "b": model["b"]}
        assert model["param_count"] == model["features"] + 1
    for run in found["runs"]:
        assert run["loss"] == "mse" and run["validation"] is None and run["shuffle"] is True


def test_a_v1_sqlite_store_upgrades_and_reads_back_the_same(tmp_path: Path) -> None:
    shutil.copyfile(V1_DATABASE, tmp_path / "tapeline.db")
    settings = Settings(database_url=sqlite_url(tmp_path), workers=1)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        check_upgraded(client)
        # The upgraded models train on: a v1 model continues from its stored W and b.
        model = V1_ANSWERS["models"][0]
        dataset = V1_ANSWERS["datasets"][0]
        run = client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": dataset["id"], "epochs": 2}).json()
        assert run["status"] == "succeeded"
        assert run["initial"]["W"] == model["W"] and run["initial"]["b"] == model["b"]
        steps = client.get(f"/v1/models/{model['id']}/history").json()["items"]
        assert [r["step"] for r in steps] == list(range(len(steps)))
    check_tenancy(settings.database_url)


def head() -> str:
    """The newest revision of the migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def check_tenancy(url: str) -> None:
    """At head: after 0003 every v1 row belongs to tenant ``default``, each dataset knows its
    stored size, and the key and quota tables are there, empty; then the checks of 0004,
    0006, 0007 and 0008 (the webhook tables are there, empty, their counters at zero)."""
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            == head()
        for table in ("datasets", "models", "runs"):
            owners = connection.execute(text(f"SELECT DISTINCT owner FROM {table}")).scalars()
            assert list(owners) == ["default"], table
        sizes = connection.execute(text(
            "SELECT stored_bytes, length(x) + length(y) FROM datasets")).all()
        assert sizes and all(stored == actual > 0 for stored, actual in sizes)
        for table in ("api_keys", "quotas"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
        check_scale_out(connection)
        # 0005: models made here were imported from no file.
        assert connection.execute(text(
            "SELECT count(*) FROM models WHERE imported_from IS NOT NULL")).scalar() == 0
        check_bounds(connection)
        check_experiments(connection)
        for table in ("webhooks", "webhook_events", "webhook_deliveries", "webhook_attempts"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
        assert dict(connection.execute(text("SELECT outcome, count FROM webhook_counters"))
                    .all()) == dict.fromkeys(("succeeded", "failed", "error", "refused", "gone"),
                                             0)
    engine.dispose()


def check_bounds(connection: Any) -> None:
    """0006: every run counts the bytes it stores (its params and its history rows, each
    row 128 bytes besides its params), and the byte quota applies to none of the v1 runs
    (made without a key)."""
    runs = connection.execute(text(
        "SELECT r.id, r.stored_bytes, r.stored_quota, length(r.initial_params)"
        " + COALESCE(length(r.final_params), 0) AS params,"
        " (SELECT SUM(length(e.params)) FROM epochs e WHERE e.run_id = r.id) AS history,"
        " (SELECT count(*) FROM epochs e WHERE e.run_id = r.id) AS rows FROM runs r")).all()
    assert runs and all(r.rows > 0 for r in runs)
    assert all(r.stored_bytes == r.params + r.history + 128 * r.rows for r in runs)
    assert not any(r.stored_quota for r in runs if r.id in {v["id"] for v in V1_ANSWERS["runs"]})


def check_experiments(connection: Any) -> None:
    """0007: v1's datasets, models and runs have no description and no tags, its runs no
    name; each finished run knows how long it took, from its start to its end."""
    for table in ("datasets", "models", "runs"):
        rows = connection.execute(text(f"SELECT description, tags FROM {table}")).all()
        assert rows and all(r.description is None and _json(r.tags) == {} for r in rows)
    runs = connection.execute(text(
        "SELECT id, name, started_at, finished_at, duration_ms FROM runs")).all()
    v1 = {r["id"] for r in V1_ANSWERS["runs"]}
    for run in runs:
        if run.id in v1:
            took = (_stamp(run.finished_at) - _stamp(run.started_at)).total_seconds() * 1000
            assert run.name is None and run.duration_ms == pytest.approx(took, abs=1e-3)
        assert run.duration_ms is not None and run.duration_ms >= 0


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _stamp(value: Any) -> datetime:
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def check_scale_out(connection: Any) -> None:
    """0004: every v1 run (each one started) counts one attempt, held by no worker, with no
    checkpoint (its history is whole); the new run trained above counts one too."""
    runs = connection.execute(text(
        "SELECT id, attempt, worker, heartbeat_at, started_at FROM runs")).all()
    assert runs and all(r.started_at is not None for r in runs)
    v1 = {r["id"] for r in V1_ANSWERS["runs"]}
    assert {r.id: r.attempt for r in runs if r.id in v1} == dict.fromkeys(v1, 1)
    assert all(r.worker is None and r.heartbeat_at is None for r in runs if r.id in v1)
    assert connection.execute(text("SELECT count(*) FROM run_checkpoints")).scalar() == 0


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


def upgrade(engine: Any, revision: str) -> None:
    """Bring the store at ``engine`` to ``revision`` (not further)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def copy_v1_rows(engine: Any) -> None:
    """The v1 fixture's rows copied into the store at ``engine`` (at revision 0001)."""
    source = create_engine(f"sqlite:///{V1_DATABASE}")
    old, new = MetaData(), MetaData()
    old.reflect(source)
    new.reflect(engine)
    with source.connect() as reading, engine.begin() as writing:
        for name in ("datasets", "models", "runs", "epochs"):
            rows = [{k: _utc(v) for k, v in row.items()}
                    for row in reading.execute(select(old.tables[name])).mappings()]
            writing.execute(new.tables[name].insert(), rows)
    source.dispose()


@pytest.mark.postgres
def test_a_v1_postgres_store_upgrades_and_reads_back_the_same(postgres_url: str) -> None:
    """The fixture's rows copied into a PostgreSQL schema at revision 0001, then upgraded."""
    engine = make_engine(postgres_url)
    upgrade(engine, "0001")
    copy_v1_rows(engine)
    engine.dispose()
    with TestClient(create_app(Settings(database_url=postgres_url, workers=1)),
                    base_url="http://localhost") as client:
        check_upgraded(client)
    check_tenancy(postgres_url)


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_0006_repairs_class_names_that_no_answer_could_carry(
        store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Before 0006 an import could commit class names holding a lone surrogate (the JSON
    column keeps it escaped), and every page of /v1/models that held the model was a 500
    from then on; 0006 replaces such text with U+FFFD."""
    if store == "sqlite":
        shutil.copyfile(V1_DATABASE, tmp_path / "tapeline.db")
        url = sqlite_url(tmp_path)
    else:
        url = str(request.getfixturevalue("postgres_url"))
    engine = make_engine(url)
    upgrade(engine, "0001" if store == "postgres" else "0005")
    if store == "postgres":  # v1's rows, as the test above copies them
        copy_v1_rows(engine)
        upgrade(engine, "0005")
    model_id = V1_ANSWERS["models"][0]["id"]
    with engine.begin() as connection:
        connection.execute(text("UPDATE models SET class_names = :names WHERE id = :id"),
                           {"names": json.dumps(["\ud800", "b\udfffc"]), "id": model_id})
    engine.dispose()
    with TestClient(create_app(Settings(database_url=url, workers=1)),
                    base_url="http://localhost") as client:
        listed = client.get("/v1/models", params={"limit": 1000})
        assert listed.status_code == 200, listed.text
        found = {m["id"]: m for m in listed.json()["items"]}
        assert found[model_id]["class_names"] == ["\ufffd", "b\ufffdc"]


@pytest.mark.parametrize("key", ["datasets", "models", "runs"])
def test_the_fixture_is_what_v1_answered(key: str) -> None:
    """The fixture holds real v1 answers: v1's fields only, and none of v2's."""
    assert V1_ANSWERS[key]
    for item in V1_ANSWERS[key]:
        assert "params" not in item and "classes" not in item
