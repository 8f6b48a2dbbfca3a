"""The table of primitives: each one's device kernel and its VJPs, side by side.

This is the only place gradients are defined. A VJP is
``vjp(g, out, *inputs, **attrs) -> gradient of that input`` and is written in
gpuad ops only, never NumPy, so a backward pass is itself recorded by any
outer tape (higher derivatives) and runs on whatever device the tensors live
on. ``None`` in place of a VJP means "no gradient flows into this input".
Everything not listed here (subtract's cousins, reduce_mean, softplus-based
losses, stack, tile, ...) is composed from these rows in ``math.py``,
``array.py`` and ``nn``.

Edge values follow TensorFlow (TF_REFERENCE.md §13): e.g. ``pow``'s gradient
masks ``log(base)`` to 0 where base <= 0, ``maximum`` gives ties to its first
argument, ``reduce_max`` splits ties evenly, and sqrt/rsqrt/reciprocal
backward give 0 where the upstream gradient is 0.
"""
from __future__ import annotations

import math

import numpy as np

from .primitive import Primitive, run, run2, unbroadcast, _FLOAT, _NUMERIC

P = Primitive


def _ub(g, x):
    return unbroadcast(g, x.shape)


def _mask(cond, like):
    return M.cast(cond, like.dtype)


# -- element-wise, one input ----------------------------------------------------
NEG = P("negative", "unary", "negative", (lambda g, y, x: M.negative(g),), _NUMERIC)
ABS = P("abs", "unary", "abs", (lambda g, y, x: g * M.sign(x),), _NUMERIC)
SIGN = P("sign", "unary", "sign", (lambda g, y, x: C.zeros_like(x),), _NUMERIC)
SQUARE = P("square", "unary", "square", (lambda g, y, x: g * (x * 2),), _NUMERIC)
SQRT = P("sqrt", "unary", "sqrt", (lambda g, y, x: SQRT_GRAD_FN(y, g),), _FLOAT)
RSQRT = P("rsqrt", "unary", "rsqrt", (lambda g, y, x: RSQRT_GRAD_FN(y, g),), _FLOAT)
RECIPROCAL = P("reciprocal", "unary", "reciprocal", (lambda g, y, x: RECIPROCAL_GRAD_FN(y, g),), _FLOAT)
EXP = P("exp", "unary", "exp", (lambda g, y, x: g * y,), _FLOAT)
LOG = P("log", "unary", "log", (lambda g, y, x: g / x,), _FLOAT)
LOG1P = P("log1p", "unary", "log1p", (lambda g, y, x: g / (x + 1),), _FLOAT)
EXPM1 = P("expm1", "unary", "expm1", (lambda g, y, x: g * M.exp(x),), _FLOAT)
SIN = P("sin", "unary", "sin", (lambda g, y, x: g * M.cos(x),), _FLOAT)
COS = P("cos", "unary", "cos", (lambda g, y, x: -(g * M.sin(x)),), _FLOAT)
TAN = P("tan", "unary", "tan", (lambda g, y, x: g * (M.square(y) + 1),), _FLOAT)
TANH = P("tanh", "unary", "tanh", (lambda g, y, x: TANH_GRAD_FN(y, g),), _FLOAT)
SIGMOID = P("sigmoid", "unary", "sigmoid", (lambda g, y, x: SIGMOID_GRAD_FN(y, g),), _FLOAT)
RELU = P("relu", "unary", "relu", (lambda g, y, x: RELU_GRAD_FN(x, g),), _NUMERIC)
SOFTPLUS = P("softplus", "unary", "softplus", (lambda g, y, x: g * M.sigmoid(x),), _FLOAT)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)  # a Python float: a cached constant buffer
ERF = P("erf", "unary", "erf", (lambda g, y, x: g * _TWO_OVER_SQRT_PI * M.exp(-M.square(x)),), _FLOAT)
FLOOR = P("floor", "unary", "floor", None, _FLOAT)
ROUND = P("round", "unary", "round", None, _FLOAT)
LOGICAL_NOT = P("logical_not", "unary", "logical_not", None, "b")

