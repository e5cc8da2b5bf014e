"""What a client can make the server hold (issue 19): the growth of ``tapeline serve``'s
resident memory around one request (the kernel's peak, reset before it; Linux only), each
case on a fresh server so that memory an earlier request freed does not hide it.

    .venv/bin/python bench/bounds.py [--only predict,history,imports,lists]

``predict``: a 1,000-class logistic model asked for 100,000 rows (a 200 kB body; refused
with a 413), then the rows the 413 says fit, in each format. ``history``: a 3,000-epoch run
of a 4,093-parameter MLP keeping params in every row, its first page, as columns and with
``max_points=10000``. ``imports``: refused model files (a 60 MiB tensor of a name the kind
has not, a header of 400,000 tensors, JSON of 15,000,000 numbers, JSON of 999,999 numbers
in a param of shape [1]) and three of the first at once. ``lists``: answers the issue's first
pass left unbounded (see the closing note of issue 19), bounded since: the event stream's
replay of the history run, a page of 1,000 models of 4,093 params (cut short in bytes), a
page of 4 runs of a 994,971-parameter MLP (one run a page).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.hostile import (  # noqa: E402
    json_numbers,
    tiny_tensors_safetensors,
    unknown_name_safetensors,
)
from tests.support.servers import LiveServer, PeakMemory, sqlite_url, start_server  # noqa: E402

MiB = 1 << 20
NPY = "application/octet-stream"
LONG = 600


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@contextmanager
def fresh() -> Iterator[LiveServer]:
    folder = Path(tempfile.mkdtemp())
    live = start_server(sqlite_url(folder), folder / "server.log", TAPELINE_LOG_LEVEL="warning")
    try:
        yield live
    finally:
        live.stop()


def measured(live: LiveServer, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    with PeakMemory(live.process.pid) as peak:
        answer = send()
    return answer, peak.growth


def line(case: str, answer: httpx.Response | None, size: int, growth: int) -> None:
    status = answer.status_code if answer is not None else "-"
    ratio = f"{growth / size:.2f}x" if size else ""
    print(f"| {case} | {status} | {size / MiB:.1f} MiB | {growth / MiB:.1f} MiB | {ratio} |",
          flush=True)


def classifier(api: httpx.Client, accept: str) -> str:
    """A 1-feature, 1000-class logistic model (1,001 numbers of answer a row), warmed."""
    model = api.post("/v1/models", json={"kind": "logistic", "features": 1,
                                         "classes": 1000}).json()["id"]
    api.post(f"/v1/models/{model}/predict", content=npy(np.zeros((10, 1))),
             headers={"content-type": NPY, "accept": accept})
    return str(model)


def predict() -> None:
    body = npy(np.zeros((100_000, 1), np.float16))
    with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
        path = f"/v1/models/{classifier(api, NPY)}/predict"
        refused, growth = measured(live, lambda: api.post(
            path, content=body, headers={"content-type": NPY, "accept": NPY}))
        line("predict: 100,000 rows of a 1,000-class model (a 200 kB body)", refused, 0, growth)
    for accept in ("application/json", "text/csv", NPY):
        with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
            path = f"/v1/models/{classifier(api, accept)}/predict"
            refused = api.post(path, content=body, headers={"content-type": NPY,
                                                            "accept": accept})
            fits = int(re.search(r"send at most (\d+) rows",  # type: ignore[union-attr]
                                 refused.json()["detail"]).group(1))
            x = npy(np.random.default_rng(0).normal(0, 3, (fits, 1)))
            answer, growth = measured(live, lambda: api.post(
                path, content=x, headers={"content-type": NPY, "accept": accept}))  # noqa: B023
            line(f"predict: the {fits} rows that fit, as {accept}", answer,
                 len(answer.content), growth)


def history_run(api: httpx.Client) -> dict[str, Any]:
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2,
                                         "hidden": [1023]}).json()
    data = api.post("/v1/datasets", json={"x": [[0, 1], [1, 0], [1, 1]],
                                          "y": [0.0, 1.0, 2.0]}).json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=500"}, json={
        "dataset_id": data["id"], "epochs": 3000, "record_params": 1,
        "optimizer": {"kind": "sgd", "learning_rate": 0.001}}).json()
    assert run["status"] == "succeeded", run
    api.get(f"/v1/runs/{run['id']}/history", params={"limit": 2})  # warm
    return dict(run)


def history() -> None:
    for params in ({}, {"format": "columns"}, {"max_points": 10_000}):
        with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
            run = history_run(api)
            answer, growth = measured(live, lambda: api.get(
                f"/v1/runs/{run['id']}/history", params=params))  # noqa: B023
            rows = answer.json()
            count = len(rows["items"] if "items" in rows else rows["epoch"])
            line(f"history of 3,000 rows x 4,093 params {params or ''} ({count} rows)", answer,
                 len(answer.content), growth)


def imports() -> None:
    files = {
        "a 60 MiB tensor of a name the kind has not": lambda: unknown_name_safetensors(60),
        "a header of 400,000 tensors": lambda: tiny_tensors_safetensors(400_000),
        "JSON of 15,000,000 numbers": lambda: json_numbers(15_000_000),
        "JSON of 999,999 numbers in W of shape [1]": lambda: json_numbers(999_999),
    }
    for case, make in files.items():
        content = make()
        with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
            api.get("/v1/models")
            answer, growth = measured(live, lambda: api.post(
                "/v1/models/import", files={"file": ("m", content)}))  # noqa: B023
            line(f"import: {case} ({len(content) / MiB:.1f} MiB)", answer, len(content),
                 growth)
    content = unknown_name_safetensors(60)
    with fresh() as live:
        statuses: list[int] = []

        def send() -> None:
            statuses.append(httpx.post(f"{live.url}/v1/models/import", timeout=LONG,
                                       files={"file": ("m", content)}).status_code)

        with PeakMemory(live.process.pid) as peak:
            threads = [threading.Thread(target=send) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        print(f"| import: three of the 60 MiB file at once | {statuses} | 3 x 60.0 MiB | "
              f"{peak.growth / MiB:.1f} MiB | |", flush=True)


def lists() -> None:
    with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
        run = history_run(api)
        total = 0
        with PeakMemory(live.process.pid) as peak, api.stream(
                "GET", f"/v1/runs/{run['id']}/events",
                headers={"accept": "application/jsonl"}) as stream:
            for chunk in stream.iter_bytes():
                total += len(chunk)
        line("events: the replay of the history run (JSON Lines)", None, total, peak.growth)
    with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
        for seed in range(1000):
            api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [1023],
                                         "initial": {"random_seed": seed}})
        api.get("/v1/models", params={"limit": 2})
        answer, growth = measured(live, lambda: api.get("/v1/models", params={"limit": 1000}))
        line("GET /v1/models?limit=1000 (1,000 models of 4,093 params)", answer,
             len(answer.content), growth)
    with fresh() as live, httpx.Client(base_url=live.url, timeout=LONG) as api:
        model = api.post("/v1/models", json={"kind": "mlp", "features": 2,
                                             "hidden": [990, 1000]}).json()
        data = api.post("/v1/datasets", json={"x": [[0, 1], [1, 0]], "y": [0.0, 1.0]}).json()
        for _ in range(4):
            api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=300"},
                     json={"dataset_id": data["id"], "epochs": 1})
        api.get("/v1/runs", params={"limit": 1})
        answer, growth = measured(live, lambda: api.get("/v1/runs", params={"limit": 100}))
        line(f"GET /v1/runs (4 runs of {model['param_count']:,} params)", answer,
             len(answer.content), growth)


CASES = {"predict": predict, "history": history, "imports": imports, "lists": lists}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CASES))
    args = parser.parse_args()
    print("| case | status | answer (or body) | server's growth | growth / size |")
    print("|---|---|---|---|---|")
    for name in args.only.split(","):
        CASES[name]()


if __name__ == "__main__":
    main()
