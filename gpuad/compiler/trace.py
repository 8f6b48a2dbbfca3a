"""The tracer: the interpreter ``gpuad.function`` pushes while it runs the user's
Python function once, turning every ``bind`` into a node of a :class:`Graph`.

What the tracer does with a call:

- an op whose inputs are all eager Tensors (constants: a closure's tensor, a
  number, a fill) and that has no effect runs *now*, eagerly: its result is a
  constant of the graph. That is constant folding, and it keeps every cache of
  small constants (``x * 2.0``'s 2.0, a tape's seed of ones) holding real values;
- any other op becomes a node whose result is a :class:`Traced` tensor (shape,
  dtype and device known, no value), recorded on the tapes active inside the
  function like an eager op, so ``tape.gradient`` inside the function traces the
  backward pass too;
- variable reads, writes, optimizer steps and random numbers are nodes that a
  replay runs in order, on the variables' current values (captured by reference).

Asking a traced value for its data (``float(t)``, ``if t:``, ``t.numpy()``) is
an error: its value exists only when the plan runs. ``gpuad.cond`` and
``gpuad.while_loop`` branch and loop on it instead.
"""
from __future__ import annotations

import numpy as np

from .. import tape as _tape
from ..errors import InvalidArgumentError
from ..ops.core import eager, interpreting
from ..tensor import Tensor, Variable, _Shape
from .graph import Graph, Node

__all__ = ["Traced", "Tracer", "TracingError", "tracer", "current", "same_value", "variable_created"]


class TracingError(TypeError):
    """A traced value's data was asked for while tracing a ``gpuad.function``
    (or after, from a value that leaked out of one)."""


class Traced(Tensor):
    """A tensor inside a ``gpuad.function`` trace: shape, dtype and device, no
    value yet. Every op works on it; reading its data raises :class:`TracingError`."""

    __slots__ = ()

    def __init__(self, shape, dtype, device):
        super().__init__(_Shape.of(tuple(shape), np.dtype(dtype)), device)

    def _refuse(self, what: str):
        t = current()
        where = (f"inside gpuad.function {t.name!r}" if t is not None else
                 "that leaked out of the gpuad.function that traced it (return it from the "
                 "function instead of keeping it)")
        raise TracingError(
            f"Cannot {what} a traced tensor (shape {list(self.shape)}, {self.dtype.name}) {where}: "
            f"its value is not known while the function is traced, only when it runs. For a branch "
            f"on a tensor use gpuad.cond(pred, true_fn, false_fn), for a loop gpuad.while_loop(cond, "
            f"body, loop_vars); pass Python values as arguments (each value traces once), or compute "
            f"it outside the function.")

    def numpy(self):
        self._refuse("convert to NumPy (.numpy())")

    def __array__(self, dtype=None, copy=None):
        self._refuse("convert to a NumPy array")

    def _scalar(self, kind):
        self._refuse(f"convert to a Python {kind.__name__} ({kind.__name__}(t), or `if t:`)"
                     if kind is bool else f"convert to a Python {kind.__name__} ({kind.__name__}(t))")

    def __index__(self):
        self._refuse("use as a Python index")

    def __dlpack__(self, *args, **kwargs):
        self._refuse("export through DLPack")

    def __repr__(self):
        return f"<gpuad.Tensor (traced) shape={self.shape} dtype={self.dtype.name} device={self.device}>"

    __str__ = __repr__

    def __format__(self, spec):
        return repr(self)


