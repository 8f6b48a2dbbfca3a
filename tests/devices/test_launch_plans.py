"""The launch plans cached by gpuad/devices/cuda/elementwise.py, nn.py and reduction.py: keyed by
dtypes, shapes and strides only, so a cached plan never serves operands it does not
fit; bounded; holding no buffer; never caching an error. On the emulated launcher,
against the cpu device."""
import gc
import os
import shutil
import weakref

import numpy as np
import pytest

from gpuad import devices
from gpuad.devices.cuda import elementwise as E
from gpuad.devices.cuda import nn as NN

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None,
    reason="the emulated device compiles the CUDA kernels with g++ (GPUAD_HOST_CXX), which is not installed")

CPU = devices.get("cpu")
F32 = np.dtype(np.float32)


@pytest.fixture(scope="module")
def dev():
    from gpuad.devices.cuda import KernelDevice
    from gpuad.devices.emulated import HostLauncher
    return KernelDevice(HostLauncher(poison=True))


def same(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)  # float32 sums


def test_same_shapes_other_strides_get_their_own_plan(dev):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 8)).astype(F32)
    other = rng.standard_normal((8, 8)).astype(F32)
    row = rng.standard_normal((8,)).astype(F32)
    # one (8, 8) shape, read contiguous, transposed, reversed, through a broadcast,
    # and contiguous again: each call must use the kernel that fits its strides
    views = [base, base.T, base[::-1], np.broadcast_to(row, (8, 8)), base[:, ::-1], base]
    for _ in range(2):  # the second round runs on cached plans
        for v in views:
            same(dev.binary("sub", v, other), CPU.binary("sub", v, other))
            same(dev.binary("sub", other, v), CPU.binary("sub", other, v))
            same(dev.unary("exp", v), CPU.unary("exp", v))
            same(dev.unary_grad("tanh", v, other), CPU.unary_grad("tanh", v, other))
            same(dev.where("where", v > 0, v, other), CPU.where("where", v > 0, v, other))
            same(dev.cast("cast", v, np.float64), CPU.cast("cast", v, np.float64))
            for axis in (0, 1, -1):
                same(dev.softmax("softmax", v, axis), CPU.softmax("softmax", v, axis))
                same(dev.softmax_xent("softmax_xent", v, other, axis),
                     CPU.softmax_xent("softmax_xent", v, other, axis))


def test_reductions_same_shape_other_strides_and_axes(dev):
    """reduce/arg_reduce plans are kept per device and keyed by dtype, shape, strides,
    axes and keepdims: each call below must reduce what it was given."""
    from gpuad.devices.cuda import reduction as R
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 40)).astype(F32)
    views = [base, base[::-1], base[:, ::2], base[:, ::-1], base]
    for _ in range(2):  # the second round runs on cached plans
        for v in views:
            for axes in [(0,), (1,), (-1,), (0, 1), ()]:
                for keepdims in (False, True):
                    same(dev.reduce("sum", v, axes, keepdims), CPU.reduce("sum", v, axes, keepdims))
            for axis in (0, 1):
                np.testing.assert_array_equal(dev.arg_reduce("argmax", v, axis), CPU.arg_reduce("argmax", v, axis))
    plans = dev._reduction_plans
    assert 0 < len(plans) <= R._PLAN_CAP
    assert all(not isinstance(part, np.ndarray) or part.ndim == 0  # layouts and scalars only
               for plan in plans.values() for launch in plan[3] for part in launch[4])
    with pytest.raises(ValueError, match="empty sequence"):  # errors are raised every time, never kept
        dev.arg_reduce("argmax", np.zeros((3, 0), F32), 1)
    with pytest.raises(ValueError, match="empty sequence"):
        dev.arg_reduce("argmax", np.zeros((3, 0), F32), 1)


def test_fill_values_are_told_apart(dev):
    for _ in range(2):
        assert not np.signbit(dev.fill("fill", (3,), 0.0, F32)).any()
        assert np.signbit(dev.fill("fill", (3,), -0.0, F32)).all()
        assert np.isnan(dev.fill("fill", (2,), float("nan"), F32)).all()
        assert dev.fill("fill", (2,), True, np.float64).tolist() == [1.0, 1.0]
        assert dev.fill("fill", (2,), 2.5, np.int32).tolist() == [2, 2]
        assert dev.fill("fill", [2, 1], 7, np.int64).tolist() == [[7], [7]]  # a list shape: no plan kept
        with pytest.raises(OverflowError):
            dev.fill("fill", (), 2 ** 40, np.int32)


def test_errors_are_never_cached(dev):
    a, b = np.ones((3,), F32), np.ones((4,), F32)
    for _ in range(2):
        with pytest.raises(ValueError):
            dev.binary("add", a, b)
        with pytest.raises(KeyError):
            dev.binary("nope", a, a)
        with pytest.raises(TypeError):
            dev.unary("exp", np.ones(3, np.int32))
        with pytest.raises(ValueError):
            dev.softmax("softmax", a, 2)
        with pytest.raises(TypeError):
            dev.softmax_xent("softmax_xent", a.astype(np.float64), a, 0)
    same(dev.binary("add", a, a), a + a)  # and the good key still works


def test_integer_checks_still_run_with_plans(dev):
    x = np.arange(1, 7, dtype=np.int64)
    for _ in range(2):
        same(dev.binary("floordiv", x, x), x // x)
        with pytest.raises(Exception, match="division by zero"):
            dev.binary("floordiv", x, x - 1)
        same(dev.binary("div", x, x), CPU.binary("div", x, x))


def test_plan_caches_are_bounded(dev, monkeypatch):
    monkeypatch.setattr(E, "_PLAN_CAP", 8)
    monkeypatch.setattr(NN, "_PLAN_CAP", 8)
    for name in ("_binary_plans", "_unary_plans", "_fill_plans", "_fill_values"):
        monkeypatch.setattr(E, name, {})  # (earlier tests may have filled them past 8)
    monkeypatch.setattr(NN, "_plans", {})
    for n in range(1, 30):
        x = np.ones((n, 2), F32)
        same(dev.binary("mul", x, x), x * x)
        same(dev.unary("neg", x), -x)
        dev.fill("fill", (n,), float(n), F32)
        dev.softmax("softmax", x, 1)
        assert len(E._binary_plans) <= 8 and len(E._unary_plans) <= 8
        assert len(E._fill_plans) <= 8 and len(E._fill_values) <= 8 and len(NN._plans) <= 8


def test_plans_hold_no_buffers(dev):
    x, y = np.ones((5, 3), F32), np.ones((3,), F32)
    refs = [weakref.ref(x), weakref.ref(y)]
    outs = [dev.binary("add", x, y), dev.unary("exp", x.T), dev.softmax("softmax", x, 0),
            dev.softmax_xent("softmax_xent", x, x, 1), dev.where("where", x > 0, x, y)]
    refs += [weakref.ref(o) for o in outs]
    del x, y, outs
    gc.collect()
    assert all(r() is None for r in refs)
