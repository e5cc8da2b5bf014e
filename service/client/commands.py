"""The client's subcommands: train a model (on a file or a stored dataset) and follow its run,
watch a run, cancel, pause or resume one, export a model, predict for a file. Exit status 0
for a succeeded run, 1 for a failed, diverged or cancelled one, 2 for a refused request or bad
flags."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from service.client.flags import fraction, in_flags, positive, whole, widths
from service.client.follow import follow, interrupts_deferred
from service.client.http import DEFAULT_URL, Api, Problem
from service.client.runs import parse_tags

REFUSED = 2
ENDED = ("succeeded", "failed", "cancelled", "diverged")
CLASSIFIERS = ("logistic",)
# Flags that describe a new model (not a stored one), and their defaults.
MODEL_FLAGS = {"kind": "linear", "hidden": [16], "activation": "relu", "task": None,
               "classes": None, "seed": None}
MLP_FLAGS = ("hidden", "activation", "task")


class Usage(Exception):
    """Flags that do not go together: said before anything is sent."""


def _api(args: argparse.Namespace) -> Api:
    return Api(args.url or os.environ.get("TAPELINE_URL") or DEFAULT_URL,
               args.key or os.environ.get("TAPELINE_API_KEY"))


def _model_body(args: argparse.Namespace, dataset: dict[str, Any]) -> dict[str, Any]:
    kind = args.kind or MODEL_FLAGS["kind"]
    body: dict[str, Any] = {"kind": kind, "features": dataset["features"]}
    classes = args.classes or (len(dataset["classes"]) if dataset.get("classes") else None)
    if kind == "mlp":
        task = args.task or ("classification" if dataset.get("classes") else "regression")
        body |= {"hidden": args.hidden or MODEL_FLAGS["hidden"],
                 "activation": args.activation or MODEL_FLAGS["activation"], "task": task}
        if task == "classification" and classes:
            body["classes"] = classes
    elif kind in CLASSIFIERS and classes:
        body["classes"] = classes
    if args.seed is not None:
        body["initial"] = {"random_seed": args.seed}
    if args.name:
        body["name"] = args.name
    if args.tag:
        body["tags"] = parse_tags(args.tag)
    return body


def _run_body(args: argparse.Namespace, dataset_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"dataset_id": dataset_id, "epochs": args.epochs,
                            "optimizer": {"kind": args.optimizer, "learning_rate": args.lr},
                            "batch_size": args.batch_size}
    if args.validation:
        body["validation"] = {"fraction": args.validation}
    if args.loss:
        body["loss"] = args.loss
    if args.name:
        body["name"] = args.name
    if args.tag:
        body["tags"] = parse_tags(args.tag)
    return body


def _check_flags(args: argparse.Namespace) -> None:
    if (args.data is None) == (args.dataset is None):
        raise Usage("give DATA (a file to upload) or --dataset ID (a stored dataset)"
                    + (", not both" if args.data else ""))
    given = [name for name in MODEL_FLAGS if getattr(args, name) is not None]
    if args.model and given:
        raise Usage(f"--{given[0]} describes a new model; --model trains a stored one as it is")
    mlp_only = [name for name in MLP_FLAGS if getattr(args, name) is not None]
    if mlp_only and (args.kind or MODEL_FLAGS["kind"]) != "mlp":
        raise Usage(f"--{mlp_only[0]} applies to --kind mlp")


def _upload(api: Api, args: argparse.Namespace, dry_run: bool) -> dict[str, Any]:
    path = Path(args.data)
    with path.open("rb") as handle:
        return dict(api.json("POST", "/v1/datasets/upload",
                             params={"dry_run": "true"} if dry_run else None,
                             files={"file": (path.name, handle)},
                             data={"target": args.target, "target_type": args.target_type}))


def train(args: argparse.Namespace, console: Console) -> int:
    """Check everything with the server's dry runs, then upload DATA (or use --dataset),
    create the model (or use --model), start the run and follow it. A refused request leaves
    nothing behind: what this command made before the refusal is deleted again."""
    _check_flags(args)
    api = _api(args)
    # First the dry runs: the file parsed and the model checked, nothing stored.
    dataset = (api.json("GET", f"/v1/datasets/{args.dataset}") if args.dataset
               else _upload(api, args, dry_run=True))
    model = (api.json("GET", f"/v1/models/{args.model}") if args.model
             else api.json("POST", "/v1/models", params={"dry_run": "true"},
                           json=_model_body(args, dataset)))
    made: list[str] = []
    # On a terminal a Ctrl-C is taken between requests, never inside one: what exists is
    # then known. Before the run, what was made is deleted; after it, follow asks whether
    # to cancel the run.
    with interrupts_deferred(console) as pending:
        try:
            if args.data:
                dataset = _upload(api, args, dry_run=False)
                made.append(f"/v1/datasets/{dataset['id']}")
                console.print(f"dataset {dataset['id']}: {dataset['num_examples']} examples, "
                              f"{dataset['features']} feature(s)")
            if pending:
                raise KeyboardInterrupt
            if not args.model:
                model = api.json("POST", "/v1/models", json=_model_body(args, dataset))
                made.append(f"/v1/models/{model['id']}")
                console.print(f"model {model['id']}: {model['kind']}, "
                              f"{model['param_count']} params")
            if pending:
                raise KeyboardInterrupt
            run = api.json("POST", f"/v1/models/{model['id']}/runs",
                           json=_run_body(args, dataset["id"]))
        except (Problem, KeyboardInterrupt) as error:
            _undo(api, made, error)
            raise
        return follow(api, run["id"], console, pending)


def _undo(api: Api, made: list[str], error: BaseException) -> None:
    """Delete what a refused or interrupted train made (the model before its dataset), and
    say on ``error`` what was kept."""
    kept = []
    for path in reversed(made):
        try:
            api.request("DELETE", path)
        except Problem:
            kept.append(path)
    if made and not kept:
        error.add_note("nothing was kept: the dataset and model made for this run were "
                       "deleted")
    elif kept:
        error.add_note(f"kept (could not be deleted): {', '.join(kept)}")


def watch(args: argparse.Namespace, console: Console) -> int:
    """Follow any run."""
    return follow(_api(args), args.run_id, console)


def cancel(args: argparse.Namespace, console: Console) -> int:
    """Ask a run to stop: a queued run is cancelled at once, a running one at its next epoch."""
    api = _api(args)
    run = api.json("GET", f"/v1/runs/{args.run_id}")
    if run["status"] in ENDED:
        console.print(f"run {run['id']} had already ended: {run['status']}")
        return 0
    run = api.json("POST", f"/v1/runs/{args.run_id}/cancel")
    status = run["status"]
    if status == "cancelling":
        console.print(f"run {run['id']} is cancelling: it stops at the end of its current "
                      f"epoch ({run['epochs_completed']} of {run['epochs']} done)")
    elif status == "cancelled":
        console.print(f"run {run['id']} cancelled after {run['epochs_completed']} of "
                      f"{run['epochs']} epochs")
    else:
        console.print(f"run {run['id']} had already ended: {status}")
    return 0


def pause(args: argparse.Namespace, console: Console) -> int:
    """Ask a run to pause: a queued run pauses at once, a running one at the end of its
    current epoch (with a checkpoint); a paused run stays paused."""
    run = _api(args).json("POST", f"/v1/runs/{args.run_id}/pause")
    done = f"{run['epochs_completed']} of {run['epochs']} epochs"
    if run["status"] == "paused":
        console.print(f"run {run['id']} is paused after {done}; resume it with "
                      f"`tapeline resume {run['id']}`")
    else:
        console.print(f"run {run['id']} pauses at the end of its current epoch ({done} done)")
    return 0


def resume(args: argparse.Namespace, console: Console) -> int:
    """Queue a paused run again: it continues from its checkpoint."""
    run = _api(args).json("POST", f"/v1/runs/{args.run_id}/resume")
    console.print(f"run {run['id']} resumed: {run['status']}, from epoch "
                  f"{run['epochs_completed']} of {run['epochs']} (`tapeline watch {run['id']}` "
                  f"follows it)")
    return 0


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
        raise Usage("predict reads and writes .csv or .npy files")
    with source.open("rb") as handle:
        answer = _api(args).request(
            "POST", f"/v1/models/{args.model_id}/predict", content=handle.read(),
            headers={"Content-Type": MEDIA[source.suffix], "Accept": MEDIA[output.suffix]})
    output.write_bytes(answer.content)
    console.print(f"wrote {output}")
    return 0


def add_commands(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """The client's subcommands, added to the ``tapeline`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the server (default: TAPELINE_URL, else {DEFAULT_URL})")
    common.add_argument("--key", help="API key, when the server requires keys (default: "
                        "TAPELINE_API_KEY)")

    def add(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(  # type: ignore[no-any-return]
            name, parents=[common], help=summary, description=description,
            formatter_class=formatter)

    p = add("train", "train a model on a file or a stored dataset and follow the run",
            "Upload DATA (or use a stored dataset), create a model (or use a stored one), "
            "start a run and follow it with a live progress bar, then print the final "
            "metrics. Everything is checked first with the server's dry runs: a refused "
            "train stores nothing. Ctrl-C asks whether to cancel the run.")
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="a .csv with a header row, .npy (last column is y) or .npz to upload")
    source = p.add_argument_group("stored data and models")
    source.add_argument("--dataset", metavar="ID", help="train on this stored dataset instead "
                        "of uploading DATA")
    source.add_argument("--model", metavar="ID", help="train this stored model further "
                        "(from its current parameters) instead of creating one")
    data = p.add_argument_group("the data")
    data.add_argument("--target", default="y", help="the column (or .npz array) of y")
    data.add_argument("--target-type", choices=["auto", "numeric", "categorical"],
                      default="auto", help="how y is read: auto (class names only when no "
                      "value is a number), numeric, or categorical (class names)")
    model = p.add_argument_group("a new model")
    model.add_argument("--kind", choices=["linear", "logistic", "mlp"],
                       help="the kind of model (default: linear)")
    model.add_argument("--hidden", type=widths, metavar="WIDTHS",
                       help="MLP layer widths, e.g. 16,16 (default: 16)")
    model.add_argument("--activation", choices=["relu", "tanh", "sigmoid"],
                       help="MLP activation (default: relu)")
    model.add_argument("--task", choices=["regression", "classification"],
                       help="what an MLP learns (default: classification when y holds class "
                       "names, else regression)")
    model.add_argument("--classes", type=whole(2), metavar="N",
                       help="classes (default: the dataset's class names, else 2)")
    model.add_argument("--seed", type=int, help="random seed of the initial parameters "
                       "(default: random)")
    run = p.add_argument_group("the run")
    run.add_argument("--epochs", type=whole(1), default=10, metavar="N", help="epochs")
    run.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd",
                     help="the optimizer")
    run.add_argument("--lr", type=positive, default=0.1, metavar="RATE",
                     help="learning rate")
    run.add_argument("--batch-size", type=whole(1), metavar="N",
                     help="mini-batch size (default: the full batch)")
    run.add_argument("--validation", type=fraction, metavar="FRACTION",
                     help="validate on this fraction of the rows, e.g. 0.2 (default: none)")
    run.add_argument("--loss", help="the loss: mse, mae, huber or cross_entropy "
                     "(default: the model's task decides)")
    run.add_argument("--name", help="the name of the run (and of the model it creates)")
    run.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                     help="a tag of the run (and of the model it creates); repeat for more")
    p.set_defaults(func=_run(train))

    p = add("watch", "follow a run's progress", "Follow a run live (or replay a finished "
            "one) with a progress bar, then print its final metrics.")
    p.add_argument("run_id", metavar="RUN_ID", help="the run, e.g. run_0123…")
    p.set_defaults(func=_run(watch))

    p = add("cancel", "cancel a run", "Ask a run to stop: a queued run is cancelled at "
            "once, a running one at the end of its current epoch (its history is kept).")
    p.add_argument("run_id", metavar="RUN_ID", help="the run to cancel")
    p.set_defaults(func=_run(cancel))

    p = add("pause", "pause a run", "Ask a run to pause: a queued run pauses at once, a "
            "running one at the end of its current epoch, with a checkpoint of its params, "
            "optimizer state and random stream. It holds no worker until resumed.")
    p.add_argument("run_id", metavar="RUN_ID", help="the run to pause")
    p.set_defaults(func=_run(pause))

    p = add("resume", "resume a paused run", "Queue a paused run again: it continues from "
            "its checkpoint exactly as if it had never paused.")
    p.add_argument("run_id", metavar="RUN_ID", help="the paused run to resume")
    p.set_defaults(func=_run(resume))

    p = add("export", "download a model file", "Write a model as an ONNX, safetensors or "
            "JSON file.")
    p.add_argument("model_id", metavar="MODEL_ID", help="the model, e.g. mdl_0123…")
    p.add_argument("--format", choices=["onnx", "safetensors", "json"], default="onnx",
                   help="the file's format")
    p.add_argument("-o", "--output", help="file to write (default: MODEL_ID.FORMAT)")
    p.set_defaults(func=_run(export))

    p = add("predict", "predict for a .csv or .npy file, writing .csv or .npy",
            "Send a file of inputs (a .csv with a header row, features in order, or an .npy "
            "array) to a model and write its predictions.")
    p.add_argument("model_id", metavar="MODEL_ID", help="the model")
    p.add_argument("data", metavar="DATA", help="the inputs: .csv or .npy")
    p.add_argument("-o", "--output",
                   help="file to write, .csv or .npy (default: DATA.predictions.csv or .npy)")
    p.set_defaults(func=_run(predict))


def _run(command: Callable[[argparse.Namespace, Console], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        console = Console(stderr=False)
        try:
            return int(command(args, console))
        except Usage as usage:
            print(f"tapeline {args.command}: error: {usage}", file=sys.stderr)
        except Problem as problem:
            lines = in_flags(problem, getattr(args, "data", None)).splitlines()
            for line in [*lines, *getattr(problem, "__notes__", ())]:
                print(f"tapeline: {line}", file=sys.stderr)
        except OSError as error:
            print(f"tapeline: {error}", file=sys.stderr)
        except KeyboardInterrupt as interrupt:
            for note in getattr(interrupt, "__notes__", ()):
                print(f"tapeline: {note}", file=sys.stderr)
            return 130
        return REFUSED

    return run
