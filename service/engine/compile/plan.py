"""A traced call compiled to a plan: straight-line NumPy calls over preallocated buffers.

From a Trace, a Plan keeps the steps that the call's results and the variables'
final values need (and every random draw), drops a step that repeats an earlier
call on the same arguments, and gives each array result a buffer of its exact
shape, dtype and memory layout, reusing the buffer of a value no later step
reads (an elementwise call writes over an argument read for the last time), and the parts of
a concatenation the slices of its buffer, when nothing else reads them, so that the
concatenation copies nothing. It then writes the steps as one Python function, a line per
NumPy call:
arrays are written with ``out=``, NumPy scalars are recomputed with the Python
operators an eager op uses, views of buffers are made once. So a call replays
the same NumPy calls in the same order, on the same dtypes and layouts, as the
eager call did, and gives the same bits, with no dispatch, no tape and no new
arrays. (A deterministic call on the same values gives the same bits, so
dropping a repeated one changes nothing but the time.)

A variable the call assigns is updated in place: its value lives in a buffer of
the plan, which the variable holds through a read-only view, and the step that
computes its final value writes straight into that buffer when no later step
reads the old value (else the value is copied in at the end). Before each call
the plan checks, by reference counts (as TensorFlow does before it writes a
variable's buffer), that nothing else holds that value; if something does, or
the variable was assigned outside, it first moves or copies the value. A
variable of rank 0 gets a new value per call instead, as in eager mode.
"""

from __future__ import annotations

import operator
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from service.engine.compile.trace import (
    BUFFER,
    OUT_UFUNCS,
    VALUE,
    VIEW,
    Assign,
    Const,
    Node,
    Ref,
    Step,
    Trace,
    _order,
    empty,
)
from service.engine.nest import flatten, pack
from service.engine.ops import ELEMENTWISE, _concatenate
from service.engine.tensor import Array, Tensor, Variable, wrap

_SYMBOLS = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/"}
# Elementwise ufuncs that may write their result over an argument they read at the same place.
_IN_PLACE = frozenset({np.add, np.subtract, np.multiply, np.true_divide})
# Ufuncs whose out must be passed by name (NumPy deprecates it by position for these).
_OUT_BY_NAME = frozenset({np.maximum, np.minimum})


_COMPUTED = object()  # stands for a result that run() computes, among constant results


class Retrace(Exception):
    """The plan no longer fits the call (a variable's value changed its memory layout)."""


class _Stale(Exception):
    """A variable updated in place is held elsewhere, or was assigned outside the plan."""


class _Storage:
    """The buffer an assigned variable's value lives in, and the read-only tensor it holds."""

    __slots__ = ("buffer", "counts", "index", "name", "order", "tensor", "variable", "view")

    def __init__(self, index: int, variable: Variable, name: str, order: tuple[int, ...]) -> None:
        self.index = index
        self.variable = variable
        self.name = name  # the variable's name in run()
        self.order = order
        self.buffer: np.ndarray = np.empty(0)
        self.view: np.ndarray = self.buffer
        self.tensor: Tensor = wrap(self.view)
        # the reference counts of tensor, view and buffer when nothing else holds them
        self.counts: tuple[int, ...] = (0, 0, 0)

    def allocate(self, value: Array) -> None:
        """Hold value in a new buffer, installed in the variable through a read-only view."""
        self.buffer = empty(np.shape(value), value.dtype, self.order)
        np.copyto(self.buffer, value)
        self.view = self.buffer.view()
        self.view.flags.writeable = False
        self.tensor = wrap(self.view)
        self.variable._tensor = self.tensor