class Tracer:
    """Records binds into ``self.graph``. ``parent``: the tracer of the enclosing
    function when this one traces a ``cond`` branch or a loop body; values of the
    parent (and its parents) used here become parameters of this graph
    (``self.captured`` lists them, in order)."""

    def __init__(self, name: str, parent: "Tracer | None" = None):
        self.name = name
        self.graph = Graph(name)
        self.parent = parent
        self.slots: dict[int, int] = {}   # tensor id -> slot
        self.captured: list = []          # parent values, one per captured param
        # whether this is its function's first trace (see variable_created)
        self.first_trace = parent.first_trace if parent is not None else True

    # -- values ------------------------------------------------------------------
    def param(self, shape, dtype, device) -> Traced:
        """A new parameter of the graph (a tensor argument)."""
        t = Traced(shape, dtype, device)
        slot = self.graph.new_slot(shape, dtype, device)
        self.graph.params.append(slot)
        self.slots[t._id] = slot
        return t

    def slot(self, x) -> int:
        """The slot of ``x`` in this graph: its own value, a captured constant,
        or a value of an enclosing trace (captured as a parameter)."""
        s = self.slots.get(x._id)
        if s is not None:
            return s
        if isinstance(x, Variable):
            x = x._read()
            return self.slot(x)
        g = self.graph
        d = x._data
        if type(x) is Traced:
            if not self._owned_above(x):
                raise TracingError(
                    f"gpuad.function {self.name!r} used a traced tensor of another trace (shape "
                    f"{list(x.shape)}, {x.dtype.name}): a value computed inside a gpuad.function "
                    f"exists only inside it; return it from the function instead of keeping it.")
            s = g.new_slot(d.shape, d.dtype, x._device)
            g.params.append(s)
            self.captured.append(x)
        else:
            s = g.new_slot(d.shape, d.dtype, x._device)
            g.constants[s] = x
        self.slots[x._id] = s
        return s

    def _owned_above(self, x) -> bool:
        t = self.parent
        while t is not None:
            if x._id in t.slots:
                return True
            t = t.parent
        return False

    def traced(self, slot) -> Traced:
        shape, dtype, device = self.graph.avals[slot]
        t = Traced(shape, dtype, device)
        self.slots[t._id] = slot
        return t

    # -- the interpreter ---------------------------------------------------------
    def apply(self, prim, inputs, attrs, aval):
        if prim.effect is None and not any(type(x) is Traced for x in inputs):
            return eager(prim, inputs, attrs)  # constants only: fold
        if prim is _READ_VARIABLE:
            return self._read(attrs["variable"])
        slots = tuple(self.slot(x) for x in inputs)
        if prim.effect == "write":
            self.graph.nodes.append(Node(prim, slots, dict(attrs), None))
            return None
        shape, dtype = aval
        device = attrs["device"] if "device" in attrs else inputs[0]._device  # (copy: the target)
        out_slot = self.graph.new_slot(shape, dtype, device)
        self.graph.nodes.append(Node(prim, slots, dict(attrs), out_slot))
        out = self.traced(out_slot)
        tapes = _tape._state.stack
        if tapes and prim.vjps is not None and np.dtype(dtype).kind == "f":
            _tape.record(prim, inputs, out, attrs or None, tapes)
        return out

    def _read(self, variable):
        """A variable read: a node (the value is read when the plan runs), noted
        on the tapes inside the function as an eager read is."""
        d = variable._data
        out_slot = self.graph.new_slot(d.shape, d.dtype, variable._device)
        self.graph.nodes.append(Node(_READ_VARIABLE, (), {"variable": variable}, out_slot))
        out = self.traced(out_slot)
        _tape.note_read(variable, out, _READ_VARIABLE)
        return out

    def output(self, x) -> int:
        return self.slot(x)


def current() -> Tracer | None:
    """The innermost tracer of this thread, or None."""
    from ..ops.core import _interpreters
    for t in reversed(_interpreters.stack):
        if isinstance(t, Tracer):
            return t
    return None


def tracer(t: Tracer):
    """``with tracer(t):`` every bind of this thread goes to ``t``; the tapes of
    the caller are hidden (the function's own tapes record inside)."""
    return _Tracing(t)


class _Tracing:
    def __init__(self, t):
        self.t = t

    def __enter__(self):
        self._hidden = _tape._state.stack
        _tape._state.stack = []
        self._reads = _tape._state.variable_reads
        _tape._state.variable_reads = None
        self._ctx = interpreting(self.t)
        self._ctx.__enter__()
        return self.t

    def __exit__(self, *exc):
        try:
            self._ctx.__exit__(*exc)
        finally:
            _tape._state.stack = self._hidden
            _tape._state.variable_reads = self._reads
        return False


def same_value(x) -> Tensor:
    """A new Tensor with ``x``'s value (a new identity for the tapes: what
    ``stop_gradient`` and ``custom_gradient`` hand out). A traced ``x`` gives a
    traced value of the same slot of the trace; an eager one a Tensor over the
    same buffer, holding the same lease on a Variable's buffer."""
    if type(x) is Traced:
        t = current()
        if t is None:
            x._refuse("use")
        return t.traced(t.slot(x))
    out = Tensor(x._data, x._device)
    out._lease = x._lease
    return out


def variable_created(value, name):
    """A Variable is being created while a function traces. It must start from a
    value known now (not a traced one), and, as in TensorFlow, only the first trace
    of a function may create variables: a replay does not run the Python code that
    made them, so a function making one per call would silently share it."""
    t = current()
    if t is None:
        return
    if type(value) is Traced:
        raise InvalidArgumentError(
            f"gpuad.Variable {name or '(unnamed)'!r} is created inside gpuad.function {t.name!r} from a traced "
            f"value: a Variable needs its value when it is made. Create it outside the function "
            f"(or from constants / an initializer), then assign to it inside.", "Variable")
    if t.first_trace is False:
        raise ValueError(
            f"gpuad.function {t.name!r} creates a gpuad.Variable on a call that is not its first "
            f"trace. gpuad.function only supports singleton Variables created on the first call: "
            f"create the Variable once, outside the function (or on its first call only).")


from ..ops.table import READ_VARIABLE as _READ_VARIABLE  # noqa: E402
