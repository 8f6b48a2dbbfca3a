"""Python and NumPy data as host arrays, with gpuad's dtype rules: what
``constant``, ``convert_to_tensor``, ``assign`` and the Python-number operands
of binary ops are made from.

- inference: a Python float is float32, a Python int int32 (int64 if it does
  not fit), NumPy data keeps its dtype, a list of Tensors keeps their one dtype;
- nothing wraps around: an integer that does not fit its dtype raises;
- nothing is promoted: tensors of different dtypes in one list raise, and a
  Python float never silently becomes an integer.

>>> from gpuad.host_data import host_array
>>> from gpuad import int32
>>> host_array([1, 2], None).dtype, host_array(2 ** 40, None).dtype
(dtype('int32'), dtype('int64'))
>>> host_array(2 ** 40, int32)
Traceback (most recent call last):
...
TypeError: constant: Cannot convert 1099511627776 to a tensor of dtype int32: it is outside int32's range [-2147483648, 2147483647] and would wrap around; use dtype=gpuad.int64 (or a float dtype).
"""
from __future__ import annotations

import math
import threading

import numpy as np

from . import dtypes as _dtypes
from .errors import InvalidArgumentError


def _tensor_types() -> tuple:
    """(Tensor, Variable): looked up when first needed (tensor.py imports this module)."""
    from .tensor import Tensor, Variable
    return Tensor, Variable


# Set by Tensor.__array__: a list given to host_array held tensors (per thread).
reads = threading.local()
_I32_MIN, _I32_MAX = _dtypes.INT_BOUNDS[np.dtype(np.int32)]
_I64_MIN, _I64_MAX = _dtypes.INT_BOUNDS[np.dtype(np.int64)]
_NUMBERS = frozenset((int, float, bool))
_SEQUENCES = (list, tuple)


def _leaves(value, types: set, tensors: dict) -> None:
    """Walk a nested list/tuple: the types of its leaves go into ``types``, the
    dtypes of the Tensors/Variables among them into ``tensors`` (dtype -> one of
    them). ``set(map(type, ...))`` keeps a long list of numbers at C speed."""
    kinds = set(map(type, value))
    types |= kinds
    for k in kinds - _NUMBERS:
        if k is list or k is tuple:
            for v in value:
                if type(v) is k:
                    _leaves(v, types, tensors)
        elif issubclass(k, _tensor_types()):
            for v in value:
                if type(v) is k:
                    tensors.setdefault(v.dtype, v)


def _shown(value) -> str:
    """``repr(value)``, cut short: a message shows a huge number's ends only."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:36]}...{text[-36:]} ({len(text)} characters)"


def _out_of_range(value, target: np.dtype, op: str, adopted: bool) -> TypeError:
    """``value`` (a number) does not fit the integer dtype ``target``."""
    lo, hi = _dtypes.INT_BOUNDS[target]
    name = target.name
    if adopted:
        where = " (the dtype of the tensor it is combined with)"
        fix = ("cast that tensor to a dtype that holds it first, e.g. gpuad.cast(x, gpuad.int64)"
               if name == "int32" else "cast that tensor to float64 first: gpuad.cast(x, gpuad.float64)")
    else:
        where = ""
        fix = ("use dtype=gpuad.int64 (or a float dtype)" if name == "int32" else
               "use a float dtype (dtype=gpuad.float64), which rounds it")
    if isinstance(value, float) and not math.isfinite(value):
        why = "it is not finite, and an integer dtype has no inf or NaN"
    else:
        why = f"it is outside {name}'s range [{lo}, {hi}] and would wrap around"
    return TypeError(f"{op}: Cannot convert {_shown(value)} to a tensor of dtype {name}{where}: "
                     f"{why}; {fix}.")


def _too_wide(value, op: str) -> InvalidArgumentError:
    """A Python int beyond int64, the widest integer gpuad holds."""
    return InvalidArgumentError(
        f"Cannot convert {_shown(value)} to a tensor: it is outside the range of int64 [{_I64_MIN}, "
        f"{_I64_MAX}], the widest integer dtype gpuad holds. Pass a float instead "
        f"(float(value), or dtype=gpuad.float64, which rounds it).", op)


def check_fits(arr: np.ndarray, target: np.dtype, op: str, adopted: bool = False) -> None:
    """Raise unless every value of ``arr`` converts to the integer dtype ``target``
    without wrapping (floats are truncated toward zero first, as a cast does).
    Float and bool targets follow NumPy's cast (an overflow to a float is inf)."""
    bounds = _dtypes.INT_BOUNDS.get(target)
    if bounds is None or arr.size == 0 or arr.dtype.kind == "b":
        return
    kind = arr.dtype.kind
    if kind in "iu":
        if np.can_cast(arr.dtype, target):
            return
        lo, hi = int(arr.min()), int(arr.max())
        if lo < bounds[0]:
            raise _out_of_range(lo, target, op, adopted)
        if hi > bounds[1]:
            raise _out_of_range(hi, target, op, adopted)
    elif kind == "f":
        with np.errstate(invalid="ignore"):
            t = np.trunc(arr)
            ok = (t >= bounds[0]) & (t < bounds[1] + 1)  # False for NaN
        if not ok.all():
            bad = arr.reshape(-1)[np.argmin(ok.reshape(-1))]
            raise _out_of_range(bad.item(), target, op, adopted)


