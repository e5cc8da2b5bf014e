"""The dashboard with v2 runs, in a real browser: a moons MLP started from the form draws
decision regions that match the API's predictions, the run page shows validation loss,
val_* metrics, per-layer norms, an early stop and an error, compare overlays classifiers'
accuracy, the form is keyboard-operable, and axe-core finds nothing serious on any view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from tests.ui.axe import axe_script, serious_violations
from tests.ui.test_dashboard import SCREENSHOTS

pytestmark = pytest.mark.live

WAIT = {"prefer": "wait=60"}
# The Okabe & Ito palette of service/ui/assets/js/charts.js, as RGB.
PALETTE = [(0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00), (0x00, 0x9E, 0x73), (0xCC, 0x79, 0xA7)]


def drawn(page: Any) -> None:
    page.wait_for_selector("main[data-state=drawn]", timeout=120_000)


def attr(page: Any, selector: str, name: str) -> str:
    value = page.get_attribute(selector, name)
    assert value is not None, f"{selector} has no {name}"
    return value


def grid_centres(page: Any) -> list[list[float]]:
    """The centres of the regions' grid cells, row by row from the bottom, as the page made
    them (regions.js): its size and bounds are on the figure."""
    size = int(attr(page, "#regions-chart", "data-grid"))
    x0lo, x0hi, x1lo, x1hi = map(float, attr(page, "#regions-chart", "data-bounds").split(","))
    return [[x0lo + (i + 0.5) * (x0hi - x0lo) / size, x1lo + (j + 0.5) * (x1hi - x1lo) / size]
            for j in range(size) for i in range(size)]


def painted_classes(page: Any) -> list[int]:
    """The class whose colour each grid cell's centre is painted in, on the regions' layer
    (the points are drawn on a layer above it)."""
    pixels = page.evaluate("""(palette) => {
        const figure = document.querySelector('#regions-chart');
        const canvas = figure.querySelector('canvas.regions');
        const size = Number(figure.dataset.grid);
        const ctx = canvas.getContext('2d');
        const cell = canvas.width / size;
        const found = [];
        for (let j = 0; j < size; j++) {
          for (let i = 0; i < size; i++) {
            const x = Math.floor((i + 0.5) * cell);
            const y = Math.floor(canvas.height - (j + 0.5) * cell);
            found.push(Array.from(ctx.getImageData(x, y, 1, 1).data));
          }
        }
        return found;
    }""", PALETTE)
    classes: list[int] = []
    for r, g, b, a in pixels:
        assert 0 < a < 160, "regions are painted translucent"
        distance = [abs(r - pr) + abs(g - pg) + abs(b - pb) for pr, pg, pb in PALETTE]
        best = min(range(len(PALETTE)), key=distance.__getitem__)
        assert distance[best] <= 24, f"a cell painted ({r}, {g}, {b}) is no class's colour"
        classes.append(best)
    return classes


def test_a_moons_mlp_started_from_the_form_draws_its_decision_regions(open_page: Any,
                                                                      api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.select_option("#syn-kind", "moons")
    assert page.input_value("#model-kind") == "mlp"  # suggested for classification data
    assert page.is_visible("#model-hidden") and page.is_visible("#model-activation")
    page.fill("#syn-num_examples", "300")
    page.fill("#syn-noise", "0.1")
    page.fill("#syn-seed", "3")
    page.fill("#model-hidden", "16, 16")
    page.select_option("#model-activation", "tanh")
    page.select_option("#optimizer", "adam")
    page.fill("#learning-rate", "0.05")
    page.fill("#epochs", "150")
    page.fill("#batch-size", "32")
    page.fill("#shuffle-seed", "0")
    page.fill("#validation", "0.2")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    run_id = page.url.rsplit("/", 1)[1]
    drawn(page)

    run = api.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    model = api.get(f"/v1/models/{run['model_id']}").json()
    assert model["kind"] == "mlp" and model["hidden"] == [16, 16]
    assert model["activation"] == "tanh" and model["task"] == "classification"
    assert run["optimizer"]["kind"] == "adam" and run["batch_size"] == 32
    assert run["validation"]["fraction"] == 0.2

    page.wait_for_selector("#regions-chart canvas.regions")
    assert attr(page, "#regions-chart", "data-points") == "300"  # every point drawn
    assert attr(page, "#regions-chart", "data-series") == "2"
    # The grid's classes are the API's predictions for the same points...
    shown = [int(c) for c in attr(page, "#regions-chart", "data-predicted").split(",")]
    predicted = api.post(f"/v1/models/{run['model_id']}/predict",
                         json={"x": grid_centres(page)}).json()["y"]
    assert shown == predicted
    assert {0, 1} <= set(predicted)  # the trained moons model predicts both classes
    # ...and each cell is painted in its class's colour.
    assert painted_classes(page) == predicted
    # No cell overlaps another (overlapping translucent cells would draw a darker grid).
    most_opaque = page.evaluate("""() => {
        const canvas = document.querySelector('#regions-chart canvas.regions');
        const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        let top = 0;
        for (let k = 3; k < data.length; k += 4) top = Math.max(top, data[k]);
        return top;
    }""")
    assert most_opaque <= round(0.52 * 255) + 1
    # While a run trains, the page draws the regions itself from the latest history row's
    # params: its forward pass agrees with the API's (float32 there: a boundary cell may not).
    local = page.evaluate("""async ([model, grid]) => {
        const { forward } = await import('/ui/assets/js/regions.js');
        return forward(model, model.params)(grid).y;
    }""", [model, grid_centres(page)])
    assert sum(a != b for a, b in zip(local, predicted, strict=True)) <= 2

    # The v2 rows: validation loss on the loss chart, val_* metrics, each layer's norms.
    assert attr(page, "#loss-chart", "data-series") == "2"
    assert "validation loss" in page.text_content("#loss-chart .u-legend")
    final = run["final"]["metrics"]
    for name in ("accuracy", "val_accuracy", "val_loss", "log_loss"):
        shown_value = float(page.text_content(f"td[data-latest={name}]") or "nan")
        assert shown_value == pytest.approx(final[name], rel=1e-3, abs=5e-5), name
    assert attr(page, "#params-chart", "data-series") == "6"  # W1, b1, W2, b2, W3, b3
    legend = page.text_content("#params-chart .u-legend")
    assert all(f"‖{p}‖" in legend for p in ("W1", "b1", "W2", "b2", "W3", "b3"))
    # 150 epochs, then the final model's state after them, marked final.
    assert attr(page, "#params-chart", "data-points") == "151"
    assert attr(page, "#params-chart", "data-final") == "150"


def test_an_early_stop_and_an_error_are_shown(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 42}).json()
    model = api.post("/v1/models").json()
    # No epoch improves the loss by 1,000: the run stops once patience runs out.
    stopped = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 50,
        "early_stopping": {"monitor": "loss", "patience": 3, "min_delta": 1000}}).json()
    assert stopped["stopped_early"], stopped
    diverged = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 50,
        "optimizer": {"kind": "sgd", "learning_rate": 1e6}}).json()
    assert diverged["status"] == "diverged", diverged

    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{stopped['id']}")
    drawn(page)
    note = page.text_content("#early-stop")
    assert f"epoch {stopped['stopped_early']['epoch']}" in note
    assert f"best epoch {stopped['stopped_early']['best_epoch']}" in note

    watched.goto(f"/ui/runs/{diverged['id']}")
    drawn(page)
    assert page.text_content("#run-status") == "diverged"
    error = page.text_content("#run-error")
    assert diverged["error"]["reason"] in error and diverged["error"]["detail"] in error


def test_compare_overlays_classifiers_loss_and_accuracy(open_page: Any,
                                                        api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "blobs", "num_examples": 200, "classes": 3, "spread": 2.5, "seed": 1}).json()
    model = api.post("/v1/models", json={"kind": "logistic", "features": 2,
                                         "classes": 3}).json()
    runs = [api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": epochs,
        "optimizer": {"kind": "sgd", "learning_rate": rate}}).json()
        for epochs, rate in ((12, 0.05), (20, 0.2))]
    assert all(run["status"] == "succeeded" for run in runs), runs

    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/models/{model['id']}")
    drawn(page)
    page.wait_for_function("() => document.querySelector('#compare-chart').dataset.series === '2'")
    assert attr(page, "#compare-chart", "data-measure") == "loss"
    assert attr(page, "#compare-chart", "data-points") == "21"  # epochs 0..19, and 20: final
    options = page.eval_on_selector_all("#compare-measure option", "os => os.map(o => o.value)")
    assert {"loss", "accuracy", "log_loss"} <= set(options)
    page.select_option("#compare-measure", "accuracy")
    page.wait_for_function(
        "() => document.querySelector('#compare-chart').dataset.measure === 'accuracy'")
    assert attr(page, "#compare-chart", "data-series") == "2"
    legend = page.text_content("#compare-chart .u-legend")
    assert runs[0]["id"] in legend and runs[1]["id"] in legend
    # The table reads the accuracy the API stored, epoch by epoch.
    page.click("#compare-chart figcaption button")
    assert page.text_content("#compare-chart-table thead") == "runepochaccuracy"
    history = api.get(f"/v1/runs/{runs[1]['id']}/history", params={"format": "columns"}).json()
    cells = page.eval_on_selector_all(
        "#compare-chart-table tbody tr",
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent))")
    second = [row for row in cells if row[0] == runs[1]["id"]]
    assert [row[2] for row in second[:-1]] == [f"{a:.4f}" for a in history["metrics"]["accuracy"]]
    assert second[-1][1:] == ["20 (final)", f"{runs[1]['final']['metrics']['accuracy']:.4f}"]


def test_the_start_form_works_from_the_keyboard(open_page: Any, api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.select_option("#syn-kind", "moons")  # the MLP's fields are shown
    controls = page.eval_on_selector_all(
        "#start-form input, #start-form select, #start-form button",
        "els => els.filter(e => !e.disabled && e.offsetParent !== null && "
        "(e.type !== 'radio' || e.checked)).map(e => e.id)")
    reached: list[str] = []
    page.evaluate("document.querySelector('#main').focus()")
    for _ in range(len(controls) + 15):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        if focused:
            reached.append(focused)
        if focused == "start-run":
            break
    assert [c for c in controls if c not in reached] == [], reached
    # Typed and submitted from the keyboard alone.
    page.focus("#epochs")
    page.keyboard.press("Control+A")
    page.keyboard.type("5")
    page.focus("#start-run")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/runs/run_*")
    run = api.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert run["epochs"] == 5
    drawn(page)


def test_no_serious_accessibility_violations_on_v2_views(open_page: Any,
                                                         api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 200, "noise": 0.1, "seed": 2}).json()
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [8],
                                         "task": "classification"}).json()
    runs = [api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 10, "validation": {"fraction": 0.25},
        "optimizer": {"kind": "adam", "learning_rate": 0.05}}).json() for _ in range(2)]
    watched = open_page(init_script=axe_script())
    page = watched.page
    found = {}

    def check(view: str) -> None:
        bad = serious_violations(page)
        if bad:
            found[view] = bad

    watched.goto(f"/ui/runs/{runs[0]['id']}")
    drawn(page)
    page.wait_for_selector("#regions-chart canvas.regions")
    for button in page.query_selector_all("figcaption button"):
        button.click()  # every table shown
    check("classification run, tables open")
    watched.goto(f"/ui/models/{model['id']}")
    drawn(page)
    page.wait_for_selector("#compare-measure option[value=accuracy]", state="attached")
    check("model with compare")
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.select_option("#syn-kind", "moons")
    page.check("#dataset-existing")
    check("start form, MLP fields")
    page.check("#dataset-new")
    page.fill("#epochs", "nope")
    page.click("#start-run")
    page.wait_for_selector("#start-problem p")
    check("start form, a problem shown")
    assert not found, found


def test_the_form_trains_a_stored_model_on_a_stored_dataset(open_page: Any,
                                                            api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "circles", "num_examples": 120, "noise": 0.05, "seed": 8}).json()
    model = api.post("/v1/models", json={"kind": "logistic", "features": 2,
                                         "name": "circles-logistic"}).json()
    watched = open_page()
    page = watched.page
    watched.goto("/ui/start")
    page.wait_for_selector("#start-run")
    page.check("#dataset-existing")
    page.select_option("#dataset-id", dataset["id"])
    page.check("#model-existing")
    page.select_option("#model-id", model["id"])
    assert page.is_hidden("#syn-kind") and page.is_hidden("#model-kind")
    page.select_option("#optimizer", "momentum")
    page.fill("#learning-rate", "0.3")
    page.fill("#epochs", "7")
    page.fill("#patience", "2")
    page.click("#start-run")
    page.wait_for_url("**/ui/runs/run_*")
    drawn(page)
    run = api.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert (run["model_id"], run["dataset_id"]) == (model["id"], dataset["id"])
    assert run["optimizer"]["kind"] == "momentum" and run["optimizer"]["learning_rate"] == 0.3
    assert run["epochs"] == 7 and run["early_stopping"]["patience"] == 2
    # A 2-class logistic model has W and b: they are drawn per epoch, and its regions too.
    assert attr(page, "#params-chart", "data-points") == "8"  # and the final state
    page.wait_for_selector("#regions-chart canvas.regions")


def test_a_classification_run_page_on_a_phone(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "blobs", "num_examples": 150, "classes": 4, "seed": 6}).json()
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [8],
                                         "task": "classification", "classes": 4}).json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 20,
        "optimizer": {"kind": "adam", "learning_rate": 0.05}}).json()
    watched = open_page(360, 740)
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    drawn(page)
    page.wait_for_selector("#regions-chart canvas.regions")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
    box = page.locator("#regions-chart canvas.regions").bounding_box()
    assert box is not None and 200 <= box["width"] <= 340
    assert box["height"] == pytest.approx(box["width"], abs=1)  # square
    assert attr(page, "#regions-chart", "data-series") == "4"
    assert len(page.query_selector_all("#regions-chart .legend li")) == 4
    assert len(set(painted_classes(page))) >= 3  # the four blobs' regions, mostly
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "classification-run-page-360x740.png"
    page.locator("#regions-chart").screenshot(path=str(shot))
    image = Image.open(shot).convert("L")
    assert ImageStat.Stat(image).stddev[0] > 10, f"the regions are blank in {shot}"


def test_the_regions_follow_a_training_run_live(open_page: Any, api: httpx.Client) -> None:
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 400, "noise": 0.1, "seed": 12}).json()
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [8],
                                         "task": "classification"}).json()
    # One-example steps for many epochs: still training while the page watches.
    run = api.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 5000, "batch_size": 1}).json()
    watched = open_page()
    page = watched.page
    try:
        watched.goto(f"/ui/runs/{run['id']}")
        shown = "(document.querySelector('#regions-chart')?.dataset.regionsOf || '')"
        page.wait_for_function(f"() => {shown}.startsWith('epoch')", timeout=60_000)
        first = page.evaluate(f"() => {shown}")
        page.wait_for_function(f"() => {shown}.startsWith('epoch') && {shown} !== {first!r}",
                               timeout=60_000)
        assert api.get(f"/v1/runs/{run['id']}").json()["status"] == "running"
    finally:
        api.post(f"/v1/runs/{run['id']}/cancel")
    # Once the run ends, the regions are the model's own /predict answers.
    page.wait_for_selector("main[data-state=drawn]", timeout=60_000)
    assert page.evaluate(f"() => {shown}") == "model"
    assert page.text_content("#run-status") == "cancelled"
