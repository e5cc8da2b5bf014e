"""Tensors, variables, and the hooks through which every op reports itself.

A Tensor wraps a private NumPy value that nothing ever writes to; a Variable
holds a Tensor and swaps in a new one when assigned. Ops compute with NumPy,
wrap the result and report ``(name, output, args)`` to each recording tape;
with no tape recording, that report is a loop over an empty list. A tensor a
tape follows gets a key, unique for the life of the process.

Every NumPy call that computes a tensor's value from other tensors goes through
apply() (or the inlined forms of it in binary() and unary()), so that a
tg.function tracing in the thread records it; the values a trace follows carry a
node. Reading a traced value into Python (bool(), float(), numpy(), ...) raises.

This module is the eager core and imports no other part of the engine. What it
knows of a tape and of a trace is the TapeHook and TraceHook protocols below:
tape.py implements the first, compile/trace.py the second and installs it with
tracing(). Python's operators on tensors (+, *, @, ==, [], ...) are attached by
operators.py, above the ops they call.
"""

from __future__ import annotations

import contextlib
import operator
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

Array: TypeAlias = Any  # a tensor's value: an np.ndarray, or a NumPy scalar at rank 0
Shape: TypeAlias = tuple[int, ...]
DTypeLike: TypeAlias = Any  # anything np.dtype() accepts: "float64", np.float32, tg.float32


class TapeHook(Protocol):
    """What the core tells a recording tape (a GradientTape, see tape.py)."""

    def record(self, name: str, out: Tensor, args: tuple[Any, ...]) -> None:
        """An op: out = name(*args)."""

    def read(self, variable: Variable, tensor: Tensor) -> None:
        """A read of variable, whose value is tensor."""


class TraceHook(Protocol):
    """What the core tells the trace of a tg.function being traced (see compile/trace.py)."""

    def record(self, out: Tensor, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any] | None, effect: bool) -> None:
        """A NumPy call: out's value is fn(*args, **kwargs) (effect: replay it regardless)."""

    def alias(self, source: Tensor, out: Tensor) -> None:
        """out is a new tensor of source's value."""

    def read(self, variable: Variable) -> None:
        """A use of variable's value."""

    def assign(self, variable: Variable, source: Any, tensor: Tensor) -> None:
        """variable.assign(source), tensor being the variable's new value."""

    def follows(self, tensor: Tensor) -> bool:
        """Whether tensor's value depends on the call."""

    def check_concrete(self, x: Operand, what: str) -> None:
        """Raise if Python needs x's value (what: the operation) and the value depends on the
        call."""

    def check_static(self, x: Any, what: str) -> None:
        """Raise if x, needed as a Python value while tracing (what: for what), is traced."""

    def forbid(self, what: str) -> None:
        """Raise: what cannot happen inside a traced function."""


class _Recording(threading.local):
    """Each thread's recording tapes, innermost last (as in TensorFlow, tapes are per thread),
    and the trace of the tg.function being traced in the thread, if any."""

    def __init__(self) -> None:
        self.tapes: list[TapeHook] = []
        self.trace: TraceHook | None = None


_recording = _Recording()

# The traces running in any thread: ops test this (a global, so cheap) before they look up
# their own thread's trace.
TRACES: list[TraceHook] = []


def current_trace() -> TraceHook | None:
    """The trace recording in the calling thread, if any."""
    return _recording.trace


def recording_tapes() -> list[TapeHook]:
    """The tapes recording in the calling thread, innermost last (a tape adds itself)."""
    return _recording.tapes


@contextlib.contextmanager
def tracing(trace: TraceHook) -> Iterator[None]:
    """Within this context, the calling thread's ops report their NumPy calls to trace."""
    TRACES.append(trace)
    _recording.trace = trace
    try:
        yield
    finally:
        _recording.trace = None
        TRACES.remove(trace)


# Arrays with this many elements are worth the bookkeeping that saves their memory:
# recycled result buffers, and tapes holding only the shape of values no rule reads.
LARGE = 1 << 16

_DEFAULT_DTYPES = {"f": np.dtype(np.float32), "i": np.dtype(np.int32), "u": np.dtype(np.int32)}


