"""The primitives, one row each: name, shape/dtype rule, kernel family, VJPs,
the values the VJPs keep, and (element-wise rows) the scalar functor.

This is the only place gradients are defined. Every VJP has the signature
``vjp(g, out, *inputs, **attrs)``: ``g`` is the gradient of the output,
``out`` the output, then the inputs under the names used in the row's comment
(``x``, ``x, y``, ``c, x, y``, ...); it returns that input's gradient, or None
when no gradient flows into it. VJPs are written in gpuad ops only, never
NumPy, so a backward pass is itself recorded by any outer tape (higher
derivatives) and runs on whatever device the tensors live on. ``keeps`` names
the values the VJPs read; the tape holds those and only the shapes of the
rest. Everything not listed here (subtract's cousins, reduce_mean, losses,
stack, tile, ...) is composed from these rows in ``math.py``, ``array.py``,
``creation.py`` and ``nn``.

Edge values follow TensorFlow (TF_REFERENCE.md §13): e.g. ``pow``'s gradient
masks ``log(base)`` to 0 where base <= 0, ``maximum`` gives ties to its first
argument, ``reduce_max`` splits ties evenly, and sqrt/rsqrt/reciprocal
backward give 0 where the upstream gradient is 0.

>>> from gpuad.ops.table import PRIMITIVES
>>> p = PRIMITIVES["multiply"]
>>> p.family, p.functor, p.keeps
('binary', 'Mul', ('x', 'y'))
"""
from __future__ import annotations

import math

import numpy as np

from . import infer as I
from .core import Primitive as P, bind
from .shapes import unbroadcast

_FLOAT, _NUMERIC, _BOOL = "f", "fiu", "b"


def _ub(g, x):
    """``g`` summed down to ``x``'s shape (x was broadcast); most often ``g`` itself."""
    shape = x._data.shape
    return g if g._data.shape == shape else unbroadcast(g, shape)


def _mask(cond, like):
    return M.cast(cond, like.dtype)


def _unary(name, functor, vjp, keeps, kinds=_FLOAT):
    """An element-wise row of one input ``x``."""
    return P(name, I.unary(kinds), "unary", functor=functor, vjps=None if vjp is None else (vjp,),
             keeps=keeps, kinds=kinds)


# -- element-wise, one input x --------------------------------------------------------------
NEGATIVE = _unary("negative", "Neg", lambda g, out, x: M.negative(g), (), _NUMERIC)
ABS = _unary("abs", "Abs", lambda g, out, x: g * M.sign(x), ("x",), _NUMERIC)
SIGN = _unary("sign", "Sign", lambda g, out, x: C.zeros_like(x), (), _NUMERIC)
SQUARE = _unary("square", "Square", lambda g, out, x: bind(SQUARE_GRAD, (x, g)), ("x",), _NUMERIC)
SQRT = _unary("sqrt", "Sqrt", lambda g, out, x: bind(SQRT_GRAD, (out, g)), ("out",))
RSQRT = _unary("rsqrt", "Rsqrt", lambda g, out, x: bind(RSQRT_GRAD, (out, g)), ("out",))
RECIPROCAL = _unary("reciprocal", "Reciprocal", lambda g, out, x: bind(RECIPROCAL_GRAD, (out, g)),
                    ("out",))
