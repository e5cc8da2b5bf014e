"""Class names to class indices: string labels become indices into their sorted names."""

from __future__ import annotations

import numpy as np

from service.config import Settings
from service.files.errors import InvalidData


def encode(labels: np.ndarray | list[str], loc: list[str | int],
           settings: Settings) -> tuple[np.ndarray, list[str]]:
    """Indices into the sorted distinct names, and those names; 422 naming ``loc`` for an
    empty name or more classes than ``TAPELINE_MAX_CLASSES``."""
    names, indices = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    if names.size and names[0] == "":
        row = int(np.flatnonzero(indices == 0)[0])
        raise InvalidData([*loc, row], "a class name may not be empty")
    if names.size > settings.max_classes:
        raise InvalidData(loc, f"{names.size} distinct classes exceed the limit of "
                           f"{settings.max_classes} (TAPELINE_MAX_CLASSES){_typo(labels)}")
    return indices.astype(np.int64), names.tolist()


def _typo(labels: np.ndarray | list[str]) -> str:
    """When most labels are numbers, the first that is not (y was meant to hold numbers);
    when all are, that y reads as numbers without ``target_type=categorical``."""
    texts = [str(label) for label in labels]
    numbers = [_is_number(text) for text in texts]
    if sum(numbers) * 2 <= len(texts):
        return ""
    if all(numbers):
        return "; every class name is a number: to read y as numbers (a regression target), " \
               "leave out target_type=categorical"
    index = numbers.index(False)
    return f"; if y holds numbers, {texts[index][:40]!r} (example {index + 1}) is not a number"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
