"""Converting Python and NumPy values to tensors never gives a silently wrong
answer (issue 12): an integer that does not fit its dtype raises instead of
wrapping around (constant, convert_to_tensor, Variable and assign, Python and
NumPy operands of binary ops and comparisons, fill values), integer ranges are
exact, lists of tensors of different dtypes raise (no implicit promotion), two
Python numbers follow the weak-type rule, a scalar tensor formats its value,
and the dtypes gpuad names but does not compute with yet are refused clearly at
every entry point."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import gpuad as ad

I32 = (-2**31, 2**31 - 1)
I64 = (-2**63, 2**63 - 1)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _outside(lo, hi):
    """Python ints outside [lo, hi], near the bounds and far from them."""
    return st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1),
                     st.sampled_from([lo - 1, hi + 1, 2 * hi + 2, -2 * hi - 2, 2**64 - 1, 2**64,
                                      2**70, -2**70, 2**200]))


def _inside(lo, hi):
    return st.one_of(st.integers(min_value=lo, max_value=hi), st.sampled_from([lo, hi, 0, -1]))


def _same(t, expected, dtype):
    assert type(t) is ad.Tensor and t.dtype == dtype, (t, dtype)
    np.testing.assert_array_equal(np.asarray(t.numpy()), np.asarray(expected, dtype.numpy))


# ---------------------------------------------------------------------------
# integers out of range raise; integers in range round-trip exactly
# ---------------------------------------------------------------------------

def test_issue_examples_raise(device):
    with pytest.raises(TypeError, match=r"1099511627776.*int32"):
        ad.constant(2**40, dtype=ad.int32)
    with pytest.raises(ValueError, match=r"18446744073709551615.*int64"):
        ad.constant(2**64 - 1)
    with pytest.raises(TypeError, match=r"\badd\b.*1099511627776.*int32"):
        ad.constant([1, 2]) + 2**40
    with pytest.raises(TypeError, match=r"\bequal\b.*4294967297.*int32"):
        ad.constant([1, 2]) == 2**32 + 1
    with pytest.raises(TypeError, match=r"\bmaximum\b.*int32"):
        ad.maximum(ad.constant([1, 2]), 2**40)
    with pytest.raises(TypeError, match=r"\bminimum\b.*int32"):
        ad.minimum(2**40, ad.constant([1, 2]))


@SETTINGS
@given(value=_outside(*I32))
def test_int_outside_int32_raises_everywhere(device, value):
    t = ad.constant([1, 2])
    v = ad.Variable([1, 2])
    attempts = [
        lambda: ad.constant(value, dtype=ad.int32),
        lambda: ad.constant([0, value], dtype=ad.int32),
        lambda: ad.constant([[0], [value]], dtype=ad.int32),
        lambda: ad.convert_to_tensor(value, dtype=ad.int32),
        lambda: ad.Variable(value, dtype=ad.int32),
        lambda: v.assign([value, 1]),
        lambda: v.assign_add([value, 0]),
        lambda: t + value, lambda: value - t, lambda: t * value, lambda: t // value,
        lambda: t == value, lambda: t != value, lambda: t < value, lambda: value >= t,
        lambda: ad.maximum(t, value), lambda: ad.minimum(value, t), lambda: ad.equal(t, value),
        lambda: t + [value, 1],
        lambda: ad.where(ad.constant([True, False]), t, value),
    ]
    if I64[0] <= value <= I64[1]:  # NumPy data holding it, with the int32 tensor's dtype
        attempts += [lambda: t + np.int64(value), lambda: t + np.array([value, 1]),
                     lambda: ad.constant(np.array([value]), dtype=ad.int32)]
    for attempt in attempts:
        with pytest.raises((TypeError, ValueError), match="int32|int64"):
            attempt()
    np.testing.assert_array_equal(v.numpy(), [1, 2])  # a failed assign changes nothing


@SETTINGS
@given(value=_outside(*I64))
def test_int_outside_int64_raises_everywhere(device, value):
    t = ad.constant([1, 2], dtype=ad.int64)
    v = ad.Variable([1, 2], dtype=ad.int64)
    attempts = [
        lambda: ad.constant(value), lambda: ad.constant([value, -1]), lambda: ad.constant([value, 1]),
        lambda: ad.constant([[1, 2], [value, 3]]), lambda: ad.constant((value,)),
        lambda: ad.constant(value, dtype=ad.int64), lambda: ad.convert_to_tensor([value]),
        lambda: ad.Variable([value]), lambda: v.assign([value, 1]), lambda: ad.fill((2,), value),
        lambda: t + value, lambda: t == value, lambda: ad.maximum(t, value),
        lambda: ad.multiply(value, 3), lambda: ad.add(1, value),
    ]
    for attempt in attempts:
        with pytest.raises((TypeError, ValueError), match="int64"):
            attempt()
    np.testing.assert_array_equal(v.numpy(), [1, 2])


@SETTINGS
@given(value=_inside(*I32), other=_inside(*I32))
def test_int32_values_round_trip_exactly(device, value, other):
    _same(ad.constant(value), value, ad.int32)
    _same(ad.constant([value, other]), [value, other], ad.int32)
    _same(ad.constant(value, dtype=ad.int32), value, ad.int32)
    _same(ad.constant(np.array([value, other]), dtype=ad.int32), [value, other], ad.int32)
    _same(ad.constant(0) == value, value == 0, ad.bool)
    v = ad.Variable([0, 0])
    v.assign([value, other])
    _same(v.read_value(), [value, other], ad.int32)


@SETTINGS
@given(value=_inside(*I64), other=_inside(*I64))
def test_int64_values_round_trip_exactly(device, value, other):
    fits32 = all(I32[0] <= x <= I32[1] for x in (value, other))
    _same(ad.constant([value, other]), [value, other], ad.int32 if fits32 else ad.int64)
    _same(ad.constant(value, dtype=ad.int64), value, ad.int64)
    _same(ad.constant([value, other], dtype=ad.int64), [value, other], ad.int64)
    t = ad.constant([value, other], dtype=ad.int64)
    _same(t == value, [True, other == value], ad.bool)
    _same(ad.maximum(t, value), [value, max(value, other)], ad.int64)
    _same(ad.fill((2,), value), [value, value], ad.int32 if I32[0] <= value <= I32[1] else ad.int64)


@pytest.mark.parametrize("data, dtype", [
    (np.array([2**40]), ad.int32), (np.array([-2**31 - 1]), ad.int32),
    (np.array([1.5e10]), ad.int32), (np.array([np.nan]), ad.int32), (np.array([np.inf]), ad.int64),
    (np.array([1e19]), ad.int64), (np.array([2**63], dtype=np.uint64), ad.int64),
    (np.float32(3e9), ad.int32),
])
def test_numpy_data_that_does_not_fit_raises(device, data, dtype):
    with pytest.raises(TypeError, match=dtype.name):
        ad.constant(data, dtype=dtype)
    with pytest.raises(TypeError, match=dtype.name):
        ad.constant([1], dtype=dtype) + data


def test_numpy_data_that_fits_still_converts_as_tf(device):
    _same(ad.constant(np.array([2.9, -2.9, 2**31 - 1.5]), dtype=ad.int32), [2, -2, 2**31 - 2], ad.int32)
    _same(ad.constant(1) + np.float64(1.5), 2, ad.int32)  # TF's silent truncation of NumPy data
    _same(ad.constant(np.array([-2**31, 2**31 - 1]), dtype=ad.int32), [-2**31, 2**31 - 1], ad.int32)
    _same(ad.constant(np.array([True, False]), dtype=ad.int32), [1, 0], ad.int32)


def test_failed_conversion_records_nothing_on_a_tape(device):
    x = ad.Variable([1, 2])
    with ad.GradientTape(persistent=True) as tape:
        nodes = len(tape._nodes)
        for bad in (lambda: x + 2**40, lambda: x == 2**33, lambda: x.assign([2**40, 0])):
            with pytest.raises(TypeError):
                bad()
        assert len(tape._nodes) == nodes
    np.testing.assert_array_equal(x.numpy(), [1, 2])


def test_wide_python_ints_with_floats_or_a_float_dtype_become_floats(device):
    _same(ad.constant([2**70, 1.5]), [2.0**70, 1.5], ad.float32)
    _same(ad.constant(2**70, dtype=ad.float64), 2.0**70, ad.float64)
    _same(ad.constant([2**64 - 1], dtype=ad.float64), [2.0**64], ad.float64)
    _same(ad.convert_to_tensor(2**70, dtype_hint=ad.float32), 2.0**70, ad.float32)
    _same(ad.constant(1.0) + 2**70, 2.0**70, ad.float32)


@pytest.mark.parametrize("value, shown", [(2**70, str(2**70)), (-2**70, str(-2**70)),
                                          (2**64, str(2**64)), ([2**70], str(2**70)),
                                          ([[1], [2**300]], "characters")])
def test_too_wide_int_names_the_value_and_the_fix(device, value, shown):
    with pytest.raises(ValueError) as e:
        ad.constant(value)
    msg = str(e.value)
    assert "holds bool" not in msg  # not the message for strings and objects
    assert "int64" in msg and "float" in msg and "constant" in msg
    assert shown in msg


def test_huge_numbers_beyond_float64_raise_clearly(device):
    with pytest.raises(ValueError, match="float64"):
        ad.constant([2**1100, 1.5])


def test_strings_still_raise_type_error(device):
    with pytest.raises(TypeError, match="bool, integer and float"):
        ad.constant(["a", 1])


# ---------------------------------------------------------------------------
# range: exact integers
# ---------------------------------------------------------------------------

def test_range_beyond_2_53_is_exact(device):
    _same(ad.range(2**53 + 1, 2**53 + 4), [2**53 + 1, 2**53 + 2, 2**53 + 3], ad.int64)
    _same(ad.range(2**63 - 3, 2**63 - 1), [2**63 - 3, 2**63 - 2], ad.int64)
    _same(ad.range(-2**63, 2**63 - 1, 2**62), [-2**63, -2**62, 0, 2**62], ad.int64)


@SETTINGS
@given(start=st.integers(-2**62, 2**62), length=st.integers(0, 40),
       delta=st.integers(-2**40, 2**40).filter(bool), extra=st.integers(0, 2**40))
def test_integer_range_matches_python_range(device, start, length, delta, extra):
    limit = start + delta * length + (extra % abs(delta)) * (1 if delta > 0 else -1)
    expected = list(range(start, limit, delta))
    t = ad.range(start, limit, delta)
    fits32 = all(I32[0] <= x <= I32[1] for x in (start, limit, delta))
    _same(t, np.asarray(expected, np.int64).reshape(-1), ad.int32 if fits32 else ad.int64)
    _same(ad.range(start, limit, delta, dtype=ad.int64), np.asarray(expected, np.int64).reshape(-1),
          ad.int64)


def test_range_dtypes_and_errors(device):
    _same(ad.range(4), [0, 1, 2, 3], ad.int32)
    _same(ad.range(ad.constant(3)), [0, 1, 2], ad.int32)
    _same(ad.range(1.0, 2.0, 0.25), [1.0, 1.25, 1.5, 1.75], ad.float32)
    _same(ad.range(3, dtype=ad.float64), [0.0, 1.0, 2.0], ad.float64)
    _same(ad.range(10, 0, -3), [10, 7, 4, 1], ad.int32)
    with pytest.raises(ValueError, match="delta"):
        ad.range(0, 5, 0)
    with pytest.raises(TypeError, match="int32"):
        ad.range(0, 2**40, dtype=ad.int32)
    with pytest.raises(TypeError, match="1.5"):
        ad.range(1.5, 4, dtype=ad.int32)


# ---------------------------------------------------------------------------
# lists of tensors: no implicit promotion
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [(ad.float32, ad.float64), (ad.int32, ad.int64),
                                  (ad.int32, ad.float32), (ad.bool, ad.int32)])
def test_list_of_tensors_of_different_dtypes_raises(device, a, b):
    x, y = ad.constant(1, dtype=a), ad.constant(0, dtype=b)
    for value in ([x, y], [[x], [y]], (y, x), [x, ad.Variable(y)]):
        with pytest.raises(TypeError, match=f"(?=.*{a.name})(?=.*{b.name})"):
            ad.constant(value)


def test_list_of_tensors_keeps_their_dtype(device):
    x = ad.constant(1.0, dtype=ad.float64)
    _same(ad.constant([x, x]), [1.0, 1.0], ad.float64)
    _same(ad.constant([x, 2.0]), [1.0, 2.0], ad.float64)  # a Python number adopts it
    _same(ad.constant([ad.constant(1), 2]), [1, 2], ad.int32)
    _same(ad.constant([ad.Variable(2.0), ad.constant(3.0)]), [2.0, 3.0], ad.float32)
    with pytest.raises(TypeError, match="int32"):
        ad.constant([ad.constant(1), 2**40])
    with pytest.raises(ValueError, match="float32.*int32"):
        ad.constant([ad.constant(1)], dtype=ad.float32)


# ---------------------------------------------------------------------------
# two Python numbers: the weak-type rule; a tensor involved: TF's rule
# ---------------------------------------------------------------------------

def test_seed_notebook_cell(device):
    def f(x, y):
        output = 1
        for _ in range(y):
            output = ad.multiply(output, x)
        return output
    _same(f(3.0, 2), 9.0, ad.float32)


@pytest.mark.parametrize("op", [ad.add, ad.subtract, ad.multiply, ad.maximum, ad.minimum, ad.pow])
@pytest.mark.parametrize("x, y", [(1, 3.0), (3.0, 1), (2, 2.5), (True, 2.0)])
def test_int_with_float_python_numbers_gives_float32(device, op, x, y):
    expected = {ad.add: x + y, ad.subtract: x - y, ad.multiply: x * y, ad.maximum: max(x, y),
                ad.minimum: min(x, y), ad.pow: x ** y}[op]
    _same(op(x, y), np.float32(expected), ad.float32)


def test_two_python_ints(device):
    _same(ad.multiply(2, 3), 6, ad.int32)
    _same(ad.add(2**40, 3), 2**40 + 3, ad.int64)  # int64 when one does not fit int32
    _same(ad.add(3, 2**40), 2**40 + 3, ad.int64)
    _same(ad.divide(1, 2.0), 0.5, ad.float32)


def test_a_tensor_keeps_tf_rule(device):
    _same(ad.constant(1.0, dtype=ad.float64) * 2, 2.0, ad.float64)
    with pytest.raises(TypeError, match="2.5"):
        ad.constant(3) * 2.5
    with pytest.raises(TypeError, match="3.0"):
        ad.multiply([1, 2], 3.0)  # a list is not a Python number


# ---------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------

def test_format_scalar_tensor(device):
    assert "{:.3f}".format(ad.constant(2.0) / 3) == "0.667"
    assert f"{ad.constant(1.5, dtype=ad.float64):8.2f}" == "    1.50"
    assert f"{ad.constant(7):>4d}" == "   7"
    assert f"{ad.constant(12345.678):.2e}" == "1.23e+04"
    assert f"{ad.constant(True)}" == str(ad.constant(True))


def test_format_non_scalar_with_spec_raises(device):
    for t in (ad.constant([1.0, 2.0]), ad.constant([[1]]), ad.constant([], dtype=ad.float32)):
        with pytest.raises(TypeError, match=r"scalar.*shape"):
            "{:.3f}".format(t)
        assert f"{t}" == str(t)


# ---------------------------------------------------------------------------
# float16, uint8, int8, int16: named, refused clearly until supported
# ---------------------------------------------------------------------------

UNSUPPORTED = [(ad.float16, "float32"), (ad.uint8, "int32"), (ad.int8, "int32"), (ad.int16, "int32")]


def test_unsupported_dtype_names_exist():
    for d, _ in UNSUPPORTED:
        assert d == np.dtype(d.name) and d == d.name and repr(d) == f"gpuad.{d.name}"
    assert ad.float16.is_floating and ad.int8.is_integer and ad.uint8.is_integer


@pytest.mark.parametrize("dtype, use", UNSUPPORTED)
def test_unsupported_dtypes_are_refused_at_every_entry_point(device, dtype, use):
    x = ad.constant([1.0, 2.0])
    v = ad.Variable([1.0, 2.0])
    attempts = [
        lambda: ad.constant([1, 2], dtype=dtype), lambda: ad.constant(x, dtype=dtype),
        lambda: ad.convert_to_tensor([1, 2], dtype=dtype), lambda: ad.Variable([1, 2], dtype=dtype),
        lambda: ad.cast(x, dtype), lambda: ad.cast(x, dtype.name), lambda: ad.cast(v, dtype),
        lambda: ad.zeros(2, dtype=dtype), lambda: ad.ones((2, 2), dtype=dtype),
        lambda: ad.zeros_like(x, dtype=dtype), lambda: ad.range(3, dtype=dtype),
        lambda: ad.constant(np.zeros(2, dtype.numpy)), lambda: ad.Variable(np.zeros(2, dtype.numpy)),
        lambda: ad.convert_to_tensor(np.zeros(2, dtype.numpy)),
        lambda: ad.from_dlpack(np.zeros(2, dtype.numpy)),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError) as e:
            attempt()
        msg = str(e.value)
        assert dtype.name in msg and use in msg, msg
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


@pytest.mark.parametrize("dtype, use", UNSUPPORTED)
def test_unsupported_dtype_message_says_not_yet(dtype, use):
    with pytest.raises(TypeError, match=rf"cast: .*{dtype.name} yet.*use {use} instead"):
        ad.cast(ad.constant([1.0]), dtype)
    with pytest.raises(TypeError, match=rf"constant: .*{dtype.name} yet"):
        ad.constant(np.zeros(2, dtype.numpy))


def test_numpy_data_of_unsupported_dtype_converts_with_a_supported_dtype(device):
    _same(ad.constant(np.array([1.5, 2.5], np.float16), dtype=ad.float32), [1.5, 2.5], ad.float32)
    _same(ad.constant(np.array([200, 7], np.uint8), dtype=ad.int32), [200, 7], ad.int32)
    _same(ad.constant([1.0]) + np.float16(0.5), [1.5], ad.float32)
