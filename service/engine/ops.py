"""The ops: each primitive's forward computation in NumPy, and the sugar built on them.

Primitives report themselves to the recording tapes under their name; vjps.py
holds one gradient rule per primitive. Sugar (stack, gather, clip_by_value, ...)
is written with primitives and needs no rule of its own. Each NumPy call goes
through apply() so that tg.function can record it; where NumPy has no ``out=``
argument, a small kernel here (_where, _cast, ...) gives the call one, computing
the same values with or without it.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from service.engine.dtypes import float32
from service.engine.tensor import (
    Array,
    DTypeLike,
    Shape,
    Tensor,
    Variable,
    alias,
    apply,
    apply2,
    as_value,
    binary,
    finish,
    operand,
    raise_if_not_broadcastable,
    read,
    static,
    unary,
    wrap,
)

# Creation


def constant(value: Any, dtype: DTypeLike | None = None, shape: Any = None) -> Tensor:
    """A tensor holding a copy of value (Python floats as float32), reshaped or filled to shape."""
    array = as_value(value, dtype, copy=True)
    source = value._tensor if isinstance(value, Variable) else value  # (after a trace saw it)
    if shape is None:
        return alias(source, wrap(array))
    static(source, "tg.constant(<traced tensor>, shape=...)")
    shape = as_shape(shape)
    return wrap(np.full(shape, array) if array.size == 1 else array.reshape(shape))


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing array's memory, as torch.from_numpy: no copy, for large data that stays
    unchanged while the tensor lives (tg.constant copies). The tensor holds a read-only view,
    so nothing writes through it; nothing may write to array itself meanwhile."""
    if type(array) is not np.ndarray or array.dtype.kind not in "biufc":
        raise TypeError(f"from_numpy takes a NumPy array of numbers, not {type(array).__name__}")
    view = array.view()
    view.flags.writeable = False
    return wrap(view)


def convert_to_tensor(value: Any, dtype: DTypeLike | None = None) -> Tensor:
    """value as a Tensor: tensors as they are, a variable's current value, else a constant."""
    if isinstance(value, Variable):
        value = read(value)
    if isinstance(value, Tensor):
        as_value(value, dtype)  # checks the dtype
        return value
    return constant(value, dtype)


def zeros(shape: Any, dtype: DTypeLike = float32) -> Tensor:
    """A tensor of zeros."""
    return wrap(np.zeros(as_shape(shape), dtype))


def ones(shape: Any, dtype: DTypeLike = float32) -> Tensor:
    """A tensor of ones."""
    return wrap(np.ones(as_shape(shape), dtype))


def zeros_like(x: Any, dtype: DTypeLike | None = None) -> Tensor:
    """Zeros with x's shape, and its dtype unless given."""
    value = as_value(x)
    return wrap(np.zeros(value.shape, value.dtype if dtype is None else dtype))


def ones_like(x: Any, dtype: DTypeLike | None = None) -> Tensor:
    """Ones with x's shape, and its dtype unless given."""
    value = as_value(x)
    return wrap(np.ones(value.shape, value.dtype if dtype is None else dtype))


def as_shape(shape: Any) -> Shape:
    """A shape given as an int, a sequence or a tensor, as a tuple of ints."""
    if type(shape) is tuple or type(shape) is list:
        return tuple(map(int, shape))
    static(shape, "a shape taken from a traced tensor")
    return tuple(int(n) for n in np.reshape(as_value(shape), -1))


# Elementwise arithmetic


def add(x: Any, y: Any) -> Tensor:
    """x + y, broadcasting."""
    return binary("add", np.add, x, y)


def subtract(x: Any, y: Any) -> Tensor:
    """x - y, broadcasting."""
    return binary("subtract", np.subtract, x, y)


def multiply(x: Any, y: Any) -> Tensor:
    """x * y, broadcasting."""
    return binary("multiply", np.multiply, x, y)


def divide(x: Any, y: Any) -> Tensor:
    """x / y, broadcasting."""
    return binary("divide", np.true_divide, x, y)


def pow(x: Any, y: Any) -> Tensor:
    """x ** y, broadcasting."""
    return binary("pow", np.power, x, y)


def maximum(x: Any, y: Any) -> Tensor:
    """The larger of x and y, elementwise (ties send the gradient to x)."""
    return binary("maximum", np.maximum, x, y)


def minimum(x: Any, y: Any) -> Tensor:
    """The smaller of x and y, elementwise (ties send the gradient to x)."""
    return binary("minimum", np.minimum, x, y)