EXP = _unary("exp", "Exp", lambda g, out, x: g * out, ("out",))
LOG = _unary("log", "Log", lambda g, out, x: g / x, ("x",))
LOG1P = _unary("log1p", "Log1p", lambda g, out, x: g / (x + 1), ("x",))
EXPM1 = _unary("expm1", "Expm1", lambda g, out, x: g * M.exp(x), ("x",))
SIN = _unary("sin", "Sin", lambda g, out, x: bind(SIN_GRAD, (x, g)), ("x",))
COS = _unary("cos", "Cos", lambda g, out, x: bind(COS_GRAD, (x, g)), ("x",))
TAN = _unary("tan", "Tan", lambda g, out, x: g * (M.square(out) + 1), ("out",))
TANH = _unary("tanh", "Tanh", lambda g, out, x: bind(TANH_GRAD, (out, g)), ("out",))
SIGMOID = _unary("sigmoid", "Sigmoid", lambda g, out, x: bind(SIGMOID_GRAD, (out, g)), ("out",))
RELU = _unary("relu", "Relu", lambda g, out, x: bind(RELU_GRAD, (x, g)), ("x",), _NUMERIC)
SOFTPLUS = _unary("softplus", "Softplus", lambda g, out, x: g * M.sigmoid(x), ("x",))
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)  # a Python float: a cached constant
ERF = _unary("erf", "Erf", lambda g, out, x: g * _TWO_OVER_SQRT_PI * M.exp(-M.square(x)), ("x",))
FLOOR = _unary("floor", "Floor", None, ())
ROUND = _unary("round", "Round", None, ())
LOGICAL_NOT = _unary("logical_not", "LogicalNot", None, (), _BOOL)


# -- fused backward kernels: (forward value, upstream gradient dy) -> gradient ----------------
# Each is differentiable again (higher order).
def _grad_row(name, functor, vjp_a, vjp_dy, keeps, kinds=_FLOAT):
    return P(name, I.binary(kinds), "unary_grad", functor=functor, vjps=(vjp_a, vjp_dy),
             keeps=keeps, kinds=kinds)


# relu_grad(x, dy) = dy where x > 0; piecewise constant in x
RELU_GRAD = _grad_row("relu_grad", "ReluGrad", lambda g, out, x, dy: C.zeros_like(x),
                      lambda g, out, x, dy: bind(RELU_GRAD, (x, g)), ("x",), _NUMERIC)
# sigmoid_grad(y, dy) = dy * y * (1 - y)
SIGMOID_GRAD = _grad_row("sigmoid_grad", "SigmoidGrad", lambda g, out, y, dy: g * dy * (1 - 2 * y),
                         lambda g, out, y, dy: bind(SIGMOID_GRAD, (y, g)), ("y", "dy"))
# tanh_grad(y, dy) = dy * (1 - y^2)
TANH_GRAD = _grad_row("tanh_grad", "TanhGrad", lambda g, out, y, dy: g * dy * y * -2,
                      lambda g, out, y, dy: bind(TANH_GRAD, (y, g)), ("y", "dy"))
# sin_grad(x, dy) = dy cos(x); cos_grad(x, dy) = -dy sin(x): each differentiates into the other
SIN_GRAD = _grad_row("sin_grad", "SinGrad", lambda g, out, x, dy: bind(COS_GRAD, (x, g * dy)),
                     lambda g, out, x, dy: bind(SIN_GRAD, (x, g)), ("x", "dy"))
COS_GRAD = _grad_row("cos_grad", "CosGrad", lambda g, out, x, dy: -bind(SIN_GRAD, (x, g * dy)),
                     lambda g, out, x, dy: bind(COS_GRAD, (x, g)), ("x", "dy"))
# square_grad(x, dy) = 2 x dy
SQUARE_GRAD = _grad_row("square_grad", "SquareGrad", lambda g, out, x, dy: bind(SQUARE_GRAD, (dy, g)),
                        lambda g, out, x, dy: bind(SQUARE_GRAD, (x, g)), ("x", "dy"))
# sqrt_grad(y, dy) = dy / (2 y), and 0 where dy == 0
SQRT_GRAD = _grad_row("sqrt_grad", "SqrtGrad", lambda g, out, y, dy: -(g * out) / y,
                      lambda g, out, y, dy: bind(SQRT_GRAD, (y, g)), ("out", "y"))
# rsqrt_grad(y, dy) = -dy y^3 / 2, and 0 where dy == 0
RSQRT_GRAD = _grad_row("rsqrt_grad", "RsqrtGrad", lambda g, out, y, dy: g * dy * M.square(y) * -1.5,
                       lambda g, out, y, dy: bind(RSQRT_GRAD, (y, g)), ("y", "dy"))
