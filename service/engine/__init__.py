"""Tapeline's reverse-mode automatic differentiation engine, shaped like TensorFlow 2 eager.

    from service import engine as tg

    W = tg.Variable(5.0)
    with tg.GradientTape() as tape:
        loss = tg.reduce_mean(tg.square(y - W * x))
    dW = tape.gradient(loss, W)

Ops run eagerly on NumPy; outside a tape they do no bookkeeping at all.
tg.function compiles a function of tensors (a whole training step) into a plan
of NumPy calls over preallocated buffers that later calls replay, bit-identical
to eager (see compile/function.py for its tracing rules).

The modules, each importing only those listed before it:

    dtypes     the dtypes under their TensorFlow names
    tensor     the eager core: Tensor, Variable, apply(), and the hooks ops report to
    ops        the primitives' forward computations, and the sugar built on them
    operators  Python's operators on tensors (+, *, @, ==, [], ...), attached as ops
    nest       nested lists, tuples and dicts flattened and rebuilt
    tape       GradientTape and the backward pass over its record
    vjps       the table of gradient rules, one row per primitive
    random     tg.random; nn: tg.nn
    compile/   tg.function: trace, plan, function
"""

from service.engine import nn, random
from service.engine import operators as operators  # attaches +, *, [], ... to tensors
from service.engine import vjps as vjps  # fills the gradient-rule table
from service.engine.compile import Function, TraceError, function
from service.engine.dtypes import bool, float32, float64, int32, int64
from service.engine.ops import (
    abs,
    add,
    broadcast_to,
    cast,
    clip_by_value,
    concat,
    constant,
    convert_to_tensor,
    divide,
    equal,
    exp,
    expand_dims,
    from_numpy,
    gather,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    matmul,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    ones,
    ones_like,
    pow,
    reduce_max,
    reduce_mean,
    reduce_min,
    reduce_sum,
    relu,
    reshape,
    sigmoid,
    sign,
    softplus,
    sqrt,
    square,
    squeeze,
    stack,
    stop_gradient,
    subtract,
    tanh,
    transpose,
    where,
    zeros,
    zeros_like,
)
from service.engine.tape import GradientTape, UnconnectedGradients
from service.engine.tensor import Tensor, Variable

__all__ = [
    "Function", "GradientTape", "Tensor", "TraceError", "UnconnectedGradients", "Variable",
    "abs", "add", "bool", "broadcast_to", "cast", "clip_by_value", "concat", "constant",
    "convert_to_tensor", "divide", "equal", "exp", "expand_dims", "float32", "float64",
    "from_numpy", "function", "gather",
    "greater", "greater_equal", "int32", "int64", "less", "less_equal", "log", "matmul",
    "maximum", "minimum", "multiply", "negative", "nn", "not_equal", "ones", "ones_like", "pow",
    "random", "reduce_max", "reduce_mean", "reduce_min", "reduce_sum", "relu", "reshape",
    "sigmoid", "sign", "softplus", "sqrt", "square", "squeeze", "stack", "stop_gradient",
    "subtract", "tanh", "transpose", "where", "zeros", "zeros_like",
]
