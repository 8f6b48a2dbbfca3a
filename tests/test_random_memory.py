"""random.normal/uniform on the cpu device generate in bounded chunks with the same
numbers as in one step, and a request no device can hold raises gpuad.OutOfMemoryError
(naming the op and the size) instead of getting the process killed (issue 12)."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuad as ad
from gpuad.devices import philox

OPS = ["random_normal", "random_uniform"]


@settings(max_examples=200, deadline=None)
@given(op=st.sampled_from(OPS), dtype=st.sampled_from([np.float32, np.float64]),
       n=st.integers(0, 300), chunk=st.integers(1, 70), key=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**40))
def test_chunked_generation_is_bit_identical_to_one_step(op, dtype, n, chunk, key, offset):
    one = philox.sample(op, n, dtype, key, offset)
    chunked = philox.sample_into(np.empty(n, dtype), op, key, offset, chunk=chunk)
    assert one.tobytes() == chunked.tobytes()


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=3), key=st.integers(0, 2**64 - 1),
       offset=st.integers(0, 2**40), dtype=st.sampled_from([np.float32, np.float64]),
       op=st.sampled_from(OPS))
def test_cpu_device_random_is_the_one_step_stream(shape, key, offset, dtype, op):
    """The cpu device's numbers for every shape, key and offset: those of one step (today's)."""
    got = ad.devices.get("cpu").random(op, tuple(shape), dtype, key, offset)
    want = philox.sample(op, int(np.prod(shape)), dtype, key, offset).reshape(shape)
    assert got.dtype == want.dtype and got.shape == tuple(shape)
    assert got.tobytes() == want.tobytes()


def test_cpu_random_normal_peak_memory_is_bounded():
    n = 2_000_000
    dev = ad.devices.get("cpu")
    for dtype in (np.float32, np.float64):
        tracemalloc.start()
        try:
            x = dev.random("random_normal", (n,), dtype, 99, 5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1.5 * x.nbytes, f"peak {peak / x.nbytes:.1f}x the output"
        np.testing.assert_array_equal(x[-1000:], philox.sample("random_normal", n, dtype, 99, 5)[-1000:])


HUGE = [(2**62,), (2**31, 2**31), (2**40, 3)]


@pytest.mark.parametrize("shape", HUGE)
@pytest.mark.parametrize("what", ["normal", "uniform", "ones", "zeros"])
def test_a_request_that_cannot_fit_raises_out_of_memory(device, shape, what, monkeypatch):
    import numpy
    calls = []
    real_empty = numpy.empty

    def spy(shape_, *a, **k):  # nothing of the requested size is ever allocated
        calls.append(shape_)
        return real_empty(shape_, *a, **k)
    monkeypatch.setattr(numpy, "empty", spy)
    f = {"normal": ad.random.normal, "uniform": ad.random.uniform,
         "ones": ad.ones, "zeros": ad.zeros}[what]
    with pytest.raises(ad.OutOfMemoryError) as e:
        f(shape, dtype=ad.float32)
    nbytes = int(np.prod(shape, dtype=object)) * 4
    assert e.value.requested == nbytes
    assert f"{nbytes:,} bytes" in str(e.value)
    op = {"normal": "random_normal", "uniform": "random_uniform", "ones": "fill", "zeros": "fill"}[what]
    assert op in str(e.value)
    assert isinstance(e.value, MemoryError)
    assert all(int(np.prod(s, dtype=object)) < nbytes // 4 for s in calls if isinstance(s, tuple))
    # state is intact: the next draw works
    assert ad.random.normal((3,)).shape == (3,)


def test_numpy_memory_error_becomes_out_of_memory(monkeypatch):
    """Below the pre-check's threshold, an allocation NumPy refuses still names op and size."""
    from gpuad.devices import cpu_memory

    def refuse(*a, **k):
        raise MemoryError("Unable to allocate")
    monkeypatch.setattr(cpu_memory.np, "empty", refuse)
    with ad.device("cpu"), pytest.raises(ad.OutOfMemoryError, match=r"random_uniform on cpu needs 4,000 bytes"):
        ad.random.uniform((1000,))
