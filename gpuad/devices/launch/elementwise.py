"""Launch code for the kernels of ``kernels/{unary,binary,cast}.cu``: the ``unary``,
``binary``, ``unary_grad``, ``where``, ``cast`` and ``fill`` families.

Each function has the signature of the cpu device's method (with the device as
``dev`` for ``self``: :class:`KernelDevice` binds them as its methods) and
returns a new C-contiguous buffer equal to the cpu device's result. Kernels are
``unary_<op>_...``, ``binary_<op>_...`` with ``op`` the primitive's name
(``binary_multiply_f32_contig``; the unary_grad ops end in ``_grad``:
``unary_relu_grad_f32_contig``). Every value
comes from a kernel; NumPy only handles shapes, strides and scalar arguments.

Kernel choice, per call (cheapest first):

- ``_contig``: every operand C-contiguous with the output's size (16-byte
  vector loads where the pointers are aligned, decided in the kernel);
- ``_sx`` / ``_sy`` (binary, where): one operand is a single element (a 0-d
  scalar such as the ``2.0`` of ``x * 2.0``), the others contiguous;
- ``_strided``: anything else -- NumPy broadcasting, transposed and negative- or
  zero-stride views -- through one ``Layout`` per operand over the output's
  shape, after dropping size-1 axes and merging axes that are contiguous in
  every operand (``strides.layouts``; most broadcasts run at rank 1 or 2).

Integer errors (the cpu device raises :class:`InvalidArgumentError`): integer
``pow`` with a negative exponent and integer ``floordiv``/``floormod`` by zero.
The kernels themselves detect them: a thread that meets one sets a one-element
flag, zeroed by a fill kernel before the launch, and the flag is read back with
``dev.to_host`` (one counted 4-byte transfer) -- no reduction, no extra pass over
the data. Where the exponent/divisor is a one-element buffer made by :func:`fill`
(every Python constant, e.g. ``x // 2``) its value is known on the host and no
flag, launch or transfer is needed. Float operands are never checked (IEEE
results, as on the cpu).

Dtypes: what the op layer sends, and more (the cpu device's NumPy results):
negative/abs/sign/square/relu and the arithmetic binaries for float32/float64/
int32/int64; the transcendental unaries and sqrt_grad/rsqrt_grad/reciprocal_grad/
sigmoid_grad/tanh_grad for floats (relu_grad also for ints); ``logical_not``,
comparisons and logical ops for all five dtypes (giving bool); ``divide`` of integers casts both to
float64 first (NumPy's true division); ``where`` with any condition dtype (cast to
bool first) and any value dtype; ``cast`` and ``fill`` between/for all five.
Mixed operand dtypes (NumPy would promote) raise TypeError: the op layer never
sends them.

Launch plans: everything a launch needs besides the buffers -- kernel name, output
shape and dtype, work items, the ``n`` argument, the operands' Layouts -- depends
only on the op and the operands' dtypes, shapes and strides. Each family keeps it
per such key in a bounded dict (:data:`_PLAN_CAP` entries, emptied when full; keys
hold no buffers), so a repeated op does no shape arithmetic, dtype lookup or string
formatting: its host work is one dict lookup, the allocation and the launch. Errors
are never cached (a key that raises is worked out, and raises, on every call), and
the integer paths with checks (``divide``, ``pow``, ``floordiv``, ``floormod`` of
integers) take the general path every time.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from ...errors import InvalidArgumentError
from . import common as L
from . import strides as S

_BOOL = np.dtype(np.bool_)
_F64 = np.dtype(np.float64)
_I32 = np.dtype(np.int32)

_FLOATS = frozenset({"f32", "f64"})
_NUMERIC = _FLOATS | {"i32", "i64"}
_ALL = _NUMERIC | {"b8"}

# op -> (suffixes with a kernel, result is bool)
_UNARY = {op: (_NUMERIC, False) for op in ("negative", "abs", "sign", "square", "relu")}
_UNARY.update({op: (_FLOATS, False) for op in """sqrt rsqrt reciprocal exp log log1p expm1 sin cos tan
               tanh sigmoid softplus erf floor round""".split()})
_UNARY["logical_not"] = (_ALL, True)

_BINARY = {op: (_NUMERIC, False) for op in "add subtract multiply floordiv floormod pow maximum minimum".split()}
_BINARY["divide"] = (_FLOATS, False)
_BINARY.update({op: (_ALL, True) for op in """equal not_equal less less_equal greater greater_equal
                logical_and logical_or""".split()})

_UNARY_GRAD = {op: _FLOATS for op in ("sigmoid_grad", "tanh_grad", "sin_grad", "cos_grad", "square_grad",
                                       "sqrt_grad", "rsqrt_grad", "reciprocal_grad")}
_UNARY_GRAD["relu_grad"] = _NUMERIC

# integer ops whose bad operands raise, as on the cpu device: op -> (is y bad?, message)
_CHECKED = {
    "pow": (lambda v: v < 0, "Integers to negative integer powers are not allowed; cast the base "
                             "to a float dtype first (gpuad.cast(x, gpuad.float32))."),
    "floordiv": (lambda v: v == 0, "Integer division by zero."),
    "floormod": (lambda v: v == 0, "Integer division by zero."),
}


def _sfx(family: str, op: str, dtype, supported) -> str:
    s = L.SUFFIX.get(dtype)
    if s is None or s not in supported:
        kinds = ", ".join(sorted(supported))
        raise TypeError(f"{family} {op} has no kernel for {np.dtype(dtype)} operands (it has {kinds}); "
                        f"cast first with gpuad.cast.")
    return s


def _same_dtype(family, op, *bufs):
    dt = bufs[0].dtype
    for b in bufs[1:]:
        if b.dtype != dt:
            raise TypeError(f"{family} {op} got operands of different dtypes ({dt} and {b.dtype}); "
                            f"gpuad kernels do not promote: cast one first.")
    return dt


# -- launch shapes and layouts ----------------------------------------------------

def _work(n, *dtypes) -> int:
    """Work items of a contiguous kernel: elements per 16-byte vector."""
    return -(-n // (16 // max(d.itemsize for d in dtypes)))


def _contiguous_as(buf, n) -> bool:
    """Whether ``buf`` read linearly is its broadcast to an n-element output (same
    element count, C order: the shapes differ at most by size-1 axes)."""
    return buf.size == n and buf.flags.c_contiguous


# -- launch plans (see the module docstring) ---------------------------------------------
# A plan is a tuple computed from the operands' dtypes, shapes and strides only: the
# planners read buffers' shape, strides, dtype, size and C-contiguity flag (itself a
# function of shape, strides and item size, in NumPy and CuPy alike), never keep them.
# A plan's shape is a tuple and its dtype a NumPy dtype, so outputs are allocated by
# the launcher directly (``dev.empty`` would only normalise those two).

_PLAN_CAP = L.PLAN_CAP  # (common.py says why plans are capped)

_unary_plans: dict = {}
_binary_plans: dict = {}
_grad_plans: dict = {}
_where_plans: dict = {}
_cast_plans: dict = {}
_fill_plans: dict = {}
_fill_values: dict = {}


def _cached(plans: dict, key, plan):
    return L.keep(plans, key, plan, _PLAN_CAP)  # (the cap read here: tests lower it)


def _plan1(base, x, dtype) -> tuple:
    """``(shape, dtype, kernel, work, n, layout)`` of a one-operand kernel
    (``<base>_contig`` or ``<base>_strided``) writing a new ``dtype`` buffer;
    kernel None: nothing to launch."""
    shape = tuple(x.shape)
    n = math.prod(shape)
    if not n:
        return (shape, dtype, None, 0, None, None)
    if x.flags.c_contiguous:
        return (shape, dtype, f"{base}_contig", _work(n, x.dtype, dtype), L.i64(n), None)
    (lx,) = S.layouts(shape, x)
    return (shape, dtype, f"{base}_strided", n, L.i64(n), lx)


def _run1(dev, op, plan, x):
    shape, dtype, kernel, work, n, lx = plan
    out = dev.launcher.empty(shape, dtype)
    if kernel is not None:
        dev.launch(kernel, work, (out, x, n) if lx is None else (out, x, lx, n), op=op)
    return out


def _plan2(base, x, y, shape, dtype, scalar_variants) -> tuple:
    """``(shape, dtype, kernel, work, n, layout x, layout y)`` of a two-operand kernel
    family (binary, unary_grad) writing a new ``dtype`` buffer of ``shape``."""
    shape = tuple(shape)
    n = math.prod(shape)
    if not n:
        return (shape, dtype, None, 0, None, None, None)
    work = _work(n, x.dtype, dtype)
    if _contiguous_as(x, n) and _contiguous_as(y, n):
        return (shape, dtype, base + "_contig", work, L.i64(n), None, None)
    if scalar_variants and x.size == 1 and _contiguous_as(y, n):
        return (shape, dtype, base + "_sx", work, L.i64(n), None, None)
    if scalar_variants and y.size == 1 and _contiguous_as(x, n):
        return (shape, dtype, base + "_sy", work, L.i64(n), None, None)
    lx, ly = S.layouts(shape, x, y)
    return (shape, dtype, base + "_strided", n, L.i64(n), lx, ly)


def _run2(dev, op, plan, x, y, tail=()):
    shape, dtype, kernel, work, n, lx, ly = plan
    out = dev.launcher.empty(shape, dtype)
    if kernel is not None:
        args = (out, x, y, n) if lx is None else (out, x, lx, y, ly, n)
        dev.launch(kernel, work, args + tail if tail else args, op=op)
    return out


# -- scalars made by fill, known on the host ------------------------------------------
# Buffers are immutable, so a one-element buffer made by fill() holds its fill value
# for its whole life: integer pow/floordiv/floormod by such a scalar (every Python
# constant) are checked on the host, with no flag, launch or transfer.
_known: dict[int, tuple] = {}


def _remember(buf, value) -> None:
    if len(_known) >= 4096:
        return
    key = id(buf)

    def forget(ref, key=key):
        entry = _known.get(key)
        if entry is not None and entry[0] is ref:
            del _known[key]
    try:
        ref = weakref.ref(buf, forget)
    except TypeError:  # a buffer type without weak references: just never known
        return
    _known[key] = (ref, value)


def _known_value(buf):
    entry = _known.get(id(buf))
    if entry is not None and entry[0]() is buf:
        return entry[1]
    return None


def _scratch_flag(dev):
    """A flag buffer the kernel may write and nobody reads (one per device)."""
    flag = getattr(dev, "_elementwise_scratch_flag", None)
    if flag is None:
        flag = dev._elementwise_scratch_flag = dev.empty((1,), _I32)
    return flag


def _zeroed_flag(dev, op):
    flag = dev.empty((1,), _I32)
    dev.launch("fill_i32", 1, (flag, np.int32(0), L.i64(1)), op=op)
    return flag


# -- families -------------------------------------------------------------------------

def unary(dev, op, x):
    key = (op, x.dtype, x.shape, x.strides)
    plan = _unary_plans.get(key)
    if plan is None:
        plan = _cached(_unary_plans, key, _unary_plan(op, x))
    return _run1(dev, op, plan, x)


def _unary_plan(op, x):
    spec = _UNARY.get(op)
    if spec is None:
        raise KeyError(f"unknown unary op {op!r}")
    supported, to_bool = spec
    s = _sfx("unary", op, x.dtype, supported)
    return _plan1(f"unary_{op}_{s}", x, _BOOL if to_bool else x.dtype)


def binary(dev, op, x, y):
    dt = x.dtype
    if dt is y.dtype:  # (else the general path: equal dtypes that are distinct objects, or an error)
        key = (op, dt, x.shape, x.strides, y.shape, y.strides)
        plan = _binary_plans.get(key)
        if plan is None:
            plan = _cached(_binary_plans, key, _binary_plan(op, x, y))
        if plan:
            return _run2(dev, op, plan, x, y)
    return _binary(dev, op, x, y)


def _binary_spec(op):
    spec = _BINARY.get(op)
    if spec is None:
        raise KeyError(f"unknown binary op {op!r}")
    return spec


def _binary_plan(op, x, y):
    """The plan of ``binary(op, x, y)`` for operands of one dtype, or False where
    the general path must run (integer ``div``, and the checked integer ops)."""
    supported, to_bool = _binary_spec(op)
    dt = x.dtype
    if dt.kind in "iu" and (op == "divide" or op in _CHECKED):
        return False
    s = _sfx("binary", op, dt, supported)
    shape = x.shape if x.shape == y.shape else S.broadcast_shape(f"binary {op}", x.shape, y.shape)
    return _plan2(f"binary_{op}_{s}", x, y, shape, _BOOL if to_bool else dt, True)


def _binary(dev, op, x, y):
    """binary() without a cached plan: every case, checks included."""
    supported, to_bool = _binary_spec(op)
    dt = _same_dtype("binary", op, x, y)
    if op == "divide" and dt.kind in "iu":  # true division of integers: float64, as NumPy
        x, y = cast(dev, "cast", x, _F64), cast(dev, "cast", y, _F64)
        dt = _F64
    s = _sfx("binary", op, dt, supported)
    shape = x.shape if x.shape == y.shape else S.broadcast_shape(f"binary {op}", x.shape, y.shape)
    plan = _plan2(f"binary_{op}_{s}", x, y, shape, _BOOL if to_bool else dt, True)

    if not (op in _CHECKED and dt.kind == "i"):
        return _run2(dev, op, plan, x, y)

    # integer pow / floordiv / floormod: y's bad values raise, as on the cpu device
    bad, message = _CHECKED[op]
    if y.size == 0:
        return _run2(dev, op, plan, x, y)  # then out is empty too: nothing launches
    known = _known_value(y)
    if known is not None:  # a fill scalar: checked here; the kernel's flag goes unread
        if bad(known):
            raise InvalidArgumentError(message, op)
        return _run2(dev, op, plan, x, y, (_scratch_flag(dev),))
    flag = _zeroed_flag(dev, op)
    out = _run2(dev, op, plan, x, y, (flag,))
    if not out.size:  # no output, but the cpu device still checks every element of y
        (ly,) = S.layouts(y.shape, y)
        dev.launch(f"binary_check_{op}_{s}", y.size, (flag, y, ly, L.i64(y.size)), op=op)
    if dev.to_host(flag)[0]:
        raise InvalidArgumentError(message, op)
    return out


def unary_grad(dev, op, a, dy):
    dt = a.dtype
    if dt is dy.dtype:
        key = (op, dt, a.shape, a.strides, dy.shape, dy.strides)
        plan = _grad_plans.get(key)
        if plan is None:
            plan = _cached(_grad_plans, key, _unary_grad_plan(op, a, dy))
    else:
        plan = _unary_grad_plan(op, a, dy)
    return _run2(dev, op, plan, a, dy)


def _unary_grad_plan(op, a, dy):
    supported = _UNARY_GRAD.get(op)
    if supported is None:
        raise KeyError(f"unknown unary_grad op {op!r}")
    dt = _same_dtype("unary_grad", op, a, dy)
    s = _sfx("unary_grad", op, dt, supported)
    shape = a.shape if a.shape == dy.shape else S.broadcast_shape(f"unary_grad {op}", a.shape, dy.shape)
    return _plan2(f"unary_{op}_{s}", a, dy, shape, dt, False)  # (op ends in _grad: unary_relu_grad_f32)


def where(dev, op, c, x, y):
    if c.dtype is not _BOOL and c.dtype != _BOOL:  # NumPy reads any condition as its truth value
        c = cast(dev, "cast", c, _BOOL)
    dt = x.dtype
    if dt is y.dtype:
        key = (op, dt, c.shape, c.strides, x.shape, x.strides, y.shape, y.strides)
        plan = _where_plans.get(key)
        if plan is None:
            plan = _cached(_where_plans, key, _where_plan(op, c, x, y))
    else:
        plan = _where_plan(op, c, x, y)
    shape, dt, kernel, work, n, layouts = plan
    out = dev.launcher.empty(shape, dt)
    if kernel is not None:
        if layouts is None:
            dev.launch(kernel, work, (out, c, x, y, n), op=op)
        else:
            lc, lx, ly = layouts
            dev.launch(kernel, work, (out, c, lc, x, lx, y, ly, n), op=op)
    return out


def _where_plan(op, c, x, y):
    """``(shape, dtype, kernel, work, n, layouts or None)`` of where(c, x, y), c bool."""
    dt = _same_dtype("where", op, x, y)
    s = _sfx("where", op, dt, _ALL)
    if c.shape == x.shape == y.shape:
        shape = tuple(c.shape)
    else:
        shape = S.broadcast_shape(f"where {op}", c.shape, x.shape, y.shape)
    n = math.prod(shape)
    if not n:
        return (shape, dt, None, 0, None, None)
    work = _work(n, dt)
    if _contiguous_as(c, n):
        if _contiguous_as(x, n) and _contiguous_as(y, n):
            return (shape, dt, f"where_{s}_contig", work, L.i64(n), None)
        if x.size == 1 and _contiguous_as(y, n):
            return (shape, dt, f"where_{s}_sx", work, L.i64(n), None)
        if y.size == 1 and _contiguous_as(x, n):
            return (shape, dt, f"where_{s}_sy", work, L.i64(n), None)
    return (shape, dt, f"where_{s}_strided", n, L.i64(n), S.layouts(shape, c, x, y))


def cast(dev, op, x, dtype):
    plan = L.planned(_cast_plans, (x.dtype, dtype, x.shape, x.strides),
                     lambda: _cast_plan(x, dtype), _PLAN_CAP)
    return _run1(dev, op, plan, x)


def _cast_plan(x, dtype):
    dtype = np.dtype(dtype)
    fs = _sfx("cast", "from", x.dtype, _ALL)
    ts = _sfx("cast", "to", dtype, _ALL)
    return _plan1(f"cast_{fs}_{ts}", x, dtype)


def fill(dev, op, shape, value, dtype):
    shape, dtype, kernel, work, n = L.planned(_fill_plans, (op, shape, dtype),
                                              lambda: _fill_plan(op, shape, dtype), _PLAN_CAP)
    v = _fill_value(value, dtype)
    out = dev.empty(shape, dtype, op=op)
    if kernel is not None:
        dev.launch(kernel, work, (out, v, n), op=op)
        if n == 1:
            _remember(out, v)
    return out


def _fill_plan(op, shape, dtype):
    """``(shape, dtype, kernel, work, n)`` of fill; kernel None: nothing to launch."""
    dtype = np.dtype(dtype)
    s = _sfx("fill", op, dtype, _ALL)
    shape = tuple(shape)
    n = math.prod(shape)
    if not n:  # (a bad shape, e.g. a negative size, is left to the allocation to reject)
        return (shape, dtype, None, 0, None)
    return (shape, dtype, f"fill_{s}", _work(n, dtype), L.i64(n))


def _fill_value(value, dtype):
    """``value`` as np.full converts it (unsafe casting; a Python int out of range
    raises OverflowError), as the scalar kernel argument of the right C type.
    Python numbers are converted once per (type, value, dtype): the key tells 0.0
    from -0.0, and NaN, never equal to itself, is not kept."""
    cls = type(value)
    key = None
    if (cls is float or cls is int or cls is bool) and value == value:
        key = (cls, value, dtype) if value else (cls, value, dtype, math.copysign(1.0, value))
        v = _fill_values.get(key)
        if v is not None:
            return v
    box = np.empty((), dtype)
    with np.errstate(all="ignore"):  # NaN -> int: the integer minimum, silently
        np.copyto(box, value, casting="unsafe")
    v = box[()]
    if key is not None:
        _cached(_fill_values, key, v)
    return v
