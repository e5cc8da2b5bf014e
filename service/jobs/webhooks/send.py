"""One HTTP attempt of a delivery, signed by the Standard Webhooks specification.

The body is the event's, byte for byte, every time; ``webhook-id`` is the event's id (the same
across retries and redeliveries, so receivers can de-duplicate); ``webhook-timestamp`` is the
attempt's time; ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` made by the
``standardwebhooks`` library, with a second signature by the previous secret for 24 hours
after a rotation. The host is resolved and checked at each attempt and the connection made to
the address checked; redirects are not followed, environment proxies not used, and an attempt
ends after ``TAPELINE_WEBHOOK_TIMEOUT_SECONDS`` whatever the receiver does.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import httpx
from standardwebhooks import Webhook

from service import __version__
from service.jobs.webhooks import targets
from service.store.deliveries import Attempted, Claimed
from service.store.repo import now
from service.store.secrets import SecretBox, SecretUnreadable

RESPONSE_BYTES = 1024
USER_AGENT = f"Tapeline-Webhooks/{__version__}"


def signed_headers(claimed: Claimed, secrets: list[str], at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of an attempt at ``at``: one signature per secret."""
    signatures = " ".join(Webhook(secret).sign(claimed.event_id, at, claimed.body)
                          for secret in secrets)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


def outcome_of(status: int) -> str:
    """An answer's outcome: any 2xx succeeds, 410 Gone is ``gone``, the rest ``failed``."""
    if 200 <= status < 300:
        return "succeeded"
    return "gone" if status == 410 else "failed"


class Sender:
    """Makes attempts: resolves and checks the host, signs, posts, reads the first KiB."""

    def __init__(self, box: SecretBox, timeout: float, allow_private: bool,
                 hosts_file: Path | None, concurrency: int) -> None:
        self.box, self.timeout = box, timeout
        self.allow_private, self.hosts_file = allow_private, hosts_file
        self.client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=concurrency * 2,
                                max_keepalive_connections=concurrency))

    async def close(self) -> None:
        await self.client.aclose()

    def secrets(self, claimed: Claimed, at: datetime) -> list[str]:
        """The secrets that sign now: the current one, and the previous one while valid."""
        found = [self.box.open(claimed.secret)]
        if (claimed.previous_secret is not None and claimed.previous_until is not None
                and at < claimed.previous_until):
            found.append(self.box.open(claimed.previous_secret))
        return found

    async def attempt(self, claimed: Claimed) -> Attempted:
        """One attempt, whatever happens: what it found."""
        at, started = now(), time.perf_counter()

        def ended(outcome: str, error: str | None = None, status: int | None = None,
                  response: str | None = None) -> Attempted:
            return Attempted(at, outcome, status, round((time.perf_counter() - started) * 1000,
                                                        3), error, response)

        try:
            target = targets.parse(claimed.url)
            found = await asyncio.to_thread(targets.addresses, target, self.allow_private,
                                            self.hosts_file)
            headers = {**signed_headers(claimed, self.secrets(claimed, at), at),
                       "host": target.host_header}
        except targets.Refused as error:
            return ended("refused", f"refused: {error}")
        except (targets.Unresolved, SecretUnreadable) as error:
            return ended("error", str(error))
        try:
            async with asyncio.timeout(self.timeout):
                status, response = await self._post(target, found, headers, claimed.body)
        except TimeoutError:
            return ended("error", f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            return ended("error", f"{type(error).__name__}: {error}"[:500])
        outcome = outcome_of(status)
        if outcome == "succeeded":
            return ended(outcome, None, status, response)
        redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
        return ended(outcome, f"answered {status}{redirect}", status, response)

    async def _post(self, target: targets.Target, found: list[targets.Address],
                    headers: dict[str, str], body: str) -> tuple[int, str]:
        """Post to each address in turn until one connects: the status and the answer's first
        KiB."""
        extensions = {}
        if target.scheme == "https":
            # TLS to the address checked, verified for the URL's host; and a connection of
            # its own (pooled by address, it could carry another host's requests later).
            extensions = {"sni_hostname": target.host}
            headers = {**headers, "connection": "close"}
        for index, address in enumerate(found):
            try:
                request = self.client.build_request("POST", target.at(address), headers=headers,
                                                    content=body.encode(),
                                                    extensions=extensions)
                response = await self.client.send(request, stream=True)
            except httpx.ConnectError:
                if index == len(found) - 1:
                    raise
                continue
            try:
                first = b""
                async for chunk in response.aiter_raw():
                    first += chunk
                    if len(first) >= RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
            return response.status_code, first[:RESPONSE_BYTES].decode("utf-8", "replace")
        raise httpx.ConnectError("no address to connect to")
