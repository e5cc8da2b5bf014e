"""The dashboard's webhooks page in a real browser: an endpoint made from the form (its secret
shown once, then never), its events chosen from what the server offers, a ping, a run's
events in its delivery log, a filter, redelivery, disabling and enabling; a receiver on a
loopback port verifies every request's signature; axe-core finds nothing serious."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.node import node_modules
from tests.support.receiver import Receiver
from tests.support.servers import LiveServer, sqlite_url, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server that may deliver to the receiver on loopback."""
    folder = tmp_path_factory.mktemp("ui-webhooks")
    live = start_server(sqlite_url(folder), folder / "server.log",
                        TAPELINE_WEBHOOK_ALLOW_PRIVATE="true", TAPELINE_WORKERS="1")
    yield live
    live.stop()


def test_an_endpoint_made_pinged_and_its_log_redelivered_from_the_page(
        open_page: Any, api: Any) -> None:
    receiver = Receiver().start()
    try:
        watched = open_page(init_script=(node_modules("axe-core") / "axe-core" /
                                         "axe.min.js").read_text())
        watched.goto("/ui/webhooks")
        page = watched.page
        assert page.title() == "Webhooks — Tapeline"
        page.fill("#webhook-url", receiver.url)
        options = page.eval_on_selector_all("#webhook-events option", "os => os.map(o => o.value)")
        assert {"*", "run.*", "run.succeeded", "webhook.disabled"} <= set(options)
        page.select_option("#webhook-events", ["run.*"])
        page.fill("#webhook-description", "from the dashboard")
        page.click("#webhook-form button[type=submit]")
        secret = page.text_content("#secret-value", timeout=30_000)
        assert secret is not None and secret.startswith("whsec_")
        receiver.secrets.append(secret)
        hook = page.get_attribute("#webhooks tbody tr", "data-webhook")
        assert hook is not None
        assert api.get(f"/v1/webhooks/{hook}").json()["events"] == ["run.*"]

        page.click(f"tr[data-webhook='{hook}'] button.ping")
        page.wait_for_selector("#delivery-log tr[data-status='succeeded']")
        assert receiver.received[0].type == "ping"

        dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 50}).json()
        model = api.post("/v1/models").json()
        api.post(f"/v1/models/{model['id']}/runs", json={"dataset_id": dataset["id"],
                                                         "epochs": 2},
                 headers={"prefer": "wait=60"})
        receiver.wait_for(lambda got: any(r.type == "run.succeeded" for r in got))
        page.wait_for_function(
            "() => document.querySelectorAll('#delivery-log tr[data-status=succeeded]')"
            ".length >= 4")
        page.select_option("#filter-event_type", "run.succeeded")
        page.wait_for_function(
            "() => document.querySelectorAll('#delivery-log tbody tr').length === 1")
        page.click("#delivery-log button.redeliver")
        receiver.wait_for(lambda got: len([r for r in got if r.type == "run.succeeded"]) == 2)
        ends = receiver.of("run.succeeded")
        assert ends[0].id == ends[1].id

        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, bad

        page.click(f"tr[data-webhook='{hook}'] button.toggle")
        page.wait_for_function(
            f"() => document.querySelector(\"tr[data-webhook='{hook}'] button.toggle\")"
            ".textContent === 'Enable'")
        assert api.get(f"/v1/webhooks/{hook}").json()["enabled"] is False
        page.reload()
        assert secret not in page.content()  # shown once, never again
        page.click(f"tr[data-webhook='{hook}'] button.toggle")
        page.wait_for_function(
            f"() => document.querySelector(\"tr[data-webhook='{hook}'] button.toggle\")"
            ".textContent === 'Disable'")
        # The DELETE's answer is awaited, not only the row's going: a list refresh may drop
        # the row first, and closing the page would then abort the request in flight.
        with page.expect_response(lambda r: r.request.method == "DELETE"
                                  and r.url.endswith(f"/v1/webhooks/{hook}")) as deleted:
            page.click(f"tr[data-webhook='{hook}'] button.delete")
        assert deleted.value.status == 204
        page.wait_for_selector(f"tr[data-webhook='{hook}']", state="detached")
    finally:
        receiver.stop()
    assert receiver.unsigned == 0
