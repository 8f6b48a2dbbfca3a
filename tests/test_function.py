"""``gpuad.function``: what a user relies on when they put ``@gpuad.function``
on their code (gpuad/function.py, gpuad/compiler/).

1. every primitive of ``gpuad.ops.table.PRIMITIVES`` gives, traced and
   replayed, the value (and the gradients: tape inside the function, tape
   around the call) it gives eagerly;
2. random programs (hypothesis): chains of element-wise ops, reductions,
   matmuls and reshapes, with size-0 and size-1 axes, traced == eager;
3. retracing rules: what traces again and what replays, input_signature,
   get_concrete_function, the graph's text, the compile log, methods;
4. variables and optimizers inside: compiled training loops equal eager ones,
   schedules, assigns, variables changed outside, random numbers;
5. differentiating through a call (outer tapes, nesting, several outputs,
   effectful functions refused);
6. a replay makes no host transfer, and no allocation or kernel launch beyond
   what the eager run of the same function makes;
7. errors: branching on traced values, leaking them, bad ops inside a trace.

Every computing test takes the ``device`` fixture (tests/conftest.py): cpu,
emulated, and cuda where present.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import gpuad as ad
from gpuad import devices
from gpuad.compiler.trace import TracingError
from gpuad.ops import array as A, core
from gpuad.ops.core import bind
from gpuad.ops.table import PRIMITIVES
from gpuad.random import _Stream

# gpuad.devices.cpu silences NumPy's RuntimeWarnings for edge values with a filter
# that pytest's per-test warning capture does not keep (as tests/ops/ does).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:gpuad")

TOL = {np.dtype(np.float32): dict(rtol=1e-6, atol=1e-6),
       np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14)}


def assert_same(got, want, what=""):
    """``got`` (traced) equals ``want`` (eager): same shape, dtype and device; floats
    to their dtype's tolerance, everything else exactly. Nests of tensors and None."""
    if want is None or got is None:
        assert got is None and want is None, f"{what}: traced {got!r}, eager {want!r}"
        return
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), \
            f"{what}: traced {got!r}, eager {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{what}[{i}]")
        return
    assert isinstance(got, ad.Tensor), f"{what}: traced result is {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, eager {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype.name}, eager {want.dtype.name}"
    assert got.device == want.device, f"{what}: device {got.device}, eager {want.device}"
    g, w = got.numpy(), want.numpy()
    if w.dtype.kind == "f":
        np.testing.assert_allclose(g, w, err_msg=what, **TOL[w.dtype])
    else:
        np.testing.assert_array_equal(g, w, err_msg=what)


def _floats(*xs):
    return [x for x in xs if isinstance(x, ad.Tensor) and x.dtype.is_floating]


# =====================================================================================
# 1. every primitive, traced == eager
# =====================================================================================
#
# CALLS[name](dtype, rng) -> (inputs, attrs): one valid call of the row for float
# dtype ``dtype`` (rows that take no floats ignore it), with inputs sampled where
# the row is smooth. The call is made with ``bind`` (the rows themselves, not the
# user functions composed from them: every row once, whatever math.py builds).

def _t(a, dtype=None):
    return ad.constant(np.asarray(a if dtype is None else np.asarray(a).astype(dtype)))


def _real(rng, dtype, *shape):
    return _t(rng.uniform(-2, 2, shape), dtype)


def _pos(rng, dtype, *shape):
    return _t(rng.uniform(0.5, 2, shape), dtype)


def _nonzero(rng, dtype, *shape):
    return _t(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2, shape), dtype)


def _off_int(rng, dtype, *shape):  # away from integers (floor, round, floormod)
    return _t(rng.integers(-2, 2, shape) + rng.uniform(0.2, 0.8, shape), dtype)


def _ints(rng, lo, hi, *shape, dtype=np.int32):
    return _t(rng.integers(lo, hi, shape), dtype)


def _bools(rng, *shape):
    return _t(rng.random(shape) > 0.5)


def _unary(sampler):
    return lambda dt, rng: ((sampler(rng, dt, 2, 3),), {})


def _binary(sx, sy):
    # broadcasting (2, 1) against (3,)
    return lambda dt, rng: ((sx(rng, dt, 2, 1), sy(rng, dt, 3)), {})


def _grad_row(sample_y):
    return lambda dt, rng: ((sample_y(rng, dt, 2, 3), _real(rng, dt, 2, 3)), {})


def _key(shape, key):
    return A.canonical_key(shape, key)


def _random_call(dt, rng):
    return (), {"shape": (3, 2), "dtype": np.dtype(dt), "stream": _Stream(11),
                "device": devices.current()}


CALLS = {
    # element-wise, one input
    **{n: _unary(_real) for n in ("negative", "square", "exp", "expm1", "sin", "cos", "tanh",
                                  "sigmoid", "softplus", "erf")},
    **{n: _unary(_nonzero) for n in ("abs", "sign", "reciprocal", "relu")},
    **{n: _unary(_pos) for n in ("sqrt", "rsqrt", "log")},
    "log1p": _unary(lambda rng, dt, *s: _t(rng.uniform(-0.5, 2, s), dt)),
    "tan": _unary(lambda rng, dt, *s: _t(rng.uniform(-1.2, 1.2, s), dt)),
    "floor": _unary(_off_int),
    "round": _unary(_off_int),
    "logical_not": lambda dt, rng: ((_bools(rng, 2, 3),), {}),
    # fused backward rows: (forward value, dy)
    **{n: _grad_row(_real) for n in ("relu_grad", "sigmoid_grad", "tanh_grad", "sin_grad",
                                     "cos_grad", "square_grad")},
    **{n: _grad_row(_pos) for n in ("sqrt_grad", "rsqrt_grad", "reciprocal_grad")},
    # element-wise, two inputs (broadcasting)
    **{n: _binary(_real, _real) for n in ("add", "subtract", "multiply")},
    "divide": _binary(_real, _nonzero),
    "pow": _binary(_pos, _real),
    "floordiv": _binary(_off_int, lambda rng, dt, *s: _t(rng.choice([1.0, -2.0], s), dt)),
    "floormod": _binary(_off_int, lambda rng, dt, *s: _t(rng.choice([1.0, -2.0], s), dt)),
    # maximum/minimum away from ties (ties are pinned in tests/ops)
    "maximum": _binary(_off_int, lambda rng, dt, *s: _t(rng.integers(-2, 3, s), dt)),
    "minimum": _binary(_off_int, lambda rng, dt, *s: _t(rng.integers(-2, 3, s), dt)),
    **{n: _binary(lambda rng, dt, *s: _t(rng.integers(-1, 2, s), dt),
                  lambda rng, dt, *s: _t(rng.integers(-1, 2, s), dt))
       for n in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")},
    **{n: (lambda dt, rng: ((_bools(rng, 2, 1), _bools(rng, 3)), {}))
       for n in ("logical_and", "logical_or")},
    "where": lambda dt, rng: ((_bools(rng, 2, 3), _real(rng, dt, 2, 3), _real(rng, dt, 1, 3)), {}),
    "cast": lambda dt, rng: ((_real(rng, dt, 2, 3),),
                             {"dtype": np.dtype(np.float64 if dt == np.float32 else np.float32)}),
    # reductions
    **{n: (lambda dt, rng: ((_real(rng, dt, 2, 3, 4),), {"axes": (0, 2), "keepdims": False}))
       for n in ("reduce_sum", "reduce_max", "reduce_min", "reduce_logsumexp")},
    "reduce_prod": lambda dt, rng: ((_nonzero(rng, dt, 2, 3, 4),), {"axes": (1,), "keepdims": True}),
    "argmax": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"axis": 1}),
    "argmin": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"axis": 0}),
    # linear algebra
    "matmul": lambda dt, rng: ((_real(rng, dt, 5, 2, 3), _real(rng, dt, 4, 3)),
                               {"transpose_a": False, "transpose_b": True}),
    # layout
    "reshape": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"shape": (3, 2)}),
    "transpose": lambda dt, rng: ((_real(rng, dt, 2, 3, 4),), {"perm": (2, 0, 1)}),
    "broadcast_to": lambda dt, rng: ((_real(rng, dt, 3, 1),), {"shape": (2, 3, 4)}),
    "strided_slice": lambda dt, rng: ((_real(rng, dt, 4, 5),),
                                      {"key": _key((4, 5), (slice(1, 4, 2), 3, None))}),
    "strided_slice_grad": lambda dt, rng: ((_real(rng, dt, 2),),
                                           {"shape": (4, 5), "key": _key((4, 5), (slice(1, 4, 2), 3))}),
    "concat": lambda dt, rng: ((_real(rng, dt, 2, 3), _real(rng, dt, 2, 1), _real(rng, dt, 2, 2)),
                               {"axis": 1}),
    "gather": lambda dt, rng: ((_real(rng, dt, 4, 3), _ints(rng, 0, 4, 2, 2, dtype=np.int64)),
                               {"axis": 0}),
    "scatter_add": lambda dt, rng: ((_real(rng, dt, 2, 2, 3), _t([[3, 0], [1, 1]], np.int64)),
                                    {"axis": 0, "shape": (4, 3)}),
    "one_hot": lambda dt, rng: ((_t([0, 2, 5], np.int64),),
                                {"depth": 4, "on_value": 1.0, "off_value": 0.0, "dtype": np.dtype(dt)}),
    # nn
    "softmax": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"axis": 1}),
    "log_softmax": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"axis": 0}),
    "softmax_cross_entropy": lambda dt, rng: (
        (_t(np.full((2, 3), 1 / 3), dt), _real(rng, dt, 2, 3)), {"axis": 1}),
    # creation: no inputs, so nothing to trace: the tracer folds them into constants
    # (still checked: the replay must return the folded value)
    "fill": lambda dt, rng: ((), {"shape": (2, 0, 3), "value": 7, "dtype": np.dtype(dt),
                                  "device": devices.current()}),
    "constant": lambda dt, rng: ((), {"value": rng.uniform(-1, 1, (3, 2)).astype(dt),
                                      "device": devices.current()}),
    # random numbers: effectful nodes (the stream is claimed when the replay runs)
    "random_uniform": _random_call,
    "random_normal": _random_call,
    # a copy to the cpu (an effect-free row run by its ``eager`` function)
    "copy": lambda dt, rng: ((_real(rng, dt, 2, 3),), {"device": devices.get("cpu")}),
}

