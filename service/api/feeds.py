"""Live feeds of runs: a run's epochs are read from the store once per process and fanned out,
already serialised, to every reader of that run in this process.

A feed begins where its first reader begins and keeps a window of recent items, bounded in
count and in bytes (the items of a large model's run are large). A reader
behind the window (it joined later from further back, or reads slowly) reads its gap from the
store itself, then follows the feed again. The feed reads the next page of a backlog only when
a reader has caught up with it, so a lone reader of a long history reads each page once. Items
are opaque JSON text: the feed knows nothing of what a history row holds.

A paused run's feed ends its epochs with a ``paused`` item, which each reader is sent once per
pause, and goes on: the run's epochs follow when it is resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.concurrency import run_in_threadpool

from service.jobs.progress import Progress
from service.store.repo import NotFound

log = logging.getLogger("tapeline.api")

# Items a feed keeps for readers slightly behind, and the most bytes of JSON they may hold
# (each item is also kept in the encodings read: up to three times this); older ones are read
# from the store.
WINDOW = 1024
WINDOW_BYTES = 8 << 20
# Epochs read from the store at a time, and the most bytes of JSON they may take (one epoch at
# least).
PAGE = 500
PAGE_BYTES = 4 << 20
# Even without a wake-up, look at the store this often (news from another process or replica)
# unless news is pushed (PostgreSQL LISTEN/NOTIFY wakes every replica). The tick also wakes
# its readers, so they need no timer of their own to send keep-alives.
POLL_SECONDS = 1.0
# With pushed news, look at the store without news only this often (a notification lost).
PUSHED_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Item:
    """One stream item as JSON text: an epoch's history row, the run in its final state, or
    the run paused (not an end: its epochs follow once it is resumed)."""

    kind: Literal["epoch", "end", "paused"]
    epoch: int | None
    json: str
    # The item as each stream encoding sends it, made by the first reader that needs it.
    _encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        """The item's bytes as the window counts them: its JSON text."""
        return len(self.json)

    def encoded(self, encoding: str, encode: Callable[[Item], bytes]) -> bytes:
        """The item's bytes in ``encoding``, encoded once for every reader of this process."""
        found = self._encoded.get(encoding)
        if found is None:
            found = self._encoded[encoding] = encode(self)
        return found


# read(run_id, after, limit): up to ``limit`` epoch items after epoch ``after`` (fewer when
# their bytes would pass PAGE_BYTES), and, when no epoch follows them, the end item if the run
# is final or the paused item if it is paused; and whether more epochs are stored after them;
# NotFound when the run is gone. It runs in a worker thread.
Read = Callable[[str, int, int], tuple[list[Item], Item | None, bool]]


