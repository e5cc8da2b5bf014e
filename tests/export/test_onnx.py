"""The ONNX writer with each kind building its own forward pass: the graphs are byte for byte
those the writer built itself before the kinds owned them, and every kind's file predicts in
onnxruntime as the kind does in the engine."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service import engine as tg
from service.export.formats import Bundle
from service.export.onnx_format import build, write
from service.training.kinds import KINDS, MLP, Kind, Linear, Logistic, Model, probabilities

CASES: dict[str, Kind] = {
    "linear": Linear(3),
    "logistic-2": Logistic(3, 2),
    "logistic-4": Logistic(3, 4),
    "mlp-relu-regression": MLP(3, (4, 5), "relu", "regression"),
    "mlp-tanh-classification": MLP(3, (4,), "tanh", "classification", 3),
    "mlp-sigmoid-binary": MLP(3, (2, 3), "sigmoid", "classification", 2),
}
# sha256 of each case's serialized graph (deterministic), recorded from the writer as it was
# when it held one graph builder per kind itself.
GRAPHS = {
    "linear": "1e7415c6fe69f8e373b303cae22657873cbf3f28ffc29477bfd1161b71cfa60e",
    "logistic-2": "c9fd80cdc419eff3d5d84ceb6ef5f6ec453dfcd068df4f9bac86d8b777e29b16",
    "logistic-4": "539f883ecfc6b9b782a4ed24151287a406cac55cb096687c886d69d9df5d88d7",
    "mlp-relu-regression": "f707acc3d1657361cadb75afbdc7cb2f046acb0ea594b0e0b594d3bed7e76aa1",
    "mlp-tanh-classification":
        "e9b96e054f8428528eeeba99dbff732f6197d616f00cfc518610277f6681f4f6",
    "mlp-sigmoid-binary": "63fe3106e52e175c72756e1a3dca0868874d3770da343706d8e2d79b3c972ac0",
}


def counted(kind: Kind) -> dict[str, np.ndarray]:
    """Params that differ everywhere and need no random generator."""
    return {name: np.arange(math.prod(shape), dtype=np.float64).reshape(shape) / 7 - 0.5
            for name, shape in kind.shapes().items()}


def bundle(kind: Kind, params: dict[str, np.ndarray]) -> Bundle:
    return Bundle(kind, params, {"model_id": "mdl_x", "run_id": "run_y"})


@pytest.mark.parametrize("case", list(CASES))
def test_graphs_are_the_ones_the_writer_built_before(case: str) -> None:
    kind = CASES[case]
    graph = build(bundle(kind, counted(kind))).graph
    assert hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest() == \
        GRAPHS[case]


def test_every_registered_kind_is_covered() -> None:
    assert {kind.name for kind in CASES.values()} == set(KINDS)
    assert all("onnx" in vars(cls) for cls in KINDS.values())


@pytest.mark.parametrize("case", list(CASES))
def test_each_kind_predicts_in_onnxruntime_as_in_the_engine(case: str) -> None:
    kind = CASES[case]
    params = kind.initial(11)
    x = np.random.default_rng(3).normal(0, 2, (50, kind.features)).astype(np.float32)
    proto = onnx.load_from_string(write(bundle(kind, params)))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["kind"], meta["model_id"], meta["run_id"]) == (kind.name, "mdl_x", "run_y")
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"x": x}), strict=True))
    engine = Model(kind, params, dtype="float64")(tg.constant(x.astype(np.float64)))
    if kind.task == "regression":
        assert set(outputs) == {"y"}
        np.testing.assert_allclose(outputs["y"], engine.numpy(), rtol=1e-6, atol=1e-6)
    else:
        expected = probabilities(engine).numpy()
        assert outputs["probabilities"].shape == (50, kind.num_classes)
        np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-6, atol=1e-6)
        assert np.array_equal(outputs["label"], np.argmax(expected, axis=1))
