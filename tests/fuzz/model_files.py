"""The fuzz target of the model-file import and the files its corpus starts from (honest
exports of each kind, and every hostile file the bounds issue found), shared by the atheris
fuzzer (``tests/fuzz/imports.py``) and the Hypothesis test."""

from __future__ import annotations

import pickle

import numpy as np

from service.api import model_imports
from service.api.http.problems import ProblemError
from service.config import Settings
from service.export import Bundle, FileProblem, json_format, safetensors_format
from service.export.bounded_json import unstorable
from service.training.errors import SpecError
from service.training.kinds import make_kind
from tests.support.hostile import (
    json_model,
    json_numbers,
    linear_metadata,
    safetensors_file,
    tiny_tensors_safetensors,
    unknown_name_safetensors,
)

# Small limits: a model that passes them is cheap to build, and limits are part of it.
SETTINGS = Settings(max_params=5000, max_classes=16, max_features=16, max_hidden_layers=4,
                    max_layer_width=64)
KINDS = {
    "linear": {"features": 3},
    "logistic": {"features": 2, "classes": 3},
    "mlp": {"features": 2, "hidden": [8, 4], "activation": "tanh", "task": "classification",
            "classes": 3},
}


def one_import(data: bytes) -> None:
    """Import ``data`` as a model file: a refusal (415 or 422) is fine, anything else raised
    is a finding, and so is a model that could not be stored or sent."""
    try:
        found = model_imports.read(data, SETTINGS)
    except (FileProblem, ProblemError) as refusal:
        assert refusal.status in (415, 422), refusal.status
        return
    except SpecError:
        return  # a 422
    assert all(np.isfinite(value).all() for value in found.params.values())
    texts = [found.name or "", *(found.class_names or [])]
    assert not any(unstorable(text) for text in texts)
    assert all(0 < len(name) <= 200 for name in found.class_names or [])


def _exports() -> dict[str, bytes]:
    files = {}
    for name, config in KINDS.items():
        kind = make_kind(name, config)
        classes = kind.num_classes
        provenance = {"model_id": "mdl_1", "name": f"{name} model", "run_id": None,
                      "class_names": [f"c{k}" for k in range(classes)] if classes else None}
        bundle = Bundle(kind, kind.initial(1), provenance)
        files[f"{name}.safetensors"] = safetensors_format.write(bundle)
        files[f"{name}.json"] = json_format.write(bundle)
    return files


def _pickle_like_exports() -> dict[str, bytes]:
    """Honest linear exports whose safetensors header's size begins with a byte the pickle
    sniff took for a pickle (0x80, ``(``): their names' lengths move the size through every
    residue mod 256 (the bounds issue's fifth finding: 8 of 40 exports were refused)."""
    kind = make_kind("linear", KINDS["linear"])
    files: dict[str, bytes] = {}
    for length in range(1, 300):
        bundle = Bundle(kind, kind.initial(1), {"model_id": "mdl_1", "name": "n" * length})
        data = safetensors_format.write(bundle)
        first = data[0]
        if first in (0x80, 0x28) and f"header-{first:#x}.safetensors" not in files:
            files[f"header-{first:#x}.safetensors"] = data
    assert len(files) == 2, sorted(files)
    return files


def seeds() -> dict[str, bytes]:
    """Honest exports of each kind, then the hostile files of the bounds issue (small
    versions of the large ones)."""
    linear = {"W": [1.0, 2.0, 3.0], "b": 0.5}
    words = (np.array([1.5, -2.0], "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return {
        **_exports(),
        **_pickle_like_exports(),
        "bf16.safetensors": safetensors_file({"W": ("BF16", [1], words[:2]),
                                              "b": ("BF16", [], words[2:])}, linear_metadata()),
        "f8.safetensors": safetensors_file({"W": ("F8_E4M3", [1], b"\x01"),
                                            "b": ("F8_E4M3", [], b"\x01")}, linear_metadata()),
        "unknown-name.safetensors": unknown_name_safetensors(0),
        "tiny-tensors.safetensors": tiny_tensors_safetensors(200),
        "surrogate-name.safetensors": safetensors_file(
            {"W": ("F64", [1], bytes(8)), "b": ("F64", [], bytes(8))},
            linear_metadata(name="\ud800")),
        "huge-integer.json": json_model({**linear, "b": int("9" * 400)},
                                        config={"features": 3}),
        "many-digits.json": json_model(linear, config={"features": 3}).replace(
            b'"b": 0.5', b'"b": ' + b"1" * 5000),
        "surrogate-name.json": json_model(linear, config={"features": 3},
                                          provenance={"name": "\ud800"}),
        "surrogate-class.json": json_model(
            {"W": [[0.0, 1.0, 2.0]], "b": [0.0, 0.0, 0.0]}, kind="logistic",
            config={"features": 1, "classes": 3},
            provenance={"class_names": ["\ud800", "b", "c"]}),
        "long-class.json": json_model(
            {"W": [[0.0, 1.0, 2.0]], "b": [0.0, 0.0, 0.0]}, kind="logistic",
            config={"features": 1, "classes": 3},
            provenance={"class_names": ["x" * 1000, "b", "c"]}),
        "many-numbers.json": json_numbers(20_000),
        "pickle": pickle.dumps({"W": [1.0]}),
    }
