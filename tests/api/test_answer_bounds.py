"""Every answer's size is known before it is built, on SQLite and PostgreSQL: a prediction
past TAPELINE_MAX_ANSWER_BYTES is a 413 naming the rows that fit (a 1,000-class model turned
a 200 kB body into an 801 MB answer), a page of history stops where its bytes would pass the
bound (a cursor continues it) and a downsampled one keeps fewer points; which rows carry
params is the run's `record_params`; CSV answers are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from service.api import feeds, stream_items
from service.api.feeds import Feed, Item
from service.app import create_app
from service.config import Settings
from service.store.repo import Repository
from service.store.tables import EpochRow, RunRow
from tests.conftest import POSTGRES_PARAM
from tests.support.hostile import json_model
from tests.support.stores import store_url

WAIT = {"prefer": "wait=120"}
ANSWER_BYTES = 256 * 1024
MEDIA = {"JSON": "application/json", "CSV": "text/csv", ".npy": "application/octet-stream"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param(POSTGRES_PARAM,
                                                               marks=pytest.mark.postgres)])
def small(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with answers of at most 256 KiB, on each store."""
    with ExitStack() as stack:
        url = store_url(request, tmp_path_factory.mktemp("answers"), stack)
        settings = Settings(database_url=url, workers=1, max_answer_bytes=ANSWER_BYTES)
        yield stack.enter_context(TestClient(create_app(settings), base_url="http://localhost",
                                             raise_server_exceptions=False))


