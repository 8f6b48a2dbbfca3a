"""Data types: thin named wrappers around NumPy dtypes.

A gpuad dtype compares equal to the NumPy dtype and to its name, so both
``gpuad.float32 == np.float32`` and ``gpuad.float32 == "float32"`` hold, as in TensorFlow.

>>> import gpuad as ad, numpy as np
>>> ad.float32 == np.float32, ad.float32 == "float32"
(True, True)
>>> ad.float64.is_floating, ad.int32.is_floating
(True, False)
"""
from __future__ import annotations

import numpy as np

__all__ = ["DType", "float32", "float64", "int32", "int64", "bool", "as_dtype"]


class DType:
    """A tensor element type; ``.numpy`` is the NumPy dtype behind it."""

    __slots__ = ("name", "numpy", "is_floating", "is_integer", "is_bool")

    def __init__(self, name: str):
        self.name = name
        self.numpy = np.dtype(name)
        self.is_floating = self.numpy.kind == "f"
        self.is_integer = self.numpy.kind in "iu"
        self.is_bool = self.numpy.kind == "b"

    @property
    def as_numpy_dtype(self):
        return self.numpy.type

    def __eq__(self, other):
        if isinstance(other, DType):
            return other is self
        try:
            return np.dtype(other) == self.numpy
        except TypeError:
            return False

    def __hash__(self):
        return hash(self.numpy)

    def __repr__(self):
        return f"gpuad.{self.name}"

    def __str__(self):
        return f"<dtype: '{self.name}'>"


float32 = DType("float32")
float64 = DType("float64")
int32 = DType("int32")
int64 = DType("int64")
bool = DType("bool")  # noqa: A001 - the public name, as tf.bool

_BY_NUMPY = {d.numpy: d for d in (float32, float64, int32, int64, bool)}
_BY_NUMPY.update({np.dtype(np.float16): DType("float16"), np.dtype(np.uint8): DType("uint8"),
                  np.dtype(np.int8): DType("int8"), np.dtype(np.int16): DType("int16")})


def from_numpy(np_dtype) -> DType:
    """The gpuad dtype for a NumPy dtype (used on every ``Tensor.dtype`` read)."""
    try:
        return _BY_NUMPY[np_dtype]
    except KeyError:
        raise TypeError(f"gpuad does not support the dtype {np_dtype}; "
                        f"use one of float32, float64, int32, int64, bool") from None


def as_dtype(value) -> DType:
    """Turn a DType, a NumPy dtype/type or a name into a gpuad DType."""
    if isinstance(value, DType):
        return value
    try:
        return from_numpy(np.dtype(value))
    except TypeError:
        raise TypeError(f"Cannot interpret {value!r} as a gpuad dtype; use one of "
                        f"gpuad.float32, float64, int32, int64, bool") from None
