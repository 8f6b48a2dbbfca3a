"""``gpuad.function``: trace a Python function once per input signature, compile
the graph into a plan, and replay the plan on later calls.

>>> import gpuad as ad
>>> @ad.function
... def f(x):
...     return ad.reduce_sum(x * x)
>>> float(f(ad.constant([1.0, 2.0])))
5.0
>>> float(f(ad.constant([3.0, 4.0])))     # same signature: a replay, no trace
25.0
>>> f.experimental_get_tracing_count()
1

Semantics, as ``tf.function``'s:

- The *signature* of a call is the shape, dtype and device of every tensor
  argument (anywhere in nested lists, tuples and dicts), the identity of every
  Variable argument, the value of every other Python argument, and the current
  default device. A new signature traces again (``experimental_get_tracing_count``
  counts the traces); with ``input_signature`` the tensors must match those specs
  (a ``None`` dimension accepts any size; gpuad's plans are specialised to
  concrete shapes, so each new size traces once more).
- Python side effects (printing, appending to a list) run while tracing only.
- Variables are captured by reference: a replay reads their current values and
  writes (``assign``, optimizer steps) update them in place. Random numbers
  advance on every call, as eager ones would.
- A branch or loop on a traced value is an error that points to ``gpuad.cond``
  and ``gpuad.while_loop``; a Python loop with a Python bound is unrolled.
- Calling a function under a ``GradientTape`` records one node; its gradient
  is a compiled backward function, itself differentiable.
- A function called while another is being traced is inlined into that trace.

``GPUAD_LOG_COMPILES=1`` logs each trace with its reason; ``f.get_concrete_function(...)``
returns the compiled plan, whose ``graph`` prints the traced graph.
"""
from __future__ import annotations

import functools
import logging
import operator
import os
import weakref

import numpy as np

from . import devices as _devices
from . import dtypes as _dtypes
from . import nest
from . import tape as _tape
from .compiler.plan import compile_graph
from .compiler.trace import Traced, Tracer, current as _current_tracer, tracer as _tracing
from .ops import core as _core
from .ops.core import Primitive
from .tensor import Tensor, Variable, convert_to_tensor

__all__ = ["function", "Function", "ConcreteFunction", "TensorSpec"]

_log = logging.getLogger("gpuad")


def _log_compiles() -> bool:
    return os.environ.get("GPUAD_LOG_COMPILES", "") not in ("", "0")


class TensorSpec:
    """The shape and dtype a tensor argument must have (``None`` for any size).

    >>> import gpuad as ad
    >>> spec = ad.TensorSpec([None, 3], ad.float32)
    >>> spec
    TensorSpec(shape=(None, 3), dtype=gpuad.float32, name=None)
    >>> spec.is_compatible_with(ad.zeros((5, 3)))
    True
    """

    def __init__(self, shape, dtype=_dtypes.float32, name=None):
        self.shape = None if shape is None else tuple(None if d is None else int(d) for d in shape)
        self.dtype = _dtypes.as_dtype(dtype, "TensorSpec")
        self.name = name

    @classmethod
    def from_tensor(cls, tensor, name=None):
        return cls(tensor.shape, tensor.dtype, name)

    def is_compatible_with(self, x) -> bool:
        shape = tuple(x.shape)
        if x.dtype != self.dtype:
            return False
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape))

    def __eq__(self, other):
        return (isinstance(other, TensorSpec) and self.shape == other.shape
                and self.dtype == other.dtype and self.name == other.name)

    def __hash__(self):
        return hash((self.shape, self.dtype, self.name))

    def __repr__(self):
        return f"TensorSpec(shape={self.shape}, dtype={self.dtype!r}, name={self.name!r})"


