"""The search's one error: a filter, sort or cursor the store cannot take, and where."""

from __future__ import annotations


class QueryError(ValueError):
    """A query parameter (``param``: ``filter``, ``sort``, ``cursor``, ``metric``) that is
    malformed or names what does not exist; ``column`` (1-based) is where in its text, and
    ``message`` says what was expected there (the API answers a 422 naming both)."""

    def __init__(self, param: str, column: int, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.column = column
        self.message = message