class Plan:
    """One traced call, compiled; calling it with the tensor arguments' values replays it."""

    def __init__(self, trace: Trace, result: Any, name: str) -> None:
        leaves = flatten(result)
        self._skeleton = pack(result, [None] * len(leaves))
        self._single = not isinstance(result, list | tuple | dict)
        finals: dict[int, Assign] = {}
        for event in trace.events:
            if isinstance(event, Assign):
                finals[id(event.variable)] = event
        outputs = [trace.node_of(leaf) if type(leaf) is Tensor else None for leaf in leaves]
        self._constants = [leaf if node is None else _COMPUTED
                           for node, leaf in zip(outputs, leaves, strict=True)]
        steps, same = _merged(_needed(trace.events, outputs, finals.values()))
        self.steps = steps
        outputs = [None if node is None else same.get(node.index, node) for node in outputs]
        for key, assign in finals.items():
            if isinstance(assign.source, Node):
                finals[key] = assign._replace(source=same.get(assign.source.index, assign.source))

        self._ns: dict[str, Any] = {"wrap": wrap, "getrefcount": sys.getrefcount,
                                    "copyto": np.copyto, "Stale": _Stale, "Retrace": Retrace}
        self._objects: dict[int, str] = {}  # id of an object run() uses -> its name there
        self._kept: list[Any] = []  # those objects (so that their ids stay theirs)
        self._names: dict[int, str] = {}  # node index -> the expression for its value in run()
        self._fixed: set[int] = set()  # nodes whose value is the same array on every call
        self._owned: set[int] = set()  # nodes whose value is memory of the plan
        self._static: list[tuple[str, Step]] = []  # views of fixed memory, made when binding
        self._storages: list[_Storage] = []
        self._buffers: list[tuple[Any, ...]] = []  # (shape, dtype, order) of each buffer

        for i, node in enumerate(trace.inputs):
            self._names[node.index] = f"a{i}"
        loads, rebound = self._variables(trace, steps, outputs, finals)
        last = _last_uses(steps, outputs, finals.values())
        homes = self._homes(trace, finals, last)
        body = self._steps(homes, last, _placements(steps, last, homes))
        # The results first: one may be a variable's old value, in the buffer copied into next.
        results = [f"wrap({self._names[n.index]}.copy())" if n.index in self._owned
                   else f"wrap({self._names[n.index]})" for n in outputs if n is not None]
        ends = [f"    results = ({', '.join(results)},)" if results else "    results = ()"]
        for vname, source in rebound:
            value = self._ref(source)
            if isinstance(source, Node) and source.index in self._owned:
                value += ".copy()"
            ends.append(f"    {vname}._tensor = wrap({value})")
        for storage in self._storages:
            source = finals[id(storage.variable)].source
            if not (isinstance(source, Node) and homes.get(source.index) == storage.index):
                ends.append(f"    copyto(B{storage.index}, {self._ref(source)})")
        ends.append("    return results")

        self._bind()
        checks = [f"    if {s.name}._tensor is not T{s.index} or "
                  f"getrefcount(T{s.index}) != {s.counts[0]} or "
                  f"getrefcount(R{s.index}) != {s.counts[1]} or "
                  f"getrefcount(B{s.index}) != {s.counts[2]}:\n        raise Stale"
                  for s in self._storages]
        params = ", ".join(f"a{i}" for i in range(len(trace.inputs)))
        self.source = "\n".join([f"def run({params}):", *checks, *loads, *body, *ends])
        exec(compile(self.source, f"<tg.function {name}>", "exec"), self._ns)
        self._run: Callable[..., tuple[Tensor, ...]] = self._ns["run"]

    def __call__(self, values: list[Array]) -> Any:
        """Replay the call on the tensor arguments' values; the results as the function gave."""
        try:
            flat = self._run(*values)
        except _Stale:
            self._refresh()
            flat = self._run(*values)
        if self._single:
            return flat[0] if flat else self._constants[0]
        it = iter(flat)
        return pack(self._skeleton, [next(it) if c is _COMPUTED else c for c in self._constants])

    # Compiling

    def _variables(self, trace: Trace, steps: list[Step], outputs: list[Node | None],
                   finals: dict[int, Assign]) -> tuple[list[str], list[tuple[str, Ref]]]:
        """Decide where each variable's value lives: the lines that load the values read from
        variables, and the variables given a new value at the end of a call (with its source)."""
        needed = {n.index for step in steps for n in _nodes(step.args)}
        needed.update(n.index for n in outputs if n is not None)
        needed.update(a.source.index for a in finals.values() if isinstance(a.source, Node))
        loads: list[str] = []
        rebound: list[tuple[str, Ref]] = []
        for state in trace.variables.values():
            variable, initial = state.variable, state.initial
            final = finals.get(id(variable))
            if final is not None and final.source is initial:
                final = None  # assigned its own value
            value = variable._tensor._value
            order = _order(value) if type(value) is np.ndarray and value.ndim else None
            vname = self._bind_object(variable, "V")
            if final is not None and order is not None:
                storage = _Storage(len(self._storages), variable, vname, order)
                self._storages.append(storage)
                if initial is not None:
                    self._names[initial.index] = f"B{storage.index}"
                    self._owned.add(initial.index)
                    self._fixed.add(initial.index)
                continue
            if initial is not None and initial.index in needed:
                name = self._names[initial.index] = f"n{initial.index}"
                loads.append(f"    {name} = {vname}._tensor._value")
                if initial.kind == "array" and initial.shape:
                    loads.append(f"    if {name}.strides != {initial.strides!r}:\n"
                                 f"        raise Retrace")
            if final is not None:
                rebound.append((vname, final.source))
        return loads, rebound

    def _homes(self, trace: Trace, finals: dict[int, Assign],
               last: dict[int, int]) -> dict[int, int]:
        """The final values of in-place variables whose steps can write them straight into the
        variable's buffer: node index -> storage index."""
        steps = self.steps
        producer = {step.out.index: pos for pos, step in enumerate(steps)}
        homes: dict[int, int] = {}
        for storage in self._storages:
            source = finals[id(storage.variable)].source
            if not isinstance(source, Node) or source.index in homes:
                continue
            pos = producer.get(source.index)
            if pos is None:
                continue
            step = steps[pos]
            variable = storage.variable
            if (step.mode != BUFFER or source.order != storage.order
                    or source.shape != variable.shape or source.dtype != variable.dtype):
                continue
            initial = trace.variables[id(variable)].initial
            if initial is not None:
                derived = _derived(steps, initial)
                used = max((last.get(i, -1) for i in derived), default=-1)
                if used > pos or (used == pos and not _writes_over(step, initial, derived)):
                    continue
            homes[source.index] = storage.index
        return homes

    def _steps(self, homes: dict[int, int], last: dict[int, int],
               placed: dict[int, tuple[Node, int, int]]) -> list[str]:
        """A line per step; arrays in buffers shared by values whose lives do not overlap, the
        placed ones (see _placements) in slices of their concatenation's buffer."""
        lines = []
        dies: dict[int, list[int]] = {}
        for pos, step in enumerate(self.steps):
            dies.setdefault(max(last.get(step.out.index, pos), pos), []).append(step.out.index)
        free: dict[tuple[Any, ...], list[int]] = {}
        holder: dict[int, int] = {}  # node index -> the buffer it lives in
        roots: dict[int, int] = {}  # node index of a view -> that of the value it views
        wholes = {whole.index for whole, _, _ in placed.values()}
        for pos, step in enumerate(self.steps):
            index = step.out.index
            call = ", ".join([*(self._ref(ref) for ref in step.args),
                              *(f"{k}={self._bind_object(v, 'k')}"
                                for k, v in step.kwargs.items())])
            if step.mode == BUFFER:
                if index in homes:
                    buffer = f"B{homes[index]}"
                elif index in placed:
                    whole, lo, hi = placed[index]
                    if whole.index not in holder:  # the first part: the whole's buffer now
                        holder[whole.index] = self._buffer(whole, free)
                    buffer = f"p{index}"
                    self._static.append((buffer, Step(_rows, (whole, Const(lo), Const(hi),
                                                              Const(step.out.shape)), {},
                                                      step.out, VIEW, whole, False)))
                elif index in wholes:  # a concatenation of placed parts: nothing to copy
                    buffer = f"b{holder[index]}"
                else:
                    over = _dying_argument(step, pos, last, holder, roots)
                    holder[index] = (holder.pop(over) if over is not None
                                     else self._buffer(step.out, free))
                    buffer = f"b{holder[index]}"
                self._names[index] = buffer
                self._owned.add(index)
                self._fixed.add(index)
                ufunc = OUT_UFUNCS.get(step.fn, step.fn)
                fn = self._bind_object(ufunc, "f")
                if index in wholes:
                    pass
                elif isinstance(ufunc, np.ufunc) and ufunc.nin == len(step.args) and \
                        not step.kwargs and ufunc not in _OUT_BY_NAME:
                    lines.append(f"    {fn}({call}, {buffer})")  # out by position: parsed faster
                else:
                    lines.append(f"    {fn}({call}{', ' if call else ''}out={buffer})")
            elif step.mode == VIEW and all(n.index in self._fixed for n in _nodes(step.args)):
                name = self._names[index] = f"s{index}"  # made once, when binding
                self._fixed.add(index)
                self._static.append((name, step))
            else:
                name = self._names[index] = f"n{index}"
                symbol = _SYMBOLS.get(step.fn)  # type: ignore[call-overload]
                if step.mode == VALUE and symbol and len(step.args) == 2 and not step.kwargs:
                    x, y = (self._ref(ref) for ref in step.args)
                    lines.append(f"    {name} = {x} {symbol} {y}")
                else:
                    lines.append(f"    {name} = {self._bind_object(step.fn, 'f')}({call})")
            if step.mode == VIEW and isinstance(step.base, Node):
                roots[index] = roots.get(step.base.index, step.base.index)
                if step.base.index in self._owned:
                    self._owned.add(index)
            for dead in dies.get(pos, ()):
                number = holder.pop(dead, -1)
                if number >= 0:
                    free.setdefault(self._buffers[number], []).append(number)
        return lines

    def _buffer(self, node: Node, free: dict[tuple[Any, ...], list[int]]) -> int:
        """A free buffer for node's value, or a new one."""
        key = (node.shape, node.dtype, node.order)
        spare = free.get(key)
        if spare:
            return spare.pop()
        self._buffers.append(key)
        return len(self._buffers) - 1

    def _ref(self, ref: Ref) -> str:
        if isinstance(ref, Node):
            return self._names[ref.index]
        if isinstance(ref, Const):
            return self._bind_object(ref.value, "c")
        parts = [self._ref(part) for part in ref]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"

    def _bind_object(self, value: Any, prefix: str) -> str:
        """The name run() knows value by (a global of its namespace)."""
        name = self._objects.get(id(value))
        if name is None:
            name = self._objects[id(value)] = f"{prefix}{len(self._objects)}"
            self._kept.append(value)
            self._ns[name] = value
        return name

    # Memory

    def _bind(self) -> None:
        """Allocate the buffers, set up in-place variables, make the views of fixed memory."""
        for number, (shape, dtype, order) in enumerate(self._buffers):
            self._ns[f"b{number}"] = empty(shape, dtype, order)
        for storage in self._storages:
            storage.allocate(storage.variable._tensor._value)
        self._bind_storages()
        for storage in self._storages:
            storage.counts = tuple(sys.getrefcount(self._ns[f"{name}{storage.index}"])
                                   for name in "TRB")

    def _bind_storages(self) -> None:
        for storage in self._storages:
            i = storage.index
            self._ns[f"B{i}"], self._ns[f"R{i}"], self._ns[f"T{i}"] = (
                storage.buffer, storage.view, storage.tensor)
        for name, step in self._static:
            self._ns[name] = step.fn(*[self._value(ref) for ref in step.args], **step.kwargs)

    def _value(self, ref: Ref) -> Any:
        if isinstance(ref, Node):
            return self._ns[self._names[ref.index]]
        if isinstance(ref, Const):
            return ref.value
        return tuple(self._value(part) for part in ref)

    def _refresh(self) -> None:
        """Before a call: give each in-place variable back its buffer, holding its value."""
        moved = False
        for storage in self._storages:
            # Counted as run() counts them: no local variable may refer to the tensor or view.
            installed = storage.variable._tensor is storage.tensor
            held = (sys.getrefcount(storage.tensor) > storage.counts[0] - (not installed)
                    or sys.getrefcount(storage.view) > storage.counts[1]
                    or sys.getrefcount(storage.buffer) > storage.counts[2])
            if installed and not held:
                continue
            if _order(storage.variable._tensor._value) != storage.order:
                raise Retrace
            if held:
                storage.allocate(storage.variable._tensor._value)
                moved = True
            else:
                np.copyto(storage.buffer, storage.variable._tensor._value)
                storage.variable._tensor = storage.tensor
        if moved:
            self._bind_storages()


