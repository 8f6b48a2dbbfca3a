"""Issue 12, autodiff part: no silent wrong answers from user callbacks
(custom_gradient's grad_fn is checked) and TensorFlow's own GradientTape tests,
ported (gradients_function sources and dy, watch outside the context,
batch_jacobian's checks, custom_gradient on methods)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuad as ad
from gpuad.errors import InvalidArgumentError

SETTINGS = settings(max_examples=25, deadline=None)


def _np(t):
    assert t is not None, "expected a gradient, got None"
    return np.asarray(t.numpy())


def _grad_of(f, *xs):
    """Gradients of sum(f(*xs)) w.r.t. each x (watched constants)."""
    xs = [ad.constant(x) for x in xs]
    with ad.GradientTape() as t:
        t.watch(xs)
        y = f(*xs)
    return t.gradient(y, xs)


# ---------------------------------------------------------------------------
# custom_gradient: the gradients grad_fn returns are checked
# ---------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@SETTINGS
@given(shape=shapes, bad=shapes)
def test_custom_gradient_wrong_shape_raises_naming_function_and_input(shape, bad):
    if bad == shape:
        bad = shape + (2,)

    @ad.custom_gradient
    def my_op(a, b):
        return a * b, lambda dy: (dy, ad.ones(bad))

    with pytest.raises(InvalidArgumentError) as e:
        _grad_of(my_op, np.ones(shape, np.float32), np.ones(shape, np.float32))
    msg = str(e.value)
    assert "my_op" in msg and "input 1" in msg
    assert str(tuple(bad)) in msg and str(tuple(shape)) in msg and "shape" in msg


def test_custom_gradient_broadcast_shaped_gradient_raises(device):
    # grad_fn forgot to sum a broadcast gradient back: (3,) for a scalar input
    @ad.custom_gradient
    def scale(x, k):
        return x * k, lambda dy: (dy * k, dy * x)

    with pytest.raises(InvalidArgumentError) as e:
        _grad_of(scale, np.ones(3, np.float32), np.float32(2.0))
    assert "scale" in str(e.value) and "input 1" in str(e.value)
    assert "reduce_sum" in str(e.value)


@pytest.mark.parametrize("in_dtype, g_dtype", [(ad.float32, ad.float64), (ad.float64, ad.float32),
                                               (ad.float32, ad.int32)])
def test_custom_gradient_wrong_dtype_raises(device, in_dtype, g_dtype):
    @ad.custom_gradient
    def f(x):
        return x * 2.0, lambda dy: ad.cast(dy, g_dtype)

    x = ad.constant([1.0, 2.0], dtype=in_dtype)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
    with pytest.raises(InvalidArgumentError) as e:
        t.gradient(y, x)
    msg = str(e.value)
    assert "'test_custom_gradient_wrong_dtype_raises.<locals>.f'" in msg and "input 0" in msg
    assert g_dtype.name in msg and in_dtype.name in msg and "cast" in msg


@pytest.mark.parametrize("n_returned", [0, 1, 3])
def test_custom_gradient_wrong_count_names_function(device, n_returned):
    @ad.custom_gradient
    def two_in(a, b):
        return a * b, lambda dy: tuple(dy for _ in range(n_returned))

    with pytest.raises(ValueError) as e:
        _grad_of(two_in, 1.0, 2.0)
    msg = str(e.value)
    assert "expected to return 2 gradients" in msg and f"returned {n_returned} instead" in msg
    assert "two_in" in msg and "None" in msg  # the fix mentions None for no gradient


def test_custom_gradient_accepts_none_and_numbers_of_the_right_shape(device):
    @ad.custom_gradient
    def f(a, b):
        return a * b, lambda dy: (None, 4.0)  # a Python number for a scalar input

    ga, gb = _grad_of(f, 1.0, 2.0)
    assert ga is None
    assert gb.dtype == ad.float32 and float(gb) == 4.0

    @ad.custom_gradient
    def g64(x):
        return x * 2.0, lambda dy: np.full((2,), 3.0)  # converted to the input's dtype

    (gx,) = _grad_of(g64, np.array([1.0, 2.0]))
    assert gx.dtype == ad.float64
    np.testing.assert_array_equal(_np(gx), [3.0, 3.0])


def test_custom_gradient_non_tensor_gradient_raises(device):
    @ad.custom_gradient
    def f(x):
        return x * 2.0, lambda dy: "oops"

    with pytest.raises(TypeError) as e:
        _grad_of(f, 1.0)
    assert "f'" in str(e.value) and "input 0" in str(e.value) and "'str'" in str(e.value)


def test_custom_gradient_integer_input_gradient_is_discarded(device):
    # an integer input never gets a gradient; what grad_fn returns for it is not used
    @ad.custom_gradient
    def power(x, n):
        return x ** ad.cast(n, ad.float32), lambda dy: (dy * 3.0, 0.0)

    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = power(x, ad.constant(3))
    assert float(t.gradient(y, x)) == 3.0


def test_custom_gradient_wrong_variable_gradient_raises(device):
    v = ad.Variable([1.0, 2.0], name="w")

    @ad.custom_gradient
    def f(x):
        def grad(dy, variables=None):
            return dy, [ad.ones((3,))]
        return x * ad.reduce_sum(v), grad

    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
    with pytest.raises(InvalidArgumentError) as e:
        t.gradient(y, [x, v])
    assert "variable 0" in str(e.value) and "w" in str(e.value) and "(3,)" in str(e.value)


def test_custom_gradient_variables_grad_fn_must_return_a_pair(device):
    v = ad.Variable(1.0)

    @ad.custom_gradient
    def f(x):
        return x * v, lambda dy, variables=None: dy  # not (input_grads, variable_grads)

    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = f(x)
    with pytest.raises(TypeError) as e:
        t.gradient(y, [x, v])
    assert "pair (input_grads, variable_grads)" in str(e.value) and "f'" in str(e.value)


@pytest.mark.parametrize("returned", [
    lambda x: x * 2.0,                   # a Tensor of shape (2,): unpacking would "work"
    lambda x: 3.0,                       # a number
    lambda x: (x * 2.0,),                # a 1-tuple
    lambda x: (x, lambda dy: dy, None),  # a 3-tuple
])
def test_custom_gradient_must_return_value_and_grad_fn(device, returned):
    @ad.custom_gradient
    def only_value(x):
        return returned(x)

    with pytest.raises(TypeError) as e:
        only_value(ad.constant([1.0, 2.0]))
    msg = str(e.value)
    assert "only_value" in msg and "(y, grad_fn)" in msg and "return y, grad_fn" in msg


@pytest.mark.parametrize("grad_fn", [None, 2.0, ad.constant(1.0), "dy"])
def test_custom_gradient_grad_fn_must_be_callable(device, grad_fn):
    @ad.custom_gradient
    def bad(x):
        return x * 2.0, grad_fn

    with pytest.raises(TypeError) as e:
        bad(ad.constant(1.0))
    assert "bad" in str(e.value) and "not callable" in str(e.value)
    assert type(grad_fn).__name__ in str(e.value)


def test_custom_gradient_several_outputs_is_a_clear_error(device):
    @ad.custom_gradient
    def two_out(x):
        return (x, x * 2.0), lambda dy: dy

    with pytest.raises(TypeError) as e:
        two_out(ad.constant([1.0, 2.0]))
    assert "two_out" in str(e.value) and "one output" in str(e.value)


# custom_gradient on methods (TF's decorator binds self)

class _Scale:
    def __init__(self, k):
        self.k = k
        self.v = ad.Variable(5.0)

    @ad.custom_gradient
    def apply(self, x):
        return x * self.k, lambda dy: dy * (self.k + 100.0)

    @ad.custom_gradient
    def with_variable(self, x):
        def grad(dy, variables=None):
            return dy * 2.0, [dy * 7.0]
        return x * self.v, grad


@pytest.mark.parametrize("k", [0.5, 2.0, 3.0])
def test_custom_gradient_on_a_method(device, k):
    s = _Scale(k)
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y = s.apply(x)
    np.testing.assert_allclose(_np(y), [k, 2 * k])
    np.testing.assert_allclose(_np(t.gradient(y, x)), [k + 100.0] * 2)
    # the bound method is a function of x alone
    np.testing.assert_allclose(_np(ad.grad(s.apply)(x)), [k + 100.0] * 2)


def test_custom_gradient_method_reading_a_variable(device):
    s = _Scale(1.0)
    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = s.with_variable(x)
    gx, gv = t.gradient(y, [x, s.v])
    assert float(gx) == 2.0 and float(gv) == 7.0


def test_custom_gradient_method_wrong_gradient_names_method(device):
    class Layer:
        @ad.custom_gradient
        def call(self, x):
            return x, lambda dy: ad.ones((5,))

    with pytest.raises(InvalidArgumentError) as e:
        _grad_of(Layer().call, np.ones(2, np.float32))
    assert "Layer.call" in str(e.value)


# ---------------------------------------------------------------------------
# gradients_function / grad: each positional argument is its own source
# ---------------------------------------------------------------------------

@SETTINGS
@given(x=st.floats(-100, 100, width=32))
def test_gradients_function_same_tensor_twice(x):
    t = ad.constant(x)
    g = ad.gradients_function(lambda a, b: a * b)(t, t)
    assert [float(v) for v in g] == [x, x]


@pytest.mark.parametrize("make", [ad.constant, ad.Variable])
def test_gradients_function_same_object_twice_tf_example(device, make):
    one = make(1.0)
    g = ad.gradients_function(lambda x, y: x * y)(one, one)
    assert [float(v) for v in g] == [1.0, 1.0]
    g = ad.gradients_function(lambda x, y, z: x * y + z)(one, one, one)
    assert [float(v) for v in g] == [1.0, 1.0, 1.0]


def test_grad_argnums_each_argument_its_own_source(device):
    x = ad.constant(3.0)
    f = lambda a, b: a * a * b  # noqa: E731
    g = ad.grad(f, argnums=(0, 1))(x, x)
    assert [float(v) for v in g] == [18.0, 9.0]
    # the non-differentiated argument is a constant, even if it is the same tensor
    assert float(ad.grad(f, argnums=0)(x, x)) == 18.0
    assert float(ad.grad(f, argnums=1)(x, x)) == 9.0
    value, g = ad.value_and_grad(f, argnums=(0, 1))(x, x)
    assert float(value) == 27.0 and [float(v) for v in g] == [18.0, 9.0]


def test_gradients_function_same_tensor_twice_higher_order(device):
    # the copies are recorded on an enclosing tape: d/dx of (x*y at y=x) summed grads is 2
    x = ad.constant(3.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        ga, gb = ad.gradients_function(lambda a, b: a * b)(x, x)
        s = ga + gb
    assert float(s) == 6.0
    assert float(outer.gradient(s, x)) == 2.0


@SETTINGS
@given(dy=st.lists(st.floats(-10, 10, width=32), min_size=3, max_size=3))
def test_gradients_function_dy(dy):
    x = ad.constant([1.0, 2.0, 3.0])
    (g,) = ad.gradients_function(lambda a: a * a)(x, dy=ad.constant(dy))
    np.testing.assert_allclose(_np(g), 2 * np.array([1.0, 2.0, 3.0], np.float32)
                               * np.array(dy, np.float32), rtol=1e-6)


def test_gradients_function_dy_forms(device):
    f = lambda a, b: a * b  # noqa: E731
    g = ad.gradients_function(f)(ad.constant(2.0), ad.constant(5.0), dy=10.0)
    assert [float(v) for v in g] == [50.0, 20.0]
    g = ad.gradients_function(f)(2.0, 5.0)  # no dy: ones
    assert [float(v) for v in g] == [5.0, 2.0]
    with pytest.raises(InvalidArgumentError, match="shape"):
        ad.gradients_function(f)(ad.constant([1.0, 2.0]), 1.0, dy=ad.constant([1.0, 2.0, 3.0]))
    # other keywords still reach f
    g = ad.gradients_function(lambda a, scale=1.0: a * scale)(2.0, scale=3.0)
    assert [float(v) for v in g] == [3.0]


# ---------------------------------------------------------------------------
# tape.watch: the type is checked first; watching outside the context
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("obj, tname", [
    (np.array(1.0), "ndarray"), (1.0, "float"), (None, "NoneType"), ([1, 2], "int"),
])
@pytest.mark.parametrize("state", ["never_entered", "inside", "exited"])
def test_watch_checks_the_type_first(device, obj, tname, state):
    t = ad.GradientTape()
    if state == "inside":
        t.__enter__()
    elif state == "exited":
        with t:
            pass
    try:
        with pytest.raises(ValueError) as e:
            t.watch(obj)
        assert tname in str(e.value)
    finally:
        if state == "inside":
            t.__exit__(None, None, None)


def test_watch_of_a_nest_with_a_bad_member_watches_nothing(device):
    a = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as t:
        with pytest.raises(ValueError, match="ndarray"):
            t.watch([a, np.ones(2)])
        y = a * a
    assert not t._tracked and not t._watched and t._nodes == []
    assert t.gradient(y, a) is None


@pytest.mark.parametrize("make", [ad.constant, ad.Variable])
def test_watch_before_entering_takes_effect_once_entered(device, make):
    x = make(3.0)
    t = ad.GradientTape(watch_accessed_variables=False)
    t.watch(x)
    y0 = x * x  # not recorded: the tape is not recording yet
    with t:
        y = x * x
    assert float(t.gradient(y, x)) == 6.0
    t2 = ad.GradientTape(watch_accessed_variables=False)
    t2.watch(x)
    with t2:
        pass
    assert t2.gradient(y0, x) is None


def test_watch_after_exit_then_reenter_records(device):
    # TF registers the watch on the tape object; entering it again records
    x = ad.constant(2.0)
    t = ad.GradientTape()
    with t:
        pass
    t.watch(x)
    with t:
        y = x * x * x
    assert float(t.gradient(y, x)) == 12.0


# ---------------------------------------------------------------------------
# batch_jacobian
# ---------------------------------------------------------------------------

def test_batch_jacobian_without_pfor_needs_a_persistent_tape(device):
    x = ad.reshape(ad.range(6.0), (2, 3))
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    with pytest.raises(RuntimeError, match="persistent=True.*batch_jacobian.*experimental_use_pfor"):
        t.batch_jacobian(y, x, experimental_use_pfor=False)
    # the failed call did not use the tape up
    np.testing.assert_array_equal(_np(t.batch_jacobian(y, x))[1], np.diag([6.0, 8.0, 10.0]))
    with ad.GradientTape(persistent=True) as tp:
        tp.watch(x)
        y = x * x
    bj = tp.batch_jacobian(y, x, experimental_use_pfor=False)
    np.testing.assert_array_equal(_np(bj)[0], np.diag([0.0, 2.0, 4.0]))


@pytest.mark.parametrize("source_shape", [(), (4,)])
@pytest.mark.parametrize("target_rank2", [True, False])
def test_batch_jacobian_rank_below_2_raises(device, source_shape, target_rank2):
    x = ad.ones(source_shape)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = ad.reshape(x * 2.0, (-1, 1)) if target_rank2 else x * 2.0
    with pytest.raises(ValueError) as e:
        t.batch_jacobian(y, x)
    shape = source_shape if target_rank2 else y.shape
    assert f"Shape {shape} must have rank at least 2" in str(e.value)
    assert "jacobian" in str(e.value)


def test_batch_jacobian_after_use_has_no_typo(device):
    x = ad.ones((2, 2))
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * 2.0
    t.gradient(y, x)
    with pytest.raises(RuntimeError) as e:
        t.batch_jacobian(y, x)
    assert "used to compute one set" in str(e.value) and "tocompute" not in str(e.value)


def test_custom_gradient_gradient_on_another_device_raises(device):
    if device == "cpu":
        pytest.skip("needs a second device: the input is on the cpu")

    @ad.custom_gradient
    def f(x):
        def grad(dy):
            with ad.device("cpu"):
                return ad.ones((2,))
        return x * 2.0, grad

    with pytest.raises(InvalidArgumentError) as e:
        _grad_of(f, np.ones(2, np.float32))
    assert "input 0" in str(e.value) and "device" in str(e.value) and "cpu" in str(e.value)
