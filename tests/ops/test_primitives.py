"""Every op of API.md's math and nn lists, checked from one table.

Each row of ``OPS`` names an op, its gpuad callable, a NumPy float64
reference, where its inputs may be sampled (a domain per argument, chosen so
that finite differences are valid: positive for log/sqrt, away from the kinks
of abs/relu/maximum), and a few argument shapes and static arguments. The
tests below run over the rows (the test ids are the row names), on every
device:

(a) the float64 forward equals the NumPy reference (bit-exact for layout ops);
(b) float32 inputs give float32 outputs close to the reference, and float32
    gradients close to the float64 ones;
(c) VJPs agree with central finite differences in float64 (``checks.py``);
(d) second order (VJPs of VJPs, nested tapes) where the row says so;
(e) non-differentiable ops give a ``None`` gradient (TF_REFERENCE.md §11).

Adding an op is adding a row.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import gpuad as ad

from .checks import as_list, numerical_vjp_check, vjp

# gpuad.devices.cpu silences NumPy's RuntimeWarnings for edge values (log(0), 0/0) with a
# filter installed at import time, which pytest's per-test warning capture does not keep;
# restore it here (test_edge_values checks in a fresh interpreter that users see none).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:gpuad")


# -- input domains: sampler(rng, shape) -> float64 array -------------------------------------
def real(rng, shape):
    return rng.uniform(-2.0, 2.0, shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def above_minus_one(rng, shape):  # log1p
    return rng.uniform(-0.5, 2.0, shape)


def nonzero(rng, shape):  # at least 0.2 away from the kink at 0
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def off_integers(rng, shape):  # at least 0.2 away from every integer (floor, round, floormod, clip)
    return rng.integers(-2, 2, shape) + rng.uniform(0.2, 0.8, shape)


def near_integers(rng, shape):  # within 0.15 of an integer: never within 0.05 of off_integers
    return rng.integers(-2, 3, shape) + rng.uniform(-0.15, 0.15, shape)


def small_integers(rng, shape):  # many ties, for comparisons
    return rng.integers(-1, 2, shape).astype(np.float64)


def divisors(rng, shape):  # x / y stays 0.1 away from integers when x is off_integers
    return rng.choice([1.0, 2.0, -1.0, -2.0], shape)


def probabilities(rng, shape):  # rows on the simplex along the last axis
    p = rng.uniform(0.1, 1.0, shape)
    return p / np.sum(p, axis=-1, keepdims=True) if p.size else p


def unit(rng, shape):
    return rng.uniform(0.0, 1.0, shape)


def tangent_range(rng, shape):
    return rng.uniform(-1.2, 1.2, shape)


# -- the table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OpCase:
    """One op: ``op(*tensors, **kwargs)`` against ``ref(*arrays, **kwargs)``.

    ``cases`` is a list of ``(shapes, kwargs)``: one shape per tensor argument
    (sampled from ``domains``; the last domain repeats for extra arguments)
    and static keyword arguments for both callables.
    """

    name: str
    op: Callable
    ref: Callable
    domains: tuple
    cases: list
    differentiable: bool = True
    second_order: bool = False
    out_dtype: Any = None  # None: the input dtype; else e.g. np.int64 (argmax), np.bool_
    exact: bool = False    # bit-exact forward (layout ops, comparisons, floor/round)
    rtol32: float = 2e-6
    atol32: float = 1e-6


def unary_cases(shapes=((), (0,), (1,), (3, 1), (2, 0, 3), (2, 3))):
    return [((s,), {}) for s in shapes]


BROADCAST_PAIRS = [((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ()), ((4, 1, 3), (2, 1)),
                   ((0, 3), (1, 3)), ((2, 3), (2, 3)), ((), ())]


def binary_cases(pairs=BROADCAST_PAIRS):
    return [(pair, {}) for pair in pairs]


def _ax(axis):
    return tuple(axis) if isinstance(axis, list) else axis


REDUCE_CASES = [
    (((2, 3, 4),), dict(axis=None, keepdims=False)),
    (((2, 3, 4),), dict(axis=None, keepdims=True)),
    (((2, 3, 4),), dict(axis=0, keepdims=False)),
    (((2, 3, 4),), dict(axis=-1, keepdims=True)),
    (((2, 3, 4),), dict(axis=(0, 2), keepdims=False)),
    (((2, 3, 4),), dict(axis=[-1, -3], keepdims=True)),
    (((3, 4),), dict(axis=-2, keepdims=False)),
    (((),), dict(axis=None, keepdims=False)),
    (((5,),), dict(axis=0, keepdims=True)),
    (((0, 3),), dict(axis=1, keepdims=False)),   # empty output
]
EMPTY_AXIS_CASES = [(((0, 3),), dict(axis=0, keepdims=False)),   # reduce over an empty axis
                    (((2, 0),), dict(axis=-1, keepdims=True))]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_log_softmax(x, axis=-1):
    return x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))


def np_softmax(x, axis=-1):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def np_gelu(x, approximate=False):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def np_norm(x, ord="euclidean", axis=None, keepdims=False):  # noqa: A002
    """The vector norm of TF's ``norm`` via NumPy's (axis None: all entries as one vector)."""
    p = 2 if ord in ("euclidean", "fro") else ord
    if axis is None:
        r = np.linalg.norm(x.reshape(-1), p)
        return np.reshape(r, (1,) * x.ndim) if keepdims else r
    if isinstance(axis, int):
        return np.linalg.norm(x, p, axis=axis, keepdims=keepdims)
    return np.linalg.norm(x, "fro", axis=tuple(axis), keepdims=keepdims)  # euclidean on 2 axes


def np_matmul(a, b, transpose_a=False, transpose_b=False):
    return np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a,
                     np.swapaxes(b, -1, -2) if transpose_b else b)


def np_split(x, splits, axis=0):
    """TF's split: ``splits`` is a number of equal parts or a list of sizes (one may be -1)."""
    if isinstance(splits, int):
        return np.split(x, splits, axis=axis)
    sizes = list(splits)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _key(key):
    """An index for gpuad: NumPy integer arrays become int32 tensors."""
    return tuple(ad.constant(k.astype(np.int32)) if isinstance(k, np.ndarray) else k for k in key)