def _needed(events: list[Step | Assign], outputs: list[Node | None],
            finals: Iterable[Assign]) -> list[Step]:
    """The steps the outputs and the variables' final values need, and every draw, in order."""
    needed = {node.index for node in outputs if node is not None}
    needed.update(a.source.index for a in finals if isinstance(a.source, Node))
    kept = []
    for event in reversed(events):
        if isinstance(event, Step) and (event.out.index in needed or event.effect):
            kept.append(event)
            needed.update(node.index for node in _nodes(event.args))
    kept.reverse()
    return kept


def _merged(steps: list[Step]) -> tuple[list[Step], dict[int, Node]]:
    """steps without those repeating an earlier call on the same arguments, and for each result
    dropped (by node index) the node that stands for it."""
    same: dict[int, Node] = {}
    seen: dict[Any, Node] = {}
    kept = []
    for step in steps:
        if same:
            step = step._replace(args=_renamed(step.args, same),
                                 base=_renamed((step.base,), same)[0])
        key = None if step.effect else _call_key(step)
        if key is not None:
            earlier = seen.get(key)
            if earlier is not None:
                same[step.out.index] = earlier
                continue
            seen[key] = step.out
        kept.append(step)
    return kept, same


def _renamed(refs: tuple[Any, ...], same: dict[int, Node]) -> tuple[Any, ...]:
    return tuple(same.get(r.index, r) if isinstance(r, Node)
                 else _renamed(r, same) if type(r) is tuple else r for r in refs)


