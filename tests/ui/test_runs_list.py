"""The dashboard's runs list in a real browser: every column in view at 1280 and 1440 px, each
run a card of labelled values on a 360-px phone, and the dataset a link to its row on the
datasets page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.live

SCREENSHOTS = Path(os.environ.get("TAPELINE_SCREENSHOTS", ROOT / "var" / "screenshots"))
COLUMNS = ["Run", "Status", "Progress", "Model", "Dataset", "Created", "Duration"]


@pytest.fixture(scope="module")
def finished(api: httpx.Client) -> dict[str, Any]:
    """A succeeded run whose model and dataset have long names (the widest cells)."""
    dataset = api.post("/v1/datasets/synthetic",
                       json={"seed": 3, "name": "synthetic line for the runs list"}).json()
    model = api.post("/v1/models", json={"name": "a linear model with a long name"}).json()
    answer = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                      json={"dataset_id": dataset["id"], "epochs": 3})
    assert answer.json()["status"] == "succeeded", answer.text
    return answer.json()


def open_list(open_page: Any, run: dict[str, Any], width: int, height: int) -> Any:
    watched = open_page(width=width, height=height)
    watched.goto("/ui/")
    watched.page.wait_for_selector(f"#runs tr[data-run='{run['id']}'][data-status=succeeded]",
                                   timeout=60_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"runs-list-{width}x{height}.png"
    watched.page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    return watched


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (1440, 900)])
def test_every_column_is_in_view_on_a_desktop(open_page: Any, finished: dict[str, Any],
                                              width: int, height: int) -> None:
    page = open_list(open_page, finished, width, height).page
    fit = page.evaluate("""() => {
        const box = document.querySelector('#runs').closest('.table-scroll');
        const frame = box.getBoundingClientRect();
        return {overflow: box.scrollWidth - box.clientWidth,
                outside: [...document.querySelectorAll('#runs th')]
                    .filter((th) => th.getBoundingClientRect().right > frame.right + 0.5)
                    .map((th) => th.textContent)};
    }""")
    assert fit == {"overflow": 0, "outside": []}, fit


def test_on_a_phone_each_run_is_a_card_of_labelled_values(open_page: Any,
                                                          finished: dict[str, Any]) -> None:
    page = open_list(open_page, finished, 360, 740).page
    cells = page.evaluate("""(id) => {
        const row = document.querySelector(`#runs tr[data-run='${id}']`);
        return [...row.children].map((td) => {
            const box = td.getBoundingClientRect();
            return {label: getComputedStyle(td, '::before').content.replace(/"/g, ''),
                    left: box.left, right: box.right, width: box.width};
        });
    }""", finished["id"])
    assert [c["label"] for c in cells] == COLUMNS
    for c in cells:
        assert c["width"] > 0 and c["left"] >= 0 and c["right"] <= 360, c
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360


def test_the_dataset_is_a_link_to_its_row(open_page: Any, finished: dict[str, Any]) -> None:
    watched = open_list(open_page, finished, 1280, 800)
    link = watched.page.locator(f"#runs tr[data-run='{finished['id']}'] a.dataset-link")
    assert link.text_content() == "synthetic line for the runs list"
    link.click()
    watched.page.wait_for_selector(f"#datasets tr[data-dataset='{finished['dataset_id']}']")
    assert watched.page.evaluate("() => location.pathname + location.hash") == \
        f"/ui/datasets#{finished['dataset_id']}"
    watched.check()
