"""Math ops: element-wise, comparisons, reductions and linear algebra.

>>> import gpuad as ad
>>> x = ad.constant([[1.0, 2.0], [3.0, 4.0]])
>>> ad.reduce_sum(x, axis=0).numpy()
array([4., 6.], dtype=float32)
>>> ad.matmul(x, x).numpy()
array([[ 7., 10.],
       [15., 22.]], dtype=float32)
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dtypes
from ..errors import InvalidArgumentError
from ..tensor import Tensor
from . import table as T
from .core import bind
from .infer import dtype_error
from .operands import coerce2, to_tensor
from .shapes import _int_items, as_int, broadcast_shape, normalize_axes, normalize_axis


def _unary(prim, what):
    def op(x):
        return bind(prim, (x if type(x) is Tensor else to_tensor(x),))
    op.__name__ = op.__qualname__ = prim.name
    example, dtype = ("True", "bool") if prim.kinds == "b" else ("1.0", "float32")
    op.__doc__ = (f"Element-wise {what}.\n\n>>> import gpuad as ad\n"
                  f">>> ad.{prim.name}(ad.constant({example})).dtype\ngpuad.{dtype}\n")
    return op


def _binary(prim, what):
    def op(x, y):
        if type(x) is not Tensor or type(y) is not Tensor:
            x, y = coerce2(x, y, name)
        return bind(prim, (x, y))
    name = prim.name
    op.__name__ = op.__qualname__ = prim.name
    op.__doc__ = (f"Element-wise {what}, with NumPy broadcasting; both operands must have "
                  f"the same dtype (Python numbers adopt the tensor's).")
    return op


negative = _unary(T.NEGATIVE, "-x")
abs = _unary(T.ABS, "|x|; its gradient at 0 is 0")  # noqa: A001
sign = _unary(T.SIGN, "sign(x) in {-1, 0, 1}; its gradient is 0")
square = _unary(T.SQUARE, "x * x")
sqrt = _unary(T.SQRT, "square root; the gradient at 0 is inf")
rsqrt = _unary(T.RSQRT, "1 / sqrt(x)")
reciprocal = _unary(T.RECIPROCAL, "1 / x")
exp = _unary(T.EXP, "e ** x")
log = _unary(T.LOG, "natural logarithm")
log1p = _unary(T.LOG1P, "log(1 + x), accurate near 0")
expm1 = _unary(T.EXPM1, "e ** x - 1, accurate near 0")
sin = _unary(T.SIN, "sine")
cos = _unary(T.COS, "cosine")
tan = _unary(T.TAN, "tangent")
tanh = _unary(T.TANH, "hyperbolic tangent")
sigmoid = _unary(T.SIGMOID, "logistic sigmoid 1 / (1 + e ** -x), stable for large |x|")
erf = _unary(T.ERF, "error function")
floor = _unary(T.FLOOR, "floor (not differentiable: the gradient is None)")
round = _unary(T.ROUND, "round half to even (not differentiable)")  # noqa: A001
logical_not = _unary(T.LOGICAL_NOT, "not, on bool tensors")

add = _binary(T.ADD, "x + y")
subtract = _binary(T.SUBTRACT, "x - y")
multiply = _binary(T.MULTIPLY, "x * y")
floordiv = _binary(T.FLOORDIV, "floor(x / y) (not differentiable)")
floormod = _binary(T.FLOORMOD, "x - floor(x / y) * y, with the sign of y")
maximum = _binary(T.MAXIMUM, "max(x, y); on a tie the gradient goes to x")
minimum = _binary(T.MINIMUM, "min(x, y); on a tie the gradient goes to x")
equal = _binary(T.EQUAL, "x == y, a bool tensor")
not_equal = _binary(T.NOT_EQUAL, "x != y, a bool tensor")
less = _binary(T.LESS, "x < y, a bool tensor")
less_equal = _binary(T.LESS_EQUAL, "x <= y, a bool tensor")
greater = _binary(T.GREATER, "x > y, a bool tensor")
greater_equal = _binary(T.GREATER_EQUAL, "x >= y, a bool tensor")
logical_and = _binary(T.LOGICAL_AND, "and, on bool tensors")
logical_or = _binary(T.LOGICAL_OR, "or, on bool tensors")
mod = floormod


def divide(x, y):
    """x / y. Integer tensors are divided in float64, as TensorFlow's truediv.

    >>> import gpuad as ad
    >>> ad.divide(ad.constant([1, 2]), 2).numpy()
    array([0.5, 1. ])
    """
    if type(x) is not Tensor or type(y) is not Tensor:
        x, y = coerce2(x, y, "divide")
    if x._data.dtype.kind in "iu" and x._data.dtype == y._data.dtype:
        x, y = cast(x, _dtypes.float64), cast(y, _dtypes.float64)
    return bind(T.DIVIDE, (x, y))


def pow(x, y):  # noqa: A001
    """x ** y. Its gradients follow TF at the edges: d/dx of x**2 at 0 is 0,
    of x**0.5 at 0 is inf, and d/dy uses log(x) taken as 0 where x <= 0.

    >>> import gpuad as ad
    >>> ad.pow(ad.constant([2.0, 3.0]), 2).numpy()
    array([4., 9.], dtype=float32)
    """
    if type(y) in (int, float) and y == 2 and isinstance(x, Tensor):
        return bind(T.SQUARE, (x,))  # same values and gradients as pow(x, 2), half the work
    if type(x) is not Tensor or type(y) is not Tensor:
        x, y = coerce2(x, y, "pow")
    return bind(T.POW, (x, y))


def squared_difference(x, y):
    """(x - y) ** 2."""
    return square(subtract(x, y))


def where(condition, x=None, y=None):
    """Pick ``x`` where ``condition`` holds, else ``y`` (all three broadcast).

    >>> import gpuad as ad
    >>> ad.where(ad.constant([True, False]), 1.0, 2.0).numpy()
    array([1., 2.], dtype=float32)
    """
    c = to_tensor(condition)
    if x is None and y is None:
        raise InvalidArgumentError("where with only a condition (the indices form) is not "
                                   "supported; pass x and y.", "where")
    x, y = coerce2(x, y)
    return bind(T.WHERE, (c, x, y))


def cast(x, dtype):
    """``x`` converted to ``dtype``; floats to integers truncate toward zero.
    Casting to an integer type cuts the gradient (it is None). The dtypes
    gpuad names but does not compute with yet (float16, uint8, int8, int16)
    raise a ``TypeError`` saying what to use instead.

    >>> import gpuad as ad
    >>> ad.cast(ad.constant([1.7, -1.7]), ad.int32).numpy()
    array([ 1, -1], dtype=int32)
    """
    x = to_tensor(x)
    dtype = _dtypes.as_dtype(dtype, "cast")
    if x._data.dtype == dtype.numpy:
        return x
    return bind(T.CAST, (x,), dtype=dtype.numpy)


def clip_by_value(t, clip_value_min, clip_value_max):
    """Clamp into [min, max]; the gradient is 1 on the (inclusive) bounds."""
    t = to_tensor(t)
    (_, lo), (_, hi) = coerce2(t, clip_value_min), coerce2(t, clip_value_max)
    for i, b in ((1, lo), (2, hi)):  # validate first: a failed op records nothing
        if b._data.dtype != t._data.dtype:
            raise dtype_error("clip_by_value", t.dtype, b.dtype, i)
    broadcast_shape("clip_by_value", broadcast_shape("clip_by_value", t.shape, lo.shape), hi.shape)
    return minimum(maximum(t, lo), hi)


# -- reductions ----------------------------------------------------------------------

def _reduce(prim, x, axis, keepdims):
    x = to_tensor(x)
    axes = normalize_axes(prim.name, axis, x.ndim)
    return bind(prim, (x,), axes=axes, keepdims=bool(keepdims))


def reduce_sum(input_tensor, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes; negative axes count from the end).

    >>> import gpuad as ad
    >>> ad.reduce_sum(ad.constant([[1, 2], [3, 4]]), axis=-1).numpy()
    array([3, 7], dtype=int32)
    """
    return _reduce(T.REDUCE_SUM, input_tensor, axis, keepdims)


