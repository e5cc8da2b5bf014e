"""Experiments over HTTP, on SQLite and PostgreSQL: names, descriptions and tags at creation
and by JSON Merge Patch under If-Match (weak ETags over the annotations only), listing by tag
and name prefix, the search's filter / sort / cursor and its 422s, runs compared across
models, and search that never crosses tenants."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.servers import sqlite_url

WAIT = {"prefer": "wait=60"}
PATCH = {"content-type": "application/merge-patch+json"}
RESOURCES = ("datasets", "models", "runs")


def patch(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.patch(path, content=json.dumps(body), headers={**PATCH, **headers})


def made(client: TestClient, kind: str, **annotations: Any) -> dict[str, Any]:
    """A new dataset, model or (finished) run carrying ``annotations``."""
    if kind == "datasets":
        answer = client.post("/v1/datasets", json={"x": [0, 1, 2, 3], "y": [1, 3, 5, 7],
                                                   **annotations})
    elif kind == "models":
        answer = client.post("/v1/models", json=annotations)
    else:
        dataset = made(client, "datasets")
        model = made(client, "models")
        answer = client.post(f"/v1/models/{model['id']}/runs", headers=WAIT,
                             json={"dataset_id": dataset["id"], "epochs": 2, **annotations})
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


def problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return dict(answer.json())


@pytest.mark.parametrize("kind", RESOURCES)
def test_annotations_at_creation_show_in_every_view(each_store: TestClient, kind: str) -> None:
    item = made(each_store, kind, name="first", description="notes\nover lines",
                tags={"team": "cv", "v1.2": ""})
    assert (item["name"], item["description"]) == ("first", "notes\nover lines")
    assert item["tags"] == {"team": "cv", "v1.2": ""}
    assert item["etag"].startswith('W/"')
    read = each_store.get(f"/v1/{kind}/{item['id']}")
    assert read.headers["etag"] == item["etag"] == read.json()["etag"]
    listed = each_store.get(f"/v1/{kind}", params={"tag": "team:cv"}).json()["items"]
    assert item["id"] in {i["id"] for i in listed}


def test_uploads_and_synthetic_data_take_annotations(each_store: TestClient) -> None:
    upload = each_store.post(
        "/v1/datasets/upload", files={"file": ("line.csv", b"x,y\n0,1\n1,3\n")},
        data={"description": "a csv", "tags": json.dumps({"source": "csv"})})
    assert upload.status_code == 201, upload.text
    assert upload.json()["tags"] == {"source": "csv"}
    assert upload.json()["description"] == "a csv"
    bad = each_store.post("/v1/datasets/upload", files={"file": ("l.csv", b"x,y\n0,1\n")},
                          data={"tags": json.dumps({"Bad Key": "x"})})
    assert problem(bad, 422)["errors"][0]["loc"][:2] == ["body", "tags"]
    synthetic = each_store.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 20, "seed": 1, "tags": {"shape": "moons"},
        "description": "two moons"}).json()
    assert synthetic["tags"] == {"shape": "moons"}
    assert "tags" not in synthetic["synthetic"] and "description" not in synthetic["synthetic"]


@pytest.mark.parametrize("kind", RESOURCES)
def test_merge_patch_sets_keeps_and_removes(each_store: TestClient, kind: str) -> None:
    item = made(each_store, kind, name="before", description="d",
                tags={"a": "1", "b": "2", "c": "3"})
    path = f"/v1/{kind}/{item['id']}"
    answer = patch(each_store, path, {"tags": {"a": None, "b": "two", "d": "4"}})
    assert answer.status_code == 200, answer.text
    patched = answer.json()
    assert patched["tags"] == {"b": "two", "c": "3", "d": "4"}
    assert (patched["name"], patched["description"]) == ("before", "d")  # left out: kept
    assert answer.headers["etag"] == patched["etag"] != item["etag"]
    cleared = patch(each_store, path, {"name": None, "description": None, "tags": None}).json()
    assert (cleared["name"], cleared["description"], cleared["tags"]) == (None, None, {})
    assert patch(each_store, path, {}).json()["etag"] == cleared["etag"]
    assert each_store.get(path).json()["tags"] == {}


@pytest.mark.parametrize("kind", RESOURCES)
def test_if_match_guards_patch_and_a_stale_etag_is_412(each_store: TestClient,
                                                       kind: str) -> None:
    item = made(each_store, kind, name="v1")
    path = f"/v1/{kind}/{item['id']}"
    first = patch(each_store, path, {"name": "v2"}, **{"if-match": item["etag"]})
    assert first.status_code == 200, first.text
    stale = problem(patch(each_store, path, {"name": "v3"}, **{"if-match": item["etag"]}), 412)
    assert "has changed" in stale["detail"]
    assert each_store.get(path).json()["name"] == "v2"  # nothing changed
    current = first.headers["etag"]
    listed = f'"nope", {current}'
    assert patch(each_store, path, {"name": "v4"}, **{"if-match": listed}).status_code == 200
    assert patch(each_store, path, {"name": "v5"}, **{"if-match": "*"}).status_code == 200
    assert patch(each_store, path, {"name": "v6"}, **{"if-match": "garbage"}).status_code == 412
    # If-Match is optional: 428 is never asked for.
    assert patch(each_store, path, {"name": "v7"}).json()["name"] == "v7"


def test_a_training_run_keeps_its_etag_while_it_progresses(each_store: TestClient) -> None:
    dataset = each_store.post("/v1/datasets/synthetic", json={"num_examples": 4000,
                                                              "seed": 1}).json()
    model = made(each_store, "models")
    run = each_store.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 6, "batch_size": 4}).json()
    etag = run["etag"]
    deadline = time.monotonic() + 60
    while (now := each_store.get(f"/v1/runs/{run['id']}").json())["status"] not in (
            "succeeded", "failed"):
        assert now["etag"] == etag
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert now["epochs_completed"] == 6 and now["etag"] == etag
    assert now["duration_ms"] > 0
    answer = patch(each_store, f"/v1/runs/{run['id']}", {"tags": {"done": "yes"}},
                   **{"if-match": etag})
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"


@pytest.mark.parametrize("kind", ["datasets", "models"])
def test_delete_honours_if_match(each_store: TestClient, kind: str) -> None:
    item = made(each_store, kind, name="x")
    path = f"/v1/{kind}/{item['id']}"
    patched = patch(each_store, path, {"name": "y"}).json()
    problem(each_store.delete(path, headers={"if-match": item["etag"]}), 412)
    assert each_store.get(path).status_code == 200
    assert each_store.delete(path, headers={"if-match": patched["etag"]}).status_code == 204
    assert each_store.get(path).status_code == 404


@pytest.mark.parametrize(("body", "where"), [
    ({"name": "n" * 201}, ["body", "name"]),
    ({"description": "d" * 10_001}, ["body", "description"]),
    ({"tags": {"Team": "x"}}, ["body", "tags", "Team"]),
    ({"tags": {"team": "v" * 257}}, ["body", "tags", "team"]),
    ({"tags": {"team": 3}}, ["body", "tags", "team"]),
    ({"tags": {f"k{i}": "v" for i in range(65)}}, ["body", "tags"]),
    ({"tags": {"study": "s1"}}, ["body", "tags"]),
    ({"tags": {"trial": None}}, ["body", "tags"]),
    ({"colour": "red"}, ["body", "colour"]),
    ({"tags": ["a"]}, ["body", "tags"]),
])
def test_limits_are_422_and_change_nothing(each_store: TestClient, body: dict[str, Any],
                                           where: list[str]) -> None:
    run = made(each_store, "runs", name="kept", tags={"team": "cv"})
    path = f"/v1/runs/{run['id']}"
    found = problem(patch(each_store, path, body), 422)
    assert found["errors"][0]["loc"][:len(where)] == where, found
    after = each_store.get(path).json()
    assert (after["name"], after["tags"], after["etag"]) == ("kept", {"team": "cv"},
                                                             run["etag"])


def test_more_than_64_tags_after_the_merge_is_422(each_store: TestClient) -> None:
    tags = {f"k{i}": "v" for i in range(63)}
    model = made(each_store, "models", tags=tags)
    path = f"/v1/models/{model['id']}"
    found = problem(patch(each_store, path, {"tags": {"x": "1", "y": "2"}}), 422)
    assert "65 tags; at most 64" in found["detail"]
    assert each_store.get(path).json()["tags"] == tags
    assert patch(each_store, path, {"tags": {"k0": None, "x": "1"}}).status_code == 200


def test_patch_needs_json(each_store: TestClient) -> None:
    model = made(each_store, "models")
    answer = each_store.patch(f"/v1/models/{model['id']}", content=b"name=x",
                              headers={"content-type": "application/x-www-form-urlencoded"})
    problem(answer, 415)
    plain = each_store.patch(f"/v1/models/{model['id']}", json={"name": "plain json"})
    assert plain.status_code == 200 and plain.json()["name"] == "plain json"
    problem(patch(each_store, "/v1/models/mdl_missing", {"name": "x"}), 404)


def test_lists_filter_by_tag_and_name_prefix(each_store: TestClient) -> None:
    stamp = str(time.monotonic_ns())
    for i, team in enumerate(["cv", "cv", "nlp"]):
        made(each_store, "models", name=f"{stamp}-m{i}", tags={"team": team, "run": stamp})
    models = each_store.get("/v1/models", params={"tag": [f"run:{stamp}", "team:cv"]})
    assert [m["name"] for m in models.json()["items"]] == [f"{stamp}-m0", f"{stamp}-m1"]
    prefixed = each_store.get("/v1/models", params={"name_prefix": f"{stamp}-m2"}).json()
    assert [m["name"] for m in prefixed["items"]] == [f"{stamp}-m2"]
    keyed = each_store.get("/v1/models", params={"tag": f"run:{stamp}", "name_prefix": stamp,
                                                 "limit": 2})
    assert len(keyed.json()["items"]) == 2 and keyed.json()["next_cursor"]
    assert each_store.get("/v1/models", params={"name_prefix": f"{stamp}-M"}).json()[
        "items"] == []  # case-sensitive
    assert each_store.get("/v1/datasets", params={"tag": "nobody:has"}).json()["items"] == []
    problem(each_store.get("/v1/models", params={"tag": "Bad Key:x"}), 422)


def _sweep(client: TestClient, stamp: str) -> list[dict[str, Any]]:
    """Four finished runs of a learning-rate sweep, across three models of two kinds."""
    dataset = client.post("/v1/datasets/synthetic", json={"kind": "moons", "num_examples": 60,
                                                          "seed": 3}).json()
    runs = []
    for i, (kind, lr) in enumerate([("logistic", 0.5), ("mlp", 0.1), ("mlp", 0.05),
                                    ("logistic", 0.01)]):
        body: dict[str, Any] = {"kind": kind, "features": 2, "name": f"{stamp}-model{i % 3}"}
        if kind == "mlp":
            body |= {"hidden": [4], "task": "classification", "initial": {"random_seed": i}}
        model = client.post("/v1/models", json=body).json()
        run = client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": dataset["id"], "epochs": 3 + i, "name": f"{stamp}-lr{lr}",
            "optimizer": {"kind": "sgd", "learning_rate": lr}, "tags": {"sweep": stamp},
            "validation": {"fraction": 0.25}})
        assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
        runs.append(run.json())
    return runs


def test_search_over_http(each_store: TestClient) -> None:
    stamp = f"s{time.monotonic_ns()}"
    runs = _sweep(each_store, stamp)
    by_lr = sorted(runs, key=lambda r: -r["optimizer"]["learning_rate"])
    answer = each_store.get("/v1/runs", params={
        "filter": f"tags.sweep = '{stamp}' AND params.optimizer.learning_rate < 0.5",
        "sort": "-params.optimizer.learning_rate"}).json()
    assert [r["id"] for r in answer["items"]] == [r["id"] for r in by_lr[1:]]
    ordered, cursor = [], None
    while True:
        page = each_store.get("/v1/runs", params={
            "filter": f"tags.sweep = '{stamp}'", "sort": "metrics.val_loss,-created_at",
            "limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        ordered += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    losses = [r["final"]["metrics"]["val_loss"] for r in ordered]
    assert len(ordered) == 4 and losses == sorted(losses)
    mlps = each_store.get("/v1/runs", params={
        "filter": f"model.kind = 'mlp' AND model.hidden = [4] AND tags.sweep = '{stamp}'"})
    assert {r["id"] for r in mlps.json()["items"]} == {runs[1]["id"], runs[2]["id"]}
    by_name = each_store.get("/v1/runs", params={"name_prefix": f"{stamp}-lr0.0",
                                                 "order": "newest"}).json()["items"]
    assert [r["id"] for r in by_name] == [runs[3]["id"], runs[2]["id"]]
    model_runs = each_store.get(f"/v1/models/{runs[0]['model_id']}/runs",
                                params={"filter": "status = 'succeeded'"}).json()["items"]
    assert [r["id"] for r in model_runs] == [runs[0]["id"]]


@pytest.mark.parametrize(("params", "column", "message"), [
    ({"filter": "metrics.vall_loss < 0.5"}, 1,
     "unknown field 'metrics.vall_loss' at column 1: did you mean 'metrics.val_loss'?"),
    ({"filter": "params.batch_size = 32 AND metrics.loss <"}, 42,
     "expected a value after '<' at column 42"),
    ({"filter": "tags.team = 3"}, 13, "'tags.team' holds strings"),
    ({"filter": "(" * 33 + "status = 'failed'" + ")" * 33}, 33, "more than 32 levels"),
    ({"filter": "epochs_completed IN (" + ",".join(["1"] * 101) + ")"}, 1,
     "at most 100"),
    ({"sort": "metrics.val_loss,-modl.name"}, 18, "did you mean 'model.name'?"),
    ({"sort": "name", "cursor": "kxyz"}, 1, "not a cursor of this search"),
])
def test_a_bad_search_is_a_422_naming_the_column(each_store: TestClient, params: dict[str, str],
                                                 column: int, message: str) -> None:
    found = problem(each_store.get("/v1/runs", params=params), 422)
    error = found["errors"][0]
    assert error["column"] == column and message in error["msg"]
    assert error["loc"][0] == "query" and message in found["detail"]


def test_past_2000_characters_is_a_422(each_store: TestClient) -> None:
    found = problem(each_store.get("/v1/runs", params={"filter": "x" * 2001}), 422)
    assert found["errors"][0]["loc"] == ["query", "filter"]


def test_compare_across_models(each_store: TestClient) -> None:
    stamp = f"c{time.monotonic_ns()}"
    runs = _sweep(each_store, stamp)
    ids = ",".join(r["id"] for r in runs[:3])
    full = each_store.get("/v1/runs/compare", params={"ids": ids}).json()
    assert [r["id"] for r in full["runs"]] == [r["id"] for r in runs[:3]]
    first = full["runs"][0]
    assert first["values"]["model.kind"] == "logistic"
    assert first["values"]["params.optimizer.learning_rate"] == 0.5
    assert first["values"]["metrics.val_loss"] == runs[0]["final"]["metrics"]["val_loss"]
    assert first["values"]["tags.sweep"] == stamp and first["name"] == f"{stamp}-lr0.5"
    assert full["runs"][1]["values"]["model.hidden"] == [4]
    assert "params.dtype" in full["fields"] and "params.dtype" not in full["differing"]
    assert {"model.kind", "model.hidden", "params.epochs", "params.optimizer.learning_rate",
            "metrics.val_loss"} <= set(full["differing"])
    diff = each_store.get("/v1/runs/compare", params={"ids": ids, "only_diff": True}).json()
    assert diff["fields"] == diff["differing"] == full["differing"]
    for run in diff["runs"]:
        assert set(run["values"]) <= set(diff["differing"])
    assert "model.hidden" not in diff["runs"][0]["values"]  # missing there: so it differs
    history = each_store.get("/v1/runs/compare/history", params={
        "ids": ids, "metric": "val_loss", "max_points": 4}).json()
    assert history["metric"] == "val_loss"
    for series, run in zip(history["runs"], runs[:3], strict=True):
        rows = each_store.get(f"/v1/runs/{run['id']}/history").json()["items"]
        assert series["epoch"][0] == 0 and series["epoch"][-1] == len(rows) - 1
        assert len(series["epoch"]) <= 4
        assert series["values"] == [rows[e]["metrics"]["val_loss"] for e in series["epoch"]]
        # The trajectory's last point is the run's final model, after its last epoch.
        assert series["final"] == {"epoch": run["epochs_completed"],
                                   "value": run["final"]["metrics"]["val_loss"]}
        assert series["final"]["epoch"] == len(rows)


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"ids": "run_a"}, 422, "ids"),
    ({"ids": ",".join(f"run_{i}" for i in range(51))}, 422, "ids"),
    ({"ids": "run_missing,run_other"}, 404, "no run with id 'run_missing'"),
    ({"ids": "run_a,run_a"}, 422, "named twice"),
])
def test_compare_refuses_bad_ids(each_store: TestClient, params: dict[str, str], status: int,
                                 message: str) -> None:
    found = problem(each_store.get("/v1/runs/compare", params=params), status)
    assert message in found["detail"] + json.dumps(found.get("errors"))


def test_compare_history_names_an_unknown_metric(each_store: TestClient) -> None:
    found = problem(each_store.get("/v1/runs/compare/history", params={
        "ids": "run_a,run_b", "metric": "val_los"}), 422)
    assert "did you mean 'val_loss'?" in found["detail"]


ADMIN = "tl_" + "E" * 43


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[
        str, dict[str, str]]]]:
    """An app that requires keys, and a key of each of two tenants."""
    folder: Path = tmp_path_factory.mktemp("tenants")
    settings = Settings(database_url=sqlite_url(folder), workers=1, auth="required",
                        bootstrap_admin_key=ADMIN, tenant_rate_limit="10000/second")
    with TestClient(create_app(settings), base_url="http://localhost",
                    raise_server_exceptions=False) as client:
        keys = {}
        for tenant in ("ours", "theirs"):
            made_key = client.post("/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                                   json={"tenant": tenant, "scopes": ["read", "write"]})
            keys[tenant] = {"Authorization": f"Bearer {made_key.json()['key']}"}
        yield client, keys


def test_search_compare_and_patch_never_cross_tenants(
        tenants: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = tenants
    made_runs: dict[str, list[str]] = {}
    for tenant in ("ours", "theirs"):
        dataset = client.post("/v1/datasets", headers=keys[tenant],
                              json={"x": [0, 1, 2], "y": [1, 2, 3]}).json()
        made_runs[tenant] = []
        for lr in (0.1, 0.01):
            model = client.post("/v1/models", headers=keys[tenant], json={"name": "same"})
            run = client.post(f"/v1/models/{model.json()['id']}/runs",
                              headers={**keys[tenant], **WAIT},
                              json={"dataset_id": dataset["id"], "epochs": 2, "name": "same",
                                    "optimizer": {"kind": "sgd", "learning_rate": lr},
                                    "tags": {"team": "shared"}})
            made_runs[tenant].append(run.json()["id"])
    theirs = set(made_runs["theirs"])
    for expression in ("tags.team = 'shared'", "name = 'same' OR model.name = 'same'",
                       f"id IN ('{made_runs['theirs'][0]}', '{made_runs['theirs'][1]}')",
                       "NOT status = 'failed'"):
        found = client.get("/v1/runs", headers=keys["ours"],
                           params={"filter": expression, "sort": "-created_at"}).json()
        assert not theirs & {r["id"] for r in found["items"]}
    assert len(client.get("/v1/runs", headers=keys["ours"],
                          params={"tag": "team:shared"}).json()["items"]) == 2
    mixed = ",".join([made_runs["ours"][0], made_runs["theirs"][0]])
    assert client.get("/v1/runs/compare", headers=keys["ours"],
                      params={"ids": mixed}).status_code == 404
    assert client.get("/v1/runs/compare/history", headers=keys["ours"],
                      params={"ids": mixed}).status_code == 404
    foreign = f"/v1/runs/{made_runs['theirs'][0]}"
    assert patch(client, foreign, {"name": "mine"}, **keys["ours"]).status_code == 404
    assert client.get(foreign, headers=keys["theirs"]).json()["name"] == "same"
