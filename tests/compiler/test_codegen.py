"""Element-wise fusion code generation (gpuad/compiler/): one generated kernel per
group of element-wise ops, on every available device, against the eager kernels.

- every element-wise row of gpuad.ops.table with a functor, in every dtype its
  rule accepts, as a one-op group, with broadcasting and size-0/size-1 axes:
  equal to ``bind`` of the same primitive (exactly on emulated, where the fused
  and the eager kernels are the same functors built by the same compiler; on cpu
  to a few ulps for the transcendental functors, whose NumPy loops differ from
  libm, exactly for the rest);
- random chains of ops (hypothesis) against the same ops run eagerly one by one;
- several outputs, ``out=``, non-contiguous inputs, integer errors, size-0 groups,
  the NumPy fallback of the cpu device without a compiler;
- the generated CUDA C compiles with NVRTC (the cuda device's own path) and nvcc
  for sm_80 and sm_90.
"""
import math
import shutil
import subprocess
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import gpuad as ad
from gpuad.compiler import codegen, emit as codegen_emit
from gpuad.compiler.codegen import Group, Op, Operand, compile_group, compile_groups, source
from gpuad.devices.kernel_sources import kernel_dir
from gpuad.errors import InvalidArgumentError
from gpuad.ops.core import bind
from gpuad.ops.table import PRIMITIVES
from gpuad.tensor import Abstract, Tensor

from ..conftest import AVAILABLE

F32, F64, I32, I64, B8 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))
DTYPES = (F32, F64, I32, I64, B8)
FAMILIES = ("unary", "binary", "unary_grad", "where", "cast", "fill")
ROWS = sorted(name for name, p in PRIMITIVES.items() if p.functor is not None and p.family in FAMILIES)
CHECKED_INT = {"floordiv", "floormod", "pow"}
# functors computed by libm in the fused code but by NumPy's own loops on the cpu device
TRANSCENDENTAL = {"Exp", "Log", "Log1p", "Expm1", "Sin", "Cos", "Tan", "Tanh", "Erf", "Sigmoid", "Softplus", "Pow",
                  "SinGrad", "CosGrad"}
ULPS = 4
# The cpu device's eager erf is its own series (NumPy has no erf ufunc), within
# 4e-15 relative of the true value in float64 (tests/devices/test_cpu_erf.py): about
# 20 ulps, where the fused kernel calls the C library's erf.
ERF_ULPS = 20


def _device_param(name):
    marks = [pytest.mark.cuda] if name.startswith("cuda") else []
    if name not in AVAILABLE:
        marks.append(pytest.mark.skip(reason=f"{name} is not available here"))
    return pytest.param(name, marks=marks, id=name.split(":")[0])


DEVICE_PARAMS = [_device_param(d) for d in ("cpu", "emulated", "cuda:0")]


# -- values and comparisons ----------------------------------------------------------------

def values(rng, shape, dt, positive_ints=False):
    """Random values of dt with the dtype's edge values mixed in; ``positive_ints``:
    integers in 1..5 (divisors and exponents that do not raise)."""
    n = math.prod(shape)
    if dt.kind == "f":
        v = rng.standard_normal(n) * 3
        edges = [0.0, -0.0, 0.5, -2.5, 1.0, np.inf, -np.inf, np.nan, 1e-30, 40.0]
    elif dt.kind == "i":
        v = rng.integers(1, 6, n) if positive_ints else rng.integers(-20, 21, n)
        edges = [1, 2] if positive_ints else [0, 1, -1, 7, -7, np.iinfo(dt).max, np.iinfo(dt).min]
    else:
        v = rng.integers(0, 2, n)
        edges = [0, 1]
    if n >= 3 * len(edges):
        v[rng.choice(n, len(edges), replace=False)] = edges
    with np.errstate(all="ignore"):
        return v.astype(dt).reshape(shape)


