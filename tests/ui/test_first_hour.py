"""The dashboard as a new user meets it, in a real browser: the tutorial run's loss and W/b
charts within the first screen on a desktop and a phone, each ending with the final state
marked final; settings in words; what a finished or early-stopped run shows; run again,
downloads, the datasets page and deletes; a deleted dataset said on its runs' pages; the start
form's suggestions, problems and dry runs; whole epoch ticks, dashed legend markers, axes on
decision regions, an ETA while training; the API docs' way back. Screenshots are written for
people to look at (the folder is printed)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.ui.test_dashboard import SCREENSHOTS, drawn, points, tutorial_run

pytestmark = pytest.mark.live

WAIT = {"prefer": "wait=60"}


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot for people to look at; its path is printed."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    return shot


def stored(api: httpx.Client) -> tuple[int, int, int]:
    return tuple(len(api.get(f"/v1/{kind}", params={"limit": 1000}).json()["items"])
                 for kind in ("datasets", "models", "runs"))  # type: ignore[return-value]


def table(page: Any, selector: str) -> list[list[str]]:
    cells = "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    return page.eval_on_selector_all(f"{selector} tbody tr", cells)  # type: ignore[no-any-return]


def expected_refusals(watched: Any, path: str) -> None:
    """Forget the refusals a test asked for (a 4xx of ``path``, and the console's note of it);
    anything else that went wrong still fails the test."""
    watched.errors[:] = [e for e in watched.errors if not (
        (e.startswith("HTTP 4") and path in e) or "the server responded with a status of 4" in e)]


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (360, 740)])
def test_the_tutorial_run_shows_its_charts_first_with_the_final_point(
        open_page: Any, api: httpx.Client, width: int, height: int) -> None:
    run = tutorial_run(api)
    watched = open_page(width, height)
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    shoot(page, f"first-hour-run-{width}x{height}")
    # Both charts within the first screen, before any table.
    for chart in ("#loss-chart canvas", "#params-chart canvas"):
        box = page.locator(chart).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, (chart, box)
    numbers = page.locator("#numbers").bounding_box()
    assert numbers and numbers["y"] > page.locator("#params-chart").bounding_box()["y"]
    # The final state drawn as the last point of both, marked final.
    for chart in ("loss-chart", "params-chart"):
        assert points(page, chart) == 11
        assert page.get_attribute(f"#{chart}", "data-final") == "10"
    page.click("#loss-chart figcaption button")
    assert table(page, "#loss-chart-table")[-1][:2] == ["10 (final)", f"{run['final']['loss']:.4f}"]
    # Settings in words, only those that apply; no Cancel on a finished run.
    settings = page.text_content("#settings") or ""
    assert "SGD, learning rate 0.1" in settings and "full batch" in settings, settings
    assert "mean squared error" in settings and "Regularizationnone" in settings
    assert "{" not in settings and "Huber" not in settings and "shuffle" not in settings
    assert page.is_hidden("#cancel") and not page.query_selector("#run-progress")
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_an_early_stopped_run_and_settings_that_apply(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 3, "num_examples": 400}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 500, "batch_size": 50, "shuffle_seed": 4,
        "loss": "huber", "huber_delta": 2.0, "regularization": {"l2": 0.01},
        "validation": {"fraction": 0.2}, "early_stopping": {"patience": 3}}).json()
    assert run["stopped_early"], run
    watched = open_page(360, 740)
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    state = page.text_content(".run-state") or ""
    assert f"stopped early after {run['epochs_completed']} of 500 epochs" in state, state
    assert not page.query_selector("#run-progress")  # no 34 % bar beside "succeeded"
    settings = page.text_content("#settings") or ""
    for words in ("50 rows per step, shuffled each epoch (seed 4)", "Huber (δ 2)",
                  "L2 0.01 on the weights", "the last 20 % of the rows",
                  "after 3 epochs without val_loss"):
        assert words in settings, settings
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing breaks out
    shoot(page, "first-hour-early-stop-360x740")


def test_the_card_order_is_the_same_from_the_form_and_reloaded(open_page: Any) -> None:
    """From the form the page opens on a queued run (its W/b chart has no rows yet, its data
    chart has); reloaded, on a finished one: the figures come in one order either way."""
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.fill("#syn-seed", "42")
    page.fill("#epochs", "60")  # long enough to open while it trains
    page.fill("#batch-size", "1")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    drawn(watched)
    order = "els => els.map(e => e.id)"
    from_form = page.eval_on_selector_all("main figure.chart", order)
    page.reload()
    drawn(watched)
    assert page.eval_on_selector_all("main figure.chart", order) == from_form == [
        "loss-chart", "params-chart", "data-chart"]


def test_run_again_and_downloads(open_page: Any, api: httpx.Client, tmp_path: Path) -> None:
    run = tutorial_run(api, epochs=12, optimizer={"kind": "momentum", "learning_rate": 0.05},
                       batch_size=100, shuffle_seed=7)
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    with page.expect_download() as history:
        page.click("#download-history")
    lines = Path(history.value.path()).read_text().splitlines()
    assert lines[0] == "epoch,loss,mse,rmse,mae,r2,W,b" and len(lines) == 13
    epoch, loss, *_ = lines[-1].split(",")
    assert epoch == "11" and float(loss) > 0
    with page.expect_download() as model_file:
        page.click("#download-model")
    assert model_file.value.suggested_filename == f"{run['model_id']}.onnx"
    session = ort.InferenceSession(Path(model_file.value.path()).read_bytes(),
                                   providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.array([[1.0]], dtype=np.float32)})[0]
    assert float(y.ravel()[0]) == pytest.approx(run["final"]["W"][0] + run["final"]["b"],
                                                rel=1e-4)
    page.click("#run-again")
    page.wait_for_selector("#from-run")
    assert page.is_checked("#dataset-existing") and page.input_value("#dataset-id") == run[
        "dataset_id"]
    assert (page.input_value("#optimizer"), page.input_value("#learning-rate"),
            page.input_value("#epochs"), page.input_value("#batch-size"),
            page.input_value("#shuffle-seed")) == ("momentum", "0.05", "12", "100", "7")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    again = api.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert again["id"] != run["id"] and again["model_id"] != run["model_id"]
    assert (again["dataset_id"], again["optimizer"], again["batch_size"], again["epochs"]) == (
        run["dataset_id"], run["optimizer"], 100, 12)
    drawn(watched)


def test_the_datasets_page_uploads_lists_starts_and_deletes(open_page: Any, api: httpx.Client,
                                                            tmp_path: Path) -> None:
    typo = tmp_path / "labels.csv"
    typo.write_text("a,b,y\n0.1,0.2,2\n0.3,0.1,abc\n0.5,0.9,4\n")
    watched = open_page()
    page = watched.page
    watched.goto("/ui/datasets")
    drawn(watched)
    before = stored(api)
    page.set_input_files("#upload-file", str(typo))
    page.click("#upload")
    page.wait_for_selector("#upload-problem:has-text('line 3')")
    assert "not a number" in page.text_content("#upload-problem")
    assert stored(api) == before
    expected_refusals(watched, "/v1/datasets/upload")
    page.set_input_files("#upload-file", str(typo))
    page.select_option("#upload-target-type", "categorical")
    page.fill("#upload-name", "three labels")
    page.click("#upload")
    page.wait_for_selector("#datasets tr:has-text('three labels')")
    dataset = next(d for d in api.get("/v1/datasets", params={"limit": 1000}).json()["items"]
                   if d["name"] == "three labels")
    assert dataset["classes"] == ["2", "4", "abc"]
    row = f"#datasets tr[data-dataset='{dataset['id']}']"
    assert "3 classes: 2, 4, abc" in page.text_content(row)
    shoot(page, "first-hour-datasets-1280x800")
    page.click(f"{row} a:has-text('Start a run')")
    page.wait_for_selector("#start-run")
    assert page.is_checked("#dataset-existing") and page.input_value("#dataset-id") == dataset["id"]
    watched.goto("/ui/datasets")
    drawn(watched)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"{row} button[data-action=delete]")
    page.wait_for_selector(row, state="detached")
    assert api.get(f"/v1/datasets/{dataset['id']}").status_code == 404


def test_a_model_is_deleted_from_its_page(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api)
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/models/{run['model_id']}")
    drawn(watched)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-model")
    page.wait_for_url("**/ui/")
    assert api.get(f"/v1/models/{run['model_id']}").status_code == 404


def test_a_runs_page_says_its_dataset_was_deleted(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api)
    assert api.delete(f"/v1/datasets/{run['dataset_id']}").status_code == 204
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    note = page.text_content("#dataset-gone") or ""
    assert f"The dataset {run['dataset_id']} was deleted" in note
    assert "true values" in note
    assert not page.query_selector("#data-chart")
    assert page.get_attribute("#params-chart", "data-series") == "2"  # W and b, no truth
    # The one expected failed request: the dataset's own 404, said on the page instead.
    expected_refusals(watched, f"/v1/datasets/{run['dataset_id']}")


def test_the_form_suggests_settings_that_train_moons(open_page: Any, api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.select_option("#syn-kind", "moons")
    assert page.input_value("#model-kind") == "mlp"
    assert (page.input_value("#optimizer"), page.input_value("#learning-rate"),
            page.input_value("#epochs")) == ("adam", "0.01", "300")
    page.fill("#syn-seed", "5")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    drawn(watched)
    run = api.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert run["final"]["metrics"]["accuracy"] >= 0.95, run["final"]
    # What the person typed stays when the data changes.
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.fill("#epochs", "42")
    page.select_option("#syn-kind", "circles")
    assert page.input_value("#epochs") == "42" and page.input_value("#optimizer") == "adam"


def test_the_form_shows_each_problem_once_and_stores_nothing(open_page: Any,
                                                            api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    before = stored(api)
    page.fill("#epochs", "nope")
    page.fill("#learning-rate", "-1")
    page.fill("#validation", "2")
    page.click("#start-run")
    page.wait_for_selector("#start-problem p")
    shown = {name: page.text_content(f"#{name}-problem") for name in
             ("epochs", "learning-rate", "validation")}
    assert shown == {"epochs": "enter a number", "learning-rate": "more than 0",
                     "validation": "less than 1"}
    text = page.inner_text("main")
    assert all(text.count(message) == 1 for message in shown.values()), text
    assert "3 fields need attention" in page.text_content("#start-problem")
    assert page.get_attribute("#epochs", "aria-invalid") == "true"
    assert stored(api) == before
    # A run the server refuses (a logistic model on the line's numbers): nothing is left.
    page.fill("#epochs", "5")
    page.fill("#learning-rate", "0.1")
    page.fill("#validation", "")
    page.select_option("#model-kind", "logistic")
    page.click("#start-run")
    page.wait_for_selector("#start-problem li")
    assert "class indices" in page.text_content("#start-problem li")
    assert stored(api) == before
    expected_refusals(watched, "/runs")


def test_charts_read_well_on_a_phone(open_page: Any, api: httpx.Client) -> None:
    run = tutorial_run(api, epochs=10)
    watched = open_page(360, 740)
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    for chart in ("loss-chart", "params-chart"):
        ticks = (page.get_attribute(f"#{chart}", "data-x-ticks") or "").split(",")
        assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    markers = page.eval_on_selector_all(
        "#params-chart .u-legend .u-series", """rows => rows.map(r => {
            const marker = r.querySelector('.u-marker');
            if (!marker) return null;
            const style = getComputedStyle(marker);
            const label = r.querySelector('.u-label').textContent;
            return [label, style.borderTopStyle, style.backgroundColor];
        }).filter(Boolean)""")
    kinds = {label: (border, fill) for label, border, fill in markers}
    assert kinds["true W (dashed)"][0] == "dashed" and kinds["W"][0] == "solid"
    assert kinds["true W (dashed)"][1] == "rgba(0, 0, 0, 0)" and kinds["W"][1] != kinds[
        "true W (dashed)"][1]


def test_decision_regions_have_axes(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"kind": "moons", "seed": 1}).json()
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [8],
                                         "task": "classification"}).json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 20,
        "optimizer": {"kind": "adam", "learning_rate": 0.05}}).json()
    watched = open_page()
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(watched)
    page = watched.page
    page.wait_for_selector("#regions-chart canvas.regions")
    x0lo, x0hi, x1lo, x1hi = map(float, page.get_attribute("#regions-chart",
                                                           "data-bounds").split(","))
    xs = page.eval_on_selector_all("#regions-chart .ticks.x span", "s => s.map(e => e.textContent)")
    ys = page.eval_on_selector_all("#regions-chart .ticks.y span", "s => s.map(e => e.textContent)")
    assert xs[0] == f"{x0lo:.1f}" and xs[-1] == f"{x0hi:.1f}" and len(xs) == 5
    assert ys[0] == f"{x1hi:.1f}" and ys[-1] == f"{x1lo:.1f}" and len(ys) == 5
    assert page.is_visible("#regions-chart .axis-title.x") and page.is_visible(
        "#regions-chart .axis-title.y")
    shoot(page, "first-hour-regions-1280x800")


def test_a_live_run_shows_its_eta(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 5, "num_examples": 2000}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 60, "batch_size": 1, "shuffle_seed": 0}).json()
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    page.wait_for_selector("#run-eta", timeout=60_000)
    assert re.fullmatch(r" about .+ left", page.text_content("#run-eta") or "")
    assert page.is_visible("#cancel")
    drawn(watched)
    assert not page.query_selector("#run-eta") and page.is_hidden("#cancel")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_link_back_to_the_dashboard(open_page: Any, path: str) -> None:
    watched = open_page()
    watched.goto(path)
    link = watched.page.locator("a[href='/ui/']")
    assert link.is_visible() and "dashboard" in (link.text_content() or "")


def test_a_csv_download_of_a_dataset(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets", json={"x": [1, 2], "y": [3, 4], "name": "tiny"}).json()
    watched = open_page()
    page = watched.page
    watched.goto("/ui/datasets")
    drawn(watched)
    with page.expect_download() as saved:
        page.click(f"#datasets tr[data-dataset='{dataset['id']}'] button[data-action=download]")
    text = Path(saved.value.path()).read_text()
    assert np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1).tolist() == [[1, 3], [2, 4]]
