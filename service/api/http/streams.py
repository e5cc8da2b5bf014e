"""The encodings of a run's live stream: Server-Sent Events (resumable with ``Last-Event-ID``)
and JSON Lines, chosen by ``Accept`` on one path. Items arrive as JSON text from the run feeds
(:mod:`service.api.feeds`) and are encoded once per process, however many clients read."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.sse import format_sse_event
from starlette.routing import Match
from starlette.types import Scope

from service.api.feeds import Item
from service.api.http.negotiation import choose

SSE, JSONL = "text/event-stream", "application/jsonl"
OFFERS = (SSE, JSONL, "application/x-ndjson")


def _accepts(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"accept":
            return str(value.decode("latin-1"))
    return None


class JsonLinesRoute(APIRoute):
    """A route that matches only requests whose ``Accept`` prefers JSON Lines."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and choose(_accepts(scope), OFFERS) not in OFFERS[1:]:
            return Match.NONE, {}
        return match, child


def sse_event(item: Item) -> bytes:
    """An item as one Server-Sent Event (``id`` = its epoch)."""
    epoch = None if item.epoch is None else str(item.epoch)
    return format_sse_event(data_str=item.json, event=item.kind, id=epoch)


def json_line(item: Item) -> bytes:
    """An item as one line of JSON Lines."""
    return item.json.encode() + b"\n"


KEEP_ALIVE = format_sse_event(comment="keep-alive")


class EventStream(StreamingResponse):
    """A ``text/event-stream`` answer that no proxy should buffer or cache."""

    media_type = SSE

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