def assert_same(got, want, ulps=0):
    """Same shape and dtype, values equal (NaN == NaN), or within ``ulps`` units in the
    last place for floats."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype)
    if ulps == 0 or want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    scale = np.maximum(np.abs(got), np.abs(want))
    with np.errstate(invalid="ignore"):
        close = np.abs(got - want) <= ulps * np.spacing(scale.astype(want.dtype)) + np.finfo(want.dtype).tiny
    bad = ~(same | close)
    assert not bad.any(), f"{bad.sum()} values differ by more than {ulps} ulps: got {got[bad][:5]}, want {want[bad][:5]}"


def _on(dev, array):
    return Tensor(dev.from_host(np.asarray(array)), dev)


def _host(dev, buf):
    return np.asarray(dev.to_host(buf))


def _eager(dev, op: Op, args, shape):
    """``op`` run by ``bind`` on Tensors ``args``."""
    prim = PRIMITIVES[op.prim]
    if op.prim == "fill":
        return bind(prim, (), shape=tuple(op.attr("shape")), value=op.attr("value"), dtype=op.dtype, device=dev)
    if op.prim == "cast":
        return bind(prim, tuple(args), dtype=op.attr("dtype"))
    return bind(prim, tuple(args))


# -- one-op groups for every row ------------------------------------------------------------

def _accepts(prim, *dtypes) -> bool:
    try:
        prim.infer(*(Abstract((2,), dt, None) for dt in dtypes))
        return True
    except InvalidArgumentError:
        return False


_UNARY_SHAPES = [((3, 4),), ((),), ((0, 3),), ((1, 5),)]
_BINARY_SHAPES = [((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), (2, 3)), ((0, 3), (1, 3)), ((4, 1, 3), (3,)),
                  ((1,), (5,)), ((2, 1, 3), (2, 4, 1))]
_WHERE_SHAPES = [((3, 1), (1, 4), ()), ((2, 3), (2, 3), (2, 3)), ((0, 2), (2,), ()), ((5,), (), (1,))]


def row_cases(name):
    """``(group, input arrays)`` one-op cases of row ``name``: every dtype its rule
    accepts, with broadcasting and size-0/size-1 axes."""
    prim = PRIMITIVES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same draws in every run
    cases = []
    if prim.family == "fill":
        for dt in DTYPES:
            for shape, value in (((2, 3), 2.5), ((), -3), ((0,), 1)):
                op = Op("fill", (), dt, (("dtype", dt), ("shape", shape), ("value", value)))
                cases.append((Group(shape, (), (op,), (0,)), []))
        return cases
    if prim.family == "cast":
        for src in DTYPES:
            for dst in DTYPES:
                for (shape,) in _UNARY_SHAPES[:3]:
                    op = Op("cast", (("in", 0),), dst, (("dtype", dst),))
                    cases.append((Group(shape, (Operand(shape, src),), (op,), (0,)), [values(rng, shape, src)]))
        return cases
    if prim.family == "where":
        for dt in DTYPES:
            for shapes in _WHERE_SHAPES:
                shape = np.broadcast_shapes(*shapes)
                ins = (Operand(shapes[0], B8), Operand(shapes[1], dt), Operand(shapes[2], dt))
                op = Op("where", (("in", 0), ("in", 1), ("in", 2)), dt)
                arrays = [values(rng, shapes[0], B8), values(rng, shapes[1], dt), values(rng, shapes[2], dt)]
                cases.append((Group(shape, ins, (op,), (0,)), arrays))
        return cases
    arity = 1 if prim.family == "unary" else 2
    for dt in DTYPES:
        if not _accepts(prim, *(dt,) * arity):
            continue
        out_dt = np.dtype(prim.infer(*(Abstract((2,), dt, None),) * arity)[1])
        for shapes in (_UNARY_SHAPES if arity == 1 else _BINARY_SHAPES):
            shape = np.broadcast_shapes(*shapes)
            ins = tuple(Operand(s, dt) for s in shapes)
            op = Op(name, tuple(("in", k) for k in range(arity)), out_dt)
            positive = name in CHECKED_INT and dt.kind == "i"
            arrays = [values(rng, s, dt, positive_ints=positive and k == 1) for k, s in enumerate(shapes)]
            cases.append((Group(shape, ins, (op,), (0,)), arrays))
    return cases


CASES = {name: row_cases(name) for name in ROWS}


def test_every_functor_row_has_cases():
    assert {"multiply", "exp", "relu_grad", "where", "cast", "fill", "logical_not", "floordiv"} <= set(ROWS)
    assert all(CASES[name] for name in ROWS)


@pytest.fixture(scope="module", params=DEVICE_PARAMS)
def compiled(request):
    """Every row's groups compiled on the device at once (one compiler run)."""
    dev = ad.devices.get(request.param)
    groups = [g for name in ROWS for g, _ in CASES[name]]
    compile_groups(groups, dev)
    return dev


