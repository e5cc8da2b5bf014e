"""The format registry, the record every format writes, and reading a file of unknown format."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from service.export import bounded_json
from service.training.kinds import Kind

FORMAT_TAG = "tapeline.model/1"


@dataclass(frozen=True)
class Bundle:
    """A model as a file holds it: its kind, every named param (float64) and its provenance
    (``model_id``, ``name``, ``run_id``, ``tapeline_version``, ``class_names``, ...)."""

    kind: Kind
    params: Mapping[str, np.ndarray]
    provenance: Mapping[str, Any] = field(default_factory=dict)


class FileProblem(ValueError):
    """A model file that cannot be read: ``status`` 415 (not a model file of a known format)
    or 422 (a known format, but wrong inside); ``loc`` names where."""

    def __init__(self, status: int, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.status, self.loc, self.msg = status, loc, msg


@dataclass(frozen=True)
class Limits:
    """What a model file may hold, from the service's limits: a model's numbers
    (``params``), its class names (``classes``) and its named arrays (``tensors``). The
    bounds of its JSON and of a safetensors header follow from them, so a file is judged
    from its size and separators before it is parsed."""

    params: int = 1_000_000
    classes: int = 1000
    tensors: int = 64

    def document(self) -> bounded_json.Bounds:
        """A JSON model file: its params' numbers, its class names and some provenance."""
        return bounded_json.Bounds(values=self.params + 8 * self.classes + 4096)

    def header(self) -> bounded_json.Bounds:
        """A safetensors header: each tensor's entry, and the metadata's strings (the JSON
        texts of the config and the provenance, whose separators count too)."""
        return bounded_json.Bounds(values=16 * self.tensors + 8 * self.classes + 4096,
                                   string_chars=self.header_bytes())

    def metadata(self) -> bounded_json.Bounds:
        """The JSON texts inside a safetensors header's metadata (config, provenance)."""
        return bounded_json.Bounds(values=8 * self.classes + 4096)

    def header_bytes(self) -> int:
        """The largest safetensors header of an honest export: a few hundred bytes a tensor,
        and each class name written twice escaped (up to 14 bytes a character)."""
        return 65_536 + 256 * self.tensors + 3_000 * self.classes


@dataclass(frozen=True)
class Tensor:
    """A param as a file holds it, not yet converted: its shape, its type as the file names
    it, and how to read it as float64 (called only once its name and shape were checked)."""

    shape: tuple[int, ...]
    dtype: str
    load: Callable[[], np.ndarray]


@dataclass(frozen=True)
class Parsed:
    """What a reader found in a file, not yet checked to make a model: the kind's name, its
    config, the named params (unread), the provenance and the format's name."""

    kind: str
    config: dict[str, Any]
    params: dict[str, Tensor]
    provenance: dict[str, Any]
    format: str = ""

    def arrays(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """The params as float64 arrays, once every name and shape the file declares is
        the one ``shapes`` (the kind's) expects: a 422 names the first that is not, before
        a byte of any param is converted."""
        loc: list[str | int] = ["file", "params"]
        for name in self.params:
            if name not in shapes:
                raise FileProblem(422, [*loc, name], f"the model has no param {name!r} (it "
                                                     f"has {', '.join(shapes)})")
        for name, shape in shapes.items():
            found = self.params.get(name)
            if found is None:
                raise FileProblem(422, [*loc, name], f"missing: shape {list(shape)}")
            if found.shape != shape:
                raise FileProblem(422, [*loc, name], f"expected shape {list(shape)}, got "
                                                     f"{list(found.shape)}")
        arrays = {name: self.params[name].load() for name in shapes}
        finite_params(arrays, loc)
        return arrays


@dataclass(frozen=True)
class Format:
    """One file format: its media type and file extension, its writer and (if models can be
    imported from it) its reader and a test of whether bytes look like it."""

    name: str
    media_type: str
    extension: str
    write: Callable[[Bundle], bytes]
    read: Callable[[bytes, Limits], Parsed] | None = None
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


def loads(text: bytes, bounds: bounded_json.Bounds,
          loc: list[str | int] | None = None) -> Any:
    """Strict JSON (UTF-8, no NaN or Infinity tokens) within ``bounds``, as the part of the
    file at ``loc`` (the file itself by default)."""
    where: list[str | int] = loc or ["file"]
    try:
        return bounded_json.loads(text, bounds)
    except bounded_json.Refused as refused:
        raise FileProblem(422, [*where, *refused.loc], refused.msg) from refused
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileProblem(422, where, f"is not valid JSON ({error})"[:200]) from error


def is_finite_number(value: Any) -> bool:
    """A JSON number that is finite (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format to the registry."""
    FORMATS[fmt.name] = fmt
    return fmt


PICKLE_MAGIC = (b"\x80", b"(", b"c__builtin__", b"cnumpy")


def read_bundle(data: bytes, limits: Limits | None = None) -> Parsed:
    """A model file of whichever importable format it is, read within ``limits``; 415 for
    pickles and for bytes that are no known format, 422 for a known format that is wrong
    inside. The formats are detected first: a safetensors file starts with its header's size,
    whose first byte may be any (``\\x80`` and ``(`` included), so the pickle sniff only
    names what no format claimed."""
    for fmt in FORMATS.values():
        if fmt.read is not None and fmt.sniff is not None and fmt.sniff(data):
            return replace(fmt.read(data, limits or Limits()), format=fmt.name)
    if data.startswith(PICKLE_MAGIC):
        raise FileProblem(415, ["file"], "looks like a Python pickle, which is never loaded: "
                                         "import a .safetensors or .json model file")
    raise FileProblem(415, ["file"], "is neither a safetensors nor a Tapeline JSON model file")
