"""The element-wise kernels (kernels/{unary,binary,cast}.cu, gpuad/devices/launch/elementwise.py)
against the cpu device, method by method: unary, binary, unary_grad, where, cast, fill.

They run on the emulated launcher (g++-compiled kernels, NumPy buffers) with
poisoned outputs, so an element a kernel forgets to write shows up as NaN or a
sentinel. Inputs cover every op and dtype, the contiguous / scalar / strided kernel
variants, NumPy broadcasting, transposed, negative- and zero-stride views, ranks 0
to 8, misaligned (vector-less) pointers and sizes around block and vector edges.
"""
import os
import platform
import shutil

import numpy as np
import pytest

from gpuad import devices
from gpuad.errors import InvalidArgumentError

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None,
    reason="the emulated device compiles the CUDA kernels with g++ (GPUAD_HOST_CXX), which is not installed")

CPU = devices.get("cpu")
F32, F64, I32, I64, B8 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))
FLOATS = (F32, F64)
NUMERIC = (F32, F64, I32, I64)
ALL = NUMERIC + (B8,)
SIZES = (0, 1, 31, 32, 33, 1023, 1024, 1025, 100_003)
# Float -> int casts of NaN, inf and out-of-range values give the integer minimum on
# the kernel devices, which is what NumPy (the cpu device) gives on x86; elsewhere
# NumPy saturates, so those values are left out of the comparison there.
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

UNARY_EXACT = {"negative", "abs", "sign", "square", "sqrt", "rsqrt", "reciprocal", "relu", "floor", "round",
               "logical_not"}
UNARY_NUMERIC = ("negative", "abs", "sign", "square", "relu")
UNARY_FLOAT = ("sqrt", "rsqrt", "reciprocal", "exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh",
               "sigmoid", "softplus", "erf", "floor", "round")
BINARY_NUMERIC = ("add", "subtract", "multiply", "floordiv", "floormod", "pow", "maximum", "minimum")
BINARY_ALL = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or")


@pytest.fixture(scope="module")
def dev():
    from gpuad.devices.launch import KernelDevice
    from gpuad.devices.emulated import HostLauncher
    return KernelDevice(HostLauncher(poison=True))


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def same(got, want, rtol=None):
    """got (kernel device) equals want (cpu): shape, dtype, values (NaN == NaN);
    within rtol for transcendental results."""
    assert isinstance(got, np.ndarray) and got.flags.c_contiguous
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    if rtol is None or want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
    else:
        tiny = np.finfo(want.dtype).tiny * 1e3
        np.testing.assert_allclose(got, want, rtol=rtol, atol=tiny, equal_nan=True)


def compare(dev, method, *args, rtol=None):
    want = getattr(CPU, method)(*args)
    got = getattr(dev, method)(*args)
    same(got, want, rtol)
    return got


def rtol_for(dt):
    return 4e-6 if dt == F32 else 1e-14


def values(rng, shape, dt, special=True):
    """Random values of dtype dt, with the edge values of that dtype mixed in."""
    n = int(np.prod(shape))
    if dt.kind == "f":
        v = rng.standard_normal(n) * 3
        edges = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30,
                 88.0, -88.0, 1e4, -1e4, 3.0, 7.0]
    elif dt.kind == "i":
        v = rng.integers(-20, 21, n)
        info = np.iinfo(dt)
        edges = [0, 1, -1, 2, -2, 7, -7, info.max, info.min, info.min + 1]
    else:
        v = rng.integers(0, 2, n)
        edges = [0, 1]
    if special and n >= len(edges):
        v[rng.choice(n, len(edges), replace=False)] = edges
    with np.errstate(all="ignore"):
        return v.astype(dt).reshape(shape)


def views(a):
    """a, and non-contiguous views holding the same elements."""
    yield a
    yield a[::-1] if a.ndim else a
    if a.ndim >= 2:
        yield a.T
        yield np.swapaxes(a, 0, 1)[::-1, ::2] if a.shape[1] > 1 else a.T[::-1]


