"""Readiness means the store answers: a real server on PostgreSQL, reached through a TCP relay
this test controls, answers /readyz 503 while the relay is down (the database unreachable)
and 200 again once it is back, while /healthz (liveness) answers 200 throughout. This is the
probe Kubernetes uses to take a replica out of its Service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.servers import LiveServer, free_port, start_server

pytestmark = [pytest.mark.live, pytest.mark.postgres]


class Relay:
    """Forwards connections from a loopback port to PostgreSQL until :meth:`cut`, which
    closes the port and every connection through it; :meth:`restore` opens it again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):  # wakes the accept() blocked on it (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()


@pytest.fixture
def relayed(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Relay, LiveServer]]:
    url = make_url(postgres_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relay.restore()
    through = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    server = start_server(through, tmp_path / "server.log")
    yield relay, server
    server.stop()
    relay.cut()


def wait_for(url: str, status: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while httpx.get(url, timeout=10).status_code != status:
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        time.sleep(0.2)


def test_readiness_fails_while_the_database_is_unreachable(
        relayed: tuple[Relay, LiveServer]) -> None:
    relay, server = relayed
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ok"}
    relay.cut()
    wait_for(f"{server.url}/readyz", 503)
    answer = httpx.get(f"{server.url}/readyz", timeout=10)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "the store is unreachable" in answer.json()["detail"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive: no restart
    relay.restore()
    wait_for(f"{server.url}/readyz", 200)
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ok"}
