"""The heartbeat of a run's attempt: a thread that shows the store the attempt is alive while an
epoch takes long, and notices when the attempt lost the run to another worker."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from service.store import lifecycle

log = logging.getLogger("tapeline.jobs")


class Heartbeat:
    """Beats every ``every`` seconds from :meth:`start` to :meth:`stop` (a flush of history
    beats too); ``lost`` turns true when the store says the attempt no longer owns the run,
    ``status`` is the run's status at the last beat. A beat the store refuses for any other
    reason (it is away for a moment) is tried again at the next one."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str, attempt: int,
                 every: float) -> None:
        self.lost = False
        self.status: str | None = None
        self._sessions, self._run_id, self._attempt = sessions, run_id, attempt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(every,), daemon=True,
                                        name=f"heartbeat-{run_id}")

    def start(self) -> None:
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                with self._sessions.begin() as session:
                    self.status = lifecycle.heartbeat(session, self._run_id, self._attempt)
            except lifecycle.Fenced:
                self.lost = True
                return
            except Exception:  # the store is away for a moment: try again next beat
                log.warning("heartbeat of run %s failed", self._run_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