# -- unary --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_unary_every_op_and_dtype(dev, rng, dt):
    ops = list(UNARY_NUMERIC) if dt in NUMERIC else []
    ops += list(UNARY_FLOAT) if dt in FLOATS else []
    ops += ["logical_not"]
    x = values(rng, (37, 29), dt)
    for op in ops:
        rtol = None if op in UNARY_EXACT else rtol_for(dt)
        for v in views(x):
            compare(dev, "unary", op, v, rtol=rtol)


def test_unary_edges(dev):
    x = np.array([-0.0, 0.0, np.nan, -np.inf, np.inf, -3.0, 2.5, -2.5, 0.5, 1.5], np.float32)
    s = dev.unary("sign", x)
    assert not np.signbit(s[0]) and np.isnan(s[2])
    same(s, CPU.unary("sign", x))
    same(dev.unary("round", x), np.array([-0.0, 0, np.nan, -np.inf, np.inf, -3, 2, -2, 0, 2], np.float32))
    same(dev.unary("relu", x), CPU.unary("relu", x))
    assert np.isnan(dev.unary("relu", x)[2]) and np.isnan(dev.unary("softplus", x)[2])
    big = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], np.float64)
    same(dev.unary("sigmoid", big), CPU.unary("sigmoid", big))
    same(dev.unary("softplus", big), CPU.unary("softplus", big))
    same(dev.unary("rsqrt", np.array([0.0, -0.0, 4.0], np.float32)), np.array([np.inf, -np.inf, 0.5], np.float32))
    for dt in ALL:  # 0-d operands
        x0 = np.array(1.5).astype(dt)
        compare(dev, "unary", "logical_not", x0)
        compare(dev, "cast", "cast", x0, F64)
        compare(dev, "where", "where", np.array(False), x0, x0)
    compare(dev, "unary", "exp", np.array(1.5, np.float32), rtol=rtol_for(F32))
    ints = np.array([np.iinfo(np.int32).min, -5, 0, 5], np.int32)
    for op in UNARY_NUMERIC:
        compare(dev, "unary", op, ints)


@pytest.mark.parametrize("n", SIZES)
def test_unary_sizes_and_alignment(dev, rng, n):
    x = values(rng, (n + 1,), F32)
    compare(dev, "unary", "negative", x[:n])          # aligned: vector path and tail
    compare(dev, "unary", "negative", x[1:])          # misaligned by 4 bytes: scalar path
    compare(dev, "unary", "logical_not", x[1:])  # float in, bool out
    compare(dev, "unary", "exp", x[:n][::-1], rtol=rtol_for(F32))


def test_unary_rejects_unsupported_dtypes(dev):
    with pytest.raises(TypeError, match="unary sqrt"):
        dev.unary("sqrt", np.arange(3))
    with pytest.raises(TypeError, match="unary neg"):
        dev.unary("negative", np.array([True]))


# -- binary -------------------------------------------------------------------------

def _binary_operands(rng, op, dt, shape_x, shape_y):
    x, y = values(rng, shape_x, dt), values(rng, shape_y, dt)
    if dt.kind == "i" and op in ("floordiv", "floormod"):
        y = np.where(y == 0, 3, y).astype(dt)
    if dt.kind == "i" and op == "pow":
        y = np.abs(y) % 9
    return x, y


