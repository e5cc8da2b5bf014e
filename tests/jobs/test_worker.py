"""The supervisor of ``tapeline worker``: a child process that dies is replaced under the same
index, and a stop tells every child to drain and waits for them (stand-in children, no
database)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from typing import Any

import pytest

from service.jobs import worker
from service.jobs.worker import Supervisor


def test_the_supervisor_replaces_a_dead_child_and_stops_the_rest(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(worker, "RESTART_BACKOFF_SECONDS", 0.0)
    ctx = mp.get_context("spawn")
    spawned: list[tuple[int, Any]] = []

    def spawn(index: int) -> Any:
        # Child 1 exits at once the first time (a crash); every other one waits for SIGTERM.
        crash = index == 1 and not any(i == 1 for i, _ in spawned)
        process = ctx.Process(target=os._exit if crash else time.sleep,
                              args=(3,) if crash else (120,), daemon=True)
        process.start()
        spawned.append((index, process))
        return process

    with caplog.at_level(logging.INFO, logger="tapeline.worker"):
        supervisor = Supervisor(2, spawn)
        status: list[int] = []
        watching = threading.Thread(target=lambda: status.append(supervisor.watch()))
        watching.start()
        deadline = time.monotonic() + 30
        while len(spawned) < 3 or not spawned[2][1].is_alive():
            assert time.monotonic() < deadline, "the dead child was not replaced"
            time.sleep(0.05)
        assert [index for index, _ in spawned] == [0, 1, 1]
        assert spawned[1][1].exitcode == 3
        assert supervisor.processes == [spawned[0][1], spawned[2][1]]
        assert "worker process 1 exited (3); starting another" in caplog.text

        supervisor.stop(signal.SIGTERM, None)
        watching.join(30)
    assert status == [0] and not watching.is_alive()
    for _, process in (spawned[0], spawned[2]):
        assert process.exitcode == -signal.SIGTERM  # told to drain, not replaced
    assert len(spawned) == 3 and "worker stopped" in caplog.text