def _first_int_outside(value, lo: int, hi: int):
    """The first Python int leaf of nested ``value`` outside [lo, hi], or None."""
    for v in np.asarray(value, dtype=object).reshape(-1):
        if type(v) is int and not lo <= v <= hi:
            return v
    return None


def host_array(value, dtype: _dtypes.DType | None, op: str = "constant",
                adopted: bool = False) -> np.ndarray:
    """Python or NumPy data -> a host array with gpuad's dtype inference:
    Python float -> float32, Python int -> int32 (int64 if it does not fit),
    NumPy dtypes kept, a list of Tensors keeps their (one) dtype; with ``dtype``
    given, Python floats never become ints. An integer that does not fit its
    dtype raises: nothing wraps around. ``op`` names the caller in errors;
    ``adopted`` says ``dtype`` is another operand's (a binary op)."""
    cls = type(value)
    if cls is int:  # the common scalar: a bounds check, no NumPy inference
        if dtype is None:
            if _I32_MIN <= value <= _I32_MAX:
                return np.asarray(value, np.int32)
            if _I64_MIN <= value <= _I64_MAX:
                return np.asarray(value, np.int64)
            raise _too_wide(value, op)
        bounds = _dtypes.INT_BOUNDS.get(dtype.numpy)
        if bounds is not None:
            if not bounds[0] <= value <= bounds[1]:
                raise _out_of_range(value, dtype.numpy, op, adopted)
            return np.asarray(value, dtype.numpy)
    if value is None:
        raise ValueError("Attempt to convert a value (None) with an unsupported type "
                         "(<class 'NoneType'>) to a Tensor.")
    from_numpy = isinstance(value, (np.ndarray, np.generic))
    seq = cls is list or cls is tuple
    if seq:
        reads.array = False
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{op}: Cannot convert {value!r} to a tensor: {e}") from None
    kind = arr.dtype.kind
    types = None
    # Walk the list (a second pass in Python) only when NumPy's result may hide
    # something: tensors in it (their __array__ ran), or Python ints beyond
    # int64 (NumPy made them uint64, objects, or float64 of magnitude >= 2**63).
    if seq and (kind in "uO" or reads.array
                or kind == "f" and arr.size and not np.abs(arr).max() < 2.0 ** 63):
        types, tensors = set(), {}
        _leaves(value, types, tensors)
        if tensors:  # no implicit promotion: the tensors' one dtype is the result's
            if len(tensors) > 1:
                names = " and ".join(sorted(d.name for d in tensors))
                raise TypeError(f"{op}: the list holds tensors of different dtypes ({names}); "
                                f"gpuad does not promote implicitly. Cast them to one dtype first "
                                f"(gpuad.cast(t, gpuad.float32)), then gpuad.stack them.")
            (tdtype, example), = tensors.items()
            if dtype is None:
                dtype = tdtype
            elif dtype != tdtype:
                raise ValueError(f"{op}: conversion requested dtype {dtype.name} for a list "
                                 f"holding a tensor of dtype {tdtype.name}: {example!r}. Cast "
                                 f"it first with gpuad.cast(t, gpuad.{dtype.name}).")
    if types is not None and kind in "uOf" and int in types and float not in types:
        # Python ints beyond int64 (NumPy made them uint64, float64 or objects)
        bounds = (_I64_MIN, _I64_MAX) if dtype is None else _dtypes.INT_BOUNDS.get(dtype.numpy)
        if bounds is not None:
            bad = _first_int_outside(value, *bounds)
            if bad is not None:
                raise _too_wide(bad, op) if dtype is None else _out_of_range(bad, dtype.numpy, op, adopted)
    if kind == "O" and (types is not None and types <= _NUMBERS | {list, tuple} or cls is int):
        try:  # numbers beyond int64 next to floats (or for a float dtype): floats
            arr = np.asarray(value, dtype=np.float64)
        except OverflowError:
            raise InvalidArgumentError(f"Cannot convert {_shown(value)} to a tensor: it holds a number "
                                       f"too large even for float64.", op) from None
        kind = "f"
    if kind not in "biuf":
        raise TypeError(f"{op}: Cannot convert {value!r} of type {type(value).__name__} to a "
                        f"tensor: gpuad holds bool, integer and float data only.")
    if dtype is not None:
        if kind == "f" and not dtype.is_floating and not from_numpy:
            # as TF: a Python float, even an integral one like 3.0, never becomes an int
            raise TypeError(f"{op}: Cannot convert {value!r} to a tensor of dtype {dtype.name}: "
                            f"a float does not convert to an integer dtype silently; "
                            f"use gpuad.cast to truncate.")
        check_fits(arr, dtype.numpy, op, adopted)
        return arr.astype(dtype.numpy, copy=False)
    if from_numpy:
        _dtypes.check_supported(arr.dtype, op)
    else:
        if kind == "f":
            arr = arr.astype(np.float32)
        elif kind in "iu":
            fits = arr.size == 0 or (arr.min() >= _I32_MIN and arr.max() <= _I32_MAX)
            arr = arr.astype(np.int32 if fits else np.int64)
    return arr
