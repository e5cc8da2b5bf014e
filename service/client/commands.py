"""The client's subcommands: train a model on a CSV and follow its run, watch a run, export a
model, predict for a file. Exit status 0 for a succeeded run, 1 for a failed, diverged or
cancelled one, 2 for a refused request."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.prompt import Confirm
from rich.table import Table

from service.client.http import Api, Problem, connection_options
from service.client.runs import parse_tags

FAILED, REFUSED = 1, 2
CLASSIFIERS = ("logistic",)


def _api(args: argparse.Namespace) -> Api:
    return Api(args.url, args.key)


def _metric_text(row: dict[str, Any]) -> str:
    metrics = row.get("metrics") or {}
    shown = [f"loss {row['loss']:.6g}"]
    validation = [name for name in metrics if name.startswith("val_")]
    for name in (["val_loss"] if "val_loss" in validation else validation[:1]):
        shown.append(f"{name} {metrics[name]:.6g}")
    for name in ("accuracy", "rmse"):
        if name in metrics:
            shown.append(f"{name} {metrics[name]:.4g}")
            break
    return "  ".join(shown)


def follow(api: Api, run_id: str, console: Console) -> int:
    """Follow a run's epochs with a live progress bar until it ends; print its final metrics.
    Ctrl-C asks whether to cancel the run."""
    run = api.json("GET", f"/v1/runs/{run_id}")
    columns = (TextColumn("epoch"), MofNCompleteColumn(), BarColumn(bar_width=24),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
               TextColumn("{task.fields[metrics]}"))
    after: int | None = None
    last = ""
    console.print(f"run {run_id}: {run['epochs']} epochs")
    # Off a terminal (a pipe, a log) the bar is left out and the last epoch printed once.
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(run_id, total=run["epochs"], metrics="",
                                 completed=run["epochs_completed"])
        while True:
            try:
                for event in api.events(run_id, after):
                    if event["type"] == "end":
                        run = event
                        done = run["epochs_completed"]
                        progress.update(task, completed=done, total=max(run["epochs"], done))
                        break
                    after, last = event["epoch"], _metric_text(event)
                    progress.update(task, completed=event["epoch"] + 1, metrics=last)
                else:
                    continue  # the stream ended without an end event: follow it again
                break
            except KeyboardInterrupt:
                progress.stop()
                if Confirm.ask(f"Cancel run {run_id}?", console=console, default=False):
                    api.json("POST", f"/v1/runs/{run_id}/cancel")
                    console.print(f"asked run {run_id} to stop")
                progress.start()
    if not console.is_terminal and last:
        console.print(f"epoch {after + 1 if after is not None else 0}/{run['epochs']}  {last}")
    return _report(run, console)


def _report(run: dict[str, Any], console: Console) -> int:
    status = run["status"]
    if status != "succeeded":
        error = run.get("error") or {}
        where = f" at epoch {error['epoch']}" if error.get("epoch") is not None else ""
        console.print(f"[red]run {run['id']} {status}{where}[/red]"
                      f"{': ' + error['detail'] if error.get('detail') else ''}")
        return FAILED
    final = run.get("final") or {}
    console.print(f"[green]run {run['id']} succeeded after {run['epochs_completed']} "
                  f"epochs[/green]")
    table = Table()
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_row("loss", f"{final.get('loss', float('nan')):.6g}")
    for name, value in (final.get("metrics") or {}).items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    console.print(f"model {run['model_id']}")
    return 0


def _model_body(args: argparse.Namespace, dataset: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": args.kind, "features": dataset["features"]}
    classes = args.classes or (len(dataset["classes"]) if dataset.get("classes") else None)
    if args.kind == "mlp":
        body |= {"hidden": [int(w) for w in args.hidden.split(",")],
                 "activation": args.activation, "task": args.task}
        if args.task == "classification" and classes:
            body["classes"] = classes
    elif args.kind in CLASSIFIERS and classes:
        body["classes"] = classes
    if args.seed is not None:
        body["initial"] = {"random_seed": args.seed}
    if args.name:
        body["name"] = args.name
    if args.tag:
        body["tags"] = parse_tags(args.tag)
    return body


def train(args: argparse.Namespace, console: Console) -> int:
    """Upload DATA, create a model, start a run and follow it."""
    api = _api(args)
    path = Path(args.data)
    with path.open("rb") as handle:
        dataset = api.json("POST", "/v1/datasets/upload", files={"file": (path.name, handle)},
                           data={"target": args.target})
    console.print(f"dataset {dataset['id']}: {dataset['num_examples']} examples, "
                  f"{dataset['features']} feature(s)")
    model = api.json("POST", "/v1/models", json=_model_body(args, dataset))
    console.print(f"model {model['id']}: {model['kind']}, {model['param_count']} params")
    optimizer: dict[str, Any] = {"kind": args.optimizer, "learning_rate": args.lr}
    run_body: dict[str, Any] = {"dataset_id": dataset["id"], "epochs": args.epochs,
                                "optimizer": optimizer, "batch_size": args.batch_size}
    if args.validation:
        run_body["validation"] = {"fraction": args.validation}
    if args.loss:
        run_body["loss"] = args.loss
    if args.name:
        run_body["name"] = args.name
    if args.tag:
        run_body["tags"] = parse_tags(args.tag)
    run = api.json("POST", f"/v1/models/{model['id']}/runs", json=run_body)
    return follow(api, run["id"], console)


def watch(args: argparse.Namespace, console: Console) -> int:
    """Follow any run."""
    return follow(_api(args), args.run_id, console)


def export(args: argparse.Namespace, console: Console) -> int:
    """Write a model's file."""
    answer = _api(args).request("GET", f"/v1/models/{args.model_id}/export",
                                params={"format": args.format})
    output = Path(args.output or f"{args.model_id}.{args.format}")
    output.write_bytes(answer.content)
    console.print(f"wrote {output} ({len(answer.content)} bytes)")
    return 0


