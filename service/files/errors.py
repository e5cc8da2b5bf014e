"""What the parsers raise when they refuse their input: a domain error carrying the HTTP status
it stands for, which the API maps to a problem answer in one place."""

from __future__ import annotations

Loc = list[str | int]


class Refused(Exception):
    """Input the parsers will not read; ``status`` is the 4xx it stands for."""

    status = 400


class InvalidData(Refused):
    """Input of a known kind that is wrong inside: 422 naming where (``loc``, e.g.
    ``["file", "line 3", "x"]``) and what (``msg``)."""

    status = 422

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc, self.msg = loc, msg


class UnsupportedFile(Refused):
    """A file of no kind read here: 415 saying what would be read instead."""

    status = 415

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
