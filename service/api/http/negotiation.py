"""Content negotiation: pick the media type an ``Accept`` header prefers among those offered."""

from __future__ import annotations

from collections.abc import Sequence


def _parse(accept: str) -> list[tuple[str, float, int]]:
    ranges = []
    for index, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality, index))
    return ranges


def _specificity(media_range: str, offer: str) -> int | None:
    if media_range == offer:
        return 2
    kind, _, sub = media_range.partition("/")
    if sub == "*" and offer.startswith(kind + "/"):
        return 1
    if media_range in ("*/*", "*"):
        return 0
    return None


def choose(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the header ranks highest (ties: the order of ``offers``); the first offer
    when there is no header; ``None`` when it accepts none of them."""
    if not accept or not accept.strip():
        return offers[0]
    ranges = _parse(accept)
    best: tuple[float, int] | None = None
    chosen = None
    for position, offer in enumerate(offers):
        matches = [
            (spec, q) for media, q, _ in ranges if (spec := _specificity(media, offer)) is not None
        ]
        if not matches:
            continue
        quality = max(matches)[1]
        if quality <= 0:
            continue
        key = (quality, -position)
        if best is None or key > best:
            best, chosen = key, offer
    return chosen
