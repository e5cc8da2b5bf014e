"""The dataset limits (examples, features, values) a file is judged against, from the settings,
checked from what a file declares before its data is read."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.files.errors import InvalidData, Loc


@dataclass(frozen=True)
class Limits:
    """The dataset limits an upload is judged against."""

    examples: int
    features: int
    values: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits in ``settings``."""
        return cls(settings.max_examples, settings.max_features, settings.max_values)

    def check(self, loc: Loc, examples: int, features: int) -> None:
        """422 when (examples x features) passes a limit."""
        if examples > self.examples:
            raise InvalidData(loc, f"{examples} examples exceed the limit of {self.examples}")
        if features > self.features:
            raise InvalidData(loc, f"{features} features exceed the limit of {self.features}")
        if examples * features > self.values:
            raise InvalidData(
                loc, f"{examples * features} values exceed the limit of {self.values}"
            )
