"""Turning what users pass to an op into Tensors: Variables are read, Python
and NumPy data become constants, and in a binary op a Python number takes the
other operand's dtype (a float never silently becomes an int).

>>> import gpuad as ad
>>> from gpuad.ops.operands import coerce2
>>> x, y = coerce2(ad.constant([1.0, 2.0], dtype=ad.float64), 3)
>>> y.dtype, y.numpy()
(gpuad.float64, np.float64(3.0))
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, Variable, _host_array, convert_to_tensor
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


def adopt(value, like: Tensor) -> Tensor:
    """A non-tensor operand converted to ``like``'s dtype and device: Python
    numbers and lists follow the Python-scalar rule, NumPy data is cast
    silently, as in TensorFlow. Numbers become fill kernels, not transfers."""
    dev = like._device
    cls = type(value)
    if cls is float or cls is int:
        cacheable = value and value == value
        key = (cls, value, like._data.dtype, dev)
        t = _scalars.get(key) if cacheable else None
        if t is None:
            arr = _host_array(value, like.dtype)
            t = bind(T.FILL, (), shape=(), value=arr.item(), dtype=arr.dtype, device=dev)
            if cacheable and len(_scalars) < 4096:
                _scalars[key] = t
        return t
    if isinstance(value, np.generic):  # a NumPy scalar: cast, then a fill kernel
        arr = np.asarray(value).astype(like._data.dtype)
        return bind(T.FILL, (), shape=(), value=arr.item(), dtype=arr.dtype, device=dev)
    if isinstance(value, np.ndarray):
        arr = value.astype(like._data.dtype)
    else:
        arr = _host_array(value, like.dtype)
    return bind(T.CONSTANT, (), value=arr, device=dev)


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
