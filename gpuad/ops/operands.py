"""Turning what users pass to an op into Tensors: Variables are read, Python
and NumPy data become constants, and in a binary op a Python number takes the
other operand's dtype (a float never silently becomes an int, and an int that
does not fit raises instead of wrapping around). When both operands are Python
numbers, the weak-type rule applies: an int with a float gives float32.

>>> import gpuad as ad
>>> from gpuad.ops.operands import coerce2
>>> x, y = coerce2(ad.constant([1.0, 2.0], dtype=ad.float64), 3)
>>> y.dtype, y.numpy()
(gpuad.float64, np.float64(3.0))
>>> [t.dtype for t in coerce2(1, 3.0)]
[gpuad.float32, gpuad.float32]
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dtypes
from ..host_data import check_fits, host_array
from ..tensor import Tensor, Variable, _convert, convert_to_tensor
from . import table as T
from .core import bind


def to_tensor(x) -> Tensor:
    """A single op argument as a Tensor (Variables are read, data converted)."""
    if type(x) is Tensor:
        return x
    if isinstance(x, Variable):
        return x._read()
    return convert_to_tensor(x)


# Tensors are immutable, so one 0-d constant per (value, dtype, device) can back
# every use of a number like the 2.0 in `x * 2.0` (bounded). Not cached: zero
# (0.0 == -0.0 as keys, but their signs differ) and NaN (never equal to itself).
_scalars: dict = {}


def adopt(value, like, op: str = "a binary op") -> Tensor:
    """A non-tensor operand converted to ``like``'s dtype and device: Python
    numbers and lists follow the Python-scalar rule, NumPy data is cast
    silently, as in TensorFlow, but a value that does not fit an integer
    dtype raises (``op`` names the op). Numbers become fill kernels, not transfers."""
    dev = like._device
    cls = type(value)
    if cls is float or cls is int:
        cacheable = value and value == value
        key = (cls, value, like._data.dtype, dev)
        t = _scalars.get(key) if cacheable else None
        if t is None:  # only a miss converts (and range-checks) the number
            arr = host_array(value, like.dtype, op, adopted=True)
            t = bind(T.FILL, (), shape=(), value=arr.item(), dtype=arr.dtype, device=dev)
            if cacheable and len(_scalars) < 4096:
                _scalars[key] = t
        return t
    if isinstance(value, np.generic):  # a NumPy scalar: cast, then a fill kernel
        arr = np.asarray(value)
        check_fits(arr, like._data.dtype, op, adopted=True)
        arr = arr.astype(like._data.dtype)
        return bind(T.FILL, (), shape=(), value=arr.item(), dtype=arr.dtype, device=dev)
    if isinstance(value, np.ndarray):
        check_fits(value, like._data.dtype, op, adopted=True)
        arr = value.astype(like._data.dtype)
    else:
        arr = host_array(value, like.dtype, op, adopted=True)
    return bind(T.CONSTANT, (), value=arr, device=dev)


_PY_NUMBERS = (int, float, bool)


def coerce2(x, y, op: str = "a binary op"):
    """Two operands of a binary op as Tensors; non-tensors adopt the other's
    dtype. Two Python numbers: the weak-type rule (any float makes both
    float32; ints are int32, or int64 if one does not fit)."""
    # A Variable is read only once the other operand converted: a conversion
    # that fails records no read on any tape (a Variable knows its dtype and device).
    if isinstance(x, (Tensor, Variable)):
        if not isinstance(y, (Tensor, Variable)):
            y = adopt(y, x, op)
    elif isinstance(y, (Tensor, Variable)):
        x = adopt(x, y, op)
    else:
        cx, cy = type(x), type(y)
        if cx in _PY_NUMBERS and cy in _PY_NUMBERS:
            if cx is float or cy is float:
                dtype = _dtypes.float32
            else:
                dtype = _dtypes.from_numpy(host_array([x, y], None, op).dtype)
            x = _convert(x, dtype, None, None, op)
        else:
            x = _convert(x, None, None, None, op)
        y = adopt(y, x, op)
    if isinstance(x, Variable):
        x = x._read()
    if isinstance(y, Variable):
        y = y._read()
    return x, y
