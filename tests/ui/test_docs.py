"""/docs (Swagger UI) and /redoc (ReDoc) work with no internet: every file comes from the
package, nothing is requested from another origin, and they show the API's operations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.live

SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
SUMMARIES = [op["summary"] for path in SPEC["paths"].values() for op in path.values()]


def test_swagger_ui_shows_every_operation(open_page: Any) -> None:
    watched = open_page()
    watched.goto("/docs")
    page = watched.page
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() == len(SUMMARIES)
    text = page.text_content("#swagger-ui") or ""
    assert all(summary in text for summary in SUMMARIES)
    page.click("text=Start a training run")  # an operation opens, with its example body
    page.wait_for_selector(".opblock.is-open .body-param__example, .opblock.is-open .example")
    watched.check()


def test_redoc_shows_every_operation(open_page: Any) -> None:
    watched = open_page()
    watched.goto("/redoc")
    page = watched.page
    page.wait_for_selector("[data-section-id^='tag/runs']")
    text = page.text_content("#redoc") or ""
    assert all(summary in text for summary in SUMMARIES)
    watched.check()
