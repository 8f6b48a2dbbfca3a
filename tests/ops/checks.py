"""Gradient checks for the op tests: gpuad's VJPs against central finite
differences, by the random-direction inner product of JAX's ``check_grads``.

For a function ``f`` of float64 arrays ``xs``, a random cotangent ``v`` (the
shape of ``f(xs)``) and random directions ``u_i`` (the shapes of the ``xs``),

    sum_i <vjp_i(v), u_i>   ==   d/dt <v, f(xs + t u)> at t = 0
                            ~=   (<v, f(xs + eps u)> - <v, f(xs - eps u)>) / (2 eps)

The left side comes from ``gpuad.GradientTape`` (``output_gradients=v``), the
right side only from forward evaluations. ``order=2`` applies the same check
to ``xs -> d<v, f(xs)>/dxs`` computed by an inner tape inside the outer tape's
context, i.e. it checks the VJP of the VJP (nested tapes), once with a fixed
random ``v`` and once with ``v = f(xs)`` as JAX does.

>>> import numpy as np, gpuad as ad
>>> numerical_vjp_check(ad.sin, [np.array([0.5, 1.0])], np.random.default_rng(0), order=2)
"""
from __future__ import annotations

import numpy as np

import gpuad as ad

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-8

__all__ = ["numerical_vjp_check", "vjp", "as_list"]


def as_list(out) -> list:
    """A function's output(s) as a list of Tensors (``f`` may return one or several)."""
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def _numpy_outputs(f, arrays) -> list:
    """``f`` evaluated on float64 copies of ``arrays`` (no tape), as float64 arrays."""
    xs = [ad.constant(np.asarray(a, dtype=np.float64)) for a in arrays]
    return [np.asarray(y.numpy(), dtype=np.float64) for y in as_list(f(*xs))]


def _inner(vs, ys) -> float:
    return float(sum(np.sum(v * y) for v, y in zip(vs, ys)))


def vjp(f, xs, cotangents):
    """The gradients of ``sum_j <cotangents_j, f(xs)_j>`` with respect to each
    tensor in ``xs`` (a list), by one tape. Unconnected inputs give None."""
    with ad.GradientTape() as tape:
        tape.watch(xs)
        ys = as_list(f(*xs))
    seeds = [ad.constant(c) for c in cotangents]
    return tape.gradient(ys, list(xs), output_gradients=seeds)


def _check_one(f, arrays, rng, eps, rtol, atol, what):
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    xs = [ad.constant(a) for a in arrays]

    with ad.GradientTape() as tape:
        tape.watch(xs)
        ys = as_list(f(*xs))
    for y in ys:
        assert y.dtype == ad.float64, f"{what}: float64 inputs gave a {y.dtype.name} output"
    vs = [rng.standard_normal(y.shape) for y in ys]
    grads = tape.gradient(ys, xs, output_gradients=[ad.constant(v) for v in vs])

    us = [rng.standard_normal(a.shape) for a in arrays]
    lhs = 0.0
    magnitude = 0.0
    for i, (g, u, a) in enumerate(zip(grads, us, arrays)):
        if g is None:
            continue  # no path from input i: its contribution is 0
        assert g.shape == a.shape, f"{what}: gradient #{i} has shape {g.shape}, input has {a.shape}"
        assert g.dtype == ad.float64, f"{what}: gradient #{i} is {g.dtype.name}, not float64"
        gn = g.numpy()
        lhs += float(np.sum(gn * u))
        magnitude += float(np.sum(np.abs(gn * u)))

    plus = _numpy_outputs(f, [a + eps * u for a, u in zip(arrays, us)])
    minus = _numpy_outputs(f, [a - eps * u for a, u in zip(arrays, us)])
    rhs = (_inner(vs, plus) - _inner(vs, minus)) / (2 * eps)
    # central differences lose about eps_machine * |<v, f>| / eps to rounding
    rounding = 1e-15 * (_inner([np.abs(v) for v in vs], [np.abs(y) for y in plus]) + 1.0) / eps
    scale = max(abs(lhs), abs(rhs), magnitude)
    assert np.isfinite(lhs), f"{what}: the VJP inner product is {lhs}"
    assert abs(lhs - rhs) <= atol + rounding + rtol * scale, (
        f"{what}: VJP inner product {lhs!r} != finite difference {rhs!r} "
        f"(|diff| {abs(lhs - rhs):.3g}, allowed {atol + rounding + rtol * scale:.3g})")


def numerical_vjp_check(f, args, rng, order=1, eps=EPS, rtol=RTOL, atol=ATOL):
    """Check ``f``'s gradients (and, with ``order=2``, the gradients of its
    gradients) against central finite differences.

    ``f`` takes one Tensor per entry of ``args`` (float64 arrays; anything not
    differentiated should be closed over) and returns a Tensor or a list of
    Tensors. Size-0 and 0-d inputs and outputs are fine. Raises
    AssertionError naming the order that failed.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    args = [np.asarray(a, dtype=np.float64) for a in args]
    _check_one(f, args, rng, eps, rtol, atol, "order 1")
    if order == 1:
        return

    # order 2, as JAX's check_grads: differentiate the VJP itself, for a fixed
    # random cotangent v (x -> d<v, f(x)>/dx) and for the cotangent
    # f(x) (x -> J(x)^T f(x)), which also exercises each VJP's dependence on its
    # incoming gradient. The inner gradient runs inside the outer tape's
    # context, so the outer tape records it (nested tapes).
    shapes = [y.shape for y in as_list(f(*[ad.constant(a) for a in args]))]
    vs = [rng.standard_normal(s) for s in shapes]

    def first_derivative(*xs, cotangent_is_output=False):
        with ad.GradientTape() as inner:
            inner.watch(list(xs))
            ys = as_list(f(*xs))
        seeds = ys if cotangent_is_output else [ad.constant(v) for v in vs]
        grads = inner.gradient(ys, list(xs), output_gradients=seeds)
        # an input without a path contributes zeros, which no longer depend on x
        return [ad.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]

    _check_one(first_derivative, args, rng, eps, rtol, atol, "order 2 (fixed cotangent)")
    _check_one(lambda *xs: first_derivative(*xs, cotangent_is_output=True), args, rng, eps, rtol,
               atol, "order 2 (cotangent f(x))")