def _call_key(step: Step) -> Any:
    """What identifies a step's call (function, arguments), or None if it cannot be told."""
    fn = step.fn
    owner = getattr(fn, "__self__", None)
    fn_key = (id(owner), fn.__name__) if owner is not None and \
        not isinstance(owner, types.ModuleType) else id(fn)
    try:
        key = (fn_key, _value_key(step.args),
               tuple((k, _value_key(v)) for k, v in step.kwargs.items()))
        hash(key)
    except TypeError:
        return None
    return key


def _value_key(value: Any) -> Any:
    """A key equal for equal constants, telling 0.0 from -0.0 (and arrays apart by identity)."""
    kind = type(value)
    if kind is Node:
        return ("node", value.index)
    if kind is Const:
        return _value_key(value.value)
    if kind is tuple:
        return (tuple, tuple(_value_key(v) for v in value))
    if kind is float:
        return (float, value.hex())
    if kind in (int, bool, str, type(None), type(Ellipsis)) or kind is np.dtype or \
            isinstance(value, np.dtype):
        return (kind, value)
    if isinstance(value, np.generic):
        return (kind, value.tobytes())
    if kind is slice:
        return (slice, _value_key(value.start), _value_key(value.stop), _value_key(value.step))
    return ("id", id(value))


def _nodes(refs: Any) -> list[Node]:
    """The nodes among step arguments (tuples searched)."""
    found = []
    for ref in refs:
        if isinstance(ref, Node):
            found.append(ref)
        elif type(ref) is tuple:
            found.extend(_nodes(ref))
    return found


