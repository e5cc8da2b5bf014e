"""Wake-ups for readers waiting on a run: a version counter per run, bumped on news."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

# Runs whose version is remembered; readers of a forgotten run fall back to polling the store.
REMEMBERED_RUNS = 4096


class Progress:
    """Lets coroutines wait until a run has news; the store holds the news itself."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._versions: OrderedDict[str, int] = OrderedDict()
        # What the run's latest news said: True (it ended), False (it goes on), None (not said).
        self._ended: dict[str, bool | None] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.closed = False
        # True while news from other processes is pushed here (PostgreSQL LISTEN): readers
        # then need not look at the store without news.
        self.pushed = False
        self._listeners: list[Callable[[str, bool | None, bool], None]] = []

    def listen(self, listener: Callable[[str, bool | None, bool], None]) -> None:
        """Also tell ``listener`` of every run's news, on the loop: the run, what the news said
        of its end, and whether it is the first news of the run here (its start, usually)."""
        self._listeners.append(listener)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop that readers wait on."""
        self._loop = loop

    def version(self, run_id: str) -> int:
        """A number that changes whenever the run has news; read it before querying the store."""
        return self._versions.get(run_id, 0)

    def ended(self, run_id: str) -> bool | None:
        """What the run's latest news said: that the run ended (True), that it goes on (False),
        or nothing either way (None: read the store to know)."""
        return self._ended.get(run_id)

    def notify_threadsafe(self, run_id: str, ended: bool | None = None) -> None:
        """Announce news of a run from any thread; ``ended`` says whether the run is over, when
        the announcer knows."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify, run_id, ended)

    def notify_all_threadsafe(self) -> None:
        """Announce news of every run with readers (news may have been missed)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify_all)

    def _notify_all(self) -> None:
        for run_id in list(self._waiters):
            self._notify(run_id)

    def close_threadsafe(self) -> None:
        """The service is stopping: wake every waiter now and let none wait from here on."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        self.closed = True
        for run_id in list(self._waiters):
            for waiter in self._waiters.pop(run_id):
                if not waiter.done():
                    waiter.set_result(None)

    def _notify(self, run_id: str, ended: bool | None = None) -> None:
        self._versions[run_id] = self._versions.get(run_id, 0) + 1
        self._versions.move_to_end(run_id)
        self._ended[run_id] = ended
        if len(self._versions) > REMEMBERED_RUNS:
            forgotten, _ = self._versions.popitem(last=False)
            self._ended.pop(forgotten, None)
        for waiter in self._waiters.pop(run_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        for listener in self._listeners:
            listener(run_id, ended, self._versions[run_id] == 1)

    async def wait(self, run_id: str, seen: int, timeout: float) -> None:
        """Return when the run's version differs from ``seen``, or after ``timeout`` seconds."""
        if self.closed or self.version(run_id) != seen or timeout <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[run_id]
