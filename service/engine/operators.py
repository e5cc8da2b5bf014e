"""Python's operators on tensors and variables: each one is an op, attached here.

``x + y`` is ``tg.add(x, y)``, ``x[i]`` is the getitem op, ``x == y`` is
``tg.equal(x, y)`` (elementwise, as in TensorFlow), and so on. The core
(tensor.py) defines Tensor and Variable without them, so that it imports no op;
this module, above both, attaches the ops as the methods of their common base,
and importing the engine imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.engine import ops
from service.engine.tensor import Operand, Tensor


def _reflected(op: Callable[[Any, Any], Tensor]) -> Callable[[Operand, Any], Tensor]:
    """The method for ``other <op> tensor``, when other's type does not know tensors."""

    def method(self: Operand, other: Any) -> Tensor:
        return op(other, self)

    method.__name__ = method.__qualname__ = f"reflected_{op.__name__}"
    method.__doc__ = f"{op.__name__}(other, self)"
    return method


OPERATORS: dict[str, Callable[..., Tensor]] = {
    "__getitem__": ops.getitem,
    "__neg__": ops.negative,
    "__abs__": ops.abs,
    "__add__": ops.add,
    "__radd__": _reflected(ops.add),
    "__sub__": ops.subtract,
    "__rsub__": _reflected(ops.subtract),
    "__mul__": ops.multiply,
    "__rmul__": _reflected(ops.multiply),
    "__truediv__": ops.divide,
    "__rtruediv__": _reflected(ops.divide),
    "__pow__": ops.pow,
    "__rpow__": _reflected(ops.pow),
    "__matmul__": ops.matmul,
    "__rmatmul__": _reflected(ops.matmul),
    "__eq__": ops.equal,
    "__ne__": ops.not_equal,
    "__lt__": ops.less,
    "__le__": ops.less_equal,
    "__gt__": ops.greater,
    "__ge__": ops.greater_equal,
}

for _name, _method in OPERATORS.items():
    setattr(Operand, _name, _method)