# reciprocal_grad(y, dy) = -dy y^2, and 0 where dy == 0
RECIPROCAL_GRAD = _grad_row("reciprocal_grad", "ReciprocalGrad",
                            lambda g, out, y, dy: g * dy * y * -2,
                            lambda g, out, y, dy: bind(RECIPROCAL_GRAD, (y, g)), ("y", "dy"))


# -- element-wise, two inputs x, y (NumPy broadcasting) ------------------------------------------
def _binary(name, functor, vjps, keeps, kinds=_NUMERIC, to_bool=False):
    return P(name, I.binary(kinds, to_bool), "binary", functor=functor, vjps=vjps, keeps=keeps,
             kinds=kinds)


ADD = _binary("add", "Add", (lambda g, out, x, y: _ub(g, x), lambda g, out, x, y: _ub(g, y)), ())
SUBTRACT = _binary("subtract", "Sub", (lambda g, out, x, y: _ub(g, x),
                                       lambda g, out, x, y: _ub(M.negative(g), y)), ())
MULTIPLY = _binary("multiply", "Mul", (lambda g, out, x, y: _ub(g * y, x),
                                       lambda g, out, x, y: _ub(g * x, y)), ("x", "y"))
DIVIDE = _binary("divide", "Div", (lambda g, out, x, y: _ub(g / y, x),
                                   lambda g, out, x, y: _ub(g * (-x / y / y), y)), ("x", "y"),
                 _FLOAT)
FLOORDIV = _binary("floordiv", "FloorDiv", None, ())
FLOORMOD = _binary("floormod", "FloorMod", (lambda g, out, x, y: _ub(g, x),
                                            lambda g, out, x, y: _ub(-(g * M.floor(x / y)), y)),
                   ("x", "y"))
# d(x^y)/dx = y x^(y-1); d(x^y)/dy = x^y log(x), with log(x) taken as 0 where x <= 0
POW = _binary("pow", "Pow",
              (lambda g, out, x, y: _ub(g * y * M.pow(x, y - 1), x),
               lambda g, out, x, y: _ub(g * out * M.where(x > 0, M.log(M.where(x > 0, x, 1)), 0), y)),
              ("out", "x", "y"))
# ties: the whole gradient goes to the first argument
MAXIMUM = _binary("maximum", "Maximum", (lambda g, out, x, y: _ub(g * _mask(x >= y, g), x),
                                         lambda g, out, x, y: _ub(g * _mask(x < y, g), y)),
                  ("x", "y"))
MINIMUM = _binary("minimum", "Minimum", (lambda g, out, x, y: _ub(g * _mask(x <= y, g), x),
                                         lambda g, out, x, y: _ub(g * _mask(x > y, g), y)),
                  ("x", "y"))
EQUAL = _binary("equal", "Eq", None, (), "fiub", True)
NOT_EQUAL = _binary("not_equal", "Ne", None, (), "fiub", True)
LESS = _binary("less", "Lt", None, (), _NUMERIC, True)
LESS_EQUAL = _binary("less_equal", "Le", None, (), _NUMERIC, True)
GREATER = _binary("greater", "Gt", None, (), _NUMERIC, True)
GREATER_EQUAL = _binary("greater_equal", "Ge", None, (), _NUMERIC, True)
LOGICAL_AND = _binary("logical_and", "LogicalAnd", None, (), _BOOL, True)
LOGICAL_OR = _binary("logical_or", "LogicalOr", None, (), _BOOL, True)

# where(c, x, y): the unselected branch gets an exact 0 (so 0 * inf there is NaN, as in TF)
WHERE = P("where", I.where, "where", functor="Select", keeps=("c",),
          vjps=(None, lambda g, out, c, x, y: _ub(M.where(c, g, 0), x),
                lambda g, out, c, x, y: _ub(M.where(c, 0, g), y)))
# cast(x; dtype)
CAST = P("cast", I.cast, "cast", functor="CastTo", keeps=(),
         vjps=(lambda g, out, x, dtype: M.cast(g, x.dtype),))