class _Arg:
    """Where a tensor argument goes in the flattened call (a placeholder in the template)."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


def _python_key(value):
    """A Python argument's part of the signature: its value when hashable, else
    its identity (an object such as a model is the same object call after call)."""
    try:
        hash(value)
        return (type(value), value)
    except TypeError:
        return ("id", id(value))


class ConcreteFunction:
    """One traced and compiled signature of a :class:`Function`.

    ``graph`` prints the traced graph (after optimisation); ``replay_source`` is
    the generated replay; calling it with the signature's tensors runs the plan.
    """

    def __init__(self, owner: "Function", graph, template, out_template, n_tensors, reason):
        self._owner = owner
        self.graph = graph
        self._template = template          # (args, kwargs) with _Arg where tensors go
        self._out = out_template           # the output structure, _Arg(k) for output k
        self._n_tensors = n_tensors
        self.reason = reason
        self._replay, self.replay_source, self.stats = compile_graph(graph)
        self._reads = graph.read_variables()
        self._effects = graph.has_effects()
        self._backward: dict[int, Function] = {}
        self._pack = self._packer()

    @property
    def name(self):
        return self.graph.name

    def __call__(self, *tensors):
        return self._call(list(tensors))

    def _call(self, tensors):
        outs = self._replay(*[t._data for t in tensors])
        state = _tape._state
        if state.stack or state.variable_reads is not None:
            self._record(tensors, outs)
        return self._pack(outs)

    def _packer(self):
        """``outs -> the function's result``: for one tensor or a flat tuple of them,
        without walking the structure on every call."""
        out = self._out
        if type(out) is _Arg:
            return operator.itemgetter(out.index)
        if type(out) is tuple and all(type(a) is _Arg for a in out) and \
                [a.index for a in out] == list(range(len(out))):
            return tuple
        flat = nest.flatten(out)
        return lambda outs: nest.pack_sequence_as(out, [outs[a.index] if type(a) is _Arg else a
                                                        for a in flat])

    # -- differentiating through a call ---------------------------------------------
    def _record(self, tensors, outs):
        """Under a tape: one node per float result whose VJP is the compiled
        backward function; the variables read inside are inputs too."""
        _tape.record_outputs(_CALL, tuple(tensors) + tuple(self._reads), outs, {"fn": self})

    def _backward_function(self, k) -> "Function":
        """The compiled gradient of output ``k``: (tensor arguments..., dy) -> the
        gradients of the float tensor arguments and of the variables read."""
        fn = self._backward.get(k)
        if fn is None:
            forward, template, out_template, reads = (self._owner.python_function, self._template,
                                                      self._out, self._reads)
            n = self._n_tensors

            def backward(*args):
                tensors, dy = list(args[:n]), args[n]
                with _tape.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch([t for t in tensors if t.dtype.is_floating])
                    tape.watch(reads)
                    result = _call_with(forward, template, tensors)
                y = _output(result, out_template, k)
                return tape.gradient(y, tensors + list(reads), output_gradients=dy)

            backward.__name__ = f"{self.name}_grad{k}"
            fn = self._backward[k] = Function(backward)
        return fn


def _output(result, out_template, k):
    """Output ``k`` (the k-th tensor leaf of the traced result) of a fresh call's result."""
    flat = nest.flatten(result)
    arg_leaves = [leaf for leaf in nest.flatten(out_template)]
    for leaf, value in zip(arg_leaves, flat):
        if type(leaf) is _Arg and leaf.index == k:
            return value._read() if isinstance(value, Variable) else value
    raise RuntimeError(f"output {k} not found")  # the trace and the replay disagree: a bug


def _call_vjp(g, out, *inputs, fn, k):
    """The gradients of one call's output ``k`` with respect to its inputs (the
    tensor arguments, then the variables read), by the compiled backward."""
    if fn._effects:
        # The call itself ran; only its gradient is refused (before anything runs).
        raise NotImplementedError(
            f"gpuad.function {fn.name!r} draws random numbers or changes variables, and a "
            f"GradientTape outside it differentiates through the call: its backward would run "
            f"those effects again. Put the GradientTape inside the function (compile the whole "
            f"training step), or call {fn.name}.python_function under the tape.")
    n = fn._n_tensors
    grads = fn._backward_function(k)(*inputs[:n], g)
    return list(grads)


