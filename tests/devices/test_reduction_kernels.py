"""The reduction kernels (kernels/reduction.cu, gpuad/devices/cuda/reduction.py) on the
emulated launcher against the cpu device: reduce (sum max min prod logsumexp) over every
axis subset, keepdims, every dtype, strided/negative-stride/broadcast views, edge values,
sizes around warp and block multiples; arg_reduce (argmax argmin) with ties and NaN; and
every launch strategy (thread/warp/block per row, rows split over blocks) forced in turn.
"""
import itertools
import os
import shutil

import numpy as np
import pytest

if not shutil.which(os.environ.get("CXX", "g++")):
    pytest.skip("the emulated device compiles kernels/*.cu with a host C++ compiler (g++), "
                "which is not installed", allow_module_level=True)

import gpuad.devices as devices  # noqa: E402
from gpuad.devices.cuda import KernelDevice, reduction  # noqa: E402
from gpuad.devices.emulated import HostLauncher  # noqa: E402

OPS = ("sum", "max", "min", "prod", "logsumexp")
FLOATS = (np.float32, np.float64)
INTS = (np.int32, np.int64)
SIZES = (0, 1, 31, 32, 33, 1023, 1024, 1025)
# (group, split) forced on every launch: thread, warp fractions, warp, block; split rows
PLANS = [(1, 1), (2, 1), (8, 1), (32, 1), (256, 1), (1, 3), (32, 2), (256, 4)]


@pytest.fixture(scope="module")
def emu():
    return KernelDevice(HostLauncher(poison=True))


@pytest.fixture(scope="module")
def cpu():
    return devices.get("cpu")


@pytest.fixture
def force_plan(monkeypatch):
    def force(group, split):
        monkeypatch.setattr(reduction, "_override", lambda n_out, n_red, p: reduction.Plan(group, split))
    return force


def dtypes_of(op):
    return FLOATS if op == "logsumexp" else FLOATS + INTS


def sample(rng, shape, dtype, op=None):
    dtype = np.dtype(dtype)
    if dtype.kind == "i":
        if op == "prod":  # wraps around for long rows: exercises modular arithmetic
            return np.asarray(rng.choice(np.array([-3, -1, 1, 2, 3, 7], dtype), size=shape), dtype)
        return np.asarray(rng.integers(-1000, 1000, size=shape), dtype)
    if op == "prod":  # magnitudes near 1 so long products stay finite
        return np.asarray(np.exp(rng.uniform(-0.05, 0.05, shape)) * rng.choice([-1.0, 1.0], shape), dtype)
    return np.asarray(rng.standard_normal(shape), dtype)


def check(op, x, axes, got, want):
    assert got.shape == want.shape, (op, axes, got.shape, want.shape)
    assert got.dtype == want.dtype, (op, axes, got.dtype, want.dtype)
    if x.dtype.kind == "i" or op in ("max", "min"):
        np.testing.assert_array_equal(got, want, err_msg=f"{op} over {axes}")
        return
    tight = 1e-12 if x.dtype == np.float64 else 1e-5
    if op == "sum":  # NumPy sums pairwise, the kernel in another order: scale by sum(|x|)
        scale = np.sum(np.abs(x.astype(np.float64)), axis=axes, keepdims=True).reshape(want.shape)
        with np.errstate(invalid="ignore"):  # inf - inf where both sums are inf: equal below
            ok = np.abs(got.astype(np.float64) - want) <= tight * scale + 1e-300
        ok |= (got == want) | (np.isnan(got) & np.isnan(want))
        assert ok.all(), f"{op} over {axes}: {got[~ok][:5]} != {want[~ok][:5]}"
        return
    np.testing.assert_allclose(got, want, rtol=tight, atol=tight, equal_nan=True,
                               err_msg=f"{op} over {axes}")


def compare(emu, cpu, op, x, axes, keepdims=False):
    check(op, x, axes, emu.reduce(op, x, axes, keepdims), cpu.reduce(op, x, axes, keepdims))


def subsets(ndim):
    return [c for k in range(ndim + 1) for c in itertools.combinations(range(ndim), k)]


# ----------------------------------------------------------------------------- reduce
@pytest.mark.parametrize("op", OPS)
def test_every_axis_subset(emu, cpu, op):
    rng = np.random.default_rng(0)
    for dtype in dtypes_of(op):
        x = sample(rng, (3, 1, 4, 5), dtype, op)
        for axes in subsets(4):
            for keepdims in (False, True):
                compare(emu, cpu, op, x, axes, keepdims)


@pytest.mark.parametrize("op", OPS)
def test_strided_views(emu, cpu, op):
    rng = np.random.default_rng(1)
    for dtype in dtypes_of(op):
        base = sample(rng, (6, 5, 8, 7), dtype, op)
        views = {
            "reversed": base[::-1, :, ::-1],
            "stepped": base[::2, 1:, ::3, ::-2],
            "transposed": base.transpose(2, 0, 3, 1),
            "reversed transposed": base[:, ::-1].transpose(3, 1, 2, 0)[::-1],
            "broadcast": np.broadcast_to(base[:1, :, :1], (4, 5, 3, 7)),
            "2-d": base[1, ::-1, 2, :].T,
        }
        for name, x in views.items():
            for axes in subsets(x.ndim):
                compare(emu, cpu, op, x, axes, keepdims=bool(len(axes) % 2))


