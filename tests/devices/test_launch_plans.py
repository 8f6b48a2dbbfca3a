"""The launch plans cached by gpuad/devices/launch/elementwise.py, nn.py, reduction.py and layout.py: keyed by
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
from gpuad.devices.launch import elementwise as E
from gpuad.devices.launch import nn as NN

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None,
    reason="the emulated device compiles the CUDA kernels with g++ (GPUAD_HOST_CXX), which is not installed")

CPU = devices.get("cpu")
F32 = np.dtype(np.float32)


@pytest.fixture(scope="module")
def dev():
    from gpuad.devices.launch import KernelDevice
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
            same(dev.binary("subtract", v, other), CPU.binary("subtract", v, other))
            same(dev.binary("subtract", other, v), CPU.binary("subtract", other, v))
            same(dev.unary("exp", v), CPU.unary("exp", v))
            same(dev.unary_grad("tanh_grad", v, other), CPU.unary_grad("tanh_grad", v, other))
            same(dev.where("where", v > 0, v, other), CPU.where("where", v > 0, v, other))
            same(dev.cast("cast", v, np.float64), CPU.cast("cast", v, np.float64))
            for axis in (0, 1, -1):
                same(dev.softmax("softmax", v, axis), CPU.softmax("softmax", v, axis))
                same(dev.softmax_xent("softmax_cross_entropy", v, other, axis),
                     CPU.softmax_xent("softmax_cross_entropy", v, other, axis))


def test_reductions_same_shape_other_strides_and_axes(dev):
    """reduce/arg_reduce plans are kept per device and keyed by dtype, shape, strides,
    axes and keepdims: each call below must reduce what it was given."""
    from gpuad.devices.launch import reduction as R
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 40)).astype(F32)
    views = [base, base[::-1], base[:, ::2], base[:, ::-1], base]
    for _ in range(2):  # the second round runs on cached plans
        for v in views:
            for axes in [(0,), (1,), (-1,), (0, 1), ()]:
                for keepdims in (False, True):
                    same(dev.reduce("reduce_sum", v, axes, keepdims), CPU.reduce("reduce_sum", v, axes, keepdims))
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
            dev.softmax_xent("softmax_cross_entropy", a.astype(np.float64), a, 0)
    same(dev.binary("add", a, a), a + a)  # and the good key still works


def test_integer_checks_still_run_with_plans(dev):
    x = np.arange(1, 7, dtype=np.int64)
    for _ in range(2):
        same(dev.binary("floordiv", x, x), x // x)
        with pytest.raises(Exception, match="division by zero"):
            dev.binary("floordiv", x, x - 1)
        same(dev.binary("divide", x, x), CPU.binary("divide", x, x))


def test_plan_caches_are_bounded(dev, monkeypatch):
    monkeypatch.setattr(E, "_PLAN_CAP", 8)
    monkeypatch.setattr(NN, "_PLAN_CAP", 8)
    for name in ("_binary_plans", "_unary_plans", "_fill_plans", "_fill_values"):
        monkeypatch.setattr(E, name, {})  # (earlier tests may have filled them past 8)
    monkeypatch.setattr(NN, "_plans", {})
    for n in range(1, 30):
        x = np.ones((n, 2), F32)
        same(dev.binary("multiply", x, x), x * x)
        same(dev.unary("negative", x), -x)
        dev.fill("fill", (n,), float(n), F32)
        dev.softmax("softmax", x, 1)
        assert len(E._binary_plans) <= 8 and len(E._unary_plans) <= 8
        assert len(E._fill_plans) <= 8 and len(E._fill_values) <= 8 and len(NN._plans) <= 8


def test_plans_hold_no_buffers(dev):
    x, y = np.ones((5, 3), F32), np.ones((3,), F32)
    refs = [weakref.ref(x), weakref.ref(y)]
    outs = [dev.binary("add", x, y), dev.unary("exp", x.T), dev.softmax("softmax", x, 0),
            dev.softmax_xent("softmax_cross_entropy", x, x, 1), dev.where("where", x > 0, x, y)]
    refs += [weakref.ref(o) for o in outs]
    del x, y, outs
    gc.collect()
    assert all(r() is None for r in refs)


# -- layout.py: layout, concat, gather / scatter_add, one_hot -------------------------------------
def _layout_calls(dev, v, other, idx):
    """(device result, cpu result) of every layout-family call on the (8, 6) view ``v``."""
    from gpuad.ops.array import canonical_key
    out = []

    def both(family, *args, **attrs):
        out.append((getattr(dev, family)(*args, **attrs), getattr(CPU, family)(*args, **attrs)))

    for perm in [(1, 0), (0, 1), (-1, 0), [1, 0]]:  # (a list perm is read as a tuple)
        both("layout", "transpose", v, perm=perm)
    both("layout", "reshape", v, shape=(6, 8))
    both("layout", "reshape", v, shape=(48,))
    both("layout", "broadcast_to", v, shape=(3, 8, 6))
    # one input shape and strides, several keys (some with results of one shape)
    for raw in [(slice(0, 4),), (slice(4, 8),), (slice(None, None, -2),), (slice(1, None, 2),),
                (slice(None), 2), (slice(None), 3), (None, 1), (..., slice(5, None, -1)), (0, 0)]:
        key = canonical_key(v.shape, raw)
        both("layout", "strided_slice", v, key=key)
        g = np.asarray(v[raw])
        both("layout", "strided_slice_grad", g, shape=v.shape, key=key)
        if g.ndim:
            both("layout", "strided_slice_grad", g[::-1], shape=v.shape, key=key)
    both("layout", "strided_slice", v, key=(slice(None, None, -1),))  # non-canonical: Python's rules
    for axis in (0, 1, -1):
        both("concat", "concat", v, other, axis=axis)
        both("concat", "concat", other, v, v, axis=axis)
    strided = (lambda j: (j, j[::-1], j[::2]))  # one shape for the first two, other strides
    for axis in (0, 1):
        for i in strided(idx % v.shape[axis]):
            both("gather", "gather", v, i, axis=axis)
    for i6, i8 in zip(strided(idx % 6), strided(idx % 8)):
        upd = v[:, :len(i6)]
        both("gather", "scatter_add", upd, i6, axis=1, shape=(8, 6))
        both("gather", "scatter_add", upd.T, i8, axis=0, shape=(8, 8))
    for i in strided(idx):
        both("one_hot", "one_hot", i, 6, 1.0, 0.0, np.float32)
        both("one_hot", "one_hot", i, 6, 2.5, -0.0, np.float32)  # values are not in the plan
        both("one_hot", "one_hot", i, 6, True, False, np.bool_)
        both("one_hot", "one_hot", i, 6, 7, -1, np.int64)
    return out


def test_layout_plans_same_shapes_other_strides_keys_perms(dev):
    """One (8, 6) shape read contiguous, reversed, transposed, through a broadcast and
    strided; several keys, perms, axes and index strides on each: every call must get
    the plan of what it was given, on the second (cached) round too."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((8, 6)).astype(F32)
    other = rng.standard_normal((8, 6)).astype(F32)
    idx = np.array([5, 0, 3, 3, 1, 7], np.int64)
    views = [base, base[::-1], np.asfortranarray(base), base[:, ::-1],
             np.broadcast_to(base[:1], (8, 6)), base[::-1, ::-1], base]
    for _ in range(2):  # the second round runs on cached plans
        for v in views:
            for got, want in _layout_calls(dev, v, other, idx):
                assert got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
                assert np.signbit(got).tolist() == np.signbit(want).tolist()  # (-0.0 off values)
    from gpuad.devices.launch import layout as LY
    assert LY._layout_plans and LY._concat_plans and LY._gather_plans and LY._one_hot_plans


