"""The ``cpu`` device: every kernel of the protocol in NumPy.

Buffers are NumPy arrays. They may be read-only views (``broadcast_to``,
``transpose``): this device never writes into a buffer after creating it (its
``optim`` family updates copies and returns them).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InvalidArgumentError, index_error
from . import KERNEL_SET, Device
from . import philox
from .cpu_memory import CHECK_ABOVE, host_empty

# Edge values (log(0), 0/0, sqrt(-1)) are part of the contract, not accidents: keep
# NumPy from warning about them with a filter, which costs nothing until a warning is
# raised (an np.errstate per call would cost about 1.4 us, more than a small op).
# NumPy attributes a RuntimeWarning to the Python frame that called the ufunc, and
# CpuDevice.kernel hands out bare ufuncs (no wrapper call on every op), which gpuad's
# op layer calls: so the filter covers every gpuad module, without naming one (a
# module's own NumPy warnings are about results gpuad computes on purpose too).
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"gpuad(\.|\Z)")


def _relu(x):
    return np.maximum(x, x.dtype.type(0))


def _sigmoid(x):
    # exp(-|x|) never overflows; both branches are exact where they are used.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _softplus(x):
    return (np.maximum(x, x.dtype.type(0)) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


_ERF_SPLIT = 2.5
_ERF_TERMS = {np.dtype(np.float32): (30, 15), np.dtype(np.float64): (60, 40)}
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _series_coefficients(terms):
    c = [1.0]  # 2^n / (1*3*...*(2n+1))
    for n in range(terms):
        c.append(c[-1] * 2.0 / (2 * n + 3))
    return c[::-1]  # highest power first, for Horner's rule


_ERF_SERIES = {dtype: _series_coefficients(n) for dtype, (n, _) in _ERF_TERMS.items()}


def _erf(x):
    """erf in float64 NumPy operations (NumPy has none; math.erf per element
    made GELU the largest cost of a CPU training step). For |x| < 2.5 the
    series erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)),
    whose terms are all positive (no cancellation), by Horner's rule in place;
    above, erfc's continued fraction exp(-x^2) / sqrt(pi) / (x + (1/2)/(x +
    1/(x + (3/2)/(x + ...)))). The term counts give a relative error below 1e-12
    for float32 inputs (rounded to float32: the correctly rounded value) and
    about 1e-15 for float64 (tests/devices/test_cpu_erf.py)."""
    key = x.dtype if x.dtype in _ERF_TERMS else np.dtype(np.float64)
    a = np.abs(x.astype(np.float64))
    out = np.empty_like(a)
    near = a < _ERF_SPLIT
    s = a[near]
    s2 = s * s
    coefficients = _ERF_SERIES[key]
    total = np.full_like(s2, coefficients[0])
    for c in coefficients[1:]:
        total *= s2
        total += c
    total *= s
    total *= np.exp(-s2)
    total *= _TWO_OVER_SQRT_PI
    out[near] = total
    far = a[~near]  # also inf (erf = 1) and NaN (stays NaN)
    frac = far.copy()
    for k in range(_ERF_TERMS[key][1], 0, -1):
        frac = far + (0.5 * k) / frac
    with np.errstate(invalid="ignore"):
        out[~near] = 1.0 - np.exp(-far * far) / (math.sqrt(math.pi) * frac)
    return np.copysign(out, x).astype(x.dtype, copy=False)


_UNARY = {
    "negative": np.negative, "abs": np.abs, "sign": np.sign, "square": np.square,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "reciprocal": np.reciprocal,
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "sigmoid": _sigmoid, "relu": _relu, "softplus": _softplus, "erf": _erf,
    "floor": np.floor, "round": np.round, "logical_not": np.logical_not,
}

_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.true_divide,
    "floordiv": np.floor_divide, "floormod": np.mod, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum,
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or,
}


_CHECKED_BINARY = frozenset({"pow", "floordiv", "floormod"})  # integer edge cases raise

# What CpuDevice.kernel hands out: the ufuncs and this module's functions as they are.
_UNARY_KERNELS = dict(_UNARY)
_BINARY_KERNELS = {op: f for op, f in _BINARY.items() if op not in _CHECKED_BINARY}


def _guarded(dy, grad):
    """TF's Sqrt/Rsqrt/ReciprocalGrad: a zero upstream gives zero, even where
    the local derivative is infinite (so ``where(x > 0, sqrt(x), 0)`` is NaN-free)."""
    return np.where(dy == 0, dy.dtype.type(0), grad)


_UNARY_GRAD = {  # (a, dy): a is the forward input x (relu, sin, cos, square) or output y
    "relu_grad": lambda x, dy: np.where(x > 0, dy, dy.dtype.type(0)),
    "sigmoid_grad": lambda y, dy: dy * y * (1 - y),
    "tanh_grad": lambda y, dy: dy * (1 - y * y),
    "sin_grad": lambda x, dy: dy * np.cos(x),
    "cos_grad": lambda x, dy: -(dy * np.sin(x)),
    "square_grad": lambda x, dy: dy * (x * 2),
    "sqrt_grad": lambda y, dy: _guarded(dy, dy * y.dtype.type(0.5) / y),
    "rsqrt_grad": lambda y, dy: _guarded(dy, dy.dtype.type(-0.5) * dy * y * y * y),
    "reciprocal_grad": lambda y, dy: _guarded(dy, -dy * y * y),
}


def _lowest(dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _highest(dtype):
    return np.inf if dtype.kind == "f" else np.iinfo(dtype).max


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


# ufunc.reduce directly: np.sum's Python wrapper costs more than a small sum
_REDUCE = {
    "reduce_sum": lambda x, axis, keepdims: np.add.reduce(x, axis, x.dtype, None, keepdims),
    "reduce_prod": lambda x, axis, keepdims: np.multiply.reduce(x, axis, x.dtype, None, keepdims),
    "reduce_max": lambda x, axis, keepdims: np.maximum.reduce(x, axis, None, None, keepdims, _lowest(x.dtype)),
    "reduce_min": lambda x, axis, keepdims: np.minimum.reduce(x, axis, None, None, keepdims, _highest(x.dtype)),
    "reduce_logsumexp": _logsumexp,
}


def _log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _moved_scatter_target(shape, dtype, axis):
    out = np.zeros(shape, dtype=dtype)
    return out, np.moveaxis(out, axis, 0)


class CpuDevice(Device):
    """NumPy buffers on the host."""

    name = "cpu"
    kind = "cpu"
    kernels = KERNEL_SET
    optim_in_place = False  # cpu_optim computes every step on copies
    generated_source = "cpp"

    def compile(self, source):
        """The ``ctypes`` library of generated C++ ``source`` (see
        :mod:`gpuad.devices.cpp_build`); :class:`CompilerUnavailableError` without g++."""
        from . import cpp_build
        return cpp_build.load(cpp_build.build(source))

    def from_host(self, array):
        return np.array(array, copy=True)

    def to_host(self, buffer):
        return np.array(buffer, copy=True)

    def kernel(self, family, op):
        # Most element-wise kernels are the ufunc itself: no method call or op
        # dispatch on the hot path.
        if family == "unary" and op in _UNARY_KERNELS:
            return _UNARY_KERNELS[op]
        if family == "binary" and op in _BINARY_KERNELS:
            return _BINARY_KERNELS[op]
        if family == "unary_grad" and op in _UNARY_GRAD:
            return _UNARY_GRAD[op]
        return super().kernel(family, op)

    # element-wise ------------------------------------------------------------
    def unary(self, op, x):
        return _UNARY[op](x)

    def binary(self, op, x, y):
        if op == "pow" and x.dtype.kind in "iu" and y.size and np.min(y) < 0:
            raise InvalidArgumentError(
                "Integers to negative integer powers are not allowed; cast the base "
                "to a float dtype first (gpuad.cast(x, gpuad.float32)).", "pow")
        if op in ("floordiv", "floormod") and x.dtype.kind in "iu" and y.size and not np.all(y):
            raise InvalidArgumentError("Integer division by zero.", op)
        return _BINARY[op](x, y)

    def unary_grad(self, op, a, dy):
        return _UNARY_GRAD[op](a, dy)

    def where(self, op, c, x, y):
        return np.where(c, x, y)

    def cast(self, op, x, dtype):
        return x.astype(dtype)

    # reductions --------------------------------------------------------------
    def reduce(self, op, x, axes, keepdims):
        return np.asarray(_REDUCE[op](x, axes, keepdims), dtype=x.dtype)

    def arg_reduce(self, op, x, axis):
        return np.asarray((np.argmax if op == "argmax" else np.argmin)(x, axis=axis), np.int64)

    # linear algebra ----------------------------------------------------------
    def matmul(self, op, a, b, transpose_a, transpose_b):
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        return np.matmul(a, b)

    # layout ------------------------------------------------------------------
    def layout(self, op, x, **attrs):
        if op == "reshape":
            return np.reshape(x, attrs["shape"])
        if op == "transpose":
            return np.transpose(x, attrs["perm"])
        if op == "broadcast_to":
            return np.broadcast_to(x, attrs["shape"])
        if op == "strided_slice":
            return x[attrs["key"]]
        if op == "strided_slice_grad":  # x is the upstream gradient of x_full[key]
            out = np.zeros(attrs["shape"], dtype=x.dtype)
            out[attrs["key"]] = x
            return out
        raise KeyError(op)

    def concat(self, op, *xs, axis):
        return np.concatenate(xs, axis=axis)

    def gather(self, op, x, indices, axis, shape=None):
        if op == "gather":
            self.check_indices(op, indices, x.shape[axis], axis=axis, shape=x.shape)
            return np.take(x, indices, axis=axis)
        # scatter_add: x holds the updates, shape is the full result's shape
        out, moved = _moved_scatter_target(shape, x.dtype, axis)
        flat = indices.reshape(-1)
        upd = x.reshape(shape[:axis] + (flat.size,) + shape[axis + 1:])
        np.add.at(moved, flat, np.moveaxis(upd, axis, 0))
        return out

    checks_indices = True  # the cpu device always checks (as TensorFlow's CPU kernels)

    def check_indices(self, op, indices, n, axis=None, shape=None):
        """Raise InvalidArgumentError (naming ``op``, the first bad position and value)
        if an element of ``indices`` is outside ``[0, n)``. Always on for this device:
        the indices are already in host memory, so it costs two passes over them."""
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise index_error(op, indices, int(n), axis=axis, shape=shape)

    def one_hot(self, op, indices, depth, on_value, off_value, dtype):
        # An index outside [0, depth) gives a row of off_value, as in TensorFlow (no error).
        hot = indices[..., None] == np.arange(depth)
        return np.where(hot, np.asarray(on_value, dtype), np.asarray(off_value, dtype))

    # nn ----------------------------------------------------------------------
    def softmax(self, op, x, axis):
        z = _log_softmax(x, axis)
        return z if op == "log_softmax" else np.exp(z)

    def softmax_xent(self, op, labels, logits, axis):
        return -np.sum(labels * _log_softmax(logits, axis), axis=axis)

    # creation ----------------------------------------------------------------
    def fill(self, op, shape, value, dtype):
        if math.prod(shape) * np.dtype(dtype).itemsize >= CHECK_ABOVE:  # (small fills: as fast as before)
            out = host_empty(op, shape, dtype)
            out.fill(value)
            return out
        return np.full(shape, value, dtype=dtype)

    from .cpu_optim import optim  # fused optimizer steps, on copies (see gpuad/devices/cpu_optim.py)

    def random(self, op, shape, dtype, key, offset):
        # Into one buffer, a chunk at a time (philox.sample_into): peak memory is the
        # output plus a few MiB. A request the host cannot give raises OutOfMemoryError.
        out = host_empty(op, (math.prod(shape),), dtype)
        return philox.sample_into(out, op, key, offset).reshape(shape)