def created(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def predict(client: TestClient, model_id: str, rows: int, accept: str) -> Any:
    return client.post(f"/v1/models/{model_id}/predict", content=npy(
        np.zeros((rows, 1), np.float16)), headers={"content-type": MEDIA[".npy"],
                                                   "accept": accept})


# ------------------------------------------------------------------ predictions


def test_an_answer_past_the_bound_is_refused_before_it_is_computed(
        each_store: TestClient) -> None:
    model = created(each_store.post("/v1/models", json={"kind": "logistic", "features": 1,
                                                        "classes": 1000}))
    for fmt, accept in MEDIA.items():
        refused = predict(each_store, model["id"], 100_000, accept)  # a 200 kB body
        assert refused.status_code == 413, refused.text  # was 200: 801 MB, +1.7 GB
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "TAPELINE_MAX_ANSWER_BYTES" in detail and "67108864" in detail
        fits = int(re.search(r"send at most (\d+) rows", detail).group(1))  # type: ignore[union-attr]
        assert f"{fmt}: {fits}" in detail
        answer = predict(each_store, model["id"], fits, accept)
        assert answer.status_code == 200 and len(answer.content) <= 64 << 20
        assert predict(each_store, model["id"], fits + 1, accept).status_code == 413


def test_json_answers_are_whole_json(small: TestClient) -> None:
    regression = created(small.post("/v1/models", json={"features": 1}))
    answer = small.post(f"/v1/models/{regression['id']}/predict", json={"x": [0.5, -1.0]})
    assert answer.json() == {"y": [2.5, -5.0]}
    classifier = created(small.post("/v1/models/import", files={"file": (
        "m.json", json_model({"W": [1.0], "b": 0.0}, kind="logistic",
                             config={"features": 1, "classes": 2}))}))
    found = small.post(f"/v1/models/{classifier['id']}/predict", json={"x": [-1, 1]}).json()
    assert found["y"] == [0, 1] and found["labels"] is None
    assert np.allclose(np.sum(found["probabilities"], axis=1), 1)


FORMULAS = ["=SUM(A1:A9)", "+1", "-2", "@x", "\tt", "\rr", "plain"]


def test_csv_labels_cannot_become_formulas(small: TestClient) -> None:
    k = np.arange(len(FORMULAS), dtype=float)  # class k wins at x = k
    model = created(small.post("/v1/models/import", files={"file": ("m.json", json_model(
        {"W": [k.tolist()], "b": (-(k**2) / 2).tolist()}, kind="logistic",
        config={"features": 1, "classes": len(FORMULAS)},
        provenance={"class_names": FORMULAS}))}))
    answer = small.post(f"/v1/models/{model['id']}/predict", json={"x": k.tolist()},
                        headers={"accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(answer.text, newline="")))
    assert [row[-1] for row in rows[1:]] == ["'" + name for name in FORMULAS[:-1]] + ["plain"]
    assert [row[0] for row in rows[1:]] == [str(c) for c in range(len(FORMULAS))]
    as_json = small.post(f"/v1/models/{model['id']}/predict", json={"x": k.tolist()}).json()
    assert as_json["labels"] == FORMULAS  # JSON carries the names as they are


def test_dataset_downloads_as_csv_are_safe_too(small: TestClient) -> None:
    dataset = created(small.post("/v1/datasets", json={"x": [-1.5, 2, 3, 4, 5, 6, 7],
                                                       "y": FORMULAS}))
    answer = small.get(f"/v1/datasets/{dataset['id']}/data", headers={"accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(answer.text, newline="")))
    assert {row[1] for row in rows[1:]} == {"'" + n for n in FORMULAS[:-1]} | {"plain"}
    assert rows[1][0] == "-1.5"  # numbers as they are


# ------------------------------------------------------------------ history


def trained(client: TestClient, hidden: int, epochs: int, **run: Any) -> dict[str, Any]:
    """A run of an MLP of 3 * hidden + 1 params on a tiny dataset."""
    model = created(client.post("/v1/models", json={
        "kind": "mlp", "features": 1, "hidden": [hidden], "initial": {"random_seed": 1}}))
    data = created(client.post("/v1/datasets", json={"x": [0.0, 0.5, 1.0, 1.5],
                                                     "y": [0.0, 1.0, 0.0, 1.0]}))
    done = created(client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": data["id"], "epochs": epochs,
        "optimizer": {"kind": "sgd", "learning_rate": 0.01}, **run}), 200)
    assert done["status"] == "succeeded", done
    return done


def pages(client: TestClient, path: str, **params: Any) -> list[Any]:
    """Every page of a history, checking each within the answer bound."""
    found, after = [], None
    while True:
        answer = client.get(path, params={**params, **({"after": after} if after else {})})
        assert answer.status_code == 200, answer.text
        assert len(answer.content) <= ANSWER_BYTES
        found.append(answer.json())
        after = answer.json()["next_cursor"]
        if after is None:
            return found


def test_pages_of_a_large_model_stop_at_the_answer_bound(small: TestClient) -> None:
    run = trained(small, 200, 120, record_params=1)  # 601 params on every row: 12 kB each
    for fmt, key in (("rows", "items"), ("columns", "epoch")):
        found = pages(small, f"/v1/runs/{run['id']}/history", format=fmt)
        assert len(found) > 5
        epochs = [row["epoch"] for page in found for row in page["items"]] if fmt == "rows" \
            else [e for page in found for e in page[key]]
        assert epochs == list(range(120))
    steps = [r["step"] for page in pages(small, f"/v1/models/{run['model_id']}/history")
             for r in page["items"]]
    assert steps == list(range(120))


def test_a_downsampled_answer_keeps_fewer_points_within_the_bound(small: TestClient) -> None:
    run = trained(small, 200, 300, record_params=1)
    for path in (f"/v1/runs/{run['id']}/history", f"/v1/models/{run['model_id']}/history"):
        for fmt in ("rows", "columns"):
            answer = small.get(path, params={"max_points": 10_000, "format": fmt})
            assert answer.status_code == 200 and len(answer.content) <= ANSWER_BYTES
            found = answer.json()
            keys = [r["epoch"] for r in found["items"]] if fmt == "rows" else found["epoch"]
            assert 4 <= len(keys) < 300 and found["next_cursor"] is None
    rows = small.get(f"/v1/runs/{run['id']}/history", params={"max_points": 10_000}).json()
    assert rows["items"][0]["epoch"] == 0 and rows["items"][-1]["epoch"] == 299


def test_record_params_says_which_rows_carry_params(small: TestClient) -> None:
    tutorial = trained(small, 4, 5)  # 13 params: every row by default
    assert tutorial["record_params"] == 1
    every = small.get(f"/v1/runs/{tutorial['id']}/history").json()["items"]
    assert all(row["params"] is not None for row in every)
    large = trained(small, 1365, 20)  # 4,096 params: every 8th row by default
    assert large["record_params"] == 8
    path = f"/v1/runs/{large['id']}/history"
    rows = [row for page in pages(small, path) for row in page["items"]]
    assert [row["epoch"] for row in rows if row["params"] is not None] == [0, 8, 16]
    columns = pages(small, path, format="columns")
    assert [e for page in columns for e, w in zip(page["epoch"], page["params"]["W1"],
                                                  strict=True) if w is not None] == [0, 8, 16]
    assert all(page["W"] is None for page in columns)
    thinned = trained(small, 4, 10, record_params=3)
    rows = small.get(f"/v1/runs/{thinned['id']}/history").json()["items"]
    assert [row["epoch"] for row in rows if row["params"] is not None] == [0, 3, 6, 9]
    none = trained(small, 4, 3, record_params=0)
    assert all(row["params"] is None for row in
               small.get(f"/v1/runs/{none['id']}/history").json()["items"])


def test_record_params_is_refused_for_models_whose_rows_keep_none(small: TestClient) -> None:
    model = created(small.post("/v1/models", json={"kind": "mlp", "features": 1,
                                                   "hidden": [2000]}))
    data = created(small.post("/v1/datasets", json={"x": [0.0, 1.0], "y": [0.0, 1.0]}))
    answer = small.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": data["id"], "record_params": 1})
    assert answer.status_code == 422 and "TAPELINE_HISTORY_PARAMS_MAX" in answer.text
    assert answer.json()["errors"][0]["loc"] == ["body", "record_params"]
    fine = small.post(f"/v1/models/{model['id']}/runs", json={"dataset_id": data["id"],
                                                             "epochs": 1}, headers=WAIT)
    assert fine.status_code == 200 and fine.json()["record_params"] == 0


# ------------------------------------------------------------------ lists of models and runs


def large_models(client: TestClient, tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` MLPs of 4,093 seeded params (about 80 kB of JSON each), tagged ``case:tag``."""
    return [created(client.post("/v1/models", json={
        "kind": "mlp", "features": 2, "hidden": [1023], "tags": {"case": tag},
        "initial": {"random_seed": seed}})) for seed in range(count)]


def walked(client: TestClient, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a list (``limit`` 1000), checking each within the answer bound."""
    found: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        answer = client.get(path, params={"limit": 1000, **params,
                                          **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        assert len(answer.content) <= ANSWER_BYTES, len(answer.content)
        assert answer.json()["items"], "a page holds one item at least"
        found.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return found


def test_a_page_of_large_models_is_cut_short_by_bytes(small: TestClient) -> None:
    models = large_models(small, "models", 7)  # about 560 kB in all: one page was all of it
    ids = [m["id"] for m in models]
    for order, expected in (("oldest", ids), ("newest", ids[::-1])):
        pages_ = walked(small, "/v1/models", tag="case:models", order=order)
        assert len(pages_) > 2
        assert [m["id"] for page in pages_ for m in page] == expected  # each once, in order
    shown = [m for page in walked(small, "/v1/models", tag="case:models") for m in page]
    for model, listed in zip(models, shown, strict=True):
        assert listed == small.get(f"/v1/models/{model['id']}").json()  # params and all
        assert len(listed["params"]["W1"][0]) == 1023


def test_a_page_of_runs_is_cut_short_by_bytes(small: TestClient) -> None:
    model = large_models(small, "runs", 1)[0]
    data = created(small.post("/v1/datasets", json={"x": [[0, 1], [1, 0]], "y": [0.0, 1.0]}))
    runs = [created(small.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": data["id"], "epochs": 1, "tags": {"case": "runs"}}), 200)
        for _ in range(4)]  # each run writes 2 x 4,093 params: about 160 kB
    ids = [r["id"] for r in runs]
    cases = [("/v1/runs", {"tag": "case:runs"}, ids),
             (f"/v1/models/{model['id']}/runs", {}, ids),
             ("/v1/runs", {"tag": "case:runs", "order": "newest"}, ids[::-1]),
             ("/v1/runs", {"filter": f"model.id = '{model['id']}'", "sort": "-created_at"},
              ids[::-1])]
    for path, params, expected in cases:
        pages_ = walked(small, path, **params)
        assert len(pages_) >= 2, (path, params)
        listed = [r for page in pages_ for r in page]
        assert [r["id"] for r in listed] == expected, (path, params)  # each once, in order
        for run in listed:
            assert run == small.get(f"/v1/runs/{run['id']}").json()  # params and all
            assert len(run["final"]["params"]["W1"][0]) == 1023


def test_a_page_of_runs_is_the_runs_as_first_read_whatever_ends_or_goes_meanwhile(
        small: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page reads its runs, then their params: a run that ends in between is listed as it
    was read (no final: the fuzzer found a 500 there), one deleted in between is left out."""
    data = created(small.post("/v1/datasets", json={"x": [0.0, 1.0], "y": [0.0, 1.0]}))
    ended, deleted, kept = (created(small.post("/v1/models", json={"tags": {"case": "race"}}))
                            for _ in range(3))
    done = {m["id"]: created(small.post(f"/v1/models/{m['id']}/runs", headers=WAIT, json={
        "dataset_id": data["id"], "epochs": 1, "tags": {"case": "race"}}), 200)
        for m in (ended, deleted, kept)}
    ended_run, deleted_run = done[ended["id"]]["id"], done[deleted["id"]]["id"]
    read = Repository.run_params

    sessions = small.app.state.runtime.sessions  # type: ignore[attr-defined]
    with sessions.begin() as session:  # the page reads this run as still running
        final = session.scalar(select(RunRow.final_params).where(RunRow.id == ended_run))
        session.execute(update(RunRow).where(RunRow.id == ended_run).values(final_params=None))

    def meanwhile(repo: Repository, run_ids: Any) -> Any:
        """What other requests commit between the page's two reads."""
        with sessions.begin() as other:
            other.execute(update(RunRow).where(RunRow.id == ended_run).values(
                final_params=final))
            other.execute(delete(EpochRow).where(EpochRow.run_id == deleted_run))
            other.execute(delete(RunRow).where(RunRow.id == deleted_run))
        return read(repo, run_ids)

    monkeypatch.setattr(Repository, "run_params", meanwhile)
    answer = small.get("/v1/runs", params={"tag": "case:race"})
    assert answer.status_code == 200, answer.text
    listed = {run["id"]: run for run in answer.json()["items"]}
    assert set(listed) == {ended_run, done[kept["id"]]["id"]}
    assert listed[ended_run]["final"] is None
    assert listed[done[kept["id"]]["id"]] == done[kept["id"]]


# ------------------------------------------------------------------ the event stream's window


def test_the_streams_window_is_bounded_in_bytes() -> None:
    feed = Feed("run_x", -1)
    row = "x" * (100 << 10)  # an epoch of a large model: 100 kB of JSON
    for start in range(0, 1024, 64):
        feed.publish([Item("epoch", e, row) for e in range(start, start + 64)], None)
    kept = sum(len(item.json) for item in feed.items)
    assert 0 < kept <= 16 << 20, kept / 2**20  # was every one of the 1,024: 100 MB
    assert feed.epochs[-1] == 1023 and feed.base == feed.epochs[0] - 1
    assert feed.after(feed.base - 1) is None  # further back: read from the store
    assert [item.epoch for item in feed.after(feed.base) or []] == feed.epochs
    tiny = Feed("run_y", -1)
    tiny.publish([Item("epoch", e, "{}") for e in range(3000)], None)
    assert len(tiny.items) == feeds.WINDOW and tiny.base == 3000 - feeds.WINDOW - 1


def test_a_replay_of_large_epochs_pages_by_bytes(small: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run = trained(small, 200, 120, record_params=1)  # 12 kB an epoch
    monkeypatch.setattr(feeds, "WINDOW_BYTES", 128 << 10)
    monkeypatch.setattr(stream_items, "PAGE_BYTES", 64 << 10)  # about 5 epochs a page
    answer = small.get(f"/v1/runs/{run['id']}/events", headers={"accept": "application/jsonl"})
    items = [json.loads(line) for line in answer.text.splitlines()]
    assert [item["epoch"] for item in items[:-1]] == list(range(120))  # each once, in order
    assert items[-1]["type"] == "end" and items[-1]["id"] == run["id"]
    assert all(item["params"] is not None for item in items[:-1])
