"""tg.function: a Python function of tensors, traced once per input signature and replayed.

    @tg.function
    def train_step(x, y):
        with tg.GradientTape() as tape:
            loss = tg.reduce_mean(tg.square(y - (W * x + b)))
        dW, db = tape.gradient(loss, [W, b])
        W.assign_sub(0.1 * dW)
        b.assign_sub(0.1 * db)
        return loss

The first call with a new signature (the shapes, dtypes and memory layouts of
its tensor arguments, which NumPy arrays count as, and the values of its other
arguments; objects such as a model by identity) runs the function eagerly while
a trace (see trace.py) records every NumPy call that depends on the arguments,
on variables or on random draws: the forward pass, the gradient rules the tape
runs, the assignments. The trace becomes a Plan (see plan.py) that later calls
with that signature replay: the same NumPy calls in the same order on the same
dtypes, so the results are bit-identical to an eager call, without op dispatch,
tape bookkeeping or array allocation. Plans are kept per signature, the least
recently used dropped past ``cache_size``; ``trace_count`` counts traces and
``plans()`` shows each plan's generated ``source``. Each batch size is its own
signature: a plan's arithmetic depends on shapes (``reduce_mean`` divides by the
batch size, broadcasting decides by sizes), so it is not reused across them.

As with tf.function, Python code runs only while tracing: print(), appends to
lists, a Python counter ``self.t += 1`` happen once per trace, and a Python
number computed from them is a constant of the plan. State that changes from
call to call must live in variables (create them before the first call; e.g. an
optimizer's step count is ``tg.Variable(0, dtype=tg.int64, trainable=False)``,
advanced with ``assign_add(1)`` and used through ``tg.cast``). Tensors reached
only through other Python objects (not arguments, not variables) are constants.
Python numbers passed as arguments are part of the signature, so a number that
changes every call (a learning rate schedule) should be passed as a tensor.
Calls of one compiled function are serialized; a variable it updates in place
must not be read by another thread during a call.

What cannot be compiled raises TraceError while tracing, naming the line:
a traced value used in Python (bool() in an if, float(), int(), an index,
numpy(), formatting, a shape, axis or boolean mask taken from a tensor,
tg.where with one argument), creating a variable, returning anything but
tensors, variables and Python values, or calling the function while a
GradientTape records (take the gradient inside instead).
"""

from __future__ import annotations

import functools
import itertools
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from service.engine.compile.plan import Plan, Retrace
from service.engine.compile.trace import Trace, TraceError, error
from service.engine.nest import flatten
from service.engine.tensor import (
    Tensor,
    Variable,
    as_value,
    current_trace,
    recording_tapes,
    release_buffers,
    tracing,
)


class _Entry:
    """A plan in the cache, with the objects its key names by id (kept alive, so that the ids
    stay theirs) and when it was last used."""

    __slots__ = ("pinned", "plan", "used")

    def __init__(self, plan: Plan, pinned: list[Any], used: int) -> None:
        self.plan = plan
        self.pinned = pinned
        self.used = used


