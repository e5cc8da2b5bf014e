"""``tapeline study create SPEC | watch ID | best ID``: hyperparameter searches over HTTP.
``create`` posts a study's spec (a JSON file, ``-`` for standard input) and, like ``watch``,
shows a live table of its trials and the best so far, redrawn at each of the study's events,
until the study ends: exit status 0 when it completed, 1 when it was cancelled or failed.
``best`` prints the best trial and, with ``--export``, writes its model's file. Exit status 2
for a refused request, with the problem's words."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from service.client.http import Api, Problem, api_command, connection_options
from service.client.runs import shown

ENDED_BADLY = 1
REDRAW_SECONDS = 0.3  # at most this often, the table is fetched and drawn again
RECONNECTS = 5  # times the event stream is opened again after a dropped connection


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{n} {status}" for status, n in counts.items() if n]
    return ", ".join(shown) or "no trials yet"


def _trials(api: Api, study_id: str) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = api.json("GET", f"/v1/studies/{study_id}/trials", params=params)
        trials.extend(page["items"])
        if not page["next_cursor"]:
            return trials
        params["cursor"] = page["next_cursor"]


def view(study: dict[str, Any], trials: list[dict[str, Any]]) -> Group:
    """A study's state: its status line, a table of its trials (the best marked) and the
    best so far."""
    paths = list(study["space"])
    best = study.get("best")
    table = Table("trial", "status", "epochs", f"objective ({study['objective']['metric']})",
                  *paths, "run", title=f"study {study['id']}"
                  + (f" ({study['name']})" if study.get("name") else ""))
    for trial in trials:
        mark = " *" if best and trial["number"] == best["number"] else ""
        table.add_row(f"{trial['number']}{mark}", trial["status"], str(trial["epochs"]),
                      shown(trial["objective"]), *(shown(trial["params"].get(p)) for p in paths),
                      trial["run_id"] or "–")
    line = (f"{study['status']}: {_counts(study['counts'])}; "
            f"{study['epochs_trained']} epochs trained")
    best_line = ("best so far: none yet" if not best else
                 f"best so far: trial {best['number']}, {study['objective']['metric']} "
                 f"{best['objective']:.6g}, " + ", ".join(f"{p}={shown(v)}" for p, v in
                                                        best["params"].items()))
    return Group(Text(line), table, Text(best_line))


def _events(api: Api, study_id: str, after: int) -> Iterator[list[dict[str, Any]]]:
    """The study's events after ``after``, in batches as they arrive, until ``end``; the
    stream is opened again (from the last event seen) when a connection drops."""
    drops = 0
    while True:
        try:
            with api.http.stream("GET", f"/v1/studies/{study_id}/events",
                                 params={"after": after} if after else {},
                                 headers={"Accept": "application/jsonl"},
                                 timeout=httpx.Timeout(60.0, read=None)) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    api.raise_for(answer)
                for line in answer.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    after = event["seq"]
                    yield [event]
                    if event["type"] == "end":
                        return
            return  # the server closed an ended study's stream
        except httpx.HTTPError as error:
            drops += 1
            if drops > RECONNECTS:
                raise Problem(f"lost the stream of study {study_id}: {error}") from error
            time.sleep(min(0.25 * 2 ** drops, 5.0))


def follow(api: Api, study_id: str, console: Console) -> int:
    """Show the study's trials live until it ends; 0 when it completed."""
    study = api.json("GET", f"/v1/studies/{study_id}")
    with Live(view(study, _trials(api, study_id)), console=console,
              auto_refresh=False, transient=False) as live:
        if study["status"] == "running":
            shown = time.monotonic()
            for _ in _events(api, study_id, 0):
                if time.monotonic() - shown < REDRAW_SECONDS:
                    continue  # events come faster than a table is worth redrawing
                study = api.json("GET", f"/v1/studies/{study_id}")
                live.update(view(study, _trials(api, study_id)), refresh=True)
                shown = time.monotonic()
            study = api.json("GET", f"/v1/studies/{study_id}")
            live.update(view(study, _trials(api, study_id)), refresh=True)
    if study["status"] == "completed":
        return 0
    console.print(f"study {study_id} ended {study['status']}"
                  + (f": {study['error']}" if study.get("error") else ""))
    return ENDED_BADLY


def _create(api: Api, args: argparse.Namespace, console: Console) -> int:
    try:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
    except OSError as error:
        raise Problem(f"cannot read {args.spec}: {error.strerror}") from error
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise Problem(f"{args.spec} is not JSON: {error}") from error
    study = api.json("POST", "/v1/studies", json=spec)
    console.print(f"study {study['id']}: {study['max_trials']} trials, {study['sampler']['kind']}"
                  f" sampler, rungs {study['rungs']} (`tapeline study watch {study['id']}` "
                  f"follows it)")
    return follow(api, study["id"], console)


def _watch(api: Api, args: argparse.Namespace, console: Console) -> int:
    return follow(api, args.study_id, console)


def _best(api: Api, args: argparse.Namespace, console: Console) -> int:
    study = api.json("GET", f"/v1/studies/{args.study_id}")
    best = study.get("best")
    if not best:
        raise Problem(f"study {args.study_id} has no best trial yet ({study['status']}: "
                      f"{_counts(study['counts'])})")
    console.print(f"trial {best['number']}: {study['objective']['metric']} "
                  f"{best['objective']:.6g} ({study['objective']['goal']}); "
                  f"run {best['run_id']}, model {best['model_id']}")
    for path, value in best["params"].items():
        console.print(f"  {path} = {shown(value)}")
    if args.export:
        answer = api.request("GET", f"/v1/models/{best['model_id']}/export",
                             params={"format": args.export})
        output = Path(args.output or f"{best['model_id']}.{args.export}")
        output.write_bytes(answer.content)
        console.print(f"wrote {output} ({len(answer.content)} bytes)")
    return 0


def add_commands(commands: Any,
                 formatter: type[argparse.HelpFormatter] = argparse.HelpFormatter) -> None:
    """``tapeline study ...``, added to the ``tapeline`` parser (with ``formatter`` for their
    help)."""
    common = connection_options()
    study = commands.add_parser("study", help="hyperparameter searches: create, watch, best",
                                formatter_class=formatter)
    actions = study.add_subparsers(dest="study_command", required=True)
    p = actions.add_parser("create", parents=[common], formatter_class=formatter,
                           help="start a study from its spec and follow it; exit 0 when it "
                                "completes")
    p.add_argument("spec", metavar="SPEC", help="the study's spec, the body of POST "
                   "/v1/studies, as a JSON file (- for standard input)")
    p.set_defaults(func=api_command(_create))
    p = actions.add_parser("watch", parents=[common], formatter_class=formatter,
                           help="a live table of a study's trials and the best so far, until "
                                "it ends; exit 0 when it completed")
    p.add_argument("study_id", metavar="STUDY_ID", help="the study (st_...)")
    p.set_defaults(func=api_command(_watch))
    p = actions.add_parser("best", parents=[common], formatter_class=formatter,
                           help="the best trial: its objective, params, run and model; "
                                "--export writes the model's file")
    p.add_argument("study_id", metavar="STUDY_ID", help="the study (st_...)")
    p.add_argument("--export", choices=["onnx", "safetensors", "json"],
                   help="write the best model as this kind of file")
    p.add_argument("-o", "--output", help="file to write (default: MODEL_ID.FORMAT)")
    p.set_defaults(func=api_command(_best))