MEDIA = {".csv": "text/csv", ".npy": "application/octet-stream"}


def predict(args: argparse.Namespace, console: Console) -> int:
    """Predict for a CSV (header row, features in order) or .npy file; write CSV or .npy."""
    source = Path(args.data)
    output = Path(args.output or source.with_suffix(".predictions" + source.suffix))
    if source.suffix not in MEDIA or output.suffix not in MEDIA:
        raise Problem("predict reads and writes .csv or .npy files")
    with source.open("rb") as handle:
        answer = _api(args).request(
            "POST", f"/v1/models/{args.model_id}/predict", content=handle.read(),
            headers={"Content-Type": MEDIA[source.suffix], "Accept": MEDIA[output.suffix]})
    output.write_bytes(answer.content)
    console.print(f"wrote {output}")
    return 0


def add_commands(commands: Any) -> None:
    """The client's subcommands, added to the ``tapeline`` parser."""
    common = connection_options()

    p = commands.add_parser("train", parents=[common],
                            help="upload a CSV, train a model on it and follow the run")
    p.add_argument("data", help="a .csv with a header row (or .npy / .npz)")
    p.add_argument("--target", default="y", help="the column of y (default: y)")
    p.add_argument("--kind", choices=["linear", "logistic", "mlp"], default="linear")
    p.add_argument("--hidden", default="16", help="MLP layer widths, e.g. 16,16")
    p.add_argument("--activation", choices=["relu", "tanh", "sigmoid"], default="relu")
    p.add_argument("--task", choices=["regression", "classification"], default="regression")
    p.add_argument("--classes", type=int, help="classes (default: the dataset's names, or 2)")
    p.add_argument("--seed", type=int, help="random seed of the initial params")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--batch-size", type=int, help="mini-batch size (default: full batch)")
    p.add_argument("--validation", type=float, help="fraction of rows to validate on")
    p.add_argument("--loss", help="the loss (default: the model's task decides)")
    p.add_argument("--name", help="the name of the run and of its model")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="a tag of the run and its model (repeat for more)")
    p.set_defaults(func=_run(train))

    p = commands.add_parser("watch", parents=[common], help="follow a run's progress")
    p.add_argument("run_id")
    p.set_defaults(func=_run(watch))

    p = commands.add_parser("export", parents=[common], help="download a model file")
    p.add_argument("model_id")
    p.add_argument("--format", choices=["onnx", "safetensors", "json"], default="onnx")
    p.add_argument("-o", "--output", help="file to write (default: MODEL_ID.FORMAT)")
    p.set_defaults(func=_run(export))

    p = commands.add_parser("predict", parents=[common],
                            help="predict for a .csv or .npy file, writing .csv or .npy")
    p.add_argument("model_id")
    p.add_argument("data")
    p.add_argument("-o", "--output", help="file to write (.csv or .npy)")
    p.set_defaults(func=_run(predict))


def _run(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        console = Console(stderr=False)
        try:
            return int(command(args, console))
        except Problem as problem:
            print(f"tapeline: {problem}", file=sys.stderr)
            return REFUSED
        except OSError as error:
            print(f"tapeline: {error}", file=sys.stderr)
            return REFUSED
        except KeyboardInterrupt:
            return 130

    return run
