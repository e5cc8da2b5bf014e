"""An ONNX graph being built: nodes and initializers with fresh names, which each model kind
fills with its forward pass (``Kind.onnx``) and the ONNX writer frames with inputs, outputs
and metadata. The ``onnx`` package is imported only when a graph is built."""

from __future__ import annotations

from typing import Any

import numpy as np


class Graph:
    """Nodes and initializers of an ONNX graph being built, with fresh names for values; the
    params are float64 initializers named as the kind names them."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        from onnx import numpy_helper

        self.nodes: list[Any] = []
        self.initializers = [numpy_helper.from_array(np.asarray(value, dtype=np.float64), name)
                             for name, value in params.items()]
        self._count = 0

    def add(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        """Append a node; its output's name."""
        from onnx import helper

        self._count += 1
        name = output or f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, inputs, [name], name=f"n{self._count}_{op}",
                                           **attrs))
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        """A constant initializer."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def dense(self, h: str, weights: str, bias: str) -> str:
        """``h @ weights + bias``."""
        return self.add("Add", [self.add("MatMul", [h, weights]), bias])
