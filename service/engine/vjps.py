"""The gradient rules: one row per primitive, each a vector-Jacobian product.

A rule gets g (the gradient of the op's output, which may have a smaller shape
that broadcasts to it), ans (the output) and the op's arguments, and returns
the gradient for one argument. Rules are written with engine ops, so a tape
recording around gradient() can differentiate them again. unbroadcast sums a
gradient back to the shape of an input that was broadcast. A row says whether
its rules read the arguments' or the output's values; otherwise they see only
shapes and dtypes, and the tape need not keep the arrays. A rule that multiplies
by a scalar says scale(x, factor), which defers the pass over x (see tape.Scaled).
"""

from __future__ import annotations

import math

import numpy as np

from service.engine.ops import (
    broadcast_to,
    cast,
    equal,
    index_add,
    log,
    matmul,
    reduce_sum,
    reshape,
    sigmoid,
    sign,
    square,
    transpose,
    unbroadcast,
    unbroadcast_mul,
    where,
    zeros_like,
)
from service.engine.tape import defvjp, defvjp_argnum, scale
from service.engine.tensor import Tensor

defvjp("add",
       lambda g, ans, x, y: unbroadcast(g, ans.shape, x.shape),
       lambda g, ans, x, y: unbroadcast(g, ans.shape, y.shape))
defvjp("subtract",
       lambda g, ans, x, y: unbroadcast(g, ans.shape, x.shape),
       lambda g, ans, x, y: scale(unbroadcast(g, ans.shape, y.shape), -1))
defvjp("multiply",
       lambda g, ans, x, y: unbroadcast_mul(g, y, ans.shape, x.shape),
       lambda g, ans, x, y: unbroadcast_mul(g, x, ans.shape, y.shape),
       reads_args=True)
defvjp("divide",
       lambda g, ans, x, y: unbroadcast(g / y, ans.shape, x.shape),
       lambda g, ans, x, y: -unbroadcast_mul(g, ans / y, ans.shape, y.shape),
       reads_args=True, reads_ans=True)
defvjp("pow",
       lambda g, ans, x, y: unbroadcast_mul(g, y * x ** (y - 1), ans.shape, x.shape),
       lambda g, ans, x, y: unbroadcast_mul(g, ans * log(where(x > 0, x, 1)), ans.shape, y.shape),
       reads_args=True, reads_ans=True)
defvjp("maximum",
       lambda g, ans, x, y: unbroadcast(where(x >= y, g, 0), ans.shape, x.shape),
       lambda g, ans, x, y: unbroadcast(where(x >= y, 0, g), ans.shape, y.shape),
       reads_args=True)
defvjp("minimum",
       lambda g, ans, x, y: unbroadcast(where(x <= y, g, 0), ans.shape, x.shape),
       lambda g, ans, x, y: unbroadcast(where(x <= y, 0, g), ans.shape, y.shape),
       reads_args=True)
defvjp("where",
       None,
       lambda g, ans, c, x, y: unbroadcast(where(c, g, 0), ans.shape, x.shape),
       lambda g, ans, c, x, y: unbroadcast(where(c, 0, g), ans.shape, y.shape),
       reads_args=True)

defvjp("negative", lambda g, ans, x: scale(g, -1))
defvjp("square", lambda g, ans, x: scale(x, g * 2), reads_args=True)
defvjp("abs", lambda g, ans, x: g * sign(x), reads_args=True)
defvjp("sign", lambda g, ans, x: zeros_like(g))
defvjp("sqrt", lambda g, ans, x: g / (2 * ans), reads_ans=True)
defvjp("exp", lambda g, ans, x: g * ans, reads_ans=True)
defvjp("log", lambda g, ans, x: g / x, reads_args=True)
defvjp("tanh", lambda g, ans, x: g * (1 - square(ans)), reads_ans=True)
defvjp("sigmoid", lambda g, ans, x: g * (ans * (1 - ans)), reads_ans=True)
defvjp("softplus", lambda g, ans, x: g * sigmoid(x), reads_args=True)
defvjp("relu", lambda g, ans, x: where(x > 0, g, 0), reads_args=True)


