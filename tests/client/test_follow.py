"""The terminal client's Ctrl-C around its live bar: an interrupt that comes while the bar
starts or stops waits until that step is whole, then is raised."""

from __future__ import annotations

import io
import os
import signal

import pytest
from rich.console import Console
from rich.progress import Progress

from service.client.follow import _shielded


def test_a_ctrl_c_during_the_start_of_the_bar_comes_after_it(ours: None) -> None:
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    done = []

    def start() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered in the middle of the step
        progress.start()
        done.append("started")

    with pytest.raises(KeyboardInterrupt):
        _shielded(start)
    assert done == ["started"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    progress.stop()  # the bar is whole: it stops (a half-started one raised IndexError)
    progress.stop()


def test_without_a_ctrl_c_the_step_runs_and_nothing_is_raised(ours: None) -> None:
    done = []
    _shielded(lambda: done.append(1))
    assert done == [1] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_when_ctrl_c_is_not_ours_it_is_left_alone() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _shielded(lambda: os.kill(os.getpid(), signal.SIGINT))  # ignored, as before
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
