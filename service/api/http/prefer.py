"""RFC 7240 ``Prefer`` headers: the preferences a request states. Unknown, malformed and
over-long preferences are ignored (a preference is never a reason to refuse a request)."""

from __future__ import annotations

import math
import re

# A preference longer than this is ignored, whatever it says.
MAX_PREFERENCE = 200

_ITEM = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PREFERENCE = re.compile(rf'\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|"(?:[^"\\]|\\.)*"))?\s*(?:;.*)?')


def preferences(header: str | None) -> dict[str, str]:
    """Each preference's value by lower-cased name (``""`` when it has none); the first of a
    name counts, as RFC 7240 says."""
    found: dict[str, str] = {}
    for item in _ITEM.findall(header or ""):
        match = _PREFERENCE.fullmatch(item)
        if len(item) > MAX_PREFERENCE or match is None:
            continue
        name, value = match[1].lower(), match[2] or ""
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.setdefault(name, value)
    return found


def wait_seconds(header: str | None, limit: float) -> float | None:
    """The ``wait`` preference in seconds (any decimal number), capped at ``limit``; ``None``
    when there is none or it is not a non-negative number."""
    value = preferences(header).get("wait")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, limit)


def decimal(seconds: float) -> str:
    """``60``, ``2.5``: seconds as ``Preference-Applied`` reports them."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