def np_sparse_xent(logits, labels):
    return -np.take_along_axis(np_log_softmax(logits), np.asarray(labels)[..., None], -1)[..., 0]


def np_sigmoid_xent(labels, logits):
    p = np_sigmoid(logits)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


_conds = np.random.default_rng(7)
WHERE_CASES = [
    (((2, 3), (2, 3)), dict(cond=_conds.random((2, 3)) > 0.5)),
    (((3, 1), (1, 4)), dict(cond=_conds.random((1, 4)) > 0.5)),
    (((), (2, 3)), dict(cond=_conds.random((2, 1)) > 0.5)),
    (((2, 3), ()), dict(cond=_conds.random((4, 2, 3)) > 0.5)),
    (((0, 2), (1, 2)), dict(cond=np.ones((1, 2), bool))),
    (((), ()), dict(cond=np.array(False))),
]

GETITEM_KEYS = [
    (1,), (-1,), (slice(1, 3),), (slice(None, None, -1),), (slice(3, 0, -2), slice(None), 1),
    (Ellipsis, 1), (None, slice(1, None), Ellipsis, None), (Ellipsis, slice(None, None, -1)),
    (slice(None), None, -2), (slice(5, 1, -1), slice(None, None, -2)), (slice(1, 1),),
    (np.array([2, 0, 2]),), (slice(None), np.array([[4, 0], [1, 1]])),
    (Ellipsis, np.array([0, 2])), (None, np.array([1, 3]), slice(None, None, 2)),
    (-2, np.array([4, 4, 0])),
]

