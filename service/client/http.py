"""A small HTTP client of the Tapeline API: problems become :class:`Problem` with their
``detail``, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from rich.console import Console

DEFAULT_URL = "http://127.0.0.1:8000"
# The exit status of a command the server refused (or that could not write its file).
REFUSED = 2


def connection_options() -> argparse.ArgumentParser:
    """The options every client command takes: the server and the API key."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("TAPELINE_URL", DEFAULT_URL),
                        help=f"the server (default: TAPELINE_URL or {DEFAULT_URL})")
    common.add_argument("--key", default=os.environ.get("TAPELINE_API_KEY"),
                        help="API key (default: TAPELINE_API_KEY)")
    return common


def api_command(action: Callable[[Api, argparse.Namespace, Console], int]
                ) -> Callable[[argparse.Namespace], int]:
    """A command's entry point: ``action`` with an :class:`Api` of the command's ``--url`` and
    ``--key`` and a console; a refusal or a file that cannot be written is one line on
    stderr and exit status :data:`REFUSED`, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        api = Api(args.url, args.key)
        try:
            return int(action(api, args, Console()))
        except (Problem, OSError) as error:
            print(f"tapeline: {error}", file=sys.stderr)
            return REFUSED
        finally:
            api.close()

    return run


class Problem(Exception):
    """The server refused a request (its problem's ``detail``, ``status`` and field
    ``errors``) or could not be reached (``status`` 0)."""

    def __init__(self, detail: str, status: int = 0,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.errors = status, errors or []


class Api:
    """The server at ``url``, with an API key if given."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to a request; :class:`Problem` for a 4xx/5xx or no answer."""
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise Problem(f"cannot reach {self.url}: {error}") from error
        if answer.status_code >= 400:
            raise _problem(answer)
        return answer

    def raise_for(self, answer: httpx.Response) -> None:
        """:class:`Problem` for a 4xx/5xx answer (read first when streamed)."""
        if answer.status_code >= 400:
            raise _problem(answer)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer to a request."""
        return self.request(method, path, **kwargs).json()

    def events(self, run_id: str, after: int | None) -> Iterator[dict[str, Any]]:
        """A run's events (JSON Lines) from epoch ``after`` on, until its end event."""
        params = {} if after is None else {"after": after}
        try:
            with self.http.stream("GET", f"/v1/runs/{run_id}/events", params=params,
                                  headers={"Accept": "application/jsonl"},
                                  timeout=httpx.Timeout(60.0, read=None)) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise _problem(answer)
                for line in answer.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as error:
            raise Problem(f"lost the stream of run {run_id}: {error}") from error


def _problem(answer: httpx.Response) -> Problem:
    try:
        problem = answer.json()
        errors = problem.get("errors") if isinstance(problem.get("errors"), list) else None
        return Problem(f"{problem['detail']} ({answer.status_code})", answer.status_code, errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Problem(f"{answer.status_code} {answer.reason_phrase}", answer.status_code)
