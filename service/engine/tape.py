"""GradientTape: what it records, and the backward pass over the record.

A tape keeps, in execution order, one entry ``(op name, output, args)`` per op
that read a tensor it watches; that order is already topological, so the
backward pass is a plain loop over the entries in reverse (no recursion, any
depth). Each op's gradient comes from the rule table filled by vjps.py.

A gradient flowing into a tensor may have any shape that broadcasts to the
tensor's shape and stands for its broadcast: the gradient of a mean is a scalar,
not an array of copies. Only what is handed back to the caller is broadcast.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np

from service.engine import ops
from service.engine.tensor import Tensor, Variable, active_tapes, as_value, wrap

Rule: TypeAlias = Callable[..., Tensor]  # rule(g, ans, *args) -> gradient for one argument
Entry: TypeAlias = tuple[str, Tensor, tuple[Any, ...]]


class _RulePerIndex:
    """The rules of a variadic op: one function that takes the argument's index first."""

    def __init__(self, rule: Callable[..., Tensor]) -> None:
        self.rule = rule

    def __getitem__(self, index: int) -> Rule:
        return functools.partial(self.rule, index)


VJPS: dict[str, Sequence[Rule | None] | _RulePerIndex] = {}  # op name -> a rule per argument


def defvjp(name: str, *rules: Rule | None) -> None:
    """Register op `name`'s gradient rules, one per positional argument (None: no gradient)."""
    VJPS[name] = rules


def defvjp_argnum(name: str, rule: Callable[..., Tensor]) -> None:
    """Register a variadic op's gradient rule, called as rule(index, g, ans, *args)."""
    VJPS[name] = _RulePerIndex(rule)


class UnconnectedGradients(StrEnum):
    """What gradient() returns for a source the target does not depend on."""

    NONE = "none"
    ZERO = "zero"