R = OpCase
OPS = [
    # -- element-wise, one input -----------------------------------------------------------
    R("negative", ad.negative, np.negative, (real,), unary_cases(), second_order=True),
    R("abs", ad.abs, np.abs, (nonzero,), unary_cases(), second_order=True),
    R("sign", ad.sign, np.sign, (nonzero,), unary_cases(), second_order=True),
    R("square", ad.square, np.square, (real,), unary_cases(), second_order=True),
    R("sqrt", ad.sqrt, np.sqrt, (positive,), unary_cases(), second_order=True),
    R("rsqrt", ad.rsqrt, lambda x: 1 / np.sqrt(x), (positive,), unary_cases(), second_order=True),
    R("reciprocal", ad.reciprocal, np.reciprocal, (nonzero,), unary_cases(), second_order=True),
    R("exp", ad.exp, np.exp, (real,), unary_cases(), second_order=True),
    R("log", ad.log, np.log, (positive,), unary_cases(), second_order=True),
    R("log1p", ad.log1p, np.log1p, (above_minus_one,), unary_cases(), second_order=True),
    R("expm1", ad.expm1, np.expm1, (real,), unary_cases(), second_order=True),
    R("sin", ad.sin, np.sin, (real,), unary_cases(), second_order=True),
    R("cos", ad.cos, np.cos, (real,), unary_cases(), second_order=True),
    R("tan", ad.tan, np.tan, (tangent_range,), unary_cases(), second_order=True, rtol32=4e-6),
    R("tanh", ad.tanh, np.tanh, (real,), unary_cases(), second_order=True),
    R("sigmoid", ad.sigmoid, np_sigmoid, (real,), unary_cases(), second_order=True),
    R("erf", ad.erf, _erf, (real,), unary_cases(), second_order=True),
    R("floor", ad.floor, np.floor, (off_integers,), unary_cases(), differentiable=False, exact=True),
    R("round", ad.round, np.round, (off_integers,), unary_cases(), differentiable=False, exact=True),

    # -- element-wise, two inputs, NumPy broadcasting ----------------------------------------
    R("add", ad.add, np.add, (real, real), binary_cases(), second_order=True),
    R("subtract", ad.subtract, np.subtract, (real, real), binary_cases(), second_order=True),
    R("multiply", ad.multiply, np.multiply, (real, real), binary_cases(), second_order=True),
    R("divide", ad.divide, np.divide, (real, nonzero), binary_cases(), second_order=True),
    R("pow", ad.pow, np.power, (positive, real), binary_cases(), second_order=True, rtol32=1e-5),
    R("maximum", ad.maximum, np.maximum, (off_integers, near_integers), binary_cases(),
      second_order=True),
    R("minimum", ad.minimum, np.minimum, (off_integers, near_integers), binary_cases(),
      second_order=True),
    R("squared_difference", ad.squared_difference, lambda x, y: (x - y) ** 2, (real, real),
      binary_cases(), second_order=True),
    R("floormod", ad.floormod, np.mod, (off_integers, divisors), binary_cases(), second_order=True,
      rtol32=1e-5),
    R("where", lambda x, y, cond: ad.where(ad.constant(cond), x, y),
      lambda x, y, cond: np.where(cond, x, y), (real, real), WHERE_CASES, second_order=True),
    R("clip_by_value", lambda x, lo, hi: ad.clip_by_value(x, lo, hi), lambda x, lo, hi: np.clip(x, lo, hi),
      (off_integers,), [(((2, 5),), dict(lo=-1.0, hi=1.0)), (((),), dict(lo=0.0, hi=2.0)),
                        (((0,),), dict(lo=-1.0, hi=1.0))], second_order=True),
    R("floordiv", ad.floordiv, np.floor_divide, (off_integers, divisors), binary_cases(),
      differentiable=False, exact=True),
    R("equal", ad.equal, np.equal, (small_integers,), binary_cases(), differentiable=False,
      out_dtype=np.bool_, exact=True),
    R("not_equal", ad.not_equal, np.not_equal, (small_integers,), binary_cases(),
      differentiable=False, out_dtype=np.bool_, exact=True),
    R("less", ad.less, np.less, (small_integers,), binary_cases(), differentiable=False,
      out_dtype=np.bool_, exact=True),
    R("less_equal", ad.less_equal, np.less_equal, (small_integers,), binary_cases(),
      differentiable=False, out_dtype=np.bool_, exact=True),
    R("greater", ad.greater, np.greater, (small_integers,), binary_cases(), differentiable=False,
      out_dtype=np.bool_, exact=True),
    R("greater_equal", ad.greater_equal, np.greater_equal, (small_integers,), binary_cases(),
      differentiable=False, out_dtype=np.bool_, exact=True),

    # -- reductions ---------------------------------------------------------------------------
    R("reduce_sum", ad.reduce_sum, lambda x, axis, keepdims: np.sum(x, _ax(axis), keepdims=keepdims),
      (real,), REDUCE_CASES + EMPTY_AXIS_CASES, second_order=True, rtol32=1e-5, atol32=1e-5),
    R("reduce_mean", ad.reduce_mean,
      lambda x, axis, keepdims: np.mean(x, _ax(axis), keepdims=keepdims),
      (real,), REDUCE_CASES, second_order=True, rtol32=1e-5, atol32=1e-5),
    R("reduce_max", ad.reduce_max, lambda x, axis, keepdims: np.max(x, _ax(axis), keepdims=keepdims),
      (real,), REDUCE_CASES, second_order=True, exact=True),
    R("reduce_min", ad.reduce_min, lambda x, axis, keepdims: np.min(x, _ax(axis), keepdims=keepdims),
      (real,), REDUCE_CASES, second_order=True, exact=True),
    R("reduce_prod", ad.reduce_prod,
      lambda x, axis, keepdims: np.prod(x, _ax(axis), keepdims=keepdims),
      (nonzero,), REDUCE_CASES + EMPTY_AXIS_CASES, second_order=True, rtol32=1e-5),
    R("reduce_logsumexp", ad.reduce_logsumexp,
      lambda x, axis, keepdims: np.log(np.sum(np.exp(x), _ax(axis), keepdims=keepdims)),
      (real,), REDUCE_CASES, second_order=True, rtol32=1e-5),
    R("argmax", lambda x, axis: ad.argmax(x, axis=axis),
      lambda x, axis: np.argmax(x, axis=0 if axis is None else axis), (real,),
      [(((3, 4),), dict(axis=None)), (((3, 4),), dict(axis=1)), (((3, 4),), dict(axis=-2)),
       (((2, 3, 4),), dict(axis=2)), (((5,),), dict(axis=0))],
      differentiable=False, out_dtype=np.int64, exact=True),
    R("argmin", lambda x, axis: ad.argmin(x, axis=axis),
      lambda x, axis: np.argmin(x, axis=0 if axis is None else axis), (real,),
      [(((3, 4),), dict(axis=None)), (((3, 4),), dict(axis=1)), (((3, 4),), dict(axis=-2)),
       (((2, 3, 4),), dict(axis=2)), (((5,),), dict(axis=0))],
      differentiable=False, out_dtype=np.int64, exact=True),
    R("norm", ad.norm, np_norm, (nonzero,),
      [(((2, 3),), dict(ord="euclidean")), (((2, 3),), dict(ord=2, axis=-1)),
       (((3, 2, 2),), dict(ord="fro", axis=None, keepdims=True)),
       (((2, 3),), dict(ord="euclidean", axis=[0, 1])), (((2, 3),), dict(ord=1)),
       (((2, 3),), dict(ord=1, axis=0)), (((2, 3),), dict(ord=np.inf)),
       (((2, 3, 2),), dict(ord=np.inf, axis=-1, keepdims=True)), (((),), dict(ord=2)),
       (((4,),), dict(ord=1.0, axis=0))], second_order=True, rtol32=1e-5),

    # -- linear algebra -------------------------------------------------------------------------
    R("matmul", ad.matmul, np_matmul, (real, real),
      [(((2, 3), (3, 4)), {}), (((3, 2), (3, 4)), dict(transpose_a=True)),
       (((2, 3), (4, 3)), dict(transpose_b=True)),
       (((3, 2), (4, 3)), dict(transpose_a=True, transpose_b=True)),
       (((2, 2, 3), (3, 4)), {}), (((1, 2, 3), (4, 3, 2)), {}),
       (((2, 1, 3, 2), (3, 2, 4)), {}), (((2, 3, 2), (2, 4, 3)), dict(transpose_a=True, transpose_b=True)),
       (((2, 0), (0, 3)), {}), (((0, 3), (3, 2)), {})],
      second_order=True, rtol32=1e-5, atol32=1e-5),
    R("tensordot", lambda a, b, axes: ad.tensordot(a, b, axes),
      lambda a, b, axes: np.tensordot(a, b, axes), (real, real),
      [(((2, 3), (3, 4)), dict(axes=1)), (((2, 3), (2, 3)), dict(axes=2)),
       (((2,), (3,)), dict(axes=0)), (((2, 3, 4), (4, 3, 2)), dict(axes=[[1, 2], [1, 0]])),
       (((3, 2), (3, 4)), dict(axes=[[0], [0]])), (((2, 3, 4), (4, 2)), dict(axes=[[-1], [0]])),
       (((3,), (3,)), dict(axes=[0, 0]))],
      second_order=True, rtol32=1e-5, atol32=1e-5),

    # -- layout -------------------------------------------------------------------------------
    R("reshape", lambda x, shape: ad.reshape(x, shape), lambda x, shape: np.reshape(x, shape), (real,),
      [(((2, 3),), dict(shape=(3, 2))), (((2, 3),), dict(shape=(-1,))),
       (((2, 3, 4),), dict(shape=(4, -1))), (((),), dict(shape=(1, 1))),
       (((0, 3),), dict(shape=(3, 0))), (((6,),), dict(shape=[2, 3]))],
      second_order=True, exact=True),
    R("transpose", lambda x, perm: ad.transpose(x, perm), lambda x, perm: np.transpose(x, perm), (real,),
      [(((2, 3),), dict(perm=None)), (((2, 3, 4),), dict(perm=(2, 0, 1))),
       (((2, 3, 4),), dict(perm=[1, 0, 2])), (((2, 3, 4),), dict(perm=None)),
       (((),), dict(perm=None)), (((0, 2),), dict(perm=(1, 0)))],
      second_order=True, exact=True),
    R("squeeze", lambda x, axis: ad.squeeze(x, axis), lambda x, axis: np.squeeze(x, _ax(axis)), (real,),
      [(((1, 3, 1),), dict(axis=None)), (((1, 3, 1),), dict(axis=0)), (((1, 3, 1),), dict(axis=-1)),
       (((1, 3, 1),), dict(axis=[0, 2])), (((1,),), dict(axis=None)), (((0, 1),), dict(axis=1))],
      second_order=True, exact=True),
    R("expand_dims", lambda x, axis: ad.expand_dims(x, axis), lambda x, axis: np.expand_dims(x, axis),
      (real,), [(((2, 3),), dict(axis=0)), (((2, 3),), dict(axis=1)), (((2, 3),), dict(axis=2)),
                (((2, 3),), dict(axis=-1)), (((2, 3),), dict(axis=-3)), (((),), dict(axis=0))],
      second_order=True, exact=True),
    R("concat", lambda *xs, axis: ad.concat(list(xs), axis),
      lambda *xs, axis: np.concatenate(xs, axis), (real,),
      [(((2, 3), (1, 3)), dict(axis=0)), (((2, 3), (2, 1), (2, 2)), dict(axis=1)),
       (((2, 3), (2, 2)), dict(axis=-1)), (((0, 3), (2, 3)), dict(axis=0)),
       (((3,), (2,)), dict(axis=0)), (((2, 3),), dict(axis=0))],
      second_order=True, exact=True),
    R("stack", lambda *xs, axis: ad.stack(list(xs), axis), lambda *xs, axis: np.stack(xs, axis), (real,),
      [(((2, 3), (2, 3)), dict(axis=0)), (((2, 3), (2, 3)), dict(axis=1)),
       (((2, 3), (2, 3), (2, 3)), dict(axis=2)), (((2, 3), (2, 3)), dict(axis=-1)),
       (((), (), ()), dict(axis=0)), (((0, 2), (0, 2)), dict(axis=1))],
      second_order=True, exact=True),
    R("split", lambda x, splits, axis: ad.split(x, splits, axis), np_split, (real,),
      [(((4, 6),), dict(splits=2, axis=0)), (((4, 6),), dict(splits=3, axis=1)),
       (((4, 6),), dict(splits=[1, -1, 2], axis=1)), (((4, 6),), dict(splits=[2, 4], axis=-1)),
       (((6,),), dict(splits=3, axis=0)), (((2, 3),), dict(splits=[0, 3], axis=1))],
      second_order=True, exact=True),
    R("gather", lambda x, indices, axis: ad.gather(x, ad.constant(indices), axis=axis),
      lambda x, indices, axis: np.take(x, indices, axis=axis), (real,),
      [(((5,),), dict(indices=np.array([0, 0, 2, 4], np.int32), axis=0)),
       (((3, 4),), dict(indices=np.array([[0, 2], [1, 1]], np.int32), axis=1)),
       (((3, 4),), dict(indices=np.array([2, 0], np.int32), axis=-2)),
       (((2, 3, 4),), dict(indices=np.array([3, 0, 3], np.int64), axis=2)),
       (((3, 4),), dict(indices=np.zeros((0,), np.int32), axis=0)),
       (((3,),), dict(indices=np.array(1, np.int32), axis=0))],
      second_order=True, exact=True),
    R("tile", lambda x, multiples: ad.tile(x, multiples), lambda x, multiples: np.tile(x, multiples),
      (real,), [(((2, 3),), dict(multiples=[2, 1])), (((2, 3),), dict(multiples=[1, 3])),
                (((3,),), dict(multiples=[2])), (((2, 1, 2),), dict(multiples=[1, 2, 2])),
                (((0, 2),), dict(multiples=[3, 1])), (((2, 2),), dict(multiples=[0, 2]))],
      second_order=True, exact=True),
    R("broadcast_to", lambda x, shape: ad.broadcast_to(x, shape),
      lambda x, shape: np.broadcast_to(x, shape), (real,),
      [(((3, 1),), dict(shape=(2, 3, 4))), (((),), dict(shape=(2, 3))), (((1,),), dict(shape=(0,))),
       (((2, 3),), dict(shape=(2, 3))), (((2, 1, 3),), dict(shape=[2, 4, 3]))],
      second_order=True, exact=True),
    R("getitem", lambda x, key: x[_key(key)], lambda x, key: x[key], (real,),
      [(((4, 5, 3),), dict(key=k)) for k in GETITEM_KEYS] + [(((),), dict(key=(None,))),
                                                                (((3,),), dict(key=(Ellipsis,)))],
      second_order=True, exact=True),

    # -- nn -----------------------------------------------------------------------------------
    R("nn.relu", ad.nn.relu, lambda x: np.maximum(x, 0), (nonzero,), unary_cases(), second_order=True),
    R("nn.leaky_relu", ad.nn.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x), (nonzero,),
      unary_cases(), second_order=True),
    R("nn.leaky_relu[alpha]", lambda x, alpha: ad.nn.leaky_relu(x, alpha=alpha),
      lambda x, alpha: np.where(x > 0, x, alpha * x), (nonzero,),
      [(((2, 3),), dict(alpha=0.01)), (((),), dict(alpha=0.5))], second_order=True),
    R("nn.gelu", ad.nn.gelu, np_gelu, (real,), unary_cases(), second_order=True),
    R("nn.gelu[approximate]", lambda x: ad.nn.gelu(x, approximate=True),
      lambda x: np_gelu(x, approximate=True), (real,), unary_cases(), second_order=True),
    R("nn.elu", ad.nn.elu, lambda x: np.where(x > 0, x, np.expm1(x)), (nonzero,), unary_cases(),
      second_order=True),
    R("nn.softplus", ad.nn.softplus, lambda x: np.logaddexp(0.0, x),
      (lambda rng, shape: rng.uniform(-6.0, 6.0, shape),), unary_cases(), second_order=True),
    R("nn.sigmoid", ad.nn.sigmoid, np_sigmoid, (real,), unary_cases(), second_order=True),
    R("nn.tanh", ad.nn.tanh, np.tanh, (real,), unary_cases(), second_order=True),
    R("nn.softmax", lambda x, axis: ad.nn.softmax(x, axis=axis), np_softmax, (real,),
      [(((3, 4),), dict(axis=-1)), (((3, 4),), dict(axis=0)), (((2, 3, 4),), dict(axis=1)),
       (((5,),), dict(axis=0)), (((0, 3),), dict(axis=-1)), (((2, 1),), dict(axis=1))],
      second_order=True, rtol32=1e-5),
    R("nn.log_softmax", lambda x, axis: ad.nn.log_softmax(x, axis=axis), np_log_softmax, (real,),
      [(((3, 4),), dict(axis=-1)), (((3, 4),), dict(axis=0)), (((2, 3, 4),), dict(axis=1)),
       (((5,),), dict(axis=0)), (((0, 3),), dict(axis=-1)), (((2, 1),), dict(axis=1))],
      second_order=True, rtol32=1e-5, atol32=2e-6),
    # Gradients in both labels and logits; the logits VJP is TF's softmax - labels, exact for
    # labels on the simplex (which the labels domain is). Second order would perturb the labels
    # off the simplex, where that formula (like TF's) is not the derivative, so it is off here
    # and covered by the sparse row.
    R("nn.softmax_cross_entropy_with_logits",
      lambda labels, logits: ad.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
      lambda labels, logits: -np.sum(labels * np_log_softmax(logits), axis=-1), (probabilities, real),
      [(((3, 4), (3, 4)), {}), (((5,), (5,)), {}), (((2, 3, 4), (2, 3, 4)), {}),
       (((0, 4), (0, 4)), {}), (((2, 1), (2, 1)), {})], rtol32=1e-5, atol32=2e-6),
    R("nn.sparse_softmax_cross_entropy_with_logits",
      lambda logits, labels: ad.nn.sparse_softmax_cross_entropy_with_logits(
          labels=ad.constant(labels), logits=logits),
      np_sparse_xent, (real,),
      [(((3, 4),), dict(labels=np.array([0, 3, 1], np.int32))),
       (((2, 2, 3),), dict(labels=np.array([[0, 2], [1, 1]], np.int64))),
       (((4,),), dict(labels=np.array(2, np.int32))),
       (((0, 3),), dict(labels=np.zeros((0,), np.int32)))],
      second_order=True, rtol32=1e-5, atol32=2e-6),
    R("nn.sigmoid_cross_entropy_with_logits",
      lambda labels, logits: ad.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits),
      np_sigmoid_xent, (unit, nonzero), binary_cases([((3, 4), (3, 4)), ((), ()), ((0, 2), (0, 2))]),
      second_order=True, rtol32=1e-5, atol32=2e-6),
]

