"""Functional autodiff and friends: grad, value_and_grad, gradients_function,
custom_gradient, and the ``function`` decorator.

>>> import gpuad as ad
>>> df = ad.grad(lambda x: x ** 3)
>>> float(df(ad.constant(2.0)))
12.0
"""
from __future__ import annotations

import functools
import inspect

from . import nest
from .ops.core import Primitive
from .ops.operands import to_tensor
from .tape import GradientTape, _state, record, stop_recording_all
from .tensor import Tensor, Variable

__all__ = ["grad", "value_and_grad", "gradients_function", "custom_gradient", "function"]


def _argnums(argnums, n):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for i in nums:
        if not -n <= i < n:
            raise ValueError(f"argnums {i} is out of range for a function called with {n} "
                             f"positional arguments.")
    return single, tuple(i % n for i in nums)


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args), gradient of f w.r.t. args[argnums])``;
    ``f`` must return a scalar (or a tensor, which is summed).

    >>> import gpuad as ad
    >>> value, g = ad.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(2.0, 5.0)
    >>> float(value), [float(t) for t in g]
    (10.0, [5.0, 2.0])
    """
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        single, nums = _argnums(argnums, len(args))
        args = list(args)
        for i in nums:
            if not isinstance(args[i], Variable):
                args[i] = to_tensor(args[i])
        with GradientTape() as tape:
            tape.watch([args[i] for i in nums])
            value = f(*args, **kwargs)
        grads = tape.gradient(value, [args[i] for i in nums])
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
    positional argument (TF eager's old ``tfe.gradients_function``)."""
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        return list(value_and_grad(f, tuple(range(len(args))))(*args, **kwargs)[1])
    return wrapped


def _custom_vjps(grad_fn, n_inputs, variables):
    """The VJPs of one custom_gradient call, as a function ``i -> vjp``: all
    gradients come from one call of the user's ``grad_fn`` per upstream gradient."""
    cache = [None, None]  # (upstream gradient, the gradients it gave)

    def all_grads(g):
        if cache[0] is g:
            return cache[1]
        if variables:
            input_grads, var_grads = grad_fn(g, variables=variables)
            input_grads = list(input_grads) if isinstance(input_grads, (list, tuple)) else [input_grads]
            grads = input_grads + list(var_grads)
        else:
            out = grad_fn(g)
            grads = list(out) if isinstance(out, (list, tuple)) else [out]
        expected = n_inputs + len(variables)
        if len(grads) != expected:
            raise ValueError(f"custom_gradient function expected to return {expected} gradients, "
                             f"but returned {len(grads)} instead.")
        cache[:] = [g, [None if g_ is None else to_tensor(g_) for g_ in grads]]
        return cache[1]

    def vjp_of(i):
        def custom_gradient_vjp(g, out, *inputs):
            return all_grads(g)[i]
        return custom_gradient_vjp
    return vjp_of


def custom_gradient(f):
    """Decorate ``f(*tensors) -> (y, grad_fn)`` so that the gradient of ``y``
    is ``grad_fn(upstream)`` (one gradient per input). If ``f`` reads
    Variables, ``grad_fn(upstream, variables=...)`` must return
    ``(input_grads, variable_grads)``.

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
    """
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        inputs = [a if isinstance(a, (Tensor, Variable)) else to_tensor(a) for a in args]
        inputs = [a._read() if isinstance(a, Variable) else a for a in inputs]
        saved_reads, _state.variable_reads = _state.variable_reads, []
        try:
            with stop_recording_all():
                y, grad_fn = f(*inputs, **kwargs)
            variables = list({id(v): v for v in _state.variable_reads}.values())
        finally:
            _state.variable_reads = saved_reads
        if variables and "variables" not in inspect.signature(grad_fn).parameters:
            raise TypeError(f"@gpuad.custom_gradient grad_fn must accept keyword argument "
                            f"'variables', since function uses variables: {variables}")
        y = to_tensor(y)
        out = Tensor(y._data, y._device)
        if _state.stack:
            for tape in _state.stack:  # reading a variable inside f watches it, as usual
                if tape._watch_accessed:
                    for v in variables:
                        if v._trainable:
                            tape._watch_variable(v)
            # a primitive of its own; its VJPs keep what grad_fn's closure holds, no more
            prim = Primitive(f"custom_gradient:{getattr(f, '__name__', 'f')}", None,
                             vjps=_custom_vjps(grad_fn, len(inputs), variables))
            record(prim, tuple(inputs) + tuple(variables), out, None)
        return out
    return wrapped


def function(func=None, *, input_signature=None, reduce_retracing=False, jit_compile=None):
    """Decorator as ``tf.function``. For now it runs ``func`` eagerly: results
    and gradients are exactly the eager ones (tracing arrives in a later release).

    >>> import gpuad as ad
    >>> @ad.function
    ... def f(x):
    ...     return x * 2.0
    >>> float(f(ad.constant(3.0)))
    6.0
    """
    if func is None:
        return lambda fn: function(fn, input_signature=input_signature,
                                   reduce_retracing=reduce_retracing, jit_compile=jit_compile)

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        return func(*args, **kwargs)
    wrapped.python_function = func
    return wrapped
