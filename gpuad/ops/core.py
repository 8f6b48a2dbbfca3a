"""The core of the ops: what a primitive is, and ``bind``, the one way to run one.

Every op a user calls ends in ``bind(prim, inputs, **attrs)``. ``bind`` asks
the primitive's rule (``prim.infer``) for the output's shape and dtype, which
raises the op's error before anything runs, then hands the call to the
innermost *interpreter* of this thread (:func:`interpreting`). With none
pushed, ``bind`` runs the call eagerly: it calls the device kernel and, where
a tape watches an input, records a node. A tracer (``gpuad.function``) will be
an interpreter: it records the call into a graph instead of running it.

>>> import gpuad as ad
>>> from gpuad.ops import table as T
>>> from gpuad.ops.core import bind
>>> x = ad.constant([1.0, 2.0])
>>> bind(T.MULTIPLY, (x, x)).numpy()
array([1., 4.], dtype=float32)
>>> T.MULTIPLY.infer(x, ad.constant([[1.0], [2.0]]))
((2, 2), dtype('float32'))

Nothing above ``gpuad/ops`` calls a device kernel: constants, fills, random
numbers, copies, variable reads and writes and optimizer updates are
primitives too (``tests/test_bind.py`` checks that no kernel runs outside
``bind``).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import threading

import numpy as np

from ..errors import OutOfMemoryError
from ..tape import _state as _tape_state, record
from ..tensor import Abstract, Tensor  # noqa: F401  (Abstract: part of this module's API)

__all__ = ["Primitive", "Abstract", "bind", "interpreting"]


class Primitive:
    """One operation, declared once (a row of ``gpuad/ops/table.py``).

    - ``name``: the one name of the primitive; the device kernel has the same
      name inside its ``family`` (``gpuad.devices.KERNEL_SET``).
    - ``infer(*inputs, **attrs) -> (shape, numpy dtype)``: the shape/dtype rule.
      It reads only ``x.shape``-like facts (``x._data.shape``, ``x._data.dtype``,
      ``x._device``), so it works on :class:`Abstract` values too, and it
      raises the op's error for bad input before anything runs.
    - ``family``: the kernel family on the device, or ``kernel``: a function
      ``kernel(device, *buffers, **attrs)`` for rows without a family kernel
      (constants, random numbers).
    - ``vjps``: one VJP per input, or a function ``i -> vjp`` for rows with
      any number of inputs; ``None`` means not differentiable (never
      recorded). ``vjp_all`` instead: one function giving every input's
      gradient at once (a compiled function's call). Every VJP is ``vjp(g, out, *inputs, **attrs)`` with ``g`` the
      gradient of the output, ``out`` the output and the inputs under the
      row's names; it returns that input's gradient (or None), written in
      gpuad ops so that it is differentiable again.
    - ``keeps``: the names (among ``out`` and the inputs) whose values the
      VJPs read. The tape keeps those; other inputs become an :class:`Abstract`
      (shape, dtype, device) and an output not kept becomes None, so an
      ``add``'s inputs are freed as soon as the caller drops them.
    - ``functor``: for element-wise rows, the scalar functor in
      ``kernels/elementwise.cuh`` that computes one element (what generated,
      fused kernels call).
    - ``aliases``: the output may be a view of input 0 (layout rows): it
      inherits the input's lease on a Variable's buffer (see ``Variable``).
    - ``effect``: None for pure rows; ``"random"``, ``"read"`` or ``"write"``
      for rows whose result depends on or changes state (a tracer keeps them
      in order and never merges or drops them).
    - ``eager``: for effectful rows, the function that performs the call
      eagerly, ``eager(*inputs, **attrs)``, instead of kernel + record.
    - ``kinds``: the NumPy dtype kinds the inputs may have (``"f"``, ``"fiu"``,
      ``"b"``), for the documentation of element-wise ops; the rule enforces them.
    """

    __slots__ = ("name", "infer", "family", "impl", "vjps", "vjp_of", "keeps", "keep_out",
                 "keep_inputs", "keep_all_inputs", "functor", "aliases", "effect", "eager",
                 "kernels", "kinds", "vjp_all")

    def __init__(self, name, infer, family=None, *, kernel=None, vjps=None, keeps=(),
                 functor=None, aliases=False, effect=None, eager=None, kinds=None, vjp_all=None):
        self.name = name
        if getattr(infer, "op", 0) is None:  # a rule made for this row names its op
            infer.op = name
        self.infer = infer
        self.family = family
        self.impl = kernel
        self.functor = functor
        self.aliases = aliases
        self.effect = effect
        self.eager = eager
        self.kinds = kinds
        self.kernels = {}
        self.vjps = vjps
        # vjp_of[i]: input i's VJP (a tuple's own indexing is the backward pass's fastest)
        if vjps is None:
            self.vjp_of = None
        elif callable(vjps):
            self.vjp_of = _ByIndex(vjps)
        else:
            self.vjp_of = tuple(vjps)
            for fn in vjps:
                _name_vjp(fn, name)
        self.keeps = tuple(keeps)
        names = _input_names(vjps)
        unknown = [k for k in self.keeps if k != "out" and names is not None and k not in names]
        if unknown:
            raise ValueError(f"primitive {name}: keeps {unknown} are not among its inputs {names}")
        self.keep_out = "out" in self.keeps
        # which inputs the tape keeps; rows with any number of inputs keep none
        self.keep_inputs = () if names is None else tuple(n in self.keeps for n in names)
        self.keep_all_inputs = bool(self.keep_inputs) and all(self.keep_inputs)
        # vjp_all(g, out, *inputs, **attrs) -> one gradient per input: a row whose
        # inputs' gradients come from one computation (a compiled function's call,
        # which keeps all its inputs); its vjp_of is None
        self.vjp_all = vjp_all
        if vjp_all is not None:
            self.vjps, self.vjp_of, self.keep_all_inputs = vjp_all, None, True

    def kernel(self, dev):
        """This primitive's kernel on device ``dev``, resolved once and cached."""
        k = self.kernels.get(dev)
        if k is None:
            if self.impl is not None:
                impl = self.impl
                k = lambda *buffers, **attrs: impl(dev, *buffers, **attrs)  # noqa: E731
            else:
                k = dev.kernel(self.family, self.name)
            self.kernels[dev] = k
        return k

    def __repr__(self):
        return f"<primitive {self.name}>"


class _ByIndex:
    """``vjp_of`` of a row whose VJPs come from a function ``i -> vjp``."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, i):
        return self.fn(i)


def _input_names(vjps):
    """The row's input names, from its first VJP's signature: the one parameter
    per input after ``g`` and ``out`` (attributes follow them)."""
    if vjps is None or callable(vjps):
        return None
    for fn in vjps:
        if fn is not None:
            params = list(inspect.signature(fn).parameters)
            return tuple(params[2:2 + len(vjps)])
    return None


def _name_vjp(fn, name):
    """Give a row's lambda a readable name, so a traceback says ``multiply_vjp``."""
    if fn is not None and fn.__name__ == "<lambda>":
        fn.__name__ = fn.__qualname__ = f"{name}_vjp"
        fn.__code__ = fn.__code__.replace(co_name=f"{name}_vjp", co_qualname=f"{name}_vjp")


# -- interpreters ----------------------------------------------------------------

class _Interpreters(threading.local):
    def __init__(self):
        self.stack: list = []   # pushed interpreters, innermost last
        self.top = None         # stack[-1], or None: run eagerly


_interpreters = _Interpreters()
_pushed = [0]  # interpreters pushed in any thread: while 0, bind skips the thread-local


@contextlib.contextmanager
def interpreting(interpreter):
    """Send every ``bind`` of this thread to ``interpreter.apply(prim, inputs,
    attrs, aval)`` inside the block (``aval`` is the rule's ``(shape, dtype)``).
    An interpreter may call :func:`eager` to run a call as usual."""
    state = _interpreters
    state.stack.append(interpreter)
    state.top = interpreter
    _pushed[0] += 1
    try:
        yield interpreter
    finally:
        _pushed[0] -= 1
        state.stack.pop()
        state.top = state.stack[-1] if state.stack else None


def bind(prim, inputs, **attrs):
    """Apply primitive ``prim`` to a tuple of Tensors with static ``attrs``:
    check with the row's rule, then hand the call to this thread's innermost
    interpreter, or run it now: the device kernel (or, for effectful rows,
    their ``eager`` function), recording on every tape that watches an input."""
    aval = prim.infer(*inputs, **attrs) if attrs else prim.infer(*inputs)
    if _pushed[0] and _interpreters.top is not None:
        return _interpreters.top.apply(prim, inputs, attrs, aval)
    # Running eagerly, inline: this is every op's hot path.
    if prim.eager is not None:
        return prim.eager(*inputs, **attrs)
    if not inputs:
        return _create(prim, attrs, aval)
    x = inputs[0]
    dev = x._device
    try:
        k = prim.kernels[dev]
    except KeyError:
        k = prim.kernel(dev)
    n = len(inputs)
    try:
        if n == 2:
            out = Tensor(k(x._data, inputs[1]._data, **attrs) if attrs
                         else k(x._data, inputs[1]._data), dev)
        elif n == 1:
            out = Tensor(k(x._data, **attrs) if attrs else k(x._data), dev)
            if prim.aliases:
                out._lease = x._lease
        else:
            out = Tensor(k(*[x._data for x in inputs], **attrs), dev)
    except MemoryError as e:
        raise _out_of_memory(prim, aval, dev, e) from e
    except (TypeError, AttributeError):
        _check_not_traced(prim, inputs)
        raise
    tapes = _tape_state.stack
    if tapes and prim.vjps is not None and aval[1].kind == "f":
        record(prim, inputs, out, attrs or None, tapes)
    return out


def _check_not_traced(prim, inputs):
    """A kernel failed on an input with no data: a traced value used outside the
    gpuad.function trace it belongs to. Say so (TracingError) instead."""
    from ..compiler.trace import Traced
    for x in inputs:
        if type(x) is Traced:
            x._refuse(f"compute {prim.name} of")


def _create(prim, attrs, aval):
    """A row without inputs (constants, fills, random numbers): ``attrs`` name the device."""
    dev = attrs.pop("device")
    try:
        return Tensor(prim.kernel(dev)(**attrs), dev)
    except MemoryError as e:
        raise _out_of_memory(prim, aval, dev, e) from e


def _out_of_memory(prim, aval, dev, error) -> OutOfMemoryError:
    """A device's allocation failure (NumPy's or CuPy's MemoryError) as gpuad's
    error, naming the op and the size of its result (one of gpuad's own gets the
    op's name in front, if it lacks it)."""
    if isinstance(error, OutOfMemoryError):
        message = str(error)
        if message.startswith(prim.name + ":"):
            return error
        return OutOfMemoryError(f"{prim.name}: {message}", requested=error.requested,
                                pool_used=error.pool_used, pool_total=error.pool_total,
                                device=error.device)
    shape, dtype = aval
    size = math.prod(shape) * np.dtype(dtype).itemsize
    return OutOfMemoryError(
        f"{prim.name}: out of memory on {dev.name} for a result of shape {list(shape)} and dtype "
        f"{np.dtype(dtype).name} ({size} bytes): {error}. Use smaller tensors (a smaller batch), "
        f"free tensors you no longer need, or use a device with more memory.",
        requested=size, device=dev.name)


def eager(prim, inputs, attrs):
    """Run ``prim`` now, as :func:`bind` does when no interpreter is pushed: for an
    interpreter that hands a call back to eager execution."""
    state = _interpreters
    top, state.top = state.top, None
    try:
        return bind(prim, inputs, **attrs)
    finally:
        state.top = top