DIFFERENTIABLE = [r for r in OPS if r.differentiable]
SECOND_ORDER = [r for r in OPS if r.second_order]
NOT_DIFFERENTIABLE = [r for r in OPS if not r.differentiable]


def _params(rows):
    return pytest.mark.parametrize("row", rows, ids=[r.name for r in rows])


def _rng(row, salt=0):
    return np.random.default_rng(zlib.crc32(row.name.encode()) + salt)


def _sample(row, rng, shapes):
    domains = row.domains + (row.domains[-1],) * (len(shapes) - len(row.domains))
    return [np.asarray(d(rng, s), dtype=np.float64) for d, s in zip(domains, shapes)]


def _expected_dtype(row, dtype):
    return np.dtype(row.out_dtype) if row.out_dtype is not None else np.dtype(dtype)


def _describe(row, shapes, kwargs):
    return f"{row.name} with shapes {shapes} and {kwargs}"


def test_table_has_one_row_per_name():
    names = [r.name for r in OPS]
    assert len(names) == len(set(names))


@_params(OPS)
def test_forward_float64_matches_numpy(row, device):
    rng = _rng(row)
    for shapes, kwargs in row.cases:
        arrays = _sample(row, rng, shapes)
        got = as_list(row.op(*[ad.constant(a) for a in arrays], **kwargs))
        want = [np.asarray(w) for w in as_list(row.ref(*arrays, **kwargs))]
        what = _describe(row, shapes, kwargs)
        assert len(got) == len(want), what
        for g, w in zip(got, want):
            assert isinstance(g, ad.Tensor), what
            assert g.shape == w.shape, f"{what}: shape {g.shape}, NumPy {w.shape}"
            assert g.dtype == _expected_dtype(row, np.float64), f"{what}: dtype {g.dtype.name}"
            assert g.device == device, what
            if row.exact:
                np.testing.assert_array_equal(g.numpy(), w, err_msg=what)
            else:
                np.testing.assert_allclose(g.numpy(), w, rtol=1e-12, atol=1e-14, err_msg=what)


