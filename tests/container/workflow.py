#!/usr/bin/env python3
"""Drive the tutorial's workflow through a running Tapeline container (stdlib only).

Used by tests/container/run.sh on the host, against the HTTP contract of
shared/API.md; every check that fails exits non-zero with a line saying what. ``--key``
sends an API key (the container's TAPELINE_BOOTSTRAP_ADMIN_KEY) with every request.

  workflow.py drive       --base-url URL --state FILE  synthesize the default dataset,
                          create the default model, train 10 epochs with `Prefer: wait=30`,
                          read history as rows and columns, read events as SSE and JSON
                          Lines; save the raw bytes of every resource to FILE
  workflow.py hold-stream --base-url URL --state FILE  start a long run on a second model
                          and follow its event stream until the server goes away (run.sh
                          sends SIGTERM meanwhile); record what the stream delivered
  workflow.py verify      --base-url URL --state FILE  (a new container, same volume) every
                          saved resource is byte-identical, and the interrupted run kept
                          every row its stream delivered and ended in a final state
  workflow.py start-long  --base-url URL --state FILE  (queue executor) start a run of 12
                          mini-batch epochs and return once 3 are stored (run.sh then kills
                          the worker container training it and starts another)
  workflow.py finish-long --base-url URL --state FILE  that run ends succeeded with each epoch
                          once, bit-identical to a control run of the same spec never
                          interrupted
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import time
import urllib.error
import urllib.request
from typing import Any

FINAL = {"succeeded", "failed", "cancelled", "diverged"}
EPOCHS = 10


class CheckFailed(Exception):
    pass


def check(cond: Any, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def ok(msg: str) -> None:
    print(f"    ok  {msg}", flush=True)


class Client:
    def __init__(self, base_url: str, key: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        hdrs = {"Accept": "application/json", **self.auth}
        hdrs.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def json(
        self,
        method: str,
        path: str,
        body: Any = None,
        expect: int | tuple[int, ...] = 200,
        **kw: Any,
    ) -> tuple[Any, dict[str, str], bytes]:
        status, headers, raw = self.request(method, path, body, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        check(
            status in wanted,
            f"{method} {path}: status {status}, want {wanted}: "
            f"{raw[:600].decode(errors='replace')}",
        )
        ctype = headers.get("content-type", "")
        check("json" in ctype, f"{method} {path}: content-type {ctype!r} is not JSON")
        return json.loads(raw), headers, raw

    def open_stream(self, path: str, accept: str, timeout: float = 60.0):
        req = urllib.request.Request(self.base + path, headers={"Accept": accept, **self.auth})
        resp = urllib.request.urlopen(req, timeout=timeout)
        check(resp.status == 200, f"GET {path} ({accept}): status {resp.status}")
        ctype = resp.headers.get("content-type", "")
        check(ctype.startswith(accept), f"GET {path}: content-type {ctype!r}, want {accept}")
        return resp


def sse_events(resp):
    """Yield (event, id, data) from an SSE response until the server closes it."""
    event, ev_id, data = None, None, []
    while True:
        raw = resp.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data or event:
                yield event or "message", ev_id, "\n".join(data)
            event, ev_id, data = None, None, []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "id":
            ev_id = value
        elif field == "data":
            data.append(value)


def jsonl_objects(resp):
    while True:
        raw = resp.readline()
        if not raw:
            return
        if raw.strip():
            yield json.loads(raw)


def finite_tree(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(finite_tree(v) for v in value)
    if isinstance(value, dict):
        return all(finite_tree(v) for v in value.values())
    return True


def same_row(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("epoch", "W", "b", "loss"))


# Resources whose raw bytes must survive a restart unchanged.
def snapshot_paths(st: dict) -> list[str]:
    m, r, d = st["model_id"], st["run_id"], st["dataset_id"]
    return [
        f"/v1/datasets/{d}",
        f"/v1/models/{m}",
        f"/v1/models/{m}/history?format=rows",
        f"/v1/models/{m}/history?format=columns",
        f"/v1/runs/{r}",
        f"/v1/runs/{r}/history?format=rows",
        f"/v1/runs/{r}/history?format=columns",
    ]


def history_rows(c: Client, path: str) -> list[dict]:
    """Every row of a history, page by page (`after` the last epoch, until no next_cursor)."""
    rows: list[dict] = []
    after = None
    while True:
        query = "?format=rows&limit=1000" + ("" if after is None else f"&after={after}")
        page, _, _ = c.json("GET", path + query)
        rows.extend(page["items"])
        if not page.get("next_cursor") or not page["items"]:
            return rows
        after = page["items"][-1]["epoch"]


def cmd_drive(c: Client, state_path: str) -> None:
    body, _, _ = c.json("GET", "/healthz")
    ok(f"GET /healthz {body}")
    c.json("GET", "/readyz")
    ok("GET /readyz 200")
    spec, _, _ = c.json("GET", "/openapi.json")
    check("/v1/datasets/synthetic" in spec.get("paths", {}), "the image's OpenAPI has no /v1 API")
    ok(f"GET /openapi.json: {len(spec['paths'])} paths")
    if c.auth:
        status, headers, _ = Client(c.base).request("GET", "/v1/models")
        check(status == 401 and headers.get("www-authenticate", "").startswith("Bearer"),
              f"GET /v1/models without a key: {status}, want 401 with WWW-Authenticate")
        me, _, _ = c.json("GET", "/v1/me")
        check(me.get("tenant") == "admin" and "admin" in me.get("scopes", []), f"me: {me}")
        ok("without a key: 401; the bootstrap key is an admin of tenant admin")

    ds, hdrs, _ = c.json("POST", "/v1/datasets/synthetic", {}, expect=201)
    check(ds.get("num_examples") == 1000 and ds.get("features") == 1, f"dataset: {ds}")
    check(ds.get("source") == "synthetic", f"dataset source: {ds.get('source')}")
    ok(f"POST /v1/datasets/synthetic -> 201 {ds['id']} (1000 examples, 1 feature)")

    model, hdrs, _ = c.json("POST", "/v1/models", {"kind": "linear", "features": 1}, expect=201)
    check(model.get("W") == [5.0] and model.get("b") == 0.0, f"default model W/b: {model}")
    ok(f"POST /v1/models -> 201 {model['id']} (W=[5.0], b=0.0)")

    t = time.monotonic()
    run, hdrs, _ = c.json(
        "POST",
        f"/v1/models/{model['id']}/runs",
        {"dataset_id": ds["id"]},
        expect=200,
        headers={"Prefer": "wait=30"},
        timeout=60,
    )
    check(run.get("status") == "succeeded", f"run status {run.get('status')}: {run}")
    check(run.get("epochs_completed") == EPOCHS, f"epochs_completed {run.get('epochs_completed')}")
    check(run.get("final") and finite_tree(run["final"]), f"run final: {run.get('final')}")
    ok(
        f"POST /v1/models/{{id}}/runs Prefer: wait=30 -> 200 succeeded in "
        f"{time.monotonic() - t:.2f}s, final W={run['final']['W']} b={run['final']['b']}"
    )

    run_path = f"/v1/runs/{run['id']}"
    rows, _, _ = c.json("GET", f"{run_path}/history?format=rows")
    items = rows.get("items")
    check(isinstance(items, list) and len(items) == EPOCHS, f"history rows: {rows}")
    epochs = [r["epoch"] for r in items]
    check(epochs == sorted(epochs) and len(set(epochs)) == EPOCHS, f"epochs {epochs}")
    check(items[0]["W"] == [5.0] and items[0]["b"] == 0.0, f"first row {items[0]}")
    check(items[-1]["loss"] < items[0]["loss"], "loss did not go down")
    check(all(finite_tree(r) for r in items), "non-finite history")
    ok(
        f"GET history?format=rows: {EPOCHS} rows, loss {items[0]['loss']:.4f} -> "
        f"{items[-1]['loss']:.4f}"
    )

    cols, _, _ = c.json("GET", f"{run_path}/history?format=columns")
    for key in ("epoch", "W", "b", "loss"):
        check(len(cols.get(key, [])) == EPOCHS, f"columns[{key}]: {cols.get(key)}")
    check(cols["epoch"] == epochs, "columns epochs differ from rows")
    check(cols["loss"] == [r["loss"] for r in items], "columns loss differs from rows")
    check(cols["W"] == [r["W"] for r in items], "columns W differs from rows")
    ok("GET history?format=columns matches the rows")

    # SSE: one `event: epoch` per row (id = epoch), then `event: end` with the final run.
    resp = c.open_stream(f"{run_path}/events", "text/event-stream")
    events = list(sse_events(resp))
    names = [e[0] for e in events]
    check(names == ["epoch"] * EPOCHS + ["end"], f"SSE events {names}")
    for (_, ev_id, data), row in zip(events, items, strict=False):
        check(ev_id == str(row["epoch"]), f"SSE id {ev_id} for epoch {row['epoch']}")
        check(same_row(json.loads(data), row), f"SSE epoch {data} differs from row {row}")
    end = json.loads(events[-1][2])
    end_run = end.get("run", end)
    check(end_run.get("status") == "succeeded", f"SSE end: {end}")
    ok(f"GET events (text/event-stream): {EPOCHS} x event: epoch, then event: end (succeeded)")

    resp = c.open_stream(f"{run_path}/events", "application/jsonl")
    objs = list(jsonl_objects(resp))
    check([o.get("type") for o in objs] == ["epoch"] * EPOCHS + ["end"], f"JSONL {objs}")
    for obj, row in zip(objs, items, strict=False):
        check(same_row(obj, row), f"JSONL epoch {obj} differs from row {row}")
    ok(f"GET events (application/jsonl): {EPOCHS} epoch lines, then end")

    # Resume: SSE with Last-Event-ID replays only later epochs.
    req = urllib.request.Request(
        c.base + f"{run_path}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": str(epochs[4]), **c.auth},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        resumed = [e for e in sse_events(resp) if e[0] == "epoch"]
    check([e[1] for e in resumed] == [str(e) for e in epochs[5:]], f"resumed {resumed}")
    ok(f"GET events Last-Event-ID: {epochs[4]} resumes at epoch {epochs[5]}")

    mh, _, _ = c.json("GET", f"/v1/models/{model['id']}/history?format=rows")
    check(len(mh.get("items", [])) == EPOCHS, f"model history {mh}")
    m2, _, _ = c.json("GET", f"/v1/models/{model['id']}")
    check(m2["W"] == run["final"]["W"] and m2["b"] == run["final"]["b"], "model W/b != run final")
    check(m2.get("epochs_trained") == EPOCHS, f"epochs_trained {m2.get('epochs_trained')}")
    ok("the model holds the run's final W/b and its 10-epoch history")

    _, hdrs, _ = c.json("GET", "/v1/runs/no-such-run", expect=404)
    check(hdrs.get("content-type", "").startswith("application/problem+json"), f"404 {hdrs}")
    ok("unknown id -> 404 application/problem+json")

    st = {"dataset_id": ds["id"], "model_id": model["id"], "run_id": run["id"]}
    st["snapshot"] = {p: c.request("GET", p)[2].decode() for p in snapshot_paths(st)}
    with open(state_path, "w", encoding="utf-8") as fh:
        json.dump(st, fh)
    ok(f"saved {len(st['snapshot'])} resources for the restart check")


def cmd_hold_stream(c: Client, state_path: str) -> None:
    with open(state_path, encoding="utf-8") as fh:
        st = json.load(fh)
    model, _, _ = c.json("POST", "/v1/models", {"kind": "linear", "features": 1}, expect=201)
    run, _, _ = c.json(
        "POST",
        f"/v1/models/{model['id']}/runs",
        {"dataset_id": st["dataset_id"], "epochs": 100000, "batch_size": 10},
        expect=202,
    )
    print(f"long run {run['id']} (100000 epochs of 100 batches) on model {model['id']}", flush=True)
    rows: list[dict] = []
    how = "eof"
    end = None
    try:
        resp = c.open_stream(f"/v1/runs/{run['id']}/events", "application/jsonl", timeout=30)
        announced = False
        for obj in jsonl_objects(resp):
            if obj.get("type") == "end":
                how, end = "end", obj
                break
            rows.append(obj)
            if not announced and len(rows) >= 3:
                status = c.json("GET", f"/v1/runs/{run['id']}")[0]["status"]
                check(status == "running", f"long run is {status} while streaming")
                print(f"streaming run {run['id']}: live epochs arriving", flush=True)
                announced = True
    except (http.client.IncompleteRead, ConnectionError, OSError) as err:
        how = f"connection closed ({type(err).__name__})"
    print(
        f"stream ended by {how} after {len(rows)} epochs"
        + (
            f", end event status {end.get('status') or end.get('run', {}).get('status')}"
            if end
            else ""
        ),
        flush=True,
    )
    check(rows, "the stream delivered no epoch")
    st["long"] = {"model_id": model["id"], "run_id": run["id"], "rows": rows, "ended_by": how}
    with open(state_path, "w", encoding="utf-8") as fh:
        json.dump(st, fh)


def cmd_verify(c: Client, state_path: str) -> None:
    with open(state_path, encoding="utf-8") as fh:
        st = json.load(fh)
    for path, before in st["snapshot"].items():
        status, _, raw = c.request("GET", path)
        check(status == 200, f"GET {path} after restart: {status} {raw[:300]!r}")
        check(
            raw.decode() == before,
            f"GET {path} changed across restart:\n  {before}\n  {raw.decode()}",
        )
    ok(f"{len(st['snapshot'])} resources byte-identical after restart (model, runs, history)")

    long = st.get("long")
    if not long:
        ok("(no interrupted run to check: hold-stream was not run on this store)")
        return
    run, _, _ = c.json("GET", f"/v1/runs/{long['run_id']}")
    check(run["status"] in FINAL, f"interrupted run is {run['status']} after restart")
    check(
        long["ended_by"] != "end",
        "the long run ended before SIGTERM, so shutdown with a live stream was not exercised",
    )
    seen = long["rows"]
    stored = history_rows(c, f"/v1/runs/{long['run_id']}/history")
    check(len(stored) >= len(seen), f"{len(stored)} stored rows < {len(seen)} streamed")
    for a, b in zip(seen, stored, strict=False):
        check(same_row(a, b), f"streamed row {a} differs from stored row {b}")
    model, _, _ = c.json("GET", f"/v1/models/{long['model_id']}")
    check(model["status"] == "idle", f"model of the interrupted run is {model['status']}")
    ok(
        f"interrupted run is {run['status']} ({(run.get('error') or {}).get('reason', '-')}); "
        f"all {len(seen)} streamed rows are stored"
    )


LONG = {"epochs": 12, "batch_size": 4, "shuffle_seed": 0,
        "optimizer": {"kind": "adam", "learning_rate": 0.01}}


def _long_run(c: Client, dataset_id: str, headers: dict[str, str] | None = None) -> dict:
    model, _, _ = c.json("POST", "/v1/models", {"kind": "linear", "features": 1}, expect=201)
    run, _, _ = c.json("POST", f"/v1/models/{model['id']}/runs",
                       {"dataset_id": dataset_id, **LONG}, expect=(200, 202), headers=headers)
    return run


def _trace(c: Client, run_id: str) -> list[dict]:
    """Each history row but its wall time and run id (what the run computed)."""
    rows = history_rows(c, f"/v1/runs/{run_id}/history")
    return [{k: v for k, v in r.items() if k not in ("elapsed_ms", "run_id")} for r in rows]


def cmd_start_long(c: Client, state_path: str) -> None:
    dataset, _, _ = c.json("POST", "/v1/datasets/synthetic",
                           {"num_examples": 40000, "seed": 1}, expect=201)
    run = _long_run(c, dataset["id"])
    deadline = time.monotonic() + 120
    while True:
        now = c.json("GET", f"/v1/runs/{run['id']}")[0]
        check(now["status"] in ("queued", "running"), f"long run is {now['status']} early")
        if now["epochs_completed"] >= 3:
            break
        check(time.monotonic() < deadline, "the long run stored no 3 epochs in 120 s")
        time.sleep(0.05)
    ok(f"run {run['id']} is training on a worker: {now['epochs_completed']} epochs stored")
    with open(state_path, "w", encoding="utf-8") as fh:
        json.dump({"dataset_id": dataset["id"], "run_id": run["id"]}, fh)


def cmd_finish_long(c: Client, state_path: str) -> None:
    with open(state_path, encoding="utf-8") as fh:
        st = json.load(fh)
    deadline = time.monotonic() + 300
    while True:
        run = c.json("GET", f"/v1/runs/{st['run_id']}")[0]
        if run["status"] in FINAL:
            break
        check(time.monotonic() < deadline, "the taken-over run did not end in 300 s")
        time.sleep(0.2)
    check(run["status"] == "succeeded", f"the taken-over run ended {run['status']}: {run}")
    resumed = _trace(c, st["run_id"])
    check([r["epoch"] for r in resumed] == list(range(12)),
          f"epochs {[r['epoch'] for r in resumed]}, want each of 0..11 once")
    control = _long_run(c, st["dataset_id"], {"Prefer": "wait=300"})
    check(control["status"] == "succeeded", f"control run {control['status']}")
    check(_trace(c, control["id"]) == resumed,
          "the taken-over run's history differs from the uninterrupted control run's")
    ok("the run survived its worker's SIGKILL: each epoch once, bit-identical to a control run")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["drive", "hold-stream", "verify", "start-long",
                                            "finish-long"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--key", help="the API key to send (TAPELINE_BOOTSTRAP_ADMIN_KEY)")
    args = parser.parse_args()
    client = Client(args.base_url, args.key)
    fn = {"drive": cmd_drive, "hold-stream": cmd_hold_stream, "verify": cmd_verify,
          "start-long": cmd_start_long, "finish-long": cmd_finish_long}[args.command]
    try:
        fn(client, args.state)
    except CheckFailed as err:
        print(f"CHECK FAILED ({args.command}): {err}", file=sys.stderr, flush=True)
        return 1
    except (urllib.error.URLError, OSError) as err:
        print(f"CHECK FAILED ({args.command}): {args.base_url}: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