@pytest.mark.parametrize("name", ROWS)
def test_row_as_one_op_group_equals_eager(compiled, name):
    dev = compiled
    for group, arrays in CASES[name]:
        op = group.ops[0]
        kernel = compile_group(group, dev)
        assert kernel.fused
        got = kernel(*[dev.from_host(a) for a in arrays])
        assert isinstance(got, tuple) and len(got) == 1
        want = _eager(dev, op, [_on(dev, a) for a in arrays], group.shape)
        exact = dev.name != "cpu" or PRIMITIVES[op.prim].functor not in TRANSCENDENTAL
        try:
            ulps = 0 if exact else ERF_ULPS if op.prim == "erf" else ULPS
            assert_same(_host(dev, got[0]), _host(dev, want._data), ulps)
        except AssertionError as e:
            raise AssertionError(f"{name} {[str(x.dtype) for x in group.inputs]} {[x.shape for x in group.inputs]}"
                                 f" -> {group.shape}: {e}") from None


# -- random chains -----------------------------------------------------------------------------

_CHAIN_UNARY = {"f": ["negative", "abs", "square", "exp", "tanh", "sigmoid", "sqrt", "relu", "floor", "sin", "erf"],
                "i": ["negative", "abs", "square", "relu", "sign"]}
_CHAIN_BINARY = {"f": ["add", "subtract", "multiply", "divide", "maximum", "minimum", "floormod", "pow"],
                 "i": ["add", "subtract", "multiply", "maximum", "minimum", "floordiv", "floormod"]}
_SHAPES = [(), (7,), (3, 4), (2, 0, 3), (1, 5), (2, 3, 4)]


