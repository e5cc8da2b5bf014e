"""The pages' HTTP side, in process: routes, redirects, headers, nothing from elsewhere, and
none of it in the OpenAPI spec."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.api.routes.pages import UI
from tests.support.servers import ROOT

PAGES = ["/ui/", "/ui/start", "/ui/runs/run_0123", "/ui/models/mdl_0123", "/ui/datasets", "/docs",
         "/redoc"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_html_with_a_strict_policy(app_client: TestClient, path: str) -> None:
    answer = app_client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert policy.startswith("default-src 'self';")
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    # No inline script or style, and every referenced file is on this origin.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text)
    assert "<style" not in answer.text and " style=" not in answer.text
    for url in re.findall(r'(?:src|href)="([^"]+)"', answer.text):
        assert url.startswith(("/", "#")), url


def test_deep_links_serve_the_dashboard(app_client: TestClient) -> None:
    page = app_client.get("/ui/").text
    assert app_client.get("/ui/runs/anything").text == page
    assert app_client.get("/ui/models/anything").text == page
    assert app_client.get("/ui/datasets").text == page
    assert app_client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"


def test_browsers_are_sent_from_the_root_to_the_dashboard(app_client: TestClient) -> None:
    browser = app_client.get("/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
                             follow_redirects=False)
    assert browser.status_code == 303 and browser.headers["location"] == "/ui/"
    api = app_client.get("/", headers={"accept": "application/json"})
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"


def test_assets_are_served_with_their_types(app_client: TestClient) -> None:
    module = app_client.get("/ui/assets/js/main.js")
    assert module.status_code == 200
    assert module.headers["content-type"].split(";")[0] in ("text/javascript",
                                                             "application/javascript")
    assert app_client.get("/ui/assets/app.css").headers["content-type"].startswith("text/css")
    assert app_client.get("/ui/assets/nothing.js").status_code == 404


def test_the_pages_are_not_in_the_spec(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p in ("/", "/docs", "/redoc") or p.startswith("/ui")]


def test_the_modules_load_nothing_from_elsewhere() -> None:
    for script in (UI / "assets").rglob("*.js"):
        if "vendor" in script.parts:
            continue
        text = script.read_text()
        assert not re.search(r"""(?:import|from)\s*\(?\s*["']https?:""", text), script
        assert ".innerHTML" not in text and "eval(" not in text, script


def test_the_package_ships_the_ui_files() -> None:
    data = (ROOT / "pyproject.toml").read_text()
    assert '"service.ui"' in data
    for name in ("index.html", "docs.html", "redoc.html", "assets/js/main.js"):
        assert (UI / name).is_file()


def test_every_module_is_preloaded() -> None:
    """The page names every module up front, so the browser fetches them in parallel."""
    page = (UI / "index.html").read_text()
    scripts = [p.relative_to(UI) for p in (UI / "assets").rglob("*.js")
               if "vendor" not in p.parts or p.name == "uPlot.esm.js"]
    for script in scripts:
        if script.name in ("main.js", "docs.js", "redoc.js"):
            continue
        assert f'rel="modulepreload" href="/ui/{script}"' in page, script
