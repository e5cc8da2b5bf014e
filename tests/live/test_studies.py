"""Studies against live servers: a small grid study and a small ASHA study on moons, on
SQLite and PostgreSQL. ASHA pauses its trials at the rungs and resumes the best from their
checkpoints (never trained again: every attempt starts where the last pause left it); the
others end pruned, their runs succeeded after the epochs they trained; the epochs add up to
successive halving's accounting; a promoted trial ends with the params of one uninterrupted
run, bit for bit. The same study (an ASHA one and a TPE one) gives the same trial table and
best trial, bit for bit, with concurrency 1 and 4, with the ``queue`` executor and two
workers, and after a ``kill -9`` of the server or of a worker in the middle of it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import fresh_schema
from tests.support.servers import LiveServer, LiveWorker, sqlite_url, start_server, start_worker
from tests.support.studies import grid_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("studies")
    if request.param == "sqlite":
        url = sqlite_url(folder)
        live = start_server(url, folder / "server.log", TAPELINE_WORKERS="2")
        yield live
        live.stop()
    else:
        from tests.support.postgres import fresh_schema

        with fresh_schema(request.getfixturevalue("postgres_base")) as url:
            live = start_server(url, folder / "server.log", TAPELINE_WORKERS="2")
            yield live
            live.stop()


def moons(client: httpx.Client) -> str:
    answer = client.post("/v1/datasets/synthetic", json={"kind": "moons", "num_examples": 120,
                                                         "noise": 0.2, "seed": 3})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


spec = grid_study


def finish(client: httpx.Client, study_id: str, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        study = client.get(f"/v1/studies/{study_id}").json()
        if study["status"] != "running":
            return dict(study)
        time.sleep(0.3)
    raise AssertionError(f"study {study_id} still running: {study}")


def table(client: httpx.Client, study_id: str) -> list[dict]:
    """The trial table without the ids of the models and runs (new ones each study), with
    each trial's final params."""
    items = client.get(f"/v1/studies/{study_id}/trials").json()["items"]
    rows = []
    for item in items:
        run = client.get(f"/v1/runs/{item['run_id']}").json()
        rows.append({key: item[key] for key in ("number", "params", "status", "epochs",
                                                "rungs", "objective")}
                    | {"final": run["final"]["params"] if run["final"] else None})
    return rows


def test_grid_study_tries_every_combination_once(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        answer = client.post("/v1/studies", json=spec(dataset_id))
        assert answer.status_code == 201, answer.text
        study = answer.json()
        assert study["max_trials"] == 4 and study["trials_per_batch"] == 8
        done = finish(client, study["id"])
        assert done["status"] == "completed", done
        assert done["counts"]["completed"] == 4
        assert done["epochs_trained"] == 12
        trials = client.get(f"/v1/studies/{study['id']}/trials").json()["items"]
        points = [t["params"] for t in trials]
        assert points == [
            {"run.optimizer.learning_rate": lr, "model.hidden": hidden}
            for lr in (0.01, 0.1) for hidden in ([4], [8])]
        best = min(trials, key=lambda t: (t["objective"], t["number"]))
        assert done["best"]["number"] == best["number"]
        assert done["best"]["objective"] == best["objective"]
        runs = client.get("/v1/runs", params={"filter": f'tags.study = "{study["id"]}"'})
        assert runs.status_code == 200, runs.text
        assert sorted(r["id"] for r in runs.json()["items"]) == sorted(
            t["run_id"] for t in trials)
        for trial in trials:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert run["tags"]["study"] == study["id"]
            assert run["tags"]["trial"] == str(trial["number"])
            assert run["final"]["metrics"]["val_loss"] == trial["objective"]
        lines = client.get(f"/v1/studies/{study['id']}/events",
                           headers={"Accept": "application/jsonl"})
        events = [json.loads(line) for line in lines.text.splitlines()]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "study.created" and kinds[-1] == "end"
        assert kinds.count("trial.created") == 4 and kinds.count("trial.completed") == 4
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        resumed = client.get(f"/v1/studies/{study['id']}/events",
                             params={"after": events[-3]["seq"]},
                             headers={"Accept": "application/jsonl"})
        assert [json.loads(line) for line in resumed.text.splitlines()] == events[-2:]
        with client.stream("GET", f"/v1/studies/{study['id']}/events",
                           headers={"Accept": "text/event-stream"}) as sse:
            text = "".join(sse.iter_text())
        assert text.count("event: trial.created") == 4 and "event: end" in text
        metrics = client.get("/metrics").text
        assert 'tapeline_study_trials_total{status="completed"}' in metrics
        assert client.delete(f"/v1/studies/{study['id']}").status_code == 204
        assert client.get(f"/v1/studies/{study['id']}").status_code == 404
        assert client.get(f"/v1/runs/{trials[0]['run_id']}").status_code == 404
        assert client.get(f"/v1/models/{trials[0]['model_id']}").status_code == 404


def test_concurrency_changes_nothing_but_time(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        space = {"run.optimizer.learning_rate": {"type": "float", "low": 0.001, "high": 0.3,
                                                 "log": True},
                 "model.hidden": {"type": "choice", "values": [[4], [8], [4, 4]]}}
        tables, bests = [], []
        for concurrency in (1, 4):
            body = spec(dataset_id, space=space, sampler={"kind": "tpe", "seed": 11},
                        max_trials=6, trials_per_batch=3, concurrency=concurrency)
            study = client.post("/v1/studies", json=body).json()
            done = finish(client, study["id"])
            assert done["status"] == "completed", done
            tables.append(table(client, study["id"]))
            bests.append({k: v for k, v in done["best"].items()
                          if k not in ("run_id", "model_id")})
        assert tables[0] == tables[1]
        assert bests[0] == bests[1]
        assert len(tables[0]) == 6


# ------------------------------------------------------------------------------ ASHA

RUNGS = [1, 3, 9]
QUEUE = {"TAPELINE_EXECUTOR": "queue", "TAPELINE_WORKER_TIMEOUT": "3"}


def asha(dataset_id: str, **changes: object) -> dict[str, object]:
    """Nine trials of up to 9 epochs, reduction factor 3: rungs at 1, 3 and 9 epochs; one
    bracket (9 trials, 3 promoted at the first rung, 1 at the second)."""
    return spec(dataset_id, **{
        "name": "moons-asha",
        "run": {"epochs": 9, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.25}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.001, "high": 0.3,
                                                  "log": True},
                  "model.hidden": {"type": "choice", "values": [[4], [8], [4, 4]]}},
        "sampler": {"kind": "random", "seed": 5},
        "scheduler": {"kind": "asha", "min_epochs": 1, "reduction_factor": 3},
        "concurrency": 4} | changes)