# -- fused backward kernels (each differentiable again, for higher order) --------
# relu_grad(x, g) = g where x > 0; it is piecewise constant in x.
RELU_GRAD = P("relu_grad", "unary_grad", "relu_grad",
              (lambda gg, out, x, g: C.zeros_like(x), lambda gg, out, x, g: RELU_GRAD_FN(x, gg)), _NUMERIC)
# sigmoid_grad(y, g) = g * y * (1 - y)
SIGMOID_GRAD = P("sigmoid_grad", "unary_grad", "sigmoid_grad",
                 (lambda gg, out, y, g: gg * g * (1 - 2 * y),
                  lambda gg, out, y, g: SIGMOID_GRAD_FN(y, gg)), _FLOAT)
# tanh_grad(y, g) = g * (1 - y^2)
TANH_GRAD = P("tanh_grad", "unary_grad", "tanh_grad",
              (lambda gg, out, y, g: gg * g * y * -2, lambda gg, out, y, g: TANH_GRAD_FN(y, gg)), _FLOAT)
# sqrt_grad(y, g) = g / (2 y), and 0 where g == 0
SQRT_GRAD = P("sqrt_grad", "unary_grad", "sqrt_grad",
              (lambda gg, out, y, g: -(gg * out) / y, lambda gg, out, y, g: SQRT_GRAD_FN(y, gg)), _FLOAT)
# rsqrt_grad(y, g) = -g y^3 / 2, and 0 where g == 0
RSQRT_GRAD = P("rsqrt_grad", "unary_grad", "rsqrt_grad",
               (lambda gg, out, y, g: gg * g * M.square(y) * -1.5,
                lambda gg, out, y, g: RSQRT_GRAD_FN(y, gg)), _FLOAT)
# reciprocal_grad(y, g) = -g y^2, and 0 where g == 0
RECIPROCAL_GRAD = P("reciprocal_grad", "unary_grad", "reciprocal_grad",
                    (lambda gg, out, y, g: gg * g * y * -2,
                     lambda gg, out, y, g: RECIPROCAL_GRAD_FN(y, gg)), _FLOAT)

# -- element-wise, two inputs (NumPy broadcasting) --------------------------------
ADD = P("add", "binary", "add", (lambda g, z, x, y: _ub(g, x), lambda g, z, x, y: _ub(g, y)), _NUMERIC)
SUB = P("subtract", "binary", "subtract",
        (lambda g, z, x, y: _ub(g, x), lambda g, z, x, y: _ub(M.negative(g), y)), _NUMERIC)
MUL = P("multiply", "binary", "multiply",
        (lambda g, z, x, y: _ub(g * y, x), lambda g, z, x, y: _ub(g * x, y)), _NUMERIC)
DIV = P("divide", "binary", "divide",
        (lambda g, z, x, y: _ub(g / y, x), lambda g, z, x, y: _ub(g * (-x / y / y), y)), _FLOAT)
FLOORDIV = P("floordiv", "binary", "floordiv", None, _NUMERIC)
FLOORMOD = P("floormod", "binary", "floormod",
             (lambda g, z, x, y: _ub(g, x),
              lambda g, z, x, y: _ub(-(g * M.floor(x / y)), y)), _NUMERIC)
# d(x^y)/dx = y x^(y-1); d(x^y)/dy = x^y log(x), with log(x) taken as 0 where x <= 0
POW = P("pow", "binary", "pow",
        (lambda g, z, x, y: _ub(g * y * M.pow(x, y - 1), x),
         lambda g, z, x, y: _ub(g * z * M.where(x > 0, M.log(M.where(x > 0, x, 1)), 0), y)), _NUMERIC)
# ties: the whole gradient goes to the first argument
MAXIMUM = P("maximum", "binary", "maximum",
            (lambda g, z, x, y: _ub(g * _mask(x >= y, g), x),
             lambda g, z, x, y: _ub(g * _mask(x < y, g), y)), _NUMERIC)
MINIMUM = P("minimum", "binary", "minimum",
            (lambda g, z, x, y: _ub(g * _mask(x <= y, g), x),
             lambda g, z, x, y: _ub(g * _mask(x > y, g), y)), _NUMERIC)
