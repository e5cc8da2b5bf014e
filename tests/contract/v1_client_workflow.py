"""What a client generated from the v1 spec did with Tapeline v1, unchanged: the tutorial,
predictions, history as rows and columns, both streams, typed problems. Run by
test_v1_client.py with that client on PYTHONPATH: ``python v1_client_workflow.py <url>``."""

from __future__ import annotations

import json
import sys
import time

from tapeline_client import Client
from tapeline_client.api.datasets import datasets_create_synthetic, datasets_download
from tapeline_client.api.history import history_model, history_run
from tapeline_client.api.models import models_create, models_get, models_list, models_predict
from tapeline_client.api.runs import runs_create, runs_get
from tapeline_client.models import (
    SGD,
    EndEvent,
    EpochEvent,
    HistoryColumns,
    HistoryPage,
    HistoryRunFormat,
    InitialParams,
    ModelCreate,
    PredictRequest,
    Problem,
    RunCreate,
    SyntheticCreate,
)


def main(url: str) -> None:
    """Drive the v1 workflow and check every answer parses as v1's schemas say."""
    with Client(base_url=url, raise_on_unexpected_status=True, timeout=60.0) as client:
        dataset = datasets_create_synthetic.sync(client=client, body=SyntheticCreate(seed=42))
        assert (dataset.num_examples, dataset.features, dataset.synthetic.seed) == (1000, 1, 42)
        assert len(datasets_download.sync(dataset.id, client=client).y) == 1000
        model = models_create.sync(client=client, body=ModelCreate(name="tutorial"))
        assert (model.w, model.b, model.kind) == ([5.0], 0.0, "linear")
        run = runs_create.sync(model.id, client=client, prefer="wait=60", body=RunCreate(
            dataset_id=dataset.id, epochs=10, optimizer=SGD(kind="sgd", learning_rate=0.1)))
        while run.status.value not in ("succeeded", "failed", "cancelled", "diverged"):
            time.sleep(0.1)
            run = runs_get.sync(run.id, client=client)
        assert run.status.value == "succeeded" and run.initial.w == [5.0]
        assert abs(run.final.w[0] - 3.0) < 0.5 and abs(run.final.b - 2.0) < 0.5
        rows = history_run.sync(run.id, client=client)
        assert isinstance(rows, HistoryPage) and rows.items[0].w == [5.0]
        columns = history_run.sync(run.id, client=client, format_=HistoryRunFormat.COLUMNS)
        assert isinstance(columns, HistoryColumns) and columns.w[0] == [5.0]
        assert columns.loss == [r.loss for r in rows.items]
        assert [r.step for r in history_model.sync(model.id, client=client).items] == list(
            range(10))
        trained = models_get.sync(model.id, client=client)
        assert trained.w == run.final.w and trained.epochs_trained == 10
        listed = models_list.sync(client=client, limit=1000)
        assert model.id in [m.id for m in listed.items]
        y = models_predict.sync(model.id, client=client, body=PredictRequest(x=[0.0, 1.0])).y
        assert abs(y[1] - y[0] - trained.w[0]) < 1e-6
        seeded = models_create.sync(client=client, body=ModelCreate(
            features=2, initial=InitialParams(w=[1.5, -2.0], b=0.25)))
        assert (seeded.w, seeded.b) == ([1.5, -2.0], 0.25)
        http = client.get_httpx_client()
        with http.stream("GET", f"/v1/runs/{run.id}/events",
                         headers={"Accept": "application/jsonl"}) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert [EpochEvent.from_dict(item).epoch for item in lines[:-1]] == list(range(10))
        assert EndEvent.from_dict(lines[-1]).final.w == run.final.w
        invalid = models_create.sync_detailed(client=client, body=ModelCreate(features=0))
        assert invalid.status_code == 422 and isinstance(invalid.parsed, Problem)
        assert invalid.parsed.errors[0].loc == ["body", "features"]
    print("v1 client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
