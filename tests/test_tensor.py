"""Tensors and Variables as a TensorFlow 2 user expects them (TF_REFERENCE.md
§1 and §2), in gpuad's own formats where API.md says so: dtype inference, the
no-promotion rule, repr/str byte for byte, conversions, comparisons, hashing,
indexing, dtypes, and Variable creation/assignment (a failed assign never
changes the value)."""
import warnings

import numpy as np
import pytest

import gpuad as ad


def _np(t):
    return np.asarray(t.numpy())


def _same(t, expected, dtype):
    """``t`` is a gpuad.Tensor of ``dtype`` holding ``expected`` exactly."""
    assert type(t) is ad.Tensor, type(t)
    assert t.dtype == dtype, (t.dtype, dtype)
    exp = np.asarray(expected, dtype=ad.as_dtype(dtype).numpy)
    assert t.shape == exp.shape
    np.testing.assert_array_equal(_np(t), exp)


# ---------------------------------------------------------------------------
# §1.1 dtype inference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, dtype", [
    (1.0, "float32"),
    (1, "int32"),
    (2 ** 40, "int64"),
    (-(2 ** 40), "int64"),
    (True, "bool"),
    ([1, 2.0], "float32"),
    ([[1, 2], [3, 4]], "int32"),
    ([True, False], "bool"),
    (np.float64(1.0), "float64"),
    (np.array([1.0]), "float64"),
    (np.ones(4), "float64"),
    (np.array([1]), "int64"),
    (np.array([1], np.int32), "int32"),
    (np.array([1.0], np.float32), "float32"),
])
def test_constant_infers_dtype(device, value, dtype):
    t = ad.constant(value)
    assert t.dtype == dtype
    assert t.device == ad.devices.get(device).name
    np.testing.assert_array_equal(_np(t), np.asarray(value))


def test_constant_dtype_argument(device):
    t = ad.constant(1, dtype=ad.float32)
    _same(t, 1.0, ad.float32)
    assert repr(t) == f"<gpuad.Tensor: shape=(), dtype=float32, device={device}, numpy=1.0>"
    _same(ad.constant([1, 2], dtype=ad.float64), [1.0, 2.0], ad.float64)
    _same(ad.constant(np.array([1.5, 2.5]), dtype=ad.float32), [1.5, 2.5], ad.float32)


def test_constant_float_literal_to_int_dtype_raises(device):
    with pytest.raises(TypeError, match=r"1\.5"):
        ad.constant(1.5, dtype=ad.int32)


def test_constant_copies_its_input(device):
    arr = np.array([1.0, 2.0], np.float32)
    t = ad.constant(arr)
    arr[0] = 100.0
    np.testing.assert_array_equal(_np(t), [1.0, 2.0])


def test_creation_defaults_are_float32(device):
    assert ad.zeros(2).dtype == ad.float32
    assert ad.ones(4).dtype == ad.float32
    assert ad.eye(2).dtype == ad.float32
    assert ad.range(4).dtype == ad.int32
    assert ad.range(4.0).dtype == ad.float32
    assert ad.range(4, dtype=ad.float32).dtype == ad.float32
    _same(ad.fill((2,), 3), [3, 3], ad.int32)
    _same(ad.linspace(0, 1, 3), [0.0, 0.5, 1.0], ad.float64)
    _same(ad.cast(ad.constant([1.7, -1.7]), ad.int32), [1, -1], ad.int32)
    _same(ad.cast(ad.constant([0.0, 2.0]), ad.bool), [False, True], ad.bool)
    assert ad.convert_to_tensor(1.0, dtype_hint=ad.float64).dtype == ad.float64