@_params(OPS)
def test_forward_float32_keeps_float32(row, device):
    rng = _rng(row, salt=1)
    for shapes, kwargs in row.cases:
        arrays = [a.astype(np.float32) for a in _sample(row, rng, shapes)]
        got = as_list(row.op(*[ad.constant(a) for a in arrays], **kwargs))
        # the reference sees exactly the float32 inputs, in float64
        want = [np.asarray(w) for w in as_list(row.ref(*[a.astype(np.float64) for a in arrays], **kwargs))]
        what = _describe(row, shapes, kwargs)
        for g, w in zip(got, want):
            assert g.shape == w.shape, what
            assert g.dtype == _expected_dtype(row, np.float32), f"{what}: dtype {g.dtype.name}"
            if row.exact:
                np.testing.assert_array_equal(g.numpy(), w.astype(g.numpy().dtype), err_msg=what)
            else:
                np.testing.assert_allclose(g.numpy(), w, rtol=row.rtol32, atol=row.atol32, err_msg=what)


@_params(DIFFERENTIABLE)
def test_vjp_matches_finite_differences(row, device):
    rng = _rng(row, salt=2)
    for shapes, kwargs in row.cases:
        arrays = _sample(row, rng, shapes)
        try:
            numerical_vjp_check(lambda *xs: row.op(*xs, **kwargs), arrays, rng, order=1)
        except AssertionError as e:
            raise AssertionError(f"{_describe(row, shapes, kwargs)}: {e}") from None