def negative(x: Any) -> Tensor:
    """-x."""
    return unary("negative", np.negative, x)


def square(x: Any) -> Tensor:
    """x * x."""
    return unary("square", np.square, x)


def abs(x: Any) -> Tensor:
    """|x| (its gradient at 0 is 0)."""
    return unary("abs", np.abs, x)


def sign(x: Any) -> Tensor:
    """-1, 0 or 1 by the sign of x (its gradient is 0)."""
    return unary("sign", np.sign, x)


def sqrt(x: Any) -> Tensor:
    """The square root."""
    return unary("sqrt", np.sqrt, x, floating=True)


def exp(x: Any) -> Tensor:
    """e ** x."""
    return unary("exp", np.exp, x, floating=True)


def log(x: Any) -> Tensor:
    """The natural logarithm."""
    return unary("log", np.log, x, floating=True)


def tanh(x: Any) -> Tensor:
    """The hyperbolic tangent."""
    return unary("tanh", np.tanh, x, floating=True)


def sigmoid(x: Any) -> Tensor:
    """1 / (1 + e ** -x), computed without overflow."""
    return unary("sigmoid", _sigmoid, x, floating=True)


def _sigmoid(x: Array, out: np.ndarray | None = None) -> Array:
    """0.5 + 0.5 * tanh(0.5 * x), each step in place in out (a new array unless given)."""
    if type(x) is not np.ndarray:
        return 0.5 + 0.5 * np.tanh(0.5 * x)
    if out is None:
        out = np.empty_like(x)
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    np.multiply(out, 0.5, out=out)
    return np.add(out, 0.5, out=out)


def relu(x: Any) -> Tensor:
    """max(x, 0) (its gradient at 0 is 0)."""
    x = operand(x)
    return finish("relu", apply2(np.maximum, x, x._value.dtype.type(0)), (x,))


def softplus(x: Any) -> Tensor:
    """log(1 + e ** x), computed without overflow."""
    return unary("softplus", _softplus, x, floating=True)


def _softplus(x: Array, out: np.ndarray | None = None) -> Array:
    return np.logaddexp(0, x, out=out)


# Kernels that compute each element of out from the same elements of their arguments, each
# pass reading an element before writing it: out may be one of their arguments (as for ufuncs).
ELEMENTWISE = frozenset({_sigmoid, _softplus})


def clip_by_value(x: Any, clip_value_min: Any, clip_value_max: Any) -> Tensor:
    """x limited to [clip_value_min, clip_value_max]."""
    return minimum(maximum(x, clip_value_min), clip_value_max)


def where(condition: Any, x: Any = None, y: Any = None) -> Tensor:
    """x where condition holds, else y (broadcasting); with x and y omitted, the true indices."""
    condition = operand(condition)
    if condition.dtype.kind != "b":
        raise TypeError(f"where needs a bool condition, got {condition.dtype}")
    if x is None and y is None:
        static(condition, "tg.where(<traced condition>) without x and y (its shape depends on "
                          "the values)")
        return wrap(np.argwhere(condition._value).astype(np.int64))
    x, y = _same_dtype("where", [x, y])
    try:
        out = apply(_where, condition, x, y)
    except ValueError:
        raise_if_not_broadcastable("where", condition.shape, x.shape, y.shape)
        raise
    return finish("where", out, (condition, x, y))


def _where(condition: Array, x: Array, y: Array, out: np.ndarray | None = None) -> np.ndarray:
    """np.where(condition, x, y), written into out (a new array unless given), which must not
    share memory with x or y.

    Floating-point values are selected by their bits, as integers of their width: with a
    0/1 condition, ``y + (x - y) * condition`` in wrapping integer arithmetic is x's bits or
    y's, exactly. Those are plain vectorized passes (one when y is +0, ReLU's gradient), where
    a masked copy branches on every element.
    """
    if out is None:
        out = np.empty(np.broadcast_shapes(np.shape(condition), np.shape(x), np.shape(y)),
                       np.result_type(x, y))
    bits = _BITS.get(out.dtype)
    if (bits is None or type(condition) is not np.ndarray or condition.dtype != _BOOL
            or type(x) is not np.ndarray or x.dtype != out.dtype
            or type(y) is not np.ndarray or y.dtype != out.dtype):
        np.copyto(out, y)
        np.copyto(out, x, where=condition)
        return out
    xb, yb, ob = x.view(bits), y.view(bits), out.view(bits)
    if not y.ndim and not yb:  # y is +0.0 (all bits clear)
        np.multiply(xb, condition, ob)
    elif not x.ndim and not xb:
        np.multiply(yb, condition, ob)
        np.subtract(yb, ob, ob)
    else:
        np.subtract(xb, yb, ob)
        np.multiply(ob, condition, ob)
        np.add(ob, yb, ob)
    return out