@st.composite
def chains(draw):
    """``(group, input arrays)``: a random chain of element-wise ops over one shape,
    every result of the group's shape, with broadcast inputs, fills, comparisons,
    where and casts, and one to three outputs."""
    shape = draw(st.sampled_from(_SHAPES))
    dt = draw(st.sampled_from([F32, F64, I32, I64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    def sub_shape():  # a shape that broadcasts to `shape`: size-1 axes, fewer axes
        s = tuple(d if draw(st.booleans()) else 1 for d in shape)
        return s[draw(st.integers(0, len(s))):]

    inputs = [Operand(shape, dt)] + [Operand(sub_shape(), dt) for _ in range(draw(st.integers(0, 2)))]
    full = [("in", 0)]  # values of the group's shape, of dtype dt
    others = [("in", k) for k in range(1, len(inputs))]
    bools, ops = [], []

    def add(op):
        ops.append(op)
        return ("op", len(ops) - 1)

    kind = dt.kind
    for _ in range(draw(st.integers(1, 7))):
        choice = draw(st.sampled_from(["unary", "binary", "binary", "fill", "compare", "where", "cast"]))
        x = draw(st.sampled_from(full))
        if choice == "unary":
            full.append(add(Op(draw(st.sampled_from(_CHAIN_UNARY[kind])), (x,), dt)))
        elif choice == "binary":
            y = draw(st.sampled_from(full + others))
            args = (x, y) if draw(st.booleans()) else (y, x)
            full.append(add(Op(draw(st.sampled_from(_CHAIN_BINARY[kind])), args, dt)))
        elif choice == "fill":
            value = draw(st.sampled_from([0, 1, 2, -3, 0.5, -0.0])) if kind == "f" else draw(st.sampled_from([0, 1, 2, -3]))
            others.append(add(Op("fill", (), dt, (("dtype", dt), ("shape", shape), ("value", value)))))
        elif choice == "compare":
            y = draw(st.sampled_from(full + others))
            bools.append(add(Op(draw(st.sampled_from(["less", "greater_equal", "equal"])), (x, y), B8)))
        elif choice == "where" and bools:
            y = draw(st.sampled_from(full + others))
            full.append(add(Op("where", (draw(st.sampled_from(bools)), x, y), dt)))
        elif choice == "cast":
            other = F64 if dt != F64 else I32
            there = add(Op("cast", (x,), other, (("dtype", other),)))
            full.append(add(Op("cast", (there,), dt, (("dtype", dt),))))
    if not ops:
        full.append(add(Op("negative", (full[0],), dt)))
    produced = [j for j in range(len(ops))]
    outputs = [len(ops) - 1] + draw(st.lists(st.sampled_from(produced), max_size=2))
    group = Group(shape, tuple(inputs), tuple(ops), tuple(outputs))
    divisor_safe = any(op.prim in CHECKED_INT for op in ops) and draw(st.booleans())
    arrays = [values(rng, x.shape, x.dtype, positive_ints=divisor_safe) for x in inputs]
    if kind == "f":  # moderate values: chains of transcendental functions stay well conditioned
        arrays = [np.clip(np.nan_to_num(a), -4, 4).astype(dt) for a in arrays]
    return group, arrays


def _eager_chain(dev, group, arrays):
    """The group's outputs computed by ``bind``, op by op, or the error it raises."""
    inputs = [_on(dev, a) for a in arrays]
    results = []
    for op in group.ops:
        args = [inputs[i] if kind == "in" else results[i] for kind, i in op.args]
        results.append(_eager(dev, op, args, group.shape))
    return [np.broadcast_to(_host(dev, results[j]._data), group.shape) for j in group.outputs]


@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(case=chains())
def test_random_chains_equal_eager_ops(dev_name, case):
    group, arrays = case
    dev = ad.devices.get(dev_name)
    try:
        want = _eager_chain(dev, group, arrays)
    except InvalidArgumentError as e:
        with pytest.raises(InvalidArgumentError) as raised:
            compile_group(group, dev)(*[dev.from_host(a) for a in arrays])
        assert str(raised.value) == str(e)
        return
    got = compile_group(group, dev)(*[dev.from_host(a) for a in arrays])
    assert len(got) == len(group.outputs)
    transcendental = any(PRIMITIVES[op.prim].functor in TRANSCENDENTAL for op in group.ops)
    for g, w in zip(got, want):
        g = _host(dev, g)
        if dev.name == "cpu" and transcendental and w.dtype.kind == "f":
            # NumPy's and libm's last bits differ; later ops may amplify them
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, equal_nan=True)
            assert g.dtype == w.dtype
        elif dev.name == "cpu" and transcendental:
            # an integer or bool result of a float comparison may flip where the floats differ
            assert g.shape == w.shape and g.dtype == w.dtype
        else:
            assert_same(g, w)


# -- outputs, out=, layouts ------------------------------------------------------------------

def _two_output_group():
    shape = (4, 5)
    ops = (Op("multiply", (("in", 0), ("in", 1)), F32),   # x * row
           Op("greater", (("op", 0), ("in", 2)), B8),     # > scalar
           Op("where", (("op", 1), ("op", 0), ("in", 2)), F32))
    return Group(shape, (Operand(shape, F32), Operand((5,), F32), Operand((), F32)), ops, (2, 1))


@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
def test_two_outputs(dev_name, rng):
    dev = ad.devices.get(dev_name)
    x, row, s = rng.standard_normal((4, 5)).astype(F32), rng.standard_normal(5).astype(F32), np.float32(0.25)
    clipped, mask = compile_group(_two_output_group(), dev)(dev.from_host(x), dev.from_host(row),
                                                             dev.from_host(np.asarray(s)))
    np.testing.assert_array_equal(_host(dev, mask), x * row > s)
    np.testing.assert_array_equal(_host(dev, clipped), np.where(x * row > s, x * row, s))
    assert _host(dev, mask).dtype == B8 and _host(dev, clipped).flags.c_contiguous


@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
def test_out_writes_into_given_buffers(dev_name, rng):
    dev = ad.devices.get(dev_name)
    kernel = compile_group(_two_output_group(), dev)
    x, row = rng.standard_normal((4, 5)).astype(F32), rng.standard_normal(5).astype(F32)
    args = (dev.from_host(x), dev.from_host(row), dev.from_host(np.asarray(np.float32(0))))
    out = (dev.from_host(np.full((4, 5), 7, F32)), dev.from_host(np.zeros((4, 5), B8)))
    got = kernel(*args, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    np.testing.assert_array_equal(_host(dev, out[0]), np.maximum(x * row, 0))
    np.testing.assert_array_equal(_host(dev, out[1]), x * row > 0)
    with pytest.raises(ValueError, match="out\\[1\\]"):
        kernel(*args, out=(out[0], dev.from_host(np.zeros((4, 5), F32))))


def test_non_contiguous_inputs_are_read_right():
    dev = ad.devices.get("cpu")
    base = np.arange(20, dtype=F64).reshape(4, 5)
    g = Group((5, 4), (Operand((5, 4), F64), Operand((4,), F64)),
              (Op("subtract", (("in", 0), ("in", 1)), F64),), (0,))
    (got,) = compile_group(g, dev)(base.T, base[::-1, 0])
    np.testing.assert_array_equal(got, base.T - base[::-1, 0])
    frozen = np.ascontiguousarray(base.T)
    frozen.flags.writeable = False  # (read through another path than writable buffers)
    (got,) = compile_group(g, dev)(frozen, base[:, 0])
    np.testing.assert_array_equal(got, base.T - base[:, 0])


@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
def test_out_may_be_a_same_shaped_input(dev_name):
    dev = ad.devices.get(dev_name)
    g = Group((3, 4), (Operand((3, 4), F32), Operand((4,), F32)),
              (Op("multiply", (("in", 0), ("in", 1)), F32), Op("tanh", (("op", 0),), F32)), (1,))
    x, row = np.linspace(-2, 2, 12, dtype=F32).reshape(3, 4), np.array([1, -1, 0.5, 2], F32)
    want = _host(dev, compile_group(g, dev)(dev.from_host(x), dev.from_host(row))[0])
    buf = dev.from_host(x)
    (got,) = compile_group(g, dev)(buf, dev.from_host(row), out=(buf,))
    assert got is buf
    np.testing.assert_array_equal(_host(dev, buf), want)


def test_large_groups_split_over_threads_give_the_same_result():
    """Big enough for the cpp loop's OpenMP split, with a broadcast input whose rows
    straddle the threads' ranges."""
    dev = ad.devices.get("cpu")
    rng = np.random.default_rng(0)
    x, col = rng.standard_normal((301, 997)).astype(F32), rng.standard_normal((301, 1)).astype(F32)
    g = Group(x.shape, (Operand(x.shape, F32), Operand(col.shape, F32)),
              (Op("multiply", (("in", 0), ("in", 1)), F32), Op("abs", (("op", 0),), F32)), (1,))
    (got,) = compile_group(g, dev)(x, col)
    np.testing.assert_array_equal(got, np.abs(x * col))


# -- integer errors and empty groups ------------------------------------------------------------

@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
@pytest.mark.parametrize("prim, divisor", [("floordiv", 0), ("floormod", 0), ("pow", -1)])
def test_integer_errors_raise_as_eager(dev_name, prim, divisor):
    dev = ad.devices.get(dev_name)
    x, y = np.arange(1, 7, dtype=I32).reshape(2, 3), np.array([3, divisor, 2], I32)
    g = Group((2, 3), (Operand((2, 3), I32), Operand((3,), I32)),
              (Op("add", (("in", 0), ("in", 0)), I32), Op(prim, (("op", 0), ("in", 1)), I32)), (1,))
    with pytest.raises(InvalidArgumentError) as eager:
        bind(PRIMITIVES[prim], (_on(dev, x + x), _on(dev, y)))
    with pytest.raises(InvalidArgumentError) as fused:
        compile_group(g, dev)(dev.from_host(x), dev.from_host(y))
    assert str(fused.value) == str(eager.value) and fused.value.op == prim


@pytest.mark.parametrize("dev_name", DEVICE_PARAMS)
def test_size_zero_groups(dev_name):
    dev = ad.devices.get(dev_name)
    g = Group((0, 3), (Operand((0, 3), I64), Operand((3,), I64)),
              (Op("floordiv", (("in", 0), ("in", 1)), I64), Op("cast", (("op", 0),), F32, (("dtype", F32),))),
              (1, 0))
    kernel = compile_group(g, dev)
    got = kernel(dev.from_host(np.zeros((0, 3), I64)), dev.from_host(np.array([1, 2, 3], I64)))
    assert [(o.shape, o.dtype) for o in got] == [((0, 3), F32), ((0, 3), I64)]
    # a zero divisor raises even with nothing to compute, as the eager kernels check it
    with pytest.raises(InvalidArgumentError, match="division by zero"):
        kernel(dev.from_host(np.zeros((0, 3), I64)), dev.from_host(np.array([1, 0, 3], I64)))


# -- the cpu device without a compiler ---------------------------------------------------------------

def test_cpu_without_a_compiler_runs_the_numpy_kernels(monkeypatch):
    monkeypatch.setenv("GPUAD_HOST_CXX", "no-such-compiler-gpuad")
    codegen.clear_cache()
    try:
        g = _two_output_group()
        kernel = compile_group(g, "cpu")
        assert not kernel.fused
        x, row = np.linspace(-1, 1, 20, dtype=F32).reshape(4, 5), np.linspace(2, -2, 5, dtype=F32)
        out = (np.empty((4, 5), F32), np.empty((4, 5), B8))
        clipped, mask = kernel(x, row, np.asarray(np.float32(0.1)), out=out)
        assert clipped is out[0]
        np.testing.assert_array_equal(clipped, np.where(x * row > 0.1, x * row, np.float32(0.1)))
        np.testing.assert_array_equal(mask, x * row > 0.1)
        div = Group((3,), (Operand((3,), I32), Operand((), I32)), (Op("floordiv", (("in", 0), ("in", 1)), I32),), (0,))
        with pytest.raises(InvalidArgumentError, match="division by zero"):
            compile_group(div, "cpu")(np.arange(3, dtype=I32), np.asarray(0, I32))
    finally:
        codegen.clear_cache()


# -- groups and keys -------------------------------------------------------------------------------

def test_groups_are_checked_when_made():
    with pytest.raises(ValueError, match="does not broadcast"):
        Group((3,), (Operand((4,), F32),), (Op("exp", (("in", 0),), F32),), (0,))
    with pytest.raises(ValueError, match="earlier op"):
        Group((3,), (Operand((3,), F32),), (Op("exp", (("op", 0),), F32),), (0,))
    with pytest.raises(ValueError, match="its rule gives bool"):
        Group((3,), (Operand((3,), F32),) * 2, (Op("less", (("in", 0), ("in", 1)), F32),), (0,))
    with pytest.raises(InvalidArgumentError, match="sqrt"):
        Group((3,), (Operand((3,), I32),), (Op("sqrt", (("in", 0),), I32),), (0,))
    with pytest.raises(ValueError, match="not an element-wise primitive"):
        Group((3, 3), (Operand((3, 3), F32),) * 2, (Op("matmul", (("in", 0), ("in", 1)), F32),), (0,))


def test_keys_tell_groups_apart_and_code_is_shared_across_sizes():
    def fill(value, shape=(4,)):
        op = Op("fill", (), F32, (("value", value), ("dtype", F32), ("shape", shape)))
        return Group(shape, (Operand(shape, F32),), (op, Op("add", (("in", 0), ("op", 0)), F32)), (1,))
    assert fill(1.0).key() == fill(1.0).key()
    assert len({fill(0.0).key(), fill(-0.0).key(), fill(1).key(), fill(1.0, (5,)).key()}) == 4
    # sizes and fill values are run-time arguments: one kernel serves them all
    assert source(fill(0.0), "cpp") == source(fill(3.0, (9,)), "cpp")
    assert source(fill(0.0), "cuda") == source(fill(3.0, (9,)), "cuda")


def test_unknown_target():
    g = Group((2,), (Operand((2,), F32),), (Op("exp", (("in", 0),), F32),), (0,))
    with pytest.raises(ValueError, match="unknown target"):
        source(g, "opencl")


# -- the generated CUDA C compiles for the GPUs gpuad targets -------------------------------------

def _cuda_groups():
    """A module's worth of groups: each row in each of its dtypes once (with a broadcast
    input where the row has such a case: the Layout code), plus fills, integer checks
    and several outputs."""
    picked = {}
    for name in ROWS:
        for group, _ in CASES[name]:
            key = (name, tuple(x.dtype for x in group.inputs), group.ops[0].dtype)
            strided = "strided" in codegen_emit.access(group).kinds
            if key not in picked or (strided and "strided" not in codegen_emit.access(picked[key]).kinds):
                picked[key] = group
    return list(picked.values()) + [_two_output_group()]


def _nvrtc_reason():
    from gpuad.devices import nvrtc
    try:
        nvrtc.nvrtc_version()
        return None
    except nvrtc.CudaUnavailableError as e:
        return str(e)


@pytest.mark.slow
@pytest.mark.skipif(_nvrtc_reason() is not None, reason=f"NVRTC is not usable here: {_nvrtc_reason()}")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_generated_cuda_compiles_with_nvrtc(arch, tmp_path):
    from gpuad.devices import nvrtc
    text = codegen.module_source(_cuda_groups(), "cuda")
    compiled = nvrtc.compile_source(text, arch, cache=tmp_path)  # the cuda device's own path
    assert not compiled.cached and compiled.path.stat().st_size > 0
    assert nvrtc.compile_source(text, arch, cache=tmp_path).cached


NVCC = shutil.which("nvcc")


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_generated_cuda_compiles_with_nvcc(arch, tmp_path):
    src = tmp_path / "fused.cu"
    src.write_text(codegen.module_source(_cuda_groups(), "cuda"))
    proc = subprocess.run([NVCC, "-std=c++17", f"-arch={arch}", f"-I{kernel_dir()}", "-cubin", "--fmad=false",
                           "-o", str(tmp_path / "fused.cubin"), str(src)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert not warnings, "\n".join(warnings)