def as_value(value: Any, dtype: DTypeLike | None = None, copy: bool = False) -> Array:
    """Convert value to a NumPy value the way tf.constant does.

    Python floats and ints become float32 and int32 unless dtype says otherwise;
    NumPy arrays keep their dtype. Tensors and Variables must already have the
    requested dtype: only tg.cast changes a tensor's dtype.
    """
    kind = type(value)
    if kind is np.ndarray and value.dtype.kind in "biufc":  # the common case, one pass
        if dtype is None:
            return np.array(value, copy=True) if copy else value
        dtype = np.dtype(dtype)
        if value.dtype.kind in "fc" and dtype.kind in "biu":
            raise TypeError(f"cannot convert floating-point values to {dtype}; use tg.cast")
        return value.astype(dtype, copy=copy)
    if kind is not Tensor and isinstance(value, Variable):
        value = current(value)
    if isinstance(value, Tensor):
        v = value._value
        if dtype is not None and np.dtype(dtype) != v.dtype:
            raise TypeError(f"expected a {np.dtype(dtype)} tensor, got {v.dtype}; use tg.cast")
        return v
    array = np.array(value, copy=True if copy else None)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"cannot convert {type(value).__name__} of dtype {array.dtype} to a tensor")
    if dtype is None:
        if isinstance(value, np.ndarray | np.generic):
            return array
        dtype = _DEFAULT_DTYPES.get(array.dtype.kind, array.dtype)
    dtype = np.dtype(dtype)
    if array.dtype.kind in "fc" and dtype.kind in "biu":
        raise TypeError(f"cannot convert floating-point values to {dtype}; use tg.cast")
    return array.astype(dtype, copy=False)


def wrap(value: Array) -> Tensor:
    """Make a Tensor of a freshly computed value that nothing else may write to."""
    out = _new_tensor(Tensor)
    out._value = value
    out._key = None
    return out


_new_tensor = object.__new__


def apply(fn: Callable[..., Array], *args: Any, **kwargs: Any) -> Tensor:
    """A tensor of fn(*args, **kwargs), tensors among args (or in tuples there) passing their
    values: how ops compute with NumPy, so that a tracing tg.function records the call."""
    out = _new_tensor(Tensor)
    out._value = fn(*[a._value if type(a) is Tensor else a if type(a) is not tuple
                      else _unwrap(a) for a in args], **kwargs)
    out._key = None
    if TRACES:
        _record(out, fn, args, kwargs)
    return out


def apply2(fn: Callable[[Any, Any], Array], x: Tensor, y: Any) -> Tensor:
    """apply(fn, x, y) for a tensor x and a tensor or constant y (no tuple): ops' hot paths."""
    out = _new_tensor(Tensor)
    out._value = fn(x._value, y._value if type(y) is Tensor else y)
    out._key = None
    if TRACES:
        _record(out, fn, (x, y), None)
    return out


def _unwrap(arg: Any) -> Any:
    if type(arg) is Tensor:
        return arg._value
    if type(arg) is tuple:
        return tuple(map(_unwrap, arg))
    return arg


def draw(fn: Callable[..., Array], *args: Any) -> Tensor:
    """A tensor of fn(*args) for a fn with an effect (a random draw): a trace records it even
    though no argument is a tensor, and replays it on every call."""
    out = wrap(fn(*args))
    if TRACES:
        _record(out, fn, args, None, effect=True)
    return out


def _record(out: Tensor, fn: Callable[..., Array], args: tuple[Any, ...],
            kwargs: dict[str, Any] | None, effect: bool = False) -> None:
    trace = _recording.trace
    if trace is not None:
        trace.record(out, fn, args, kwargs, effect)


def alias(source: Any, out: Tensor) -> Tensor:
    """out, a new tensor of source's value, as a trace sees it: the same value as source."""
    if TRACES and type(source) is Tensor:
        trace = _recording.trace
        if trace is not None:
            trace.alias(source, out)
    return out


def finish(name: str, out: Tensor, args: tuple[Any, ...]) -> Tensor:
    """Report an op, out = name(*args), to every recording tape; return out."""
    for tape in _recording.tapes:
        tape.record(name, out, args)
    return out


def current(variable: Variable) -> Tensor:
    """The tensor holding a variable's value, noted by a tracing tg.function (not a tape read)."""
    if TRACES:
        trace = _recording.trace
        if trace is not None:
            trace.read(variable)
    return variable._tensor


def read(variable: Variable) -> Tensor:
    """Return a variable's current value, letting recording tapes watch the read."""
    if TRACES:
        current(variable)
    tensor = variable._tensor
    for tape in _recording.tapes:
        tape.read(variable, tensor)
    return tensor


def concrete(x: Operand, what: str) -> None:
    """Raise when a tracing tg.function would need x's value in Python (what: the operation)."""
    trace = _recording.trace
    if trace is not None:
        trace.check_concrete(x, what)


def static(x: Any, what: str) -> None:
    """Raise when a tracing tg.function would need x, a tensor, as a Python value (what says
    for what, naming x as a traced tensor)."""
    if TRACES:
        trace = _recording.trace
        if trace is not None:
            trace.check_static(x, what)


