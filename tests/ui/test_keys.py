"""The dashboard against a server that requires API keys: it asks for one, a wrong key shows
the problem's detail, the right one opens the page and is kept for the browser session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.live

KEY = "tl_" + "dashboard-test-key-0123456789-abcdefghijklmnopq"
WRONG = "tl_" + "not-a-key-anyone-has-0123456789-abcdefghijklmn"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server that requires keys, with ``KEY`` registered as an admin key."""
    folder = tmp_path_factory.mktemp("ui-keys")
    live = start_server(sqlite_url(folder), folder / "server.log", TAPELINE_AUTH="required",
                        TAPELINE_BOOTSTRAP_ADMIN_KEY=KEY)
    yield live
    live.stop()


def test_the_page_asks_for_a_key_shows_a_refusal_then_works(browser: Any,
                                                            keyed: LiveServer) -> None:
    if httpx.get(f"{keyed.url}/v1/runs").status_code != 401:
        pytest.skip("this build serves without API keys (TAPELINE_AUTH comes with tenants)")
    api = httpx.Client(base_url=keyed.url, headers={"Authorization": f"Bearer {KEY}"},
                       timeout=60)
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 42}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                   json={"dataset_id": dataset["id"]}).json()
    refused = httpx.get(f"{keyed.url}/v1/runs/{run['id']}",
                        headers={"Authorization": f"Bearer {WRONG}"}).json()["detail"]

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: r.url.startswith(keyed.url) or errors.append(r.url))
    try:
        page.goto(f"{keyed.url}/ui/runs/{run['id']}")  # the page itself needs no key
        page.wait_for_selector("#key-dialog[open]")
        assert "needs an API key" in page.text_content("#key-problem")
        page.fill("#api-key", WRONG)
        page.click("#key-dialog button[value=use]")
        page.wait_for_selector("#key-problem:has-text('refused')")
        assert refused in page.text_content("#key-problem")
        page.fill("#api-key", KEY)
        page.keyboard.press("Enter")  # the form submits as "Use this key"
        page.wait_for_selector("main[data-state=drawn]", timeout=60_000)
        assert page.text_content("td[data-latest=W]") == f"{run['final']['W'][0]:.4f}"
        assert page.evaluate("sessionStorage.getItem('tapeline.api-key')") == KEY
        # Other views reuse the kept key: no second prompt.
        page.click("nav a[href='/ui/']")
        page.wait_for_selector(f"#runs tr[data-run='{run['id']}']")
        assert not page.is_visible("#key-dialog")
    finally:
        context.close()
    assert not errors, errors