@pytest.mark.parametrize("op", OPS)
def test_sizes_along_the_reduced_axes(emu, cpu, op):
    rng = np.random.default_rng(2)
    for dtype in dtypes_of(op):
        for n in SIZES:
            x = sample(rng, (3, n), dtype, op)
            for axes in ((1,), (0,), (0, 1), ()):
                compare(emu, cpu, op, x, axes)
            compare(emu, cpu, op, x[::-1, ::-1].T, (0,), keepdims=True)  # reduced axis reversed
        # an odd large row: split over several blocks by the default plan
        x = sample(rng, (40009,), dtype, op)
        compare(emu, cpu, op, x, (0,))
        compare(emu, cpu, op, x.reshape(1, 40009)[:, ::-1], (1,), keepdims=True)
        # columns (one thread per output), their rows split into chunks by the default plan
        x = sample(rng, (301, 67), dtype, op)
        compare(emu, cpu, op, x, (0,))
        compare(emu, cpu, op, x[::-1], (0,), keepdims=True)


@pytest.mark.parametrize("op", OPS)
def test_ranks_0_to_8(emu, cpu, op):
    rng = np.random.default_rng(3)
    for dtype in dtypes_of(op):
        for ndim in range(9):
            shape = (3, 1, 2, 4, 1, 2, 3, 2)[:ndim]
            x = sample(rng, shape, dtype, op)
            for axes in ([(), tuple(range(ndim))] + [tuple(rng.choice(ndim, size=k, replace=False))
                                                        for k in range(1, ndim) for _ in range(2)]):
                compare(emu, cpu, op, x, tuple(sorted(int(a) for a in axes)), keepdims=ndim % 2 == 1)


@pytest.mark.parametrize("group,split", PLANS)
def test_every_launch_plan(emu, cpu, force_plan, group, split):
    force_plan(group, split)
    many = group <= 32  # a block per output is slow to emulate: keep the outputs few there
    rng = np.random.default_rng(4)
    for op in OPS:
        for dtype in dtypes_of(op):
            x = sample(rng, (5, 0, 3), dtype, op)
            compare(emu, cpu, op, x, (1,))          # empty rows: the identity
            compare(emu, cpu, op, x, (0, 2))        # no output elements at all
            x = sample(rng, (2, 37, 3), dtype, op)
            for axes in ((1,), (0, 2), (0, 1, 2)) + (((2,), ()) if many else ()):
                compare(emu, cpu, op, x, axes)
            compare(emu, cpu, op, x[::-1, ::2].transpose(2, 1, 0), (1, 2) if many else (0, 1), keepdims=True)
            x = sample(rng, (2, 1025), dtype, op)
            compare(emu, cpu, op, x, (1,))
            if many:
                compare(emu, cpu, op, x, (0,))
        for dtype in (np.float32, np.int64):
            x = sample(rng, (3, 1030), dtype)
            check_arg(emu, cpu, x, 1)
            check_arg(emu, cpu, x[::-1, ::-1], 1)
            check_arg(emu, cpu, x[:, :37].T, 1 if many else 0)


def test_empty_rows_give_the_identity(emu, cpu):
    for dtype in FLOATS + INTS:
        x = np.zeros((4, 0, 2), dtype)
        for op in OPS:
            if np.dtype(dtype) in map(np.dtype, dtypes_of(op)):
                got = emu.reduce(op, x, (1,), False)
                np.testing.assert_array_equal(got, cpu.reduce(op, x, (1,), False))
    assert emu.reduce("max", np.zeros((0,), np.int32), (0,), False) == np.iinfo(np.int32).min
    assert emu.reduce("min", np.zeros((0,), np.int64), (0,), False) == np.iinfo(np.int64).max
    assert emu.reduce("logsumexp", np.zeros((0,), np.float32), (0,), False) == -np.inf


@pytest.mark.parametrize("group,split", [(None, None), (1, 1), (32, 1), (256, 3)])
def test_edge_values(emu, cpu, force_plan, group, split):
    if group is not None:
        force_plan(group, split)
    inf, nan = np.inf, np.nan
    rows = [[1.0, 2.0, 3.0, -1.0], [nan, 1.0, 2.0, 3.0], [1.0, inf, 2.0, 3.0], [-inf, -inf, -inf, -inf],
            [-inf, 1.0, -inf, 2.0], [inf, -inf, 0.0, 1.0], [1.0, 2.0, inf, nan], [inf, inf, 1.0, 2.0],
            [-inf, nan, -inf, -inf], [1000.0, 1000.0, -1000.0, 999.0], [-1e30, -1e30, -1e30, -1e30],
            [0.0, -0.0, 0.0, -0.0]]
    for dtype in FLOATS:
        x = np.array(rows, dtype)
        x = np.concatenate([x, np.tile(x, (1, 40))[:, :157]], axis=1)  # longer rows as well
        for op in OPS:
            compare(emu, cpu, op, x, (1,))
            compare(emu, cpu, op, x[:, :4], (1,))
            compare(emu, cpu, op, x.T, (0,), keepdims=True)
        for op in ("argmax", "argmin"):
            np.testing.assert_array_equal(emu.arg_reduce(op, x, 1), cpu.arg_reduce(op, x, 1))


