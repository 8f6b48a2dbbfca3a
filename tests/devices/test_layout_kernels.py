"""kernels/layout.cu through the kernel device's launch layer
(gpuad/devices/launch/layout.py), on the emulated launcher, against the cpu device:
layout (reshape, transpose, broadcast_to, strided_slice, strided_slice_grad),
concat, gather / scatter_add and one_hot."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from gpuad.devices import get
from gpuad.ops.array import canonical_key

if shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None:
    pytest.skip("the emulated device compiles kernels with g++ (C++20), which is missing",
                allow_module_level=True)

from gpuad.devices.launch.common import suffix  # noqa: E402
from gpuad.devices.emulated import HostLauncher  # noqa: E402

from .spy import Spy  # noqa: E402
from gpuad.devices.host_build import HostModule  # noqa: E402
from gpuad.devices.kernel_sources import kernel_dir  # noqa: E402

CPU = get("cpu")
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_]
SIZES = [0, 1, 31, 32, 33, 1023, 1024, 1025, 100_003]


class FamilyLauncher(HostLauncher):
    """The emulated launcher with only this family's source built, so these tests do
    not depend on the state of the other families' kernels."""

    def __init__(self, sources, **kw):
        super().__init__(**kw)
        self._sources = sources

    def module(self):
        if self._module is None:
            d = kernel_dir()
            self._module = HostModule([d / s for s in self._sources], [d])
        return self._module


@pytest.fixture(scope="module")
def dev():
    return Spy(FamilyLauncher(["layout.cu"], poison=True))


def data(shape, dtype, rng, low=-50, high=50):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.kind == "f":
        return np.asarray(rng.standard_normal(shape) * 10, dtype)
    return np.asarray(rng.integers(low, high, size=shape), dtype)


