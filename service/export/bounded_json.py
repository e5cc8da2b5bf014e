"""JSON of untrusted model files, parsed within bounds known before a byte of it is parsed.

Python's ``json`` builds every value of a document as an object of its own (a float costs 32
bytes for the 4 of ``0.5,``), so a document's values are counted first from its separators
(every value but the first of a container follows a comma, and every container opens with a
bracket: C-speed counts of the bytes, no parsing) and a document that holds more than a model
file can is refused before it is parsed. While parsing, a number of more than
:data:`NUMBER_CHARS` characters or an integer beyond float64's range is refused as it is
read; after, the nesting's depth and every string (length, and text that can be stored: no
lone surrogate) are checked. Problems are :class:`~service.export.formats.FileProblem`.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

# The longest number a model file needs (float64's longest repr is 24 characters).
NUMBER_CHARS = 400
# The magnitude past which an integer is no float64 (the largest finite one, rounded up).
FLOAT_END = int(sys.float_info.max) + 1

Loc = list[str | int]
# A JSON escape of a UTF-16 surrogate: the one way JSON text can hold a lone one (a raw one
# is not UTF-8, and decoding refuses it).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class Refused(ValueError):
    """A document beyond its bounds or holding text that cannot be stored: ``loc`` names
    where (relative to the document), ``msg`` what (turned into a FileProblem by the
    caller, who knows the document's place in the file)."""

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


@dataclass(frozen=True)
class Bounds:
    """How much one JSON document may hold: ``values`` in all (numbers, strings, arrays and
    objects, counted from its separators), nesting ``depth``, and characters per string."""

    values: int
    depth: int = 64
    string_chars: int = 65_536


def separators(text: bytes) -> int:
    """An upper bound of the values ``text`` holds as JSON, from its bytes alone."""
    return text.count(b",") + text.count(b"[") + text.count(b"{") + 1


def _integer(text: str) -> int:
    if len(text) > NUMBER_CHARS:
        raise Refused([], f"holds an integer of {len(text)} digits")
    value = int(text)
    if abs(value) >= FLOAT_END:
        raise Refused([], "holds an integer beyond the range of float64 (about 1.8e308)")
    return value


def _float(text: str) -> float:
    if len(text) > NUMBER_CHARS:
        raise Refused([], f"holds a number of {len(text)} characters")
    return float(text)  # beyond float64's range: an infinity, refused as not finite


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored or sent as UTF-8 (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        return f"holds a lone surrogate (U+{code:04X}), which is not text"
    return None


def may_hold_surrogates(text: bytes) -> bool:
    """Whether JSON ``text`` escapes a surrogate anywhere (a fast scan of its bytes; most
    text holds no ``\\u`` at all)."""
    return b"\\u" in text and SURROGATE_ESCAPE.search(text) is not None


def first_unstorable(value: Any) -> tuple[Loc, str] | None:
    """Where a parsed JSON value first holds a string (or key) that cannot be stored or sent,
    and why; None when it holds none."""
    stack: list[tuple[Any, Loc]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, str):
            why = unstorable(item)
            if why is not None:
                return loc, why
        elif isinstance(item, dict):
            for key, member in item.items():
                why = unstorable(key)
                if why is not None:
                    return loc, f"has a key that {why}"
                stack.append((member, [*loc, key]))
        elif isinstance(item, list):
            stack.extend((member, [*loc, index]) for index, member in enumerate(item)
                         if isinstance(member, str | list | dict))
    return None


def check(value: Any, bounds: Bounds) -> None:
    """:class:`Refused` at the first string (or key) too long or not text, or where the
    nesting passes ``bounds.depth``."""
    stack: list[tuple[Any, Loc]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if len(loc) > bounds.depth:
            raise Refused(loc, f"nests deeper than {bounds.depth} levels")
        if isinstance(item, str):
            _check_string(item, loc, bounds)
        elif isinstance(item, dict):
            for key, member in item.items():
                _check_string(key, loc, bounds, "has a key that ")
                if isinstance(member, str | list | dict):
                    stack.append((member, [*loc, key]))
        elif isinstance(item, list):
            stack.extend((member, [*loc, index]) for index, member in enumerate(item)
                         if isinstance(member, str | list | dict))


def _check_string(text: str, loc: Loc, bounds: Bounds, prefix: str = "") -> None:
    """A string's checks; a key's problem is told at its object (``prefix`` says it is a
    key's), since the key itself may be what cannot be sent."""
    if len(text) > bounds.string_chars:
        raise Refused(loc, f"{prefix}is a string of {len(text)} characters, more than "
                           f"{bounds.string_chars}")
    why = unstorable(text)
    if why is not None:
        raise Refused(loc, f"{prefix}{why}")


def reject_constant(name: str) -> float:
    """``json.loads`` hook: NaN and Infinity are not JSON numbers."""
    raise Refused([], f"holds {name}, which is not a JSON number")


def loads(text: bytes, bounds: Bounds) -> Any:
    """Strict JSON (UTF-8, no NaN or Infinity tokens) within ``bounds``; :class:`Refused`
    beyond them, :class:`ValueError` for what is not JSON."""
    counted = separators(text)
    if counted > bounds.values:
        raise Refused([], f"holds up to {counted} values, more than the {bounds.values} a "
                          f"model file within this service's limits needs")
    value = json.loads(text.decode("utf-8"), parse_constant=reject_constant,
                       parse_int=_integer, parse_float=_float)
    check(value, bounds)
    return value
