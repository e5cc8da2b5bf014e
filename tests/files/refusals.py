"""What the parser tests share: small limits, and a check that a parser refuses its input with
the problem it names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.config import Settings
from service.files.errors import InvalidData
from service.files.limits import Limits

# Limits small enough that a test passes them with a few bytes.
SETTINGS = Settings(max_examples=100, max_features=4, max_values=200, max_classes=3)
LIMITS = Limits.of(SETTINGS)


def refused(parse: Callable[..., Any], *args: Any, loc: list[str | int],
            words: str) -> InvalidData:
    """Call ``parse(*args)``; assert it raises :class:`InvalidData` at ``loc`` whose message
    holds ``words`` (case-insensitive)."""
    with pytest.raises(InvalidData) as caught:
        parse(*args)
    assert caught.value.status == 422
    assert caught.value.loc == loc, caught.value
    assert words.lower() in caught.value.msg.lower(), caught.value.msg
    return caught.value