def _last_uses(steps: list[Step], outputs: list[Node | None],
               finals: Iterable[Assign]) -> dict[int, int]:
    """For each node, the position of the last step reading it or a view of it (len(steps) for
    the outputs and the variables' final values)."""
    last: dict[int, int] = {}
    for pos, step in enumerate(steps):
        for node in _nodes(step.args):
            last[node.index] = pos
    for output in outputs:
        if output is not None:
            last[output.index] = len(steps)
    for assign in finals:
        if isinstance(assign.source, Node):
            last[assign.source.index] = len(steps)
    for step in reversed(steps):
        if step.mode == VIEW and isinstance(step.base, Node):
            base = step.base.index
            last[base] = max(last.get(base, -1), last.get(step.out.index, -1))
    return last


def _placements(steps: list[Step], last: dict[int, int],
                homes: dict[int, int]) -> dict[int, tuple[Node, int, int]]:
    """Values a plan computes straight into rows lo:hi of the buffer of the concatenation that
    reads them, by node index: (the concatenation's node, lo, hi). A part qualifies when it is a
    new C-ordered array read for the last time there, or a reshape of one (which is then
    placed itself), as the parts of a flat gradient are; a concatenation along its first axis
    into a C-ordered buffer is placed whole or not at all."""
    producer = {step.out.index: step for step in steps}
    placed: dict[int, tuple[Node, int, int]] = {}
    for pos, step in enumerate(steps):
        whole = step.out
        if (step.fn is not _concatenate or step.mode != BUFFER or whole.index in homes
                or not whole.shape or whole.order != tuple(range(len(whole.shape)))
                or not isinstance(step.args[0], Const) or step.args[0].value % len(whole.shape)):
            continue
        found: dict[int, tuple[Node, int, int]] = {}
        lo = 0
        for part in step.args[1:]:
            if not isinstance(part, Node) or not part.shape:
                break
            hi = lo + part.shape[0]
            made = producer.get(part.index)
            if made is not None and made.mode == VIEW and made.fn is np.reshape \
                    and isinstance(made.base, Node):
                part = made.base
                made = producer.get(part.index)
            if (made is None or made.mode != BUFFER or part.index in homes or part.index in found
                    or last.get(part.index) != pos or part.dtype != whole.dtype
                    or part.order != tuple(range(len(part.shape)))):
                break
            found[part.index] = (whole, lo, hi)
            lo = hi
        else:
            placed.update(found)
    return placed


