"""Experiments in the dashboard, in a real browser: the runs list's chosen columns, sort and
filter (kept in the URL, an error shown at its column), its dataset links and its layout at
1280 / 1440 px and on a 360-px phone; runs from several models compared (the overlay, the
table of what differs, the parallel-coordinates chart and its brush); names, descriptions
and tags edited on run and model pages."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytestmark = pytest.mark.live

WAIT = {"prefer": "wait=60"}
LR = "params.optimizer.learning_rate"


def sweep(api: httpx.Client, stamp: str) -> list[dict[str, Any]]:
    """Three finished runs of three models (two kinds), named and tagged, with validation."""
    dataset = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 80, "seed": 5, "name": f"moons-{stamp}"}).json()
    runs = []
    for i, (model, lr) in enumerate([({"kind": "mlp", "hidden": [4]}, 0.3),
                                     ({"kind": "mlp", "hidden": [8]}, 0.03),
                                     ({"kind": "logistic"}, 0.1)]):
        body = {**model, "features": 2, "name": f"{stamp}-model{i}"}
        if model["kind"] == "mlp":
            body |= {"task": "classification", "initial": {"random_seed": i}}
        made = api.post("/v1/models", json=body).json()
        run = api.post(f"/v1/models/{made['id']}/runs", headers=WAIT, json={
            "dataset_id": dataset["id"], "epochs": 4 + i, "name": f"{stamp}-run{i}",
            "optimizer": {"kind": "sgd", "learning_rate": lr}, "validation": {"fraction": 0.25},
            "tags": {"sweep": stamp}})
        assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
        runs.append(run.json())
    return runs


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr", "rs => rs.map(r => r.dataset.run)")


def wait_rows(page: Any, expected: list[str]) -> None:
    page.wait_for_function("ids => JSON.stringify([...document.querySelectorAll("
                           "'#runs tbody tr')].map(r => r.dataset.run)) === JSON.stringify(ids)",
                           arg=expected)


def test_runs_list_columns_sort_and_filter_live_in_the_url(open_page: Any,
                                                           api: httpx.Client) -> None:
    stamp = f"list{time.monotonic_ns()}"
    runs = sweep(api, stamp)
    ids = [r["id"] for r in runs]
    watched = open_page()
    page = watched.page
    columns = f"{LR},metrics.val_loss,tags.sweep"
    watched.goto(f"/ui/?filter=tags.sweep = '{stamp}'&columns={columns}")
    wait_rows(page, ids[::-1])  # newest first without a sort
    fields = page.eval_on_selector_all("#runs thead th", "ths => ths.map(t => t.dataset.field)")
    assert fields[-3:] == [LR, "metrics.val_loss", "tags.sweep"]
    shown = page.eval_on_selector_all(f"#runs tbody td[data-field='{LR}']",
                                      "tds => tds.map(t => t.textContent)")
    assert shown == ["0.1000", "0.0300", "0.3000"]
    assert page.text_content("#runs tbody td[data-field='tags.sweep']") == stamp
    # Sort by a chosen column, both ways, from its heading; the URL keeps it.
    page.click(f"#runs thead th[data-field='{LR}'] button")
    wait_rows(page, [ids[1], ids[2], ids[0]])
    assert query(page.url)["sort"] == LR
    assert page.get_attribute(f"#runs thead th[data-field='{LR}']", "aria-sort") == "ascending"
    page.click(f"#runs thead th[data-field='{LR}'] button")
    wait_rows(page, [ids[0], ids[2], ids[1]])
    assert query(page.url)["sort"] == f"-{LR}"
    # A filter of the same language, applied and kept.
    page.fill("#filter", f"tags.sweep = '{stamp}' AND {LR} < 0.2")
    page.click("#apply-filter")
    wait_rows(page, [ids[2], ids[1]])
    kept = query(page.url)
    assert kept["filter"] == f"tags.sweep = '{stamp}' AND {LR} < 0.2"
    assert kept["columns"] == columns and kept["sort"] == f"-{LR}"
    # The URL alone brings all of it back.
    again = open_page()
    again.goto(urlsplit(page.url).path + "?" + urlsplit(page.url).query)
    wait_rows(again.page, [ids[2], ids[1]])
    assert again.page.input_value("#filter") == kept["filter"]
    assert again.page.get_attribute(f"#runs thead th[data-field='{LR}']",
                                    "aria-sort") == "descending"


def test_a_bad_filter_is_shown_at_its_column(open_page: Any, api: httpx.Client) -> None:
    watched = open_page()
    page = watched.page
    # The page asks for the bad filter: its 422 is expected, not an error of the page.
    watched.goto("/ui/")
    page.wait_for_selector("#runs")
    page.fill("#filter", "metrics.val_loss < ")
    page.click("#apply-filter")
    page.wait_for_selector("#filter-caret")
    assert "expected a value after '<' at column 19" in page.text_content("#filter-problem")
    caret_line = page.text_content("#filter-caret").split("\n")[1]
    assert caret_line.index("^") == 18
    assert page.get_attribute("#filter", "aria-invalid") == "true"
    assert page.evaluate("() => document.querySelector('#filter').selectionStart") == 18
    page.fill("#filter", "metrics.vall_loss < 1")
    page.click("#apply-filter")
    page.wait_for_function("() => document.querySelector('#filter-problem').textContent"
                           ".includes(\"did you mean 'metrics.val_loss'\")")
    page.fill("#filter", "")
    page.click("#apply-filter")
    page.wait_for_function("() => document.querySelector('#filter-problem').textContent === ''")
    watched.errors[:] = [e for e in watched.errors if "HTTP 422" not in e
                         and "422 (Unprocessable Entity)" not in e]


@pytest.mark.parametrize("width", [1280, 1440])
def test_the_dataset_is_a_link_and_duration_is_not_clipped(open_page: Any, api: httpx.Client,
                                                           width: int) -> None:
    stamp = f"wide{time.monotonic_ns()}"
    runs = sweep(api, stamp)
    watched = open_page(width=width, height=900)
    page = watched.page
    watched.goto("/ui/")
    page.wait_for_selector(f"#runs tr[data-run='{runs[-1]['id']}']")
    header = page.locator("#runs thead th[data-field='duration_ms']").bounding_box()
    scroller = page.locator(".runs-scroll").bounding_box()
    assert header is not None and scroller is not None
    assert header["x"] + header["width"] <= min(width, scroller["x"] + scroller["width"]) + 0.5
    cell = page.locator(f"#runs tr[data-run='{runs[-1]['id']}'] td.duration")
    assert cell.text_content().endswith(("ms", " s", "min")), cell.text_content()
    link = page.locator(f"#runs tr[data-run='{runs[-1]['id']}'] a.dataset-link")
    assert link.text_content() == f"moons-{stamp}"
    link.click()
    page.wait_for_function("() => location.search.includes('dataset.id')")
    wait_rows(page, [r["id"] for r in runs][::-1])
    assert query(page.url)["filter"] == f"dataset.id = '{runs[0]['dataset_id']}'"


def test_on_a_phone_the_run_column_stays_while_the_others_scroll(open_page: Any,
                                                                 api: httpx.Client) -> None:
    stamp = f"phone{time.monotonic_ns()}"
    runs = sweep(api, stamp)
    watched = open_page(width=360, height=740)
    page = watched.page
    watched.goto(f"/ui/?filter=tags.sweep = '{stamp}'")
    wait_rows(page, [r["id"] for r in runs][::-1])
    first = f"#runs tr[data-run='{runs[0]['id']}']"
    visible = page.eval_on_selector_all(
        f"{first} td", "tds => tds.filter(t => { const b = t.getBoundingClientRect(); "
                       "return b.left >= 0 && b.left < innerWidth - 20; }).length")
    assert visible >= 3
    page.eval_on_selector(".runs-scroll", "s => { s.scrollLeft = s.scrollWidth; }")
    page.wait_for_function("() => document.querySelector('.runs-scroll').scrollLeft > 0")
    sticky = page.locator(f"{first} td.sticky").bounding_box()
    last = page.locator(f"{first} td").last.bounding_box()
    assert sticky is not None and last is not None
    assert sticky["x"] >= 0 and sticky["x"] + sticky["width"] <= 360
    assert last["x"] >= 0 and last["x"] + last["width"] <= 360 + 1
    assert page.locator(f"{first} td.sticky a").text_content() == f"{stamp}-run0"


def test_runs_of_several_models_compared(open_page: Any, api: httpx.Client) -> None:
    stamp = f"cmp{time.monotonic_ns()}"
    runs = sweep(api, stamp)
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/?filter=tags.sweep = '{stamp}'")
    wait_rows(page, [r["id"] for r in runs][::-1])
    assert page.is_disabled("#compare-runs")
    for run in runs:
        page.check(f"#runs tr[data-run='{run['id']}'] input.pick")
    page.click("#compare-runs")
    page.wait_for_url("**/ui/compare?*")
    page.wait_for_selector("main[data-state=drawn]")
    assert query(page.url)["ids"].split(",") == [r["id"] for r in runs]  # as picked
    # The overlay: one series per run, legends by name then id; the metric is chosen.
    overlay = "() => document.querySelector('#compare-overlay').dataset"
    page.wait_for_function(f"{overlay}.series === '3'")
    assert page.get_attribute("#compare-overlay", "data-metric") == "val_loss"
    legend = page.text_content("#compare-overlay .u-legend")
    assert f"{stamp}-run0 · {runs[0]['id']}" in legend
    page.select_option("#compare-metric", "loss")
    page.wait_for_function(f"{overlay}.metric === 'loss'")
    assert query(page.url)["metric"] == "loss"
    # Rows 0-5 of the longest run, then its final model at 6 (after its last epoch); each
    # run's trajectory ends with its final model, ringed, at the epochs it completed.
    assert page.get_attribute("#compare-overlay", "data-points") == str(4 + 2 + 1)
    assert page.get_attribute("#compare-overlay", "data-final") == "4,5,6"
    # The table: only what differs, then every field.
    differing = page.eval_on_selector_all("#compare-table tbody tr",
                                          "rs => rs.map(r => r.dataset.field)")
    assert {"model.kind", "model.hidden", LR, "params.epochs"} <= set(differing)
    assert "params.dtype" not in differing
    page.check("#compare-all")
    page.wait_for_selector("#compare-table tr[data-field='params.dtype'][data-differs=false]")
    assert query(page.url)["fields"] == "all"
    # Parallel coordinates: every run a line; brushing an axis keeps those inside.
    assert page.eval_on_selector_all("#parcoords path.pc-line", "ps => ps.length") == 3
    axes = page.eval_on_selector_all("#parcoords g.pc-axis", "gs => gs.map(g => g.dataset.field)")
    assert LR in axes and axes[-1] == "metrics.loss"
    axis = page.locator(f"#parcoords g.pc-axis[data-field='{LR}'] rect.pc-hit")
    axis.scroll_into_view_if_needed()
    hit = axis.bounding_box()
    assert hit is not None
    x = hit["x"] + hit["width"] / 2
    top = hit["y"] + 2
    page.mouse.move(x, top)
    page.mouse.down()
    page.mouse.move(x, top + 20, steps=4)
    page.mouse.move(x, top + 40, steps=4)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('svg.parcoords').dataset.active === '1'")
    active = page.eval_on_selector_all("#parcoords path.pc-line.active",
                                       "ps => ps.map(p => p.dataset.run)")
    assert active == [runs[0]["id"]]  # the highest learning rate sits at the top
    assert page.text_content("#parcoords-note").startswith("1 of 3 runs")
    page.click("#parcoords-clear")
    page.wait_for_function("() => document.querySelector('svg.parcoords').dataset.active === '3'")


def test_names_descriptions_and_tags_are_edited_on_run_and_model_pages(
        open_page: Any, api: httpx.Client) -> None:
    stamp = f"edit{time.monotonic_ns()}"
    run = sweep(api, stamp)[0]
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/runs/{run['id']}")
    page.wait_for_function("() => document.querySelector('#runs-notes-name').value !== ''")
    assert page.input_value("#runs-notes-tags") == f"sweep={stamp}"
    page.fill("#runs-notes-name", "best so far")
    page.fill("#runs-notes-description", "lr 0.3 wins")
    page.fill("#runs-notes-tags", f"sweep={stamp}\nverdict=keep")
    page.click("#runs-notes-save")
    status = "() => document.querySelector('#runs-notes-status').textContent"
    page.wait_for_function(f"{status} === 'Saved.'")
    stored = api.get(f"/v1/runs/{run['id']}").json()
    assert (stored["name"], stored["description"]) == ("best so far", "lr 0.3 wins")
    assert stored["tags"] == {"sweep": stamp, "verdict": "keep"}
    # Changed elsewhere meanwhile: the page says so and overwrites nothing.
    api.patch(f"/v1/runs/{run['id']}", json={"description": "from elsewhere"})
    page.fill("#runs-notes-tags", "")
    page.click("#runs-notes-save")
    page.wait_for_function(f"{status}.startsWith('Changed elsewhere')")
    assert api.get(f"/v1/runs/{run['id']}").json()["tags"] == {"sweep": stamp,
                                                              "verdict": "keep"}
    watched.errors[:] = [e for e in watched.errors if "HTTP 412" not in e
                         and "412 (Precondition Failed)" not in e]
    model = open_page()
    model.goto(f"/ui/models/{run['model_id']}")
    model.page.wait_for_function(
        "() => document.querySelector('#models-notes-name').value !== ''")
    model.page.fill("#models-notes-tags", "family=moons")
    model.page.click("#models-notes-save")
    model.page.wait_for_function(
        "() => document.querySelector('#models-notes-status').textContent === 'Saved.'")
    assert api.get(f"/v1/models/{run['model_id']}").json()["tags"] == {"family": "moons"}


def test_no_serious_accessibility_violations_on_the_new_pages(open_page: Any,
                                                              api: httpx.Client) -> None:
    from tests.support.node import node_modules

    stamp = f"axe{time.monotonic_ns()}"
    runs = sweep(api, stamp)
    axe = (node_modules("axe-core") / "axe-core" / "axe.min.js").read_text()
    watched = open_page(init_script=axe)  # injected so: the pages' CSP forbids inline scripts
    ids = ",".join(r["id"] for r in runs)
    found = {}
    for path in (f"/ui/?filter=tags.sweep = '{stamp}'&columns={LR},model.hidden",
                 f"/ui/compare?ids={ids}&fields=all"):
        watched.goto(path)
        watched.page.wait_for_selector("main[data-state=drawn]")
        result = watched.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            found[path] = bad
    assert not found, found