# Integer and bool variants, for the rows that take them (kinds "fiu" / "fiub").
INT_ROWS = {"negative", "abs", "sign", "square", "relu", "add", "subtract", "multiply",
            "maximum", "minimum", "floordiv", "floormod", "equal", "not_equal", "less",
            "less_equal", "greater", "greater_equal", "reduce_sum", "reduce_max", "reduce_min",
            "reduce_prod", "argmax", "argmin", "reshape", "transpose", "concat", "gather",
            "where", "cast"}

# Rows a user cannot call on their own data, covered elsewhere in this file:
# - read_variable: a Variable read (its attribute is the Variable; it has no tensor
#   input to trace): section 4 reads variables inside functions and checks replays
#   see their current values, section 5 differentiates through those reads;
# - assign, assign_add, assign_sub, apply_update: effectful writes returning nothing
#   (section 4: assigns replayed per call, optimizer steps equal eager ones).
STATE_ROWS = {"read_variable", "assign", "assign_add", "assign_sub", "apply_update"}


def test_every_primitive_has_a_call_or_a_reason():
    assert set(CALLS) | STATE_ROWS == set(PRIMITIVES), \
        "a new primitive: add a call for it to CALLS (or explain why not in STATE_ROWS)"


def _int_call(name, rng):
    """The integer (or bool) version of row ``name``'s call: float inputs become int32."""
    inputs, attrs = CALLS[name](np.float64, rng)
    out = []
    for x in inputs:
        if x.dtype.is_floating:
            a = np.round(x.numpy() * 2)
            if name in ("floordiv", "floormod") and x is inputs[1]:
                a = np.where(a == 0, 3, a)  # no integer division by zero
            x = _t(a, np.int32)
        out.append(x)
    if name == "cast":
        attrs = {"dtype": np.dtype(np.float32)}
    return tuple(out), attrs


def _row_params():
    params = []
    for name in sorted(CALLS):
        for dt in ("float32", "float64"):
            params.append(pytest.param(name, dt, id=f"{name}-{dt}"))
        if name in INT_ROWS:
            params.append(pytest.param(name, "int32", id=f"{name}-int32"))
    return params


def _call_of(name, dt, rng):
    if dt == "int32":
        return _int_call(name, rng)
    return CALLS[name](np.dtype(dt), rng)


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _run_row(prim, inputs, attrs):
    """The row applied to ``inputs``: a fresh stream for random rows, so eager and
    traced draws are both the stream's first draw after the seed."""
    if "stream" in attrs:
        attrs = dict(attrs, stream=_Stream(attrs["stream"].op_seed))
    return bind(prim, tuple(inputs), **attrs)


@pytest.mark.parametrize("name, dt", _row_params())
def test_primitive_traced_equals_eager(name, dt, device):
    prim = PRIMITIVES[name]
    rng = np.random.default_rng(sum(map(ord, name + dt)))
    inputs, attrs = _call_of(name, dt, rng)
    what = f"{name} ({dt}) on {device}"

    ad.random.set_seed(5)
    want = _run_row(prim, inputs, attrs)

    @ad.function
    def f(*xs):
        return _run_row(prim, xs, attrs)

    for _ in range(2):  # the trace's own call, then a replay
        ad.random.set_seed(5)
        got = f(*inputs)
        assert_same(got, want, what)
    assert f.experimental_get_tracing_count() == 1
    graph = f.get_concrete_function(*inputs).graph
    if inputs:
        # the arguments are traced, not folded: the row is a node of the graph
        assert name in [n.prim.name for n in graph.nodes], f"{what}:\n{graph}"

    # gradients, for float rows with a VJP
    float_in = _floats(*inputs)
    if prim.vjps is None or not float_in or not want.dtype.is_floating:
        return
    seed = ad.constant(rng.standard_normal(want.shape).astype(want.dtype.name))

    def grads_inside(*xs):
        with ad.GradientTape() as tape:
            tape.watch([x for x in xs if x.dtype.is_floating])
            y = _run_row(prim, xs, attrs)
        return tape.gradient(y, [x for x in xs if x.dtype.is_floating], output_gradients=seed)

    eager_grads = grads_inside(*inputs)
    assert any(g is not None for g in eager_grads), what
    traced = ad.function(grads_inside)
    for _ in range(2):
        assert_same(traced(*inputs), eager_grads, f"{what}: tape inside the function")

    # the tape outside the call: the call's compiled backward
    for _ in range(2):
        with ad.GradientTape() as tape:
            tape.watch(float_in)
            y = f(*inputs)
        assert_same(tape.gradient(y, float_in, output_gradients=seed), eager_grads,
                    f"{what}: tape outside the call")


# =====================================================================================
# 2. random programs (hypothesis): traced == eager, values and gradients
# =====================================================================================
#
# A program is a start shape, the shapes of its extra inputs (the other operand of a
# binary op, a matmul's weights) and a list of steps, each applied to the current
# value. Every input is an argument of the function (traced, not folded).

UNARY = {
    "sin": ad.sin, "cos": ad.cos, "tanh": ad.tanh, "sigmoid": ad.sigmoid, "negative": ad.negative,
    "abs": ad.abs, "relu": ad.nn.relu, "softplus": ad.nn.softplus, "erf": ad.erf,
    "half_square": lambda x: ad.square(x) * 0.5, "scale": lambda x: x * 1.5 - 0.25,
}
BINARY = {
    "add": ad.add, "subtract": ad.subtract, "multiply": ad.multiply, "maximum": ad.maximum,
    "minimum": ad.minimum, "safe_divide": lambda x, y: x / (1.0 + ad.square(y)),
}
REDUCE = {"sum": ad.reduce_sum, "mean": ad.reduce_mean, "max": ad.reduce_max,
          "min": ad.reduce_min, "logsumexp": ad.reduce_logsumexp}
SIDES = st.sampled_from([0, 1, 1, 2, 3])


@st.composite
def _broadcast_partner(draw, shape):
    """A shape that broadcasts with ``shape``: a suffix of it, some axes set to 1,
    maybe leading axes added."""
    k = draw(st.integers(0, len(shape)))
    suffix = [1 if draw(st.booleans()) else d for d in shape[len(shape) - k:]]
    full = k == len(shape) and len(shape) < 3
    lead = draw(st.lists(st.sampled_from([1, 2]), max_size=1)) if full else []
    return tuple(lead + suffix)


