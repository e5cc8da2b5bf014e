"""Nests: lists, tuples and dicts of tensors (or of anything), flattened to their leaves and
rebuilt around new ones, as tape.gradient() and tg.function take and return them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_NESTS = (list, tuple, dict)


def flatten(nest: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts, in order."""
    if isinstance(nest, dict):
        nest = list(nest.values())
    elif not isinstance(nest, list | tuple):
        return [nest]
    leaves = []
    for item in nest:
        if isinstance(item, _NESTS):
            leaves.extend(flatten(item))
        else:
            leaves.append(item)
    return leaves


def pack(nest: Any, leaves: list[Any]) -> Any:
    """Rebuild nest's structure around leaves, in order."""
    if type(nest) is list:
        for item in nest:
            if isinstance(item, _NESTS):
                break
        else:
            return leaves  # a flat list, the common case
    return _pack_next(nest, iter(leaves))


def _pack_next(nest: Any, leaves: Iterator[Any]) -> Any:
    if isinstance(nest, list):
        return [_pack_next(item, leaves) for item in nest]
    if isinstance(nest, tuple):
        return tuple(_pack_next(item, leaves) for item in nest)
    if isinstance(nest, dict):
        return {key: _pack_next(value, leaves) for key, value in nest.items()}
    return next(leaves)
