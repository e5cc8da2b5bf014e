"""Delivery's parts without a server: which URLs and addresses a webhook may go to (the hosts
file tests use included), the retry schedule (backoff, jitter, 3 days, 410, pings), and the
Standard Webhooks headers, verified by the ``standardwebhooks`` library, with the previous
secret signing beside the new one."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.jobs.webhooks import targets
from service.jobs.webhooks.schedule import DELAYS_SECONDS, delay, plan
from service.jobs.webhooks.send import outcome_of, signed_headers
from service.store.deliveries import Attempted, Claimed
from service.store.repo import now
from service.store.secrets import new_secret


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/x", "http:// or https://"),
    ("/relative/path", "http:// or https://"),
    ("hooks.example.com/x", "http:// or https://"),
    ("https://", "must name a host"),
    ("https://user:pw@hooks.example.com/", "credentials"),
    ("https://hooks.example.com:99999/", "not a valid URL"),
    ("https://hooks.example.com/a b", "whitespace"),
    ("https://example.com/" + "x" * 2048, "longer than 2048"),
])
def test_urls_that_are_not_absolute_http_are_refused(url: str, why: str) -> None:
    with pytest.raises(targets.Refused, match=why):
        targets.parse(url)


def test_a_url_is_reached_at_its_address_with_its_host_header() -> None:
    target = targets.parse("https://Hooks.Example.com:8443/in?x=1")
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?x=1")
    assert target.at(ip_address("93.184.216.34")) == "https://93.184.216.34:8443/in?x=1"
    assert target.host_header == "hooks.example.com:8443"
    six = targets.parse("http://[2606:4700::1111]/")
    assert six.at(ip_address("2606:4700::1111")) == "http://[2606:4700::1111]:80/"
    assert six.host_header == "[2606:4700::1111]"


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.7", "private"), ("172.16.0.1", "private"), ("fd12::1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "multicast"),
    ("239.1.2.3", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "not a public"), ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a00:1", "private"), ("2002:7f00:1::", "loopback"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
])
def test_non_public_and_metadata_addresses_are_refused(address: str, kind: str) -> None:
    why = targets.refusal(ip_address(address), allow_private=False)
    assert why is not None and kind in why
    allowed = targets.refusal(ip_address(address), allow_private=True)
    assert (allowed is not None) == (kind == "metadata")  # metadata: never


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "1.1.1.1", "2606:4700::1111"):
        assert targets.refusal(ip_address(address), allow_private=False) is None


def test_a_name_is_resolved_at_each_call_hosts_file_first(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    target = targets.parse("http://hook.test:9/x")
    hosts.write_text("# tests only\n93.184.216.34   hook.test other.test\n")
    assert targets.addresses(target, False, hosts) == [ip_address("93.184.216.34")]
    hosts.write_text("127.0.0.1 hook.test\n")  # DNS changed: now it points at loopback
    with pytest.raises(targets.Refused, match=r"hook.test \(127.0.0.1\) is a loopback"):
        targets.addresses(target, False, hosts)
    assert targets.addresses(target, True, hosts) == [ip_address("127.0.0.1")]
    with pytest.raises(targets.Refused, match="loopback"):
        targets.addresses(targets.parse("http://localhost/"), False)
    with pytest.raises(targets.Unresolved):
        targets.addresses(targets.parse("http://no-such-host.invalid/"), False)


def claimed(attempts: int = 0, first: timedelta | None = None,
            event_type: str = "run.succeeded", previous: str | None = None) -> Claimed:
    stamp = now()
    return Claimed("dlv_1", "wh_1", "msg_1", event_type, '{"type":"x"}', "https://h/",
                   "sealed", previous, stamp + timedelta(hours=24) if previous else None,
                   attempts, None if first is None else stamp - first)


def test_retries_back_off_with_jitter_and_give_up_after_three_days() -> None:
    assert [round(delay(k, 1.0, 0.5).total_seconds()) for k in range(8)] == [
        5, 30, 120, 600, 3600, 21600, 21600, 21600]
    assert delay(0, 1.0, 0.0).total_seconds() == pytest.approx(4.0)  # -20 %
    assert delay(0, 1.0, 1.0).total_seconds() == pytest.approx(6.0)  # +20 %
    assert delay(2, 0.01, 0.5).total_seconds() == pytest.approx(1.2)  # the scale
    failed = Attempted(now(), "failed", 500, 3.0, "answered 500")
    later = plan(claimed(attempts=3, first=timedelta(minutes=3)), failed, 1.0)
    assert later.disable is None and later.next_attempt_at is not None
    waited = (later.next_attempt_at - failed.at).total_seconds()
    assert 0.8 * DELAYS_SECONDS[3] <= waited <= 1.2 * DELAYS_SECONDS[3]
    last = plan(claimed(attempts=15, first=timedelta(days=2, hours=20)), failed, 1.0)
    assert (last.next_attempt_at, last.disable) == (None, "failing")
    scaled = plan(claimed(attempts=15, first=timedelta(seconds=3)), failed, 0.00001)
    assert scaled.disable == "failing"  # 3 days scaled are 2.6 s
    gone = plan(claimed(), Attempted(now(), "gone", 410, 1.0, "answered 410"), 1.0)
    assert (gone.next_attempt_at, gone.disable) == (None, "gone")
    ping = plan(claimed(event_type="ping"), failed, 1.0)
    assert (ping.next_attempt_at, ping.disable) == (None, None)
    assert plan(claimed(), Attempted(now(), "succeeded", 204, 1.0), 1.0).next_attempt_at is None


def test_outcomes_of_statuses() -> None:
    assert [outcome_of(s) for s in (200, 204, 299, 301, 410, 429, 500)] == [
        "succeeded", "succeeded", "succeeded", "failed", "gone", "failed", "failed"]


def test_headers_verify_with_the_standard_library_under_either_secret() -> None:
    current, previous = new_secret(), new_secret()
    delivery = claimed()
    headers = signed_headers(delivery, [current, previous], now())
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (current, previous):
        assert Webhook(secret).verify(delivery.body, headers) == {"type": "x"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(delivery.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(current).verify(delivery.body + " ", headers)
    stale = signed_headers(delivery, [current], now() - timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(current).verify(delivery.body, stale)