class Function:
    """A compiled Python function of tensors (what tg.function returns)."""

    def __init__(self, python_function: Callable[..., Any], cache_size: int = 8) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, not {cache_size}")
        functools.update_wrapper(self, python_function)
        self.python_function = python_function
        self.name: str = getattr(python_function, "__qualname__", repr(python_function))
        self.cache_size = cache_size
        self.trace_count = 0  # how many times the function has been traced
        self._plans: dict[tuple[Any, ...], _Entry] = {}
        self._clock = itertools.count()
        self._lock = threading.Lock()  # one call at a time: the plans' buffers are shared
        self._warned = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if recording_tapes():
            raise error("a call while a GradientTape records",
                        "the tape cannot see inside a compiled call; take the gradient inside "
                        "the function")
        if current_trace() is not None:  # called by a function being traced: part of its trace
            return self.python_function(*args, **kwargs)
        key, values = _signature(args, kwargs)
        with self._lock:
            entry = self._plans.get(key)
            if entry is not None:
                entry.used = next(self._clock)
                try:
                    return entry.plan(values)
                except Retrace:
                    del self._plans[key]
            return self._trace(key, args, kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """As a method: the function with the instance as its first argument."""
        return self if instance is None else functools.partial(self, instance)

    def plans(self) -> list[Plan]:
        """The plans kept, least recently used first (each has its generated .source)."""
        return [entry.plan for entry in sorted(self._plans.values(), key=lambda e: e.used)]

    def _trace(self, key: tuple[Any, ...], args: Any, kwargs: Any) -> Any:
        trace = Trace()
        pinned = _objects((args, kwargs))
        args, kwargs = _substitute((args, kwargs), trace)
        with tracing(trace):
            result = self.python_function(*args, **kwargs)
        for leaf in flatten(result):
            if not isinstance(leaf, _RESULTS):
                raise error(f"returning a value of type {type(leaf).__name__}",
                            "a compiled function returns tensors, variables, and Python numbers, "
                            "strings or None (the same objects on every call)")
        self.trace_count += 1
        plan = Plan(trace, result, self.name)
        self._plans[key] = _Entry(plan, pinned, next(self._clock))
        release_buffers()  # the plan has buffers of its own
        if len(self._plans) > self.cache_size:
            del self._plans[min(self._plans, key=lambda k: self._plans[k].used)]
            if not self._warned:
                self._warned = True
                warnings.warn(f"tg.function {self.name} has traced {self.trace_count} "
                              f"signatures, more than its cache_size ({self.cache_size}): pass "
                              "numbers that change between calls as tensors", RuntimeWarning,
                              stacklevel=3)
        return result


def function(func: Callable[..., Any] | None = None, *,
             cache_size: int = 8) -> Any:
    """Compile a Python function of tensors, as tf.function does: ``@tg.function``,
    ``@tg.function(cache_size=4)`` or ``tg.function(f)``."""
    if func is None:
        return functools.partial(function, cache_size=cache_size)
    return Function(func, cache_size)


_SCALARS = (bool, int, str, bytes, type(None), type(Ellipsis))
_RESULTS = (Tensor, Variable, float, complex, *_SCALARS)


def _signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...],
                                                                         list[Any]]:
    """The cache key of a call and its tensor arguments' values, in order."""
    values: list[Any] = []
    key: list[Any] = []
    for arg in args:
        if type(arg) is Tensor:  # the common case, kept short
            value = arg._value
            values.append(value)
            key += value.shape, value.strides, value.dtype, type(value)
        else:
            key.append(_key(arg, values))
    if kwargs:
        key.append(tuple((name, _key(value, values)) for name, value in kwargs.items()))
    return tuple(key), values


def _key(arg: Any, values: list[Any]) -> Any:
    kind = type(arg)
    if kind is Tensor or kind is np.ndarray:
        value = arg._value if kind is Tensor else as_value(arg, copy=True)
        values.append(value)
        return (value.shape, value.strides, value.dtype, type(value))
    if kind is float:
        return (float, arg.hex())  # 0.0 and -0.0 differ
    if kind in _SCALARS:
        return (kind, arg)
    if isinstance(arg, np.generic):
        return (kind, arg.tobytes())
    if kind is complex:
        return (complex, arg.real.hex(), arg.imag.hex())
    if kind is list or kind is tuple:
        return (kind, tuple(_key(item, values) for item in arg))
    if kind is dict:
        return (dict, tuple((name, _key(value, values)) for name, value in arg.items()))
    return (object, id(arg))  # a model, a variable, ...: the plan is for this very object


def _objects(nest: Any) -> list[Any]:
    """The arguments a signature names by identity (not tensors, numbers, strings, nests)."""
    kind = type(nest)
    if kind is list or kind is tuple:
        return [obj for item in nest for obj in _objects(item)]
    if kind is dict:
        return [obj for item in nest.values() for obj in _objects(item)]
    if kind in (Tensor, np.ndarray, float, complex, *_SCALARS) or isinstance(nest, np.generic):
        return []
    return [nest]


def _substitute(nest: Any, trace: Trace) -> Any:
    """nest with each tensor argument (and NumPy array) replaced by the trace's stand-in."""
    kind = type(nest)
    if kind is Tensor:
        return trace.input(nest._value)
    if kind is np.ndarray:
        return trace.input(as_value(nest, copy=True))
    if kind is list or kind is tuple:
        return kind(_substitute(item, trace) for item in nest)
    if kind is dict:
        return {name: _substitute(value, trace) for name, value in nest.items()}
    return nest


__all__ = ["Function", "TraceError", "function"]