def operand(x: Any) -> Tensor:
    """Return x as a Tensor: a Tensor itself, a Variable's value, anything else as a constant."""
    kind = type(x)
    if kind is Tensor:
        return x  # type: ignore[no-any-return]
    if kind is Variable or isinstance(x, Variable):
        return read(x)
    return wrap(as_value(x, copy=True))


def _coerce(x: Any, dtype: np.dtype) -> Any:
    """Give a non-tensor operand the dtype of the tensor it meets (Python numbers stay numbers)."""
    kind = type(x)
    if (kind is float and dtype.kind in "fc") or (kind is int and dtype.kind in "iufc"):
        return x  # NumPy keeps the array's dtype when a Python number meets it
    if kind is float or kind is int:
        raise TypeError(f"cannot use the Python {kind.__name__} {x!r} with a {dtype} tensor")
    return as_value(x, dtype)


def _tensor_of(x: Any, value: Any, dtype: np.dtype) -> Tensor:
    """The Tensor a tape saves for an operand: a copy, immune to later writes to the source."""
    return x if type(x) is Tensor else wrap(np.array(value, dtype=dtype))


# Python's operators compute what these ufuncs compute, ten times faster on NumPy scalars.
# (Not **: on arrays it takes shortcuts, e.g. x ** 2 as square(x), that np.power does not.)
OPERATORS: dict[Any, Callable[[Any, Any], Any]] = {
    np.add: operator.add,
    np.subtract: operator.sub,
    np.multiply: operator.mul,
    np.true_divide: operator.truediv,
}


def binary(name: str, fn: Any, x: Any, y: Any) -> Tensor:
    """Apply a two-argument NumPy ufunc to two broadcast operands of one dtype."""
    if type(x) is Variable or (type(x) is not Tensor and isinstance(x, Variable)):
        x = read(x)
    if type(y) is Variable or (type(y) is not Tensor and isinstance(y, Variable)):
        y = read(y)
    if type(x) is Tensor:
        xv = x._value
        if type(y) is Tensor:
            yv = y._value
            if xv.dtype is not yv.dtype and xv.dtype != yv.dtype:
                raise TypeError(f"{name}: mixed dtypes {xv.dtype} and {yv.dtype}; use tg.cast")
        else:
            yv = _coerce(y, xv.dtype)
    elif type(y) is Tensor:
        yv = y._value
        xv = _coerce(x, yv.dtype)
    else:
        xv = as_value(x)
        yv = _coerce(y, xv.dtype)
    try:
        if ((type(xv) is np.ndarray and xv.size >= LARGE)
                or (type(yv) is np.ndarray and yv.size >= LARGE)):
            value = fn(xv, yv, out=_buffers.for_result(xv, yv))
        else:
            fn = OPERATORS.get(fn, fn)
            value = fn(xv, yv)
    except ValueError:
        raise_if_not_broadcastable(name, np.shape(xv), np.shape(yv))
        raise
    out = _new_tensor(Tensor)
    out._value = value
    out._key = None
    if TRACES:
        _record(out, fn, (x if type(x) is Tensor else xv, y if type(y) is Tensor else yv), None)
    tapes = _recording.tapes
    if tapes and (type(x) is Tensor or type(y) is Tensor):
        dtype = xv.dtype if type(x) is Tensor else yv.dtype
        args = (_tensor_of(x, xv, dtype), _tensor_of(y, yv, dtype))
        for tape in tapes:
            tape.record(name, out, args)
    return out


