"""Shape arithmetic shared by the shape rules and the public ops: broadcasting,
axis normalisation, and summing a gradient back to a broadcast input's shape.

>>> from gpuad.ops.shapes import broadcast_shape, normalize_axes
>>> broadcast_shape("add", (2, 1), (3,))
(2, 3)
>>> normalize_axes("reduce_sum", -1, 3)
(2,)
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import InvalidArgumentError


def fmt(shape) -> str:
    """A shape as TensorFlow prints it in errors: ``[2,3]``."""
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
                    f"Incompatible shapes: {fmt(a)} vs. {fmt(b)}; they must be equal or 1 in "
                    f"each trailing dimension (NumPy broadcasting).", op)
            out.append(db if da == 1 else da)
        shape = tuple(out)
        if len(_broadcast_cache) < 8192:
            _broadcast_cache[key] = shape
    return shape


def all_ints(seq, low=None) -> bool:
    """Whether every entry of ``seq`` is a plain ``int`` (not a bool), and at
    least ``low`` when given: the cheap check of the common case (shapes are
    short: a plain loop beats building anything)."""
    for d in seq:
        if type(d) is not int or (low is not None and d < low):
            return False
    return True


def _spell(value) -> str:
    """``value`` as an error message shows it (a Tensor by its values)."""
    if hasattr(value, "numpy") and hasattr(value, "dtype"):
        try:
            return f"{value.numpy().tolist()!r} ({value.dtype.name} tensor)"
        except Exception:  # noqa: BLE001  (only for the message)
            pass
    return repr(value)


def as_int(op: str, name: str, value) -> int:
    """``value`` as a Python int: an int, an integer NumPy scalar or 0-d array, or
    a 0-d integer Tensor. Bools, floats (even integral ones: TensorFlow refuses
    ``2.0`` as a dimension too), strings and None raise ``TypeError`` naming the
    op, the argument and the value; nothing is truncated.

    >>> from gpuad.ops.shapes import as_int
    >>> as_int("eye", "num_rows", 3)
    3
    >>> as_int("eye", "num_rows", 2.5)
    Traceback (most recent call last):
    ...
    TypeError: eye: num_rows must be an integer, got 2.5 (float); give a whole number such as 2.
    """
    if type(value) is int:
        return value
    if not isinstance(value, (bool, np.bool_, float, np.floating, complex, str, bytes)):
        if isinstance(value, np.ndarray):
            if value.ndim == 0 and value.dtype.kind in "iu":
                return int(value)
        else:
            try:
                return operator.index(value)
            except TypeError:
                pass
    raise TypeError(f"{op}: {name} must be an integer, got {_spell(value)} "
                    f"({type(value).__name__}); give a whole number such as "
                    f"{_example(value)}.")


def _example(value) -> int:
    try:
        return max(int(value), 0)
    except Exception:  # noqa: BLE001  (only for the message)
        return 2


def _int_items(op: str, name: str, value) -> list:
    """The entries of a shape-like argument (an int, a sequence, a 1-d integer
    array or Tensor) as Python ints; anything else raises ``TypeError``."""
    if type(value) in (tuple, list) and all_ints(value):
        return list(value)  # the common case, kept cheap
    example = "0 or [0, 1]" if name in ("axis", "perm") else "(2, 3)"
    if hasattr(value, "numpy") and hasattr(value, "dtype") and not isinstance(value, np.ndarray):
        if not value.dtype.is_integer or len(value.shape) > 1:
            raise TypeError(f"{op}: {name} must be an int or a 1-d integer tensor, got "
                            f"{_spell(value)}.")
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.ndim > 1 or (value.dtype.kind not in "iu" and value.size):
            raise TypeError(f"{op}: {name} must be an int or a 1-d array of ints, got "
                            f"{value!r}.")
        return [int(v) for v in value.reshape(-1)]
    if isinstance(value, (str, bytes, dict, set, frozenset)) or value is None:
        raise TypeError(f"{op}: {name} must be an int or a sequence of ints such as {example}, "
                        f"got {value!r}.")
    try:
        return [as_int(op, name, value)]
    except TypeError:
        pass
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a sequence of ints such as {example}, "
                        f"got {_spell(value)} ({type(value).__name__}).") from None
    out = []
    for d in items:
        try:
            out.append(as_int(op, name, d))
        except TypeError:
            raise TypeError(f"{op}: {name} {_spell(value)} has the entry {_spell(d)} "
                            f"({type(d).__name__}); every entry must be an integer (bools, "
                            f"floats and strings are refused, not truncated).") from None
    return out


def check_dims(op: str, shape, name: str = "shape") -> None:
    """Raise unless every dimension of ``shape`` is a non-negative int: the check
    that the shape rules of primitives with a shape attribute run."""
    if all_ints(shape, 0):
        return  # the common case, kept cheap
    for d in shape:
        if type(d) is not int and not isinstance(d, np.integer) or isinstance(d, bool):
            raise TypeError(f"{op}: {name} {tuple(shape)!r} has the entry {d!r} "
                            f"({type(d).__name__}); every entry must be an integer.")
        if d < 0:
            raise InvalidArgumentError(
                f"{name[0].upper() + name[1:]} {fmt(shape)} has a negative dimension {d}; "
                f"every dimension must be >= 0.", op)


def shape_arg(op: str, shape, name: str = "shape") -> tuple:
    """A shape argument (an int, a sequence of ints, a 1-d integer array or
    Tensor) as a tuple of non-negative Python ints. Non-integers raise
    ``TypeError``, negative dimensions ``InvalidArgumentError``, each naming the
    op and the value.

    >>> from gpuad.ops.shapes import shape_arg
    >>> shape_arg("zeros", (2, 3)), shape_arg("zeros", 4)
    ((2, 3), (4,))
    >>> shape_arg("zeros", (2, -1))
    Traceback (most recent call last):
    ...
    gpuad.errors.InvalidArgumentError: Shape [2,-1] has a negative dimension -1; every dimension must be >= 0. [Op:zeros]
    """
    if type(shape) is tuple and all_ints(shape, 0):
        return shape  # the common case, kept cheap
    out = tuple(_int_items(op, name, shape))
    check_dims(op, out, name)
    return out


def normalize_axes(op: str, axis, ndim: int) -> tuple:
    """``axis`` (None, an int, or a sequence; negative allowed) as a sorted tuple.
    Non-integer axes raise ``TypeError``; an axis out of range or given twice
    (``[0, 0]``, or ``[0, -2]`` on a matrix) raises ``InvalidArgumentError``, as
    TensorFlow does."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int:  # the common case, kept cheap
        items = (axis,)
    else:
        items = _int_items(op, "axis", axis)
    out = []
    for a in items:
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise InvalidArgumentError(
                f"Invalid reduction dimension ({a} for input with {ndim} dimension(s)); axes "
                f"must lie in [-{ndim}, {ndim}).", op)
        a = a % ndim if ndim else 0
        if a in out:
            raise InvalidArgumentError(
                f"Axes contains duplicate dimension: {a} (axis={_spell(axis)} for input with "
                f"{ndim} dimension(s)); give each axis once.", op)
        out.append(a)
    return tuple(sorted(out)) if ndim else ()


def normalize_axis(op: str, axis, ndim: int) -> int:
    """One axis in [-ndim, ndim) as a non-negative int; a non-integer axis raises
    ``TypeError``."""
    if type(axis) is not int:
        axis = as_int(op, "axis", axis)
    if not -ndim <= axis < ndim:
        raise InvalidArgumentError(
            f"axis {axis} is out of range for a tensor of rank {ndim}; it must lie in "
            f"[-{ndim}, {ndim}).", op)
    return axis % ndim


def unbroadcast(g, shape: tuple):
    """Sum ``g`` over the axes that broadcasting added or stretched, so the
    result has exactly ``shape`` (the gradient of a broadcast input)."""
    gshape = g._data.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and gshape[lead + i] != 1)
    total = bind(T.REDUCE_SUM, (g,), axes=axes, keepdims=False)
    if total._data.shape == shape:
        return total
    return bind(T.RESHAPE, (total,), shape=shape)


from . import table as T  # noqa: E402  (the table's VJPs use unbroadcast)
from .core import bind  # noqa: E402
