"""Cross-replica wake-ups: a thread LISTENs on PostgreSQL for the runs whose news a process
(of any replica or machine) committed, and wakes this process's readers of them (an API
replica's feeds; a queue worker's attempt, told that its run's controls changed)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from service.jobs.progress import Progress
from service.store.lifecycle import CHANNEL

log = logging.getLogger("tapeline.jobs")

RECONNECT_SECONDS = 1.0


class Listener:
    """LISTEN ``tapeline_runs`` and tell ``on_news`` of every notification's run; tell
    ``on_listening`` when it starts listening (True: news may have been missed before) and
    when it stops (False)."""

    def __init__(self, conninfo: str, on_news: Callable[[str], None],
                 on_listening: Callable[[bool], None] = lambda listening: None) -> None:
        self._conninfo = conninfo
        self._on_news, self._on_listening = on_news, on_listening
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
                    self._on_listening(True)
                    self.ready.set()
                    while not self._stopping.is_set():
                        for note in connection.notifies(timeout=0.5):
                            self._on_news(note.payload)
            except Exception:
                self._on_listening(False)
                if not self._stopping.is_set():
                    log.warning("listening for run news failed; retrying", exc_info=True)
                    self._stopping.wait(RECONNECT_SECONDS)
        self._on_listening(False)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(2.0)


def progress_listener(conninfo: str, progress: Progress) -> Listener:
    """A listener that turns every notification into ``progress`` news. While it listens,
    ``progress.pushed`` is true and live feeds stop polling the store; each time it starts
    listening, every reader is woken once (news may have been missed while it was not)."""
    def listening(on: bool) -> None:
        progress.pushed = on
        if on:
            progress.notify_all_threadsafe()

    return Listener(conninfo, progress.notify_threadsafe, listening)