def _rows(buffer: np.ndarray, lo: int, hi: int, shape: tuple[int, ...]) -> np.ndarray:
    """Rows lo:hi of a C-ordered buffer, as an array of shape."""
    return buffer[lo:hi].reshape(shape)


def _dying_argument(step: Step, pos: int, last: dict[int, int], holder: dict[int, int],
                    roots: dict[int, int]) -> int | None:
    """An argument of an elementwise step whose buffer it may write its result into: one in a
    buffer of the plan, read for the last time here, of the result's shape, dtype and layout,
    and no other argument a view of it (by node index; None if there is none)."""
    fn = OUT_UFUNCS.get(step.fn, step.fn)
    if not ((isinstance(fn, np.ufunc) and fn.signature is None) or fn in ELEMENTWISE):
        return None
    out = step.out
    for ref in step.args:
        if (isinstance(ref, Node) and ref.index in holder and last.get(ref.index) == pos
                and ref.shape == out.shape and ref.dtype == out.dtype and ref.order == out.order
                and not any(roots.get(node.index) == ref.index for node in _nodes(step.args))):
            return ref.index
    return None


def _derived(steps: list[Step], node: Node) -> set[int]:
    """node and the views of it (of any depth), by index."""
    derived = {node.index}
    for step in steps:
        if step.mode == VIEW and isinstance(step.base, Node) and step.base.index in derived:
            derived.add(step.out.index)
    return derived


def _writes_over(step: Step, initial: Node, derived: set[int]) -> bool:
    """Whether step may write its result over initial, which it reads element by element."""
    if OUT_UFUNCS.get(step.fn, step.fn) not in _IN_PLACE:
        return False
    for ref in step.args:
        if isinstance(ref, Node) and ref.index in derived and ref is not initial:
            return False
        if type(ref) is tuple and any(n.index in derived for n in _nodes(ref)):
            return False
    return True