class _Buffers:
    """Recycles the memory of large results that nothing references any more.

    The first write to a fresh multi-megabyte array costs a page fault per 4 KiB
    page, and glibc hands freed memory that large back to the kernel, so a loop
    that allocates and frees the same few large arrays every step pays those
    faults every step. Keeping a few buffers, and handing out again the ones no
    tensor, view or caller references any more, avoids them.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()

    def for_result(self, x: Any, y: Any) -> np.ndarray | None:
        """A buffer for the elementwise result of x and y, or None (NumPy allocates) when
        their shapes or dtypes differ (broadcasting, mixed kinds)."""
        big, other = (x, y) if type(x) is np.ndarray and x.size >= LARGE else (y, x)
        kind = type(other)
        if big.dtype.kind != "f" or not (
            kind is float or kind is int
            or (other.shape in ((), big.shape) and other.dtype == big.dtype)
        ):
            return None
        return self._take(big.shape, big.dtype)

    def _take(self, shape: Shape, dtype: np.dtype) -> np.ndarray:
        with self._lock:
            buffers = self._buffers
            released = None
            for i in range(len(buffers)):
                if sys.getrefcount(buffers[i]) == 2:  # only this list refers to it
                    buffer = buffers[i]
                    if buffer.shape == shape and buffer.dtype == dtype:
                        buffer.flags.writeable = True  # numpy() may have locked it
                        return buffer
                    released = i
            fresh = np.empty(shape, dtype)
            if len(buffers) < self._capacity:
                buffers.append(fresh)
            elif released is not None:
                buffers[released] = fresh  # forget a released buffer of another shape
            return fresh

    def clear(self) -> None:
        """Forget every buffer (those still referenced elsewhere live on there)."""
        with self._lock:
            self._buffers.clear()


_buffers = _Buffers(capacity=8)


def release_buffers() -> None:
    """Let go of the recycled buffers of large eager results: called once a compiled plan
    takes over from the eager calls it replays, so that a compiled loop does not keep them."""
    _buffers.clear()


def raise_if_not_broadcastable(name: str, *shapes: Shape) -> None:
    """Raise ValueError naming the shapes when they do not broadcast together."""
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{name}: shapes {listed} do not broadcast together") from None


def unary(name: str, fn: Callable[[Array], Array], x: Any, floating: bool = False) -> Tensor:
    """Apply an elementwise NumPy function to one operand (floating: it needs a float dtype)."""
    x = operand(x)
    value = x._value
    if floating and value.dtype.kind not in "fc":
        raise TypeError(f"{name} needs a floating-point tensor, got {value.dtype}; use tg.cast")
    out = _new_tensor(Tensor)
    if type(value) is np.ndarray and value.size >= LARGE and isinstance(fn, np.ufunc):
        out._value = fn(value, out=_buffers.for_result(value, value))
    else:
        out._value = fn(value)
    out._key = None
    if TRACES:
        _record(out, fn, (x,), None)
    return finish(name, out, (x,))


def _show(value: Array) -> str:
    return repr(value) if isinstance(value, np.ndarray) else str(value)


class Operand:
    """What Tensors and Variables share: NumPy-style accessors, and the operators (+, *, ==,
    [], ...) that operators.py attaches."""

    __slots__ = ()
    __array_ufunc__ = None  # ndarray <op> tensor defers to the tensor's reflected operator
    __hash__ = None  # type: ignore[assignment]  # == is elementwise, as in TensorFlow

    _value: Array  # the current value

    @property
    def shape(self) -> Shape:
        """The shape, a tuple of ints."""
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype."""
        return self._value.dtype

    @property
    def ndim(self) -> int:
        """The rank."""
        return self._value.ndim

    def numpy(self) -> Array:
        """The value as a read-only NumPy array (a NumPy scalar at rank 0), without copying."""
        if TRACES:
            concrete(self, "numpy()")
        value = self._value
        if type(value) is np.ndarray:
            value.flags.writeable = False
            if not value.ndim:
                return value[()]  # type: ignore[no-any-return]
        return value

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        value = np.asarray(self.numpy(), dtype=dtype)
        return value.copy() if copy else value

    def __float__(self) -> float:
        if TRACES:
            concrete(self, "float()")
        return float(self._value)

    def __int__(self) -> int:
        if TRACES:
            concrete(self, "int()")
        return int(self._value)

    def __index__(self) -> int:
        if TRACES:
            concrete(self, "operator.index()")
        return self._value.__index__()  # type: ignore[union-attr]

    def __bool__(self) -> bool:
        if TRACES:
            concrete(self, "bool()")
        return bool(self._value)

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a scalar tensor")
        return shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]  # type: ignore[index]

    def __format__(self, spec: str) -> str:
        return format(self.numpy(), spec)

    if TYPE_CHECKING:  # declared for type checkers: operators.py attaches the ops themselves
        def __getitem__(self, index: Any) -> Tensor: ...
        def __neg__(self) -> Tensor: ...
        def __abs__(self) -> Tensor: ...
        def __add__(self, other: Any) -> Tensor: ...
        def __radd__(self, other: Any) -> Tensor: ...
        def __sub__(self, other: Any) -> Tensor: ...
        def __rsub__(self, other: Any) -> Tensor: ...
        def __mul__(self, other: Any) -> Tensor: ...
        def __rmul__(self, other: Any) -> Tensor: ...
        def __truediv__(self, other: Any) -> Tensor: ...
        def __rtruediv__(self, other: Any) -> Tensor: ...
        def __pow__(self, other: Any) -> Tensor: ...
        def __rpow__(self, other: Any) -> Tensor: ...
        def __matmul__(self, other: Any) -> Tensor: ...
        def __rmatmul__(self, other: Any) -> Tensor: ...
        def __eq__(self, other: Any) -> Tensor: ...  # type: ignore[override]
        def __ne__(self, other: Any) -> Tensor: ...  # type: ignore[override]
        def __lt__(self, other: Any) -> Tensor: ...
        def __le__(self, other: Any) -> Tensor: ...
        def __gt__(self, other: Any) -> Tensor: ...
        def __ge__(self, other: Any) -> Tensor: ...


