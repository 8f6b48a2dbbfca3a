"""What README promises about gpuad.random across devices (issue 12): uniform numbers
are bit-identical on every device; normal numbers agree within 8 eps max(1, |x|)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuad as ad

from .conftest import DEVICES

OTHERS = [d for d in DEVICES if d != "cpu"]


@pytest.mark.parametrize("name", OTHERS)
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 40), min_size=0, max_size=3), key=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**40), dtype=st.sampled_from([np.float32, np.float64]))
def test_random_across_devices(name, shape, key, offset, dtype):
    cpu, other = ad.devices.get("cpu"), ad.devices.get(name)
    u = cpu.random("random_uniform", tuple(shape), dtype, key, offset)
    assert u.tobytes() == other.to_host(other.random("random_uniform", tuple(shape), dtype, key, offset)).tobytes()
    a = cpu.random("random_normal", tuple(shape), dtype, key, offset)
    b = other.to_host(other.random("random_normal", tuple(shape), dtype, key, offset))
    assert a.shape == b.shape and a.dtype == b.dtype
    err = np.abs(a.astype(np.float64) - b) / np.maximum(1.0, np.abs(a)) / np.finfo(dtype).eps
    assert err.size == 0 or err.max() <= 8.0
