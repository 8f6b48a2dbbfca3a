"""Creating tensors: zeros, ones, fill, range, linspace, eye, one_hot.

>>> import gpuad as ad
>>> ad.zeros((2, 3)).shape, ad.range(4).dtype, ad.eye(2).numpy()
((2, 3), gpuad.int32, array([[1., 0.],
       [0., 1.]], dtype=float32))
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import devices as _devices
from .. import dtypes as _dtypes
from ..errors import InvalidArgumentError
from ..host_data import host_array
from ..tensor import Abstract, Tensor, Variable
from . import table as T
from .core import bind
from .operands import to_tensor
from .shapes import as_int, shape_arg


def _device(device):
    return _devices.current() if device is None else _devices.get(device)


def _filled(shape, value, dtype, device, op="fill", name="shape") -> Tensor:
    return bind(T.FILL, (), shape=shape_arg(op, shape, name), value=value,
                dtype=_dtypes.as_dtype(dtype).numpy, device=_device(device))


def zeros(shape, dtype=_dtypes.float32, device=None) -> Tensor:
    """A tensor of zeros (float32 unless ``dtype`` says otherwise). ``shape`` is
    an int or a sequence of non-negative ints; anything else raises (a float
    dimension is a ``TypeError``, a negative one ``InvalidArgumentError``).

    >>> import gpuad as ad
    >>> ad.zeros((2.5,))
    Traceback (most recent call last):
    ...
    TypeError: zeros: shape (2.5,) has the entry 2.5 (float); every entry must be an integer (bools, floats and strings are refused, not truncated).
    """
    return _filled(shape, 0, dtype, device, "zeros")


def ones(shape, dtype=_dtypes.float32, device=None) -> Tensor:
    """A tensor of ones (float32 unless ``dtype`` says otherwise); ``shape`` as
    in :func:`zeros`."""
    return _filled(shape, 1, dtype, device, "ones")


def _like(x):
    """What a ``*_like`` op needs of ``x``: its shape, dtype and device (a Variable
    is not read: a Tensor, Variable or Abstract value answers all three)."""
    return x if isinstance(x, (Tensor, Variable, Abstract)) else to_tensor(x)


def zeros_like(input, dtype=None) -> Tensor:  # noqa: A002
    """Zeros with the shape, dtype and device of ``input``."""
    x = _like(input)
    return _filled(x.shape, 0, dtype or x.dtype, x._device, "zeros_like")


def ones_like(input, dtype=None) -> Tensor:  # noqa: A002
    """Ones with the shape, dtype and device of ``input``."""
    x = _like(input)
    return _filled(x.shape, 1, dtype or x.dtype, x._device, "ones_like")


def fill(dims, value, device=None) -> Tensor:
    """A tensor of shape ``dims`` filled with ``value`` (dtype inferred from it).

    >>> import gpuad as ad
    >>> ad.fill((2,), 3).numpy()
    array([3, 3], dtype=int32)
    """
    dims = shape_arg("fill", dims, "dims")
    arr = host_array(value, None)
    return _filled(dims, arr.item(), arr.dtype, device, "fill", "dims")


def range(start, limit=None, delta=1, dtype=None, device=None) -> Tensor:  # noqa: A001
    """Evenly spaced values in [start, limit): int32 for ints, float32 for floats.
    Integer ranges are computed exactly, in integers (int64 values beyond 2**53
    do not round); every value must fit ``dtype``.

    >>> import gpuad as ad
    >>> ad.range(1, 7, 2).numpy()
    array([1, 3, 5], dtype=int32)
    >>> ad.range(2**53 + 1, 2**53 + 4).numpy()
    array([9007199254740993, 9007199254740994, 9007199254740995])
    """
    if limit is None:
        start, limit = 0, start
    values = [v.numpy().item() if isinstance(v, (Tensor, Variable))
              else v.item() if isinstance(v, np.generic) else v for v in (start, limit, delta)]
    if dtype is not None:
        dt = _dtypes.as_dtype(dtype, "range")
    else:
        dt = _dtypes.from_numpy(host_array(values, None, "range").dtype)
    if dt.is_integer:
        start, limit, delta = (host_array(v, dt, "range").item() for v in values)
        if delta == 0:
            raise InvalidArgumentError("range: delta must not be 0.", "range")
        n = max(0, -((start - limit) // delta))  # ceil((limit - start) / delta), exactly
        # start + i * delta in int64 is exact for every value between start and the
        # last one (those fit dt); an intermediate i * delta may wrap and wrap back
        with np.errstate(over="ignore"):
            arr = np.int64(start) + np.arange(n, dtype=np.int64) * np.int64(delta)
        return _from_host(arr.astype(dt.numpy), device)
    if values[2] == 0:
        raise InvalidArgumentError("range: delta must not be 0.", "range")
    return _from_host(np.arange(*values, dtype=np.float64).astype(dt.numpy), device)


def linspace(start, stop, num, device=None) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop`` inclusive;
    float32 for float endpoints, float64 for int endpoints (as TF)."""
    num = _count("linspace", "num", num)
    ints = all(isinstance(v, (int, np.integer)) for v in (start, stop))
    floats = [v for v in (start, stop) if isinstance(v, (np.floating, np.ndarray))]
    dtype = np.float64 if ints else (np.result_type(*floats) if floats else np.float32)
    return _from_host(np.linspace(start, stop, num).astype(dtype), device)


def _count(op, name, value) -> int:
    """A count or size argument: a non-negative int (floats raise ``TypeError``,
    negatives ``InvalidArgumentError``; nothing is truncated)."""
    n = as_int(op, name, value)
    if n < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, got {n}.", op)
    return n


def eye(num_rows, num_columns=None, dtype=_dtypes.float32, device=None) -> Tensor:
    """The identity matrix (``num_rows`` x ``num_columns``); both non-negative ints."""
    rows = _count("eye", "num_rows", num_rows)
    cols = rows if num_columns is None else _count("eye", "num_columns", num_columns)
    return _from_host(np.eye(rows, cols, dtype=_dtypes.as_dtype(dtype).numpy), device)


def _from_host(arr, device) -> Tensor:
    return bind(T.CONSTANT, (), value=arr, device=_device(device))


def one_hot(indices, depth, on_value=None, off_value=None, axis=-1, dtype=_dtypes.float32) -> Tensor:
    """``on_value`` at each index along a new axis of size ``depth``, else
    ``off_value``; indices outside [0, depth) give an all-off row.

    >>> import gpuad as ad
    >>> ad.one_hot([0, 2], 3).numpy()
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    depth = as_int("one_hot", "depth", depth)
    axis = -1 if axis is None else as_int("one_hot", "axis", axis)
    idx = to_tensor(indices)
    if not -1 <= axis <= idx.ndim:
        raise InvalidArgumentError(f"Expected axis to be -1 or between [0, {idx.ndim}]. But "
                                   f"received: {axis} (indices of rank {idx.ndim}).", "one_hot")
    dtype = _dtypes.as_dtype(dtype)
    on = 1 if on_value is None else on_value
    off = 0 if off_value is None else off_value
    out = bind(T.ONE_HOT, (idx,), depth=depth, on_value=on, off_value=off, dtype=dtype.numpy)
    if axis in (-1, idx.ndim):
        return out
    from .array import transpose
    perm = list(builtins.range(idx.ndim))
    perm.insert(axis, idx.ndim)
    return transpose(out, perm)

