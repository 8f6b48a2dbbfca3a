"""Functional autodiff and friends: grad, value_and_grad, gradients_function,
custom_gradient (``gpuad.function`` lives in ``gpuad/function.py``).

>>> import gpuad as ad
>>> df = ad.grad(lambda x: x ** 3)
>>> float(df(ad.constant(2.0)))
12.0
"""
from __future__ import annotations

import functools
import inspect

from . import nest
from .compiler.trace import same_value
from .ops.core import Primitive
from .ops.operands import to_tensor
from .tape import GradientTape, _state, record, stop_recording_all
from .errors import InvalidArgumentError
from .tensor import Tensor, Variable, convert_to_tensor

__all__ = ["grad", "value_and_grad", "gradients_function", "custom_gradient"]


def _argnums(argnums, n):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for i in nums:
        if not -n <= i < n:
            raise ValueError(f"argnums {i} is out of range for a function called with {n} "
                             f"positional arguments.")
    return single, tuple(i % n for i in nums)


def _separate_sources(args: list, kwargs: dict, nums) -> None:
    """Give each differentiated positional argument its own identity.

    ``f(x, x)`` differentiated w.r.t. both arguments must treat each argument as
    its own source (TF's gradients_function: ``[1, 1]`` for ``x * y``, not
    ``[2, 2]``), so a differentiated argument that is the same object as another
    argument becomes a fresh copy: an ``identity`` of a Tensor, a read of a
    Variable (both recorded on enclosing tapes, so higher derivatives still
    flow to the original)."""
    seen: dict[int, int] = {}
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (Tensor, Variable)):
            seen[id(a)] = seen.get(id(a), 0) + 1
    if len(seen) == sum(seen.values()):
        return  # no object is passed twice
    from .ops.array import identity
    for i in nums:
        a = args[i]
        if seen.get(id(a), 0) > 1:
            args[i] = a._read() if isinstance(a, Variable) else identity(a)