def reduce_max(input_tensor, axis=None, keepdims=False):
    """Maximum over ``axis``; tied maxima share the gradient evenly."""
    return _reduce(T.REDUCE_MAX, input_tensor, axis, keepdims)


def reduce_min(input_tensor, axis=None, keepdims=False):
    """Minimum over ``axis``; tied minima share the gradient evenly."""
    return _reduce(T.REDUCE_MIN, input_tensor, axis, keepdims)


def reduce_prod(input_tensor, axis=None, keepdims=False):
    """Product over ``axis``; the gradient is exact where inputs are 0."""
    return _reduce(T.REDUCE_PROD, input_tensor, axis, keepdims)


def reduce_logsumexp(input_tensor, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, computed stably.

    >>> import gpuad as ad
    >>> f"{float(ad.reduce_logsumexp(ad.constant([0.0, 0.0]))):.4f}"
    '0.6931'
    """
    return _reduce(T.REDUCE_LOGSUMEXP, input_tensor, axis, keepdims)


def reduce_mean(input_tensor, axis=None, keepdims=False):
    """Mean over ``axis``. Integer tensors give an integer mean (truncated), as TF.

    >>> import gpuad as ad
    >>> ad.reduce_mean(ad.constant([1.0, 2.0])).numpy()
    np.float32(1.5)
    """
    x = to_tensor(input_tensor)
    axes = normalize_axes("reduce_mean", axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    total = _reduce(T.REDUCE_SUM, x, axes, keepdims)
    if x._data.dtype.kind == "f":
        return total / count if count else total * np.nan
    quotient = floordiv(total, max(count, 1))
    # C-style truncation toward zero, as TF's integer mean
    return where(logical_and(total < 0, floormod(total, max(count, 1)) != 0), quotient + 1, quotient)


def reduce_any(input_tensor, axis=None, keepdims=False):
    """Logical or over ``axis`` of a bool tensor."""
    x = to_tensor(input_tensor)
    return cast(_reduce(T.REDUCE_MAX, cast(x, _dtypes.int32), axis, keepdims), _dtypes.bool)


def reduce_all(input_tensor, axis=None, keepdims=False):
    """Logical and over ``axis`` of a bool tensor."""
    x = to_tensor(input_tensor)
    return cast(_reduce(T.REDUCE_MIN, cast(x, _dtypes.int32), axis, keepdims), _dtypes.bool)


def _arg(prim, x, axis, output_type):
    x = to_tensor(x)
    if x.ndim == 0:
        raise InvalidArgumentError(f"{prim.name} needs a tensor of rank >= 1, got a scalar.", prim.name)
    a = normalize_axis(prim.name, 0 if axis is None else axis, x.ndim)  # one axis, as TF
    return cast(bind(prim, (x,), axis=a), output_type)


def argmax(input, axis=None, output_type=_dtypes.int64):  # noqa: A002
    """Index of the largest value along ``axis`` (default 0); int64, no gradient."""
    return _arg(T.ARGMAX, input, axis, output_type)


def argmin(input, axis=None, output_type=_dtypes.int64):  # noqa: A002
    """Index of the smallest value along ``axis`` (default 0); int64, no gradient."""
    return _arg(T.ARGMIN, input, axis, output_type)


def norm(tensor, ord="euclidean", axis=None, keepdims=False):  # noqa: A002
    """Vector norm over ``axis``: ``"euclidean"``/2/``"fro"``, 1, or ``np.inf``.

    >>> import gpuad as ad
    >>> float(ad.norm(ad.constant([3.0, 4.0])))
    5.0
    """
    x = to_tensor(tensor)
    axes = normalize_axes("norm", axis, x.ndim)  # validate first: a failed op records nothing
    if axis is not None and not isinstance(axis, (int, np.integer)) and len(axes) == 2:
        return _matrix_norm(x, ord, tuple(int(a) % x.ndim for a in axis), keepdims)
    if ord in ("euclidean", "fro", 2, 2.0):
        return sqrt(reduce_sum(x * x, axis, keepdims))
    if ord in (1, 1.0):
        return reduce_sum(abs(x), axis, keepdims)
    if ord == np.inf:
        return reduce_max(abs(x), axis, keepdims)
    raise ValueError(f"norm: unsupported ord {ord!r}; use 'euclidean', 2, 'fro', 1 or np.inf.")


def _matrix_norm(x, ord, axes, keepdims):  # noqa: A002
    """Matrix norms over two axes (rows, cols), as tf.norm: Frobenius, max
    column sum (1), max row sum (inf)."""
    rows, cols = axes
    if ord in ("euclidean", "fro"):
        return sqrt(reduce_sum(x * x, axes, keepdims))
    if ord in (1, 1.0, np.inf):
        inner, outer = (rows, cols) if ord != np.inf else (cols, rows)
        sums = reduce_sum(abs(x), inner, keepdims=True)
        out = reduce_max(sums, outer, keepdims=True)
        if keepdims:
            return out
        from .array import squeeze
        return squeeze(out, sorted(axes))
    raise ValueError(f"norm: matrix ord {ord!r} is not supported; use 'fro', 'euclidean', 1 or "
                     f"np.inf (the spectral norm, ord=2, needs an SVD gpuad does not have yet).")


# -- linear algebra --------------------------------------------------------------------

def matmul(a, b, transpose_a=False, transpose_b=False):
    """Matrix product of the last two axes, batched (with broadcasting) over
    the rest; ``transpose_a``/``transpose_b`` transpose inside the product.

    >>> import gpuad as ad
    >>> ad.matmul(ad.ones((2, 3)), ad.ones((3, 4))).shape
    (2, 4)
    """
    a, b = coerce2(a, b)
    return bind(T.MATMUL, (a, b), transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def tensordot(a, b, axes):
    """Sum over the given axes of ``a`` and ``b`` (an int N: the last N of a
    with the first N of b; or a pair of axis lists), as ``np.tensordot``.

    >>> import gpuad as ad
    >>> float(ad.tensordot(ad.constant([1.0, 2.0]), ad.constant([1.0, 2.0]), 1))
    5.0
    """
    from .array import reshape, transpose
    a, b = coerce2(a, b)
    if not isinstance(axes, (list, tuple)) and not (hasattr(axes, "shape") and len(axes.shape)):
        n = as_int("tensordot", "axes", axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise InvalidArgumentError(f"tensordot: axes={n} is out of range for shapes "
                                       f"{a.shape} and {b.shape}.", "tensordot")
        ax_a, ax_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        if len(axes) != 2:
            raise InvalidArgumentError(f"tensordot: axes must be an int or a pair of axis lists "
                                       f"[axes_a, axes_b], got {axes!r}.", "tensordot")
        ax_a = [normalize_axis("tensordot", i, a.ndim)
                for i in _int_items("tensordot", "axis", axes[0])]
        ax_b = [normalize_axis("tensordot", i, b.ndim)
                for i in _int_items("tensordot", "axis", axes[1])]
        for ax, t in ((ax_a, a), (ax_b, b)):
            if len(set(ax)) != len(ax):
                raise InvalidArgumentError(f"tensordot: axes {axes!r} name an axis of the tensor "
                                           f"of shape {t.shape} twice; give each axis once.",
                                           "tensordot")
        if len(ax_a) != len(ax_b):
            raise InvalidArgumentError(f"tensordot: axes {axes!r} contract {len(ax_a)} axes of "
                                       f"a but {len(ax_b)} of b; give as many of each.",
                                       "tensordot")
    if [a.shape[i] for i in ax_a] != [b.shape[i] for i in ax_b]:
        raise InvalidArgumentError(f"tensordot: contracted dimensions differ: {a.shape} on "
                                   f"axes {ax_a} vs {b.shape} on axes {ax_b}.", "tensordot")
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [i for i in range(b.ndim) if i not in ax_b]
    k = int(np.prod([a.shape[i] for i in ax_a], dtype=np.int64))
    pa = int(np.prod([a.shape[i] for i in free_a], dtype=np.int64))
    pb = int(np.prod([b.shape[i] for i in free_b], dtype=np.int64))
    a2 = reshape(transpose(a, free_a + ax_a), (pa, k))
    b2 = reshape(transpose(b, ax_b + free_b), (k, pb))
    return reshape(matmul(a2, b2), tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


def add_n(inputs):
    """The sum of a list of tensors of one shape and dtype."""
    total = to_tensor(inputs[0])
    for x in inputs[1:]:
        total = add(total, x)
    return total
