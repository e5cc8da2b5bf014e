"""GradientTape: what it records, and the backward pass over the record.

A tape follows the tensors it watches and every tensor computed from them. For
each op that reads a followed tensor it keeps one entry, in execution order:
the op's name, the keys of its output and of its followed inputs, and what the
op's gradient rule reads (of large values the rule does not read it keeps only
the shape, so it does not hold every intermediate array alive). Execution order is
topological, so the backward pass is a plain loop over the entries in reverse:
no recursion, any depth.

A gradient flowing into a tensor may have any shape that broadcasts to the
tensor's shape and stands for its broadcast: the gradient of a mean is a scalar,
not an array of copies. Likewise a gradient may be a Scaled, a tensor times a
scalar not yet multiplied out, so that negating or doubling a large gradient
costs no pass over it. Only what gradient() hands back is broadcast and multiplied out.

The rules themselves are rows of the table that vjps.py fills with defvjp().
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from service.engine.nest import flatten, pack
from service.engine.ops import add, broadcast_to, cast, convert_to_tensor, multiply, zeros_like
from service.engine.tensor import LARGE, Shape, TapeHook, Tensor, Variable, recording_tapes, wrap

# Lazily scaled gradients


class Scaled(NamedTuple):
    """A gradient standing for tensor * factor, a scalar, not yet multiplied out.

    Gradient rules that scale a gradient by a scalar (negation, square's 2 * g) return
    one instead of a pass over a large array; the backward pass carries the factor
    through the next rules (every rule is linear in g) and multiplies it into the
    smaller results of reductions such as unbroadcast, or out when a sum needs it.
    """

    tensor: Tensor
    factor: Any  # a Python number or a 0-d Tensor of the tensor's dtype

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the gradient it stands for."""
        return self.tensor.dtype


def scale(x: Tensor | Scaled, factor: Any) -> Tensor | Scaled:
    """x * factor for a gradient x, left as a Scaled when factor is a scalar and x is large."""
    if isinstance(factor, Tensor) and factor.dtype != x.dtype:
        factor = cast(factor, x.dtype)
    if type(x) is Tensor and x._value.size < LARGE:
        return multiply(x, factor)  # below LARGE a pass costs less than carrying the factor
    if isinstance(x, Scaled):
        factor = x.factor * factor
        x = x.tensor
    if isinstance(factor, Tensor) and factor.ndim:
        return multiply(x, factor)
    return Scaled(x, factor)


def materialize(g: Tensor | Scaled) -> Tensor:
    """A gradient as a Tensor, its factor multiplied in."""
    return multiply(g.tensor, g.factor) if isinstance(g, Scaled) else g


# The table of gradient rules

Gradient: TypeAlias = Tensor | Scaled  # what flows backwards: a tensor, maybe still scaled
Rule: TypeAlias = Callable[..., Gradient]  # rule(g, ans, *args) -> gradient for one argument


class _RulePerIndex:
    """The rules of a variadic op: one function that takes the argument's index first."""

    def __init__(self, rule: Callable[..., Tensor]) -> None:
        self.rule = rule

    def __getitem__(self, index: int) -> Rule:
        return functools.partial(self.rule, index)


class _Reads(NamedTuple):
    """Which values an op's gradient rules read: its arguments, its output."""

    args: bool
    ans: bool


VJPS: dict[str, Sequence[Rule | None] | _RulePerIndex] = {}  # op name -> a rule per argument
READS: dict[str, _Reads] = {}
_READS_ALL = _Reads(True, True)  # an op without rules: gradient() raises if it gets there


def defvjp(name: str, *rules: Rule | None, reads_args: bool = False,
           reads_ans: bool = False) -> None:
    """Register op `name`'s gradient rules, one per positional argument (None: no gradient).

    A rule is called as rule(g, ans, *args). Unless the row says the rules read
    the arguments' or the output's values, they get only shapes and dtypes.
    """
    VJPS[name] = rules
    READS[name] = _Reads(reads_args, reads_ans)


def defvjp_argnum(name: str, rule: Callable[..., Tensor]) -> None:
    """Register a variadic op's gradient rule, called as rule(index, g, ans, *args) with only
    the shapes and dtypes of the arguments and output."""
    VJPS[name] = _RulePerIndex(rule)
    READS[name] = _Reads(False, False)


# The tape


class Spec:
    """The shape and dtype of a tensor, standing for it where no gradient rule reads its value."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: Shape, dtype: np.dtype) -> None:
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        """The rank."""
        return len(self.shape)


@functools.lru_cache(maxsize=4096)
def _spec(shape: Shape, dtype: np.dtype) -> Spec:
    return Spec(shape, dtype)


def _lean(arg: Any) -> Any:
    """arg, or only the shape and dtype of a large tensor (so the tape does not hold its memory)."""
    if type(arg) is Tensor:
        value = arg._value
        if value.size >= LARGE:
            return _spec(value.shape, value.dtype)
    return arg


_keys = itertools.count(1)

# What a tape keeps of one op: its name, its output's key, each argument's key if
# the tape followed it (else None), and the output and arguments for its rules.
_Entry: TypeAlias = tuple[str, int, list[int | None], Tensor | Spec, tuple[Any, ...]]


class UnconnectedGradients(StrEnum):
    """What gradient() returns for a source the target does not depend on."""

    NONE = "none"
    ZERO = "zero"


class GradientTape:
    """Records ops on watched tensors so that gradient() can differentiate through them."""

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self._persistent = persistent
        self._watch_accessed = watch_accessed_variables
        self._tapes: list[TapeHook] | None = None  # its thread's recording tapes, in context
        self._used = False
        self._entries: list[_Entry] = []
        self._followed: set[int] = set()  # keys of the tensors the tape follows
        self._leaves: set[int] = set()  # keys of the tensors watched directly
        self._variables: dict[int, tuple[Variable, list[int]]] = {}  # watched, with read keys
        self._by_name: set[int] = set()  # ids of the variables passed to watch()

    def __enter__(self) -> GradientTape:
        self._tapes = recording_tapes()
        self._tapes.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self._tapes = None

    def _stop(self) -> None:
        if self._tapes is not None and self in self._tapes:
            self._tapes.remove(self)

    def record(self, name: str, out: Tensor, args: tuple[Any, ...]) -> None:
        """Keep an op that read a followed tensor; its output is then followed too."""
        followed = self._followed
        parents: list[int | None] = []
        connected = False
        for arg in args:
            if type(arg) is Tensor and arg._key in followed:
                parents.append(arg._key)
                connected = True
            else:
                parents.append(None)
        if not connected:
            return
        key = out._key
        if key is None:
            key = out._key = next(_keys)
        followed.add(key)
        reads = READS.get(name, _READS_ALL)
        saved = args if reads.args else tuple(map(_lean, args))
        ans = out if reads.ans else _lean(out)
        self._entries.append((name, key, parents, ans, saved))

    def read(self, variable: Variable, tensor: Tensor) -> None:
        """Follow a variable's value as it is read, if the tape watches that variable."""
        if tensor._value.dtype.kind != "f" or (tensor._key is not None
                                               and tensor._key in self._followed):
            return
        if id(variable) in self._by_name or (self._watch_accessed and variable.trainable):
            key = self._follow(tensor)
            self._variables.setdefault(id(variable), (variable, []))[1].append(key)

    def _follow(self, tensor: Tensor) -> int:
        key = tensor._key
        if key is None:
            key = tensor._key = next(_keys)
        self._followed.add(key)
        self._leaves.add(key)
        return key

    def watch(self, tensor: Any) -> None:
        """Follow a Tensor, or every read of a Variable, or each item of a list, tuple or dict."""
        for item in flatten(tensor):
            if isinstance(item, Variable):
                self._by_name.add(id(item))
                self._variables.setdefault(id(item), (item, []))
            elif isinstance(item, Tensor):
                if item._value.dtype.kind == "f":  # integers have no gradient
                    self._follow(item)
            else:
                raise TypeError(f"watch() takes tensors and variables, not {type(item).__name__}")

    def watched_variables(self) -> tuple[Variable, ...]:
        """The variables this tape watches, in the order it first saw them."""
        return tuple(variable for variable, _ in self._variables.values())

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Within this context, ops are not recorded on this tape."""
        tapes = self._tapes
        if tapes is None or self not in tapes:
            raise RuntimeError("stop_recording() needs a tape that is recording")
        tapes.remove(self)
        try:
            yield
        finally:
            if self._tapes is tapes:
                tapes.append(self)

    def reset(self) -> None:
        """Forget everything recorded and watched, as if this were a new tape."""
        self._used = False
        self._entries = []
        self._followed = set()
        self._leaves = set()
        self._variables = {}
        self._by_name = set()

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
        if unconnected_gradients != "none" and unconnected_gradients != "zero":
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', not "
                             f"{unconnected_gradients!r}")
        if not self._persistent:
            self._used = True
            self._stop()  # the backward pass is not recorded on the tape it reads
        flat_sources = flatten(sources)
        keys = [self._keys_of(source) for source in flat_sources]
        targets = [target] if type(target) is Tensor else flatten(target)
        grads = self._backward(targets, output_gradients, keys)
        results: list[Tensor | None] = []
        for source, source_keys in zip(flat_sources, keys, strict=True):
            total = None
            for key in source_keys:
                grad = grads.get(key)
                if grad is not None:
                    grad = materialize(grad)
                    total = grad if total is None else add(total, grad)
            if total is not None:
                results.append(broadcast_to(total, source.shape))
            elif unconnected_gradients == "zero" and source.dtype.kind == "f":
                results.append(zeros_like(source))
            else:
                results.append(None)
        if not self._persistent:
            self._forget()
        return pack(sources, results)

    def _keys_of(self, source: Any) -> list[int]:
        """The keys standing for a source: a Variable's reads, or the tensor's own key."""
        if isinstance(source, Variable):
            entry = self._variables.get(id(source))
            return [] if entry is None else entry[1]
        if isinstance(source, Tensor):
            return [source._key] if source._key in self._followed else []  # type: ignore[list-item]
        raise TypeError(f"gradient() sources must be tensors or variables, not "
                        f"{type(source).__name__}")

    def _forget(self) -> None:
        """Drop what a used non-persistent tape still holds."""
        self._entries.clear()
        self._followed.clear()
        self._leaves.clear()
        self._variables.clear()
        self._by_name.clear()

    def _backward(self, targets: list[Any], output_gradients: Any,
                  keys: list[list[int]]) -> dict[int, Gradient]:
        """Run the recorded ops backwards; return the gradients by key."""
        sources: set[int] = set()
        for source_keys in keys:
            sources.update(source_keys)
        entries = self._entries
        # Follow only what depends on a source (all of the tape when every leaf is a source).
        reach = self._followed if self._leaves <= sources else _reach(entries, sources)
        grads: dict[int, Gradient] = {}
        seeds = [None] * len(targets) if output_gradients is None else flatten(output_gradients)
        if len(seeds) != len(targets):
            raise ValueError(f"{len(seeds)} output_gradients for {len(targets)} targets")
        for target, seed in zip(targets, seeds, strict=True):
            t = target._tensor if type(target) is Variable else target
            if t._key in reach:
                _accumulate(grads, t._key, _seed(t, seed))
        persistent = self._persistent
        for i in range(len(entries) - 1, -1, -1):
            # A persistent tape keeps its entries (and may append to them meanwhile); any
            # other tape lets each entry's saved values go as soon as its rules have run.
            name, key, parents, ans, args = entries[i] if persistent else entries.pop()
            g = grads.get(key) if key in sources else grads.pop(key, None)
            if g is None:
                continue
            rules = VJPS.get(name)
            if rules is None:
                raise LookupError(f"no gradient rule is registered for op {name!r}")
            for j, parent in enumerate(parents):
                if parent in reach:
                    rule = rules[j]
                    if rule is None:
                        continue
                    # Rules are linear in g: apply one to a Scaled's tensor, then scale.
                    if type(g) is Scaled:
                        grad = scale(rule(g.tensor, ans, *args), g.factor)  # type: ignore[arg-type]
                    else:
                        grad = rule(g, ans, *args)  # type: ignore[arg-type]
                    _accumulate(grads, parent, grad)
        return grads


def _seed(target: Tensor, seed: Any) -> Tensor:
    """The gradient a target starts with: ones (a scalar standing for them) or the caller's."""
    dtype = target._value.dtype
    if seed is None:
        return wrap(dtype.type(1))
    seed = convert_to_tensor(seed, dtype=dtype)
    if np.broadcast_shapes(seed.shape, target.shape) != target.shape:
        raise ValueError(f"output gradient of shape {seed.shape} does not match target shape "
                         f"{target.shape}")
    return seed


def _accumulate(grads: dict[int, Gradient], key: int, g: Gradient) -> None:
    previous = grads.get(key)
    grads[key] = g if previous is None else add(materialize(previous), materialize(g))


def _reach(entries: list[_Entry], sources: set[int]) -> set[int]:
    """The keys of the sources and of every recorded tensor computed from one."""
    reach = set(sources)
    for _, key, parents, _, _ in entries:
        if not reach.isdisjoint(parents):
            reach.add(key)
    return reach