@st.composite
def programs(draw):
    shape = tuple(draw(st.lists(SIDES, max_size=3)))
    start = shape
    extras, steps = [], []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["unary", "binary", "where", "cast", "reduce", "matmul",
                                     "reshape", "transpose"]))
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY)))))
        elif kind in ("binary", "where"):
            other = draw(_broadcast_partner(shape))
            extras.append(other)
            op = draw(st.sampled_from(sorted(BINARY))) if kind == "binary" else None
            steps.append((kind, op, len(extras) - 1))
            shape = np.broadcast_shapes(shape, other)
        elif kind == "cast":
            steps.append(("cast", draw(st.sampled_from(["float64", "int32"]))))
        elif kind == "reduce":
            if shape and draw(st.booleans()):
                axes = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
            else:
                axes = None
            keepdims = draw(st.booleans())
            reduced = range(len(shape)) if axes is None else axes
            op = draw(st.sampled_from(sorted(REDUCE)))
            if any(shape[i] == 0 for i in reduced):
                op = "sum"  # max/min/logsumexp/mean of nothing: not this test's subject
            steps.append(("reduce", op, axes, keepdims))
            shape = tuple(1 if i in reduced else d for i, d in enumerate(shape)) if keepdims \
                else tuple(d for i, d in enumerate(shape) if i not in reduced)
        elif kind == "matmul":
            if len(shape) < 2:
                shape = (1, int(np.prod(shape)))
                steps.append(("reshape", shape))
            n = draw(SIDES)
            transpose_b = draw(st.booleans())
            extras.append((n, shape[-1]) if transpose_b else (shape[-1], n))
            steps.append(("matmul", len(extras) - 1, transpose_b))
            shape = shape[:-1] + (n,)
        elif kind == "reshape":
            target = draw(st.sampled_from(["flat", "reversed", "expand"]))
            shape = {"flat": (int(np.prod(shape)),), "reversed": tuple(reversed(shape)),
                     "expand": (1,) + tuple(shape)}[target]
            steps.append(("reshape", shape))
        elif kind == "transpose":
            perm = tuple(draw(st.permutations(range(len(shape)))))
            steps.append(("transpose", perm))
            shape = tuple(shape[i] for i in perm)
    return start, extras, steps, shape


def run_program(steps, x, *extras):
    for step in steps:
        kind = step[0]
        if kind == "unary":
            x = UNARY[step[1]](x)
        elif kind == "binary":
            x = BINARY[step[1]](x, extras[step[2]])
        elif kind == "where":
            y = extras[step[2]]
            x = ad.where(x > y, x, y * 0.5)
        elif kind == "cast":
            if step[1] == "float64":
                x = ad.cast(ad.cast(x, ad.float64) * 2.0, ad.float32)
            else:  # an integer round trip: the value survives, the gradient does not
                x = ad.cast(ad.cast(x * 4.0, ad.int32), ad.float32)
        elif kind == "reduce":
            x = REDUCE[step[1]](x, axis=step[2], keepdims=step[3])
        elif kind == "matmul":
            x = ad.matmul(x, extras[step[1]], transpose_b=step[2])
        elif kind == "reshape":
            x = ad.reshape(x, step[1])
        elif kind == "transpose":
            x = ad.transpose(x, step[1])
    return x


PROGRAM_SETTINGS = settings(max_examples=60, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])


@PROGRAM_SETTINGS
@given(program=programs(), seed=st.integers(0, 2 ** 31 - 1))
def test_random_programs_traced_equal_eager(program, seed, device):
    start, extra_shapes, steps, out_shape = program
    rng = np.random.default_rng(seed)
    inputs = [ad.constant(rng.uniform(-2, 2, s).astype(np.float32)) for s in [start] + extra_shapes]
    upstream = ad.constant(rng.standard_normal(out_shape).astype(np.float32))
    what = f"program {steps} on {start} + {extra_shapes}"

    want = run_program(steps, *inputs)
    assert want.shape == tuple(out_shape), what
    f = ad.function(lambda *xs: run_program(steps, *xs))
    for _ in range(2):
        assert_same(f(*inputs), want, what)
    assert f.experimental_get_tracing_count() == 1

    def grads(*xs):
        with ad.GradientTape() as tape:
            tape.watch(list(xs))
            y = run_program(steps, *xs)
        return tape.gradient(y, list(xs), output_gradients=upstream)

    eager_grads = grads(*inputs)
    assert_same(ad.function(grads)(*inputs), eager_grads, f"{what}: tape inside")
    with ad.GradientTape() as tape:
        tape.watch(inputs)
        y = f(*inputs)
    assert_same(tape.gradient(y, inputs, output_gradients=upstream), eager_grads,
                f"{what}: tape outside")


# =====================================================================================
# 3. retracing rules, signatures, the concrete function, the compile log, methods
# =====================================================================================

def test_same_shapes_and_dtypes_trace_once(device):
    @ad.function
    def f(x, y):
        return ad.reduce_sum(x * y) + 1.0

    for k in range(4):
        x = ad.constant(np.arange(3, dtype=np.float32) + k)
        y = ad.constant(np.full(3, 2.0, np.float32))
        assert float(f(x, y)) == float(np.sum((np.arange(3) + k) * 2.0) + 1.0)
    assert f.experimental_get_tracing_count() == 1


def test_new_shape_or_dtype_traces_again_and_old_signatures_replay(device):
    @ad.function
    def f(x):
        return x + x

    calls = [ad.constant([1.0, 2.0]), ad.constant([1.0, 2.0, 3.0]), ad.constant([[1.0, 2.0]]),
             ad.constant(np.array([1.0, 2.0])), ad.constant([1, 2])]
    for n, x in enumerate(calls, 1):
        y = f(x)
        assert y.dtype == x.dtype and y.shape == x.shape and y.device == device
        np.testing.assert_array_equal(y.numpy(), x.numpy() * 2)
        assert f.experimental_get_tracing_count() == n
    for x in calls:  # every signature seen: replays only
        np.testing.assert_array_equal(f(x).numpy(), x.numpy() * 2)
    assert f.experimental_get_tracing_count() == len(calls)


@pytest.mark.skipif(len(devices.available()) < 2, reason="needs two devices")
def test_new_device_traces_again():
    first, second = devices.available()[:2]

    @ad.function
    def f(x):
        return ad.exp(x) + 1.0

    outs = []
    for name in (first, second, first, second):
        with ad.device(name):
            x = ad.constant([0.0, 1.0])
            y = f(x)
            assert y.device == name
            outs.append(y.numpy())
    assert f.experimental_get_tracing_count() == 2
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-6)


def test_python_arguments_trace_once_per_value(device):
    @ad.function
    def f(x, n, scale=1.0):
        for _ in range(n):  # a Python loop with a Python bound: unrolled
            x = x * scale
        return x

    x = ad.constant([1.0, 2.0])
    assert f(x, 2, 2.0).numpy().tolist() == [4.0, 8.0]
    assert f(x, 3, 2.0).numpy().tolist() == [8.0, 16.0]
    assert f(x, 2, scale=3.0).numpy().tolist() == [9.0, 18.0]
    assert f.experimental_get_tracing_count() == 3
    assert f(x, 2, 2.0).numpy().tolist() == [4.0, 8.0]
    assert f(x * 2.0, 3, 2.0).numpy().tolist() == [16.0, 32.0]
    assert f.experimental_get_tracing_count() == 3


def test_python_side_effects_run_only_while_tracing(device):
    log = []

    @ad.function
    def f(x):
        log.append(x.shape)
        return x + 1.0

    for _ in range(3):
        f(ad.constant([1.0]))
    assert log == [(1,)]
    for _ in range(2):
        f(ad.constant([1.0, 2.0]))
    assert log == [(1,), (2,)]
    assert f.experimental_get_tracing_count() == 2


