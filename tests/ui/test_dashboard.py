"""The dashboard in a real browser: it loads clean, starts and follows the tutorial live,
draws the tutorial's two figures for a finished run, compares runs, passes axe-core, and
looks right on a phone and a desktop (screenshots)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image, ImageStat

from tests.support.servers import ROOT
from tests.ui.axe import axe_script, serious_violations

pytestmark = pytest.mark.live

WAIT = {"prefer": "wait=60"}
# Screenshots land here (a folder the test names; TAPELINE_SCREENSHOTS moves it).
SCREENSHOTS = Path(os.environ.get("TAPELINE_SCREENSHOTS", ROOT / "var" / "screenshots"))


def tutorial_run(api: httpx.Client, **run: Any) -> dict[str, Any]:
    """A finished run of the tutorial (seeded data, default model) with ``run``'s settings."""
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 42}).json()
    model = api.post("/v1/models", json={"name": "tutorial"}).json()
    answer = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT,
                      json={"dataset_id": dataset["id"], **run})
    assert answer.status_code == 200, answer.text
    return answer.json()


def drawn(watched: Any) -> None:
    watched.page.wait_for_selector("main[data-state=drawn]", timeout=120_000)


def points(page: Any, figure: str) -> int:
    return int(page.get_attribute(f"#{figure}", "data-points") or 0)


def test_every_view_loads_clean(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api)
    watched = open_page()
    for path in ("/ui/", "/ui/start", f"/ui/runs/{run['id']}", f"/ui/models/{run['model_id']}",
                 "/ui/datasets", f"/ui/start?from={run['id']}"):
        watched.goto(path)
        watched.page.wait_for_load_state("networkidle")
    watched.goto("/ui/")
    watched.page.wait_for_selector(f"#runs tr[data-run='{run['id']}']")
    watched.check()


def test_runs_list_updates_while_runs_start_and_finish(open_page: Any, api: httpx.Client) -> None:
    watched = open_page()
    watched.goto("/ui/")
    watched.page.wait_for_selector("#runs")
    dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 4000, "seed": 1}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs",
                   json={"dataset_id": dataset["id"], "epochs": 3, "batch_size": 2}).json()
    row = f"#runs tr[data-run='{run['id']}']"
    watched.page.wait_for_selector(row)  # appears without a reload
    watched.page.wait_for_selector(f"{row}[data-status=succeeded]", timeout=60_000)


