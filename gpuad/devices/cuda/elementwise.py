"""Launch code for the kernels of ``kernels/{unary,binary,cast}.cu``: the ``unary``,
``binary``, ``unary_grad``, ``where``, ``cast`` and ``fill`` families.

Each function has the signature of the cpu device's method (minus ``self``) and
returns a new C-contiguous buffer equal to the cpu device's result. Every value
comes from a kernel; NumPy only handles shapes, strides and scalar arguments.

Kernel choice, per call (cheapest first):

- ``_contig``: every operand C-contiguous with the output's size (16-byte
  vector loads where the pointers are aligned, decided in the kernel);
- ``_sx`` / ``_sy`` (binary, where): one operand is a single element (a 0-d
  scalar such as the ``2.0`` of ``x * 2.0``), the others contiguous;
- ``_strided``: anything else -- NumPy broadcasting, transposed and negative- or
  zero-stride views -- through one ``Layout`` per operand over the output's
  shape, after dropping size-1 axes and merging axes that are contiguous in
  every operand (so most broadcasts run at rank 1 or 2).

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
neg/abs/sign/square/relu and the arithmetic binaries for float32/float64/int32/
int64; the transcendental unaries and the sqrt/rsqrt/reciprocal/sigmoid/tanh
grads for floats (relu grad also for ints); ``logical_not``, comparisons and
logical ops for all five dtypes (giving bool); ``div`` of integers casts both to
float64 first (NumPy's true division); ``where`` with any condition dtype (cast to
bool first) and any value dtype; ``cast`` and ``fill`` between/for all five.
Mixed operand dtypes (NumPy would promote) raise TypeError: the op layer never
sends them.
"""
from __future__ import annotations

import functools
import weakref

import numpy as np

from ...errors import InvalidArgumentError
from . import launch as L

FAMILIES = ("unary", "binary", "unary_grad", "where", "cast", "fill")

_BOOL = np.dtype(np.bool_)
_F64 = np.dtype(np.float64)
_I32 = np.dtype(np.int32)

_FLOATS = frozenset({"f32", "f64"})
_NUMERIC = _FLOATS | {"i32", "i64"}
_ALL = _NUMERIC | {"b8"}

# op -> (suffixes with a kernel, result is bool)
_UNARY = {op: (_NUMERIC, False) for op in ("neg", "abs", "sign", "square", "relu")}
_UNARY.update({op: (_FLOATS, False) for op in """sqrt rsqrt reciprocal exp log log1p expm1 sin cos tan
               tanh sigmoid softplus erf floor round""".split()})
_UNARY["logical_not"] = (_ALL, True)

_BINARY = {op: (_NUMERIC, False) for op in "add sub mul floordiv floormod pow maximum minimum".split()}
_BINARY["div"] = (_FLOATS, False)
_BINARY.update({op: (_ALL, True) for op in "eq ne lt le gt ge logical_and logical_or".split()})

_UNARY_GRAD = {op: _FLOATS for op in ("sigmoid", "tanh", "sqrt", "rsqrt", "reciprocal")}
_UNARY_GRAD["relu"] = _NUMERIC

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


@functools.lru_cache(maxsize=4096)
def _layouts(out_shape: tuple, operands: tuple) -> tuple:
    """One Layout per operand ((shape, element strides) pairs) over a shared,
    simplified shape: operands broadcast to ``out_shape``, size-1 axes dropped,
    neighbouring axes merged where every operand is contiguous across them."""
    rank = len(out_shape)
    strides = []
    for shape, st in operands:
        lead = rank - len(shape)
        strides.append([0] * lead + [0 if d == 1 else s for d, s in zip(shape, st)])
    dims = [i for i in range(rank) if out_shape[i] != 1]
    shape = [out_shape[i] for i in dims]
    strides = [[s[i] for i in dims] for s in strides]
    k = 0
    while k + 1 < len(shape):
        if all(s[k] == s[k + 1] * shape[k + 1] for s in strides):
            shape[k] *= shape[k + 1]
            for s in strides:
                s[k] = s[k + 1]
                del s[k + 1]
            del shape[k + 1]
        else:
            k += 1
    return tuple(L.make_layout(shape, s) for s in strides)


def _layouts_of(out_shape, *bufs) -> tuple:
    return _layouts(tuple(out_shape), tuple((tuple(b.shape), L.element_strides(b)) for b in bufs))


def _broadcast(family, op, *shapes) -> tuple:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{family} {op}: shapes {' and '.join(map(str, shapes))} do not broadcast "
                         f"(NumPy rules)") from None


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


def _zeroed_flag(dev):
    flag = dev.empty((1,), _I32)
    dev.launch("fill_i32", 1, (flag, np.int32(0), L.i64(1)))
    return flag


# -- families -------------------------------------------------------------------------

def unary(dev, op, x):
    spec = _UNARY.get(op)
    if spec is None:
        raise KeyError(f"unknown unary op {op!r}")
    supported, to_bool = spec
    s = _sfx("unary", op, x.dtype, supported)
    rdt = _BOOL if to_bool else x.dtype
    return _launch1(dev, f"unary_{op}_{s}", x, rdt)


def _launch1(dev, base, x, dtype):
    """One launch of a one-operand kernel (``<base>_contig`` or ``<base>_strided``)
    into a new contiguous buffer of ``dtype``."""
    out = dev.empty(x.shape, dtype)
    n = out.size
    if n:
        if x.flags.c_contiguous:
            dev.launch(f"{base}_contig", _work(n, x.dtype, dtype), (out, x, L.i64(n)))
        else:
            (lx,) = _layouts_of(x.shape, x)
            dev.launch(f"{base}_strided", n, (out, x, lx, L.i64(n)))
    return out