@pytest.mark.parametrize("dt", ALL, ids=str)
def test_binary_every_op_and_dtype(dev, rng, dt):
    ops = (list(BINARY_NUMERIC) + (["divide"] if dt.kind != "b" else [])) if dt in NUMERIC else []
    ops += list(BINARY_ALL)
    for op in ops:
        rtol = rtol_for(dt) if op in ("pow", "divide") and dt.kind == "f" else None
        if op == "divide" and dt.kind == "i":
            rtol = rtol_for(F64)
        # same shape (contig), scalar x / y, broadcast (strided), non-contiguous views
        x, y = _binary_operands(rng, op, dt, (33, 65), (33, 65))
        compare(dev, "binary", op, x, y, rtol=rtol)
        compare(dev, "binary", op, x[:, 1:], y[:, :-1], rtol=rtol)  # row-strided
        compare(dev, "binary", op, x.T, y[::-1].T, rtol=rtol)
        compare(dev, "binary", op, x[3:4, 5:6].reshape(()), y, rtol=rtol)  # _sx
        compare(dev, "binary", op, x, y[0, 2:3], rtol=rtol)  # _sy (shape (1,))
        a, b = _binary_operands(rng, op, dt, (5, 1, 7), (3, 1))
        compare(dev, "binary", op, a, b, rtol=rtol)
        c, d = _binary_operands(rng, op, dt, (3, 1), (5, 1, 7))
        compare(dev, "binary", op, c, d[::-1], rtol=rtol)
        compare(dev, "binary", op, np.broadcast_to(a, (2, 5, 3, 7)), b[::-1], rtol=rtol)


def test_binary_ranks_0_to_8(dev, rng):
    for rank in range(9):
        shape = tuple(rng.integers(1, 4, rank))
        x = values(rng, shape, F32, special=False)
        yshape = tuple(1 if rng.random() < 0.4 else d for d in shape[rng.integers(0, rank + 1):])
        y = values(rng, yshape, F32, special=False)
        compare(dev, "binary", "subtract", x, y)
        compare(dev, "binary", "subtract", y, x)
        if rank >= 2:
            compare(dev, "binary", "multiply", np.swapaxes(x, 0, -1)[::-1], np.swapaxes(x, 0, -1))
    # rank 8 with every axis strided differently, and one broadcast operand
    x = values(rng, (2, 3, 2, 3, 2, 1, 2, 3), F64)
    y = values(rng, (3, 1, 3, 2, 5, 1, 3), F64)
    compare(dev, "binary", "maximum", x, y)
    compare(dev, "binary", "less", np.transpose(x, (7, 6, 5, 4, 3, 2, 1, 0))[::-1, :, :, ::-1],
            values(rng, (3, 1, 1, 2), F64))


@pytest.mark.parametrize("n", SIZES)
def test_binary_sizes_and_variants(dev, rng, n):
    x = values(rng, (n + 2,), F32)
    y = values(rng, (n + 2,), F32)
    s = values(rng, (), F32, special=False)
    for a, b in ((x[:n], y[:n]), (x[1:n + 1], y[:n]), (x[1:n + 1], y[2:]), (x[:n][::-1], y[:n]),
                 (s, y[:n]), (x[:n], s), (x[1:n + 1], s), (np.broadcast_to(s, (n,)), y[:n])):
        compare(dev, "binary", "add", a, b)
        compare(dev, "binary", "greater_equal", a, b)
    xi, yi = values(rng, (n,), I64), values(rng, (n,), I64)
    compare(dev, "binary", "multiply", xi, yi)
    compare(dev, "binary", "logical_or", xi.astype(bool), yi[::-1].astype(bool))


def test_binary_integer_edges(dev):
    info = np.iinfo(np.int32)
    a = np.array([7, -7, 7, -7, 0, info.min, info.min, info.max, 6, -6, 5], np.int32)
    b = np.array([2, 2, -2, -2, 5, -1, 1, -1, 3, 3, -1], np.int32)
    for op in ("floordiv", "floormod", "add", "subtract", "multiply", "maximum", "minimum"):
        compare(dev, "binary", op, a, b)
        compare(dev, "binary", op, a.astype(np.int64), b.astype(np.int64))
    base = np.array([2, -2, 3, 0, 1, -1, 7, 2, -3], np.int64)
    exp = np.array([10, 3, 0, 0, 99, 5, 40, 63, 31], np.int64)  # 7**40, 2**63 and (-3)**31 wrap
    compare(dev, "binary", "pow", base, exp)
    compare(dev, "binary", "pow", base.astype(np.int32), exp.astype(np.int32))