def test_start_the_tutorial_from_the_form_and_follow_it_live(open_page: Any,
                                                             api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    assert page.input_value("#syn-num_examples") == "1000"  # the tutorial's defaults
    assert page.input_value("#syn-true_W") == "3" and page.input_value("#syn-true_b") == "2"
    assert page.input_value("#learning-rate") == "0.1" and page.input_value("#optimizer") == "sgd"
    page.fill("#syn-seed", "42")
    # Long enough to watch: 60 epochs of one-example steps (the tutorial's ten are over in ms).
    page.fill("#epochs", "60")
    page.fill("#batch-size", "1")
    page.fill("#shuffle-seed", "0")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    run_id = page.url.rsplit("/", 1)[1]

    seen: list[int] = []
    while True:
        status = api.get(f"/v1/runs/{run_id}").json()["status"]
        if status not in ("queued", "running"):
            break
        if page.query_selector("#loss-chart"):
            seen.append(points(page, "loss-chart"))
        time.sleep(0.15)
    growing = sorted(set(n for n in seen if 0 < n < 60))
    assert len(growing) >= 2, f"the loss chart did not grow while the run trained: {seen}"
    assert seen == sorted(seen), seen

    drawn(watched)
    run = api.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    assert points(page, "loss-chart") == 61  # 60 epochs and the final state
    shown_W = page.text_content("td[data-latest=W]")
    shown_b = page.text_content("td[data-latest=b]")
    assert shown_W == f"{run['final']['W'][0]:.4f}" and shown_b == f"{run['final']['b']:.4f}"
    assert page.text_content("#run-status") == "succeeded"


def test_a_finished_runs_deep_link_draws_both_tutorial_figures(open_page: Any,
                                                               api: httpx.Client) -> None:
    run = tutorial_run(api)
    watched = open_page()
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    # The data (a sample of all 1000 points) with the predictions at epoch 0 and at the end.
    assert points(page, "data-chart") == 1000
    assert page.get_attribute("#data-chart", "data-series") == "3"
    legend = page.text_content("#data-chart .u-legend")
    assert "predictions, epoch 0" in legend and "predictions, final" in legend
    # W and b per epoch with the true values (3 and 2) dashed, and the final state last.
    assert points(page, "params-chart") == 11
    assert page.get_attribute("#params-chart", "data-series") == "4"
    assert "true W (dashed)" in page.text_content("#params-chart .u-legend")
    assert points(page, "loss-chart") == 11
    # Each figure can be read as a table.
    page.click("#params-chart figcaption button")
    rows = page.query_selector_all("#params-chart-table tbody tr")
    assert len(rows) == 11
    first = [cell.text_content() for cell in rows[0].query_selector_all("td")]
    assert first == ["0", "5.0000", "0.0000", "3.0000", "2.0000"]
    last = [cell.text_content() for cell in rows[-1].query_selector_all("td")]
    assert last == ["10 (final)", f"{run['final']['W'][0]:.4f}", f"{run['final']['b']:.4f}",
                    "3.0000", "2.0000"]


def test_a_run_whose_rows_keep_params_every_kth_epoch_draws_them_where_they_are(
        open_page: Any, api: httpx.Client) -> None:
    """`record_params: 3` keeps W and b in epochs 0, 3, 6 and 9 only: the figure still draws
    W and b (it drew the norms chart instead), each value at its own epoch, and the history's
    CSV download keeps them."""
    run = tutorial_run(api, record_params=3)
    history = api.get(f"/v1/runs/{run['id']}/history").json()["items"]
    assert [row["epoch"] for row in history if row["W"] is not None] == [0, 3, 6, 9]
    watched = open_page()
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    assert page.get_attribute("#params-chart", "data-series") == "4"  # W, b and the truth
    assert points(page, "params-chart") == 11
    page.click("#params-chart figcaption button")
    rows = [[cell.text_content() for cell in row.query_selector_all("td")]
            for row in page.query_selector_all("#params-chart-table tbody tr")]
    for row, epoch in zip(rows, range(10), strict=False):
        kept = history[epoch]
        assert row[:3] == ([str(epoch), f"{kept['W'][0]:.4f}", f"{kept['b']:.4f}"]
                           if kept["W"] is not None else [str(epoch), "–", "–"]), row
    # The history's CSV download keeps W and b (it left them out), empty where a row has none.
    text = page.evaluate("""async (runId) => {
        const { historyCsv } = await import('/ui/assets/js/downloads.js');
        return (await historyCsv(runId)).text();
    }""", run["id"])
    header, *lines = [line.split(",") for line in text.splitlines()]
    assert header[0] == "epoch" and header[-2:] == ["W", "b"] and len(lines) == 10
    for cells, kept in zip(lines, history, strict=True):
        assert int(cells[0]) == kept["epoch"]
        assert (cells[-2:] == ["", ""] if kept["W"] is None
                else [float(c) for c in cells[-2:]] == [kept["W"][0], kept["b"]]), cells


def test_streamed_rows_without_params_keep_every_column_aligned(open_page: Any) -> None:
    """The live path (rows from the event stream, a batch at a time): a row that
    `record_params` left without params is null in the params, W and b columns (a batch of
    such rows shifted the later params onto the wrong epochs), and the regions and the latest
    figures use the last row that has them."""
    watched = open_page()
    watched.goto("/ui/")
    found = watched.page.evaluate("""async () => {
        const { emptyTrace, appendRows, lastWithParams } = await import('/ui/assets/js/trace.js');
        const row = (e) => e % 3 === 0
            ? { epoch: e, loss: e, metrics: { mae: e }, params: { W: [e], b: e }, W: [e], b: e }
            : { epoch: e, loss: e, metrics: { mae: e }, params: null, W: null, b: null };
        const trace = emptyTrace();
        appendRows(trace, [0, 1, 2, 3].map(row));
        appendRows(trace, [4, 5].map(row));
        return { W: trace.W, b: trace.b, params: trace.params.W, mae: trace.metrics.mae,
                 last: lastWithParams(trace) };
    }""")
    assert found["W"] == found["params"] == [[0], None, None, [3], None, None]
    assert found["b"] == [0, None, None, 3, None, None]
    assert found["mae"] == [0, 1, 2, 3, 4, 5] and found["last"] == 3


def test_log_scale_and_smoothing_controls(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api, epochs=30)
    watched = open_page()
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    page.click("#loss-chart figcaption button")
    raw = page.text_content("#loss-chart-table tbody tr:nth-child(2) td:nth-child(2)")
    page.check("#loss-log")
    page.focus("#loss-smooth")
    for _ in range(50):
        page.keyboard.press("ArrowRight")  # keyboard-operable
    assert page.text_content("#loss-smooth-value") == "0.50"
    assert points(page, "loss-chart") == 31
    # The table shows the stored values, not the smoothed curve.
    assert page.text_content("#loss-chart-table tbody tr:nth-child(2) td:nth-child(2)") == raw


def test_compare_overlays_two_runs(open_page: Any, api: httpx.Client) -> None:
    first = tutorial_run(api, epochs=10)
    second = api.post(f"/v1/models/{first['model_id']}/runs", headers=WAIT,
                      json={"dataset_id": first["dataset_id"], "epochs": 25,
                            "optimizer": {"kind": "adam", "learning_rate": 0.1}}).json()
    watched = open_page()
    watched.goto(f"/ui/models/{first['model_id']}")
    drawn(watched)
    page = watched.page
    page.check(f"#pick-{first['id']}")
    page.check(f"#pick-{second['id']}")
    page.click("#compare")
    page.wait_for_function("() => document.querySelector('#compare-chart').dataset.series === '2'")
    legend = page.text_content("#compare-chart .u-legend")
    assert first["id"] in legend and second["id"] in legend
    assert points(page, "compare-chart") == 26  # epochs 0..24 of both, joined, and 25: final
    assert points(page, "model-history-chart") == 35  # every step of both runs


def test_no_serious_accessibility_violations(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api)
    watched = open_page(init_script=axe_script())
    found = {}
    for path in ("/ui/", "/ui/start", f"/ui/runs/{run['id']}", f"/ui/models/{run['model_id']}",
                 "/ui/datasets"):
        watched.goto(path)
        watched.page.wait_for_load_state("networkidle")
        if "/runs/" in path or "/models/" in path or "datasets" in path:
            drawn(watched)
        for button in watched.page.query_selector_all("figcaption button"):
            button.click()  # every figure's table shown too
        bad = serious_violations(watched.page)
        if bad:
            found[path] = bad
    assert not found, found


def _blank(image: Image.Image) -> bool:
    """A region with (almost) one colour: nothing drawn in it."""
    stat = ImageStat.Stat(image.convert("L"))
    return stat.stddev[0] < 4


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (360, 740)])
def test_run_page_screenshots(open_page: Any, api: httpx.Client, width: int,
                              height: int) -> None:
    run = tutorial_run(api, epochs=20)
    watched = open_page(width, height)
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"run-page-{width}x{height}.png"
    page.screenshot(path=str(shot), full_page=True)
    image = Image.open(shot)
    assert image.width == width
    for region in ("#numbers", "#loss-chart canvas", "#params-chart canvas", "#data-chart canvas"):
        box = page.locator(region).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 60, region
        scroll = page.evaluate("window.scrollY")
        crop = image.crop((int(box["x"]), int(box["y"] + scroll), int(box["x"] + box["width"]),
                           int(box["y"] + scroll + box["height"])))
        assert not _blank(crop), f"{region} is blank in {shot}"