def _call_with(python_function, template, tensors):
    args, kwargs = nest.pack_sequence_as(template, [tensors[a.index] if type(a) is _Arg else a
                                                    for a in nest.flatten(template)])
    return python_function(*args, **kwargs)


# A call of a compiled function, as a tape node: never bound, recorded by
# ConcreteFunction._record; the node keeps its inputs (the backward recomputes).
_CALL = Primitive("call_function", infer=lambda *a, **k: None, vjp_all=_call_vjp)


class Function:
    """A Python function traced once per input signature and replayed (see the
    module docstring and ``gpuad.function``)."""

    def __init__(self, python_function, input_signature=None, reduce_retracing=False,
                 jit_compile=None, name=None):
        if not callable(python_function):
            raise TypeError(f"gpuad.function expects a callable, got {python_function!r} of "
                            f"type {type(python_function).__name__!r}")
        functools.update_wrapper(self, python_function)
        self.python_function = python_function
        self._name = name or getattr(python_function, "__name__", "function")
        if input_signature is not None:
            specs = nest.flatten(list(input_signature))
            for s in specs:
                if not isinstance(s, TensorSpec):
                    raise TypeError(f"gpuad.function {self._name!r}: input_signature must be a "
                                    f"nest of gpuad.TensorSpec, got {s!r}")
            input_signature = list(input_signature)
        self.input_signature = input_signature
        self._reduce_retracing = bool(reduce_retracing)
        self._concrete: dict = {}
        self._tracing_count = 0
        self._bound = weakref.WeakKeyDictionary()

    # -- the surface ------------------------------------------------------------------
    def experimental_get_tracing_count(self) -> int:
        """How many times the Python function was traced."""
        return self._tracing_count

    def __get__(self, obj, objtype=None):
        """A method decorated with ``gpuad.function``: one Function per instance."""
        if obj is None:
            return self
        try:
            bound = self._bound.get(obj)
        except TypeError:  # not weak-referenceable
            return functools.partial(self.__call__, obj)
        if bound is None:
            bound = Function(self.python_function.__get__(obj, objtype), self.input_signature,
                             self._reduce_retracing, name=self._name)
            self._bound[obj] = bound
        return bound

    def __repr__(self):
        return f"<gpuad.function {self._name} ({self._tracing_count} traces)>"

    def __call__(self, *args, **kwargs):
        if _core._pushed[0] and _current_tracer() is not None:  # inside another trace: inline
            return self.python_function(*args, **kwargs)
        concrete, tensors = self._lookup(args, kwargs)
        return concrete._call(tensors)

    def get_concrete_function(self, *args, **kwargs) -> ConcreteFunction:
        """The compiled plan for these arguments (Tensors or TensorSpecs), tracing
        it if needed. With no arguments, the function's ``input_signature``."""
        if not args and not kwargs and self.input_signature is not None:
            args = tuple(self.input_signature)
        specs = [a for a in nest.flatten((args, kwargs)) if isinstance(a, TensorSpec)]
        if specs:
            dev = _devices.current()
            flat = [_zeros_like_spec(a, dev, self._name) if isinstance(a, TensorSpec) else a
                    for a in nest.flatten((args, kwargs))]
            args, kwargs = nest.pack_sequence_as((args, kwargs), flat)
        concrete, _ = self._lookup(args, kwargs)
        return concrete

    # -- signatures ---------------------------------------------------------------------
    def _lookup(self, args, kwargs):
        if not kwargs and self.input_signature is None:
            # the common case: positional tensors only
            for a in args:
                if type(a) is not Tensor:
                    break
            else:
                key = (_devices.current(),) + tuple(
                    [(a._data.shape, a._data.dtype, a._device) for a in args])
                concrete = self._concrete.get(key)
                if concrete is None:
                    concrete = self._trace(key, args, kwargs)
                return concrete, args
        if self.input_signature is not None:
            args, kwargs = self._bind_signature(args, kwargs)
        flat = nest.flatten((args, kwargs))
        tensors, key = [], [_devices.current()]
        for leaf in flat:
            if isinstance(leaf, np.ndarray):
                leaf = convert_to_tensor(leaf)
            if isinstance(leaf, Tensor):
                if type(leaf) is Traced:
                    raise TypeError(f"gpuad.function {self._name!r} got a traced tensor from "
                                    f"another trace as an argument; return it from that function "
                                    f"instead.")
                tensors.append(leaf)
                key.append((leaf._data.shape, leaf._data.dtype, leaf._device))
            elif isinstance(leaf, Variable):
                key.append(("variable", leaf._id))
            else:
                key.append(_python_key(leaf))
        key.append(_structure_key((args, kwargs)))
        key = tuple(key)
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self._trace(key, args, kwargs)
        return concrete, tensors

    def _bind_signature(self, args, kwargs):
        """Check (and convert) the arguments against ``input_signature``, as TF does."""
        sig = self.input_signature
        if kwargs or len(args) != len(sig):
            raise TypeError(f"gpuad.function {self._name!r} has an input_signature of "
                            f"{len(sig)} argument(s) ({_specs_text(sig)}); it was called with "
                            f"{len(args)} positional and {len(kwargs)} keyword argument(s).")
        pairs = []  # (spec, argument): a spec takes a whole argument (a list becomes a tensor)

        def match(spec, a):
            if isinstance(spec, TensorSpec):
                pairs.append((spec, a))
            elif isinstance(spec, dict) and isinstance(a, dict) and set(spec) == set(a):
                for key in spec:
                    match(spec[key], a[key])
            elif isinstance(spec, (list, tuple)) and isinstance(a, (list, tuple)) and \
                    len(spec) == len(a):
                for sp, x in zip(spec, a):
                    match(sp, x)
            else:
                raise TypeError(f"gpuad.function {self._name!r}: the argument {a!r} does not "
                                f"match the structure of the input_signature "
                                f"({_specs_text(sig)}).")
        match(list(sig), list(args))
        converted = []
        for spec, a in pairs:
            if isinstance(a, Variable):
                a = a._read()
            if not isinstance(a, Tensor):
                try:
                    a = convert_to_tensor(a, dtype=spec.dtype)
                except (TypeError, ValueError) as e:
                    raise TypeError(f"Binding inputs to gpuad.function {self._name!r} failed: "
                                    f"{a!r} cannot be converted to {spec}: {e}") from None
            if not spec.is_compatible_with(a):
                raise TypeError(
                    f"Binding inputs to gpuad.function {self._name!r} failed: can not cast "
                    f"{TensorSpec(a.shape, a.dtype)} to {spec} (the input_signature is "
                    f"{_specs_text(sig)}). Pass a tensor of that dtype and rank, or change the "
                    f"input_signature.")
            converted.append(a)
        it = iter(converted)

        def rebuild(spec, a):
            if isinstance(spec, TensorSpec):
                return next(it)
            if isinstance(spec, dict):
                return {k: rebuild(spec[k], a[k]) for k in a}
            return type(a)(rebuild(sp, x) for sp, x in zip(spec, a))
        return tuple(rebuild(sp, a) for sp, a in zip(sig, args)), {}

    # -- tracing ----------------------------------------------------------------------
    def _trace(self, key, args, kwargs) -> ConcreteFunction:
        reason = self._retrace_reason(key)
        t = Tracer(self._name)
        t.first_trace = not self._concrete and self._tracing_count == 0
        flat = nest.flatten((args, kwargs))
        tensors = []
        placeholders = []
        for leaf in flat:
            if isinstance(leaf, np.ndarray):
                leaf = convert_to_tensor(leaf)
            if isinstance(leaf, Tensor):
                placeholders.append(_Arg(len(tensors)))
                tensors.append(leaf)
            else:
                placeholders.append(leaf)
        template = nest.pack_sequence_as((args, kwargs), placeholders)
        traced_args = [t.param(x.shape, x._data.dtype, x._device) for x in tensors]
        with _tracing(t):
            result = _call_with(self.python_function, template, traced_args)
            out_leaves, out_flat = [], []
            for leaf in nest.flatten(result):
                if isinstance(leaf, Variable):
                    leaf = leaf._read()
                if isinstance(leaf, Tensor):
                    out_leaves.append(_Arg(len(out_flat)))
                    out_flat.append(t.output(leaf))
                else:
                    out_leaves.append(leaf)
        graph = t.graph
        graph.outputs = out_flat
        out_template = nest.pack_sequence_as(result, out_leaves)
        concrete = ConcreteFunction(self, graph, template, out_template, len(tensors), reason)
        self._tracing_count += 1
        self._concrete[key] = concrete
        if _log_compiles():
            done = concrete.stats
            _log.warning("gpuad.function %s: traced (%s): %d nodes after removing %d dead and "
                         "%d repeated; %d of them fused into %d generated kernels", self._name,
                         reason, len(graph.nodes), done["dead"], done["merged"], done["fused"],
                         done["kernels"])
        if self._tracing_count == 6:
            _log.warning("gpuad.function %s has been traced %d times. Tracing is expensive; "
                         "it happens for each new shape, dtype or device of a tensor argument and "
                         "for each new value of a Python argument. Pass tensors instead of Python "
                         "numbers, give an input_signature, and define the function once, outside "
                         "any loop.", self._name, self._tracing_count)
        return concrete

    def _retrace_reason(self, key) -> str:
        """Why ``key`` traces: what differs from the nearest signature traced before."""
        if not self._concrete:
            return "first call"
        nearest = None
        for old in self._concrete:
            if len(old) != len(key):
                continue
            diffs = [i for i, (a, b) in enumerate(zip(old, key)) if a != b]
            if diffs and (nearest is None or len(diffs) < len(nearest)):
                nearest = diffs
        if nearest is None:
            return "new argument structure"
        i = nearest[0]
        if i == 0:
            return f"new default device {key[0].name}"
        part = key[i]
        if isinstance(part, tuple) and len(part) == 3 and isinstance(part[1], np.dtype):
            return (f"new tensor signature for argument {i - 1}: shape {list(part[0])}, "
                    f"{part[1].name}, {part[2].name}")
        return f"new Python argument value at position {i - 1}: {part[-1]!r}"


