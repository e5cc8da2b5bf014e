"""The run page pauses and resumes a run: Pause while it trains (the badge says `paused` once
the epoch ends, Resume replaces Pause, the epochs stop), Resume (it trains again, followed on
the same stream), then Cancel."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.ui.test_dashboard import drawn


def until(page: Any, check: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until ``check`` holds (the page's CSP allows no script of the test's own)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the page never got there"
        page.wait_for_timeout(50)


def status(page: Any) -> str | None:
    return page.text_content("#run-status") if page.query_selector("#run-status") else None


def done(page: Any) -> int:
    found = re.match(r"(?:paused after )?(\d+)", page.text_content("#run-progress-text") or "")
    return int(found[1]) if found else -1


def test_a_run_is_paused_and_resumed_from_its_page(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 6, "num_examples": 2000}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 200, "batch_size": 1, "shuffle_seed": 0}).json()
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    page.wait_for_selector("#run-progress", timeout=60_000)
    assert page.is_visible("#pause") and page.is_hidden("#resume")
    page.click("#pause")
    until(page, lambda: status(page) == "paused")
    assert page.is_hidden("#pause") and page.is_visible("#resume") and page.is_visible("#cancel")
    stored = api.get(f"/v1/runs/{run['id']}").json()
    assert stored["status"] == "paused"
    assert page.text_content("#run-progress-text") == \
        f"paused after {stored['epochs_completed']} of 200 epochs"

    page.click("#resume")
    until(page, lambda: status(page) == "running" and done(page) > stored["epochs_completed"])
    assert page.is_visible("#pause") and page.is_hidden("#resume")
    page.click("#cancel")
    drawn(watched)
    assert page.text_content("#run-status") == "cancelled"
    assert page.is_hidden("#pause") and page.is_hidden("#resume") and page.is_hidden("#cancel")