def same(got, want):
    want = np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def views(a):
    """``a`` and non-contiguous views of it with the same shape where possible."""
    yield a
    if a.ndim:
        yield a[::-1]
        yield np.flip(a)
        yield np.ascontiguousarray(a.T).T  # Fortran order
        big = np.empty(tuple(2 * n for n in a.shape), a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        yield big[tuple(slice(None, None, 2) for _ in a.shape)]


# -- layout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_reshape_every_dtype_and_view(dev, dtype):
    rng = np.random.default_rng(0)
    for a in views(data((5, 33, 40), dtype, rng)):
        for perm in [(0, 1, 2), (2, 1, 0), (0, 2, 1), (1, 2, 0), (1, 0, 2), (-1, 0, 1)]:
            same(dev.layout("transpose", a, perm=perm), CPU.layout("transpose", a, perm=perm))
        for shape in [(5 * 33 * 40,), (33, -1), (2, 2, 2, 5, 33, 5)]:
            got = dev.layout("reshape", a, shape=shape)
            same(got, CPU.layout("reshape", a, shape=shape))


def test_transpose_paths_sizes_and_ranks(dev):
    rng = np.random.default_rng(1)
    for n in SIZES:
        a = data((n,), np.float32, rng)
        same(dev.layout("transpose", a[::-1], perm=(0,)), a[::-1])
        for m in (1, 2, 33):
            b = data((n, m), np.float64, rng)
            same(dev.layout("transpose", b, perm=(1, 0)), b.T)
    for shape in [(), (1,), (1, 1, 1), (2, 3, 4, 1, 2, 3, 2, 2), (3,) * 8]:
        a = data(shape, np.int64, rng)
        for _ in range(3):
            perm = tuple(rng.permutation(a.ndim))
            same(dev.layout("transpose", a, perm=perm), CPU.layout("transpose", a, perm=perm))
            same(dev.layout("transpose", a[..., ::-1] if a.ndim else a, perm=perm),
                 np.transpose(a[..., ::-1] if a.ndim else a, perm))
    # which kernel runs: tiled transpose for a 2-D/batched transposition, else strided/contig
    dev.launched.clear()
    big = data((1025, 333), np.float32, rng)
    same(dev.layout("transpose", big, perm=(1, 0)), big.T)
    batched = data((3, 47, 65), np.float64, rng)
    same(dev.layout("transpose", batched, perm=(0, 2, 1)), np.transpose(batched, (0, 2, 1)))
    same(dev.layout("transpose", batched[:, ::-1], perm=(2, 0, 1)), np.transpose(batched[:, ::-1], (2, 0, 1)))
    assert dev.launched[:2] == ["layout_transpose_f32_tiled", "layout_transpose_f64_tiled"]
    dev.launched.clear()
    same(dev.layout("transpose", batched, perm=(1, 0, 2)), np.transpose(batched, (1, 0, 2)))
    assert dev.launched == ["layout_copy_f64"]
    dev.launched.clear()
    c = data((7, 9), np.int32, rng)
    got = dev.layout("reshape", c, shape=(9, 7))
    assert dev.launched == [] and np.shares_memory(got, c)  # a contiguous reshape is a view
    same(dev.layout("reshape", c.T, shape=(63,)), c.T.reshape(63))
    assert dev.launched == ["layout_copy_i32"]


def test_broadcast_to(dev):
    rng = np.random.default_rng(2)
    cases = [((), (1025,)), ((), ()), ((1,), (0,)), ((3, 1), (2, 3, 5)), ((1, 33), (1025, 33)),
             ((4, 1, 2, 1, 1, 2, 1), (3, 4, 2, 2, 3, 1, 2, 2)), ((31,), (4, 31))]
    for dtype in DTYPES:
        for src, dst in cases:
            for a in views(data(src, dtype, rng)):
                same(dev.layout("broadcast_to", a, shape=dst), CPU.layout("broadcast_to", a, shape=dst))
    a = np.broadcast_to(data((5, 1), np.float32, rng), (5, 7))  # a broadcast (zero-stride) input
    same(dev.layout("broadcast_to", a, shape=(2, 5, 7)), np.broadcast_to(a, (2, 5, 7)))
    same(dev.layout("transpose", a, perm=(1, 0)), a.T)


SLICE_KEYS = [
    (slice(None),), (slice(None, None, -1),), (slice(1, None, 3), 2), (0, slice(None, None, -2)),
    (None, slice(5, 1, -1), None, slice(None), None), (Ellipsis, 3), (-1, -1, -1), (slice(3, 3), ...),
    (slice(100, None, -1), slice(-100, None, 7)), (..., None),
    (slice(None, None, -7), slice(None, None, 5), slice(2, 20, 4)),
]
# canonical_key turns x[-100::-1] (empty) into slice(-1, None, -1), which the cpu device
# hands to NumPy, where a start of -1 means "the last element": it returns the whole axis
# reversed (a bug in gpuad.ops.array.canonical_key). The kernel device reads canonical
# keys literally (-1: before the front), as NumPy reads the original index.
EMPTY_BACKWARD = (slice(-100, None, -1), slice(-6, -10, -1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_slice_and_grad(dev, dtype):
    rng = np.random.default_rng(3)
    for a in views(data((33, 8, 31), dtype, rng)):
        for raw in SLICE_KEYS:
            key = canonical_key(a.shape, raw)
            got = dev.layout("strided_slice", a, key=key)
            same(got, CPU.layout("strided_slice", a, key=key))
            same(got, a[raw])
            for g in views(data(got.shape, dtype, rng)):
                same(dev.layout("strided_slice_grad", g, shape=a.shape, key=key),
                     CPU.layout("strided_slice_grad", g, shape=a.shape, key=key))
        key = canonical_key(a.shape, EMPTY_BACKWARD)
        got = dev.layout("strided_slice", a, key=key)
        same(got, a[EMPTY_BACKWARD])
        same(dev.layout("strided_slice_grad", got, shape=a.shape, key=key), np.zeros(a.shape, dtype))


def test_strided_slice_sizes_and_ranks(dev):
    rng = np.random.default_rng(4)
    for n in SIZES:
        a = data((n,), np.float64, rng)
        for raw in [slice(None, None, -1), slice(1, None, 2), slice(None, None, -3), slice(n // 2, None)]:
            key = canonical_key(a.shape, raw)
            same(dev.layout("strided_slice", a, key=key), a[raw])
            g = data(a[raw].shape, np.float64, rng)
            same(dev.layout("strided_slice_grad", g, shape=a.shape, key=key),
                 CPU.layout("strided_slice_grad", g, shape=a.shape, key=key))
    scalar = data((), np.int32, rng)
    same(dev.layout("strided_slice", scalar, key=canonical_key((), (None,))), scalar[None])
    a = data((2, 3, 2, 3, 2, 3, 2, 3), np.float32, rng)
    raw = (1, slice(None, None, -1), None, 0, slice(None), 1, ..., slice(None, None, -2))
    key = canonical_key(a.shape, raw)
    same(dev.layout("strided_slice", a[::-1], key=key), a[::-1][raw])
    g = data(a[raw].shape, np.float32, rng)
    same(dev.layout("strided_slice_grad", g, shape=a.shape, key=key),
         CPU.layout("strided_slice_grad", g, shape=a.shape, key=key))


# -- concat ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_concat(dev, dtype):
    rng = np.random.default_rng(5)
    for axis in (0, 1, 2, -1):
        parts = []
        for i, n in enumerate([3, 0, 1, 31, 33]):
            shape = [4, 5, 6]
            shape[axis] = n
            a = data(tuple(shape), dtype, rng)
            parts.append(list(views(a))[i % 5])
        same(dev.concat("concat", *parts, axis=axis), CPU.concat("concat", *parts, axis=axis))
    for n in SIZES:
        a, b = data((n,), dtype, rng), data((n + 1,), dtype, rng)
        same(dev.concat("concat", a, b[::-1], a, axis=0), CPU.concat("concat", a, b[::-1], a, axis=0))
    one = data((1, 2, 1, 2, 1, 2, 1, 2), dtype, rng)
    same(dev.concat("concat", one, one[:, ::-1], axis=5), CPU.concat("concat", one, one[:, ::-1], axis=5))


# -- gather / scatter_add -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather(dev, dtype):
    rng = np.random.default_rng(6)
    for x in views(data((7, 33, 5), dtype, rng)):
        for axis in (0, 1, 2):
            n = x.shape[axis]
            for idx_shape in [(), (0,), (1,), (40,), (2, 3)]:
                for itype in (np.int32, np.int64):
                    idx = rng.integers(0, n, size=idx_shape).astype(itype)
                    for i in (idx, idx[::-1] if idx.ndim else idx):
                        same(dev.gather("gather", x, i, axis=axis), CPU.gather("gather", x, i, axis=axis))


def test_gather_sizes_and_out_of_range(dev):
    rng = np.random.default_rng(7)
    for n in SIZES[1:]:
        x = data((n,), np.float32, rng)
        idx = rng.integers(0, n, size=(n + 3,)).astype(np.int64)
        same(dev.gather("gather", x, idx, axis=0), CPU.gather("gather", x, idx, axis=0))
    x = data((4, 3), np.float64, rng)
    idx = np.array([0, -1, 3, 4, 100, 2], np.int32)
    got = dev.gather("gather", x, idx, axis=0)  # documented: 0 where the cpu device raises
    want = np.where(((idx >= 0) & (idx < 4))[:, None], x[np.clip(idx, 0, 3)], 0)
    same(got, want)
    with pytest.raises(TypeError, match="int32 or int64"):
        dev.gather("gather", x, idx.astype(np.int16), axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_scatter_add(dev, dtype):
    rng = np.random.default_rng(8)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for shape, axis in [((6, 33, 4), 1), ((7,), 0), ((3, 5), 0), ((2, 3, 4), 2), ((1025, 2), 0)]:
        n = shape[axis]
        for idx_shape in [(), (0,), (50,), (4, 3)]:
            for itype in (np.int32, np.int64):
                idx = rng.integers(0, n, size=idx_shape).astype(itype)  # duplicates add up
                upd_shape = shape[:axis] + idx.shape + shape[axis + 1:]
                for upd in views(data(upd_shape, dtype, rng)):
                    got = dev.gather("scatter_add", upd, idx, axis=axis, shape=shape)
                    want = CPU.gather("scatter_add", upd, idx, axis=axis, shape=shape)
                    assert got.shape == want.shape and got.dtype == want.dtype
                    if np.dtype(dtype).kind == "f":  # atomics add in any order
                        np.testing.assert_allclose(got, want, **tol)
                    else:
                        same(got, want)
    upd = np.ones((3,), np.float32)
    got = dev.gather("scatter_add", upd, np.array([1, 9, -1], np.int64), axis=0, shape=(4,))
    same(got, np.array([0, 1, 0, 0], np.float32))  # out-of-range updates are dropped


# -- one_hot ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot(dev, dtype):
    rng = np.random.default_rng(9)
    on, off = (True, False) if dtype == np.bool_ else (5, -2)
    for depth in (0, 1, 3, 33):
        for idx_shape in [(), (0,), (1025,), (3, 4)]:
            for itype in (np.int32, np.int64):
                idx = rng.integers(-2, depth + 2, size=idx_shape).astype(itype)
                for i in (idx, idx[::-1] if idx.ndim else idx):
                    same(dev.one_hot("one_hot", i, depth, on, off, dtype),
                         CPU.one_hot("one_hot", i, depth, on, off, dtype))
    idx = np.arange(5, dtype=np.int32)
    same(dev.one_hot("one_hot", idx, 5, 1.5, 0.25, dtype), CPU.one_hot("one_hot", idx, 5, 1.5, 0.25, dtype))


# -- contiguous copies: bytes, no kernel; strided copies: several elements per thread --------
def test_contiguous_copies_are_byte_copies(dev):
    """Both views contiguous (offsets anywhere, in elements of any size): dev.copy_bytes,
    no kernel; the result equals the cpu device's."""
    rng = np.random.default_rng(10)
    for dtype in DTYPES:
        for n in (1, 2, 3, 31, 1025):
            parts = [data((k, 3), dtype, rng) for k in (n, 1, 2)]
            dev.launched.clear()
            same(dev.concat("concat", *parts, axis=0), CPU.concat("concat", *parts, axis=0))
            a = data((n + 3,), dtype, rng)
            key = canonical_key(a.shape, (slice(1, n + 1),))  # starts 1 element in: misaligned
            same(dev.layout("strided_slice", a, key=key), a[1:n + 1])
            g = data((n,), dtype, rng)
            same(dev.layout("strided_slice_grad", g, shape=a.shape, key=key),
                 CPU.layout("strided_slice_grad", g, shape=a.shape, key=key))
            assert all(k.startswith("layout_zero_") for k in dev.launched), dev.launched


def test_copy_bytes(dev):
    src = np.arange(40, dtype=np.int64)
    dst = np.full(40, -1, np.int64)
    dev.copy_bytes(dst, 8 * 3, src[5:], 8 * 2, 8 * 10)  # src[7:17] -> dst[3:13]
    want = np.full(40, -1, np.int64)
    want[3:13] = np.arange(7, 17)
    same(dst, want)
    b = np.zeros(7, np.uint8)
    dev.copy_bytes(b, 1, np.arange(7, dtype=np.uint8), 3, 0)  # nothing
    dev.copy_bytes(b, 1, np.arange(7, dtype=np.uint8), 3, 3)
    same(b, np.array([0, 3, 4, 5, 0, 0, 0], np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_copies_every_length_around_the_unroll(dev, dtype):
    """layout_copy_* and layout_copy_*_dst_strided take 8 elements per thread and grid
    step: lengths around multiples of 8 x the grid's threads, and ranks 1 to 3."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 7, 8, 9, 255, 256, 257, 2047, 2048, 2049, 8191, 8193, 33000):
        a = data((n,), dtype, rng)
        dev.launched.clear()
        same(dev.layout("transpose", a[::-1], perm=(0,)), a[::-1])
        g = data(((n + 1) // 2,), dtype, rng)
        key = canonical_key(a.shape, (slice(None, None, 2),))
        same(dev.layout("strided_slice_grad", g[::-1], shape=a.shape, key=key),
             CPU.layout("strided_slice_grad", g[::-1], shape=a.shape, key=key))
        if n >= 3:  # (one element, or a slice of one, is contiguous: a byte copy)
            sfx = suffix(dtype)
            assert dev.launched == [f"layout_copy_{sfx}", f"layout_zero_{sfx}",
                                    f"layout_copy_{sfx}_dst_strided"], dev.launched
    b = data((3, 37, 5), dtype, rng)
    for view in (b[:, ::-2, 1:], b.transpose(2, 0, 1)[::-1], b[::2, 5:30:3, ::-1]):
        same(dev.layout("transpose", view, perm=(1, 0, 2)), np.transpose(view, (1, 0, 2)))