@_params(SECOND_ORDER)
def test_second_order_matches_finite_differences(row, device):
    rng = _rng(row, salt=3)
    for shapes, kwargs in row.cases:
        arrays = _sample(row, rng, shapes)
        try:
            numerical_vjp_check(lambda *xs: row.op(*xs, **kwargs), arrays, rng, order=2)
        except AssertionError as e:
            raise AssertionError(f"{_describe(row, shapes, kwargs)}: {e}") from None


@_params(DIFFERENTIABLE)
def test_float32_gradient_is_float32_and_close_to_float64(row, device):
    rng = _rng(row, salt=4)
    for shapes, kwargs in row.cases:
        arrays = _sample(row, rng, shapes)
        ys = as_list(row.op(*[ad.constant(a) for a in arrays], **kwargs))
        seeds = [rng.standard_normal(y.shape) for y in ys]
        g64 = vjp(lambda *xs: row.op(*xs, **kwargs), [ad.constant(a) for a in arrays], seeds)
        g32 = vjp(lambda *xs: row.op(*xs, **kwargs), [ad.constant(a.astype(np.float32)) for a in arrays],
                  [s.astype(np.float32) for s in seeds])
        what = _describe(row, shapes, kwargs)
        for a, d, s in zip(arrays, g64, g32):
            assert (d is None) == (s is None), what
            if s is None:
                continue
            assert s.dtype == ad.float32 and s.shape == a.shape, what
            scale = np.max(np.abs(d.numpy()), initial=1.0)
            np.testing.assert_allclose(s.numpy(), d.numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@_params(DIFFERENTIABLE)
def test_variables_are_auto_watched_and_get_the_same_gradients(row, device):
    """Ops take Variables wherever they take tensors; trainable Variables read in the
    tape's context are watched automatically and get the gradients a watched tensor gets."""
    rng = _rng(row, salt=6)
    for shapes, kwargs in row.cases:
        arrays = _sample(row, rng, shapes)
        variables = [ad.Variable(a) for a in arrays]
        with ad.GradientTape() as tape:
            ys = as_list(row.op(*variables, **kwargs))
        seeds = [rng.standard_normal(y.shape) for y in ys]
        got = tape.gradient(ys, variables, output_gradients=[ad.constant(v) for v in seeds])
        want = vjp(lambda *xs: row.op(*xs, **kwargs), [ad.constant(a) for a in arrays], seeds)
        what = _describe(row, shapes, kwargs)
        for g, w in zip(got, want):
            assert (g is None) == (w is None), what
            if w is not None:
                assert g.shape == w.shape and g.dtype == w.dtype, what
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-13, atol=1e-15, err_msg=what)