EQUAL = P("equal", "binary", "equal")
NOT_EQUAL = P("not_equal", "binary", "not_equal")
LESS = P("less", "binary", "less", kinds=_NUMERIC)
LESS_EQUAL = P("less_equal", "binary", "less_equal", kinds=_NUMERIC)
GREATER = P("greater", "binary", "greater", kinds=_NUMERIC)
GREATER_EQUAL = P("greater_equal", "binary", "greater_equal", kinds=_NUMERIC)
LOGICAL_AND = P("logical_and", "binary", "logical_and", kinds="b")
LOGICAL_OR = P("logical_or", "binary", "logical_or", kinds="b")

# where(c, x, y): the unselected branch gets an exact 0 (so 0 * inf there is NaN, as in TF)
WHERE = P("where", "where", "where",
          (None,
           lambda g, z, c, x, y: _ub(M.where(c, g, 0), x),
           lambda g, z, c, x, y: _ub(M.where(c, 0, g), y)))
CAST = P("cast", "cast", "cast", (lambda g, y, x, dtype: M.cast(g, x.dtype),))


# -- reductions --------------------------------------------------------------------
def _kept(x, axes):
    """x's shape with the reduced axes kept as size 1."""
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _spread(g, x, axes):
    """The gradient of a reduction, broadcast back over the reduced axes."""
    return A.broadcast_to(A.reshape(g, _kept(x, axes)), x.shape)


def _max_vjp(g, y, x, axes, keepdims):
    # ties share the gradient evenly
    hit = _mask(M.equal(x, A.reshape(y, _kept(x, axes))), x)
    return _spread(g, x, axes) * hit / M.reduce_sum(hit, axes, keepdims=True)


def _prod_vjp(g, y, x, axes, keepdims):
    # d prod / d x_i = prod of the others; exact where x has zeros (no 0/0)
    is_zero = M.equal(x, 0)
    nonzero = M.where(is_zero, 1, x)
    prod_nonzero = M.reduce_prod(nonzero, axes, keepdims=True)
    zeros = M.reduce_sum(_mask(is_zero, x), axes, keepdims=True)
    others = M.where(M.equal(zeros, 0), prod_nonzero / nonzero,
                     M.where(M.logical_and(is_zero, M.equal(zeros, 1)), prod_nonzero, 0))
    return _spread(g, x, axes) * others


REDUCE_SUM = P("reduce_sum", "reduce", "reduce_sum", (lambda g, y, x, axes, keepdims: _spread(g, x, axes),), _NUMERIC)
REDUCE_MAX = P("reduce_max", "reduce", "reduce_max", (_max_vjp,), _NUMERIC)
REDUCE_MIN = P("reduce_min", "reduce", "reduce_min", (_max_vjp,), _NUMERIC)
REDUCE_PROD = P("reduce_prod", "reduce", "reduce_prod", (_prod_vjp,), _NUMERIC)
REDUCE_LOGSUMEXP = P("reduce_logsumexp", "reduce", "reduce_logsumexp",
                     (lambda g, y, x, axes, keepdims:
                      _spread(g, x, axes) * M.exp(x - A.reshape(y, _kept(x, axes))),), _FLOAT)
ARGMAX = P("argmax", "arg_reduce", "argmax", None, _NUMERIC)
ARGMIN = P("argmin", "arg_reduce", "argmin", None, _NUMERIC)


# -- linear algebra -------------------------------------------------------------------
def _matmul_vjp_a(g, z, a, b, transpose_a, transpose_b):
    if transpose_a:
        ga = M.matmul(b, g, transpose_a=transpose_b, transpose_b=True)
    else:
        ga = M.matmul(g, b, transpose_b=not transpose_b)
    return _ub(ga, a)


def _matmul_vjp_b(g, z, a, b, transpose_a, transpose_b):
    if transpose_b:
        gb = M.matmul(g, a, transpose_a=True, transpose_b=transpose_a)
    else:
        gb = M.matmul(a, g, transpose_a=not transpose_a)
    return _ub(gb, b)


