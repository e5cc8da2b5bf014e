"""A Python client generated from the committed spec drives the tutorial against a live server."""

from __future__ import annotations

import importlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from httpx_sse import connect_sse

from tests.contract.conftest import CLIENT_PACKAGE, operation_ids

pytestmark = pytest.mark.live

FINAL = {"succeeded", "failed", "cancelled", "diverged"}


def wait_until_final(client: Any, run_id: str, timeout: float = 120) -> Any:
    """Poll ``runs-get`` until the run is final."""
    from tapeline_client.api.runs import runs_get

    deadline = time.monotonic() + timeout
    while True:
        run = runs_get.sync(run_id, client=client)
        if run.status.value in FINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def test_the_generator_keeps_every_operation(python_client: Path) -> None:
    modules = {p.stem for p in (python_client / CLIENT_PACKAGE / "api").rglob("*.py")}
    missing = [op for op in operation_ids() if op.replace("-", "_") not in modules]
    assert not missing, f"operations the generator dropped: {missing}"
    for op in operation_ids():
        tag = op.split("-", 1)[0]
        module = (python_client / CLIENT_PACKAGE / "api" / tag / f"{op.replace('-', '_')}.py")
        assert "def sync_detailed(" in module.read_text(), op


def test_tutorial_through_the_generated_client(client: Any) -> None:
    from tapeline_client.api.datasets import datasets_create_synthetic, datasets_download
    from tapeline_client.api.events import events_stream
    from tapeline_client.api.history import history_model, history_run
    from tapeline_client.api.models import models_create, models_get, models_predict
    from tapeline_client.api.runs import runs_create, runs_list
    from tapeline_client.api.service import service_healthz, service_readyz
    from tapeline_client.models import (
        SGD,
        EndEvent,
        EpochEvent,
        HistoryColumns,
        HistoryPage,
        HistoryRunFormat,
        LinearModelCreate,
        LinearSynthetic,
        PredictRequest,
        RunCreate,
    )

    assert service_healthz.sync(client=client).status == "ok"
    assert service_readyz.sync(client=client).status == "ok"

    dataset = datasets_create_synthetic.sync(client=client, body=LinearSynthetic(seed=42))
    assert (dataset.num_examples, dataset.features, dataset.synthetic.seed) == (1000, 1, 42)
    data = datasets_download.sync(dataset.id, client=client)
    assert len(data.x) == len(data.y) == 1000

    model = models_create.sync(client=client, body=LinearModelCreate(name="tutorial"))
    assert (model.w, model.b, model.status.value) == ([5.0], 0.0, "idle")

    started = runs_create.sync_detailed(model.id, client=client, body=RunCreate(
        dataset_id=dataset.id, epochs=10, optimizer=SGD(kind="sgd", learning_rate=0.1)))
    assert started.status_code in (200, 202)
    assert started.headers["location"] == f"/v1/runs/{started.parsed.id}"
    run = wait_until_final(client, started.parsed.id)
    assert run.status.value == "succeeded" and run.epochs_completed == 10
    assert abs(run.final.w[0] - 3.0) < 0.5 and abs(run.final.b - 2.0) < 0.5
    assert [r.id for r in runs_list.sync(model.id, client=client).items] == [run.id]

    rows = history_run.sync(run.id, client=client)
    assert isinstance(rows, HistoryPage) and rows.next_cursor is None
    assert [r.epoch for r in rows.items] == list(range(10))
    assert rows.items[0].w == [5.0] and rows.items[0].b == 0.0
    losses = [r.loss for r in rows.items]
    assert losses == sorted(losses, reverse=True)
    columns = history_run.sync(run.id, client=client, format_=HistoryRunFormat.COLUMNS)
    assert isinstance(columns, HistoryColumns)
    assert columns.loss == losses and columns.epoch == list(range(10))
    assert [r.loss for r in history_model.sync(model.id, client=client).items] == losses

    trained = models_get.sync(model.id, client=client)
    assert trained.w == run.final.w and trained.epochs_trained == 10
    y = models_predict.sync(model.id, client=client, body=PredictRequest(x=[-1.0, 0.0, 1.0])).y
    np.testing.assert_allclose(y, np.array([-1.0, 0.0, 1.0]) * trained.w[0] + trained.b,
                               rtol=1e-6)

    # The streams: the generated client keeps the operation; its items parse as the
    # generated EpochEvent / EndEvent models.
    assert events_stream.sync_detailed(run.id, client=client).status_code == 200
    http = client.get_httpx_client()
    with http.stream("GET", f"/v1/runs/{run.id}/events",
                     headers={"Accept": "application/jsonl"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    epochs = [EpochEvent.from_dict(item) for item in lines[:-1]]
    end = EndEvent.from_dict(lines[-1])
    assert [e.epoch for e in epochs] == list(range(10)) and end.status.value == "succeeded"
    with connect_sse(http, "GET", f"/v1/runs/{run.id}/events") as source:
        events = [(e.event, e.id, e.json()) for e in source.iter_sse()]
    assert [EpochEvent.from_dict(d).loss for kind, _, d in events if kind == "epoch"] == losses
    assert events[-1][0] == "end" and EndEvent.from_dict(events[-1][2]).id == run.id


def test_tutorial_numbers_match_tensorflow(client: Any, tf_cases: dict[str, Any]) -> None:
    from tapeline_client.api.datasets import datasets_create
    from tapeline_client.api.history import history_run
    from tapeline_client.api.models import models_create
    from tapeline_client.api.runs import runs_create
    from tapeline_client.models import (
        SGD,
        DatasetCreate,
        HistoryRunFormat,
        InitialParams,
        LinearModelCreate,
        RunCreate,
    )

    ref = tf_cases["seed_defaults"]
    dataset = datasets_create.sync(client=client, body=DatasetCreate(x=ref["x"], y=ref["y"]))
    model = models_create.sync(client=client, body=LinearModelCreate(
        initial=InitialParams(w=[ref["initial"]["W"]], b=ref["initial"]["b"])))
    answer = runs_create.sync_detailed(model.id, client=client, prefer="wait=60", body=RunCreate(
        dataset_id=dataset.id, epochs=ref["epochs"],
        optimizer=SGD(kind="sgd", learning_rate=ref["learning_rate"])))
    assert answer.status_code == 200 and answer.headers["preference-applied"] == "wait=60"
    run = answer.parsed
    columns = history_run.sync(run.id, client=client, format_=HistoryRunFormat.COLUMNS)
    np.testing.assert_allclose([w[0] for w in columns.w], ref["history"]["W"], rtol=1e-5)
    np.testing.assert_allclose(columns.b, ref["history"]["b"], rtol=1e-5)
    np.testing.assert_allclose(columns.loss, ref["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose([run.final.w[0], run.final.b],
                               [ref["final"]["W"], ref["final"]["b"]], rtol=1e-5)


def test_upload_and_paging(client: Any) -> None:
    from tapeline_client.api.datasets import datasets_delete, datasets_list, datasets_upload
    from tapeline_client.models import BodyDatasetsUpload
    from tapeline_client.types import File

    csv = b"x,y\n0.0,2.1\n1.0,4.9\n2.0,8.2\n"
    uploaded = datasets_upload.sync(client=client, body=BodyDatasetsUpload(
        file=File(payload=io.BytesIO(csv), file_name="tiny.csv", mime_type="text/csv")))
    assert (uploaded.source.value, uploaded.num_examples, uploaded.name) == (
        "upload", 3, "tiny.csv")
    first = datasets_list.sync(client=client, limit=1)
    assert len(first.items) == 1 and first.next_cursor
    second = datasets_list.sync(client=client, limit=1, cursor=first.next_cursor)
    assert second.items[0].id != first.items[0].id
    assert datasets_delete.sync_detailed(uploaded.id, client=client).status_code == 204


def test_cancel_another_run(client: Any) -> None:
    from tapeline_client.api.datasets import datasets_create_synthetic
    from tapeline_client.api.models import models_create
    from tapeline_client.api.runs import runs_cancel, runs_create
    from tapeline_client.models import SGD, LinearModelCreate, LinearSynthetic, RunCreate

    dataset = datasets_create_synthetic.sync(client=client, body=LinearSynthetic(
        num_examples=20000, seed=1))
    model = models_create.sync(client=client, body=LinearModelCreate())
    run = runs_create.sync(model.id, client=client, body=RunCreate(
        dataset_id=dataset.id, epochs=1000, batch_size=4,
        optimizer=SGD(kind="sgd", learning_rate=0.01)))
    cancelled = runs_cancel.sync(run.id, client=client)
    assert cancelled.status.value in ("cancelling", "cancelled")
    final = wait_until_final(client, run.id)
    assert final.status.value == "cancelled" and final.epochs_completed < 1000
    assert final.error.reason == "cancelled"


def test_problems_are_typed(client: Any) -> None:
    from tapeline_client.api.datasets import datasets_create
    from tapeline_client.api.models import models_create, models_get
    from tapeline_client.api.runs import runs_get
    from tapeline_client.models import DatasetCreate, FieldProblem, LinearModelCreate, Problem

    missing = models_get.sync_detailed("mdl_00000000000000000000", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, Problem)
    assert (missing.parsed.status, missing.parsed.title) == (404, "Not Found")
    assert missing.parsed.instance == "/v1/models/mdl_00000000000000000000"
    assert isinstance(runs_get.sync("run_nope", client=client), Problem)

    uneven = datasets_create.sync_detailed(client=client,
                                           body=DatasetCreate(x=[1.0, 2.0], y=[1.0]))
    assert uneven.status_code == 422 and isinstance(uneven.parsed, Problem)
    assert uneven.headers["content-type"] == "application/problem+json"
    assert all(isinstance(e, FieldProblem) for e in uneven.parsed.errors)
    assert "examples" in uneven.parsed.detail
    invalid = models_create.sync_detailed(client=client, body=LinearModelCreate(features=0))
    assert invalid.status_code == 422 and invalid.parsed.errors[0].loc == ["body", "features"]


def test_a_classifier_through_the_generated_client(client: Any) -> None:
    from tapeline_client.api.datasets import datasets_create_synthetic
    from tapeline_client.api.history import history_run
    from tapeline_client.api.models import models_create, models_predict
    from tapeline_client.api.runs import runs_create
    from tapeline_client.models import (
        Adam,
        ClassPrediction,
        EarlyStoppingSpec,
        MLPModel,
        MLPModelCreate,
        MLPModelCreateTask,
        MoonsSynthetic,
        PredictRequest,
        RunCreate,
        ValidationFraction,
    )

    moons = datasets_create_synthetic.sync(client=client, body=MoonsSynthetic(
        kind="moons", num_examples=200, noise=0.1, seed=3))
    model = models_create.sync(client=client, body=MLPModelCreate(
        kind="mlp", features=2, hidden=[16], task=MLPModelCreateTask.CLASSIFICATION))
    assert isinstance(model, MLPModel) and model.w is None and model.classes == 2
    run = runs_create.sync(model.id, client=client, prefer="wait=60", body=RunCreate(
        dataset_id=moons.id, epochs=300, optimizer=Adam(kind="adam", learning_rate=0.05),
        validation=ValidationFraction(fraction=0.2),
        early_stopping=EarlyStoppingSpec(patience=10)))
    assert run.status.value == "succeeded" and run.final.metrics["accuracy"] > 0.8
    rows = history_run.sync(run.id, client=client)
    assert {"val_loss", "val_accuracy"} <= set(rows.items[-1].metrics.to_dict())
    predicted = models_predict.sync(model.id, client=client, body=PredictRequest(
        x=[[0.0, 1.0], [1.0, -0.5]]))
    assert isinstance(predicted, ClassPrediction) and predicted.y == [0, 1]
    assert all(abs(sum(row) - 1) < 1e-12 for row in predicted.probabilities)


ADMIN_KEY = "tl_" + "P" * 43


def test_the_generated_client_sends_a_key(python_client: Path, tmp_path: Path) -> None:
    """`AuthenticatedClient(..., token=key)` against a server that requires keys: the key
    works, a client without one gets the 401 problem the spec declares."""
    from tests.support.servers import sqlite_url, start_server

    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          TAPELINE_AUTH="required", TAPELINE_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY)
    sys.path.insert(0, str(python_client))
    try:
        package = importlib.import_module(CLIENT_PACKAGE)
        from tapeline_client.api.keys import keys_create
        from tapeline_client.api.models import models_create, models_list
        from tapeline_client.api.tenants import tenants_me
        from tapeline_client.models import (
            KeyCreate,
            KeyCreateScopesItem,
            LinearModelCreate,
            Problem,
        )

        with package.AuthenticatedClient(base_url=server.url, token=ADMIN_KEY) as admin:
            made = keys_create.sync(client=admin, body=KeyCreate(
                tenant="team-py", scopes=[KeyCreateScopesItem.READ, KeyCreateScopesItem.WRITE]))
        with package.AuthenticatedClient(base_url=server.url, token=made.key) as api:
            me = tenants_me.sync(client=api)
            assert me.tenant == "team-py" and me.key_id == made.id
            model = models_create.sync(client=api, body=LinearModelCreate())
            assert [m.id for m in models_list.sync(client=api).items] == [model.id]
        with package.Client(base_url=server.url) as anonymous:
            answer = models_list.sync_detailed(client=anonymous)
            assert answer.status_code == 401 and isinstance(answer.parsed, Problem)
    finally:
        sys.path.remove(str(python_client))
        server.stop()
