"""The dashboard on a server that requires API keys: it asks for a key when the API answers
401, says so when a key is refused, and works once a good key is entered (showing only that
key's tenant's runs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.live

ADMIN = "tl_" + "K" * 43


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server that requires keys (replaces the dashboard tests' keyless one)."""
    folder = tmp_path_factory.mktemp("ui-keys")
    live = start_server(sqlite_url(folder), folder / "server.log", TAPELINE_AUTH="required",
                        TAPELINE_BOOTSTRAP_ADMIN_KEY=ADMIN)
    yield live
    live.stop()


def key_of(server: LiveServer, tenant: str) -> str:
    answer = httpx.post(f"{server.url}/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                        json={"tenant": tenant, "scopes": ["read", "write"]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def finished_run(server: LiveServer, key: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as api:
        dataset = api.post("/v1/datasets/synthetic", json={"seed": 7}).json()
        model = api.post("/v1/models").json()
        run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                       json={"dataset_id": dataset["id"], "epochs": 3})
        assert run.status_code == 200, run.text
        return dict(run.json())


def test_the_dashboard_asks_for_a_key_and_works_with_it(open_page: Any,
                                                        server: LiveServer) -> None:
    key = key_of(server, "team-ui")
    mine = finished_run(server, key)
    theirs = finished_run(server, key_of(server, "team-other"))
    watched = open_page()
    page = watched.page
    watched.goto("/ui/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    assert "needs an API key" in page.inner_text("#key-problem")
    page.fill("#api-key", "tl_" + "w" * 43)
    page.click("#key-dialog button[value=use]")
    page.wait_for_function(
        "() => document.querySelector('#key-problem').textContent.includes('refused')")
    assert "unknown" in page.inner_text("#key-problem")
    assert "w" * 43 not in page.inner_text("#key-problem")
    page.fill("#api-key", key)
    page.click("#key-dialog button[value=use]")
    page.wait_for_selector(f"#runs tr[data-run='{mine['id']}']")
    assert dialog.is_hidden()
    assert page.locator(f"#runs tr[data-run='{theirs['id']}']").count() == 0
    # The key is kept for this browser session: a run's page opens without asking again.
    watched.goto(f"/ui/runs/{mine['id']}")
    page.wait_for_selector("main[data-state=drawn]", timeout=120_000)
    assert dialog.is_hidden()
    # The 401s that made the dashboard ask were expected; anything else still fails the test.
    expected = re.compile(r"(HTTP 401: |console: Failed to load resource: .*401)")
    watched.errors[:] = [e for e in watched.errors if not expected.search(e)]
