"""Benchmark the dashboard: how fast a run's page draws in headless Chromium, and what
`max_points` saves on a long history.

    .venv/bin/python bench/ui.py [--repeats 7]

Against a real server on SQLite, with a 1,000,000-row dataset and a finished 100,000-epoch
run of it (written straight into the store: training it would take hours):
  * the run page, opened fresh `--repeats` times: time from navigation to the first chart
    drawn and to the whole page drawn (the page's `tapeline:first-chart` and `tapeline:drawn`
    Performance API marks); also for a finished 10-epoch tutorial run, as a baseline;
  * the same page opened cold: `--cold` more 100,000-epoch runs, each opened once, so the
    server has no rendered answer of theirs yet (it keeps finished runs' `max_points`
    answers, service/api/routes/history.py);
  * `GET /v1/runs/{id}/history?format=columns&max_points=1000` against the full history
    (every page of 1,000 rows, `format=columns`), same run, interleaved; medians and ratio.
    Each `max_points` request asks for a count not asked before (1000, 999, ...), so none is
    answered from that cache; the cached answer's latency is printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.longrun import store_finished_run  # noqa: E402
from tests.support.servers import sqlite_url, start_server  # noqa: E402
from tests.ui.conftest import CHROMIUM, FLAGS  # noqa: E402

EPOCHS = 100_000
ROWS = 1_000_000


def page_marks(browser: Any, url: str) -> tuple[float, float]:
    """Milliseconds from navigation start to the first chart and to the page drawn."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("main[data-state=drawn]", timeout=60_000)
    marks = page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('mark')
        .map((m) => [m.name, m.startTime]))""")
    context.close()
    return marks["tapeline:first-chart"], marks["tapeline:drawn"]


def full_history(client: httpx.Client, run_id: str) -> int:
    """Every row of the run, a page of 1,000 at a time (the most a page holds)."""
    rows, after = 0, None
    while True:
        params: dict[str, Any] = {"format": "columns", "limit": 1000}
        if after is not None:
            params["after"] = after
        page = client.get(f"/v1/runs/{run_id}/history", params=params).json()
        rows += len(page["epoch"])
        after = page["next_cursor"]
        if after is None:
            return rows


def main() -> None:
    """Run the benchmark and print its figures."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cold", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tapeline-bench-ui-"))
    url = sqlite_url(folder)
    server = start_server(url, folder / "server.log")
    try:
        client = httpx.Client(base_url=server.url, timeout=120)
        big = client.post("/v1/datasets/synthetic", json={"num_examples": ROWS, "seed": 1}).json()
        model = client.post("/v1/models").json()
        long_id = store_finished_run(url, model["id"], big["id"], EPOCHS)
        cold_ids = [store_finished_run(url, model["id"], big["id"], EPOCHS)
                    for _ in range(args.cold)]
        small = client.post("/v1/datasets/synthetic", json={"seed": 42}).json()
        tutorial = client.post(f"/v1/models/{client.post('/v1/models').json()['id']}/runs",
                               headers={"prefer": "wait=30"},
                               json={"dataset_id": small["id"]}).json()

        sampled, full, cached = [], [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            kept = len(client.get(f"/v1/runs/{long_id}/history", params={
                "format": "columns", "max_points": 1000 - repeat}).json()["epoch"])
            sampled.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.get(f"/v1/runs/{long_id}/history",
                       params={"format": "columns", "max_points": 1000})
            cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            every = full_history(client, long_id)
            full.append(time.perf_counter() - start)
        assert every == EPOCHS and kept <= 1000

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                 args=FLAGS)
            cold_marks = [page_marks(browser, f"{server.url}/ui/runs/{run_id}")
                          for run_id in cold_ids]
            page_marks(browser, f"{server.url}/ui/runs/{long_id}")  # warm the server's caches
            long_marks, short_marks = [], []
            for _ in range(args.repeats):
                long_marks.append(page_marks(browser, f"{server.url}/ui/runs/{long_id}"))
                short_marks.append(page_marks(browser, f"{server.url}/ui/runs/{tutorial['id']}"))
            browser.close()

        def median(values: list[float]) -> float:
            return statistics.median(values)

        print(f"run page, {EPOCHS:,}-epoch run on a {ROWS:,}-row dataset "
              f"(median of {args.repeats}): first chart "
              f"{median([m[0] for m in long_marks]):.0f} ms, "
              f"drawn {median([m[1] for m in long_marks]):.0f} ms")
        if cold_marks:
            print(f"run page, {EPOCHS:,}-epoch run opened cold (median of {len(cold_marks)} "
                  f"runs): first chart {median([m[0] for m in cold_marks]):.0f} ms, "
                  f"drawn {median([m[1] for m in cold_marks]):.0f} ms")
        print(f"run page, 10-epoch tutorial run: first chart "
              f"{median([m[0] for m in short_marks]):.0f} ms, drawn "
              f"{median([m[1] for m in short_marks]):.0f} ms")
        print(f"history of {EPOCHS:,} epochs: max_points=1000 ({kept} rows) "
              f"{median(sampled) * 1000:.0f} ms, full ({EPOCHS // 1000} pages of 1,000) "
              f"{median(full) * 1000:.0f} ms: {median(full) / median(sampled):.1f}x faster; "
              f"max_points=1000 again (kept rendered) {median(cached) * 1000:.0f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
