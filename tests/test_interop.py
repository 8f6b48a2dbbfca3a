"""DLPack both ways and the CUDA array interface: gpuad.from_dlpack,
Tensor.__dlpack__/__dlpack_device__, Tensor.__cuda_array_interface__.

Zero copy is proven by data pointers. The ``cpu`` and ``emulated`` devices keep
host NumPy buffers, so NumPy, PyTorch (CPU) and JAX (CPU) interop runs on both;
the CuPy tests need a GPU."""
import numpy as np
import pytest

import gpuad as ad

AVAILABLE = ad.devices.available()
HOST_DEVICES = [pytest.param(d, marks=() if d in AVAILABLE else pytest.mark.skip(
    reason=f"{d} is not available (the emulated device needs a host C++ compiler)"))
    for d in ("cpu", "emulated")]
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_]
SHAPES = [(), (0,), (3,), (2, 3), (0, 4), (2, 1, 3)]

needs_cuda = pytest.mark.skipif(
    "cuda:0" not in AVAILABLE, reason="no usable CUDA GPU (gpuad.devices.available() has no cuda:0)")


def ptr(a) -> int:
    """The data pointer of a NumPy array (or a host gpuad tensor's buffer)."""
    if isinstance(a, (ad.Tensor, ad.Variable)):
        a = a._data
    return a.__array_interface__["data"][0]


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(shape) * 10).astype(dtype)


def aligned(values, dtype, alignment=64):
    """A copy of ``values`` in memory aligned to ``alignment`` bytes (JAX only
    aliases host memory aligned to 64 bytes; it copies other buffers)."""
    values = np.asarray(values, dtype)
    raw = np.zeros(values.nbytes + alignment, np.uint8)
    off = (-raw.ctypes.data) % alignment
    a = raw[off:off + values.nbytes].view(dtype).reshape(values.shape)
    a[...] = values
    return a


class FakeProducer:
    """A DLPack producer on a device gpuad does not know (14 = kDLOneAPI)."""

    def __init__(self, device=(14, 0)):
        self.device = device
        self.exported = False

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, **kwargs):  # gpuad must refuse before asking for the data
        self.exported = True
        raise AssertionError("__dlpack__ should not be called")


# -- NumPy -> gpuad -----------------------------------------------------------------