def test_layout_errors_are_raised_every_time(dev):
    from gpuad.devices.launch import layout as LY
    a = np.ones((3, 4), F32)
    nine = np.ones((2,) * 9, F32)
    bad = [
        (ValueError, lambda: dev.layout("transpose", nine, perm=tuple(range(8, -1, -1)))),  # rank 9
        (ValueError, lambda: dev.layout("broadcast_to", a, shape=(4, 4))),
        (ValueError, lambda: dev.layout("broadcast_to", a[:1], shape=(-3, 4))),  # the allocation's
        (ValueError, lambda: dev.layout("strided_slice_grad", a, shape=(-3, 4), key=(slice(0, 3, 1),))),
        (KeyError, lambda: dev.layout("nope", a)),
        (TypeError, lambda: dev.layout("transpose", a, perm=1)),
        (TypeError, lambda: dev.layout("transpose", a.astype(np.float16), perm=(1, 0))),
        (TypeError, lambda: dev.concat("concat", a, a.astype(np.float64), axis=0)),
        (TypeError, lambda: dev.gather("gather", a, np.zeros(2, np.int16), axis=0)),
        (ZeroDivisionError, lambda: dev.gather("gather", np.float32(1).reshape(()), np.zeros(2, np.int64), axis=0)),
        (TypeError, lambda: dev.gather("scatter_add", a > 0, np.zeros(3, np.int64), axis=0, shape=(3, 4))),
        (KeyError, lambda: dev.gather("nope", a, np.zeros(2, np.int64), axis=0)),
        (TypeError, lambda: dev.one_hot("one_hot", np.zeros(2, np.int64), 3, 1, 0, np.float16)),
        (OverflowError, lambda: dev.one_hot("one_hot", np.zeros(2, np.int64), 3, 2 ** 40, 0, np.int32)),
    ]
    for _ in range(2):
        for error, call in bad:
            sizes = [len(d) for d in (LY._layout_plans, LY._concat_plans, LY._gather_plans, LY._one_hot_plans)]
            with pytest.raises(error):
                call()
            if error is not OverflowError:  # (one_hot's plan is good: its value is bad)
                assert sizes == [len(d) for d in (LY._layout_plans, LY._concat_plans, LY._gather_plans,
                                                  LY._one_hot_plans)], call
    for _ in range(2):  # a value that converts with a NumPy warning is not kept: it warns every time
        with pytest.warns(RuntimeWarning):
            dev.one_hot("one_hot", np.zeros(2, np.int64), 3, 1e300, 0, F32)  # (overflows to inf)
    same(dev.layout("transpose", a, perm=(1, 0)), a.T)  # and good keys still work
    same(dev.one_hot("one_hot", np.zeros(2, np.int64), 3, 1, 0, np.int32),
         CPU.one_hot("one_hot", np.zeros(2, np.int64), 3, 1, 0, np.int32))