@_params(NOT_DIFFERENTIABLE)
def test_not_differentiable_gives_none(row, device):
    """TF_REFERENCE.md §11: floor, round, argmax/argmin and comparisons have no
    gradient (None, not zeros), also along a path through a cast back to float;
    with unconnected_gradients="zero" the gradient is zeros of the source."""
    rng = _rng(row, salt=5)
    for shapes, kwargs in row.cases:
        xs = [ad.constant(a) for a in _sample(row, rng, shapes)]
        with ad.GradientTape(persistent=True) as tape:
            tape.watch(xs)
            y = row.op(*xs, **kwargs)
            as_float = ad.cast(y, ad.float64) * 2.0
        what = _describe(row, shapes, kwargs)
        assert tape.gradient(y, xs) == [None] * len(xs), what
        assert tape.gradient(as_float, xs) == [None] * len(xs), what
        zeros = tape.gradient(as_float, xs, unconnected_gradients="zero")
        for x, z in zip(xs, zeros):
            assert z.dtype == x.dtype and z.shape == x.shape, what
            np.testing.assert_array_equal(z.numpy(), np.zeros(x.shape), err_msg=what)


# -- cast, stop_gradient, dropout (not rows: they have no NumPy function to compare with) -------

def test_cast_between_floats_passes_the_gradient_in_the_source_dtype(device):
    """TF_REFERENCE.md §11: f32 -> f64 -> the gradient comes back as float32."""
    x = ad.constant(np.array([1.5, -2.0, 3.0], np.float32))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y64 = ad.cast(x, ad.float64)
        y = ad.reduce_sum(y64 * y64)
    assert y64.dtype == ad.float64
    g = tape.gradient(y, x)
    assert g.dtype == ad.float32 and g.shape == (3,)
    np.testing.assert_array_equal(g.numpy(), np.array([3.0, -4.0, 6.0], np.float32))