def test_input_signature_accepts_any_length(device):
    @ad.function(input_signature=[ad.TensorSpec([None], ad.float32)])
    def f(x):
        return ad.reduce_sum(x * x)

    for n in (0, 1, 3, 5, 3):
        x = ad.constant(np.arange(n, dtype=np.float32))
        assert float(f(x)) == float(np.sum(np.arange(n) ** 2))
    # gpuad's plans are specialised to shapes (function.py): each new length traces
    # once, a length seen before replays
    assert f.experimental_get_tracing_count() <= 4


def test_input_signature_converts_python_lists(device):
    @ad.function(input_signature=[ad.TensorSpec([None], ad.float32)])
    def f(x):
        return x * 2.0

    y = f([1.0, 2.0, 3.0])
    assert y.dtype == ad.float32 and y.numpy().tolist() == [2.0, 4.0, 6.0]
    assert f([1, 2]).numpy().tolist() == [2.0, 4.0]  # ints converted to the spec's dtype


@pytest.mark.parametrize("bad", [lambda: ad.constant([1, 2, 3]),             # int32
                                 lambda: ad.constant(np.array([1.0, 2.0])),  # float64
                                 lambda: ad.constant([[1.0, 2.0]]),          # rank 2
                                 lambda: ad.constant(1.0)],                  # rank 0
                         ids=["int32", "float64", "rank2", "rank0"])
def test_input_signature_rejects_wrong_dtype_or_rank(bad, device):
    @ad.function(input_signature=[ad.TensorSpec([None], ad.float32)])
    def my_signed_function(x):
        return x * 2.0

    with pytest.raises(TypeError, match="my_signed_function") as info:
        my_signed_function(bad())
    assert "TensorSpec" in str(info.value)
    assert my_signed_function.experimental_get_tracing_count() == 0
    with pytest.raises(TypeError, match="my_signed_function"):
        my_signed_function(ad.constant([1.0]), ad.constant([2.0]))  # too many arguments


def test_python_function_is_the_undecorated_function(device):
    def plain(x):
        return x + 1.0

    f = ad.function(plain)
    assert f.python_function is plain
    assert f.__name__ == "plain"
    assert float(f.python_function(ad.constant(1.0))) == 2.0
    assert f.experimental_get_tracing_count() == 0


def test_get_concrete_function_with_tensors_and_specs(device):
    @ad.function
    def f(x, y):
        return ad.reduce_sum(ad.exp(x) * y, axis=1)

    spec = f.get_concrete_function(ad.TensorSpec([2, 3], ad.float32), ad.TensorSpec([2, 3], ad.float32))
    assert f.experimental_get_tracing_count() == 1
    x = ad.constant(np.ones((2, 3), np.float32))
    y = ad.constant(np.full((2, 3), 2.0, np.float32))
    assert f.get_concrete_function(x, y) is spec  # the same signature: no new trace
    assert f.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(spec(x, y).numpy(), [6 * np.e] * 2, rtol=1e-6)
    f(x, y)
    assert f.experimental_get_tracing_count() == 1
    other = f.get_concrete_function(ad.TensorSpec([1, 3], ad.float32), ad.constant(np.ones((1, 3), np.float32)))
    assert other is not spec and f.experimental_get_tracing_count() == 2

    text = str(spec.graph)
    for op in ("exp", "multiply", "reduce_sum"):
        assert op in text, text
    assert "def replay" in spec.replay_source


def test_printing_the_graph_shows_the_ops(device, capsys):
    @ad.function
    def f(x):
        return ad.tanh(ad.matmul(x, x, transpose_b=True))

    print(f.get_concrete_function(ad.TensorSpec([2, 2], ad.float32)).graph)
    out = capsys.readouterr().out
    assert "matmul" in out and "tanh" in out and "float32[2, 2]" in out


def test_common_subexpressions_and_dead_code_are_removed(device):
    @ad.function
    def f(x):
        unused = ad.exp(x) * 3.0  # noqa: F841  (dead)
        return ad.sin(x) + ad.sin(x)

    graph = f.get_concrete_function(ad.TensorSpec([3], ad.float32)).graph
    names = [n.prim.name for n in graph.nodes]
    assert names.count("sin") == 1 and "exp" not in names, str(graph)
    x = ad.constant([0.1, 0.2, 0.3])
    np.testing.assert_allclose(f(x).numpy(), 2 * np.sin(x.numpy()), rtol=1e-6)


def test_compile_log_names_each_trace_and_its_reason(device, monkeypatch, caplog):
    @ad.function
    def logged_function(x, n):
        return x * n

    monkeypatch.delenv("GPUAD_LOG_COMPILES", raising=False)
    with caplog.at_level(logging.INFO, logger="gpuad"):
        logged_function(ad.constant(1.0), 1)
    assert "logged_function" not in caplog.text  # off by default

    monkeypatch.setenv("GPUAD_LOG_COMPILES", "1")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gpuad"):
        logged_function(ad.constant(1.0), 1)          # a replay: nothing logged
        assert caplog.records == []
        logged_function(ad.constant([1.0, 2.0]), 1)   # new shape
        logged_function(ad.constant(1.0), 7)          # new Python value
    records = [r for r in caplog.records if r.name == "gpuad"]
    assert len(records) == 2, caplog.text
    assert all("logged_function" in r.getMessage() for r in records)
    assert "shape [2]" in records[0].getMessage()
    assert "Python argument" in records[1].getMessage() and "7" in records[1].getMessage()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gpuad"):
        logged_function.python_function(ad.constant(1.0), 3)  # eager: no trace, no log
    assert caplog.records == []


def test_compile_log_reason_is_what_changed(device, monkeypatch, caplog):
    @ad.function
    def logged_function(x, n):
        return x * n

    monkeypatch.setenv("GPUAD_LOG_COMPILES", "1")
    logged_function(ad.constant(1.0), 1)
    logged_function(ad.constant([1.0, 2.0]), 1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gpuad"):
        logged_function(ad.constant([1.0, 2.0]), 2)  # only n is new
    (record,) = caplog.records
    assert "Python argument" in record.getMessage(), record.getMessage()


class Scaler(ad.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = ad.Variable(scale)
        self.traces = 0

    @ad.function
    def __call__(self, x):
        self.traces += 1
        return x * self.scale


def test_method_decoration_works_per_instance(device):
    a, b = Scaler(2.0), Scaler(3.0)
    x = ad.constant([1.0, 2.0])
    for _ in range(3):
        assert a(x).numpy().tolist() == [2.0, 4.0]
        assert b(x).numpy().tolist() == [3.0, 6.0]
    assert (a.traces, b.traces) == (1, 1)
    assert a.__call__.experimental_get_tracing_count() == 1
    assert [v.name for v in a.trainable_variables] == [a.scale.name]
    a.scale.assign(10.0)  # the variable is read when the plan runs
    assert a(x).numpy().tolist() == [10.0, 20.0]
    with ad.GradientTape() as tape:
        y = ad.reduce_sum(b(x))
    assert float(tape.gradient(y, b.scale)) == 3.0


# =====================================================================================
# 4. variables and optimizers inside
# =====================================================================================

def _regression_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32) + 0.25
         + 0.1 * rng.standard_normal((32, 1)).astype(np.float32))
    return ad.constant(x), ad.constant(y)


def _mlp_params():
    rng = np.random.default_rng(1)
    return [ad.Variable(rng.standard_normal((4, 8)).astype(np.float32) * 0.3, name="w1"),
            ad.Variable(np.zeros(8, np.float32), name="b1"),
            ad.Variable(rng.standard_normal((8, 1)).astype(np.float32) * 0.3, name="w2"),
            ad.Variable(np.zeros(1, np.float32), name="b2")]


def _loss(params, x, y):
    w1, b1, w2, b2 = params
    h = ad.tanh(ad.matmul(x, w1) + b1)
    return ad.reduce_mean(ad.square(ad.matmul(h, w2) + b2 - y))


def _train(make_optimizer, compiled, style, steps=1000):
    x, y = _regression_data()
    params = _mlp_params()
    opt = make_optimizer()

    def step(x, y):
        if style == "apply_gradients":
            with ad.GradientTape() as tape:
                loss = _loss(params, x, y)
            grads = tape.gradient(loss, params)
            opt.apply_gradients(zip(grads, params))
            return loss
        opt.minimize(lambda: _loss(params, x, y), params)
        return _loss(params, x, y)

    fn = ad.function(step) if compiled else step
    losses = [fn(x, y) for _ in range(steps)]
    if compiled:
        assert fn.experimental_get_tracing_count() == 1
    return [p.numpy() for p in params], np.array([float(v) for v in losses]), opt


