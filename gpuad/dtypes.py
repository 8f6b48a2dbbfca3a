"""Data types: thin named wrappers around NumPy dtypes.

A gpuad dtype compares equal to the NumPy dtype and to its name, so both
``gpuad.float32 == np.float32`` and ``gpuad.float32 == "float32"`` hold, as in TensorFlow.

>>> import gpuad as ad, numpy as np
>>> ad.float32 == np.float32, ad.float32 == "float32"
(True, True)
>>> ad.float64.is_floating, ad.int32.is_floating
(True, False)

``float16``, ``uint8``, ``int8`` and ``int16`` are named (``ad.float16 ==
np.float16``), but no op computes with them yet: every place that would make a
tensor of one raises a ``TypeError`` that says what to use instead.

>>> ad.constant([1.0, 2.0], dtype=ad.float16)
Traceback (most recent call last):
  ...
TypeError: constant: gpuad does not support the dtype float16 yet (float16, uint8, int8 and int16 are named, but no op computes with them yet); use float32 instead: pass dtype=gpuad.float32, or cast NumPy data first with a.astype(np.float32).
"""
from __future__ import annotations

import numpy as np

__all__ = ["DType", "float32", "float64", "int32", "int64", "bool", "float16", "uint8", "int8",
           "int16", "as_dtype"]


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
# Named, not supported yet: as_dtype refuses them (see the module docstring).
float16 = DType("float16")
uint8 = DType("uint8")
int8 = DType("int8")
int16 = DType("int16")

SUPPORTED = (float32, float64, int32, int64, bool)
_UNSUPPORTED = (float16, uint8, int8, int16)
_BY_NUMPY = {d.numpy: d for d in SUPPORTED + _UNSUPPORTED}
# the NumPy dtypes a tensor may hold, and the range of each integer one
_SUPPORTED_NUMPY = frozenset(d.numpy for d in SUPPORTED)
INT_BOUNDS = {d.numpy: (int(np.iinfo(d.numpy).min), int(np.iinfo(d.numpy).max))
              for d in (int32, int64)}


def from_numpy(np_dtype) -> DType:
    """The gpuad dtype for a NumPy dtype (used on every ``Tensor.dtype`` read)."""
    try:
        return _BY_NUMPY[np_dtype]
    except KeyError:
        raise TypeError(f"gpuad does not support the dtype {np_dtype}; "
                        f"use one of float32, float64, int32, int64, bool") from None


def _instead(d: DType) -> str:
    return "float32" if d.is_floating else "int32"


def not_supported_yet(d: DType, op: str | None = None) -> TypeError:
    """The error for a dtype gpuad names but does not compute with yet."""
    use = _instead(d)
    return TypeError(f"{op + ': ' if op else ''}gpuad does not support the dtype {d.name} yet "
                     f"(float16, uint8, int8 and int16 are named, but no op computes with them "
                     f"yet); use {use} instead: pass dtype=gpuad.{use}, or cast NumPy data first "
                     f"with a.astype(np.{use}).")


def check_supported(np_dtype, op: str | None = None) -> None:
    """Raise a clear ``TypeError`` unless a tensor may hold ``np_dtype``."""
    if np_dtype not in _SUPPORTED_NUMPY:
        d = _BY_NUMPY.get(np_dtype)
        if d is not None:
            raise not_supported_yet(d, op)
        raise TypeError(f"{op + ': ' if op else ''}gpuad does not support the dtype {np_dtype}; "
                        f"use one of float32, float64, int32, int64, bool (cast NumPy data "
                        f"first, e.g. a.astype(np.float32)).")


def as_dtype(value, op: str | None = None) -> DType:
    """Turn a DType, a NumPy dtype/type or a name into a gpuad DType that
    tensors can hold; ``op`` names the caller in the error.

    >>> import gpuad as ad, numpy as np
    >>> ad.as_dtype("float64"), ad.as_dtype(np.int32)
    (gpuad.float64, gpuad.int32)
    >>> ad.as_dtype(ad.int8)
    Traceback (most recent call last):
      ...
    TypeError: gpuad does not support the dtype int8 yet (float16, uint8, int8 and int16 are named, but no op computes with them yet); use int32 instead: pass dtype=gpuad.int32, or cast NumPy data first with a.astype(np.int32).
    """
    try:
        d = _BY_NUMPY[value.numpy if isinstance(value, DType) else np.dtype(value)]
    except (KeyError, TypeError, ValueError):
        raise TypeError(f"{op + ': ' if op else ''}Cannot interpret {value!r} as a gpuad dtype; "
                        f"use one of gpuad.float32, float64, int32, int64, bool") from None
    if d.numpy not in _SUPPORTED_NUMPY:
        raise not_supported_yet(d, op)
    return d