def _structure_key(structure):
    """The nesting of the arguments (lists vs tuples vs dict keys), as a hashable value."""
    if isinstance(structure, dict):
        return ("d",) + tuple((k, _structure_key(v)) for k, v in sorted(structure.items(), key=repr))
    if isinstance(structure, (list, tuple)):
        return (type(structure).__name__,) + tuple(_structure_key(v) for v in structure)
    return None


def _specs_text(sig) -> str:
    return ", ".join(repr(s) for s in nest.flatten(sig))


def _zeros_like_spec(spec: TensorSpec, dev, name) -> Tensor:
    if spec.shape is None or any(d is None for d in spec.shape):
        raise ValueError(f"gpuad.function {name!r}: get_concrete_function needs concrete shapes "
                         f"(gpuad's plans are specialised to shapes); got {spec}. Pass a tensor "
                         f"or a TensorSpec with every dimension given.")
    from .ops.creation import zeros
    return zeros(spec.shape, spec.dtype, dev)


def function(func=None, *, input_signature=None, reduce_retracing=False, jit_compile=None):
    """Decorator as ``tf.function``: trace ``func`` once per input signature, compile
    the graph, replay it on later calls (see :mod:`gpuad.function`).

    >>> import gpuad as ad
    >>> v = ad.Variable(1.0)
    >>> @ad.function
    ... def step(x):
    ...     v.assign_add(x)
    ...     return v * 2.0
    >>> float(step(ad.constant(1.0))), float(step(ad.constant(1.0)))
    (4.0, 6.0)
    >>> step.experimental_get_tracing_count()
    1

    ``jit_compile`` is accepted for TensorFlow compatibility; every plan is compiled.
    """
    if func is None:
        return lambda fn: Function(fn, input_signature, reduce_retracing, jit_compile)
    return Function(func, input_signature, reduce_retracing, jit_compile)
