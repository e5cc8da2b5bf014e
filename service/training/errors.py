"""The domain error of a spec that does not fit: where it is wrong and why, in words a client
reads (the API answers it as a 422 problem naming the field)."""

from __future__ import annotations


class SpecError(ValueError):
    """A model or run spec that does not fit: ``location`` names the field as a path from the
    request's root (``("body", "early_stopping", "monitor")``), ``message`` says why."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(part) for part in location)}: {message}")
        self.location = location
        self.message = message
