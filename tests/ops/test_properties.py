"""Property tests (hypothesis): broadcasting and reductions on random shapes.

- Binary ops on any pair of NumPy-compatible shapes: the forward equals NumPy,
  and each input's gradient has exactly that input's shape and equals the
  upstream gradient (times the local derivative) summed over the axes
  broadcasting stretched or added (TF_REFERENCE.md §12).
- Incompatible pairs raise ``gpuad.InvalidArgumentError`` (a ``ValueError``)
  saying "Incompatible shapes".
- Reductions over a random subset of axes, with or without keepdims: the value
  equals NumPy; reduce_sum's gradient is ones, reduce_mean's is 1/n.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import gpuad as ad

# gpuad.devices.cpu silences NumPy's RuntimeWarnings for edge values (log(0), 0/0) with a
# filter installed at import time, which pytest's per-test warning capture does not keep;
# restore it here (test_edge_values checks in a fresh interpreter that users see none).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:gpuad")

# The ``device`` fixture only enters ``gpuad.device(...)`` for the whole test; no state
# needs resetting between examples, so sharing it across examples is safe.
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def sum_to_shape(g: np.ndarray, shape: tuple) -> np.ndarray:
    """NumPy's reduction of a broadcast gradient back to ``shape``: sum the leading
    axes broadcasting added, then (keeping them) the axes it stretched from 1."""
    g = np.sum(g, axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return np.sum(g, axis=stretched, keepdims=True).reshape(shape)


# name: (gpuad op, NumPy forward, d/dx, d/dy) -- local derivatives, element-wise
BINARY = {
    "add": (ad.add, np.add, lambda x, y: np.ones_like(x * y), lambda x, y: np.ones_like(x * y)),
    "subtract": (ad.subtract, np.subtract, lambda x, y: np.ones_like(x * y),
                 lambda x, y: -np.ones_like(x * y)),
    "multiply": (ad.multiply, np.multiply, lambda x, y: y + 0 * x, lambda x, y: x + 0 * y),
    "divide": (ad.divide, np.divide, lambda x, y: 1 / y + 0 * x, lambda x, y: -x / (y * y)),
    "maximum": (ad.maximum, np.maximum, lambda x, y: (x >= y) * 1.0, lambda x, y: (x < y) * 1.0),
    "minimum": (ad.minimum, np.minimum, lambda x, y: (x <= y) * 1.0, lambda x, y: (x > y) * 1.0),
    "squared_difference": (ad.squared_difference, lambda x, y: (x - y) ** 2,
                           lambda x, y: 2 * (x - y), lambda x, y: -2 * (x - y)),
}


def _values(seed, shape):
    """Values with 0.5 <= |v| <= 2 (safe divisors)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2 ** 31 - 1))
def test_binary_broadcasting_forward_and_gradient(shapes, op, seed, device):
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    gpu_op, np_op, dx, dy = BINARY[op]
    a, b = _values(seed, sa), _values(seed + 1, sb)
    upstream = np.random.default_rng(seed + 2).standard_normal(out_shape)
    x, y = ad.constant(a), ad.constant(b)
    with ad.GradientTape() as tape:
        tape.watch([x, y])
        z = gpu_op(x, y)
    assert z.shape == out_shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_allclose(z.numpy(), np_op(a, b), rtol=1e-14, atol=0)
    gx, gy = tape.gradient(z, [x, y], output_gradients=ad.constant(upstream))
    for g, src, local in ((gx, a, dx), (gy, b, dy)):
        assert g is not None and g.shape == src.shape and g.dtype == ad.float64
        want = sum_to_shape(upstream * local(a, b), src.shape)
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=0, max_side=3),
       seed=st.integers(0, 2 ** 31 - 1))
def test_where_broadcasts_three_ways(shapes, seed, device):
    sc, sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    c, a, b = rng.random(sc) > 0.5, rng.standard_normal(sa), rng.standard_normal(sb)
    upstream = rng.standard_normal(shapes.result_shape)
    x, y = ad.constant(a), ad.constant(b)
    with ad.GradientTape() as tape:
        tape.watch([x, y])
        z = ad.where(ad.constant(c), x, y)
    np.testing.assert_array_equal(z.numpy(), np.where(c, a, b))
    gx, gy = tape.gradient(z, [x, y], output_gradients=ad.constant(upstream))
    mask = np.broadcast_to(c, shapes.result_shape)
    np.testing.assert_allclose(gx.numpy(), sum_to_shape(np.where(mask, upstream, 0), sa), atol=1e-12)
    np.testing.assert_allclose(gy.numpy(), sum_to_shape(np.where(mask, 0, upstream), sb), atol=1e-12)
    assert gx.shape == sa and gy.shape == sb