MATMUL = P("matmul", "matmul", "matmul", (_matmul_vjp_a, _matmul_vjp_b), _NUMERIC)

# -- layout ----------------------------------------------------------------------------
RESHAPE = P("reshape", "layout", "reshape", (lambda g, y, x, shape: A.reshape(g, x.shape),))
TRANSPOSE = P("transpose", "layout", "transpose",
              (lambda g, y, x, perm: A.transpose(g, tuple(np.argsort(perm).tolist())),))
BROADCAST_TO = P("broadcast_to", "layout", "broadcast_to", (lambda g, y, x, shape: _ub(g, x),))
STRIDED_SLICE = P("strided_slice", "layout", "strided_slice",
                  (lambda g, y, x, key: A.strided_slice_grad(g, x.shape, key),))
STRIDED_SLICE_GRAD = P("strided_slice_grad", "layout", "strided_slice_grad",
                       (lambda gg, y, g, shape, key: A.strided_slice(gg, key),))


def _concat_vjp(i):
    def vjp(g, y, *xs, axis):
        start = sum(x.shape[axis] for x in xs[:i])
        key = (slice(None),) * axis + (slice(start, start + xs[i].shape[axis], 1),)
        return A.strided_slice(g, A.canonical_key(g.shape, key))
    return vjp


class _ConcatVJPs:
    """concat takes any number of inputs: the VJP of input i slices g."""

    def __getitem__(self, i):
        return _concat_vjp(i)


CONCAT = P("concat", "concat", "concat", _ConcatVJPs())
GATHER = P("gather", "gather", "gather",
           (lambda g, y, x, idx, axis: A.scatter_add(g, idx, x.shape, axis), None))
SCATTER_ADD = P("scatter_add", "gather", "scatter_add",
                (lambda gg, y, upd, idx, axis, shape: A.gather(gg, idx, axis=axis), None))
ONE_HOT = P("one_hot", "one_hot", "one_hot")

# -- nn ----------------------------------------------------------------------------------
SOFTMAX = P("softmax", "softmax", "softmax",
            (lambda g, y, x, axis: y * (g - M.reduce_sum(g * y, axis, keepdims=True)),), _FLOAT)
LOG_SOFTMAX = P("log_softmax", "softmax", "log_softmax",
                (lambda g, y, x, axis: g - M.exp(y) * M.reduce_sum(g, axis, keepdims=True),), _FLOAT)
# loss = -sum(labels * log_softmax(logits)) over axis
SOFTMAX_XENT = P("softmax_cross_entropy", "softmax_xent", "softmax_cross_entropy",
                 (lambda g, y, labels, logits, axis:
                  -(A.expand_dims(g, axis) * run(LOG_SOFTMAX, (logits,), axis=axis)),
                  lambda g, y, labels, logits, axis:
                  A.expand_dims(g, axis) * (run(SOFTMAX, (logits,), axis=axis) - labels)), _FLOAT)

# -- creation (no inputs: never recorded) -------------------------------------------------
FILL = P("fill", "fill", "fill")
RANDOM_UNIFORM = P("random_uniform", "random", "random_uniform")
RANDOM_NORMAL = P("random_normal", "random", "random_normal")

# -- reading a Variable: no kernel, the value passes through; gradient is identity
READ_VARIABLE = P("read_variable", None, None, (lambda g, out, v: g,))

PRIMITIVES = {p.name: p for p in list(globals().values()) if isinstance(p, Primitive)}

from . import math as M, array as A, creation as C  # noqa: E402  (VJPs call them at run time)


def _run_grad(prim):
    return lambda a, g: run2(prim, a, g)


RELU_GRAD_FN = _run_grad(RELU_GRAD)
SIGMOID_GRAD_FN = _run_grad(SIGMOID_GRAD)
TANH_GRAD_FN = _run_grad(TANH_GRAD)
SQRT_GRAD_FN = _run_grad(SQRT_GRAD)
RSQRT_GRAD_FN = _run_grad(RSQRT_GRAD)
RECIPROCAL_GRAD_FN = _run_grad(RECIPROCAL_GRAD)