@pytest.mark.parametrize("dtype, truncated", [(ad.int32, [1.0, -1.0, 0.0]), (ad.int64, [1.0, -1.0, 0.0]),
                                              (ad.bool, [1.0, 1.0, 0.0])], ids=["int32", "int64", "bool"])
def test_cast_to_integer_or_bool_cuts_the_gradient(dtype, truncated, device):
    """TF_REFERENCE.md §11: cast(cast(x, int), float) * x -> only the x factor has a gradient."""
    x = ad.constant(np.array([1.7, -1.2, 0.0]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        c = ad.cast(ad.cast(x, dtype), ad.float64)
        y = c * x
    np.testing.assert_array_equal(c.numpy(), truncated)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), truncated)  # d(c x)/dx = c


def test_cast_to_integer_alone_has_no_gradient(device):
    x = ad.constant(np.array([1.7, -1.2]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.cast(ad.cast(x, ad.int32), ad.float64)
    assert tape.gradient(y, x) is None


def test_stop_gradient_passes_the_value_but_not_the_gradient(device):
    x = ad.constant(np.array([3.0, -1.0]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        s = ad.stop_gradient(x * x)
        z = s * x
    np.testing.assert_array_equal(s.numpy(), [9.0, 1.0])
    np.testing.assert_array_equal(tape.gradient(z, x).numpy(), [9.0, 1.0])  # = s, no 2x*x term


def test_stop_gradient_alone_gives_none(device):
    x = ad.constant(np.array([3.0, -1.0]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.stop_gradient(x)
    assert tape.gradient(y, x) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dropout_gradient_is_the_kept_mask_scaled(dtype, device):
    x = ad.constant(np.linspace(0.5, 2.0, 400).astype(dtype).reshape(20, 20))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.nn.dropout(x, rate=0.25, seed=3)
    assert y.dtype == x.dtype and y.shape == x.shape
    kept = y.numpy() != 0
    assert 0.6 < kept.mean() < 0.9  # about 1 - rate of the entries survive
    scale = dtype(1 / 0.75)
    np.testing.assert_allclose(y.numpy()[kept], (x.numpy() * scale)[kept], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), kept * scale, rtol=1e-6)


def test_dropout_is_the_identity_when_not_training_or_rate_zero(device):
    x = ad.constant(np.array([1.0, -2.0, 3.0]))
    for y in (ad.nn.dropout(x, 0.5, training=False), ad.nn.dropout(x, 0.0)):
        np.testing.assert_array_equal(y.numpy(), x.numpy())