@st.composite
def incompatible_shapes(draw):
    """Two shapes with one trailing-aligned axis whose sizes differ and are both > 1."""
    a = list(draw(array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)))
    n_b = draw(st.integers(1, len(a)))
    b = a[len(a) - n_b:]
    i = draw(st.integers(0, n_b - 1))  # position in b; the same axis is len(a) - n_b + i in a
    size_a = draw(st.integers(2, 5))
    size_b = draw(st.integers(2, 5).filter(lambda s: s != size_a))
    a[len(a) - n_b + i], b[i] = size_a, size_b
    if draw(st.booleans()):
        a, b = b, a
    return tuple(a), tuple(b)


@SETTINGS
@given(shapes=incompatible_shapes(),
       op=st.sampled_from(["add", "subtract", "multiply", "divide", "maximum", "minimum", "pow",
                           "equal", "less", "where", "operator +", "operator *"]))
def test_incompatible_shapes_raise(shapes, op, device):
    sa, sb = shapes
    with pytest.raises(ValueError):  # the strategy's pairs really are incompatible
        np.broadcast_shapes(sa, sb)
    x, y = ad.ones(sa), ad.ones(sb)
    call = {
        "where": lambda: ad.where(ad.ones(sa) > 0, x, y),
        "operator +": lambda: x + y,
        "operator *": lambda: x * y,
    }.get(op, lambda: getattr(ad, op)(x, y))
    with pytest.raises(ad.InvalidArgumentError, match="Incompatible shapes") as info:
        call()
    assert isinstance(info.value, ValueError)
    for shape in (sa, sb):  # the message names both shapes, TF style: [3,2] vs. [3]
        assert f"[{','.join(map(str, shape))}]" in str(info.value)


@st.composite
def reduction_args(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    ndim = len(shape)
    form = draw(st.sampled_from(["none", "int", "tuple", "list"]) if ndim else st.just("none"))
    if form == "none":
        axis = None
    elif form == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        # each axis as itself or its negative alias
        axes = [a - ndim if draw(st.booleans()) else a for a in axes]
        axis = tuple(axes) if form == "tuple" else axes
    return shape, axis, draw(st.booleans())


def _reduced_axes(shape, axis):
    if axis is None:
        return tuple(range(len(shape)))
    items = [axis] if isinstance(axis, int) else list(axis)
    return tuple(sorted({a % len(shape) for a in items}))


REDUCTIONS = {
    "reduce_sum": (ad.reduce_sum, np.sum),
    "reduce_mean": (ad.reduce_mean, np.mean),
    "reduce_max": (ad.reduce_max, np.max),
    "reduce_min": (ad.reduce_min, np.min),
    "reduce_prod": (ad.reduce_prod, np.prod),
    "reduce_logsumexp": (ad.reduce_logsumexp, lambda x, axis, keepdims: _np_logsumexp(x, axis, keepdims)),
}


def _np_logsumexp(x, axis, keepdims):
    with np.errstate(divide="ignore"):  # log(0) = -inf over an empty axis
        return np.log(np.sum(np.exp(x), axis, keepdims=keepdims))


@SETTINGS
@given(args=reduction_args(), op=st.sampled_from(sorted(REDUCTIONS)), seed=st.integers(0, 2 ** 31 - 1))
def test_reduction_value_matches_numpy(args, op, seed, device):
    shape, axis, keepdims = args
    axes = _reduced_axes(shape, axis)
    empty_reduction = any(shape[a] == 0 for a in axes)
    if empty_reduction and op in ("reduce_max", "reduce_min", "reduce_mean"):
        shape = tuple(max(d, 1) for d in shape)  # NumPy has no identity for these
    x = _values(seed, shape)
    gpu_op, np_op = REDUCTIONS[op]
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    want = np.asarray(np_op(x, axis=np_axis, keepdims=keepdims))
    got = gpu_op(ad.constant(x), axis=axis, keepdims=keepdims)
    assert got.shape == want.shape and got.dtype == ad.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)


@SETTINGS
@given(args=reduction_args(), seed=st.integers(0, 2 ** 31 - 1))
def test_reduce_sum_and_mean_gradients(args, seed, device):
    shape, axis, keepdims = args
    n = int(np.prod([shape[a] for a in _reduced_axes(shape, axis)], dtype=np.int64))
    x = _values(seed, shape).astype(np.float32)
    t = ad.constant(x)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(t)
        total = ad.reduce_sum(t, axis=axis, keepdims=keepdims)
        mean = ad.reduce_mean(t, axis=axis, keepdims=keepdims)
    g_sum, g_mean = tape.gradient(total, t), tape.gradient(mean, t)
    assert g_sum.shape == g_mean.shape == shape
    assert g_sum.dtype == g_mean.dtype == ad.float32
    np.testing.assert_array_equal(g_sum.numpy(), np.ones(shape, np.float32))
    if x.size:  # n > 0 here
        np.testing.assert_allclose(g_mean.numpy(), np.full(shape, 1 / n, np.float32), rtol=1e-6)

