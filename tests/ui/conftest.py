"""Browser tests: Debian's chromium driven by Playwright against a live `tapeline serve`.

The browser is installed with apt-get when missing (as root); without it these tests skip,
except in CI (`CI=true`), where a missing browser fails them. Every page a test opens is
watched: a console error, a failed request, a request to another origin or a page without
the Content-Security-Policy header fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.ci import IN_CI
from tests.support.servers import LiveServer, sqlite_url, start_server

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-default-apps", "--disable-extensions"]


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests need chromium in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get (as root) when it is missing."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env,
                       capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium, as root)")
    return CHROMIUM


@pytest.fixture(scope="package")
def browser(chromium: Path) -> Iterator[Any]:
    """A headless chromium for the browser tests. Package-scoped, not session-scoped:
    Playwright's sync API keeps an event loop running on this thread while it is open, and
    ``asyncio.run`` in any later test of the same worker would then fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                              args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on a fresh SQLite file, shared by a module's tests."""
    folder = tmp_path_factory.mktemp("ui")
    live = start_server(sqlite_url(folder), folder / "server.log")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client of the live server."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    origin: str
    errors: list[str] = field(default_factory=list)
    documents: list[Any] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        """Open ``path`` and check its answer carries the CSP header."""
        response = self.page.goto(self.origin + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        policy = response.headers.get("content-security-policy", "")
        assert policy.startswith("default-src 'self'"), f"{path}: CSP {policy!r}"
        return response

    def check(self) -> None:
        """Fail with everything that went wrong so far."""
        assert not self.errors, "\n".join(self.errors)


def watch(page: Any, origin: str) -> Watched:
    """Record console errors, page errors, failed requests, HTTP errors and other origins."""
    watched = Watched(page, origin)
    errors = watched.errors
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"HTTP {r.status}: {r.url}"))

    def other_origin(request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and \
                f"{parts.scheme}://{parts.netloc}" != origin:
            errors.append(f"request to another origin: {request.url}")
    page.on("request", other_origin)
    return watched


@pytest.fixture
def open_page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """``open_page(width=1280, height=800)`` -> a watched page; checked when the test ends."""
    opened: list[tuple[Any, Watched]] = []

    def make(width: int = 1280, height: int = 800, init_script: str | None = None) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        if init_script:
            context.add_init_script(script=init_script)
        page = context.new_page()
        page.set_default_timeout(30_000)
        watched = watch(page, server.url)
        opened.append((context, watched))
        return watched

    yield make
    for context, _ in opened:
        context.close()
    for _, watched in opened:
        watched.check()