def _launch2(dev, base, out, x, y, scalar_variants, tail=()):
    """One launch of a two-operand kernel family (binary, unary_grad) into ``out``."""
    n = out.size
    work = _work(n, x.dtype, out.dtype)
    if _contiguous_as(x, n) and _contiguous_as(y, n):
        dev.launch(base + "_contig", work, (out, x, y, L.i64(n)) + tail)
    elif scalar_variants and x.size == 1 and _contiguous_as(y, n):
        dev.launch(base + "_sx", work, (out, x, y, L.i64(n)) + tail)
    elif scalar_variants and y.size == 1 and _contiguous_as(x, n):
        dev.launch(base + "_sy", work, (out, x, y, L.i64(n)) + tail)
    else:
        lx, ly = _layouts_of(out.shape, x, y)
        dev.launch(base + "_strided", n, (out, x, lx, y, ly, L.i64(n)) + tail)


def binary(dev, op, x, y):
    spec = _BINARY.get(op)
    if spec is None:
        raise KeyError(f"unknown binary op {op!r}")
    supported, to_bool = spec
    dt = _same_dtype("binary", op, x, y)
    if op == "div" and dt.kind in "iu":  # true division of integers: float64, as NumPy
        x, y = cast(dev, "cast", x, _F64), cast(dev, "cast", y, _F64)
        dt = _F64
    s = _sfx("binary", op, dt, supported)
    shape = x.shape if x.shape == y.shape else _broadcast("binary", op, x.shape, y.shape)
    out = dev.empty(shape, _BOOL if to_bool else dt)

    if not (op in _CHECKED and dt.kind == "i"):
        if out.size:
            _launch2(dev, f"binary_{op}_{s}", out, x, y, True)
        return out

    # integer pow / floordiv / floormod: y's bad values raise, as on the cpu device
    bad, message = _CHECKED[op]
    if y.size == 0:
        return out  # then out is empty too
    known = _known_value(y)
    if known is not None:  # a fill scalar: checked here; the kernel's flag goes unread
        if bad(known):
            raise InvalidArgumentError(message, op)
        if out.size:
            _launch2(dev, f"binary_{op}_{s}", out, x, y, True, (_scratch_flag(dev),))
        return out
    flag = _zeroed_flag(dev)
    if out.size:
        _launch2(dev, f"binary_{op}_{s}", out, x, y, True, (flag,))
    else:  # no output, but the cpu device still checks every element of y
        (ly,) = _layouts_of(y.shape, y)
        dev.launch(f"binary_check_{op}_{s}", y.size, (flag, y, ly, L.i64(y.size)))
    if dev.to_host(flag)[0]:
        raise InvalidArgumentError(message, op)
    return out


def unary_grad(dev, op, a, dy):
    supported = _UNARY_GRAD.get(op)
    if supported is None:
        raise KeyError(f"unknown unary_grad op {op!r}")
    dt = _same_dtype("unary_grad", op, a, dy)
    s = _sfx("unary_grad", op, dt, supported)
    shape = a.shape if a.shape == dy.shape else _broadcast("unary_grad", op, a.shape, dy.shape)
    out = dev.empty(shape, dt)
    if out.size:
        _launch2(dev, f"unary_grad_{op}_{s}", out, a, dy, False)
    return out


def where(dev, op, c, x, y):
    if c.dtype != _BOOL:  # NumPy reads any condition as its truth value
        c = cast(dev, "cast", c, _BOOL)
    dt = _same_dtype("where", op, x, y)
    s = _sfx("where", op, dt, _ALL)
    if c.shape == x.shape == y.shape:
        shape = c.shape
    else:
        shape = _broadcast("where", op, c.shape, x.shape, y.shape)
    out = dev.empty(shape, dt)
    n = out.size
    if n:
        work = _work(n, dt)
        if _contiguous_as(c, n):
            if _contiguous_as(x, n) and _contiguous_as(y, n):
                return _launch_where(dev, f"where_{s}_contig", work, out, c, x, y, n)
            if x.size == 1 and _contiguous_as(y, n):
                return _launch_where(dev, f"where_{s}_sx", work, out, c, x, y, n)
            if y.size == 1 and _contiguous_as(x, n):
                return _launch_where(dev, f"where_{s}_sy", work, out, c, x, y, n)
        lc, lx, ly = _layouts_of(shape, c, x, y)
        dev.launch(f"where_{s}_strided", n, (out, c, lc, x, lx, y, ly, L.i64(n)))
    return out


def _launch_where(dev, name, work, out, c, x, y, n):
    dev.launch(name, work, (out, c, x, y, L.i64(n)))
    return out


def cast(dev, op, x, dtype):
    dtype = np.dtype(dtype)
    fs = _sfx("cast", "from", x.dtype, _ALL)
    ts = _sfx("cast", "to", dtype, _ALL)
    return _launch1(dev, f"cast_{fs}_{ts}", x, dtype)


def fill(dev, op, shape, value, dtype):
    dtype = np.dtype(dtype)
    s = _sfx("fill", op, dtype, _ALL)
    # The value as np.full converts it (unsafe casting; a Python int out of range
    # raises OverflowError), as the scalar kernel argument of the right C type.
    box = np.empty((), dtype)
    with np.errstate(all="ignore"):  # NaN -> int: the integer minimum, silently
        np.copyto(box, value, casting="unsafe")
    v = box[()]
    out = dev.empty(tuple(shape), dtype)
    n = out.size
    if n:
        dev.launch(f"fill_{s}", _work(n, dtype), (out, v, L.i64(n)))
        if n == 1:
            _remember(out, v)
    return out