# ---------------------------------------------------------------------------
# §1.2 mixed dtypes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("lhs, rhs, expected, got", [
    ((1.0, None), (1, None), "float32", "int32"),
    ((1.0, None), (1.0, "float64"), "float32", "float64"),
    (([1, 2], "int64"), ([1, 2], None), "int64", "int32"),
])
def test_no_promotion_between_tensors(device, lhs, rhs, expected, got):
    a = ad.constant(lhs[0], dtype=lhs[1])
    b = ad.constant(rhs[0], dtype=rhs[1])
    with pytest.raises(ad.InvalidArgumentError) as e:
        a + b
    msg = str(e.value)
    assert "add" in msg.lower()
    assert expected in msg and got in msg
    assert "#1" in msg  # the input index is zero-based: the second operand
    assert isinstance(e.value, ValueError)


def test_variable_operand_does_not_promote_either(device):
    v = ad.Variable(1.0)
    with pytest.raises(ad.InvalidArgumentError, match="float64"):
        v + ad.constant(1.0, ad.float64)


@pytest.mark.parametrize("op, name", [
    (lambda a, b: a == b, "equal"),
    (lambda a, b: a < b, "less"),
])
def test_comparison_dtype_mismatch(device, op, name):
    with pytest.raises(ad.InvalidArgumentError) as e:
        op(ad.constant(1.0), ad.constant(1.0, ad.float64))
    msg = str(e.value).lower()
    assert name in msg and "float32" in msg and "float64" in msg


def test_python_scalars_adopt_tensor_dtype(device):
    t = ad.constant(1.0)
    _same(t + 1, 2.0, ad.float32)
    _same(2 * ad.constant(3.0), 6.0, ad.float32)
    _same(2 ** ad.constant(2.0), 4.0, ad.float32)
    _same(ad.constant(3.0, ad.float64) * 2, 6.0, ad.float64)
    _same(ad.constant([1, 2], ad.int64) + 1, [2, 3], ad.int64)
    _same(ad.multiply(1.0, 3), 3.0, ad.float32)


@pytest.mark.parametrize("expr, literal", [
    (lambda: 2.5 * ad.constant(3), "2.5"),
    (lambda: ad.constant(3) * 2.5, "2.5"),
    (lambda: ad.constant(2) ** 0.5, "0.5"),
    (lambda: ad.constant(3) * 2.0, "2.0"),       # even an integral float
    (lambda: ad.multiply([1, 2], 3.0), "3.0"),   # a list is not a Python number: it fixes int32
])
def test_python_float_with_int_tensor_raises(device, expr, literal):
    with pytest.raises(TypeError) as e:
        expr()
    assert literal in str(e.value) and "int32" in str(e.value)


def test_numpy_operands_cast_silently(device):
    t = ad.constant(1.0)
    _same(t + np.float64(2.0), 3.0, ad.float32)
    _same(np.float64(2.0) + t, 3.0, ad.float32)  # NumPy defers to the tensor
    _same(np.array([2.0]) + t, [3.0], ad.float32)
    _same(np.float64(2.0) * t, 2.0, ad.float32)
    _same(ad.constant(1) + np.float64(1.5), 2, ad.int32)  # silent truncation, as TF


def test_none_operand_raises_value_error(device):
    with pytest.raises(ValueError, match="None"):
        ad.constant(1.0) + None


def test_bool_arithmetic_raises(device):
    with pytest.raises(ad.InvalidArgumentError, match="bool"):
        ad.constant(True) + ad.constant(False)