def _matmul_grad(g: Tensor, ans: Tensor, a: Tensor, b: Tensor, of_a: bool) -> Tensor:
    """The gradient for a or b of a @ b, with vectors treated as NumPy's matmul treats them."""
    a2 = reshape(a, (1, -1)) if a.ndim == 1 else a
    b2 = reshape(b, (-1, 1)) if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) if ans.ndim > 2 else ()
    g2 = reshape(broadcast_to(g, ans.shape), (*batch, a2.shape[-2], b2.shape[-1]))
    if of_a:
        grad = matmul(g2, _swap_last(b2))
        return reshape(unbroadcast(grad, grad.shape, a2.shape), a.shape)
    grad = matmul(_swap_last(a2), g2)
    return reshape(unbroadcast(grad, grad.shape, b2.shape), b.shape)


def _swap_last(x: Tensor) -> Tensor:
    perm = list(range(x.ndim))
    perm[-2:] = perm[-1], perm[-2]
    return transpose(x, perm)


defvjp("matmul",
       lambda g, ans, a, b: _matmul_grad(g, ans, a, b, of_a=True),
       lambda g, ans, a, b: _matmul_grad(g, ans, a, b, of_a=False),
       reads_args=True)


def _unreduce(g: Tensor, ans: Tensor, x: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """A reduction's output gradient g, shaped to broadcast against its input x."""
    if keepdims or len(axes) == x.ndim:
        return g
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    return reshape(broadcast_to(g, ans.shape), kept)


def _extremum_grad(g: Tensor, ans: Tensor, x: Tensor, axes: tuple[int, ...],
                   keepdims: bool) -> Tensor:
    """The gradient of reduce_max/min: shared equally by the elements equal to the result."""
    hit = cast(equal(x, _unreduce(ans, ans, x, axes, keepdims)), x.dtype)
    return hit * (_unreduce(g, ans, x, axes, keepdims) / reduce_sum(hit, axes, keepdims=True))


defvjp("reduce_sum", _unreduce)
defvjp("reduce_mean", lambda g, ans, x, axes, keepdims:
       _unreduce(g, ans, x, axes, keepdims) / (math.prod(x.shape) // math.prod(ans.shape)))
defvjp("reduce_max", _extremum_grad, reads_args=True, reads_ans=True)
defvjp("reduce_min", _extremum_grad, reads_args=True, reads_ans=True)

defvjp("reshape", lambda g, ans, x, shape: reshape(broadcast_to(g, ans.shape), x.shape))
defvjp("transpose",
       lambda g, ans, x, perm: transpose(broadcast_to(g, ans.shape), np.argsort(perm)))
defvjp("broadcast_to", lambda g, ans, x, shape: unbroadcast(g, shape, x.shape))
defvjp("getitem",
       lambda g, ans, x, index: index_add(broadcast_to(g, ans.shape), index, x.shape))
defvjp("index_add", lambda g, ans, updates, index, shape: broadcast_to(g, ans.shape)[index])
defvjp("cast", lambda g, ans, x, dtype: cast(g, x.dtype))


def _concat_grad(index: int, g: Tensor, ans: Tensor, axis: int, *parts: Tensor) -> Tensor:
    """The slice of g that concat took from its index-th argument (index 0 is the axis)."""
    start = sum(part.shape[axis] for part in parts[: index - 1])
    end = start + parts[index - 1].shape[axis]
    return broadcast_to(g, ans.shape)[(*(slice(None),) * axis, slice(start, end))]


defvjp_argnum("concat", _concat_grad)

defvjp("unbroadcast", lambda g, ans, x, out_shape, shape: unbroadcast(g, out_shape, x.shape))
defvjp("unbroadcast_mul",
       lambda g, ans, x, y, out_shape, shape: unbroadcast_mul(g, y, out_shape, x.shape),
       lambda g, ans, x, y, out_shape, shape: unbroadcast_mul(g, x, out_shape, y.shape),
       reads_args=True)