@pytest.mark.parametrize("device", HOST_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_from_numpy_zero_copy(device, dtype, shape):
    a = sample(shape, dtype)
    t = ad.from_dlpack(a) if device == "cpu" else ad.from_dlpack(a, device=device)
    assert t.device == device
    assert t.dtype == dtype and t.shape == shape
    np.testing.assert_array_equal(t.numpy(), a)
    assert ptr(t) == ptr(a)
    if a.size:
        assert np.shares_memory(t._data, a)


def test_cpu_producer_becomes_cpu_tensor_whatever_the_current_device():
    for name in [d for d in ("cpu", "emulated") if d in AVAILABLE]:
        with ad.device(name):
            assert ad.from_dlpack(np.ones(2)).device == "cpu"


def test_from_numpy_aliases_the_source():
    # gpuad never writes into the buffer; the source may, and the tensor sees it
    a = np.arange(4.0)
    t = ad.from_dlpack(a)
    a[0] = 42.0
    assert float(t[0]) == 42.0


def test_non_contiguous_source_keeps_strides_on_cpu():
    base = np.arange(12.0).reshape(3, 4)
    src = base.T  # a transposed view: DLPack carries the strides
    t = ad.from_dlpack(src)
    assert t.shape == (4, 3)
    np.testing.assert_array_equal(t.numpy(), src)
    assert ptr(t) == ptr(base) and t._data.strides == src.strides
    np.testing.assert_array_equal((t * 2.0).numpy(), src * 2.0)
    sliced = base[:, ::2]
    t = ad.from_dlpack(sliced)
    assert np.shares_memory(t._data, base)
    np.testing.assert_array_equal(ad.reduce_sum(t, axis=0).numpy(), sliced.sum(axis=0))


@pytest.mark.skipif("emulated" not in AVAILABLE, reason="the emulated device needs g++")
def test_non_contiguous_source_is_made_contiguous_on_emulated():
    dev = ad.devices.get("emulated")
    before = dev.transfers
    src = np.arange(12.0, dtype=np.float32).reshape(3, 4).T
    t = ad.from_dlpack(src, device="emulated")
    assert t._data.flags.c_contiguous  # the kernels want C order: a copy in host memory
    np.testing.assert_array_equal((t + 1.0).numpy(), src + 1.0)
    contiguous = np.arange(6, dtype=np.int32)
    assert ptr(ad.from_dlpack(contiguous, device="emulated")) == ptr(contiguous)
    assert dev.transfers == before + 1  # the one .numpy() above, nothing for the imports


# -- gpuad -> NumPy -----------------------------------------------------------------

@pytest.mark.parametrize("device", HOST_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_to_numpy_zero_copy(device, dtype, shape):
    a = sample(shape, dtype, seed=1)
    t = ad.constant(a, device=device)
    assert t.__dlpack_device__() == (1, 0)  # kDLCPU: both keep host memory
    b = np.from_dlpack(t)
    assert b.dtype == dtype and b.shape == shape
    np.testing.assert_array_equal(b, a)
    assert ptr(b) == ptr(t)


@pytest.mark.parametrize("device", HOST_DEVICES)
def test_numpy_round_trip_shares_memory(device):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.from_dlpack(ad.from_dlpack(a, device=device))
    assert np.shares_memory(a, b) and b.dtype == a.dtype and b.shape == a.shape


@pytest.mark.skipif("emulated" not in AVAILABLE, reason="the emulated device needs g++")
def test_interop_makes_no_transfers():
    dev = ad.devices.get("emulated")
    before = dev.transfers
    t = ad.from_dlpack(np.ones((2, 3), np.float32), device="emulated")
    np.from_dlpack(t)
    t.__dlpack_device__()
    hasattr(t, "__cuda_array_interface__")
    np.from_dlpack(ad.from_dlpack(t))
    assert dev.transfers == before


def test_read_only_buffer_export():
    b = ad.broadcast_to(ad.constant([1.0, 2.0], device="cpu"), (3, 2))
    assert not b._data.flags.writeable  # gpuad's cpu broadcast is a read-only view
    # a versioned consumer (NumPy 2, PyTorch) gets the view itself, flagged read-only
    if np.lib.NumpyVersion(np.__version__) >= "2.1.0":
        v = np.from_dlpack(b)
        assert np.shares_memory(v, b._data) and not v.flags.writeable
    # a legacy consumer cannot be told "read-only": it gets a C-contiguous copy
    copy = ad.from_dlpack(b.__dlpack__())
    assert copy._data.flags.c_contiguous and not np.shares_memory(copy._data, b._data)
    np.testing.assert_array_equal(copy.numpy(), [[1.0, 2.0]] * 3)
    with pytest.raises(BufferError):
        b.__dlpack__(copy=False)


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.1.0",
                    reason="np.from_dlpack(copy=, device=) needs NumPy 2.1")
def test_export_passes_copy_and_dl_device_through():
    t = ad.constant([1.0, 2.0], device="cpu")
    assert not np.shares_memory(np.from_dlpack(t, copy=True), t._data)
    assert ptr(np.from_dlpack(t, device="cpu", copy=False)) == ptr(t)


def test_from_dlpack_of_gpuad_tensors_and_variables():
    t = ad.constant([1.0, 2.0, 3.0], device="cpu")
    u = ad.from_dlpack(t)
    assert ptr(u) == ptr(t) and u.device == "cpu"
    v = ad.Variable([4.0, 5.0], device="cpu")
    w = ad.from_dlpack(v)
    assert isinstance(w, ad.Tensor) and ptr(w) == ptr(v)
    np.testing.assert_array_equal(w.numpy(), [4.0, 5.0])
    if "emulated" in AVAILABLE:
        e = ad.from_dlpack(t, device="emulated")
        assert e.device == "emulated" and ptr(e) == ptr(t)


def test_variable_exports_its_current_value():
    v = ad.Variable([1.0, 2.0], device="cpu")
    assert v.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(v)
    assert ptr(a) == ptr(v)
    v.assign_add([1.0, 1.0])  # a new buffer: the exported array keeps the old value
    np.testing.assert_array_equal(a, [1.0, 2.0])
    np.testing.assert_array_equal(np.from_dlpack(v), [2.0, 3.0])


@pytest.mark.parametrize("device", HOST_DEVICES)
def test_no_cuda_array_interface_off_cuda(device):
    t = ad.constant([1.0], device=device)
    assert not hasattr(t, "__cuda_array_interface__")
    assert not hasattr(ad.Variable([1.0], device=device), "__cuda_array_interface__")
    with pytest.raises(AttributeError, match=f"on {device}"):
        t.__cuda_array_interface__


# -- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.uint8, np.int8, np.int16, np.uint32,
                                   np.complex64])
