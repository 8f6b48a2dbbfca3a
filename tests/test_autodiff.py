"""custom_gradient, the functional forms (grad, value_and_grad,
gradients_function), gpuad.function, and the gradient rules for integers,
bools and casts (TF_REFERENCE.md §10, §11) and for broadcasting (§12)."""
import numpy as np
import pytest

import gpuad as ad


def _eq(t, expected, dtype=ad.float32, rtol=1e-6):
    assert isinstance(t, ad.Tensor), type(t)
    assert t.dtype == dtype, (t.dtype, dtype)
    exp = np.asarray(expected, dtype=ad.as_dtype(dtype).numpy)
    assert t.shape == exp.shape, (t.shape, exp.shape)
    np.testing.assert_allclose(np.asarray(t.numpy()), exp, rtol=rtol, atol=1e-6)


# ---------------------------------------------------------------------------
# §10 custom_gradient
# ---------------------------------------------------------------------------

@ad.custom_gradient
def log1pexp(x):
    e = ad.exp(x)

    def grad(dy):
        return dy * (1 - 1 / (1 + e))
    return ad.log(1 + e), grad


def test_custom_gradient_log1pexp(device):
    x = ad.constant(100.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = log1pexp(x)
    assert np.isinf(float(y)) and y.dtype == ad.float32
    _eq(t.gradient(y, x), 1.0)


def test_custom_gradient_replaces_the_rule(device):
    @ad.custom_gradient
    def clipped_identity(x):
        return ad.identity(x), lambda dy: ad.clip_by_value(dy, -1.0, 1.0)

    x = ad.constant([2.0, 3.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y = clipped_identity(x) * ad.constant([5.0, 0.5])
    _eq(y, [10.0, 1.5])
    _eq(t.gradient(y, x), [1.0, 0.5])


def test_custom_gradient_two_inputs(device):
    @ad.custom_gradient
    def f(a, b):
        return a * b, lambda dy: (dy * 2.0, dy * 3.0)

    a, b = ad.constant(1.0), ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch([a, b])
        y = f(a, b) * 10.0
    g = t.gradient(y, [a, b])
    _eq(g[0], 20.0)
    _eq(g[1], 30.0)


def test_custom_gradient_wrong_count_raises_at_gradient_time(device):
    @ad.custom_gradient
    def f(a, b):
        return a * b, lambda dy: dy * 2.0

    a, b = ad.constant(1.0), ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch([a, b])
        y = f(a, b)  # no error yet
    with pytest.raises(ValueError) as e:
        t.gradient(y, [a, b])
    assert "2" in str(e.value) and "1" in str(e.value)


def test_custom_gradient_with_variables(device):
    v = ad.Variable(100.0)

    @ad.custom_gradient
    def f(x):
        def grad(dy, variables=None):
            assert variables is not None and len(variables) == 1 and variables[0] is v
            return dy * 2.0, [dy * 300.0]
        return x * v, grad

    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
    _eq(y, 100.0)
    g = t.gradient(y, [x, v])
    _eq(g[0], 2.0)
    _eq(g[1], 300.0)


def test_custom_gradient_grad_fn_without_variables_kwarg(device):
    v = ad.Variable(100.0)

    @ad.custom_gradient
    def f(x):
        return x * v, lambda dy: dy * 2.0

    with pytest.raises(TypeError, match="variables"):
        f(ad.constant(1.0))  # raised at forward-call time, as TF


def test_custom_gradient_grad_fn_returning_none(device):
    @ad.custom_gradient
    def f(x):
        return x * 2.0, lambda dy: None

    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
    assert t.gradient(y, x) is None
    x2 = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x2)
        y = f(x2) + x2 * 3.0
    _eq(t.gradient(y, x2), 3.0)


def test_custom_gradient_second_order(device):
    @ad.custom_gradient
    def sq(x):
        return x * x, lambda dy: dy * 2.0 * x

    x = ad.constant(3.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = sq(x)
        dy = inner.gradient(y, x)
    _eq(dy, 6.0)
    _eq(outer.gradient(dy, x), 2.0)


def test_custom_gradient_outside_tape_and_python_floats(device):
    @ad.custom_gradient
    def sq(x):
        return x * x, lambda dy: dy * 2.0 * x

    _eq(sq(3.0), 9.0)
    _eq(sq(ad.constant([1.0, 2.0])), [1.0, 4.0])


def test_custom_gradient_forward_ops_not_recorded(device):
    @ad.custom_gradient
    def f(x):
        y = ad.exp(x) * 2.0
        return y, lambda dy: dy * 7.0

    x = ad.constant(0.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
        assert len(t._nodes) == 1  # one node for the whole custom op
    _eq(t.gradient(y, x), 7.0)


# ---------------------------------------------------------------------------
# grad, value_and_grad, gradients_function
# ---------------------------------------------------------------------------

def _f(x, y):
    return x * x * y


def test_grad(device):
    _eq(ad.grad(_f)(3.0, 2.0), 12.0)
    _eq(ad.grad(_f, argnums=1)(3.0, 2.0), 9.0)
    g = ad.grad(_f, argnums=(0, 1))(ad.constant(3.0), ad.constant(2.0))
    assert isinstance(g, tuple) and len(g) == 2
    _eq(g[0], 12.0)
    _eq(g[1], 9.0)
    g = ad.grad(_f, argnums=(1,))(3.0, 2.0)
    assert isinstance(g, tuple) and len(g) == 1
    _eq(g[0], 9.0)
    _eq(ad.grad(_f, argnums=-1)(3.0, 2.0), 9.0)


def test_grad_of_vector_function_sums(device):
    x = ad.constant([1.0, 2.0, 3.0])
    _eq(ad.grad(lambda x: x * x)(x), [2.0, 4.0, 6.0])


def test_grad_bad_argnums(device):
    with pytest.raises(ValueError):
        ad.grad(_f, argnums=2)(3.0, 2.0)


def test_value_and_grad(device):
    value, g = ad.value_and_grad(_f)(3.0, 2.0)
    _eq(value, 18.0)
    _eq(g, 12.0)
    value, g = ad.value_and_grad(_f, argnums=(0, 1))(3.0, 2.0)
    _eq(value, 18.0)
    _eq(g[0], 12.0)
    _eq(g[1], 9.0)


def test_gradients_function(device):
    g = ad.gradients_function(_f)(3.0, 2.0)
    assert isinstance(g, list) and len(g) == 2
    _eq(g[0], 12.0)
    _eq(g[1], 9.0)


def test_grad_of_grad(device):
    _eq(ad.grad(ad.grad(lambda x: x ** 3))(2.0), 12.0)
    _eq(ad.grad(ad.grad(ad.grad(lambda x: x ** 4)))(2.0), 48.0)
    _eq(ad.grad(ad.grad(ad.sin))(ad.constant(2.0)), -np.sin(2.0))


def test_grad_with_variable_argument(device):
    v = ad.Variable(3.0)
    _eq(ad.grad(lambda v: v * v)(v), 6.0)


# ---------------------------------------------------------------------------
# gpuad.function
# ---------------------------------------------------------------------------

def _mlp(x, w, b):
    return ad.reduce_sum(ad.tanh(ad.matmul(x, w) + b) ** 2)


def test_function_matches_eager(device, rng):
    x = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    w = ad.Variable(rng.standard_normal((3, 2)).astype(np.float32))
    b = ad.Variable(np.zeros(2, np.float32))
    f = ad.function(_mlp)
    for _ in range(3):  # traced once, replayed after
        np.testing.assert_allclose(f(x, w, b).numpy(), _mlp(x, w, b).numpy(), rtol=1e-6)
    with ad.GradientTape() as t:
        y = _mlp(x, w, b)
    eager = t.gradient(y, [w, b])
    with ad.GradientTape() as t:
        y = f(x, w, b)
    traced = t.gradient(y, [w, b])
    for e, g in zip(eager, traced):
        assert g is not None
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5)


def test_function_decorator_forms(device):
    @ad.function
    def square(v):
        return v * v

    @ad.function()
    def cube(v):
        return v * v * v

    v = ad.Variable(1.0)
    with ad.GradientTape() as t:
        y = square(v)
    _eq(t.gradient(y, v), 2.0)
    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = cube(x)
    _eq(y, 8.0)
    _eq(t.gradient(y, x), 12.0)


def test_function_with_tape_inside(device):
    @ad.function
    def get_gradient(x):
        with ad.GradientTape() as t:
            t.watch(x)
            y = x ** 3
        return t.gradient(y, x)

    _eq(get_gradient(ad.constant(2.0)), 12.0)
    _eq(get_gradient(ad.constant(3.0)), 27.0)  # a new value, same signature


def test_function_python_loop(device):
    @ad.function
    def f(x):
        acc = x
        for _ in ad.range(10):
            acc = acc * 1.1
        return acc

    _eq(f(ad.constant(1.0)), 1.1 ** 10, rtol=1e-5)


def test_function_inner_non_persistent_reuse_raises(device):
    @ad.function
    def nopersist(x):
        with ad.GradientTape() as t:
            t.watch(x)
            y = x * x
        t.gradient(y, x)
        return t.gradient(y, x)

    with pytest.raises(RuntimeError, match="non-persistent"):
        nopersist(ad.constant(1.0))


# ---------------------------------------------------------------------------
# §11 integers, bools, casts
# ---------------------------------------------------------------------------

def test_int_source_gives_none_and_zero(device):
    xi = ad.constant(3)
    with ad.GradientTape(persistent=True) as t:
        t.watch(xi)
        y = xi * xi
    assert t.gradient(y, xi) is None
    _eq(t.gradient(y, xi, unconnected_gradients="zero"), 0, ad.int32)


def test_int_source_through_cast_gives_none(device):
    xi = ad.constant(3)
    with ad.GradientTape() as t:
        t.watch(xi)
        y = ad.cast(xi, ad.float32) * 2.0
    assert t.gradient(y, xi) is None


def test_int_cast_cuts_the_path(device):
    xf = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(xf)
        chain = ad.cast(ad.cast(xf, ad.int32) ** 2, ad.float32)
        mixed = ad.cast(xf > 1.0, ad.float32) * xf
    assert t.gradient(chain, xf) is None
    _eq(t.gradient(mixed, xf), 1.0)


def test_bool_and_int_targets_give_none(device):
    xf = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(xf)
        b = xf > 1.0
        bc = ad.cast(xf, ad.bool)
        i = ad.cast(xf, ad.int32)
    for y in (b, bc, i):
        assert t.gradient(y, xf) is None


def test_float_cast_round_trip_keeps_source_dtype(device):
    x = ad.constant(3.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = ad.cast(x, ad.float64) ** 2
    _eq(t.gradient(y, x), 6.0, ad.float32)
    x64 = ad.constant(3.0, ad.float64)
    with ad.GradientTape() as t:
        t.watch(x64)
        y = x64 * x64
    _eq(t.gradient(y, x64), 6.0, ad.float64)


def test_non_differentiable_ops(device):
    x = ad.constant([2.0, -1.5])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        r = ad.round(x * 1.3)
        f = ad.floor(x * 1.3)
        a = ad.cast(ad.argmax(x), ad.float32)
        s = ad.sign(x)
        e = ad.cast(ad.equal(x, 2.0), ad.float32)
    assert t.gradient(r, x) is None
    assert t.gradient(f, x) is None
    assert t.gradient(a, x) is None
    assert t.gradient(e, x) is None
    _eq(t.gradient(s, x), [0.0, 0.0])  # sign: zero, not None
    _eq(t.gradient(r, x, unconnected_gradients="zero"), [0.0, 0.0])


def test_no_warning_at_gradient_time_for_ints(device, caplog):
    xi = ad.constant(3)
    xf = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(xf)
        y = ad.cast(xi, ad.float32) * xf
    caplog.clear()
    with caplog.at_level("DEBUG", logger="gpuad"):
        g = t.gradient(y, [xi, xf])
    assert g[0] is None
    _eq(g[1], 3.0)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


# ---------------------------------------------------------------------------
# §12 broadcasting gradients
# ---------------------------------------------------------------------------

def test_broadcast_add(device):
    a, b = ad.ones((3, 1)), ad.ones((1, 4))
    with ad.GradientTape() as t:
        t.watch([a, b])
        y = a + b
    ga, gb = t.gradient(y, [a, b])
    _eq(ga, np.full((3, 1), 4.0))
    _eq(gb, np.full((1, 4), 3.0))


def test_broadcast_multiply(device):
    a = ad.ones((3, 1))
    c = ad.constant([1.0, 2.0, 3.0, 4.0])
    with ad.GradientTape() as t:
        t.watch([a, c])
        y = a * c
    ga, gc = t.gradient(y, [a, c])
    _eq(ga, np.full((3, 1), 10.0))
    _eq(gc, np.full((4,), 3.0))


def test_broadcast_scalar(device):
    s, m = ad.constant(2.0), ad.ones((2, 3))
    with ad.GradientTape() as t:
        t.watch([s, m])
        y = s * m
    gs, gm = t.gradient(y, [s, m])
    _eq(gs, 6.0)
    _eq(gm, np.full((2, 3), 2.0))


def test_broadcast_variable(device):
    v = ad.Variable(ad.zeros(3))
    with ad.GradientTape() as t:
        y = ad.ones((5, 3)) + v
    _eq(t.gradient(y, v), [5.0, 5.0, 5.0])


def test_broadcast_where_scalar_branch(device):
    c = ad.constant([True, False, True])
    a = ad.constant([1.0, 2.0, 3.0])
    bb = ad.constant(5.0)
    with ad.GradientTape() as t:
        t.watch([a, bb])
        y = ad.where(c, a, bb)
    ga, gb = t.gradient(y, [a, bb])
    _eq(ga, [1.0, 0.0, 1.0])
    _eq(gb, 1.0)


@pytest.mark.parametrize("sa, sb", [
    ((2, 3), (3,)), ((2, 1, 4), (3, 1)), ((1,), (5, 1)), ((), (2, 2)), ((4, 1, 1), (1, 3, 2)),
    ((2, 3), (1, 1)),
])
def test_broadcast_gradient_shapes(device, rng, sa, sb):
    a = ad.constant(rng.standard_normal(sa).astype(np.float32))
    b = ad.constant(rng.standard_normal(sb).astype(np.float32))
    with ad.GradientTape() as t:
        t.watch([a, b])
        y = a * b
    ga, gb = t.gradient(y, [a, b])
    assert ga.shape == sa and gb.shape == sb
    out = np.broadcast_shapes(sa, sb)
    an, bn = a.numpy(), b.numpy()
    exp_a = _reduce_to(np.broadcast_to(bn, out), sa)
    exp_b = _reduce_to(np.broadcast_to(an, out), sb)
    np.testing.assert_allclose(ga.numpy(), exp_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb.numpy(), exp_b, rtol=1e-5, atol=1e-6)


def _reduce_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def test_broadcast_incompatible(device):
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.ones((3, 2)) + ad.ones((3,))
    assert "[3,2]" in str(e.value).replace(" ", "") or "(3, 2)" in str(e.value)