_BOOL = np.dtype(bool)
_BITS = {np.dtype(f"f{n}"): np.dtype(f"i{n}") for n in (2, 4, 8)}


# Comparisons (not differentiable: their results are bool)


def equal(x: Any, y: Any) -> Tensor:
    """x == y, elementwise."""
    return _compare(np.equal, x, y)


def not_equal(x: Any, y: Any) -> Tensor:
    """x != y, elementwise."""
    return _compare(np.not_equal, x, y)


def less(x: Any, y: Any) -> Tensor:
    """x < y, elementwise."""
    return _compare(np.less, x, y)


def less_equal(x: Any, y: Any) -> Tensor:
    """x <= y, elementwise."""
    return _compare(np.less_equal, x, y)


def greater(x: Any, y: Any) -> Tensor:
    """x > y, elementwise."""
    return _compare(np.greater, x, y)


def greater_equal(x: Any, y: Any) -> Tensor:
    """x >= y, elementwise."""
    return _compare(np.greater_equal, x, y)


def _compare(fn: Any, x: Any, y: Any) -> Tensor:
    x, y = _same_dtype(fn.__name__, [x, y])
    try:
        return apply2(fn, x, y)
    except ValueError:
        raise_if_not_broadcastable(fn.__name__, x.shape, y.shape)
        raise


def _same_dtype(name: str, values: list[Any]) -> list[Tensor]:
    """values as tensors of one dtype: that of the first tensor or variable among them."""
    tensors: list[Tensor | None] = []
    dtype = None
    for v in values:
        if type(v) is Tensor or type(v) is Variable:
            t = operand(v)
            if dtype is None:
                dtype = t._value.dtype
            elif t._value.dtype != dtype:
                raise TypeError(f"{name}: mixed dtypes {dtype} and {t.dtype}; use tg.cast")
            tensors.append(t)
        else:
            tensors.append(None)
    if dtype is None:
        dtype = as_value(values[0]).dtype
    return [constant(v, dtype) if t is None else t for t, v in zip(tensors, values, strict=True)]


# Linear algebra


def matmul(a: Any, b: Any) -> Tensor:
    """The matrix product, batched over leading dimensions (NumPy's matmul rules)."""
    a, b = _same_dtype("matmul", [a, b])
    try:
        if a.ndim == 2 and b.ndim == 2 and a.shape[1] == 1 and b.shape[0] == 1:
            out = apply2(_outer, a, b)
        else:
            out = apply2(np.matmul, a, b)
    except ValueError:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned") from None
    return finish("matmul", out, (a, b))