class Feed:
    """The items of one run that this process has read, from epoch ``base + 1`` on."""

    def __init__(self, run_id: str, after: int) -> None:
        self.run_id = run_id
        self.base = after
        self.items: list[Item] = []
        self.epochs: list[int] = []
        self.bytes = 0  # of the items' JSON
        self.end: Item | None = None
        # The run's paused item while the last read found it paused after its last epoch.
        self.paused: Item | None = None
        self.done = False
        self.readers = 0
        # Tenants shown by a probe of the store to have this run (its owner).
        self.tenants: set[str] = set()
        self.caught_up = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        """The last epoch read from the store."""
        return self.epochs[-1] if self.epochs else self.base

    def after(self, epoch: int) -> list[Item] | None:
        """The items after ``epoch``; ``None`` when the window no longer reaches back there."""
        if epoch < self.base:
            return None
        return self.items[bisect_right(self.epochs, epoch) :]

    def publish(self, items: list[Item], tail: Item | None) -> None:
        """Add items read from the store (and the end, once read; or whether the run is
        paused after them) and wake every reader."""
        self.items.extend(items)
        self.epochs.extend(item.epoch for item in items if item.epoch is not None)
        self.bytes += sum(item.size for item in items)
        cut = max(0, len(self.items) - WINDOW)
        self.bytes -= sum(item.size for item in self.items[:cut])
        while cut < len(self.items) and self.bytes > WINDOW_BYTES:  # the oldest go first
            self.bytes -= self.items[cut].size
            cut += 1
        if cut:
            self.base = self.epochs[cut - 1]
            del self.items[:cut], self.epochs[:cut]
        if tail is not None and tail.kind == "end":
            self.end = tail
        paused = tail if tail is not None and tail.kind == "paused" else None
        if paused is None or self.paused is None or paused.json != self.paused.json:
            self.paused = paused
        self.notify()

    def notify(self) -> None:
        """Wake every reader waiting in :meth:`changed`."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        """Return at the next :meth:`notify` (the pump notifies at least every second)."""
        await self._changed.wait()


class Feeds:
    """The live feeds of this process, one per run that has readers."""

    def __init__(self, progress: Progress, read: Read) -> None:
        self._progress = progress
        self._read = read
        self._feeds: dict[str, Feed] = {}
        self._checks: dict[tuple[str, str], asyncio.Future[object]] = {}
        # The tenant whose probe of a run just passed, until its reader joins the run's feed.
        self._passed: dict[str, str] = {}

    async def check(self, tenant: str, run_id: str, probe: Callable[[], object]) -> None:
        """Run ``probe`` (a query bound to ``tenant`` that raises :class:`NotFound` unless the
        tenant has the run) once for every caller of that tenant asking meanwhile (a crowd
        connecting at once), in a worker thread. While the run has a feed here that still
        stands for a stored run, a tenant the probe has already shown to have it is let in
        without asking again; any other tenant is always asked (so that another tenant's id
        answers as slowly as an id that does not exist)."""
        feed = self._feeds.get(run_id)
        if feed is not None and tenant in feed.tenants and (not feed.done or feed.end):
            return
        key = (tenant, run_id)
        pending = self._checks.get(key)
        if pending is None:
            pending = asyncio.ensure_future(run_in_threadpool(probe))
            self._checks[key] = pending
            pending.add_done_callback(lambda _: self._checks.pop(key, None))
        await asyncio.shield(pending)
        self._passed[run_id] = tenant

    def _join(self, run_id: str, after: int) -> Feed:
        feed = self._feeds.get(run_id)
        if feed is None or (feed.done and feed.end is None):
            feed = self._feeds[run_id] = Feed(run_id, after)
            feed.task = asyncio.get_running_loop().create_task(self._pump(feed))
        passed = self._passed.pop(run_id, None)
        if passed is not None:
            feed.tenants.add(passed)
        feed.readers += 1
        return feed

    def _leave(self, feed: Feed) -> None:
        feed.readers -= 1
        if feed.readers == 0 and feed.done and self._feeds.get(feed.run_id) is feed:
            del self._feeds[feed.run_id]  # a finished run's feed lasts while it is read

    async def _pump(self, feed: Feed) -> None:
        """Read the run's new epochs into the feed until it ends or nobody reads it."""
        progress, run_id = self._progress, feed.run_id
        try:
            while feed.readers > 0 and not progress.closed:
                seen = progress.version(run_id)
                items, tail, more = await run_in_threadpool(self._read, run_id, feed.last, PAGE)
                feed.caught_up.clear()
                feed.publish(items, tail)
                if feed.end is not None:
                    return
                if more:  # a backlog: the next page once a reader wants it
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_SECONDS):
                            await feed.caught_up.wait()
                    continue
                quiet = 0.0
                while True:
                    await progress.wait(run_id, seen, POLL_SECONDS)
                    if progress.version(run_id) != seen or progress.closed:
                        break
                    feed.notify()  # no news: a tick, for readers' keep-alives
                    quiet += POLL_SECONDS
                    if not progress.pushed or quiet >= PUSHED_POLL_SECONDS or \
                            feed.readers == 0:
                        break
        except NotFound:
            pass  # deleted (with its model): readers end
        except Exception:
            log.exception("reading run %s for its streams failed", run_id)
        finally:
            feed.done = True
            feed.notify()
            if (feed.end is None or feed.readers == 0) and self._feeds.get(run_id) is feed:
                del self._feeds[run_id]

    async def follow(self, run_id: str, after: int,
                     ping: float) -> AsyncIterator[list[Item] | None]:
        """The run's items after epoch ``after``, then new ones as they are stored, then its end,
        in batches (all that is there when the reader looks: each batch is one write to the
        client); ``None`` marks ``ping`` seconds without news (a chance to send a keep-alive;
        to within the feed's one-second tick). A paused run's paused item is sent once per
        pause, after its last epoch; the stream goes on."""
        feed = self._join(run_id, after)
        position, last_sent = after, time.monotonic()
        paused_sent: str | None = None  # the JSON of the paused item this reader was sent
        try:
            while True:
                items = feed.after(position)
                if items is None:  # behind the window: read the gap from the store
                    try:
                        gap, tail, _ = await run_in_threadpool(self._read, run_id, position,
                                                               PAGE)
                    except NotFound:
                        return
                    if gap:
                        position = _last_epoch(gap, position)
                    if tail is not None and tail.kind == "end":
                        yield [*gap, tail]
                        return
                    if tail is not None and tail.json != paused_sent:
                        paused_sent = tail.json
                        gap = [*gap, tail]
                    if gap:
                        yield gap
                        last_sent = time.monotonic()
                    else:  # nothing new before the feed's window yet: wait for news
                        await feed.changed()
                    continue
                if items:
                    position = _last_epoch(items, position)
                    yield items
                    last_sent = time.monotonic()
                    continue
                feed.caught_up.set()
                if feed.end is not None:
                    yield [feed.end]
                    return
                if feed.paused is None:
                    paused_sent = None  # resumed: its next pause is news
                elif feed.paused.json != paused_sent:
                    paused_sent = feed.paused.json
                    yield [feed.paused]
                    last_sent = time.monotonic()
                    continue
                if feed.done or self._progress.closed:
                    return  # gone, failed, or the service is stopping: clients resume
                if time.monotonic() - last_sent >= ping:
                    last_sent = time.monotonic()
                    yield None
                    continue
                await feed.changed()
        finally:
            self._leave(feed)


def _last_epoch(items: list[Item], position: int) -> int:
    """The epoch of the last epoch item among ``items`` (``position`` if none is one)."""
    for item in reversed(items):
        if item.epoch is not None:
            return item.epoch
    return position