def test_integer_true_division_gives_float64(device):
    _same(ad.constant([1, 2]) / 2, [0.5, 1.0], ad.float64)
    _same(ad.constant([1, 2]) / ad.constant([2, 2]), [0.5, 1.0], ad.float64)
    _same(ad.constant(np.array([1, 2])) / 2, [0.5, 1.0], ad.float64)
    _same(ad.constant([3, 4]) // 2, [1, 2], ad.int32)
    _same(ad.constant([7.0, -7.0]) // 2, [3.0, -4.0], ad.float32)


def test_integer_reduce_mean_is_integer(device):
    _same(ad.reduce_mean(ad.constant([1, 2])), 1, ad.int32)
    _same(ad.reduce_mean(ad.constant([-1, -2])), -1, ad.int32)  # truncation toward zero
    _same(ad.reduce_mean(ad.constant([1.0, 2.0])), 1.5, ad.float32)


def test_int_to_negative_int_power_raises(device):
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.constant(2) ** -1
    assert "negative" in str(e.value).lower() and "pow" in str(e.value).lower()


# ---------------------------------------------------------------------------
# §1.3 repr / str
# ---------------------------------------------------------------------------

def test_repr_and_str_vector(device):
    t = ad.constant([0.0, 1.0, 2.0, 3.0])
    assert repr(t) == (f"<gpuad.Tensor: shape=(4,), dtype=float32, device={device}, "
                       f"numpy=array([0., 1., 2., 3.], dtype=float32)>")
    assert str(t) == "gpuad.Tensor([0. 1. 2. 3.], shape=(4,), dtype=float32)"
    assert repr(ad.constant([1, 2, 3])) == (
        f"<gpuad.Tensor: shape=(3,), dtype=int32, device={device}, "
        f"numpy=array([1, 2, 3], dtype=int32)>")


@pytest.mark.parametrize("value, dtype, rep, text", [
    (3.0, None, "3.0", "3.0"),
    (0.1, None, "0.10000000149011612", "0.1"),
    (1e-8, None, "9.99999993922529e-09", "1e-08"),
    (2, None, "2", "2"),
    (True, None, "True", "True"),
    (float("nan"), None, "nan", "nan"),
    (float("-inf"), None, "-inf", "-inf"),
    (0.1, "float64", "0.1", "0.1"),
])
def test_repr_and_str_scalars_use_item(device, value, dtype, rep, text):
    t = ad.constant(value, dtype=dtype)
    name = t.dtype.name
    assert repr(t) == f"<gpuad.Tensor: shape=(), dtype={name}, device={device}, numpy={rep}>"
    assert str(t) == f"gpuad.Tensor({text}, shape=(), dtype={name})"


@pytest.mark.parametrize("value, text", [
    (np.array([1.5]), "array([1.5])"),
    (np.array([1]), "array([1])"),
    ([True, False], "array([ True, False])"),
    (np.zeros(0, np.float32), "array([], dtype=float32)"),
    ([0.1], "array([0.1], dtype=float32)"),
])
def test_repr_numpy_conventions(device, value, text):
    t = ad.constant(value)
    assert repr(t) == (f"<gpuad.Tensor: shape={t.shape}, dtype={t.dtype.name}, "
                       f"device={device}, numpy={text}>")


def test_repr_and_str_multiline(device):
    t = ad.zeros((2, 3))
    assert repr(t) == (f"<gpuad.Tensor: shape=(2, 3), dtype=float32, device={device}, numpy=\n"
                       f"array([[0., 0., 0.],\n"
                       f"       [0., 0., 0.]], dtype=float32)>")
    s = ad.constant([[1.0, 2.0], [3.0, 4.0]])
    assert str(s) == "gpuad.Tensor(\n[[1. 2.]\n [3. 4.]], shape=(2, 2), dtype=float32)"


def test_str_of_large_tensor_is_summarised(device):
    s = str(ad.zeros((40, 50)))
    assert s.startswith("gpuad.Tensor(\n[[0. 0. 0. ... 0. 0. 0.]")
    assert s.endswith("]], shape=(40, 50), dtype=float32)")
    assert "..." in s and s.count("\n") < 20


def test_variable_repr_and_name(device):
    v = ad.Variable([1.0, 2.0], name="w")
    expected = (f"<gpuad.Variable 'w:0' shape=(2,) dtype=float32, device={device}, "
                f"numpy=array([1., 2.], dtype=float32)>")
    assert repr(v) == expected
    assert str(v) == expected
    assert v.name == "w:0"
    s = ad.Variable(0.1)
    assert s.name == "Variable:0"
    assert repr(s) == (f"<gpuad.Variable 'Variable:0' shape=() dtype=float32, device={device}, "
                       f"numpy=0.10000000149011612>")
    m = ad.Variable([[1.0, 2.0], [3.0, 4.0]], name="m")
    assert repr(m) == (f"<gpuad.Variable 'm:0' shape=(2, 2) dtype=float32, device={device}, "
                       f"numpy=\narray([[1., 2.],\n       [3., 4.]], dtype=float32)>")
    assert ad.Variable(1.0, name="q:0").name == "q:0:0"  # ':0' is always appended
    assert ad.Variable(1.0, name="dup").name == ad.Variable(2.0, name="dup").name == "dup:0"


def test_variable_repr_shows_current_value(device):
    v = ad.Variable([1.0, 2.0], name="w")
    v.assign([3.0, 4.0])
    assert "numpy=array([3., 4.], dtype=float32)" in repr(v)


# ---------------------------------------------------------------------------
# §1.4 conversions, properties, protocols
# ---------------------------------------------------------------------------

def test_properties(device):
    t = ad.zeros((1, 3))
    assert t.shape == (1, 3) and isinstance(t.shape, tuple)
    assert type(t.shape[0]) is int
    assert t.ndim == 2 and t.size == 3
    assert isinstance(t.device, str) and t.device == ad.devices.get(device).name
    assert len(ad.zeros((3, 2))) == 3


def test_numpy_returns_copies(device):
    t = ad.constant([1.0, 2.0])
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    a[0] = 100.0
    np.testing.assert_array_equal(_np(t), [1.0, 2.0])
    b = np.array(t)
    b[1] = 100.0
    np.testing.assert_array_equal(_np(t), [1.0, 2.0])


def test_numpy_of_scalar_is_numpy_scalar(device):
    s = ad.constant(2.5).numpy()
    assert type(s) is np.float32 and s == 2.5
    assert type(ad.constant(3).numpy()) is np.int32
    assert type(ad.constant(True).numpy()) is np.bool_


def test_python_scalar_conversions(device):
    assert float(ad.constant(2.5)) == 2.5 and type(float(ad.constant(2.5))) is float
    assert int(ad.constant(2.5)) == 2
    assert int(ad.constant(-2.5)) == -2
    assert bool(ad.constant(True)) is True
    assert bool(ad.constant(0.0)) is False
    hit = False
    if ad.constant(1.0) > 0:
        hit = True
    assert hit


def test_python_scalar_conversion_errors(device):
    with pytest.raises(TypeError):
        float(ad.constant([2.5, 1.0]))
    with pytest.raises(TypeError):
        int(ad.constant([[1, 2]]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ad.constant([1.0, 2.0]) == ad.constant([1.0, 2.0]))


def test_index_protocol(device):
    assert [10, 20, 30][ad.constant(1)] == 20
    assert list(range(ad.constant(3))) == [0, 1, 2]
    assert [10, 20, 30][ad.Variable(2)] == 30
    with pytest.raises(TypeError):
        [10, 20, 30][ad.constant(1.0)]


def test_len(device):
    assert len(ad.constant([1.0, 2.0, 3.0])) == 3
    with pytest.raises(TypeError, match="len"):
        len(ad.constant(1.0))
    with pytest.raises(TypeError):
        len(ad.Variable([[1.0, 2.0]]))  # unlike a Tensor, as TF


def test_iteration_yields_tensors(device):
    items = list(ad.constant([[1.0, 2.0], [3.0, 4.0]]))
    assert len(items) == 2
    assert all(type(i) is ad.Tensor for i in items)
    np.testing.assert_array_equal(_np(items[1]), [3.0, 4.0])
    scalars = list(ad.constant([5, 6]))
    assert [s.shape for s in scalars] == [(), ()] and [int(s) for s in scalars] == [5, 6]


def test_numpy_interop(device):
    t = ad.constant([1.0, 2.0])
    a = np.asarray(t)
    assert type(a) is np.ndarray and a.dtype == np.float32
    r = np.sin(t)
    assert type(r) is np.ndarray
    np.testing.assert_allclose(r, np.sin(np.array([1.0, 2.0], np.float32)))
    assert np.asarray(t, dtype=np.float64).dtype == np.float64


def test_array_protocol_numpy2_no_deprecation_warning(device):
    t = ad.constant([1.0, 2.0])
    v = ad.Variable([3.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(np.array(t), [1.0, 2.0])
        np.testing.assert_array_equal(np.array(v), [3.0, 4.0])
        np.testing.assert_array_equal(np.asarray(t, copy=True), [1.0, 2.0])
        np.testing.assert_array_equal(np.array(v, dtype=np.float64), [3.0, 4.0])
        assert t.__array__(dtype=None, copy=None).dtype == np.float32
        assert t.__array__(dtype=np.float64, copy=None).dtype == np.float64
        assert v.__array__(dtype=np.float64, copy=True).dtype == np.float64


# ---------------------------------------------------------------------------
# §1.5 comparisons; identity
# ---------------------------------------------------------------------------

def test_comparisons_are_elementwise(device):
    t = ad.constant([1.0, 2.0])
    _same(t > 1.5, [False, True], ad.bool)
    _same(t == ad.constant([1.0, 3.0]), [True, False], ad.bool)
    _same(t != [1.0, 3.0], [False, True], ad.bool)
    _same(t <= 1.0, [True, False], ad.bool)
    _same(t >= 2.0, [False, True], ad.bool)
    _same(t < ad.constant([2.0, 2.0]), [True, False], ad.bool)
    assert repr(t > 1.5) == (f"<gpuad.Tensor: shape=(2,), dtype=bool, device={device}, "
                             f"numpy=array([False,  True])>")


def test_eq_incompatible_shapes_is_scalar_false_but_equal_raises(device):
    a, b = ad.constant([1.0, 2.0]), ad.constant([1.0, 2.0, 3.0])
    r = a == b
    _same(r, False, ad.bool)
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.equal(a, b)
    assert "equal" in str(e.value).lower()
    assert "2" in str(e.value) and "3" in str(e.value)


def test_eq_none(device):
    t = ad.constant([1.0])
    assert (t == None) is False  # noqa: E711
    assert (t != None) is True  # noqa: E711


def test_logical_operators(device):
    a, b = ad.constant([True, False]), ad.constant([True, True])
    _same(a & b, [True, False], ad.bool)
    _same(a | b, [True, True], ad.bool)
    _same(~a, [False, True], ad.bool)


def test_hash_raises_and_ref_is_hashable(device):
    t = ad.constant(1.0)
    with pytest.raises(TypeError, match=r"ref\(\)"):
        hash(t)
    with pytest.raises(TypeError):
        {t: 1}
    v = ad.Variable(1.0)
    with pytest.raises(TypeError, match=r"ref\(\)"):
        hash(v)
    u = ad.constant(1.0)  # equal value, different tensor
    d = {t.ref(): "t", v.ref(): "v"}
    assert d[t.ref()] == "t" and d[v.ref()] == "v"
    assert u.ref() not in d
    assert t.ref().deref() is t
    assert t.ref() == t.ref() and hash(t.ref()) == hash(t.ref())


def test_item_assignment_raises(device):
    t = ad.constant([1.0, 2.0])
    with pytest.raises((TypeError, AttributeError)):
        t[0] = 3.0
    np.testing.assert_array_equal(_np(t), [1.0, 2.0])


def test_indexing(device):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = ad.constant(a)
    for key in [1, -1, (-1, 0), (slice(None), slice(1, 3)), slice(None, None, -1),
                (Ellipsis, None), (None, 1), (slice(0, 3, 2), -1), (1, slice(None, None, -2))]:
        r = t[key]
        assert type(r) is ad.Tensor and r.dtype == ad.float32
        np.testing.assert_array_equal(_np(r), a[key])
    idx = ad.constant([2, 0, 2])
    np.testing.assert_array_equal(_np(t[idx]), a[[2, 0, 2]])
    np.testing.assert_array_equal(_np(t[:, ad.constant([3, 1])]), a[:, [3, 1]])
    assert t[-1, 0].shape == () and float(t[-1, 0]) == 8.0


def test_matmul_operator(device):
    r = [[1.0, 2.0, 3.0]] @ ad.ones((3, 2))
    _same(r, [[6.0, 6.0]], ad.float32)


def test_operators_match_numpy(device):
    a = np.array([[1.5, -2.0], [3.0, 4.0]], np.float32)
    b = np.array([0.5, 3.0], np.float32)
    x, y = ad.constant(a), ad.constant(b)
    np.testing.assert_allclose(_np(x + y), a + b)
    np.testing.assert_allclose(_np(x - y), a - b)
    np.testing.assert_allclose(_np(x * y), a * b)
    np.testing.assert_allclose(_np(x / y), a / b)
    np.testing.assert_allclose(_np(x % y), np.mod(a, b))
    np.testing.assert_allclose(_np(abs(x)), np.abs(a))
    np.testing.assert_allclose(_np(-x), -a)
    np.testing.assert_allclose(_np(x ** 2), a ** 2)
    np.testing.assert_allclose(_np(1.0 - x), 1.0 - a)


def test_isinstance_and_is_tensor(device):
    v = ad.Variable(1.0)
    assert not isinstance(v, ad.Tensor)
    assert ad.is_tensor(v) and ad.is_tensor(ad.constant(1.0))
    assert not ad.is_tensor(1.0) and not ad.is_tensor(np.ones(2))


# ---------------------------------------------------------------------------
# dtype objects
# ---------------------------------------------------------------------------

def test_dtype_objects():
    assert ad.float32 == np.float32
    assert ad.float32 == "float32"
    assert ad.float32 == np.dtype("float32")
    assert ad.float32 != ad.float64 and ad.float32 != "float64" and ad.int32 != np.int64
    assert str(ad.float32) == "<dtype: 'float32'>"
    assert ad.float32.name == "float32"
    assert ad.float64.is_floating and not ad.int32.is_floating
    assert ad.as_dtype("int64") is ad.int64 and ad.as_dtype(np.bool_) is ad.bool
    assert {ad.float32: 1}[ad.float32] == 1


# ---------------------------------------------------------------------------
# §2 Variable
# ---------------------------------------------------------------------------

def test_variable_dtype_inference(device):
    assert ad.Variable(1).dtype == ad.int32
    assert ad.Variable(np.array([1.0])).dtype == ad.float64
    v = ad.Variable(1, dtype=ad.float32)
    assert v.dtype == ad.float32 and float(v) == 1.0


def test_variable_callable_initial_value(device):
    v = ad.Variable(lambda: ad.ones(2))
    assert v.shape == (2,) and v.dtype == ad.float32
    np.testing.assert_array_equal(v.numpy(), [1.0, 1.0])


@pytest.mark.parametrize("make", [lambda: ad.Variable(None), lambda: ad.Variable()])
def test_variable_needs_initial_value(make):
    with pytest.raises(ValueError, match="initial_value"):
        make()


def test_variable_trainable(device):
    assert ad.Variable(1.0).trainable is True
    assert ad.Variable(1.0, trainable=False).trainable is False
    assert ad.Variable(1.0, trainable=None).trainable is True
    v = ad.Variable(1.0)
    with pytest.raises(AttributeError):
        v.trainable = False
    assert v.trainable is True


def test_variable_inplace_operator_raises(device):
    v = ad.Variable(1.0)
    with pytest.raises(RuntimeError, match="assign_add"):
        v += 1.0
    assert float(v) == 1.0
    with pytest.raises(RuntimeError):
        v -= 1.0
    assert float(v) == 1.0


def test_variable_operators_read_the_value(device):
    v = ad.Variable([1.0, 2.0])
    w = ad.Variable([2.0, 2.0])
    _same(v + 1, [2.0, 3.0], ad.float32)
    _same(v * v, [1.0, 4.0], ad.float32)
    _same(v == w, [False, True], ad.bool)
    _same(v < 2, [True, False], ad.bool)
    _same(v[0], 1.0, ad.float32)
    _same(ad.Variable([[1.0, 2.0]]) @ ad.ones((2, 1)), [[3.0]], ad.float32)
    assert float(ad.Variable(2.5)) == 2.5
    np.testing.assert_array_equal(np.array(v), [1.0, 2.0])
    assert type(v.read_value()) is ad.Tensor and type(v.value()) is ad.Tensor
    _same(ad.constant(v), [1.0, 2.0], ad.float32)


def test_assign_returns_variable_and_updates(device):
    v = ad.Variable([1.0, 2.0], name="v")
    r = v.assign([3.0, 4.0])
    assert r is v
    np.testing.assert_array_equal(v.numpy(), [3.0, 4.0])
    assert v.assign_add([1.0, 1.0]) is v
    np.testing.assert_array_equal(v.numpy(), [4.0, 5.0])
    assert v.assign_sub([0.5, 0.5]) is v
    np.testing.assert_array_equal(v.numpy(), [3.5, 4.5])
    v.assign([1.0, 2.0]).assign_add([1.0, 1.0])  # chaining
    np.testing.assert_array_equal(v.numpy(), [2.0, 3.0])
    assert v.assign([0.0, 0.0], read_value=False) is None
    np.testing.assert_array_equal(v.numpy(), [0.0, 0.0])
    v.assign([1, 2])                        # a list of ints converts silently
    v.assign(np.array([5.0, 6.0]))          # a float64 array converts silently
    np.testing.assert_array_equal(v.numpy(), [5.0, 6.0])
    assert v.dtype == ad.float32 and v.shape == (2,)


def test_assign_does_not_alias_the_source(device):
    v = ad.Variable([1.0, 2.0])
    t = ad.constant([7.0, 8.0])
    v.assign(t)
    v.assign_add([1.0, 1.0])
    np.testing.assert_array_equal(_np(t), [7.0, 8.0])
    np.testing.assert_array_equal(v.numpy(), [8.0, 9.0])
    before = v.read_value()
    v.assign([0.0, 0.0])
    np.testing.assert_array_equal(_np(before), [8.0, 9.0])  # earlier reads keep their value


@pytest.mark.parametrize("method, value, exc", [
    ("assign", 5.0, ValueError),
    ("assign", [1.0, 2.0, 3.0], ValueError),
    ("assign_add", [1.0], ad.InvalidArgumentError),
    ("assign_add", 1.0, ad.InvalidArgumentError),
    ("assign_sub", [1.0], ad.InvalidArgumentError),
])
def test_assign_shape_mismatch_leaves_value(device, method, value, exc):
    v = ad.Variable([1.0, 2.0], name="v")
    with pytest.raises(exc) as e:
        getattr(v, method)(value)
    msg = str(e.value)
    assert "2" in msg and "v:0" in msg
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    assert v.shape == (2,)


@pytest.mark.parametrize("method, value", [
    ("assign", lambda: ad.constant([1.0, 2.0], ad.float64)),
    ("assign", lambda: ad.constant([1, 2])),
    ("assign_add", lambda: ad.constant([1, 2])),
    ("assign_sub", lambda: ad.constant([1.0, 2.0], ad.float64)),
])
def test_assign_dtype_mismatch_leaves_value(device, method, value):
    v = ad.Variable([1.0, 2.0])
    t = value()
    with pytest.raises(ValueError) as e:
        getattr(v, method)(t)
    msg = str(e.value)
    assert "float32" in msg and t.dtype.name in msg
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    assert v.dtype == ad.float32


def test_int_variable_assign_float_literal_leaves_value(device):
    v = ad.Variable(1)
    with pytest.raises(TypeError, match=r"1\.5"):
        v.assign(1.5)
    assert int(v) == 1 and v.dtype == ad.int32


def test_variable_from_tensor_is_independent(device):
    t = ad.constant([1.0, 2.0])
    v = ad.Variable(t)
    v.assign_add([1.0, 1.0])
    np.testing.assert_array_equal(_np(t), [1.0, 2.0])
    assert v.ref() != t.ref()