def tpe(dataset_id: str, **changes: object) -> dict[str, object]:
    """Six TPE trials in two batches of three (the second sampled knowing the first)."""
    return spec(dataset_id, **{
        "name": "moons-tpe",
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.001, "high": 0.3,
                                                  "log": True},
                  "model.hidden": {"type": "choice", "values": [[4], [8], [4, 4]]}},
        "sampler": {"kind": "tpe", "seed": 11}, "max_trials": 6, "trials_per_batch": 3,
        "concurrency": 4} | changes)


STUDIES = {"asha": asha, "tpe": tpe}


def outcome(client: httpx.Client, study_id: str) -> tuple[list[dict], dict]:
    """The study's trial table and best trial, without the ids that differ each study."""
    done = finish(client, study_id)
    assert done["status"] == "completed", done
    best = {k: v for k, v in done["best"].items() if k not in ("run_id", "model_id")}
    return table(client, study_id), best | {"epochs_trained": done["epochs_trained"]}


def attempts(*logs: Path) -> dict[str, list[tuple[str, int, Path]]]:
    """Each run's attempts started and pauses, in the order of the log lines' times (the
    logs of processes that ran at once interleave): ``("started", epoch, log)`` and
    ``("paused", epoch, log)``."""
    found: dict[str, list[tuple[datetime, str, int, Path]]] = {}
    pattern = re.compile(r"run (run_\w+) (?:attempt \d+ )?(started|paused) at epoch (\d+)")
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                match = pattern.search(record.get("message", ""))
                if match:
                    when = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
                    found.setdefault(match[1], []).append(
                        (when, match[2], int(match[3]), log))
    return {run: [(kind, epoch, log) for _, kind, epoch, log in sorted(events,
                                                                       key=lambda e: e[0])]
            for run, events in found.items()}


def computed(client: httpx.Client, run_id: str) -> list[tuple]:
    """What a run's history rows computed (not when, nor where in the model's history)."""
    rows = client.get(f"/v1/runs/{run_id}/history").json()["items"]
    return [(r["epoch"], r["loss"], r["metrics"], r["params"]) for r in rows]