def test_layout_plan_caches_are_bounded(dev, monkeypatch):
    from gpuad.devices.launch import layout as LY
    monkeypatch.setattr(LY, "_PLAN_CAP", 8)
    names = ("_layout_plans", "_concat_plans", "_gather_plans", "_one_hot_plans", "_one_hot_values")
    for name in names:
        monkeypatch.setattr(LY, name, {})
    for n in range(1, 30):
        x = np.arange(2 * n, dtype=F32).reshape(n, 2)
        idx = np.arange(n, dtype=np.int32)
        same(dev.layout("transpose", x, perm=(1, 0)), x.T)
        same(dev.layout("strided_slice", x, key=(slice(n - 1, None, -1), 1)), x[::-1, 1])
        same(dev.concat("concat", x, x, axis=1), np.concatenate([x, x], 1))
        same(dev.gather("gather", x, idx, axis=0), x)
        same(dev.one_hot("one_hot", idx, 3, float(n), 0.0, F32), CPU.one_hot("one_hot", idx, 3, float(n), 0.0, F32))
        assert all(len(getattr(LY, name)) <= 8 for name in names)


def test_layout_plans_hold_no_buffers(dev):
    from gpuad.devices.launch import layout as LY
    from gpuad.ops.array import canonical_key
    x, idx = np.ones((5, 3), F32), np.array([2, 0], np.int64)
    refs = [weakref.ref(x), weakref.ref(idx)]
    outs = [dev.layout("transpose", x, perm=(1, 0)), dev.layout("reshape", x.T, shape=(15,)),
            dev.layout("broadcast_to", x, shape=(2, 5, 3)),
            dev.layout("strided_slice", x, key=canonical_key(x.shape, (slice(None, None, -2),))),
            dev.layout("strided_slice_grad", x, shape=(10, 3), key=canonical_key((10, 3), (slice(None, None, 2),))),
            dev.concat("concat", x, x.T.T, axis=0), dev.gather("gather", x, idx, axis=0),
            dev.gather("scatter_add", x[:2], idx, axis=0, shape=(5, 3)),
            dev.one_hot("one_hot", idx, 4, 1.0, 0.0, F32)]
    refs += [weakref.ref(o) for o in outs]
    del x, idx, outs
    gc.collect()
    assert all(r() is None for r in refs)

    def parts(obj):  # everything a plan holds, nested tuples flattened
        if isinstance(obj, tuple):
            for o in obj:
                yield from parts(o)
        else:
            yield obj
    plans = [LY._layout_plans, LY._concat_plans, LY._gather_plans, LY._one_hot_plans]
    assert all(not isinstance(p, np.ndarray) or p.ndim == 0  # layouts and scalars only
               for d in plans for plan in d.values() for p in parts(plan))
