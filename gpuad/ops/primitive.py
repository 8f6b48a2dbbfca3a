"""What every op goes through: operand conversion, dtype/shape/device checks,
the device kernel call, and recording on the tape.

The hot path (``run1``/``run2``) is written for speed: no per-op dicts, one
cheap "is any tape active?" test before anything tape-related happens.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..tape import _state, record
from ..tensor import Tensor, Variable, _host_array, convert_to_tensor

_FLOAT = "f"
_NUMERIC = "fiu"
_ANY = "fiub"


class Primitive:
    """One differentiable (or not) operation: a device kernel and its VJPs.

    ``family``/``op`` name the device kernel (see ``gpuad.devices.KERNEL_SET``);
    ``vjps`` holds one function per input, ``vjp(g, out, *inputs, **attrs)``,
    returning the input's gradient or None; ``vjps=None`` marks the primitive
    as not differentiable (it is never recorded). ``kinds`` are the NumPy dtype
    kinds its inputs may have. ``kernels`` caches the device's kernel callable
    per device, resolved on first use.
    """

    __slots__ = ("name", "family", "op", "vjps", "kinds", "kernels")

    def __init__(self, name, family, op=None, vjps=None, kinds=_ANY):
        self.name = name
        self.family = family
        self.op = op if op is not None else name
        self.vjps = vjps
        self.kinds = kinds
        self.kernels = {}

    def kernel(self, dev):
        """This primitive's kernel on device ``dev`` (resolved once, then cached)."""
        k = self.kernels.get(dev)
        if k is None:
            k = self.kernels[dev] = dev.kernel(self.family, self.op)
        return k

    def __repr__(self):
        return f"<primitive {self.name}>"


def _device_error(op, a, b):
    return InvalidArgumentError(
        f"{op} got tensors on different devices: {a.name} and {b.name}. gpuad never copies "
        f"implicitly; move one with .to({a.name!r}) or .to({b.name!r}).", op)


def _kind_error(prim, x, index):
    allowed = {"f": "float", "fiu": "float or integer", "b": "bool"}.get(prim.kinds, prim.kinds)
    to = "bool" if prim.kinds == "b" else "float32"
    return InvalidArgumentError(
        f"{prim.name} does not support {x.dtype.name} tensors (input #{index}); it takes "
        f"{allowed} tensors. Cast with gpuad.cast(x, gpuad.{to}).", prim.name)


def dtype_error(op, expected, got, index):
    return InvalidArgumentError(
        f"cannot compute {op} as input #{index}(zero-based) was expected to be a {expected.name} "
        f"tensor but is a {got.name} tensor. gpuad does not promote dtypes implicitly: cast one "
        f"operand with gpuad.cast(x, gpuad.{expected.name}).", op)


def run1(prim, x):
    """Apply a one-input primitive with no attributes."""
    data = x._data
    if data.dtype.kind not in prim.kinds:
        raise _kind_error(prim, x, 0)
    dev = x._device
    k = prim.kernels.get(dev) or prim.kernel(dev)
    out = Tensor(k(data), dev)
    if _state.stack and prim.vjps is not None and out._data.dtype.kind == "f":
        record(prim, (x,), out, None)
    return out


def run2(prim, x, y):
    """Apply a two-input element-wise primitive (broadcasting, equal dtypes)."""
    xd, yd = x._data, y._data
    if xd.dtype is not yd.dtype and xd.dtype != yd.dtype:
        raise dtype_error(prim.name, x.dtype, y.dtype, 1)
    if xd.dtype.kind not in prim.kinds:
        raise _kind_error(prim, x, 0)
    dev = x._device
    if y._device is not dev:
        raise _device_error(prim.name, dev, y._device)
    if xd.shape != yd.shape:
        broadcast_shape(prim.name, xd.shape, yd.shape)
    k = prim.kernels.get(dev) or prim.kernel(dev)
    out = Tensor(k(xd, yd), dev)
    if _state.stack and prim.vjps is not None and out._data.dtype.kind == "f":
        record(prim, (x, y), out, None)
    return out


def run(prim, inputs, **attrs):
    """Apply any primitive to a tuple of Tensors, with static attributes."""
    dev = inputs[0]._device
    for i, x in enumerate(inputs):
        if x._device is not dev:
            raise _device_error(prim.name, dev, x._device)
    k = prim.kernels.get(dev) or prim.kernel(dev)
    out = Tensor(k(*[x._data for x in inputs], **attrs), dev)
    if _state.stack and prim.vjps is not None and out._data.dtype.kind == "f":
        record(prim, inputs, out, attrs or None)
    return out


