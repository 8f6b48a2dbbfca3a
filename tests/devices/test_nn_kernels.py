"""kernels/nn.cu and kernels/random.cu through the kernel device's launch layer
(gpuad/devices/launch/nn.py), on the emulated launcher, against the cpu device:
softmax, log_softmax, softmax_xent (every schedule: warp, block, col), the fused
softmax_xent backward kernel against NumPy, and Philox random numbers (bit for bit
for uniform, to a few ulps for normal; independent of the launch shape)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from gpuad.devices import get, philox

if shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None:
    pytest.skip("the emulated device compiles kernels with g++ (C++20), which is missing",
                allow_module_level=True)

from gpuad.devices.launch import KernelDevice, nn  # noqa: E402
from gpuad.devices.emulated import HostLauncher  # noqa: E402
from gpuad.devices.host_build import HostModule  # noqa: E402
from gpuad.devices.kernel_sources import kernel_dir  # noqa: E402

CPU = get("cpu")
FLOATS = [np.float32, np.float64]
SCHEDULES = [None, "warp", "block", "col"]
# The block schedule (a barrier per reduction step) is slow to emulate: fewer rows there.
SHAPES = {None: [(7, 33, 5), (300, 3), (2, 1, 4)], "warp": [(7, 33, 5), (300, 3), (2, 1, 4)],
          "col": [(7, 33, 5), (300, 3), (2, 1, 4)], "block": [(3, 9, 5), (2, 1, 4)]}
TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6), np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13)}


class FamilyLauncher(HostLauncher):
    """The emulated launcher with only this family's sources built, so these tests do
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
    return KernelDevice(FamilyLauncher(["nn.cu", "random.cu"], poison=True))


def close(got, want):
    want = np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_allclose(got, want, equal_nan=True, **TOL[want.dtype])


def views(a):
    yield a
    if a.ndim:
        yield a[::-1]
        yield np.ascontiguousarray(a.T).T
        big = np.empty(tuple(2 * n for n in a.shape), a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        yield np.flip(big[tuple(slice(None, None, 2) for _ in a.shape)], -1)


def logits(shape, dtype, rng, edge=False):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    if edge and x.ndim >= 1 and x.size:
        flat = x.reshape(-1, x.shape[-1])
        flat[0, :] = -np.inf  # an all -inf row: NaN, as on the cpu device
        if flat.shape[0] > 1:
            flat[1, 0] = -np.inf
        if flat.shape[0] > 2:
            flat[2, -1] = np.inf
        if flat.shape[0] > 3:
            flat[3, 0] = np.nan
        if flat.shape[0] > 4:
            flat[4, :] = 1e30 if dtype == np.float32 else 1e300
        x = flat.reshape(shape)
    return x


def labels_like(x, rng):
    p = rng.random(x.shape).astype(x.dtype)
    return p / np.maximum(p.sum(axis=-1, keepdims=True), 1).astype(x.dtype)


# -- softmax / log_softmax ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_softmax_axes_views_edges(dev, dtype, schedule):
    rng = np.random.default_rng(0)
    for shape in SHAPES[schedule]:
        x = logits(shape, dtype, rng, edge=True)
        for v in views(x):
            for axis in range(-1, v.ndim):
                for op in ("softmax", "log_softmax"):
                    close(nn._softmax(dev, op, v, axis, schedule), CPU.softmax(op, v, axis))
    for op in ("softmax", "log_softmax"):
        x = logits((4, 0, 3), dtype, rng)
        close(nn._softmax(dev, op, x, 2, schedule), CPU.softmax(op, x, 2))
        x = logits((), dtype, rng)[None]
        close(nn._softmax(dev, op, x, 0, schedule), CPU.softmax(op, x, 0))


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_row_lengths(dev, dtype):
    rng = np.random.default_rng(1)
    for n in [1, 31, 32, 33, 1023, 1024, 1025, 4099]:
        x = logits((3, n), dtype, rng, edge=n > 1)
        for schedule in SCHEDULES:
            close(nn._softmax(dev, "log_softmax", x, 1, schedule), CPU.softmax("log_softmax", x, 1))
            close(nn._softmax(dev, "softmax", x.T, 0, schedule), CPU.softmax("softmax", x.T, 0))
    x = logits((2, 3, 1, 2, 3, 2, 1, 3), dtype, rng)
    for axis in range(8):
        close(dev.softmax("softmax", x[:, ::-1], axis), CPU.softmax("softmax", x[:, ::-1], axis))
    x = logits((100_003,), dtype, rng)
    close(dev.softmax("log_softmax", x, 0), CPU.softmax("log_softmax", x, 0))


# -- softmax cross-entropy ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_softmax_xent(dev, dtype, schedule):
    rng = np.random.default_rng(2)
    for shape in SHAPES[schedule][:-1] + [(1, 1025), (33,)]:
        z = logits(shape, dtype, rng, edge=True)
        y = labels_like(z, rng)
        for zv, yv in zip(views(z), views(y)):
            for axis in range(-1, z.ndim):
                if schedule == "block" and z.size // z.shape[axis] > 64:
                    continue  # slow to emulate; the block schedule is chosen for long rows
                close(nn._softmax_xent(dev, "softmax_cross_entropy", yv, zv, axis, schedule),
                      CPU.softmax_xent("softmax_cross_entropy", yv, zv, axis))
                close(nn._softmax_xent(dev, "softmax_cross_entropy", y, zv, axis, schedule),
                      CPU.softmax_xent("softmax_cross_entropy", y, zv, axis))
    z = logits((0, 5), dtype, rng)
    close(nn._softmax_xent(dev, "softmax_cross_entropy", z, z, 1, schedule), CPU.softmax_xent("softmax_cross_entropy", z, z, 1))
    # one-hot labels, the usual case
    z = logits((64, 10), dtype, rng)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 64)]
    close(nn._softmax_xent(dev, "softmax_cross_entropy", y, z, 1, schedule), CPU.softmax_xent("softmax_cross_entropy", y, z, 1))


