"""What tg.function records while it traces: every NumPy call that computed a traced value.

A trace runs the Python function once, eagerly, on the call's real values. The
tensors it follows (the call's tensor arguments, the variables it reads, and
whatever is computed from them) carry a Node; each NumPy call with a followed
argument becomes a Step (the callable, its arguments as nodes and constants, the
result's node and how the result relates to memory), and each variable
assignment an Assign. A call whose arguments are all constants is not recorded:
its result is a constant of the plan. Reading a followed value into Python
(bool(), float(), numpy(), a shape or axis from a tensor, ...) raises TraceError,
since a plan replays NumPy calls, not Python decisions.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
import operator
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from service.engine.tensor import Array, Shape, Tensor, Variable, wrap

BUFFER = "buffer"  # an array written by the call into a buffer of the plan (out=)
VIEW = "view"  # an array sharing the memory of an argument
VALUE = "value"  # anything else (NumPy scalars, arrays NumPy allocates): rebound every call

_ids = itertools.count(1)
# The engine's folder: a TraceError names the innermost line of code outside it.
_ENGINE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class TraceError(TypeError):
    """What a tg.function does cannot be compiled: raised while it traces, naming the line."""


class Node:
    """A value the plan computes (or takes) on every call: its kind, shape, dtype and layout."""

    __slots__ = ("dtype", "index", "kind", "order", "shape", "strides", "trace")

    def __init__(self, trace: int, index: int, value: Array) -> None:
        self.trace = trace
        self.index = index
        self.kind = "array" if type(value) is np.ndarray else "scalar"
        self.shape: Shape = np.shape(value)
        self.dtype = getattr(value, "dtype", None)
        self.strides: tuple[int, ...] = getattr(value, "strides", ())
        self.order = _order(value) if type(value) is np.ndarray else None

    def __repr__(self) -> str:
        return f"<node {self.index}: {self.kind} {self.shape} {self.dtype}>"


class Const(NamedTuple):
    """A constant argument of a step (a Python object, or the value of an untraced tensor)."""

    value: Any


Ref = Node | Const | tuple[Any, ...]  # a step argument: tuples hold refs (an index with nodes)


class Step(NamedTuple):
    """out = fn(*args, **kwargs), args resolved to refs, computed as mode says."""

    fn: Callable[..., Any]
    args: tuple[Ref, ...]
    kwargs: dict[str, Any]
    out: Node
    mode: str
    base: Ref | None  # for a VIEW, the argument whose memory it shares
    effect: bool  # replayed even when its result is unused (a random draw)


class Assign(NamedTuple):
    """variable.assign(source) (assign_add/sub are a Step then an Assign of its result)."""

    variable: Variable
    source: Node | Const


class _VariableState:
    __slots__ = ("assigned", "initial", "variable")

    def __init__(self, variable: Variable) -> None:
        self.variable = variable
        self.initial: Node | None = None  # the value it holds when a call starts, if read
        self.assigned = False


class Trace:
    """The record of one traced call: its nodes, and its steps and assignments in order.

    It is what the core reports to while tracing (tensor.TraceHook), installed with
    tensor.tracing().
    """

    def __init__(self) -> None:
        self.id = next(_ids)
        self.nodes = itertools.count()
        self.inputs: list[Node] = []
        self.events: list[Step | Assign] = []
        self.variables: dict[int, _VariableState] = {}

    def input(self, value: Array) -> Tensor:
        """A tensor standing for the call's next tensor argument, whose value is value."""
        tensor = wrap(value)
        node = self._node(value)
        self.inputs.append(node)
        tensor._node = node
        return tensor

    def node_of(self, tensor: Tensor) -> Node | None:
        """The node of a tensor this trace follows, else None (a constant)."""
        node: Node | None = getattr(tensor, "_node", None)
        return node if node is not None and node.trace == self.id else None

    def follows(self, tensor: Tensor) -> bool:
        """Whether tensor's value depends on the call (an argument, a variable, a draw)."""
        return self.node_of(tensor) is not None

    def record(self, out: Tensor, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any] | None, effect: bool) -> None:
        """Note that out's value is fn(*args, **kwargs), if an argument is followed."""
        refs, followed = self._refs(args)
        if not (followed or effect):
            return
        value = out._value
        base: Ref | None = None
        if type(value) is np.ndarray:
            for ref, arg in _arrays(refs, args):
                if arg is value:  # fn handed back its argument: the same value
                    if isinstance(ref, Node):
                        out._node = ref
                    return
                if np.may_share_memory(value, arg):
                    base = ref
                    break
        node = self._node(value)
        if type(value) is not np.ndarray:
            mode = VALUE
        elif base is not None:
            mode = VIEW
        elif node.order is not None and accepts_out(fn):
            mode = BUFFER
        else:
            mode = VALUE
        self.events.append(Step(fn, refs, kwargs or {}, node, mode, base, effect))
        out._node = node

    def alias(self, source: Tensor, out: Tensor) -> None:
        """out holds source's value (a new tensor of the same array)."""
        node = self.node_of(source)
        if node is not None:
            out._node = node

    def read(self, variable: Variable) -> None:
        """Note a use of a variable's value: the first, before any assignment, is its initial
        value, taken from the variable on every call. The variable gets a new tensor of that
        value to carry the node: its old tensor, held elsewhere, stays a constant."""
        state = self.variables.get(id(variable))
        if state is None:
            state = self.variables[id(variable)] = _VariableState(variable)
        if state.assigned or state.initial is not None:
            return
        tensor = wrap(variable._tensor._value)
        state.initial = tensor._node = self._node(tensor._value)
        variable._tensor = tensor

    def assign(self, variable: Variable, source: Any, tensor: Tensor) -> None:
        """Note variable.assign(source), where tensor is the variable's new value."""
        state = self.variables.get(id(variable))
        if state is None:
            state = self.variables[id(variable)] = _VariableState(variable)
        state.assigned = True
        node = self.node_of(source) if type(source) is Tensor else None
        if node is None:
            self.events.append(Assign(variable, Const(tensor._value)))
        else:
            tensor._node = node
            self.events.append(Assign(variable, node))

    def check_concrete(self, x: Any, what: str) -> None:
        """Raise if x (a tensor or variable) has a value that depends on the call."""
        if isinstance(x, Variable) or self.follows(x):
            raise error(f"{what} of a traced {'variable' if isinstance(x, Variable) else 'tensor'}",
                        _HINTS.get(what, _HINTS["float()"]))

    def check_static(self, x: Any, what: str) -> None:
        """Raise if x, needed as a Python value while tracing (what says for what, naming x as a
        traced tensor), is a variable or a tensor whose value depends on the call."""
        if isinstance(x, Variable) or (type(x) is Tensor and self.follows(x)):
            raise error(what, "it must be known while tracing: compute it outside, and pass it "
                              "as a Python value")

    def forbid(self, what: str) -> None:
        """Raise: what cannot happen inside a traced function."""
        raise error(what, _HINTS[what])

    def _node(self, value: Array) -> Node:
        return Node(self.id, next(self.nodes), value)

    def _refs(self, args: tuple[Any, ...]) -> tuple[tuple[Ref, ...], bool]:
        refs: list[Ref] = []
        followed = False
        for arg in args:
            if type(arg) is Tensor:
                node = self.node_of(arg)
                if node is None:
                    refs.append(Const(arg._value))
                else:
                    refs.append(node)
                    followed = True
            elif type(arg) is tuple:
                inner, inner_followed = self._refs(arg)
                if inner_followed:
                    refs.append(inner)
                    followed = True
                else:
                    refs.append(Const(tuple(r.value for r in inner)))  # type: ignore[union-attr]
            else:
                refs.append(Const(arg))
        return tuple(refs), followed


