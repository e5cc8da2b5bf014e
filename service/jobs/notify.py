"""Cross-replica wake-ups: a thread LISTENs on PostgreSQL for the runs whose news a worker
(of any replica or machine) committed, and wakes this process's readers of them."""

from __future__ import annotations

import logging
import threading

import psycopg

from service.jobs.progress import Progress
from service.store.lifecycle import CHANNEL

log = logging.getLogger("tapeline.jobs")

RECONNECT_SECONDS = 1.0


class Listener:
    """LISTEN ``tapeline_runs`` and turn every notification into ``progress`` news. While it
    listens, ``progress.pushed`` is true and live feeds stop polling the store."""

    def __init__(self, conninfo: str, progress: Progress) -> None:
        self._conninfo = conninfo
        self._progress = progress
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapeline-listen", daemon=True)

    def start(self, wait: float = 5.0) -> None:
        self._thread.start()
        self.ready.wait(wait)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._progress.pushed = True
                    self.ready.set()
                    # Whatever was announced while not listening: wake every reader once.
                    self._progress.notify_all_threadsafe()
                    while not self._stopping.is_set():
                        for note in connection.notifies(timeout=0.5):
                            self._progress.notify_threadsafe(note.payload)
            except Exception:
                self._progress.pushed = False
                if not self._stopping.is_set():
                    log.warning("listening for run news failed; retrying", exc_info=True)
                    self._stopping.wait(RECONNECT_SECONDS)
        self._progress.pushed = False

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(2.0)