def _xent_bwd_numpy(g, labels, logits, axis):
    m = np.max(logits, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(logits.dtype)
    z = logits - m
    sm = np.exp(z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True)))
    return np.expand_dims(g, axis) * (sm - labels)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_softmax_xent_bwd(dev, dtype, schedule):
    rng = np.random.default_rng(3)
    for shape in SHAPES[schedule][:-1] + [(2, 1025), (33,)]:
        z = logits(shape, dtype, rng)
        y = labels_like(z, rng)
        for zv, yv in zip(views(z), views(y)):
            for axis in range(-1, z.ndim):
                if schedule == "block" and z.size // z.shape[axis] > 64:
                    continue  # slow to emulate; the block schedule is chosen for long rows
                gshape = zv.shape[:axis % z.ndim] + zv.shape[axis % z.ndim + 1:]
                for g in views(rng.standard_normal(gshape).astype(dtype)):
                    close(nn.softmax_xent_bwd(dev, g, yv, zv, axis, schedule), _xent_bwd_numpy(g, yv, zv, axis))
    z = logits((4, 6), dtype, rng, edge=True)
    y = labels_like(z, rng)
    g = np.asarray(rng.standard_normal(6), dtype)
    with np.errstate(invalid="ignore"):
        close(nn.softmax_xent_bwd(dev, g, y, z, 0, schedule), _xent_bwd_numpy(g, y, z, 0))


# -- random ---------------------------------------------------------------------------------------------
KAT = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]  # Random123: Philox4x32-10, counter 0, key 0


def test_philox_known_answer_through_the_kernel(dev):
    assert [int(w) for w in philox.philox_words(4, 0, 0)] == KAT
    assert [int(w) for w in nn.random_bits(dev, 4, 0, 0).view(np.uint32)] == KAT
    for key, offset, n in [(0, 0, 1), (0x0123456789ABCDEF, 5, 1027), ((1 << 64) - 1, (1 << 32) - 3, 33)]:
        got = nn.random_bits(dev, n, key, offset).view(np.uint32)
        np.testing.assert_array_equal(got, philox.philox_words(n, key, offset))


RANDOM_SHAPES = [(), (0,), (1,), (2,), (3,), (31,), (32,), (33,), (1023,), (1024,), (3, 5, 7), (100_003,)]
KEYS = [(0, 0), (42, 1), (0xFEDCBA9876543210, (1 << 32) - 2), ((7 << 32) | 9, 12345)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["random_uniform", "random_normal"])
def test_random_matches_philox_py(dev, op, dtype):
    for shape in RANDOM_SHAPES:
        for key, offset in KEYS:
            got = dev.random(op, shape, dtype, key, offset)
            want = CPU.random(op, shape, dtype, key, offset)
            assert got.shape == want.shape and got.dtype == want.dtype
            if op == "random_uniform":  # exact: integer bits scaled by a power of two
                np.testing.assert_array_equal(got, want)
                assert got.size == 0 or (got.min() >= 0 and got.max() < 1)
            else:  # libm vs NumPy's log/cos: a few ulps
                eps = np.finfo(dtype).eps
                np.testing.assert_allclose(got, want, rtol=8 * eps, atol=32 * eps)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["random_uniform", "random_normal"])
def test_random_does_not_depend_on_the_launch_shape(op, dtype):
    key, offset, n = 0x5DEECE66D, 77, 4099
    launcher = FamilyLauncher(["random.cu"], poison=True)
    results = []
    for max_blocks in (1, 2, 3, 4, 7, 64):
        d = KernelDevice(launcher)
        d.max_blocks = max_blocks
        results.append(d.random(op, (n,), dtype, key, offset))
    # odd block sizes and explicit grids, straight through the launch layer
    d = KernelDevice(launcher)
    sfx = "f32" if dtype == np.float32 else "f64"
    per_block = 4 // philox.words_per_element(op, np.dtype(dtype))
    for block, blocks in [(32, 1), (96, 5), (1024, 2), (64, 1000)]:
        out = d.empty((n,), dtype)
        d.launch(f"{op}_{sfx}", -(-n // per_block),
                 (out, np.uint64(key), np.uint64(offset), np.int64(n)), block=block, blocks=blocks)
        results.append(out)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    # and a prefix of a longer draw is the shorter draw
    np.testing.assert_array_equal(d.random(op, (n + 5,), dtype, key, offset)[:n], results[0])


def test_random_rejects_integer_dtypes(dev):
    with pytest.raises(TypeError, match="float32 and float64"):
        dev.random("random_uniform", (3,), np.int32, 0, 0)