def _value_and_grads(f, nums, args, kwargs, output_gradients=None):
    """``(f(*args, **kwargs), [gradient w.r.t. args[i] for i in nums])``."""
    args = list(args)
    for i in nums:
        if not isinstance(args[i], Variable):
            args[i] = to_tensor(args[i])
    if len(args) + len(kwargs) > 1:
        _separate_sources(args, kwargs, nums)
    sources = [args[i] for i in nums]
    with GradientTape() as tape:
        tape.watch(sources)
        value = f(*args, **kwargs)
    return value, tape.gradient(value, sources, output_gradients=output_gradients)


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args), gradient of f w.r.t. args[argnums])``;
    ``f`` must return a scalar (or a tensor, which is summed). Each positional
    argument is its own source, even when the same tensor is passed twice.

    >>> import gpuad as ad
    >>> value, g = ad.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(2.0, 5.0)
    >>> float(value), [float(t) for t in g]
    (10.0, [5.0, 2.0])
    """
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        single, nums = _argnums(argnums, len(args))
        value, grads = _value_and_grads(f, nums, args, kwargs)
        return value, grads[0] if single else tuple(grads)
    return wrapped


def grad(f, argnums=0):
    """A function returning the gradient of ``f`` w.r.t. ``args[argnums]``.
    Composes: ``grad(grad(f))`` is the second derivative."""
    vg = value_and_grad(f, argnums)

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        return vg(*args, **kwargs)[1]
    return wrapped


def gradients_function(f):
    """A function returning the list of gradients of ``f`` w.r.t. every
    positional argument (TF eager's old ``tfe.gradients_function``).

    Each positional argument is its own source, even when the same tensor is
    passed twice. The keyword ``dy`` is the gradient of ``f``'s output (the
    ``output_gradients`` of :meth:`GradientTape.gradient`: the same shape and
    dtype as the output; ones when omitted); other keyword arguments go to ``f``.

    >>> import gpuad as ad
    >>> x = ad.constant(3.0)
    >>> [float(g) for g in ad.gradients_function(lambda a, b: a * b)(x, x)]
    [3.0, 3.0]
    >>> g = ad.gradients_function(lambda a: a * a)
    >>> g(ad.constant([1.0, 2.0]), dy=ad.constant([10.0, 100.0]))[0].numpy()
    array([ 20., 400.], dtype=float32)
    """
    @functools.wraps(f)
    def wrapped(*args, dy=None, **kwargs):
        return list(_value_and_grads(f, tuple(range(len(args))), args, kwargs,
                                     output_gradients=dy)[1])
    return wrapped


def _fn_name(f) -> str:
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _as_grad_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _custom_vjps(name, grad_fn, specs, variables):
    """The VJPs of one custom_gradient call, as a function ``i -> vjp``: all
    gradients come from one call of the user's ``grad_fn`` per upstream gradient,
    each checked against its input's shape, dtype and device (``specs``: one
    ``(label, shape, dtype, device)`` per input, then per variable)."""
    cache = [None, None]  # (upstream gradient, the gradients it gave)
    op = f"custom_gradient:{name}"

    def all_grads(g):
        if cache[0] is g:
            return cache[1]
        if variables:
            out = grad_fn(g, variables=variables)
            if not (isinstance(out, (list, tuple)) and len(out) == 2):
                raise TypeError(
                    f"@gpuad.custom_gradient function {name!r}: its grad_fn uses variables, so it "
                    f"must return a pair (input_grads, variable_grads), but returned "
                    f"{type(out).__name__} {_brief(out)}; return "
                    f"`input_grads, [one gradient per variable]`.")
            input_grads, var_grads = out
            grads = _as_grad_list(input_grads) + _as_grad_list(var_grads)
        else:
            grads = _as_grad_list(grad_fn(g))
        if len(grads) != len(specs):
            raise ValueError(
                f"custom_gradient function expected to return {len(specs)} gradients, but "
                f"returned {len(grads)} instead: @gpuad.custom_gradient function {name!r} has "
                f"{len(specs)} differentiable inputs ({', '.join(s[0] for s in specs)}); its "
                f"grad_fn must return one gradient per input, in order (None for an input "
                f"without a gradient).")
        cache[:] = [g, [_checked_grad(op, name, gi, spec) for gi, spec in zip(grads, specs)]]
        return cache[1]

    def vjp_of(i):
        def custom_gradient_vjp(g, out, *inputs):
            return all_grads(g)[i]
        return custom_gradient_vjp
    return vjp_of


def _brief(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked_grad(op, name, g, spec):
    """A gradient returned by a custom grad_fn as a Tensor of its input's shape,
    dtype and device, or None; anything else raises."""
    label, shape, dtype, device = spec
    if g is None:
        return None
    if not dtype.is_floating:
        return None  # an integer or bool input never gets a gradient: it is discarded
    if isinstance(g, Variable):
        g = g._read()
    elif not isinstance(g, Tensor):
        try:
            g = convert_to_tensor(g, dtype=dtype, device=device)
        except (TypeError, ValueError) as e:
            raise TypeError(f"@gpuad.custom_gradient function {name!r}: the gradient for {label} "
                            f"is {_brief(g)} of type {type(g).__name__!r}, which is not a "
                            f"Tensor ({e}); return a gpuad.Tensor of shape {shape} and dtype "
                            f"{dtype.name}, or None.") from None
    if g.dtype != dtype:
        raise InvalidArgumentError(
            f"@gpuad.custom_gradient function {name!r}: the gradient for {label} has dtype "
            f"{g.dtype.name}, expected {dtype.name} (the input's dtype); return a gradient of "
            f"the input's dtype, e.g. gpuad.cast(grad, gpuad.{dtype.name}).", op)
    if g.shape != shape:
        raise InvalidArgumentError(
            f"@gpuad.custom_gradient function {name!r}: the gradient for {label} has shape "
            f"{g.shape}, expected {shape} (the input's shape); return a gradient of the "
            f"input's shape (sum a broadcast gradient back with gpuad.reduce_sum, or reshape "
            f"it).", op)
    if g._device != device:
        raise InvalidArgumentError(
            f"@gpuad.custom_gradient function {name!r}: the gradient for {label} is on "
            f"{g.device}, expected {device} (the input's device); compute it on the input's "
            f"device.", op)
    return g


def _call_custom(f, name, args, kwargs):
    """One call of a ``custom_gradient``-decorated function ``f``."""
    inputs = [a if isinstance(a, (Tensor, Variable)) else to_tensor(a) for a in args]
    inputs = [a._read() if isinstance(a, Variable) else a for a in inputs]
    saved_reads, _state.variable_reads = _state.variable_reads, []
    try:
        with stop_recording_all():
            result = f(*inputs, **kwargs)
        variables = list({id(v): v for v in _state.variable_reads}.values())
    finally:
        _state.variable_reads = saved_reads
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(
            f"@gpuad.custom_gradient function {name!r} must return a pair (y, grad_fn), but "
            f"returned {type(result).__name__} {_brief(result)}; end it with "
            f"`return y, grad_fn` where grad_fn(upstream) returns the input gradients.")
    y, grad_fn = result
    if not callable(grad_fn):
        raise TypeError(
            f"@gpuad.custom_gradient function {name!r} returned (y, grad_fn) with a grad_fn of "
            f"type {type(grad_fn).__name__!r} ({_brief(grad_fn)}), which is not callable; "
            f"grad_fn must be a function: upstream gradient -> input gradients.")
    if variables:
        try:
            params = inspect.signature(grad_fn).parameters
            accepts = "variables" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):  # no signature to read (a builtin): let it try
            accepts = True
        if not accepts:
            raise TypeError(f"@gpuad.custom_gradient grad_fn must accept keyword argument "
                            f"'variables', since function uses variables: {variables}")
    if isinstance(y, (list, tuple)) and any(isinstance(e, (Tensor, Variable))
                                            for e in nest.flatten(y)):
        raise TypeError(
            f"@gpuad.custom_gradient function {name!r} returned {len(y)} outputs in a "
            f"{type(y).__name__}; gpuad's custom_gradient supports one output Tensor: stack the "
            f"outputs into one tensor (gpuad.stack) or decorate one function per output.")
    y = to_tensor(y)
    out = same_value(y)
    if _state.stack:
        for tape in _state.stack:  # reading a variable inside f watches it, as usual
            if tape._watch_accessed:
                for v in variables:
                    if v._trainable:
                        tape._watch_variable(v)
        specs = ([(f"input {i}", x.shape, x.dtype, x._device) for i, x in enumerate(inputs)]
                 + [(f"variable {j} ({v.name})", v.shape, v.dtype, v._device)
                    for j, v in enumerate(variables)])
        # a primitive of its own; its VJPs keep what grad_fn's closure holds, no more
        prim = Primitive(f"custom_gradient:{getattr(f, '__name__', 'f')}", None,
                         vjps=_custom_vjps(name, grad_fn, specs, variables))
        record(prim, tuple(inputs) + tuple(variables), out, None)
    return out


class _CustomGradientFunction:
    """What ``@custom_gradient`` makes of a function: callable like it, and a
    descriptor, so that on a method ``self`` is bound (not a differentiable input)."""

    def __init__(self, f):
        self._f = f
        self._name = _fn_name(f)
        functools.update_wrapper(self, f)

    def __call__(self, *args, **kwargs):
        return _call_custom(self._f, self._name, args, kwargs)

    def __get__(self, instance, owner=None):
        if instance is None or not hasattr(self._f, "__get__"):
            return self
        bound = self._f.__get__(instance, owner)
        name = self._name

        @functools.wraps(self._f)
        def method(*args, **kwargs):
            return _call_custom(bound, name, args, kwargs)
        return method

    def __repr__(self):
        return f"<gpuad.custom_gradient {self._name}>"


def custom_gradient(f):
    """Decorate ``f(*tensors) -> (y, grad_fn)`` so that the gradient of ``y``
    is ``grad_fn(upstream)`` (one gradient per input, each of its input's shape
    and dtype, or None). If ``f`` reads Variables,
    ``grad_fn(upstream, variables=...)`` must return
    ``(input_grads, variable_grads)``. On a method, ``self`` is bound and is
    not an input. The returned gradients are checked: a wrong count, shape,
    dtype or device raises, naming ``f`` and the input.

    >>> import gpuad as ad
    >>> @ad.custom_gradient
    ... def clipped_identity(x):
    ...     return ad.identity(x), lambda dy: ad.clip_by_value(dy, -1.0, 1.0)
    >>> x = ad.constant(2.0)
    >>> with ad.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = clipped_identity(x) * 5.0
    >>> float(tape.gradient(y, x))
    1.0
    >>> class Scale:
    ...     def __init__(self, k):
    ...         self.k = k
    ...     @ad.custom_gradient
    ...     def __call__(self, x):
    ...         return x * self.k, lambda dy: dy * self.k
    >>> float(ad.grad(Scale(3.0))(ad.constant(1.0)))
    3.0
    """
    return _CustomGradientFunction(f)