def test_the_run_page_resumes_the_stream_after_a_dropped_connection(open_page: Any,
                                                                    api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 42}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 30, "batch_size": 1, "shuffle_seed": 0}).json()
    watched = open_page()
    page = watched.page
    streams: list[str] = []
    delivered: list[int] = []

    def drop_the_first_stream(route: Any) -> None:
        """The first stream ends after a few of the server's own rows, with no end event: a
        connection dropped mid-run. Later ones reach the server."""
        streams.append(route.request.url)
        if len(streams) > 1:
            route.continue_()
            return
        after = int(parse_qs(urlsplit(route.request.url).query)["after"][0])
        rows: list[dict[str, Any]] = []
        while not rows:
            rows = api.get(f"/v1/runs/{run['id']}/history",
                           params={"after": after, "limit": 3}).json()["items"]
        body = "".join(json.dumps({**row, "type": "epoch"}) + "\n" for row in rows)
        delivered.extend(row["epoch"] for row in rows)
        route.fulfill(status=200, content_type="application/jsonl", body=body)

    page.route("**/events?*", drop_the_first_stream)
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    assert len(streams) >= 2, streams
    resumed_after = int(parse_qs(urlsplit(streams[1]).query)["after"][0])
    assert resumed_after == delivered[-1], (streams, delivered)  # the last epoch it got
    assert points(page, "loss-chart") == 31  # every epoch once (none lost, none repeated), final
    final = api.get(f"/v1/runs/{run['id']}").json()
    assert page.text_content("td[data-latest=W]") == f"{final['final']['W'][0]:.4f}"
