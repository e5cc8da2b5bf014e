"""`Prefer: wait` reads the store only after news that may be the run's end: news that says the
run goes on (its start, each flush of epochs) wakes the waiter without a read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from service.api.routes import runs
from service.jobs.progress import Progress


def waiting(monkeypatch: pytest.MonkeyPatch, statuses: list[str]) -> list[str]:
    """Patch the store read of :func:`runs.wait_for_end` to answer ``statuses`` in turn;
    returns the list of statuses read so far."""
    read: list[str] = []

    def read_run(store: Any, run_id: str) -> SimpleNamespace:
        read.append(statuses[len(read)])
        return SimpleNamespace(id=run_id, status=read[-1])

    monkeypatch.setattr(runs, "read_run", read_run)
    return read


async def wait_with_news(progress: Progress, news: list[bool | None], seconds: float = 5.0
                         ) -> tuple[SimpleNamespace, float]:
    progress.bind(asyncio.get_running_loop())
    runtime = SimpleNamespace(progress=progress)
    run = SimpleNamespace(id="run_x", status="queued")

    async def announce() -> None:
        for ended in news:
            await asyncio.sleep(0.01)
            progress.notify_threadsafe("run_x", ended)

    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(announce())
    answer = await runs.wait_for_end(runtime, None, run, 0, seconds)  # type: ignore[arg-type]
    await task
    return answer, asyncio.get_running_loop().time() - started


def test_news_that_the_run_goes_on_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    read = waiting(monkeypatch, ["succeeded"])
    answer, took = asyncio.run(wait_with_news(Progress(), [False, False, False, True]))
    assert read == ["succeeded"] and answer.status == "succeeded"
    assert took < 0.5  # answered at the end's news, not at a poll


def test_news_that_says_nothing_of_the_end_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A cancel on this replica, a crashed worker: news that does not say, so the store does.
    read = waiting(monkeypatch, ["running", "cancelled"])
    answer, _ = asyncio.run(wait_with_news(Progress(), [None, None]))
    assert read == ["running", "cancelled"] and answer.status == "cancelled"


def test_news_unread_at_the_deadline_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    read = waiting(monkeypatch, ["running"])
    answer, took = asyncio.run(wait_with_news(Progress(), [False], seconds=0.3))
    assert read == ["running"] and answer.status == "running"  # not the stale "queued"
    assert 0.3 <= took < 1.0


def test_progress_remembers_what_the_latest_news_said() -> None:
    async def scenario() -> list[bool | None]:
        progress = Progress()
        progress.bind(asyncio.get_running_loop())
        seen = [progress.ended("run_x")]
        for ended in (False, True, None):
            progress.notify_threadsafe("run_x", ended)
            await asyncio.sleep(0)
            seen.append(progress.ended("run_x"))
        return seen

    assert asyncio.run(scenario()) == [None, False, True, None]