def _arrays(refs: tuple[Ref, ...], args: tuple[Any, ...]) -> list[tuple[Ref, np.ndarray]]:
    """The array arguments of a call, each with its ref (tuples flattened)."""
    found = []
    for ref, arg in zip(refs, args, strict=True):
        value = arg._value if type(arg) is Tensor else arg
        if type(value) is np.ndarray:
            found.append((ref, value))
        elif type(arg) is tuple and type(ref) is tuple:
            found.extend(_arrays(ref, arg))
    return found


def _order(value: np.ndarray) -> tuple[int, ...] | None:
    """The axes of a dense array from the largest stride to the smallest, so that a buffer of the
    same layout can be made; None when the array is not dense (a plan cannot reproduce it)."""
    ndim = value.ndim
    if value.flags.c_contiguous:
        return tuple(range(ndim))
    strides, shape = value.strides, value.shape
    order = tuple(sorted(range(ndim), key=lambda axis: -strides[axis]))
    step = value.itemsize
    for axis in reversed(order):
        if shape[axis] != 1 and strides[axis] != step:
            return None
        step *= shape[axis]
    return order


def empty(shape: Shape, dtype: np.dtype, order: tuple[int, ...]) -> np.ndarray:
    """A new array of shape and dtype laid out in memory as order says (see _order)."""
    if order == tuple(range(len(shape))):
        return np.empty(shape, dtype)
    return np.empty([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


_OUT_PARAMETERS: dict[Callable[..., Any], bool] = {}


def accepts_out(fn: Callable[..., Any]) -> bool:
    """Whether fn takes out=, the array to write its result into."""
    if isinstance(fn, np.ufunc) or isinstance(getattr(fn, "__self__", None), np.ufunc):
        return True
    if fn in OUT_UFUNCS:
        return True
    known = _OUT_PARAMETERS.get(fn)
    if known is None:
        try:
            known = "out" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            known = False
        _OUT_PARAMETERS[fn] = known
    return known


# What Python's operators on arrays call: a plan writes their results with out=.
OUT_UFUNCS: dict[Callable[..., Any], np.ufunc] = {
    operator.add: np.add,
    operator.sub: np.subtract,
    operator.mul: np.multiply,
    operator.truediv: np.true_divide,
}

_HINTS = {
    "bool()": "Python control flow on a tensor's value (if, while, and, or) would be decided "
              "once, while tracing; use tg.where, or decide outside and pass a Python argument",
    "float()": "a tensor's value turned into a Python number would keep its first value in "
               "every later call; keep it a tensor, or return it and convert it outside",
    "numpy()": "a tensor's value read into NumPy would keep its first value in every later "
               "call; return the tensor and call numpy() outside",
    "creating a tg.Variable": "create variables (model parameters, optimizer state, a step "
                              "counter) before the first call, and use them inside",
}


def error(what: str, hint: str) -> TraceError:
    """A TraceError naming what cannot be compiled and the line of the traced function."""
    return TraceError(f"tg.function cannot compile {what}{_user_line()}: {hint}")


def _user_line() -> str:
    """' at file:line (`code`)' for the innermost frame outside the engine."""
    frame: Any = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_ENGINE):
        frame = frame.f_back
    if frame is None:
        return ""
    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f" at {frame.f_code.co_filename}:{frame.f_lineno} (`{code}`)"
