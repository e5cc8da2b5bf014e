"""A webhook receiver for tests: a real HTTP server on a loopback port that verifies every
request's Standard Webhooks signature with the ``standardwebhooks`` library (against each
secret it was given) and records what came; its answers can be scripted (statuses in turn,
or holding a request until released), and it can be stopped and started again on its port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.servers import free_port


@dataclass(frozen=True)
class Received:
    """One request as it came: the headers, the parsed body, whether a signature verified
    and under which of the receiver's secrets, when, and the status answered."""

    headers: dict[str, str]
    body: dict[str, Any]
    verified_by: list[str]
    at: float
    status: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def type(self) -> str:
        return str(self.body["type"])


@dataclass
class Receiver:
    """The server; ``secrets`` are those signatures are checked against, ``script`` the
    statuses to answer in turn (then 200s), and ``hold`` a predicate of the body: a request it
    matches waits until :meth:`release` before it is answered."""

    port: int = field(default_factory=free_port)
    secrets: list[str] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    hold: Callable[[dict[str, Any]], bool] | None = None
    received: list[Received] = field(default_factory=list)
    unsigned: int = 0  # requests whose signature no secret verified

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._released = threading.Event()
        self.holding = threading.Event()  # set while a request is held
        self.held_peer: tuple[str, int] | None = None  # the address it came from
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Listen (again) on the receiver's port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start`)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        """Answer the held requests, and hold none from now on."""
        self.hold = None
        self._released.set()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        raw = request.rfile.read(int(request.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(raw, headers)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        body = json.loads(raw)
        if self.hold is not None and self.hold(body):
            self.held_peer = request.client_address[:2]
            self.holding.set()
            self._released.wait(120)
        with self._lock:
            status = self.script.pop(0) if self.script else 200
            self.received.append(Received(headers, body, verified, time.time(), status))
            if not verified:
                self.unsigned += 1
            self._lock.notify_all()
        request.send_response(status)
        request.send_header("content-type", "text/plain")
        request.end_headers()
        request.wfile.write(f"answered {status}".encode())

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float = 60) -> None:
        """Wait until ``check`` holds of what was received (AssertionError after ``timeout``
        seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"not received in {timeout} s: {[r.type for r in self.received]}")
                self._lock.wait(left)

    def of(self, event_type: str) -> list[Received]:
        """What was received of one type, in order."""
        return [r for r in self.received if r.type == event_type]