OPTIMIZERS = {
    "sgd_momentum": lambda: ad.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "sgd_nesterov": lambda: ad.optimizers.SGD(learning_rate=0.02, momentum=0.9, nesterov=True),
    "adam": lambda: ad.optimizers.Adam(learning_rate=0.01),
    "adam_exponential_decay": lambda: ad.optimizers.Adam(learning_rate=ad.schedules.ExponentialDecay(
        0.02, decay_steps=100, decay_rate=0.5)),
}


@pytest.mark.parametrize("optimizer, style", [(name, "apply_gradients") for name in sorted(OPTIMIZERS)]
                         + [("adam", "minimize")])
def test_compiled_training_loop_equals_eager(optimizer, style, device):
    eager_params, eager_losses, eager_opt = _train(OPTIMIZERS[optimizer], False, style)
    params, losses, opt = _train(OPTIMIZERS[optimizer], True, style)
    assert int(opt.iterations) == int(eager_opt.iterations) == 1000
    assert eager_losses[-1] < 0.5 * eager_losses[0]  # it trained
    # Fused kernels on the cpu call the C library's tanh/exp where NumPy uses its
    # own SIMD code (a few ulps apart); over 1000 steps that may grow to a few
    # 1e-6. Without fusion the compiled loop is bit-exact (the next test).
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5, atol=1e-6)
    for p, e in zip(params, eager_params):
        np.testing.assert_allclose(p, e, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_compiled_training_loop_without_fusion_is_bit_exact(optimizer, device, monkeypatch):
    monkeypatch.setenv("GPUAD_FUSION", "0")
    eager_params, eager_losses, _ = _train(OPTIMIZERS[optimizer], False, "apply_gradients")
    params, losses, _ = _train(OPTIMIZERS[optimizer], True, "apply_gradients")
    np.testing.assert_array_equal(losses, eager_losses)
    for p, e in zip(params, eager_params):
        np.testing.assert_array_equal(p, e)


def test_learning_rate_schedule_advances_per_replay(device):
    schedule = ad.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    opt = ad.optimizers.SGD(learning_rate=schedule)
    v = ad.Variable(0.0)

    @ad.function
    def step(g):
        opt.apply_gradients([(g, v)])

    for k in range(5):
        step(ad.constant(-1.0))  # v += lr_k, lr_k = 0.5 ** k
        assert int(opt.iterations) == k + 1
        assert float(v) == pytest.approx(sum(0.5 ** j for j in range(k + 1)), rel=1e-6)
    assert step.experimental_get_tracing_count() == 1


def test_changing_the_learning_rate_between_replays_is_seen(device):
    opt = ad.optimizers.SGD(learning_rate=1.0)
    v = ad.Variable(0.0)

    @ad.function
    def step():
        opt.apply_gradients([(ad.constant(-1.0), v)])

    step()
    opt.learning_rate = 0.25
    step()
    assert float(v) == 1.25


def test_assigns_inside_replay_on_every_call(device):
    v = ad.Variable([1.0, 2.0])
    counter = ad.Variable(0, trainable=False)

    @ad.function
    def update(delta):
        v.assign_add(delta)
        v.assign_sub(delta * 0.5)
        counter.assign_add(1)
        return v.read_value() * 1.0

    for k in range(1, 4):
        out = update(ad.constant([2.0, 4.0]))
        np.testing.assert_array_equal(out.numpy(), [1.0 + k, 2.0 + 2 * k])
        np.testing.assert_array_equal(v.numpy(), [1.0 + k, 2.0 + 2 * k])
        assert int(counter) == k
    assert update.experimental_get_tracing_count() == 1

    @ad.function
    def reset(value):
        v.assign(value)

    reset(ad.constant([5.0, 6.0]))
    np.testing.assert_array_equal(v.numpy(), [5.0, 6.0])
    reset(ad.constant([7.0, 8.0]))
    np.testing.assert_array_equal(v.numpy(), [7.0, 8.0])


def test_reads_and_writes_keep_their_order(device):
    v = ad.Variable(1.0)

    @ad.function
    def f():
        before = v.read_value() * 1.0
        v.assign(v * 3.0)
        after = v.read_value() * 1.0
        v.assign_add(1.0)
        return before, after, v * 1.0

    assert [float(t) for t in f()] == [1.0, 3.0, 4.0]
    assert [float(t) for t in f()] == [4.0, 12.0, 13.0]


def test_a_variable_changed_outside_is_seen_by_the_next_replay(device):
    w = ad.Variable([[1.0, 2.0], [3.0, 4.0]])

    @ad.function
    def f(x):
        return ad.matmul(x, w)

    x = ad.constant([[1.0, 1.0]])
    assert f(x).numpy().tolist() == [[4.0, 6.0]]
    w.assign([[0.0, 1.0], [1.0, 0.0]])
    assert f(x).numpy().tolist() == [[1.0, 1.0]]
    w.assign_add(ad.ones((2, 2)))
    assert f(x).numpy().tolist() == [[3.0, 3.0]]
    ad.optimizers.SGD(learning_rate=1.0).apply_gradients([(ad.ones((2, 2)), w)])
    assert f(x).numpy().tolist() == [[1.0, 1.0]]
    assert f.experimental_get_tracing_count() == 1


def test_a_variable_argument_is_read_when_the_plan_runs(device):
    @ad.function
    def f(v, x):
        return v * x

    v = ad.Variable(2.0)
    x = ad.constant(3.0)
    assert float(f(v, x)) == 6.0
    v.assign(5.0)
    assert float(f(v, x)) == 15.0
    assert float(f(ad.Variable(1.0), x)) == 3.0  # another variable: its own trace
    assert f.experimental_get_tracing_count() == 2


def _draws(fn, n):
    return [fn().numpy() for _ in range(n)]


def test_random_numbers_differ_between_calls_and_follow_the_seed(device):
    def draw():
        return (ad.random.normal((3,)) + ad.random.uniform((2,), seed=7)[0],
                ad.random.uniform((2, 2), minval=-1.0, maxval=1.0))

    f = ad.function(draw)
    ad.random.set_seed(42)
    eager = [[t.numpy() for t in draw()] for _ in range(3)]
    ad.random.set_seed(42)
    traced = [[t.numpy() for t in f()] for _ in range(3)]
    assert f.experimental_get_tracing_count() == 1
    for e, t in zip(eager, traced):
        for a, b in zip(e, t):
            np.testing.assert_array_equal(b, a)
    assert not np.array_equal(traced[0][0], traced[1][0])
    assert not np.array_equal(traced[1][1], traced[2][1])


def test_dropout_inside_a_compiled_step_follows_the_seed(device):
    x = ad.ones((4, 8))

    def f(x):
        return ad.nn.dropout(x, rate=0.5) * 2.0

    g = ad.function(f)
    ad.random.set_seed(3)
    eager = [f(x).numpy() for _ in range(3)]
    ad.random.set_seed(3)
    traced = [g(x).numpy() for _ in range(3)]
    for e, t in zip(eager, traced):
        np.testing.assert_array_equal(t, e)
    assert not np.array_equal(traced[0], traced[1])


# =====================================================================================
# 5. differentiating through a call
# =====================================================================================

def _model(x, w, b):
    return ad.reduce_sum(ad.nn.softplus(ad.matmul(x, w) + b) * x[:, :1])


def test_outer_tape_gradient_equals_eager(device, rng):
    x = ad.constant(rng.standard_normal((3, 4)).astype(np.float32))
    w = ad.Variable(rng.standard_normal((4, 2)).astype(np.float32))
    b = ad.Variable(np.zeros(2, np.float32))
    f = ad.function(_model)

    with ad.GradientTape() as tape:
        tape.watch(x)
        y = _model(x, w, b)
    want = tape.gradient(y, [x, w, b])
    for _ in range(2):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = f(x, w, b)
        assert_same(tape.gradient(y, [x, w, b]), want, "tensor args and variable args")


def test_variables_read_inside_are_auto_watched(device, rng):
    w = ad.Variable(rng.standard_normal((4, 2)).astype(np.float32))
    b = ad.Variable(np.ones(2, np.float32))
    frozen = ad.Variable(np.full(2, 2.0, np.float32), trainable=False)
    x = ad.constant(rng.standard_normal((3, 4)).astype(np.float32))

    def model(x):
        return ad.reduce_sum(ad.tanh(ad.matmul(x, w) + b) * frozen)

    f = ad.function(model)
    with ad.GradientTape() as tape:
        y = model(x)
    want = tape.gradient(y, [w, b, frozen, x])
    assert want[2] is None and want[3] is None  # not trainable / not watched
    with ad.GradientTape() as tape:
        y = f(x)
    assert {v.name for v in tape.watched_variables()} == {w.name, b.name}
    assert_same(tape.gradient(y, [w, b, frozen, x]), want)

    with ad.GradientTape(watch_accessed_variables=False) as tape:
        y = f(x)
    assert tape.gradient(y, [w, b]) == [None, None]


def test_second_and_third_order_through_a_call(device):
    f = ad.function(lambda x: x ** 3 + ad.sin(x))
    x = ad.constant([0.5, 2.0])
    with ad.GradientTape() as t3:
        t3.watch(x)
        with ad.GradientTape() as t2:
            t2.watch(x)
            with ad.GradientTape() as t1:
                t1.watch(x)
                y = f(x)
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    xv = x.numpy()
    np.testing.assert_allclose(d1.numpy(), 3 * xv ** 2 + np.cos(xv), rtol=1e-6)
    np.testing.assert_allclose(d2.numpy(), 6 * xv - np.sin(xv), rtol=1e-6)
    np.testing.assert_allclose(d3.numpy(), 6 - np.cos(xv), rtol=1e-6)


def test_gradient_computed_inside_a_function_is_differentiable_outside(device):
    @ad.function
    def grad_of_cube(x):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = x ** 3
        return tape.gradient(y, x)

    x = ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        g = grad_of_cube(x)
    assert float(g) == 12.0
    assert float(tape.gradient(g, x)) == 12.0  # d(3x^2)/dx = 6x


def test_a_function_called_inside_another_is_inlined(device):
    @ad.function
    def inner(x):
        return ad.exp(x) * 2.0

    @ad.function
    def outer(x):
        return ad.reduce_sum(inner(x) + inner(x * 3.0))

    x = ad.constant([0.1, 0.2])
    want = np.sum(2 * np.exp(x.numpy()) + 2 * np.exp(3 * x.numpy()))
    for _ in range(2):
        np.testing.assert_allclose(float(outer(x)), want, rtol=1e-6)
    assert outer.experimental_get_tracing_count() == 1
    assert inner.experimental_get_tracing_count() == 0  # never traced on its own
    names = [n.prim.name for n in outer.get_concrete_function(x).graph.nodes]
    assert names.count("exp") == 2
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = outer(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(),
                               2 * np.exp(x.numpy()) + 6 * np.exp(3 * x.numpy()), rtol=1e-6)


def test_several_outputs_and_nested_results(device):
    @ad.function
    def f(x, y):
        return {"sum": x + y, "pair": (x * y, ad.reduce_sum(x)), "label": "static", "n": 3}

    x, y = ad.constant([1.0, 2.0]), ad.constant([3.0, 5.0])
    out = f(x, y)
    assert out["label"] == "static" and out["n"] == 3
    assert out["sum"].numpy().tolist() == [4.0, 7.0]
    assert out["pair"][0].numpy().tolist() == [3.0, 10.0] and float(out["pair"][1]) == 3.0

    with ad.GradientTape(persistent=True) as tape:
        tape.watch([x, y])
        out = f(x, y)
    gx, gy = tape.gradient([out["sum"], out["pair"][0]], [x, y])  # several targets
    assert gx.numpy().tolist() == [4.0, 6.0] and gy.numpy().tolist() == [2.0, 3.0]
    gx, gy = tape.gradient(out["pair"][1], [x, y])  # one output of several
    assert gx.numpy().tolist() == [1.0, 1.0] and gy is None


def test_unconnected_outputs_and_sources_give_none(device):
    c = ad.constant([1.0, 1.0])

    @ad.function
    def f(x, y, unused):
        return x * 2.0, c * 3.0, ad.argmax(y), ad.cast(ad.cast(y, ad.int32), ad.float32)

    x, y, unused = ad.constant([1.0, 2.0]), ad.constant([3.0, 4.0]), ad.constant(0.0)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch([x, y, unused])
        a, b, i, cut = f(x, y, unused)
    assert tape.gradient(a, [x, y, unused])[1:] == [None, None]
    assert tape.gradient(b, [x, y, unused]) == [None, None, None]
    assert tape.gradient(cut, [x, y]) == [None, None]
    assert i.dtype == ad.int64 and int(i) == 1
    zeros = tape.gradient(b, x, unconnected_gradients="zero")
    assert zeros.numpy().tolist() == [0.0, 0.0]


@pytest.mark.parametrize("effect", ["assign_add", "optimizer", "random"])
def test_differentiating_an_effectful_function_from_outside_raises(effect, device):
    # The call runs under the tape as it would without one; asking for a gradient
    # through it raises (its backward would redo the effects), never a wrong value.
    v = ad.Variable(1.0)
    opt = ad.optimizers.SGD(learning_rate=0.1)

    @ad.function
    def effectful(x):
        if effect == "assign_add":
            v.assign_add(1.0)
        elif effect == "optimizer":
            opt.apply_gradients([(ad.constant(1.0), v)])
        else:
            x = x * ad.random.normal(())
        return x * 2.0

    x = ad.constant(3.0)
    assert float(effectful(x)) != 0.0  # no tape: runs
    before = float(v)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = effectful(x)
    assert float(v) != before or effect == "random"  # the call ran, effects included
    after = float(v)
    with pytest.raises(NotImplementedError, match="random numbers or changes variables"):
        tape.gradient(y, x)
    assert float(v) == after  # the refused gradient ran nothing
    # no tape watches anything it reads: nothing to differentiate, so it runs
    with ad.GradientTape():
        effectful(x)


def test_an_effectful_function_with_the_tape_inside_is_fine(device):
    v = ad.Variable(2.0)
    opt = ad.optimizers.SGD(learning_rate=0.5)

    @ad.function
    def step(x):
        with ad.GradientTape() as tape:
            loss = ad.square(v * x)
        g = tape.gradient(loss, v)
        opt.apply_gradients([(g, v)])
        return g

    assert float(step(ad.constant(1.0))) == 4.0   # g = 2 v x^2
    assert float(v) == 0.0


def test_the_same_tensor_as_two_arguments_and_an_identity_function(device):
    x = ad.constant([1.0, 2.0])
    product = ad.function(lambda a, b: a * b)
    identity = ad.function(lambda a: a)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = product(x, x)
        z = identity(x)
    assert tape.gradient(y, x).numpy().tolist() == [2.0, 4.0]
    assert tape.gradient(z, x).numpy().tolist() == [1.0, 1.0]
    assert z.numpy().tolist() == [1.0, 2.0]


def test_jacobian_and_output_gradients_through_a_call(device):
    f = ad.function(lambda x: x * x)
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = f(x)
    np.testing.assert_array_equal(tape.jacobian(y, x).numpy(), [[2.0, 0.0], [0.0, 4.0]])
    weighted = tape.gradient(y, x, output_gradients=ad.constant([10.0, 100.0]))
    assert weighted.numpy().tolist() == [20.0, 400.0]


def test_keyword_nested_and_numpy_arguments(device):
    diff = ad.function(lambda a, b: a - b)
    x = ad.constant([1.0, 2.0])
    assert diff(a=x, b=x * 3.0).numpy().tolist() == [-2.0, -4.0]
    assert diff(b=x * 3.0, a=x).numpy().tolist() == [-2.0, -4.0]
    assert diff(x, b=x).numpy().tolist() == [0.0, 0.0]

    nested = ad.function(lambda d: d["a"] * d["b"][0] + d["b"][1])
    assert nested({"a": x, "b": [x + 1.0, 0.5]}).numpy().tolist() == [2.5, 6.5]
    assert nested({"a": x, "b": (x + 1.0, 0.5)}).numpy().tolist() == [2.5, 6.5]

    double = ad.function(lambda a: a * 2.0)
    assert double(np.array([1.0, 2.0], np.float32)).numpy().tolist() == [2.0, 4.0]
    assert double(np.array([3.0, 4.0], np.float32)).numpy().tolist() == [6.0, 8.0]
    assert double.experimental_get_tracing_count() == 1  # arrays: by shape and dtype
    assert double(2.0) == 4.0  # a Python number stays a Python value (static)


def test_autodiff_features_inside_a_function(device, rng):
    x = ad.constant(rng.standard_normal((2, 3)).astype(np.float32))

    def features(x):
        with ad.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = x * x
            with tape.stop_recording():
                frozen = y * 3.0
            z = ad.exp(y) + frozen
        return (tape.gradient(z, x), tape.jacobian(ad.tanh(x), x),
                ad.grad(lambda a: ad.reduce_sum(a ** 3))(x),
                tape.gradient(frozen, x, unconnected_gradients="zero"))

    assert_same(ad.function(features)(x), features(x))


def test_stop_gradient_inside_a_function(device):
    x = ad.constant([1.0, 2.0])

    def f(x):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = ad.stop_gradient(x * x) * x
        return y, tape.gradient(y, x)

    assert_same(ad.function(f)(x), f(x))


def test_stop_gradient_of_a_variable_reads_it_per_replay(device):
    v = ad.Variable([1.0, 2.0])
    f = ad.function(lambda: ad.stop_gradient(v) * 1.0)
    assert f().numpy().tolist() == [1.0, 2.0]
    v.assign([10.0, 20.0])
    assert f().numpy().tolist() == [10.0, 20.0]


def test_custom_gradient_inside_a_function(device):
    @ad.custom_gradient
    def halve_gradient(a):
        return a * 1.0, lambda dy: dy * 0.5

    x = ad.constant([1.0, 2.0])
    f = ad.function(lambda a: halve_gradient(a) * 2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    assert y.numpy().tolist() == [2.0, 4.0]
    assert tape.gradient(y, x).numpy().tolist() == [1.0, 1.0]


def test_returned_reads_and_views_keep_their_values_across_updates(device):
    """A replay returns a variable's value (or a view of it); later in-place
    optimizer steps (cuda, emulated), eager or compiled, must not change it."""
    v = ad.Variable(np.arange(6, dtype=np.float32))
    opt = ad.optimizers.SGD(learning_rate=1.0)
    view = ad.function(lambda: ad.reshape(v, (2, 3)))
    read = ad.function(lambda: v.read_value())
    step = ad.function(lambda d: opt.apply_gradients([(d, v)]))

    @ad.function
    def view_then_step(d):
        r = ad.reshape(v, (3, 2))
        opt.apply_gradients([(d, v)])
        return r

    a, b = view(), read()
    step(ad.ones(6))
    opt.apply_gradients([(ad.ones(6), v)])
    np.testing.assert_array_equal(a.numpy().ravel(), np.arange(6))
    np.testing.assert_array_equal(b.numpy(), np.arange(6))
    r1 = view_then_step(ad.ones(6))
    r2 = view_then_step(ad.ones(6))
    np.testing.assert_array_equal(r1.numpy().ravel(), np.arange(6) - 2)
    np.testing.assert_array_equal(r2.numpy().ravel(), np.arange(6) - 3)
    np.testing.assert_array_equal(v.numpy(), np.arange(6) - 4)


# =====================================================================================
# 6. a replay makes no host transfer, and no allocation or launch beyond eager's
# =====================================================================================
#
# Kernel devices (emulated, cuda) count host<->device copies (``dev.transfers``, as
# tests/test_transfers.py uses). Allocations and launches are counted at the
# launcher, the layer every kernel device's buffers and kernels go through:
# ``launcher.empty`` (every new buffer: results and scratch) and ``launcher.launch`` /
# ``launcher.matmul`` (every kernel). A replay runs the graph's kernels on buffers,
# so it must make at most the launches of an eager run of the same function (exactly
# them where nothing folds or merges) and at most its allocations (never more: no copies of arguments, no re-uploaded
# constants). The cpu device has no such counters (its "kernels" are NumPy calls):
# there the same property is checked on the graph (one kernel call per node).

def _kernel_device(device):
    dev = devices.get(device)
    if not hasattr(dev, "transfers"):
        pytest.skip(f"{device} has no transfer counter (not a kernel device)")
    return dev


class _Counts:
    def __init__(self, dev, monkeypatch):
        self.dev = dev
        self.allocations = self.launches = 0
        launcher = dev.launcher
        real_empty, real_launch, real_matmul = launcher.empty, launcher.launch, launcher.matmul

        def empty(*a, **k):
            self.allocations += 1
            return real_empty(*a, **k)

        def launch(*a, **k):
            self.launches += 1
            return real_launch(*a, **k)

        def matmul(*a, **k):
            self.launches += 1
            return real_matmul(*a, **k)

        monkeypatch.setattr(launcher, "empty", empty)
        monkeypatch.setattr(launcher, "launch", launch)
        monkeypatch.setattr(launcher, "matmul", matmul)

    def measure(self, fn):
        a, k, t = self.allocations, self.launches, self.dev.transfers
        out = fn()
        return out, (self.allocations - a, self.launches - k, self.dev.transfers - t)


def _forward(x, w):
    h = ad.nn.relu(ad.matmul(x, w) + 0.5)
    return ad.reduce_sum(ad.transpose(h) * ad.sigmoid(h[:, 0]), axis=1) * 2.0


def _chain_gradient(x):
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.reduce_sum(ad.tanh(x * 1.5 + 0.25) * x - ad.square(x) * 0.5)
    return tape.gradient(y, x)


@pytest.mark.parametrize("size", [4, 1 << 15], ids=["fused", "libm-unfused"])
def test_a_steady_state_replay_allocates_only_its_outputs(size, rng, monkeypatch):
    """Memory planning on the cpu: after the first calls, a replay's intermediate
    values live in the plan's reused buffers; NumPy allocates only the result
    (tracemalloc sees every NumPy data allocation)."""
    import tracemalloc
    x = ad.constant(rng.standard_normal(size).astype(np.float32))
    f = ad.function(_chain_gradient)
    for _ in range(3):
        want = _chain_gradient(x)
        got = f(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    domain = np.lib.tracemalloc_domain
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = f(x)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del domain
    # the result's bytes, plus small change (Python objects, NumPy 0-d scalars)
    assert out.numpy().nbytes <= peak <= out.numpy().nbytes + 4096, peak


def test_a_replay_makes_no_transfer_and_only_the_eager_kernels(device, monkeypatch, rng):
    """(Device graphs off: with them the kernels run inside one graph launch, which
    tests/compiler/test_graphs.py counts.)"""
    dev = _kernel_device(device)
    monkeypatch.setenv("GPUAD_CUDA_GRAPHS", "0")
    x = ad.constant(rng.standard_normal((8, 4)).astype(np.float32))
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    f = ad.function(_forward)
    f(x, w)        # traces (and compiles the kernels)
    _forward(x, w)  # eager warm-up: Python constants made on the device once
    counts = _Counts(dev, monkeypatch)
    want, (eager_allocs, eager_launches, eager_transfers) = counts.measure(lambda: _forward(x, w))
    got, (allocs, launches, transfers) = counts.measure(lambda: f(x, w))
    assert eager_transfers == 0
    assert transfers == 0
    assert 0 < launches < eager_launches  # element-wise runs fused into generated kernels
    assert allocs <= eager_allocs, (allocs, eager_allocs)
    assert_same(got, want)
    monkeypatch.setenv("GPUAD_FUSION", "0")  # unfused: exactly the eager kernels
    unfused = ad.function(_forward)
    unfused(x, w)
    got, (allocs, launches, transfers) = counts.measure(lambda: unfused(x, w))
    assert transfers == 0
    assert launches == eager_launches
    assert_same(got, want)


@pytest.mark.parametrize("make_optimizer", [lambda: ad.optimizers.SGD(0.05, momentum=0.9),
                                            lambda: ad.optimizers.Adam(ad.schedules.ExponentialDecay(
                                                0.01, 10, 0.9))], ids=["sgd_momentum", "adam"])
def test_a_compiled_training_step_makes_no_transfer(make_optimizer, device, monkeypatch):
    dev = _kernel_device(device)
    x, y = _regression_data()

    def make_step():
        params, opt = _mlp_params(), make_optimizer()

        def step(x, y):
            with ad.GradientTape() as tape:
                loss = _loss(params, x, y)
            opt.apply_gradients(zip(tape.gradient(loss, params), params))
            return loss
        return step

    eager, compiled = make_step(), ad.function(make_step())
    for _ in range(3):  # (the third call captures the step's device graphs)
        eager(x, y)
        compiled(x, y)
    counts = _Counts(dev, monkeypatch)
    for _ in range(3):
        want, (eager_allocs, eager_launches, eager_transfers) = counts.measure(lambda: eager(x, y))
        got, (allocs, launches, transfers) = counts.measure(lambda: compiled(x, y))
        assert eager_transfers == transfers == 0
        assert 0 < launches <= eager_launches  # (folding and CSE may remove some)
        assert allocs <= eager_allocs, (allocs, eager_allocs)
        assert_same(got, want)
    assert compiled.experimental_get_tracing_count() == 1


def test_a_replay_runs_one_kernel_per_graph_node(device, monkeypatch, rng):
    """On every device: the replay calls each node's kernel once, and nothing else
    (no ``bind``, no shape rule, no tape bookkeeping when no tape is active)."""
    x = ad.constant(rng.standard_normal((8, 4)).astype(np.float32))
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    f = ad.function(_forward)
    f(x, w)
    concrete = f.get_concrete_function(x, w)
    nodes = [n.prim for n in concrete.graph.nodes]
    calls = []
    for prim in set(nodes):
        real = prim.kernel(devices.get(device))

        def counting(*a, _real=real, _name=prim.name, **k):
            calls.append(_name)
            return _real(*a, **k)
        monkeypatch.setitem(prim.kernels, devices.get(device), counting)
    binds = []
    real_bind = core.bind
    monkeypatch.setattr(core, "bind", lambda *a, **k: binds.append(a[0]) or real_bind(*a, **k))
    # the replay was built with the kernels resolved: build a new one over the counters
    from gpuad.compiler.replay import build_replay
    replay, _, memory = build_replay(concrete.graph, plan=False)  # (no fused kernels either)
    assert memory == []
    outs = replay(x._data, w._data)
    assert sorted(calls) == sorted(p.name for p in nodes)
    assert binds == []
    assert_same(outs[0], _forward(x, w))


# =====================================================================================
# 7. errors
# =====================================================================================

def test_branching_on_a_traced_value_points_to_cond(device):
    @ad.function
    def branchy_function(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(TracingError, match="branchy_function") as info:
        branchy_function(ad.constant(1.0))
    assert isinstance(info.value, TypeError)
    assert "gpuad.cond" in str(info.value) and "gpuad.while_loop" in str(info.value)
    assert branchy_function.experimental_get_tracing_count() == 0
    assert float(branchy_function.python_function(ad.constant(-2.0))) == 2.0  # eagerly: fine


def test_a_while_loop_on_a_traced_value_points_to_while_loop(device):
    @ad.function
    def loopy(x):
        while ad.reduce_sum(x) < 10.0:
            x = x * 2.0
        return x

    with pytest.raises(TracingError, match="gpuad.while_loop") as info:
        loopy(ad.constant([1.0]))
    assert "loopy" in str(info.value)


@pytest.mark.parametrize("read", [
    lambda x: float(x), lambda x: int(x), lambda x: bool(x), lambda x: x.numpy(),
    lambda x: np.asarray(x), lambda x: [10, 20, 30][ad.cast(x, ad.int32)],
    lambda x: range(ad.cast(x, ad.int32)), lambda x: f"{float(x):.3f}",
], ids=["float", "int", "bool", "numpy", "asarray", "list_index", "range", "format"])
def test_reading_a_traced_value_raises_tracing_error(read, device):
    @ad.function
    def reader_function(x):
        read(x)
        return x

    with pytest.raises(TracingError, match="reader_function"):
        reader_function(ad.constant(1.0))
    assert reader_function.experimental_get_tracing_count() == 0


def test_printing_a_traced_value_does_not_raise(device):
    seen = []

    @ad.function
    def f(x):
        seen.append(repr(x))
        seen.append(str(x))
        return x + 1.0

    assert float(f(ad.constant(1.0))) == 2.0
    assert all("traced" in s for s in seen)


def test_indexing_with_a_traced_integer_tensor_gathers(device):
    @ad.function
    def pick(x, i):
        return x[i]

    x = ad.constant([1.0, 2.0, 3.0])
    assert float(pick(x, ad.constant(2))) == 3.0
    assert float(pick(x, ad.constant(0))) == 1.0
    assert pick.experimental_get_tracing_count() == 1


def test_a_leaked_traced_tensor_gives_a_clear_error_on_reading(device):
    leaked = []

    @ad.function
    def leaky(x):
        y = x * 2.0
        leaked.append(y)
        return y

    assert float(leaky(ad.constant(1.0))) == 2.0
    (t,) = leaked
    for read in (float, lambda t: t.numpy()):
        with pytest.raises(TracingError, match="leaked"):
            read(t)
    with pytest.raises(TypeError, match="traced tensor"):  # as an argument of another function
        ad.function(lambda a: a + 1.0)(t)

    @ad.function
    def uses_closure(x):
        return x + t  # a value of another (finished) trace

    with pytest.raises(TracingError, match="uses_closure"):
        uses_closure(ad.constant(1.0))


def test_a_leaked_traced_tensor_gives_a_clear_error_in_eager_ops(device):
    leaked = []

    @ad.function
    def leaky(x):
        y = x * 2.0
        leaked.append(y)
        return y

    leaky(ad.constant(1.0))
    with pytest.raises(TracingError, match="leaked"):
        leaked[0] + 1.0
    with pytest.raises(TracingError, match="leaked"):
        ad.exp(leaked[0])


def test_creating_a_variable_from_a_traced_value_raises(device):
    @ad.function
    def makes_variable(x):
        v = ad.Variable(x * 2.0)
        return v.read_value()

    with pytest.raises(ValueError, match="gpuad.function") as info:
        makes_variable(ad.constant(1.0))
    assert "Variable" in str(info.value)


def test_a_failing_op_raises_its_error_and_caches_nothing(device):
    @ad.function
    def product(a, b):
        return ad.matmul(a, b) + 1.0

    with pytest.raises(ad.InvalidArgumentError, match="matmul") as info:
        product(ad.ones((2, 3)), ad.ones((2, 3)))
    assert "Matrix size-incompatible" in str(info.value)
    assert product.experimental_get_tracing_count() == 0
    with pytest.raises(ad.InvalidArgumentError, match="matmul"):  # again: traced again, same error
        product(ad.ones((2, 3)), ad.ones((2, 3)))
    np.testing.assert_array_equal(product(ad.ones((2, 3)), ad.ones((3, 1))).numpy(), [[4.0], [4.0]])
    assert product.experimental_get_tracing_count() == 1


def test_a_failing_trace_leaves_eager_mode_and_tapes_working(device):
    @ad.function
    def broken(x, fail):
        y = x * 3.0
        if fail:
            return ad.reshape(y, (7,))  # a shape error naming the op
        return y

    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as tape:
        tape.watch(x)
        with pytest.raises(ad.InvalidArgumentError, match="reshape"):
            broken(x, True)
        assert float(ad.reduce_sum(x)) == 3.0  # eager again: values are readable
        y = ad.reduce_sum(broken(x, False) * x)
    assert tape.gradient(y, x).numpy().tolist() == [6.0, 12.0]
    assert broken.experimental_get_tracing_count() == 1


def test_a_python_exception_inside_propagates_unchanged(device):
    class Custom(Exception):
        pass

    @ad.function
    def raises(x):
        x = x + 1.0
        raise Custom("from user code")

    with pytest.raises(Custom, match="from user code"):
        raises(ad.constant(1.0))
    assert raises.experimental_get_tracing_count() == 0
    assert float(ad.constant(1.0) + 1.0) == 2.0


def test_non_persistent_tape_reuse_inside_raises(device):
    @ad.function
    def twice(x):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        tape.gradient(y, x)
        return tape.gradient(y, x)

    with pytest.raises(RuntimeError, match="non-persistent"):
        twice(ad.constant(1.0))


def test_function_requires_a_callable():
    with pytest.raises(TypeError, match="callable"):
        ad.function(3)