def test_integer_wraparound(emu, cpu):
    big32 = np.full((3, 1025), 2**31 - 5, np.int32)
    big64 = np.full((3, 1025), 2**62 + 12345, np.int64)
    for x in (big32, big64, big32[:, ::-3], big64.T):
        for op in ("sum", "prod"):
            for axes in ((0,), (1,), (0, 1)):
                np.testing.assert_array_equal(emu.reduce(op, x, axes, False), cpu.reduce(op, x, axes, False))


def test_logsumexp_is_stable(emu, cpu):
    for dtype in FLOATS:
        x = np.array([[1e4, 1e4 - 1, -1e4], [-1e4, -1e4 - 2, -1e4 - 4]], dtype)
        got = emu.reduce("logsumexp", x, (1,), False)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, cpu.reduce("logsumexp", x, (1,), False), rtol=1e-6)


def test_unsupported_dtypes_raise(emu):
    with pytest.raises(TypeError, match="logsumexp"):
        emu.reduce("logsumexp", np.zeros((3,), np.int32), (0,), False)
    with pytest.raises(TypeError):
        emu.reduce("sum", np.zeros((3,), np.bool_), (0,), False)


def test_result_is_a_fresh_contiguous_buffer(emu):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    for axes in ((), (0,), (1,)):
        out = emu.reduce("sum", x, axes, False)
        assert out.flags.c_contiguous and not np.shares_memory(out, x)


# ----------------------------------------------------------------------------- arg_reduce
def check_arg(emu, cpu, x, axis):
    for op in ("argmax", "argmin"):
        got, want = emu.arg_reduce(op, x, axis), cpu.arg_reduce(op, x, axis)
        assert got.dtype == np.int64 and got.shape == want.shape, (op, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=f"{op} over axis {axis} of {x.shape}")


def test_arg_reduce_every_axis_and_dtype(emu, cpu):
    rng = np.random.default_rng(5)
    for dtype in FLOATS + INTS:
        x = sample(rng, (3, 1, 4, 5), dtype)
        ties = rng.integers(0, 3, size=(3, 2, 4, 5)).astype(dtype)  # many ties: first one wins
        for axis in range(4):
            check_arg(emu, cpu, x, axis)
            check_arg(emu, cpu, ties, axis)
            check_arg(emu, cpu, ties[::-1, :, ::-1], axis)          # ties under negative strides
            check_arg(emu, cpu, ties.transpose(3, 1, 0, 2), axis)
            check_arg(emu, cpu, np.broadcast_to(ties[:, :1], (3, 3, 4, 5)), axis)
        y = rng.integers(0, 3, size=(300, 41)).astype(dtype)  # columns, rows split in chunks
        check_arg(emu, cpu, y, 0)
        check_arg(emu, cpu, y[::-1], 0)
        for n in SIZES[1:] + (40009,):
            y = rng.integers(0, 5, size=(2, n)).astype(dtype)
            check_arg(emu, cpu, y, 1)
            check_arg(emu, cpu, y[:, ::-1], 1)
            check_arg(emu, cpu, y, 0)
        check_arg(emu, cpu, np.array([4, 2, 9], dtype), 0)          # rank 1 -> rank 0 result


def test_arg_reduce_nan_first_occurrence(emu, cpu):
    for dtype in FLOATS:
        x = np.ones((5, 1025), dtype)
        x[0, [7, 3, 900]] = np.nan
        x[1, 1024] = np.nan
        x[2, :] = np.nan
        x[3, [10, 500]] = 5.0
        x[3, 600] = -5.0
        x[4, 1000] = -np.inf
        x[4, 2] = np.inf
        check_arg(emu, cpu, x, 1)
        check_arg(emu, cpu, x[:, ::-1], 1)
        check_arg(emu, cpu, x.T.copy(), 0)


def test_arg_reduce_empty(emu, cpu):
    x = np.zeros((0, 3), np.float32)
    assert emu.arg_reduce("argmax", x, 1).shape == (0,)
    for shape in ((3, 0), (0, 0)):
        with pytest.raises(ValueError):
            emu.arg_reduce("argmax", np.zeros(shape, np.float32), 1)
        with pytest.raises(ValueError):
            cpu.arg_reduce("argmax", np.zeros(shape, np.float32), 1)
