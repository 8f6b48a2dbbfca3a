"""Python operators on Tensor and Variable (``+ - * / // % ** @``, unary ``-``,
``abs``, comparisons, ``[]``), bound to the gpuad ops.

``==`` and ``!=`` are element-wise; on shapes that do not broadcast they
return a scalar False/True (as TensorFlow's operators do), and against None
they are plain False/True.
"""
from __future__ import annotations

from ..errors import InvalidArgumentError
from ..tensor import Tensor, Variable
from . import array as A, math as M
from .operands import coerce2
from .shapes import broadcast_shape


def _swap(fn):
    return lambda self, other: fn(other, self)


def _compare(fn, self, other, mismatch):
    # Only shapes that do not broadcast give a scalar; a dtype mismatch still raises.
    x, y = coerce2(self, other, fn.__name__)
    try:
        broadcast_shape(fn.__name__, x.shape, y.shape)
    except InvalidArgumentError:
        from .creation import fill
        return fill((), mismatch, device=x._device)
    return fn(x, y)


def _eq(self, other):
    return False if other is None else _compare(M.equal, self, other, False)


def _ne(self, other):
    return True if other is None else _compare(M.not_equal, self, other, True)


def _and(x, y):
    return M.logical_and(x, y)


def _or(x, y):
    return M.logical_or(x, y)


def _invert(x):
    return M.logical_not(x)


OPERATORS = {
    "__add__": M.add, "__radd__": _swap(M.add),
    "__sub__": M.subtract, "__rsub__": _swap(M.subtract),
    "__mul__": M.multiply, "__rmul__": _swap(M.multiply),
    "__truediv__": M.divide, "__rtruediv__": _swap(M.divide),
    "__floordiv__": M.floordiv, "__rfloordiv__": _swap(M.floordiv),
    "__mod__": M.floormod, "__rmod__": _swap(M.floormod),
    "__pow__": M.pow, "__rpow__": _swap(M.pow),
    "__matmul__": M.matmul, "__rmatmul__": _swap(M.matmul),
    "__neg__": M.negative, "__abs__": M.abs, "__pos__": lambda x: x,
    "__lt__": M.less, "__le__": M.less_equal, "__gt__": M.greater, "__ge__": M.greater_equal,
    "__eq__": _eq, "__ne__": _ne,
    "__and__": _and, "__rand__": _swap(_and), "__or__": _or, "__ror__": _swap(_or),
    "__invert__": _invert,
    "__getitem__": A.getitem,
}

for _name, _fn in OPERATORS.items():
    setattr(Tensor, _name, _fn)
    setattr(Variable, _name, _fn)