# -- reductions: x over sorted axes ----------------------------------------------------------------
def _kept(x, axes):
    """x's shape with the reduced axes kept as size 1."""
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _spread(g, x, axes):
    """The gradient of a reduction, broadcast back over the reduced axes: first
    reshaped to keep them as size 1, unless it has them (keepdims) or they lead
    (broadcasting adds leading axes by itself, as for a full reduction)."""
    if len(g._data.shape) != len(x.shape) and axes != tuple(range(len(axes))):
        g = A.reshape(g, _kept(x, axes))
    return A.broadcast_to(g, x.shape)


def _max_vjp(g, out, x, axes, keepdims):
    # ties share the gradient evenly
    hit = _mask(M.equal(x, A.reshape(out, _kept(x, axes))), x)
    return _spread(g, x, axes) * hit / M.reduce_sum(hit, axes, keepdims=True)


def _prod_vjp(g, out, x, axes, keepdims):
    # d prod / d x_i = prod of the others; exact where x has zeros (no 0/0)
    is_zero = M.equal(x, 0)
    nonzero = M.where(is_zero, 1, x)
    prod_nonzero = M.reduce_prod(nonzero, axes, keepdims=True)
    zeros = M.reduce_sum(_mask(is_zero, x), axes, keepdims=True)
    others = M.where(M.equal(zeros, 0), prod_nonzero / nonzero,
                     M.where(M.logical_and(is_zero, M.equal(zeros, 1)), prod_nonzero, 0))
    return _spread(g, x, axes) * others


def _reduce(name, vjp, keeps, kinds=_NUMERIC):
    return P(name, I.reduce(kinds), "reduce", vjps=(vjp,), keeps=keeps, kinds=kinds)


REDUCE_SUM = _reduce("reduce_sum", lambda g, out, x, axes, keepdims: _spread(g, x, axes), ())
REDUCE_MAX = _reduce("reduce_max", _max_vjp, ("out", "x"))
REDUCE_MIN = _reduce("reduce_min", _max_vjp, ("out", "x"))
REDUCE_PROD = _reduce("reduce_prod", _prod_vjp, ("x",))
REDUCE_LOGSUMEXP = _reduce("reduce_logsumexp", lambda g, out, x, axes, keepdims:
                           _spread(g, x, axes) * M.exp(x - A.reshape(out, _kept(x, axes))),
                           ("out", "x"), _FLOAT)
# argmax(x; axis), argmin(x; axis): int64, no gradient
ARGMAX = P("argmax", I.arg_reduce(), "arg_reduce")
ARGMIN = P("argmin", I.arg_reduce(), "arg_reduce")


# -- linear algebra: matmul(a, b; transpose_a, transpose_b) -------------------------------------------
def _matmul_vjp_a(g, out, a, b, transpose_a, transpose_b):
    if transpose_a:
        ga = M.matmul(b, g, transpose_a=transpose_b, transpose_b=True)
    else:
        ga = M.matmul(g, b, transpose_b=not transpose_b)
    return _ub(ga, a)


def _matmul_vjp_b(g, out, a, b, transpose_a, transpose_b):
    if transpose_b:
        gb = M.matmul(g, a, transpose_a=True, transpose_b=transpose_a)
    else:
        gb = M.matmul(a, g, transpose_a=not transpose_a)
    return _ub(gb, b)


MATMUL = P("matmul", I.matmul, "matmul", vjps=(_matmul_vjp_a, _matmul_vjp_b), keeps=("a", "b"))


# -- layout: the output may be a view of x ----------------------------------------------------------
def _layout(name, rule, vjp):
    return P(name, rule, "layout", vjps=(vjp,), keeps=(), aliases=True)


RESHAPE = _layout("reshape", I.reshape, lambda g, out, x, shape: A.reshape(g, x.shape))
TRANSPOSE = _layout("transpose", I.transpose, lambda g, out, x, perm:
                    A.transpose(g, tuple(np.argsort(perm).tolist())))
BROADCAST_TO = _layout("broadcast_to", I.broadcast_to, lambda g, out, x, shape: _ub(g, x))
STRIDED_SLICE = _layout("strided_slice", I.strided_slice,
                        lambda g, out, x, key: A.strided_slice_grad(g, x.shape, key))