def test_binary_float_edges(dev):
    vals = np.array([5.0, -5.0, 0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, 3.5, -3.5, 1e-300, 7.0], np.float64)
    x, y = np.meshgrid(vals, vals)
    for dt in FLOATS:
        with np.errstate(all="ignore"):
            a, b = x.astype(dt), y.astype(dt)
        for op in ("floordiv", "floormod", "divide", "maximum", "minimum", "add", "subtract", "multiply",
                   "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or"):
            got = compare(dev, "binary", op, a, b)
            if op in ("floordiv", "floormod"):  # signs of zero results, as NumPy
                np.testing.assert_array_equal(np.signbit(got), np.signbit(CPU.binary(op, a, b)))
        compare(dev, "binary", "pow", a, b, rtol=rtol_for(dt))


def test_binary_integer_errors(dev):
    x = np.arange(-5, 6, dtype=np.int32)
    with pytest.raises(InvalidArgumentError, match="negative integer powers"):
        dev.binary("pow", x, x)
    for op in ("floordiv", "floormod"):
        with pytest.raises(InvalidArgumentError, match="division by zero"):
            dev.binary(op, x.astype(np.int64), x[::-1].astype(np.int64))
    # no output elements, but y is still checked (as on the cpu)
    empty = np.zeros((0, 3), np.int32)
    with pytest.raises(InvalidArgumentError):
        CPU.binary("floordiv", empty, np.array([1, 0, 2], np.int32))
    with pytest.raises(InvalidArgumentError):
        dev.binary("floordiv", empty, np.array([1, 0, 2], np.int32))
    same(dev.binary("floordiv", empty, np.array([1, 4, 2], np.int32)), np.zeros((0, 3), np.int32))
    # floats are never errors
    compare(dev, "binary", "floordiv", x.astype(np.float32), np.zeros(1, np.float32))
    compare(dev, "binary", "pow", x.astype(np.float64), np.float64(-2) * np.ones(11))


@pytest.mark.parametrize("op", ("floordiv", "floormod", "pow"))
@pytest.mark.parametrize("dt", (I32, I64), ids=str)
def test_binary_integer_checks_with_no_output(dev, op, dt):
    # x has no elements, so only the check kernel looks at y (a strided view here)
    empty = np.zeros((0, 1, 4), dt)
    good = np.array([[3, 1], [2, 5], [4, 1], [2, 2]], dt).T[::-1]
    bad = good.copy()
    bad[1, 2] = 0 if op != "pow" else -2
    same(dev.binary(op, empty, good), CPU.binary(op, empty, good))
    with pytest.raises(InvalidArgumentError):
        CPU.binary(op, empty, bad)
    with pytest.raises(InvalidArgumentError):
        dev.binary(op, empty, bad)


