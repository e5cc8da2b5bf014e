"""The client's experiment commands: ``tapeline runs list`` (searched with the filter
language, sorted, with chosen columns; ``--json`` for scripts), ``tapeline runs compare
ID...`` (runs of any models side by side: what differs, or every field) and ``tapeline tag
RESOURCE_ID key=value ...`` (a dataset's, model's or run's tags, by JSON Merge Patch)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from service.client.http import Api, Problem, connection_options

REFUSED = 2
DEFAULT_COLUMNS = "params.optimizer.kind,params.optimizer.learning_rate,metrics.loss"
# The resource an id names, by its prefix.
KINDS = {"ds": "datasets", "mdl": "models", "run": "runs"}


def _at(value: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def field_value(field: str, run: dict[str, Any], model: dict[str, Any] | None) -> Any:
    """A run's field by its search name, from the API's Run (and its model for ``model.*``)."""
    head, _, rest = field.partition(".")
    path = rest.split(".") if rest else []
    if head in ("params", "run"):
        return _at(run, path)
    if head == "metrics":
        final = run.get("final") or {}
        return final.get("loss") if rest == "loss" else _at(final.get("metrics"), path)
    if head == "tags":
        return (run.get("tags") or {}).get(rest)
    if head == "model":
        return run["model_id"] if rest == "id" else _at(model, path)
    if head == "dataset" and rest == "id":
        return run["dataset_id"]
    return run.get(field)


def shown(value: Any) -> str:
    """A value as a table cell: numbers to 6 significant digits, lists as JSON."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _label(run: dict[str, Any]) -> str:
    return run.get("name") or run["id"]


def runs_list(args: argparse.Namespace, console: Console) -> int:
    """A page of runs as a table (or JSON)."""
    api = Api(args.url, args.key)
    params = {"limit": args.limit, "filter": args.filter, "sort": args.sort,
              "order": None if args.sort else "newest"}
    page = api.json("GET", "/v1/runs", params={k: v for k, v in params.items() if v})
    runs = page["items"]
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    models: dict[str, Any] = {}
    if any(c.startswith("model.") and c != "model.id" for c in columns):
        for model_id in {run["model_id"] for run in runs}:
            models[model_id] = api.json("GET", f"/v1/models/{model_id}")
    table = Table()
    for heading in ("run", "id", "status", "epochs", *columns):
        table.add_column(heading, justify="right" if heading in columns else "left")
    for run in runs:
        table.add_row(run.get("name") or "", run["id"], run["status"],
                      f"{run['epochs_completed']}/{run['epochs']}",
                      *(shown(field_value(c, run, models.get(run["model_id"])))
                        for c in columns))
    console.print(table)
    more = " (more: narrow the filter or raise --limit)" if page["next_cursor"] else ""
    console.print(f"{len(runs)} runs{more}")
    return 0


def runs_compare(args: argparse.Namespace, console: Console) -> int:
    """Runs side by side: the fields that differ (``--all``: every field)."""
    api = Api(args.url, args.key)
    found = api.json("GET", "/v1/runs/compare", params={
        "ids": ",".join(args.run_ids), "only_diff": "false" if args.all else "true"})
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    table = Table()
    table.add_column("field")
    for run in found["runs"]:
        table.add_column(_label(run), justify="right")
    for field in found["fields"]:
        marker = "" if field in found["differing"] else " (same)"
        table.add_row(field + marker, *(shown(run["values"].get(field)) for run in found["runs"]))
    console.print(table)
    console.print(f"{len(found['differing'])} fields differ across {len(found['runs'])} runs")
    return 0


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """``key=value`` arguments as tags; :class:`Problem` for one without ``=``."""
    tags = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise Problem(f"expected key=value, not {pair!r}")
        tags[key] = value
    return tags


def tag(args: argparse.Namespace, console: Console) -> int:
    """Set (``key=value``) and remove (``--remove key``) tags of a dataset, model or run."""
    kind = KINDS.get(args.resource_id.split("_", 1)[0])
    if kind is None:
        raise Problem(f"{args.resource_id!r} is not a dataset (ds_), model (mdl_) or run (run_) "
                      "id")
    changes: dict[str, str | None] = {**parse_tags(args.tags),
                                      **dict.fromkeys(args.remove or [])}
    if not changes:
        raise Problem("nothing to change: give key=value or --remove KEY")
    answer = Api(args.url, args.key).json(
        "PATCH", f"/v1/{kind}/{args.resource_id}", content=json.dumps({"tags": changes}),
        headers={"Content-Type": "application/merge-patch+json"})
    tags = answer["tags"]
    console.print(f"{args.resource_id}: " + (", ".join(f"{k}={v}" for k, v in tags.items())
                                             or "no tags"))
    return 0


def _guarded(command: Callable[[argparse.Namespace, Console], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args, Console())
        except Problem as problem:
            print(f"tapeline: {problem}", file=sys.stderr)
            return REFUSED

    return run


def add_commands(commands: Any,
                 formatter: type[argparse.HelpFormatter] = argparse.HelpFormatter) -> None:
    """``runs list``, ``runs compare`` and ``tag``, added to the ``tapeline`` parser (with
    ``formatter`` for their help)."""
    common = connection_options()
    runs = commands.add_parser("runs", help="list, search and compare runs",
                               formatter_class=formatter)
    below = runs.add_subparsers(dest="runs_command", required=True)
    listing = below.add_parser("list", parents=[common], help="runs as a table, searched and "
                               "sorted", formatter_class=formatter)
    listing.add_argument("--filter", help="e.g. \"metrics.val_loss < 0.5 AND "
                         "params.optimizer.kind = 'adam'\"")
    listing.add_argument("--sort", help="fields, - for descending: --sort=-metrics.accuracy,name")
    listing.add_argument("--columns", default=DEFAULT_COLUMNS,
                         help=f"fields to show (default: {DEFAULT_COLUMNS})")
    listing.add_argument("--limit", type=int, default=50, help="runs to show (default: 50)")
    listing.add_argument("--json", action="store_true", help="the runs as JSON")
    listing.set_defaults(func=_guarded(runs_list))
    compare = below.add_parser("compare", parents=[common], help="runs side by side, from any "
                               "models", formatter_class=formatter)
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two or more run ids")
    compare.add_argument("--all", action="store_true", help="every field, not only those "
                         "that differ")
    compare.add_argument("--json", action="store_true", help="the comparison as JSON")
    compare.set_defaults(func=_guarded(runs_compare))
    tagging = commands.add_parser("tag", parents=[common], help="set or remove tags of a "
                                  "dataset, model or run", formatter_class=formatter)
    tagging.add_argument("resource_id", metavar="ID", help="a dataset, model or run id")
    tagging.add_argument("tags", nargs="*", metavar="key=value", help="tags to set")
    tagging.add_argument("--remove", action="append", metavar="KEY", help="a tag to remove")
    tagging.set_defaults(func=_guarded(tag))