def test_unsupported_dtype_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=f"no dtype {np.dtype(dtype).name}.*float32, float64"):
        ad.from_dlpack(np.zeros(3, dtype))


def test_unknown_device_type_is_a_clear_error():
    fake = FakeProducer((14, 0))
    with pytest.raises(BufferError, match=r"device type 14 \(kDLOneAPI\).*CPU first"):
        ad.from_dlpack(fake)
    assert not fake.exported
    with pytest.raises(BufferError, match="device type 99"):
        ad.from_dlpack(FakeProducer((99, 3)))


@pytest.mark.skipif("cuda:0" in AVAILABLE, reason="checks the error where there is no GPU")
def test_cuda_producer_without_cuda_says_why():
    with pytest.raises(RuntimeError, match="CuPy|driver|CUDA device"):
        ad.from_dlpack(FakeProducer((2, 0)))


def test_not_a_producer():
    with pytest.raises(TypeError, match="__dlpack__"):
        ad.from_dlpack([1.0, 2.0])


def test_cpu_data_cannot_land_on_another_device_without_a_copy():
    if "cuda:0" not in AVAILABLE:
        pytest.skip("needs a cuda device to name")
    with pytest.raises(ValueError, match=r"\.to\('cuda:0'\)"):
        ad.from_dlpack(np.ones(2), device="cuda:0")


# -- autodiff ------------------------------------------------------------------------

@pytest.mark.parametrize("device", HOST_DEVICES)
def test_gradient_flows_through_an_imported_tensor(device):
    a = np.array([1.0, -2.0, 3.0])
    x = ad.from_dlpack(a, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.reduce_sum(x * x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), 2 * a)
    g = ad.grad(lambda t: ad.reduce_sum(ad.exp(t)))(x)
    np.testing.assert_allclose(g.numpy(), np.exp(a))


# -- PyTorch (CPU) ---------------------------------------------------------------------

@pytest.mark.parametrize("device", HOST_DEVICES)
def test_torch_to_gpuad_zero_copy(device):
    torch = pytest.importorskip("torch")
    for dt, ours in [(torch.float32, ad.float32), (torch.float64, ad.float64),
                     (torch.int32, ad.int32), (torch.int64, ad.int64), (torch.bool, ad.bool)]:
        x = (torch.arange(6) % 3).to(dt).reshape(2, 3)
        t = ad.from_dlpack(x, device=device)
        assert t.dtype == ours and t.shape == (2, 3) and t.device == device
        assert ptr(t) == x.data_ptr()
        np.testing.assert_array_equal(t.numpy(), x.numpy())
    x = torch.zeros(()), torch.zeros((0, 2))
    assert [ad.from_dlpack(v).shape for v in x] == [(), (0, 2)]
    base = torch.arange(12.0).reshape(3, 4)
    t = ad.from_dlpack(base.T)  # strided: still an alias on cpu
    assert ptr(t) == base.data_ptr()
    np.testing.assert_array_equal(t.numpy(), base.T.numpy())


def test_torch_legacy_capsule():
    torch = pytest.importorskip("torch")
    x = torch.arange(4.0)
    t = ad.from_dlpack(torch.utils.dlpack.to_dlpack(x))
    assert ptr(t) == x.data_ptr()
    np.testing.assert_array_equal(t.numpy(), [0.0, 1.0, 2.0, 3.0])
    capsule = torch.utils.dlpack.to_dlpack(x)
    ad.from_dlpack(capsule)
    with pytest.raises(BufferError, match="already consumed"):
        ad.from_dlpack(capsule)