class Tensor(Operand):
    """An immutable n-dimensional array; tapes record the ops applied to watched tensors."""

    __slots__ = ("_key", "_node", "_value")
    _value: Array
    _key: int | None  # set once a tape follows the tensor
    _node: Any  # the trace's node, set (and only then present) once a trace follows it

    def __init__(self, value: Any, dtype: DTypeLike | None = None) -> None:
        self._value = as_value(value, dtype, copy=True)
        self._key = None
        alias(_source(value), self)

    def __repr__(self) -> str:
        if TRACES and _recording.trace is not None and _recording.trace.follows(self):
            return f"<tg.Tensor: shape={self.shape}, dtype={self.dtype}, traced by tg.function>"
        return f"<tg.Tensor: shape={self.shape}, dtype={self.dtype}, numpy={_show(self.numpy())}>"


def _source(value: Any) -> Any:
    """The tensor a value converted with as_value() comes from, if any."""
    return value._tensor if isinstance(value, Variable) else value


class Variable(Operand):
    """A named, mutable holder of a tensor value, watched by tapes when trainable."""

    __slots__ = ("_tensor", "name", "trainable")

    def __init__(
        self,
        value: Any,
        trainable: bool = True,
        name: str | None = None,
        dtype: DTypeLike | None = None,
    ) -> None:
        if TRACES and _recording.trace is not None:
            _recording.trace.forbid("creating a tg.Variable")
        if callable(value):
            value = value()
        self._tensor = wrap(as_value(value, dtype, copy=True))
        self.trainable = trainable
        self.name = "Variable" if name is None else name

    @property
    def _value(self) -> Array:  # type: ignore[override]
        return self._tensor._value

    def value(self) -> Tensor:
        """The current value as a Tensor (a read that recording tapes may watch)."""
        return read(self)

    read_value = value

    def assign(self, value: Any) -> Variable:
        """Replace the value; the shape and dtype stay the same."""
        old = self._tensor._value
        new = as_value(value, old.dtype, copy=True)
        if new.shape != old.shape:
            raise ValueError(f"cannot assign a value of shape {new.shape} to a variable of shape "
                             f"{old.shape}")
        self._set(_source(value), wrap(new))
        return self

    def _set(self, source: Any, tensor: Tensor) -> None:
        """Hold tensor, the value assigned from source, letting a tracing tg.function see it."""
        if TRACES:
            trace = _recording.trace
            if trace is not None:
                trace.assign(self, source, tensor)
        self._tensor = tensor

    def assign_add(self, delta: Any) -> Variable:
        """Add delta to the value (not recorded on any tape)."""
        return self._update(np.add, delta)

    def assign_sub(self, delta: Any) -> Variable:
        """Subtract delta from the value (not recorded on any tape)."""
        return self._update(np.subtract, delta)

    def _update(self, fn: np.ufunc, delta: Any) -> Variable:
        tensor = current(self) if TRACES else self._tensor
        value = tensor._value
        if type(delta) is not Tensor and isinstance(delta, Variable):
            delta = current(delta)
        if type(delta) is Tensor:
            deltav = delta._value
            if deltav.dtype != value.dtype:
                raise TypeError(f"cannot update a {value.dtype} variable with a {deltav.dtype} "
                                "tensor; use tg.cast")
        else:
            delta = deltav = _coerce(delta, value.dtype)
        op = OPERATORS[fn]
        new = wrap(op(value, deltav))
        if new._value.shape != value.shape:
            raise ValueError(f"cannot update a variable of shape {value.shape} with a value of "
                             f"shape {np.shape(deltav)}")
        if TRACES:
            _record(new, op, (tensor, delta), None)
            self._set(new, new)
        else:
            self._tensor = new
        return self

    def __repr__(self) -> str:
        if TRACES and _recording.trace is not None:
            return f"<tg.Variable '{self.name}' shape={self.shape} dtype={self.dtype}>"
        return (f"<tg.Variable '{self.name}' shape={self.shape} dtype={self.dtype}, "
                f"numpy={_show(self.numpy())}>")