def test_binary_integer_checks_transfers(dev):
    x = np.arange(-5, 6, dtype=np.int64)
    # an array divisor: checked on the device, one 4-byte flag read back
    before = dev.transfers
    compare(dev, "binary", "floordiv", x, np.full(11, 3, np.int64))
    assert dev.transfers == before + 1
    # a scalar made by fill (every Python constant): known on the host, no transfer
    three = dev.fill("fill", (), 3, I64)
    before = dev.transfers
    same(dev.binary("floordiv", x, three), x // 3)
    same(dev.binary("pow", x, three), x ** 3)
    assert dev.transfers == before
    zero = dev.fill("fill", (), 0, I64)
    with pytest.raises(InvalidArgumentError):
        dev.binary("floormod", x, zero)
    with pytest.raises(InvalidArgumentError):
        dev.binary("pow", x, dev.fill("fill", (), -1, I64))
    assert dev.transfers == before
    # floats need no check at all
    before = dev.transfers
    dev.binary("floordiv", x.astype(np.float64), x.astype(np.float64))
    assert dev.transfers == before


def test_binary_dtype_rules(dev):
    compare(dev, "binary", "divide", np.arange(6, dtype=np.int32), np.arange(1, 7, dtype=np.int32),
            rtol=rtol_for(F64))
    with pytest.raises(TypeError):
        dev.binary("add", np.ones(3, np.float32), np.ones(3, np.float64))
    with pytest.raises(TypeError):
        dev.binary("subtract", np.ones(3, bool), np.ones(3, bool))
    with pytest.raises(ValueError):
        dev.binary("add", np.ones(3, np.float32), np.ones(4, np.float32))


# -- unary_grad ---------------------------------------------------------------------

@pytest.mark.parametrize("dt", NUMERIC, ids=str)
def test_unary_grad_every_op(dev, rng, dt):
    ops = (("relu_grad", "sigmoid_grad", "tanh_grad", "sin_grad", "cos_grad", "square_grad",
            "sqrt_grad", "rsqrt_grad", "reciprocal_grad")
           if dt.kind == "f" else ("relu_grad",))
    a = values(rng, (41, 27), dt)
    dy = values(rng, (41, 27), dt)
    if dt.kind == "f":
        a.flat[:6] = [0.0, 0.0, -0.0, np.inf, 0.0, np.nan]  # infinite local derivatives...
        dy.flat[:6] = [0.0, -0.0, 0.0, 0.0, 1.0, 0.0]       # ...times a zero upstream gradient
    for op in ops:
        rtol = rtol_for(dt) if op in ("sin_grad", "cos_grad") else None  # libm's sin/cos
        compare(dev, "unary_grad", op, a, dy, rtol=rtol)
        compare(dev, "unary_grad", op, a[::-1], dy.T.T, rtol=rtol)
        compare(dev, "unary_grad", op, a.T, dy[:, ::-1].T, rtol=rtol)
        compare(dev, "unary_grad", op, a[1:], dy[:-1], rtol=rtol)  # misaligned contiguous
        compare(dev, "unary_grad", op, a[:1], dy, rtol=rtol)       # broadcast


# -- where --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_where_every_dtype_and_variant(dev, rng, dt):
    c = rng.random((23, 45)) < 0.5
    x, y = values(rng, (23, 45), dt), values(rng, (23, 45), dt)
    s = values(rng, (), dt, special=False)
    compare(dev, "where", "where", c, x, y)                       # contig
    compare(dev, "where", "where", c, s, y)                       # sx
    compare(dev, "where", "where", c, x, s)                       # sy
    compare(dev, "where", "where", c[:, 1:], x[:, 1:], y[:, 1:])  # strided (misaligned rows)
    compare(dev, "where", "where", c[1:], x[1:], y[:-1])          # contiguous but misaligned
    compare(dev, "where", "where", c.T, x.T[::-1], s)
    # three-way broadcasting
    compare(dev, "where", "where", c[:, :1], x[:1], y[0])
    compare(dev, "where", "where", c[None, :5, 0], np.broadcast_to(x[:4, :1, None], (4, 1, 1)), y[:5, 0])
    compare(dev, "where", "where", np.array(True), s, y)
    # a condition that is not bool reads as its truth value
    compare(dev, "where", "where", values(rng, (23, 45), F32), x, y)


@pytest.mark.parametrize("n", SIZES)
def test_where_sizes(dev, rng, n):
    c = rng.random(n + 1) < 0.3
    x, y = values(rng, (n + 1,), F64), values(rng, (n + 1,), F64)
    compare(dev, "where", "where", c[:n], x[:n], y[:n])
    compare(dev, "where", "where", c[1:], x[1:], np.array(0.0))
    compare(dev, "where", "where", c[:n][::-1], np.array(2.0), y[:n])


# -- cast ---------------------------------------------------------------------------

def _cast_source(rng, dt):
    if dt.kind == "f":
        v = np.concatenate([rng.standard_normal(200) * 1e3, rng.standard_normal(100) * 1e12,
                            [0.0, -0.0, 0.5, -0.5, 0.9999, -0.9999, 1.5, -1.5, np.nan, np.inf, -np.inf,
                             2147483647.0, 2147483648.0, -2147483648.0, -2147483649.0, -2147483648.75,
                             2147483647.5, 9.2e18, -9.2e18, 9.3e18, -9.3e18, 1e300, -1e300, 1e-300,
                             16777217.0, 3.4e38, -3.4e38]])
    elif dt.kind == "i":
        info = np.iinfo(np.int64)
        v = np.concatenate([rng.integers(-1000, 1000, 200), rng.integers(info.min, info.max, 100),
                            [0, 1, -1, 2 ** 31, -2 ** 31 - 1, 2 ** 24 + 1, 2 ** 53 + 1, info.max, info.min]])
    else:
        v = rng.integers(0, 2, 327)
    with np.errstate(all="ignore"):
        return v.astype(dt)


@pytest.mark.parametrize("src", ALL, ids=str)
def test_cast_every_pair(dev, rng, src):
    x0 = _cast_source(rng, src)
    for to in ALL:
        x = x0
        if src.kind == "f" and to.kind == "i" and not X86:
            info = np.iinfo(to)
            x = x0[(x0 > float(info.min) - 1) & (x0 < float(info.max))]
        with np.errstate(all="ignore"):
            compare(dev, "cast", "cast", x, to)
            compare(dev, "cast", "cast", x[1:], to)                 # misaligned
            compare(dev, "cast", "cast", x[::-3], to)               # negative stride
            compare(dev, "cast", "cast", x[:300].reshape(20, 15).T, to)
            compare(dev, "cast", "cast", np.broadcast_to(x[:7], (3, 7)), to)


def test_cast_float_to_int_truncates_toward_zero(dev):
    x = np.array([1.9, -1.9, 0.5, -0.5, 2147483647.9, -2147483648.9], np.float64)
    same(dev.cast("cast", x, I32), np.array([1, -1, 0, 0, 2147483647, -2147483648], np.int32))
    same(dev.cast("cast", np.array([np.nan, -0.0, 0.1], np.float32), B8), np.array([True, False, True]))


@pytest.mark.parametrize("n", SIZES)
def test_cast_sizes(dev, rng, n):
    x = values(rng, (n + 1,), F32)
    with np.errstate(all="ignore"):
        compare(dev, "cast", "cast", x[:n], F64)
        compare(dev, "cast", "cast", x[1:], I64)
        compare(dev, "cast", "cast", x[:n][::-1], B8)


# -- fill ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_fill_sizes_and_dtypes(dev, n):
    for dt in ALL:
        compare(dev, "fill", "fill", (n,), 3, dt)
    compare(dev, "fill", "fill", (n, 1, 2), -2.5, F32)


def test_fill_values_and_shapes(dev):
    cases = [(1.5, F32), (-0.0, F64), (np.nan, F32), (-np.inf, F64), (3.7, I32), (-3.7, I64), (2 ** 40, I64),
             (True, B8), (0, B8), (2.5, B8), (False, F32), (1e300, F32)]
    if X86:
        cases += [(np.nan, I32), (-np.inf, I64)]
    for shape in ((), (0,), (1,), (3, 0, 2), (2, 3, 4), (1,) * 8):
        for value, dt in cases:
            with np.errstate(all="ignore"):
                want = CPU.fill("fill", shape, value, dt)
            same(dev.fill("fill", shape, value, dt), want)
    with pytest.raises(OverflowError):
        CPU.fill("fill", (), 2 ** 40, I32)
    with pytest.raises(OverflowError):
        dev.fill("fill", (), 2 ** 40, I32)
    assert np.signbit(dev.fill("fill", (3,), -0.0, F32)).all()
