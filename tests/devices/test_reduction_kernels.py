"""The reduction kernels (kernels/reduction.cu, gpuad/devices/launch/reduction.py) on the
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
from gpuad.devices.launch import KernelDevice, reduction  # noqa: E402
from gpuad.devices.emulated import HostLauncher  # noqa: E402

from .spy import Spy  # noqa: E402

OPS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_logsumexp")
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
    return FLOATS if op == "reduce_logsumexp" else FLOATS + INTS


def sample(rng, shape, dtype, op=None):
    dtype = np.dtype(dtype)
    if dtype.kind == "i":
        if op == "reduce_prod":  # wraps around for long rows: exercises modular arithmetic
            return np.asarray(rng.choice(np.array([-3, -1, 1, 2, 3, 7], dtype), size=shape), dtype)
        return np.asarray(rng.integers(-1000, 1000, size=shape), dtype)
    if op == "reduce_prod":  # magnitudes near 1 so long products stay finite
        return np.asarray(np.exp(rng.uniform(-0.05, 0.05, shape)) * rng.choice([-1.0, 1.0], shape), dtype)
    return np.asarray(rng.standard_normal(shape), dtype)


def check(op, x, axes, got, want):
    assert got.shape == want.shape, (op, axes, got.shape, want.shape)
    assert got.dtype == want.dtype, (op, axes, got.dtype, want.dtype)
    if x.dtype.kind == "i" or op in ("reduce_max", "reduce_min"):
        np.testing.assert_array_equal(got, want, err_msg=f"{op} over {axes}")
        return
    tight = 1e-12 if x.dtype == np.float64 else 1e-5
    if op == "reduce_sum":  # NumPy sums pairwise, the kernel in another order: scale by sum(|x|)
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
    assert emu.reduce("reduce_max", np.zeros((0,), np.int32), (0,), False) == np.iinfo(np.int32).min
    assert emu.reduce("reduce_min", np.zeros((0,), np.int64), (0,), False) == np.iinfo(np.int64).max
    assert emu.reduce("reduce_logsumexp", np.zeros((0,), np.float32), (0,), False) == -np.inf


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
        for op in ("reduce_sum", "reduce_prod"):
            for axes in ((0,), (1,), (0, 1)):
                np.testing.assert_array_equal(emu.reduce(op, x, axes, False), cpu.reduce(op, x, axes, False))


def test_logsumexp_is_stable(emu, cpu):
    for dtype in FLOATS:
        x = np.array([[1e4, 1e4 - 1, -1e4], [-1e4, -1e4 - 2, -1e4 - 4]], dtype)
        got = emu.reduce("reduce_logsumexp", x, (1,), False)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, cpu.reduce("reduce_logsumexp", x, (1,), False), rtol=1e-6)


def test_unsupported_dtypes_raise(emu):
    with pytest.raises(TypeError, match="reduce_logsumexp"):
        emu.reduce("reduce_logsumexp", np.zeros((3,), np.int32), (0,), False)
    with pytest.raises(TypeError):
        emu.reduce("reduce_sum", np.zeros((3,), np.bool_), (0,), False)


def test_result_is_a_fresh_contiguous_buffer(emu):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    for axes in ((), (0,), (1,)):
        out = emu.reduce("reduce_sum", x, axes, False)
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


# ----------------------------------------------------------------------------- fast paths
# _contig (the reduced elements are one axis of stride 1: 16-byte vector loads from the
# first 16-byte boundary, elements before and after one by one) and _strided (one axis of
# another stride: 64 bytes of unrolled loads per lane, then four at a time).
VECTOR = {np.dtype(np.float32): 4, np.dtype(np.int32): 4, np.dtype(np.float64): 2, np.dtype(np.int64): 2}
# around the vector width (4 or 2 elements), the 4 vectors a lane loads per step, the 16 or 8
# scalars of the strided path and its tail of 4; 0 and 1
FAST_LENGTHS = (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 129, 257, 1031)
FAST_PLANS = [(1, 1), (4, 1), (32, 1), (256, 1), (1, 3), (8, 5), (256, 2)]


@pytest.fixture(scope="module")
def spy():
    return Spy(HostLauncher(poison=True))


def rows(rng, n, dtype, op=None, off=1, nrows=5):
    """(nrows, n) whose rows start at every alignment: row stride n + 1 elements, and the
    whole view `off` elements into its buffer (off = 1: nothing 16-byte aligned at row 0)."""
    base = sample(rng, (nrows, n + 1 + off), dtype, op)
    return base.reshape(-1)[off:off + nrows * (n + 1)].reshape(nrows, n + 1)[:, :n]


def test_read_path_is_chosen_from_the_reduced_axes(spy):
    x = np.zeros((6, 40), np.float32)
    cases = [(x, (1,), "reduce_sum_f32_contig"), (x, (0, 1), "reduce_sum_f32_contig"),
             (x, (0,), "reduce_sum_f32_strided"), (x[:, ::2], (1,), "reduce_sum_f32_strided"),
             (x.reshape(6, 4, 10), (0, 2), "reduce_sum_f32"), (x[::-1], (1,), "reduce_sum_f32_contig")]
    for a, axes, want in cases:
        spy.launched.clear()
        spy.reduce("reduce_sum", a, axes, False)
        assert spy.launched[0] == want, (a.shape, a.strides, axes, spy.launched)
    spy.launched.clear()
    spy.arg_reduce("argmax", x, 1)
    spy.arg_reduce("argmax", x, 0)
    spy.arg_reduce("argmax", x[:, ::-1], 1)  # the index runs backwards in memory: strided
    assert spy.launched == ["arg_reduce_argmax_f32_contig", "arg_reduce_argmax_f32_strided",
                            "arg_reduce_argmax_f32_strided"]
    spy.launched.clear()
    spy.reduce("reduce_max", np.zeros((40000,), np.float64), (0,), False)  # a split row: _contig states
    assert spy.launched == ["reduce_max_f64_contig", "reduce_max_f64_combine"]


@pytest.mark.parametrize("op", OPS)
def test_contig_path_alignment_and_lengths(emu, cpu, op):
    rng = np.random.default_rng(10)
    for dtype in dtypes_of(op):
        for n in FAST_LENGTHS:
            for off in range(VECTOR[np.dtype(dtype)]):
                x = rows(rng, n, dtype, op, off)
                compare(emu, cpu, op, x, (1,))
                compare(emu, cpu, op, x[:1], (0, 1))
                if n > 1:
                    compare(emu, cpu, op, x[1, 1:], (0,))  # a lone row, 1-D, misaligned
        if op == "reduce_prod" and np.dtype(dtype) == np.float32:
            continue  # NumPy's float32 running product of 50000 terms is itself off by ~1e-5
        x = sample(rng, (50001,), dtype, op)[1:]                 # long, split over blocks
        compare(emu, cpu, op, x, (0,))


@pytest.mark.parametrize("group,split", FAST_PLANS)
def test_contig_path_every_plan(emu, cpu, force_plan, group, split):
    """Lanes per row 1..256 and rows split into chunks, which start anywhere in a vector."""
    force_plan(group, split)
    rng = np.random.default_rng(11)
    lengths = (0, 1, 3, 17, 66, 131) if group < 256 else (5, 66, 1031)
    for op in OPS:
        for dtype in dtypes_of(op):
            for n in lengths:
                x = rows(rng, n, dtype, op, off=1, nrows=5 if group < 256 else 2)
                compare(emu, cpu, op, x, (1,))
    for dtype in FLOATS + INTS:
        for n in (1, 9, 66):
            check_arg(emu, cpu, rows(rng, n, dtype, off=1, nrows=3), 1)
            check_arg(emu, cpu, np.asarray(rng.integers(0, 2, (3, n)), dtype), 1)  # ties


@pytest.mark.parametrize("op", OPS)
def test_strided_path_lengths(emu, cpu, op):
    """Columns (one thread per output) of every length around the unroll factors, with
    negative and zero strides along the reduced axis."""
    rng = np.random.default_rng(12)
    for dtype in dtypes_of(op):
        for n in FAST_LENGTHS[:-1]:
            x = sample(rng, (n, 37), dtype, op)
            compare(emu, cpu, op, x, (0,))
            compare(emu, cpu, op, x[::-1, 1:], (0,))
            compare(emu, cpu, op, x[:, ::3], (1,))                        # strided rows
            if n:
                compare(emu, cpu, op, np.broadcast_to(x[:1], (n, 37)), (0,))  # stride 0
        x = sample(rng, (3000, 40), dtype, op)                              # chunks of columns
        compare(emu, cpu, op, x, (0,))


@pytest.mark.parametrize("group,split", FAST_PLANS)
def test_strided_path_every_plan(emu, cpu, force_plan, group, split):
    force_plan(group, split)
    rng = np.random.default_rng(13)
    lengths = (0, 1, 5, 17, 70) if group < 256 else (5, 70)
    for op in OPS:
        for dtype in dtypes_of(op):
            for n in lengths:
                x = sample(rng, (n, 3), dtype, op)
                compare(emu, cpu, op, x, (0,))
                compare(emu, cpu, op, x[::-1], (0,), keepdims=True)
    for dtype in FLOATS + INTS:
        for n in (1, 9, 70):
            check_arg(emu, cpu, sample(rng, (n, 3), dtype), 0)
            check_arg(emu, cpu, np.asarray(rng.integers(0, 2, (n, 3)), dtype)[::-1], 0)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_fast_paths_arg_ties_first_occurrence(emu, cpu, dtype):
    """Equal extremes in several accumulators, vectors and lanes: the lowest index wins."""
    rng = np.random.default_rng(14)
    for n in (2, 5, 9, 16, 17, 33, 130, 1031):
        for off in range(VECTOR[np.dtype(dtype)]):
            x = rows(rng, n, dtype, off=off, nrows=4)
            x[...] = np.asarray(rng.integers(0, 3, x.shape), dtype)  # few values: many ties
            x[0, :] = 7                                               # all equal: index 0
            check_arg(emu, cpu, x, 1)
            check_arg(emu, cpu, x.T, 0)                               # the same as columns
            check_arg(emu, cpu, x[:, ::-1], 1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_fast_paths_nan_anywhere(emu, cpu, dtype):
    """A NaN before the first 16-byte boundary, in a vector, in the last partial vector,
    in the tail of the strided path, or several: max, min, logsumexp, sum give NaN,
    argmax/argmin the first NaN."""
    rng = np.random.default_rng(15)
    for n in (1, 3, 9, 17, 66, 131):
        positions = sorted({p for p in (0, 1, n // 2, n - 2, n - 1) if 0 <= p < n})
        for off in range(VECTOR[np.dtype(dtype)]):
            x = rows(rng, n, dtype, off=off, nrows=len(positions) + 2)
            for i, p in enumerate(positions):
                x[i, p] = np.nan
            x[-2, positions] = np.nan      # several NaNs: the first one is argmax's answer
            x[-1, -1] = np.inf             # no NaN in the last row, +inf at the end
            for op in OPS:
                compare(emu, cpu, op, x, (1,))
                compare(emu, cpu, op, x.T, (0,))
            check_arg(emu, cpu, x, 1)
            check_arg(emu, cpu, x.T, 0)
            check_arg(emu, cpu, x[:, ::-1], 1)


def test_fast_paths_integer_wraparound(emu, cpu):
    for dtype, big in ((np.int32, 2**31 - 5), (np.int64, 2**62 + 12345)):
        for n in (3, 17, 1031):
            base = np.full((4, n + 1), big, dtype)
            for x in (base[:, 1:], base[:, 1:].T):
                for op in ("reduce_sum", "reduce_prod"):
                    for axes in ((0,), (1,), (0, 1)):
                        np.testing.assert_array_equal(emu.reduce(op, x, axes, False), cpu.reduce(op, x, axes, False))