# strided_slice_grad(dy; shape, key): zeros of shape with dy written at key
STRIDED_SLICE_GRAD = P("strided_slice_grad", I.strided_slice_grad, "layout", keeps=(),
                       vjps=(lambda g, out, dy, shape, key: A.strided_slice(g, key),))


def _concat_vjp(i):
    """concat(*xs; axis) takes any number of inputs: input i's gradient is its slice of g."""
    def concat_vjp(g, out, *xs, axis):
        start = sum(x.shape[axis] for x in xs[:i])
        key = (slice(None),) * axis + (slice(start, start + xs[i].shape[axis], 1),)
        return A.strided_slice(g, A.canonical_key(g.shape, key))
    return concat_vjp


CONCAT = P("concat", I.concat, "concat", vjps=_concat_vjp, keeps=())
# gather(x, indices; axis) and its transpose scatter_add(updates, indices; axis, shape)
GATHER = P("gather", I.gather, "gather", keeps=("indices",),
           vjps=(lambda g, out, x, indices, axis: A.scatter_add(g, indices, x.shape, axis), None))
SCATTER_ADD = P("scatter_add", I.scatter_add, "gather", keeps=("indices",),
                vjps=(lambda g, out, updates, indices, axis, shape: A.gather(g, indices, axis=axis),
                      None))
# one_hot(indices; depth, on_value, off_value, dtype)
ONE_HOT = P("one_hot", I.one_hot, "one_hot")


# -- nn: softmax(x; axis), log_softmax(x; axis), softmax_cross_entropy(labels, logits; axis) ----------
SOFTMAX = P("softmax", I.softmax(), "softmax", keeps=("out",),
            vjps=(lambda g, out, x, axis: out * (g - M.reduce_sum(g * out, axis, keepdims=True)),))
LOG_SOFTMAX = P("log_softmax", I.softmax(), "softmax", keeps=("out",),
                vjps=(lambda g, out, x, axis:
                      g - M.exp(out) * M.reduce_sum(g, axis, keepdims=True),))
# loss = -sum(labels * log_softmax(logits)) over axis
SOFTMAX_CROSS_ENTROPY = P(
    "softmax_cross_entropy", I.softmax_cross_entropy, "softmax_xent", keeps=("labels", "logits"),
    vjps=(lambda g, out, labels, logits, axis:
          -(A.expand_dims(g, axis) * bind(LOG_SOFTMAX, (logits,), axis=axis)),
          lambda g, out, labels, logits, axis:
          A.expand_dims(g, axis) * (bind(SOFTMAX, (logits,), axis=axis) - labels)))


# -- creation: no inputs, never recorded; ``device`` names where the result lives -----------------------
# fill(; shape, value, dtype, device)
FILL = P("fill", I.fill, "fill", functor="Constant")
# constant(; value, device): a host array copied to the device
CONSTANT = P("constant", I.constant, kernel=lambda dev, value: dev.from_host(value))


def _draw(name):
    """random_uniform / random_normal(; shape, dtype, stream, device). The Philox
    key and counter are claimed from ``stream`` when the call runs, not when it
    is bound or traced, so every run (and every replay of a trace) draws new
    numbers, in the order the calls run."""
    def kernel(dev, shape, dtype, stream):
        key, offset = stream.claim(name, math.prod(shape), dtype)
        return dev.random(name, tuple(shape), dtype, key, offset)
    return P(name, I.random(), kernel=kernel, effect="random")


RANDOM_UNIFORM = _draw("random_uniform")
RANDOM_NORMAL = _draw("random_normal")


# -- copies and state (rows in ops/state.py) ----------------------------------------------------------------
from .state import COPY, READ_VARIABLE, ASSIGN, ASSIGN_ADD, ASSIGN_SUB, APPLY_UPDATE  # noqa: E402,F401

PRIMITIVES = {p.name: p for p in list(globals().values()) if isinstance(p, P)}

from . import math as M, array as A, creation as C  # noqa: E402  (VJPs call them at run time)