def never_trained_twice(trials: list[dict], *logs: Path, killed: Path | None = None) -> None:
    """No trial's run trained an epoch twice past a rung: each attempt starts at or after
    the last rung it paused at, and a trial pauses at each rung it reached, once.

    A process killed with SIGKILL (its log ``killed``) may have committed a pause and died
    before it logged it: an attempt of the killed process whose last word is that it started
    at epoch ``e``, followed by no pause at the next rung ``r`` but by an attempt started at
    ``r`` (or by nothing, the trial having ended at ``r``), paused at ``r`` unlogged."""
    seen = attempts(*logs)
    for trial in trials:
        logged = seen.get(trial["run_id"], [])
        reached = [r for r in RUNGS[:len(trial["rungs"])] if r < RUNGS[-1]]
        events = [(kind, epoch) for kind, epoch, _ in logged]
        last = max((i for i, (_, _, log) in enumerate(logged) if log == killed), default=None)
        if last is not None and events[last][0] == "started":
            rung = next((r for r in RUNGS if r > events[last][1]), None)
            after = events[last + 1:]
            if rung in reached and ("paused", rung) not in after and (
                    after[:1] == [("started", rung)] or (not after and trial["epochs"] == rung)):
                events.insert(last + 1, ("paused", rung))
        assert events and events[0] == ("started", 0), (trial, events)
        paused = [epoch for kind, epoch in events if kind == "paused"]
        assert paused == reached, (trial, events)
        floor = 0
        for kind, epoch in events:
            if kind == "paused":
                floor = epoch
            else:
                assert epoch >= floor, (trial, events)