# -- operands -------------------------------------------------------------------

def to_tensor(x) -> Tensor:
    """A single op argument as a Tensor (Variables are read, data converted)."""
    if type(x) is Tensor:
        return x
    if isinstance(x, Variable):
        return x._read()
    return convert_to_tensor(x)


_scalar_buffers: dict = {}


def adopt(value, like: Tensor) -> Tensor:
    """A non-tensor operand converted to ``like``'s dtype and device: Python
    numbers and lists follow the Python-scalar rule (a float never silently
    becomes an int), NumPy data is cast silently, as in TensorFlow."""
    dev = like._device
    cls = type(value)
    if cls is float or cls is int:
        # Buffers are immutable, so one 0-d buffer per (value, dtype, device) can
        # back every use of a constant like the 2.0 in `x * 2.0` (the cache is
        # bounded). Not cached: zero (0.0 == -0.0 as keys, but their signs
        # differ) and NaN (as a key it never equals itself).
        cacheable = value and value == value
        key = (cls, value, like._data.dtype, dev)
        data = _scalar_buffers.get(key) if cacheable else None
        if data is None:
            # a fill kernel, not a host copy: a Python constant is no transfer
            arr = _host_array(value, like.dtype)
            data = dev.fill("fill", (), arr.item(), arr.dtype)
            if cacheable and len(_scalar_buffers) < 4096:
                _scalar_buffers[key] = data
        return Tensor(data, dev)
    if isinstance(value, np.generic):  # a NumPy scalar: cast, then a fill kernel (no transfer)
        arr = np.asarray(value).astype(like._data.dtype)
        return Tensor(dev.fill("fill", (), arr.item(), arr.dtype), dev)
    if isinstance(value, np.ndarray):
        arr = value.astype(like._data.dtype)
    else:
        arr = _host_array(value, like.dtype)
    return Tensor(dev.from_host(arr), dev)


def coerce2(x, y):
    """Two operands of a binary op as Tensors; non-tensors adopt the other's dtype."""
    if isinstance(x, Variable):
        x = x._read()
    if isinstance(y, Variable):
        y = y._read()
    if isinstance(x, Tensor):
        if not isinstance(y, Tensor):
            y = adopt(y, x)
    elif isinstance(y, Tensor):
        x = adopt(x, y)
    else:
        x = convert_to_tensor(x)
        y = adopt(y, x)
    return x, y


# -- shapes -------------------------------------------------------------------

def _fmt(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


_broadcast_cache: dict = {}


def broadcast_shape(op, a: tuple, b: tuple) -> tuple:
    """NumPy's broadcast of two shapes, or an error naming the op and both shapes."""
    key = (a, b)
    shape = _broadcast_cache.get(key)
    if shape is None:
        n = max(len(a), len(b))
        pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
        out = []
        for da, db in zip(pa, pb):
            if da != db and da != 1 and db != 1:
                raise InvalidArgumentError(
                    f"Incompatible shapes: {_fmt(a)} vs. {_fmt(b)}; they must be equal or 1 in "
                    f"each trailing dimension (NumPy broadcasting).", op)
            out.append(db if da == 1 else da)
        shape = tuple(out)
        if len(_broadcast_cache) < 8192:
            _broadcast_cache[key] = shape
    return shape


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched, so the
    result has exactly ``shape`` (the gradient of a broadcast input)."""
    gshape = g._data.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and gshape[lead + i] != 1)
    total = run(_T.REDUCE_SUM, (g,), axes=axes, keepdims=False)
    if total._data.shape == shape:
        return total
    return run(_T.RESHAPE, (total,), shape=shape)


def normalize_axes(op: str, axis, ndim: int) -> tuple:
    """``axis`` (None, an int, or a sequence; negative allowed) as a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, Tensor):
        axis = axis.numpy().tolist()
    items = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    out = set()
    for a in items:
        a = int(a)
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise InvalidArgumentError(
                f"Invalid reduction dimension ({a} for input with {ndim} dimension(s)); axes "
                f"must lie in [-{ndim}, {ndim}).", op)
        out.add(a % ndim if ndim else 0)
    return tuple(sorted(out)) if ndim else ()


def normalize_axis(op: str, axis: int, ndim: int) -> int:
    """One axis in [-ndim, ndim) as a non-negative int."""
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise InvalidArgumentError(
            f"axis {axis} is out of range for a tensor of rank {ndim}; it must lie in "
            f"[-{ndim}, {ndim}).", op)
    return axis % ndim


from . import table as _T  # noqa: E402  (the table imports this module first)