class GradientTape:
    """Records ops on watched tensors so that gradient() can differentiate through them."""

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self._persistent = persistent
        self._watch_accessed = watch_accessed_variables
        self._in_context = False
        self._used = False
        self._entries: list[Entry] = []
        self._watched: set[int] = set()  # ids of the tensors the tape follows
        self._leaves: dict[int, Tensor] = {}  # tensors watched directly, kept alive for their ids
        self._variables: dict[int, tuple[Variable, list[Tensor]]] = {}  # watched, with their reads
        self._watched_by_name: set[int] = set()  # ids of variables passed to watch()

    def __enter__(self) -> GradientTape:
        self._in_context = True
        active_tapes.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._in_context = False
        if self in active_tapes:
            active_tapes.remove(self)

    def record(self, name: str, out: Tensor, args: tuple[Any, ...]) -> None:
        """Keep an op if it read a tensor this tape follows; its output is then followed too."""
        watched = self._watched
        for arg in args:
            if id(arg) in watched:
                self._entries.append((name, out, args))
                watched.add(id(out))
                return

    def read(self, variable: Variable, tensor: Tensor) -> None:
        """Watch a variable's value as it is read, if the tape watches that variable."""
        if id(tensor) in self._watched or tensor._value.dtype.kind != "f":
            return
        key = id(variable)
        if key in self._watched_by_name or (self._watch_accessed and variable.trainable):
            self._variables.setdefault(key, (variable, []))[1].append(tensor)
            self._leaves[id(tensor)] = tensor
            self._watched.add(id(tensor))

    def watch(self, tensor: Any) -> None:
        """Follow a Tensor, or every read of a Variable, or each item of a list, tuple or dict."""
        for item in _flatten(tensor):
            if isinstance(item, Variable):
                self._watched_by_name.add(id(item))
                self._variables.setdefault(id(item), (item, []))
            elif isinstance(item, Tensor):
                if item._value.dtype.kind == "f":  # integers have no gradient
                    self._leaves[id(item)] = item
                    self._watched.add(id(item))
            else:
                raise TypeError(f"watch() takes tensors and variables, not {type(item).__name__}")

    def watched_variables(self) -> tuple[Variable, ...]:
        """The variables this tape watches, in the order it first saw them."""
        return tuple(variable for variable, _ in self._variables.values())

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Within this context, ops are not recorded on this tape."""
        if self not in active_tapes:
            raise RuntimeError("stop_recording() needs a tape that is recording")
        active_tapes.remove(self)
        try:
            yield
        finally:
            if self._in_context:
                active_tapes.append(self)

    def reset(self) -> None:
        """Forget everything recorded and watched, as if this were a new tape."""
        self._used = False
        self._entries = []
        self._watched = set()
        self._leaves = {}
        self._variables = {}
        self._watched_by_name = set()

    def gradient(
        self,
        target: Any,
        sources: Any,
        output_gradients: Any = None,
        unconnected_gradients: str = UnconnectedGradients.NONE,
    ) -> Any:
        """d(sum of target)/d(source) for each source, in the structure of `sources`.

        target may be a tensor or a list/tuple/dict of them (their gradients add
        up); output_gradients, in the target's structure, weights each target.
        A source the target does not depend on gets None, or zeros when
        unconnected_gradients is "zero"; integer sources always get None.
        """
        if self._used:
            raise RuntimeError("a non-persistent GradientTape can compute gradients only once; "
                               "use GradientTape(persistent=True) to call gradient() again")
        unconnected = UnconnectedGradients(unconnected_gradients)
        if not self._persistent:
            self._used = True
            if self in active_tapes:  # the backward pass is not recorded on the tape it reads
                active_tapes.remove(self)
        flat_sources = _flatten(sources)
        reads = [self._tensors_of(source) for source in flat_sources]
        grads = self._backward(target, output_gradients, reads)
        results = []
        for source, tensors in zip(flat_sources, reads, strict=True):
            found = [grads[id(t)] for t in tensors if id(t) in grads]
            if not found:
                floating = as_value(source).dtype.kind == "f"
                zero = unconnected is UnconnectedGradients.ZERO and floating
                results.append(ops.zeros_like(source) if zero else None)
                continue
            total = found[0]
            for more in found[1:]:
                total = total + more
            results.append(ops.broadcast_to(total, source.shape))
        if not self._persistent:
            self.reset()
            self._used = True
        return _pack(sources, iter(results))

    def _tensors_of(self, source: Any) -> list[Tensor]:
        """The recorded tensors standing for a source: a Variable's reads, or the tensor itself."""
        if isinstance(source, Variable):
            entry = self._variables.get(id(source))
            return [] if entry is None else entry[1]
        if isinstance(source, Tensor):
            return [source] if id(source) in self._watched else []
        raise TypeError(f"gradient() sources must be tensors or variables, not "
                        f"{type(source).__name__}")

    def _backward(
        self, target: Any, output_gradients: Any, reads: list[list[Tensor]]
    ) -> dict[int, Tensor]:
        """Run the recorded ops backwards; return gradients keyed by tensor id."""
        sources = {id(t) for tensors in reads for t in tensors}
        entries = list(self._entries)  # a persistent tape may record while we run backwards
        # Follow only what depends on a source (all of the tape when every leaf is a source).
        reach = self._watched if self._leaves.keys() <= sources else _reach(entries, sources)
        grads: dict[int, Tensor] = {}
        targets = _flatten(target)
        seeds = [None] * len(targets) if output_gradients is None else _flatten(output_gradients)
        if len(seeds) != len(targets):
            raise ValueError(f"{len(seeds)} output_gradients for {len(targets)} targets")
        for t, seed in zip(targets, seeds, strict=True):
            t = t._tensor if isinstance(t, Variable) else t
            if id(t) in reach:
                _accumulate(grads, id(t), _seed(t, seed))
        for name, out, args in reversed(entries):
            key = id(out)
            g = grads.get(key) if key in sources else grads.pop(key, None)
            if g is None:
                continue
            rules = VJPS.get(name)
            if rules is None:
                raise LookupError(f"no gradient rule is registered for op {name!r}")
            for i, arg in enumerate(args):
                if id(arg) in reach:
                    rule = rules[i]
                    if rule is not None:
                        _accumulate(grads, id(arg), rule(g, out, *args))
        return grads


def _seed(target: Tensor, seed: Any) -> Tensor:
    """The gradient a target starts with: ones (a scalar standing for them) or the caller's."""
    dtype = target._value.dtype
    if seed is None:
        return wrap(dtype.type(1))
    seed = ops.convert_to_tensor(seed, dtype=dtype)
    if np.broadcast_shapes(seed.shape, target.shape) != target.shape:
        raise ValueError(f"output gradient of shape {seed.shape} does not match target shape "
                         f"{target.shape}")
    return seed


def _accumulate(grads: dict[int, Tensor], key: int, g: Tensor) -> None:
    previous = grads.get(key)
    grads[key] = g if previous is None else previous + g


def _reach(entries: list[Entry], sources: set[int]) -> set[int]:
    """Ids of the sources and of every recorded tensor computed from one."""
    reach = set(sources)
    for _, out, args in entries:
        for arg in args:
            if id(arg) in reach:
                reach.add(id(out))
                break
    return reach


def _flatten(nest: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts, in order."""
    if isinstance(nest, list | tuple):
        return [leaf for item in nest for leaf in _flatten(item)]
    if isinstance(nest, dict):
        return [leaf for value in nest.values() for leaf in _flatten(value)]
    return [nest]


def _pack(nest: Any, leaves: Iterator[Any]) -> Any:
    """Rebuild nest's structure with the next leaves."""
    if isinstance(nest, list):
        return [_pack(item, leaves) for item in nest]
    if isinstance(nest, tuple):
        return tuple(_pack(item, leaves) for item in nest)
    if isinstance(nest, dict):
        return {key: _pack(value, leaves) for key, value in nest.items()}
    return next(leaves)
