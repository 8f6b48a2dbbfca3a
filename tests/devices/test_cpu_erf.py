"""The cpu device's erf (NumPy has none, so gpuad computes it from a series and a
continued fraction) against math.erf, which is correctly rounded or nearly so."""
import math

import numpy as np
import pytest

from gpuad.devices.cpu import _erf

rng = np.random.default_rng(7)
POINTS = np.concatenate([np.linspace(-7, 7, 100_001), rng.standard_normal(50_000) * 2,
                         [2.5, -2.5, np.nextafter(2.5, 0), 1e-300, -1e-8, 30.0]])


def test_float64_within_a_few_ulp_everywhere():
    want = np.array([math.erf(v) for v in POINTS])
    got = _erf(POINTS)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=4e-15, atol=0)


def test_float32_is_the_correctly_rounded_value():
    x = POINTS.astype(np.float32)
    want = np.array([math.erf(float(v)) for v in x]).astype(np.float32)
    got = _erf(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    got = _erf(x)
    np.testing.assert_array_equal(got[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(got[1]) and np.isnan(got[4])
    assert _erf(np.zeros((0, 3), dtype)).shape == (0, 3)
