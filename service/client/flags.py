"""The client's flags: their values checked when they are parsed (before anything is sent),
and a server's field problems said in the flags the user typed (``--lr: ...``, not
``body.optimizer.learning_rate: ...``)."""

from __future__ import annotations

import argparse
from typing import Any

from service.client.http import Problem

# Where a request's field comes from on the command line, by its location in the request.
FLAGS: dict[tuple[str, ...], str] = {
    ("target",): "--target",
    ("body", "target"): "--target",
    ("body", "target_type"): "--target-type",
    ("body", "kind"): "--kind",
    ("body", "hidden"): "--hidden",
    ("body", "activation"): "--activation",
    ("body", "task"): "--task",
    ("body", "classes"): "--classes",
    ("body", "initial"): "--seed",
    ("body", "name"): "--name",
    ("body", "epochs"): "--epochs",
    ("body", "optimizer", "learning_rate"): "--lr",
    ("body", "optimizer"): "--optimizer",
    ("body", "batch_size"): "--batch-size",
    ("body", "validation"): "--validation",
    ("body", "loss"): "--loss",
    ("body", "dataset_id"): "--dataset",
}


def whole(least: int) -> Any:
    """An argparse type: a whole number, at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {least}, "
                                             f"got {text!r}")
        return value
    return parse


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (e.g. 0.2), "
                                         f"got {text!r}")
    return value


def widths(text: str) -> list[int]:
    """An argparse type: hidden layer widths, e.g. ``16,16``."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected layer widths such as 16 or 16,16 (whole "
                                         f"numbers of at least 1), got {text!r}")
    return [int(p) for p in parts]


# The server's advice, in flags.
ADVICE = {"target_type=": "--target-type "}


def _where(loc: list[Any], data: str | None) -> str:
    """A location as the user knows it: a flag, or the file's line and column."""
    parts = tuple(str(p) for p in loc)
    if parts[:2] == ("body", "dataset_id") and data:
        return data  # the file uploaded for this run
    if parts[:1] == ("file",):
        place = [data or "the file", *(p if p.startswith("line ") else f"column {p}"
                                       for p in parts[1:])]
        return ", ".join(place)
    for size in range(len(parts), 0, -1):
        if parts[:size] in FLAGS:
            return FLAGS[parts[:size]]
    return ".".join(parts)


def in_flags(problem: Problem, data: str | None = None) -> str:
    """A refusal in the terms of the command line: each field problem under the flag (or the
    line of the file) it comes from; the problem's detail when it names no field."""
    if not problem.errors:
        return str(problem)
    lines: list[str] = []
    for error in problem.errors:
        line = f"{_where(error.get('loc') or [], data)}: {error.get('msg', 'invalid')}"
        for server, flag in ADVICE.items():
            line = line.replace(server, flag)
        if line not in lines:  # one line for each layer of --hidden at its limit
            lines.append(line)
    return "\n".join(lines)
