"""ONNX (opset 17, IR version 8, built with the ``onnx`` helper API): input ``x`` float32
[N, F]; outputs ``y`` [N] for regression, ``probabilities`` [N, K] and ``label`` [N] (int64)
for classification. The graph computes in float64 (the precision Tapeline predicts in) and
casts its outputs to float32. Each model kind builds its own forward pass (``Kind.onnx``);
this module frames it with the input, the classification head and the model's metadata."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from service.export.formats import Bundle, Format, register
from service.training.kinds import Kind
from service.training.onnx_graph import Graph

OPSET = 17
IR_VERSION = 8


def _classify(kind: Kind, graph: Graph, logits: str) -> str:
    """Class probabilities [N, K] from one sigmoid logit per row or K softmax logits."""
    if kind.outputs > 1:
        return graph.add("Softmax", [logits], axis=1)
    p = graph.add("Unsqueeze", [graph.add("Sigmoid", [logits]),
                                graph.constant("unsqueeze_axes", np.array([1]))])
    q = graph.add("Sub", [graph.constant("one", np.array(1.0)), p])
    return graph.add("Concat", [q, p], axis=1)


def build(bundle: Bundle) -> Any:
    """The ONNX ModelProto of a bundle, checked with ``full_check``."""
    import onnx
    from onnx import TensorProto, helper

    from service import __version__

    kind = bundle.kind
    graph = Graph(dict(bundle.params))
    x = graph.add("Cast", ["x"], to=TensorProto.DOUBLE)
    found = kind.onnx(graph, x)
    if kind.task == "regression":
        graph.add("Cast", [found], "y", to=TensorProto.FLOAT)
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])]
    else:
        probabilities = _classify(kind, graph, found)
        graph.add("Cast", [probabilities], "probabilities", to=TensorProto.FLOAT)
        graph.add("ArgMax", [probabilities], "label", axis=1, keepdims=0)
        outputs = [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                          ["N", kind.num_classes]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", kind.features])]
    onnx_graph = helper.make_graph(graph.nodes, f"tapeline_{kind.name}", inputs, outputs,
                                   graph.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="tapeline",
                              producer_version=__version__,
                              doc_string=f"A Tapeline {kind.name} model")
    provenance = dict(bundle.provenance)
    helper.set_model_props(model, {
        "kind": kind.name,
        "config": json.dumps(kind.config()),
        "tapeline_version": __version__,
        "run_id": str(provenance.get("run_id") or ""),
        "model_id": str(provenance.get("model_id") or ""),
        "provenance": json.dumps(provenance),
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def write(bundle: Bundle) -> bytes:
    """The bundle as ONNX bytes."""
    data: bytes = build(bundle).SerializeToString()
    return data


register(Format("onnx", "application/octet-stream", "onnx", write))
