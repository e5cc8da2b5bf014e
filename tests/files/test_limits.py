"""Dataset limits are checked from what a file declares."""

from __future__ import annotations

import pytest

from service.files.limits import Limits
from tests.files.refusals import LIMITS, SETTINGS, refused


def test_the_limits_come_from_the_settings() -> None:
    assert Limits.of(SETTINGS) == Limits(examples=100, features=4, values=200)


def test_a_shape_within_every_limit_passes() -> None:
    LIMITS.check(["file"], 50, 4)  # 200 values: exactly the limit
    LIMITS.check(["file"], 100, 2)


@pytest.mark.parametrize(("examples", "features", "words"), [
    (101, 1, "101 examples exceed the limit of 100"),
    (1, 5, "5 features exceed the limit of 4"),
    (67, 3, "201 values exceed the limit of 200"),
])
def test_each_limit_is_refused_by_name(examples: int, features: int, words: str) -> None:
    refused(LIMITS.check, ["file", "x"], examples, features, loc=["file", "x"], words=words)
