"""TensorFlow's gradient values at edge points, pinned (TF_REFERENCE.md §12-§14).

Every value here is TensorFlow's, in float32, as TF_REFERENCE.md lists it
(the seed is ones unless a row says otherwise). Values the reference gives to
float32 precision are compared exactly (NaN == NaN, and the sign of -0.0 where
the reference shows it); values it rounds (0.6931, 0.2689, -0.632) are
compared at that rounding.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import gpuad as ad

# gpuad.devices.cpu silences NumPy's RuntimeWarnings for edge values (log(0), 0/0) with a
# filter installed at import time, which pytest's per-test warning capture does not keep;
# restore it here (test_edge_values checks in a fresh interpreter that users see none).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:gpuad")

nan, inf = float("nan"), float("inf")


def value_and_grad(f, x, dtype=np.float32):
    """y = f(x) and dy/dx (seed ones) for x given as a (nested) list."""
    x = ad.constant(np.asarray(x, dtype=dtype))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return y, tape.gradient(y, x)


def assert_f32(t, expected, atol=0.0, rtol=0.0, what=""):
    """``t`` is a float32 tensor equal to ``expected`` (exactly unless a tolerance is given)."""
    assert t is not None, f"{what}: got None"
    assert t.dtype == ad.float32, f"{what}: dtype {t.dtype.name}"
    got, want = t.numpy(), np.asarray(expected, dtype=np.float32)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if atol or rtol:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


# -- §13: element-wise gradients --------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """``f`` applied to the float32 vector ``x``: value ``y`` and gradient ``dy``
    (compared with tolerance ``atol``; 0 means exact)."""

    name: str
    f: object
    x: list
    y: list
    dy: list
    atol: float = 0.0


# TF prints 0 for sigmoid(-100), softplus(-100) and their gradients; in float32 these
# are exp(-100) ~ 3.8e-44 (a denormal) in a stable formula, so "0" is pinned to 1e-30.
TINY = 1e-30

EDGES = [
    Edge("x**2", lambda x: x ** 2, [0, -2, 3], [0, 4, 9], [0, -4, 6]),
    Edge("x**3", lambda x: x ** 3, [0, -2], [0, -8], [0, 12]),
    Edge("x**0.5", lambda x: x ** 0.5, [0, 4, -1], [0, 2, nan], [inf, 0.25, nan]),
    Edge("x**1.5", lambda x: x ** 1.5, [0, -1], [0, nan], [0, nan]),
    Edge("x**1", lambda x: x ** 1, [0, -1], [0, -1], [1, 1]),
    Edge("x**0", lambda x: x ** 0, [0, 2], [1, 1], [nan, 0]),
    Edge("x**-1", lambda x: x ** -1, [0, 2], [inf, 0.5], [-inf, -0.25]),
    Edge("pow(2., x) wrt the exponent", lambda x: ad.pow(2.0, x), [0, 1], [1, 2],
         [0.6931471824645996, 1.3862943649291992]),
    Edge("pow(0., x) wrt the exponent", lambda x: ad.pow(0.0, x), [0, 1, 2], [1, 0, 0], [0, 0, 0]),
    Edge("pow(-2., x) wrt the exponent", lambda x: ad.pow(-2.0, x), [2], [4], [0]),
    Edge("x**x", lambda x: x ** x, [0, 1, 2], [1, 1, 4], [nan, 1, 6.772588729858398]),
    Edge("square", ad.square, [0, -3], [0, 9], [0, -6]),
    Edge("sqrt", ad.sqrt, [0, 4, -1], [0, 2, nan], [inf, 0.25, nan]),
    Edge("rsqrt", ad.rsqrt, [0, 4], [inf, 0.5], [-inf, -0.0625]),
    Edge("log", ad.log, [0, 1, -1], [-inf, 0, nan], [inf, 1, -1]),
    Edge("log1p", ad.log1p, [-1, 0], [-inf, 0], [inf, 1]),
    Edge("exp", ad.exp, [0, 100], [1, inf], [1, inf]),
    Edge("abs", ad.abs, [0, -2, 2], [0, 2, 2], [0, -1, 1]),
    Edge("sign", ad.sign, [0, -2], [0, -1], [0, 0]),
    Edge("relu", ad.nn.relu, [0, -1, 1], [0, 0, 1], [0, 0, 1]),
    Edge("leaky_relu", ad.nn.leaky_relu, [0, -1, 1], [0, -0.2, 1], [0.2, 0.2, 1]),
    Edge("softplus", ad.nn.softplus, [10, -100, 100], [10.000045776367188, 0, 100],
         [0.9999545812606812, 0, 1], atol=TINY),
    Edge("sigmoid", ad.sigmoid, [0, 100, -100], [0.5, 1, 0], [0.25, 0, 0], atol=TINY),
    Edge("nn.sigmoid", ad.nn.sigmoid, [0, 100, -100], [0.5, 1, 0], [0.25, 0, 0], atol=TINY),
    Edge("tanh", ad.tanh, [0, 100], [0, 1], [1, 0]),
    Edge("1/x", lambda x: 1.0 / x, [0, 2], [inf, 0.5], [-inf, -0.25]),
    Edge("reciprocal", ad.reciprocal, [0, 2], [inf, 0.5], [-inf, -0.25]),
    Edge("x/x", lambda x: x / x, [0, 2], [nan, 1], [nan, 0]),
    Edge("x*0.", lambda x: x * 0.0, [inf, 1], [nan, 0], [0, 0]),
    Edge("sqrt(x*x)", lambda x: ad.sqrt(x * x), [0], [0], [nan]),
    Edge("maximum(x, 0.)", lambda x: ad.maximum(x, 0.0), [0, -1, 1], [0, 0, 1], [1, 0, 1]),
    Edge("minimum(x, 0.)", lambda x: ad.minimum(x, 0.0), [0, -1, 1], [0, -1, 0], [1, 1, 0]),
    Edge("clip_by_value(x, 0, 1)", lambda x: ad.clip_by_value(x, 0.0, 1.0), [0, 1, 0.5, -1, 2],
         [0, 1, 0.5, 0, 1], [1, 1, 1, 0, 0]),
    Edge("floormod(x, 1.)", lambda x: ad.floormod(x, 1.0), [1.5], [0.5], [1]),
    Edge("squared_difference(x, 1.)", lambda x: ad.squared_difference(x, 1.0), [3], [4], [4]),
    Edge("erf", ad.erf, [0], [0], [1.128379225730896]),
    # §13.2: where() with an exact 0 upstream in the unselected branch
    Edge("where(x>0, x*2, x*3)", lambda x: ad.where(x > 0, x * 2, x * 3), [0, -1, 4], [0, -3, 8], [3, 3, 2]),
    Edge("where(x>0, x, 0.)", lambda x: ad.where(x > 0, x, 0.0), [0, -1, 4], [0, 0, 4], [0, 0, 1]),
    Edge("where(x>0, log(x), 0.)", lambda x: ad.where(x > 0, ad.log(x), 0.0), [0], [0], [nan]),
    Edge("where(x>0, 1./x, 0.)", lambda x: ad.where(x > 0, 1.0 / x, 0.0), [0], [0], [nan]),
    Edge("where(x>0, x**0.5, 0.)", lambda x: ad.where(x > 0, x ** 0.5, 0.0), [0], [0], [nan]),
    Edge("where(x<50, exp(x), 0.)", lambda x: ad.where(x < 50, ad.exp(x), 0.0), [100], [0], [nan]),
    Edge("where(x>0, sqrt(x), 0.)", lambda x: ad.where(x > 0, ad.sqrt(x), 0.0), [0], [0], [0]),
    Edge("where(x>0, rsqrt(x), 0.)", lambda x: ad.where(x > 0, ad.rsqrt(x), 0.0), [0], [0], [0]),
    Edge("where(x>0, reciprocal(x), 0.)", lambda x: ad.where(x > 0, ad.reciprocal(x), 0.0), [0], [0], [0]),
    Edge("sqrt(x) * 0.", lambda x: ad.sqrt(x) * 0.0, [0], [0], [0]),
]


@pytest.mark.parametrize("edge", EDGES, ids=[e.name for e in EDGES])
def test_elementwise_edge_values(edge, device):
    y, dy = value_and_grad(edge.f, edge.x)
    assert_f32(y, edge.y, atol=edge.atol, what=f"{edge.name}: value")
    assert_f32(dy, edge.dy, atol=edge.atol, what=f"{edge.name}: gradient")


@pytest.mark.parametrize("op", [lambda x: x ** 0.5, ad.sqrt], ids=["x**0.5", "sqrt"])
def test_float64_gives_the_same_edge_results(op, device):
    """§13: float64 gives the same results (x**0.5 and sqrt at 0 -> inf)."""
    y, dy = value_and_grad(op, [0.0, 4.0], dtype=np.float64)
    assert y.dtype == ad.float64 and dy.dtype == ad.float64
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0])
    np.testing.assert_array_equal(dy.numpy(), [inf, 0.25])


def test_edge_values_are_computed_silently(device):
    """log(0), 0/0, sqrt(-1) and their gradients are results, not accidents: as TF, gpuad
    does not warn about them (run with RuntimeWarnings turned into errors)."""
    code = (
        "import gpuad as ad\n"
        "x = ad.constant([0.0, -1.0, 2.0])\n"
        "with ad.GradientTape() as tape:\n"
        "    tape.watch(x)\n"
        "    ys = [ad.log(x), ad.sqrt(x), 1.0 / x, x / x, x ** 0.5, x ** -1, ad.log1p(x - 1),\n"
        "          ad.exp(x * 100), ad.rsqrt(x), ad.reciprocal(x), ad.norm(x * 0.0)]\n"
        "tape.gradient(ys, x)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, GPUAD_DEVICE=device)
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RuntimeWarning" not in done.stderr


def test_cos_gradient_at_zero_is_negative_zero(device):
    y, dy = value_and_grad(ad.cos, [0.0])
    assert_f32(y, [1.0])
    assert_f32(dy, [0.0])
    assert np.signbit(dy.numpy()[0]), "d cos/dx at 0 must be -0.0, as TF"


def test_rounded_table_values(device):
    """Rows TF_REFERENCE.md gives rounded to 3-4 digits."""
    y, dy = value_and_grad(ad.nn.elu, [0.0, -1.0])
    assert_f32(y, [0.0, -0.632], atol=5e-4)
    assert y.numpy()[0] == 0
    assert_f32(dy, [1.0, 0.3679], atol=5e-5)
    assert dy.numpy()[0] == 1.0  # the gradient at 0 is exactly 1

    y, dy = value_and_grad(ad.nn.softplus, [0.0])
    assert_f32(y, [0.6931], atol=5e-5)
    assert_f32(dy, [0.5])


@pytest.mark.parametrize("x, y, dy", [([0.0, 0.0], 0.0, [nan, nan]), ([3.0, 4.0], 5.0, [0.6, 0.8])],
                         ids=["[0,0]", "[3,4]"])
def test_norm_l2(x, y, dy, device):
    value, grad = value_and_grad(ad.norm, x)
    assert_f32(value, y)
    assert_f32(grad, dy)


def test_norm_l2_along_the_last_axis(device):
    value, grad = value_and_grad(lambda x: ad.norm(x, axis=-1), [[3.0, 4.0], [0.0, 0.0]])
    assert_f32(value, [5.0, 0.0])
    assert_f32(grad, [[0.6, 0.8], [nan, nan]])


def test_norm_l1(device):
    value, grad = value_and_grad(lambda x: ad.norm(x, ord=1), [0.0, -2.0])
    assert_f32(value, 2.0)
    assert_f32(grad, [0.0, -1.0])


def test_norm_under_where_is_nan_free(device):
    """§13.2: where(sum(x) > 0, norm(x), 0.) at [0, 0] -> gradient [0, 0] (sqrt's guard)."""
    value, grad = value_and_grad(lambda x: ad.where(ad.reduce_sum(x) > 0, ad.norm(x), 0.0), [0.0, 0.0])
    assert_f32(value, 0.0)
    assert_f32(grad, [0.0, 0.0])


@pytest.mark.parametrize("op", [ad.round, ad.floor, lambda x: ad.argmax(x)], ids=["round", "floor", "argmax"])
def test_round_floor_argmax_have_no_gradient(op, device):
    """§13/§11: registered non-differentiable: None, not zero."""
    _, grad = value_and_grad(op, [0.4, 1.6, -2.5])
    assert grad is None


def test_sign_gradient_is_zero_not_none(device):
    _, grad = value_and_grad(ad.sign, [0.0, -2.0, 3.0])
    assert_f32(grad, [0.0, 0.0, 0.0])


def test_softmax_first_entry_gradient(device):
    value, grad = value_and_grad(lambda x: ad.nn.softmax(x)[0], [1.0, 2.0])
    assert_f32(value, 0.2689, atol=5e-5)
    # TF prints float32 values to 8 digits: 1 ulp of slack for a different summation order
    assert_f32(grad, [0.19661194, -0.19661193], rtol=2e-7)


def test_sigmoid_cross_entropy_gradient(device):
    value, grad = value_and_grad(
        lambda x: ad.nn.sigmoid_cross_entropy_with_logits(labels=1.0, logits=x), 0.0)
    assert_f32(value, 0.6931, atol=5e-5)
    assert_f32(grad, -0.5)


def test_softmax_cross_entropy_gradient(device):
    value, grad = value_and_grad(
        lambda x: ad.nn.softmax_cross_entropy_with_logits(labels=[1.0, 0.0], logits=x), [0.0, 0.0])
    assert_f32(value, 0.6931, atol=5e-5)
    assert_f32(grad, [-0.5, 0.5])


# -- §13.1: ties ------------------------------------------------------------------------------
@pytest.mark.parametrize("op, x, dy", [
    (ad.reduce_max, [1.0, 3.0, 3.0], [0.0, 0.5, 0.5]),
    (ad.reduce_max, [2.0, 2.0, 2.0], [1 / 3, 1 / 3, 1 / 3]),
    (ad.reduce_min, [1.0, 1.0, 3.0], [0.5, 0.5, 0.0]),
    (lambda x: ad.reduce_max(x, axis=1), [[1.0, 1.0], [0.0, 2.0]], [[0.5, 0.5], [0.0, 1.0]]),
], ids=["reduce_max 2-way", "reduce_max 3-way", "reduce_min", "reduce_max axis=1"])
def test_reduction_ties_split_evenly(op, x, dy, device):
    _, grad = value_and_grad(op, x)
    assert_f32(grad, dy)  # 1/3 is 0.3333333432674408 in float32


def test_three_way_tie_is_the_float32_third(device):
    _, grad = value_and_grad(ad.reduce_max, [2.0, 2.0, 2.0])
    assert float(grad.numpy()[0]) == 0.3333333432674408


@pytest.mark.parametrize("op, da, db", [(ad.maximum, [1.0, 1.0], [0.0, 0.0]),
                                        (ad.minimum, [1.0, 0.0], [0.0, 1.0])],
                         ids=["maximum", "minimum"])
def test_binary_ties_go_to_the_first_argument(op, da, db, device):
    a, b = ad.constant([1.0, 2.0]), ad.constant([1.0, 1.0])
    with ad.GradientTape() as tape:
        tape.watch([a, b])
        y = op(a, b)
    ga, gb = tape.gradient(y, [a, b])
    assert_f32(ga, da)
    assert_f32(gb, db)


def test_maximum_of_x_with_itself(device):
    _, grad = value_and_grad(lambda x: ad.maximum(x, x), 3.0)
    assert_f32(grad, 1.0)


@pytest.mark.parametrize("x, dy", [([0.0, 2.0, 3.0], [6.0, 0.0, 0.0]), ([0.0, 0.0, 3.0], [0.0, 0.0, 0.0])],
                         ids=["one zero", "two zeros"])
def test_reduce_prod_with_zeros_is_exact(x, dy, device):
    _, grad = value_and_grad(ad.reduce_prod, x)
    assert_f32(grad, dy)


def test_reduce_logsumexp(device):
    value, grad = value_and_grad(ad.reduce_logsumexp, [0.0, 0.0])
    assert_f32(value, 0.6931, atol=5e-5)
    assert_f32(grad, [0.5, 0.5])


# -- §13.2: where with two branches ---------------------------------------------------------
def test_where_routes_each_branch_gradient(device):
    a, b = ad.constant([1.0, 2.0, 3.0]), ad.constant([10.0, 20.0, 30.0])
    c = ad.constant([True, False, True])
    with ad.GradientTape() as tape:
        tape.watch([a, b])
        y = ad.where(c, a * a, b * b)
    ga, gb = tape.gradient(y, [a, b])
    assert_f32(ga, [2.0, 0.0, 6.0])
    assert_f32(gb, [0.0, 40.0, 0.0])


def test_where_with_python_float_branches_is_float32(device):
    """§13.2: where(c, 1.0, 0.0) -> float32."""
    y = ad.where(ad.constant([True, False]), 1.0, 0.0)
    assert y.dtype == ad.float32
    np.testing.assert_array_equal(y.numpy(), np.array([1.0, 0.0], np.float32))


# -- §12: broadcasting gradients -------------------------------------------------------------
def _grads(f, *values):
    xs = [ad.constant(np.asarray(v, np.float32)) for v in values]
    with ad.GradientTape() as tape:
        tape.watch(xs)
        y = f(*xs)
    return y, tape.gradient(y, xs)


def test_broadcast_add_column_and_row(device):
    _, (ga, gb) = _grads(ad.add, np.ones((3, 1)), np.ones((1, 4)))
    assert_f32(ga, np.full((3, 1), 4.0))
    assert_f32(gb, np.full((1, 4), 3.0))


def test_broadcast_multiply_column_and_vector(device):
    _, (ga, gb) = _grads(ad.multiply, np.ones((3, 1)), [1.0, 2.0, 3.0, 4.0])
    assert_f32(ga, np.full((3, 1), 10.0))
    assert_f32(gb, np.full((4,), 3.0))


def test_broadcast_scalar_times_matrix(device):
    _, (ga, gb) = _grads(ad.multiply, 2.0, np.ones((2, 3)))
    assert_f32(ga, 6.0)
    assert_f32(gb, np.full((2, 3), 2.0))


def test_broadcast_variable_bias(device):
    v = ad.Variable(np.zeros(3, np.float32))
    with ad.GradientTape() as tape:
        y = ad.ones((5, 3)) + v
    assert_f32(tape.gradient(y, v), [5.0, 5.0, 5.0])


def test_broadcast_where_scalar_branch(device):
    c = ad.constant([True, False, True])
    _, (ga, gb) = _grads(lambda a, bb: ad.where(c, a, bb), [1.0, 2.0, 3.0], 7.0)
    assert_f32(ga, [1.0, 0.0, 1.0])
    assert_f32(gb, 1.0)  # the sum over the positions where bb was selected


def test_incompatible_shapes_raise(device):
    with pytest.raises(ad.InvalidArgumentError, match=r"Incompatible shapes: \[3,2\] vs. \[3\]"):
        ad.ones((3, 2)) + ad.ones((3,))


# -- §14: reduction, shape and linear-algebra gradients -------------------------------------
X = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.mark.parametrize("kwargs, y", [
    (dict(), 15.0), (dict(axis=0), [3.0, 5.0, 7.0]), (dict(axis=1, keepdims=True), [[3.0], [12.0]]),
    (dict(axis=[0, 1]), 15.0), (dict(axis=-1), [3.0, 12.0]),
], ids=["all", "axis=0", "axis=1 keepdims", "axis=[0,1]", "axis=-1"])
def test_reduce_sum(kwargs, y, device):
    value, grad = value_and_grad(lambda x: ad.reduce_sum(x, **kwargs), X)
    assert_f32(value, y)
    assert_f32(grad, np.ones((2, 3)))


def test_reduce_sum_invalid_axis(device):
    with pytest.raises(ad.InvalidArgumentError,
                       match=r"Invalid reduction dimension \(2 for input with 2 dimension\(s\)"):
        ad.reduce_sum(ad.constant(X), axis=2)


@pytest.mark.parametrize("kwargs, y, dy", [
    (dict(), 2.5, 1 / 6), (dict(axis=0), [1.5, 2.5, 3.5], 0.5),
    (dict(axis=1, keepdims=True), [[1.0], [4.0]], 1 / 3),
], ids=["all", "axis=0", "axis=1 keepdims"])
def test_reduce_mean(kwargs, y, dy, device):
    value, grad = value_and_grad(lambda x: ad.reduce_mean(x, **kwargs), X)
    assert_f32(value, y)
    assert_f32(grad, np.full((2, 3), dy))  # 0.16666667 / 0.5 / 0.33333334


def test_reduce_max_along_rows(device):
    value, grad = value_and_grad(lambda x: ad.reduce_max(x, axis=1), X)
    assert_f32(value, [2.0, 5.0])
    assert_f32(grad, [[0, 0, 1], [0, 0, 1]])


SHAPE_GRADIENTS = [
    ("reshape", lambda x: ad.reshape(x, (3, 2)) * ad.constant([[1.0], [2.0], [3.0]]), X,
     None, [[1, 1, 2], [2, 3, 3]]),
    ("transpose", lambda x: ad.transpose(x) * ad.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), X,
     None, [[1, 3, 5], [2, 4, 6]]),
    ("concat axis=0", lambda x: ad.concat([x, 2 * x], axis=0), X, np.concatenate([X, 2 * X], 0),
     np.full((2, 3), 3.0)),
    ("concat axis=1", lambda x: ad.concat([x, 2 * x], axis=1), X, np.concatenate([X, 2 * X], 1),
     np.full((2, 3), 3.0)),
    ("stack", lambda x: ad.stack([x, 3 * x]), X, np.stack([X, 3 * X]), np.full((2, 3), 4.0)),
    ("x[:, 1:3]", lambda x: x[:, 1:3], X, [[1, 2], [4, 5]], [[0, 1, 1], [0, 1, 1]]),
    ("x[1:3]", lambda x: x[1:3], [1.0, 2.0, 3.0, 4.0], [2, 3], [0, 1, 1, 0]),
    ("x[::-1]*[1,2,3]", lambda x: x[::-1] * ad.constant([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0], [3, 4, 3],
     [3, 2, 1]),
    ("x[0]", lambda x: x[0], X, [0, 1, 2], [[1, 1, 1], [0, 0, 0]]),
    ("gather axis=1", lambda x: ad.gather(x, [0, 0, 2], axis=1), X, [[0, 0, 2], [3, 3, 5]],
     [[2, 0, 1], [2, 0, 1]]),
    # TF returns IndexedSlices (values [1,1,1], indices [0,0,2], dense_shape [3]) for a gather
    # along axis 0; gpuad returns the densified Tensor, duplicates summed (a documented divergence).
    ("gather axis=0", lambda x: ad.gather(x, [0, 0, 2]), [1.0, 2.0, 3.0], [1, 1, 3], [2, 0, 1]),
    ("tile", lambda x: ad.tile(x, [2, 1]), X, np.tile(X, [2, 1]), np.full((2, 3), 2.0)),
    ("broadcast_to", lambda x: ad.broadcast_to(x, (4, 2, 3)), X, np.broadcast_to(X, (4, 2, 3)),
     np.full((2, 3), 4.0)),
    ("split[1]", lambda x: ad.split(x, 3, axis=1)[1], X, [[1], [4]], [[0, 1, 0], [0, 1, 0]]),
    ("unstack[1]", lambda x: ad.unstack(x)[1], X, [3, 4, 5], [[0, 0, 0], [1, 1, 1]]),
    ("squeeze(expand_dims)", lambda x: ad.squeeze(ad.expand_dims(x, 0)), X, X, np.ones((2, 3))),
]


@pytest.mark.parametrize("f, x, y, dy", [row[1:] for row in SHAPE_GRADIENTS],
                         ids=[row[0] for row in SHAPE_GRADIENTS])
def test_shape_op_gradients(f, x, y, dy, device):
    value, grad = value_and_grad(f, x)
    if y is not None:
        assert_f32(value, y)
    assert type(grad) is ad.Tensor  # dense, also for gather (TF: IndexedSlices)
    assert_f32(grad, dy)


V = [1.0, 2.0]
LINALG_GRADIENTS = [
    ("tensordot axes=1", lambda v: ad.tensordot(v, v, axes=1), V, 5.0, [2, 4]),
    ("tensordot axes=0", lambda v: ad.tensordot(v, v, axes=0), V, [[1, 2], [2, 4]], [6, 6]),
    ("tensordot axes=[[1],[0]]", lambda x: ad.tensordot(x, ad.ones((3, 2)), axes=[[1], [0]]), X,
     [[3, 3], [12, 12]], np.full((2, 3), 2.0)),
    ("tensordot axes=2", lambda x: ad.tensordot(x, x, axes=2), X, 55.0, 2 * X),
    ("matmul", lambda x: ad.matmul(x, ad.ones((3, 2))), X, [[3, 3], [12, 12]], np.full((2, 3), 2.0)),
    ("matmul transpose_b", lambda x: ad.matmul(x, x, transpose_b=True), X, [[5, 14], [14, 50]],
     [[6, 10, 14], [6, 10, 14]]),
    ("x @ transpose(x)", lambda x: x @ ad.transpose(x), X, [[5, 14], [14, 50]], [[6, 10, 14], [6, 10, 14]]),
    ("batched matmul", lambda x: ad.matmul(ad.stack([x, x]), ad.ones((3, 1))), X,
     [[[3], [12]], [[3], [12]]], np.full((2, 3), 2.0)),
]


@pytest.mark.parametrize("f, x, y, dy", [row[1:] for row in LINALG_GRADIENTS],
                         ids=[row[0] for row in LINALG_GRADIENTS])
def test_linear_algebra_gradients(f, x, y, dy, device):
    value, grad = value_and_grad(f, x)
    assert_f32(value, y)
    assert_f32(grad, dy)