def test_asha_pauses_promotes_from_checkpoints_and_prunes(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        answer = client.post("/v1/studies", json=asha(dataset_id))
        assert answer.status_code == 201, answer.text
        study = answer.json()
        assert study["rungs"] == RUNGS and study["trials_per_batch"] == 9
        assert study["max_trials"] == 9
        done = finish(client, study["id"])
        assert done["status"] == "completed", done
        assert done["counts"] == {"queued": 0, "running": 0, "paused": 0, "pruned": 8,
                                  "completed": 1, "failed": 0}
        trials = client.get(f"/v1/studies/{study['id']}/trials").json()["items"]
        # Successive halving's accounting: 9 trials to 1 epoch, 3 of them on to 3, 1 to 9.
        assert sorted(t["epochs"] for t in trials) == [1] * 6 + [3] * 2 + [9]
        assert done["epochs_trained"] == sum(t["epochs"] for t in trials) == 6 + 6 + 9
        for trial in trials:
            assert len(trial["rungs"]) == RUNGS.index(trial["epochs"]) + 1
            assert trial["objective"] == trial["rungs"][-1]
        # Each rung keeps the best third of those that reached it (ties to the lower number).
        first = sorted(trials, key=lambda t: (t["rungs"][0], t["number"]))
        assert sorted(t["number"] for t in trials if t["epochs"] >= 3) == sorted(
            t["number"] for t in first[:3])
        second = sorted((t for t in trials if t["epochs"] >= 3),
                        key=lambda t: (t["rungs"][1], t["number"]))
        winner = second[0]
        assert winner["epochs"] == 9 and winner["status"] == "completed"
        assert done["best"]["number"] == winner["number"]
        assert done["best"]["objective"] == winner["objective"]
        # A pruned trial's run succeeded after the epochs it trained, with one row for each.
        for trial in trials:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert run["status"] == "succeeded", run
            assert run["epochs_completed"] == trial["epochs"]
            history = client.get(f"/v1/runs/{trial['run_id']}/history").json()["items"]
            assert [row["epoch"] for row in history] == list(range(trial["epochs"]))
            model = client.get(f"/v1/models/{trial['model_id']}").json()
            assert model["status"] != "training"
        never_trained_twice(trials, server.log)
        lines = client.get(f"/v1/studies/{study['id']}/events",
                           headers={"Accept": "application/jsonl"})
        kinds = [json.loads(line)["type"] for line in lines.text.splitlines()]
        assert kinds.count("trial.paused") == 9 + 3
        assert kinds.count("trial.promoted") == 3 + 1
        assert kinds.count("trial.pruned") == 8
        assert kinds.count("trial.completed") == 1
        # The promoted trial ends as one uninterrupted run of its model, options and initial
        # params for 9 epochs, bit for bit; its objective at each rung is the metric of that
        # run's model after the rung's epochs (its history row there).
        run = client.get(f"/v1/runs/{winner['run_id']}").json()
        model = client.get(f"/v1/models/{winner['model_id']}").json()
        body = {key: model[key] for key in ("kind", "features", "task", "classes", "hidden",
                                            "activation")}
        alone = client.post("/v1/models", json=body | {
            "initial": {"random_seed": model["random_seed"]}}).json()
        assert alone["params"] == run["initial"]["params"]
        options = {key: run[key] for key in ("epochs", "optimizer", "batch_size", "shuffle_seed",
                                             "dtype", "validation", "shuffle")}
        control = client.post(f"/v1/models/{alone['id']}/runs", json=options | {
            "dataset_id": dataset_id}, headers={"Prefer": "wait=120"}).json()
        assert control["status"] == "succeeded", control
        assert run["final"] == control["final"]
        rows = client.get(f"/v1/runs/{control['id']}/history").json()["items"]
        assert computed(client, winner["run_id"]) == computed(client, control["id"])
        assert winner["rungs"][:2] == [rows[1]["metrics"]["val_loss"],
                                       rows[3]["metrics"]["val_loss"]]
        assert winner["rungs"][2] == control["final"]["metrics"]["val_loss"]


@pytest.mark.parametrize("kind", ["asha", "tpe"])
def test_concurrency_changes_nothing_but_time_asha_and_tpe(server: LiveServer,
                                                           kind: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        results = []
        for concurrency in (1, 4):
            study = client.post("/v1/studies", json=STUDIES[kind](
                dataset_id, concurrency=concurrency)).json()
            results.append(outcome(client, study["id"]))
        assert results[0] == results[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[dict], dict]]:
    """Each study's outcome on SQLite with the local executor, one trial at a time."""
    folder = tmp_path_factory.mktemp("reference")
    live = start_server(sqlite_url(folder), folder / "server.log", TAPELINE_WORKERS="1")
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            dataset_id = moons(client)
            return {kind: outcome(client, client.post("/v1/studies", json=make(
                dataset_id, concurrency=1)).json()["id"]) for kind, make in STUDIES.items()}
    finally:
        live.stop()


def processes(worker: LiveWorker) -> list[int]:
    """A worker's supervisor and its worker processes."""
    pid = worker.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def when_mid_study(client: httpx.Client, study_id: str) -> dict:
    """Wait until the study has trials paused or pruned and trials still to train."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        study = client.get(f"/v1/studies/{study_id}").json()
        counts = study["counts"]
        if counts["paused"] + counts["pruned"] >= 2 or counts["completed"] >= 2:
            assert study["status"] == "running", study
            return dict(study)
        time.sleep(0.05)
    raise AssertionError(f"study {study_id} never got going")


@pytest.mark.postgres
def test_queue_executor_and_a_killed_worker_change_nothing(
        postgres_base: str, tmp_path: Path,
        reference: dict[str, tuple[list[dict], dict]]) -> None:
    """Two ``tapeline worker`` processes on the queue give each study's reference outcome;
    so does the ASHA study when the worker training one of its trials is killed with
    SIGKILL (a replacement starts, as an orchestrator would start one)."""
    with fresh_schema(postgres_base) as url:
        live = start_server(url, tmp_path / "server.log", **QUEUE)
        workers = [start_worker(url, tmp_path / f"worker{i}.log", **QUEUE) for i in range(2)]
        try:
            with httpx.Client(base_url=live.url, timeout=30) as client:
                dataset_id = moons(client)
                for kind, make in STUDIES.items():
                    study = client.post("/v1/studies", json=make(dataset_id)).json()
                    assert outcome(client, study["id"]) == reference[kind], kind
                study = client.post("/v1/studies", json=asha(dataset_id)).json()
                when_mid_study(client, study["id"])
                victim = workers[0]
                for pid in processes(victim):
                    os.kill(pid, signal.SIGKILL)
                victim.process.wait()
                workers.append(start_worker(url, tmp_path / "worker2.log", **QUEUE))
                assert outcome(client, study["id"]) == reference["asha"]
                trials = client.get(f"/v1/studies/{study['id']}/trials").json()["items"]
                never_trained_twice(trials, *(tmp_path / f"worker{i}.log" for i in range(3)),
                                    killed=tmp_path / "worker0.log")
        finally:
            for worker in workers:
                worker.stop()
            live.stop()


@pytest.mark.parametrize("kind", ["asha", "tpe"])
def test_a_server_killed_mid_study_ends_it_the_same(
        tmp_path: Path, kind: str, reference: dict[str, tuple[list[dict], dict]]) -> None:
    """The local executor on SQLite (TAPELINE_ON_INTERRUPTED at its default, ``fail``): a
    server killed with SIGKILL in the middle of a study and started again finishes it with
    the reference's trial table and best trial, no epoch trained twice past a rung."""
    url = sqlite_url(tmp_path)
    first = start_server(url, tmp_path / "a.log", TAPELINE_WORKERS="2")
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            dataset_id = moons(client)
            study = client.post("/v1/studies", json=STUDIES[kind](dataset_id)).json()
            when_mid_study(client, study["id"])
    finally:
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    second = start_server(url, tmp_path / "b.log", TAPELINE_WORKERS="2")
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            assert outcome(client, study["id"]) == reference[kind]
            trials = client.get(f"/v1/studies/{study['id']}/trials").json()["items"]
    finally:
        second.stop()
    assert "started at epoch" in (tmp_path / "b.log").read_text()  # it went on after
    if kind == "asha":
        never_trained_twice(trials, tmp_path / "a.log", tmp_path / "b.log",
                            killed=tmp_path / "a.log")