def _outer(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b for a column a and a row b, computed as their products plus +0, which is what a
    matrix product's sum of one product is (the same bits, -0 included), without the matrix
    product, which the BLAS does slowly at an inner dimension of 1."""
    out = np.multiply(a, b, out=out)
    return np.add(out, out.dtype.type(0), out=out)


# Reductions


def reduce_sum(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The sum over axis (an int, a sequence, or None for all axes)."""
    x = operand(x)
    axes = _axes(axis, x.ndim)
    return finish("reduce_sum", _reduce(np.add, x, axes, keepdims), (x, axes, keepdims))


def reduce_mean(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The mean over axis (an int, a sequence, or None for all axes)."""
    x = operand(x)
    value = x._value
    axes = _axes(axis, value.ndim)
    mean = apply2(operator.truediv, _reduce(np.add, x, axes, keepdims), _count(value.shape, axes))
    if value.dtype.kind not in "fc":
        mean = apply2(_cast, mean, value.dtype)
    return finish("reduce_mean", mean, (x, axes, keepdims))


def reduce_max(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The maximum over axis (ties share the gradient equally)."""
    x = operand(x)
    axes = _axes(axis, x.ndim)
    return finish("reduce_max", _reduce(np.maximum, x, axes, keepdims), (x, axes, keepdims))


def reduce_min(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The minimum over axis (ties share the gradient equally)."""
    x = operand(x)
    axes = _axes(axis, x.ndim)
    return finish("reduce_min", _reduce(np.minimum, x, axes, keepdims), (x, axes, keepdims))


def _reduce(ufunc: np.ufunc, x: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """ufunc folded over axes in x's own dtype (NumPy sums pairwise)."""
    value = x._value
    if value.dtype.kind not in "fc":  # NumPy widens integers unless told the dtype
        return apply(ufunc.reduce, x, axes, value.dtype, keepdims=keepdims)
    if keepdims:
        return apply(ufunc.reduce, x, axes, keepdims=True)
    if len(axes) == value.ndim:  # all of them: the same reduction, with less to parse
        return apply2(ufunc.reduce, x, None)
    return apply2(ufunc.reduce, x, axes)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """axis as a tuple of non-negative axes (all of them for None)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    static(axis, "an axis taken from a traced tensor")
    return normalize_axis_tuple(tuple(int(a) for a in np.reshape(as_value(axis), -1)), ndim)


def _count(shape: Shape, axes: tuple[int, ...]) -> int:
    count = 1
    for axis in axes:
        count *= shape[axis]
    return count


# Shapes


def reshape(x: Any, shape: Any) -> Tensor:
    """x with a new shape of the same size (one dimension may be -1)."""
    x = operand(x)
    shape = as_shape(shape)
    if x.shape == shape:
        return x
    try:
        out = apply(np.reshape, x, shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape shape {x.shape} into shape {shape}") from None
    return finish("reshape", out, (x, shape))


def transpose(x: Any, perm: Any = None) -> Tensor:
    """x with its axes permuted (reversed by default)."""
    x = operand(x)
    perm = tuple(reversed(range(x.ndim))) if perm is None else as_shape(perm)
    return finish("transpose", apply(np.transpose, x, perm), (x, perm))


def expand_dims(x: Any, axis: int) -> Tensor:
    """x with a new dimension of size 1 inserted at axis."""
    x = operand(x)
    shape = x.shape
    axis = normalize_axis_tuple(axis, len(shape) + 1)[0]
    return reshape(x, (*shape[:axis], 1, *shape[axis:]))


def squeeze(x: Any, axis: Any = None) -> Tensor:
    """x without its size-1 dimensions (or only those in axis)."""
    x = operand(x)
    shape = x.shape
    axes = {i for i, n in enumerate(shape) if n == 1} if axis is None else set(_axes(axis, x.ndim))
    if any(shape[i] != 1 for i in axes):
        raise ValueError(f"squeeze: cannot squeeze axes {sorted(axes)} of shape {shape}")
    return reshape(x, [n for i, n in enumerate(shape) if i not in axes])


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """x broadcast to shape (a read-only view, no copies)."""
    x = operand(x)
    if x.shape == shape:
        return x
    shape = as_shape(shape)
    if x.shape == shape:
        return x
    try:
        out = apply(np.broadcast_to, x, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}") from None
    return finish("broadcast_to", out, (x, shape))


def concat(values: Any, axis: int) -> Tensor:
    """The tensors in values joined along an existing axis."""
    tensors = _same_dtype("concat", list(values))
    try:
        out = apply(_concatenate, axis, *tensors)
    except ValueError:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"concat: shapes {shapes} do not match off axis {axis}") from None
    axis = normalize_axis_tuple(axis, out.ndim)[0]
    return finish("concat", out, (axis, *tensors))


def _concatenate(axis: int, *values: Array, out: np.ndarray | None = None) -> np.ndarray:
    return np.concatenate(values, axis, out=out)


def stack(values: Any, axis: int = 0) -> Tensor:
    """The tensors in values (all of one shape) joined along a new axis."""
    tensors = _same_dtype("stack", list(values))
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: shapes {' and '.join(map(str, shapes))} differ")
    return concat([expand_dims(t, axis) for t in tensors], axis)


# Indexing


def getitem(x: Any, index: Any) -> Tensor:
    """x[index] with NumPy's basic and advanced indexing (what tensor[...] does)."""
    x = operand(x)
    index = _index(index)
    return finish("getitem", apply(operator.getitem, x, index), (x, index))


def gather(params: Any, indices: Any, axis: int = 0) -> Tensor:
    """The slices of params at indices along axis (integer indices: np.take, which a compiled
    call writes into a buffer of its own, e.g. a mini-batch gathered from a dataset)."""
    params = operand(params)
    axis = normalize_axis_tuple(axis, params.ndim)[0]
    index = _index(indices)
    if type(index) is not Tensor or index.dtype.kind not in "iu":
        return getitem(params, (*(slice(None),) * axis, indices))
    out = apply(_take, params, index, axis)
    return finish("getitem", out, (params, (*(slice(None),) * axis, index)))


def _take(params: np.ndarray, indices: np.ndarray, axis: int,
          out: np.ndarray | None = None) -> np.ndarray:
    """np.take(params, indices, axis), written into out (a new array unless given)."""
    if out is None:
        return params.take(indices, axis)
    if out.nbytes <= 1 << 16:  # small: NumPy's bounds checks, and its copy through a buffer
        return params.take(indices, axis, out)
    size = params.shape[axis]  # large: the bounds checked here, the rows taken straight to out
    if indices.size and not (-size <= indices.min() and indices.max() < size):
        params.take(indices, axis)  # raises the IndexError naming the index
    return params.take(indices, axis, out, "wrap")


def _index(index: Any) -> Any:
    """An index with variables, lists and arrays as tensors (a traced one as itself)."""
    if isinstance(index, tuple):
        return tuple(_index(part) for part in index)
    if isinstance(index, Variable):
        index = read(index)
    if type(index) is Tensor:
        if index.dtype.kind == "b":
            static(index, "indexing with a traced boolean mask (the result's shape depends on it)")
        return index
    if isinstance(index, list | np.ndarray):
        return wrap(as_value(index))
    return index


def index_add(updates: Any, index: Any, shape: Shape) -> Tensor:
    """Zeros of shape plus updates at index, repeats accumulating (the adjoint of getitem)."""
    updates = operand(updates)
    out = apply(_index_add, updates, index, shape, _is_basic(index))
    return finish("index_add", out, (updates, index, shape))


def _index_add(updates: Array, index: Any, shape: Shape, basic: bool,
               out: np.ndarray | None = None) -> np.ndarray:
    """Zeros of shape plus updates at index, written into out (a new array unless given)."""
    if out is None:
        out = np.empty(shape, updates.dtype)
    out.fill(0)
    if basic:
        out[index] = updates
    else:
        np.add.at(out, index, updates)
    return out


def _is_basic(index: Any) -> bool:
    """Whether an index has only ints, slices, None and Ellipsis (so no element repeats)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, int | np.integer | slice) or p is None or p is Ellipsis for p in parts)


# Types and gradient control


def cast(x: Any, dtype: DTypeLike) -> Tensor:
    """x converted to dtype (the gradient flows between floating dtypes only)."""
    x = operand(x)
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    out = apply(_cast, x, dtype)
    return finish("cast", out, (x, dtype)) if dtype.kind == "f" else out


def _cast(x: Array, dtype: np.dtype, out: np.ndarray | None = None) -> Array:
    """x converted to dtype, written into out (a new array unless given)."""
    if type(x) is not np.ndarray:
        return x.astype(dtype)
    if out is None:
        out = np.empty_like(x, dtype=dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def stop_gradient(x: Any) -> Tensor:
    """x's value, as a tensor no gradient flows through."""
    x = operand(x)
    return alias(x, wrap(x._value))


# Gradient sums: the shared unbroadcast, and its fused form for products


def unbroadcast(g: Tensor, out_shape: Shape, shape: Shape) -> Tensor:
    """Sum g, the gradient of a result broadcast to out_shape, back to an input of shape."""
    axes = _broadcast_axes(out_shape, shape)
    if not axes:
        return g  # g already broadcasts to shape
    full = g if g._value.shape == out_shape else apply2(np.broadcast_to, g, out_shape)
    return finish("unbroadcast", _sum_to(full, axes, shape), (g, out_shape, shape))


def unbroadcast_mul(g: Tensor, y: Tensor, out_shape: Shape, shape: Shape) -> Tensor:
    """unbroadcast(g * y, out_shape, shape), a dot product when the sum is over everything."""
    axes = _broadcast_axes(out_shape, shape)
    if not axes:
        return multiply(g, y)
    if not shape and g._value.shape == out_shape and y._value.shape == out_shape:
        out = apply2(np.vdot, g, y)
    else:
        product = apply2(np.multiply, g, y)
        if product._value.shape != out_shape:
            product = apply2(np.broadcast_to, product, out_shape)
        out = _sum_to(product, axes, shape)
    return finish("unbroadcast_mul", out, (g, y, out_shape, shape))


@functools.lru_cache(maxsize=1024)
def _broadcast_axes(out_shape: Shape, shape: Shape) -> tuple[int, ...]:
    """The axes of out_shape along which an input of shape was broadcast."""
    lead = len(out_shape) - len(shape)
    return tuple(range(lead)) + tuple(
        i for i in range(lead, len(out_shape)) if shape[i - lead] == 1 and out_shape[i] != 1
    )


def _sum_to(x: Tensor, axes: tuple[int, ...], shape: Shape) -> Tensor:
    total = _reduce(np.add, x, axes, keepdims=False)
    return total if total._value.shape == shape else apply2(np.reshape, total, shape)
