"""Model files' JSON read within bounds known before it is parsed: values counted from the
separators, numbers as they are read, then nesting and strings; and a safetensors header
judged before any data (its size, its tensors' offsets)."""

from __future__ import annotations

import json
import re
import struct

import pytest

from service.export import FileProblem, Limits, read_bundle
from service.export.bounded_json import Bounds, Refused, first_unstorable, loads, separators
from tests.support.hostile import linear_metadata, safetensors_file


def test_values_are_counted_from_the_separators_before_parsing() -> None:
    assert separators(b'{"a": [1, 2, {"b": 3}]}') == 6  # an upper bound of the 5 values
    with pytest.raises(Refused, match="up to 1001 values"):
        loads(b"[" + b"0," * 999 + b"0]", Bounds(values=1000))
    assert loads(b"[" + b"0," * 998 + b"0]", Bounds(values=1000)) == [0] * 999


@pytest.mark.parametrize(("text", "words"), [
    (b"[" + b"9" * 401 + b"]", "401 digits"),
    (b"[" + b"9" * 309 + b"]", "beyond the range of float64"),
    (b"[-" + b"9" * 309 + b"]", "beyond the range of float64"),
    (b"[0." + b"1" * 400 + b"]", "402 characters"),
    (b"[NaN]", "NaN"),
    (b"[" * 70 + b"]" * 70, "deeper than 64"),
    (b'["' + b"x" * 65_537 + b'"]', "65537 characters"),
    (rb'{"a": "\udc00"}', "lone surrogate (U+DC00)"),
    (rb'{"\ud800": 1}', "has a key that holds a lone surrogate"),
])
def test_what_is_refused(text: bytes, words: str) -> None:
    with pytest.raises(Refused, match=re.escape(words)):
        loads(text, Bounds(values=1000))


def test_the_largest_numbers_float64_holds_are_read() -> None:
    big = int(1.7976931348623157e308)
    assert loads(str(big).encode(), Bounds(values=1)) == big
    assert loads(b"[1e308, 5e-324]", Bounds(values=3)) == [1e308, 5e-324]


def test_where_text_cannot_be_stored() -> None:
    assert first_unstorable({"a": [1, {"b": ["ok", "\ud83d"]}]}) == \
        (["a", 1, "b", 1], "holds a lone surrogate (U+D83D), which is not text")
    assert first_unstorable({"a": ["\U0001f600", "é"]}) is None


def linear(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    return safetensors_file(tensors, linear_metadata())


def test_a_header_is_judged_before_any_data() -> None:
    parsed = read_bundle(linear({"W": ("F32", [1], struct.pack("<f", 1.5)),
                                 "b": ("I16", [], struct.pack("<h", -2))}))
    assert {name: (t.shape, t.dtype) for name, t in parsed.params.items()} == \
        {"W": ((1,), "F32"), "b": ((), "I16")}
    assert {k: v.tolist() for k, v in parsed.arrays({"W": (1,), "b": ()}).items()} == \
        {"W": [1.5], "b": -2.0}
    lying = linear({"W": ("F64", [4], bytes(8)), "b": ("F64", [], bytes(8))})
    with pytest.raises(FileProblem, match="not readable safetensors"):
        read_bundle(lying)  # 4 float64 declared in 8 bytes
    header = json.dumps({"__metadata__": linear_metadata(pad="x" * 80_000)}).encode()
    with pytest.raises(FileProblem, match="header takes"):  # past 65,536 + a little
        read_bundle(struct.pack("<Q", len(header)) + header, Limits(classes=2, tensors=2))
