"""Shape arithmetic shared by the shape rules and the public ops: broadcasting,
axis normalisation, and summing a gradient back to a broadcast input's shape.

>>> from gpuad.ops.shapes import broadcast_shape, normalize_axes
>>> broadcast_shape("add", (2, 1), (3,))
(2, 3)
>>> normalize_axes("reduce_sum", -1, 3)
(2,)
"""
from __future__ import annotations

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


def normalize_axes(op: str, axis, ndim: int) -> tuple:
    """``axis`` (None, an int, or a sequence; negative allowed) as a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    if hasattr(axis, "numpy"):  # a Tensor of axes
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
