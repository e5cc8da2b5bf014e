"""The format registry, the record every format writes, and reading a file of unknown format."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from service.training.kinds import Kind

FORMAT_TAG = "tapeline.model/1"


@dataclass(frozen=True)
class Bundle:
    """A model as a file holds it: its kind, every named param (float64) and its provenance
    (``model_id``, ``name``, ``run_id``, ``tapeline_version``, ``class_names``, ...)."""

    kind: Kind
    params: Mapping[str, np.ndarray]
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Parsed:
    """What a reader found in a file, not yet checked to make a model: the kind's name, its
    config, the named params, the provenance and the format's name."""

    kind: str
    config: dict[str, Any]
    params: dict[str, np.ndarray]
    provenance: dict[str, Any]
    format: str = ""


class FileProblem(ValueError):
    """A model file that cannot be read: ``status`` 415 (not a model file of a known format)
    or 422 (a known format, but wrong inside); ``loc`` names where."""

    def __init__(self, status: int, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.status, self.loc, self.msg = status, loc, msg


@dataclass(frozen=True)
class Format:
    """One file format: its media type and file extension, its writer and (if models can be
    imported from it) its reader and a test of whether bytes look like it."""

    name: str
    media_type: str
    extension: str
    write: Callable[[Bundle], bytes]
    read: Callable[[bytes], Parsed] | None = None
    sniff: Callable[[bytes], bool] | None = None


def finite_params(params: Mapping[str, np.ndarray], loc: list[str | int]) -> None:
    """422 naming the first param holding NaN or an infinity."""
    for name, value in params.items():
        if not np.isfinite(value).all():
            raise FileProblem(422, [*loc, name], "holds a number that is not finite")


def provenance_dict(value: Any, loc: list[str | int]) -> dict[str, Any]:
    """``value`` as provenance: a JSON object (or absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FileProblem(422, loc, "must be an object")
    return value


def reject_constant(name: str) -> float:
    """``json.loads`` hook: NaN and Infinity are not JSON numbers."""
    raise FileProblem(422, ["file"], f"holds {name}, which is not a JSON number")


def loads(text: bytes) -> Any:
    """Strict JSON: no NaN / Infinity tokens, UTF-8 only."""
    try:
        return json.loads(text.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileProblem(422, ["file"], f"is not valid JSON ({error})"[:200]) from error


def is_finite_number(value: Any) -> bool:
    """A JSON number that is finite (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format to the registry."""
    FORMATS[fmt.name] = fmt
    return fmt


PICKLE_MAGIC = (b"\x80", b"(", b"c__builtin__", b"cnumpy")


def read_bundle(data: bytes) -> Parsed:
    """A model file of whichever importable format it is; 415 for pickles and for bytes that
    are no known format, 422 for a known format that is wrong inside."""
    if data.startswith(PICKLE_MAGIC):
        raise FileProblem(415, ["file"], "looks like a Python pickle, which is never loaded: "
                                         "import a .safetensors or .json model file")
    for fmt in FORMATS.values():
        if fmt.read is not None and fmt.sniff is not None and fmt.sniff(data):
            return replace(fmt.read(data), format=fmt.name)
    raise FileProblem(415, ["file"], "is neither a safetensors nor a Tapeline JSON model file")
