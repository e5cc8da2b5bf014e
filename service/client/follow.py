"""Following a run in the terminal: a live progress bar (epochs, ETA, the latest epoch's loss
and metrics) until the run ends, then its final state, marked as final, and its final metrics.
While it follows a run on a terminal the client owns Ctrl-C: it asks whether to cancel the
run, however the process was started (a job started in the background of a script inherits
SIGINT ignored, and Python then installs no handler of its own)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.prompt import Confirm
from rich.table import Table

from service.client.http import Api

FAILED = 1


def metric_text(row: dict[str, Any]) -> str:
    """The loss, the validation loss (or first validation metric) and accuracy or RMSE."""
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


def final_text(run: dict[str, Any]) -> str:
    """The run's final state as the last point of its trajectory: after its last epoch."""
    final = run.get("final")
    return f"final  {metric_text(final)}" if final else ""


@contextlib.contextmanager
def _deferring() -> Iterator[list[int]]:
    """SIGINTs during the block are appended to the list yielded instead of raised; the
    previous handler is back after it."""
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pending.append(number))
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _shielded(step: Callable[[], object]) -> None:
    """Run ``step`` (starting or stopping the live bar) whole: a Ctrl-C that comes during it is
    raised as soon as it is done. Rich's live display pushes and pops a render hook; an
    interrupt between its halves would leave it half started (and its stop raising)."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        step()  # Ctrl-C is not ours here (off a terminal): nothing to defer
        return
    with _deferring() as pending:
        step()
    if pending:
        raise KeyboardInterrupt


def interrupts_deferred(console: Console) -> contextlib.AbstractContextManager[list[int]]:
    """A Ctrl-C during the block is remembered in the list yielded, not raised: a request that
    creates something is answered whole, and the caller then knows what exists and acts on
    the interrupt (:func:`follow` asks whether to cancel a run made so, on a terminal). Off
    a terminal, a SIGINT the process ignores stays ignored."""
    if not console.is_terminal and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return contextlib.nullcontext([])
    return _deferring()


class _Follower:
    """One run followed: where the stream is, what the bar shows; resumable after Ctrl-C."""

    def __init__(self, api: Api, run_id: str, console: Console) -> None:
        self.api, self.run_id, self.console = api, run_id, console
        self.run: dict[str, Any] | None = None
        self.after: int | None = None
        self.last = ""
        self.task: TaskID | None = None
        columns = (TextColumn("epoch"), MofNCompleteColumn(), BarColumn(bar_width=24),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   TextColumn("{task.fields[metrics]}"))
        # Off a terminal (a pipe, a log) the bar is left out and the last line printed once.
        self.progress = Progress(*columns, console=console, disable=not console.is_terminal)

    def load(self) -> dict[str, Any]:
        """The run as it was first read (read now, and its epochs said, the first time)."""
        if self.run is None:
            self.run = self.api.json("GET", f"/v1/runs/{self.run_id}")
            self.console.print(f"run {self.run_id}: {self.run['epochs']} epochs")
        return self.run

    def go(self) -> dict[str, Any]:
        """Follow the stream from where it was until the run's end event; the ended run."""
        run = self.load()
        _shielded(self.progress.start)
        if self.task is None:
            self.task = self.progress.add_task(self.run_id, total=run["epochs"], metrics="",
                                               completed=run["epochs_completed"])
        while True:
            for event in self.api.events(self.run_id, self.after):
                if event["type"] == "end":
                    done = event["epochs_completed"]
                    self.last = final_text(event) or self.last
                    self.progress.update(self.task, completed=done, metrics=self.last,
                                         total=max(event["epochs"], done))
                    return event
                if event["type"] == "paused":  # the stream stays open: epochs follow a resume
                    self.console.print(
                        f"run {self.run_id} paused after {event['epochs_completed']} epochs "
                        f"(tapeline resume {self.run_id})")
                    continue
                if event["type"] != "epoch":
                    continue  # an item type of a newer server
                self.after, self.last = event["epoch"], metric_text(event)
                self.progress.update(self.task, completed=event["epoch"] + 1, metrics=self.last)
            # the stream ended without an end event: follow it again from the last epoch

    def ask_to_cancel(self) -> None:
        """Ctrl-C: ask whether to cancel the run (a second Ctrl-C leaves the client)."""
        _shielded(self.progress.stop)
        if self.run is None:
            raise KeyboardInterrupt  # nothing followed yet: nothing to ask about
        if Confirm.ask(f"Cancel run {self.run_id}?", console=self.console, default=False):
            self.api.json("POST", f"/v1/runs/{self.run_id}/cancel")
            self.console.print(f"asked run {self.run_id} to stop")


def follow(api: Api, run_id: str, console: Console, pending: list[int] | None = None) -> int:
    """Follow a run's epochs with a live progress bar until it ends; print its final state
    and metrics. On a terminal, Ctrl-C asks whether to cancel the run; so does one that came
    while the run was being made (``pending``, from :func:`interrupts_deferred`)."""
    follower = _Follower(api, run_id, console)
    previous = signal.getsignal(signal.SIGINT)
    try:
        while True:
            try:
                if console.is_terminal:  # the first statement of the try: no window before it
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                if pending:  # a Ctrl-C while the run was made: ask now that it exists
                    pending.clear()
                    follower.load()
                    raise KeyboardInterrupt
                run = follower.go()
                break
            except KeyboardInterrupt:
                if not console.is_terminal:
                    raise
                follower.ask_to_cancel()
    finally:
        follower.progress.stop()
        signal.signal(signal.SIGINT, previous)
    epochs = run["epochs_completed"]
    if not console.is_terminal and follower.last:
        console.print(f"epoch {epochs}/{run['epochs']}  {follower.last}")
    return report(run, console)


def report(run: dict[str, Any], console: Console) -> int:
    """The run's outcome: its final metrics (0), or why it did not succeed (1)."""
    status = run["status"]
    if status != "succeeded":
        error = run.get("error") or {}
        where = f" at epoch {error['epoch']}" if error.get("epoch") is not None else ""
        console.print(f"[red]run {run['id']} {status}{where}[/red]"
                      f"{': ' + error['detail'] if error.get('detail') else ''}")
        return FAILED
    final = run.get("final") or {}
    stopped = run.get("stopped_early")
    early = (f", stopped early (best epoch {stopped['best_epoch']})" if stopped else "")
    console.print(f"[green]run {run['id']} succeeded after {run['epochs_completed']} "
                  f"epochs{early}[/green]")
    table = Table()
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_row("loss", f"{final.get('loss', float('nan')):.6g}")
    for name, value in (final.get("metrics") or {}).items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    console.print(f"model {run['model_id']}")
    return 0