@pytest.mark.parametrize("device", HOST_DEVICES)
def test_gpuad_to_torch_zero_copy(device):
    torch = pytest.importorskip("torch")
    for dtype in DTYPES:
        t = ad.constant(sample((2, 3), dtype), device=device)
        x = torch.from_dlpack(t)
        assert x.shape == (2, 3) and str(x.dtype) == f"torch.{'bool' if dtype is np.bool_ else np.dtype(dtype).name}"
        assert x.data_ptr() == ptr(t)
        np.testing.assert_array_equal(x.numpy(), t.numpy())
    v = ad.Variable([1.0, 2.0], device=device)
    assert torch.from_dlpack(v).data_ptr() == ptr(v)
    b = ad.broadcast_to(ad.constant([1.0, 2.0], device="cpu"), (3, 2))  # read-only view
    np.testing.assert_array_equal(torch.from_dlpack(b).numpy(), [[1.0, 2.0]] * 3)


# -- JAX (CPU) -------------------------------------------------------------------------

def test_jax_to_gpuad_zero_copy():
    pytest.importorskip("jax")
    import jax.numpy as jnp
    for dt in (jnp.float32, jnp.int32, jnp.bool_):
        x = jnp.arange(6).reshape(2, 3).astype(dt)
        t = ad.from_dlpack(x)
        assert t.device == "cpu" and t.dtype == dt and t.shape == (2, 3)
        assert ptr(t) == x.unsafe_buffer_pointer()
        np.testing.assert_array_equal(t.numpy(), np.asarray(x))
    assert ad.from_dlpack(jnp.float32(2.0)).shape == ()
    with pytest.raises(TypeError, match="bfloat16"):
        ad.from_dlpack(jnp.zeros(2, jnp.bfloat16))


def test_gpuad_to_jax_zero_copy():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    a = aligned(np.arange(8), np.float32)  # JAX copies host buffers that are not 64-byte aligned
    t = ad.from_dlpack(a)
    for consumer in (jnp.from_dlpack, jax.dlpack.from_dlpack):
        x = consumer(t)
        np.testing.assert_array_equal(np.asarray(x), a)
        assert x.unsafe_buffer_pointer() == ptr(a)
    x = jnp.from_dlpack(ad.constant([[1, 2], [3, 4]]))  # any buffer: the values at least
    assert x.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(x), [[1, 2], [3, 4]])


# -- CuPy / cuda ------------------------------------------------------------------------

@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_cupy_both_ways(dtype):
    import cupy
    dev = ad.devices.get("cuda:0")
    before = dev.transfers
    x = cupy.asarray(sample((2, 3), dtype))
    t = ad.from_dlpack(x)
    assert t.device == "cuda:0" and t.dtype == dtype and t.shape == (2, 3)
    assert t._data.data.ptr == x.data.ptr
    assert t.__dlpack_device__() == (2, 0)
    y = cupy.from_dlpack(t)
    assert y.data.ptr == x.data.ptr
    cai = t.__cuda_array_interface__
    assert hasattr(t, "__cuda_array_interface__") and cai["data"][0] == x.data.ptr
    assert cai["shape"] == (2, 3)
    assert cupy.asarray(t).data.ptr == x.data.ptr  # CuPy reads the interface, no copy
    v = ad.Variable(t)
    assert v.__cuda_array_interface__["data"][0] == x.data.ptr
    assert dev.transfers == before


@pytest.mark.cuda
@needs_cuda
def test_cupy_strided_source_and_gradient():
    import cupy
    base = cupy.arange(12.0).reshape(3, 4)
    t = ad.from_dlpack(base.T)  # kernels want C order: a copy on the GPU, no transfer
    assert t._data.flags.c_contiguous and t.device == "cuda:0"
    np.testing.assert_array_equal(t.numpy(), cupy.asnumpy(base.T))
    with ad.GradientTape() as tape:
        tape.watch(t)
        y = ad.reduce_sum(t * t)
    np.testing.assert_allclose(tape.gradient(y, t).numpy(), 2 * cupy.asnumpy(base.T))
    with pytest.raises(ValueError, match="without a copy"):
        ad.from_dlpack(base, device="cpu")


@pytest.mark.cuda
@needs_cuda
def test_torch_cuda_both_ways():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    x = torch.arange(6.0, device="cuda:0").reshape(2, 3)
    t = ad.from_dlpack(x)
    assert t.device == "cuda:0" and t._data.data.ptr == x.data_ptr()
    assert torch.from_dlpack(t).data_ptr() == x.data_ptr()
    assert torch.as_tensor(t, device="cuda:0").data_ptr() == x.data_ptr()  # the CUDA array interface
