"""Neural-network ops: activations, softmax, losses, dropout.

>>> import gpuad as ad
>>> ad.nn.relu(ad.constant([-1.0, 2.0])).numpy()
array([0., 2.], dtype=float32)
>>> ad.nn.softmax(ad.constant([0.0, 0.0])).numpy()
array([0.5, 0.5], dtype=float32)
"""
from __future__ import annotations

import math as _math

from ..errors import InvalidArgumentError
from ..ops import math as M, array as A, creation as C
from ..ops import table as T
from ..ops.core import bind
from ..ops.operands import adopt, to_tensor
from ..ops.shapes import normalize_axis
from ..tensor import Tensor, Variable

__all__ = ["relu", "leaky_relu", "gelu", "elu", "softplus", "sigmoid", "tanh", "softmax",
           "log_softmax", "softmax_cross_entropy_with_logits",
           "sparse_softmax_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits",
           "dropout"]

sigmoid = M.sigmoid
tanh = M.tanh


def relu(features):
    """max(x, 0); its gradient at 0 is 0."""
    return bind(T.RELU, (to_tensor(features),))


def softplus(features):
    """log(1 + e ** x), computed stably."""
    return bind(T.SOFTPLUS, (to_tensor(features),))


def leaky_relu(features, alpha=0.2):
    """x where x > 0, else alpha * x (TF's default alpha is 0.2; the gradient at 0 is alpha)."""
    x = to_tensor(features)
    return M.where(x > 0, x, x * alpha)


def elu(features):
    """x where x > 0, else e ** x - 1; the gradient at 0 is 1."""
    x = to_tensor(features)
    # expm1 of min(x, 0), so the unused branch never overflows to inf (0 * inf = NaN)
    return M.where(x > 0, x, M.expm1(M.minimum(x, 0)))


def gelu(features, approximate=False):
    """x * Phi(x), exact with erf (TF's default) or the tanh approximation.

    >>> import gpuad as ad
    >>> round(float(ad.nn.gelu(ad.constant(1.0))), 4)
    0.8413
    """
    x = to_tensor(features)
    if approximate:
        inner = (x + x * x * x * 0.044715) * _math.sqrt(2 / _math.pi)
        return x * 0.5 * (M.tanh(inner) + 1)
    return x * 0.5 * (M.erf(x * (1 / _math.sqrt(2))) + 1)


def _softmax(prim, logits, axis):
    x = to_tensor(logits)
    if x.ndim == 0:
        raise InvalidArgumentError(f"{prim.name} needs a tensor of rank >= 1.", prim.name)
    return bind(prim, (x,), axis=normalize_axis(prim.name, axis, x.ndim))


def softmax(logits, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed stably."""
    return _softmax(T.SOFTMAX, logits, axis)


def log_softmax(logits, axis=-1):
    """x - logsumexp(x) along ``axis``."""
    return _softmax(T.LOG_SOFTMAX, logits, axis)


def softmax_cross_entropy_with_logits(labels, logits, axis=-1):
    """-sum(labels * log_softmax(logits)) along ``axis``, per example.

    >>> import gpuad as ad
    >>> round(float(ad.nn.softmax_cross_entropy_with_logits([1.0, 0.0], [0.0, 0.0])), 4)
    0.6931
    """
    z = to_tensor(logits)
    y = to_tensor(labels) if isinstance(labels, (Tensor, Variable)) else adopt(labels, z)
    if z.ndim == 0:
        raise InvalidArgumentError("softmax_cross_entropy takes float logits of rank >= 1.",
                                   "softmax_cross_entropy")
    return bind(T.SOFTMAX_CROSS_ENTROPY, (y, z),
                axis=normalize_axis("softmax_cross_entropy", axis, z.ndim))


def sparse_softmax_cross_entropy_with_logits(labels, logits):
    """Cross entropy against integer class ``labels`` (shape ``logits.shape[:-1]``).

    A label outside ``[0, num_classes)`` raises :class:`gpuad.errors.InvalidArgumentError`
    on the ``cpu`` device ("Received a label value of 5 which is outside the valid range
    of [0, 3)", as TensorFlow on a CPU). On the kernel devices (``cuda``, ``emulated``)
    checking would cost a device-to-host round trip per call, so by default its loss is
    NaN (as TensorFlow on a GPU); set ``GPUAD_CHECK_INDICES=1`` before the device is
    first used to have them check and raise the same error."""
    z = to_tensor(logits)
    idx = to_tensor(labels)
    if idx.shape != z.shape[:-1]:
        raise InvalidArgumentError(f"labels shape {idx.shape} must equal logits shape without "
                                   f"its last axis, {z.shape[:-1]}.", "sparse_softmax_cross_entropy")
    n = z.shape[-1]
    dev, data = idx._device, idx._data
    if getattr(dev, "checks_indices", False) and hasattr(data, "min"):  # (a value being traced holds no numbers)
        dev.check_indices("sparse_softmax_cross_entropy_with_logits", data, n)
    loss = softmax_cross_entropy_with_logits(C.one_hot(idx, n, dtype=z.dtype), z)
    # Unchecked (kernel devices by default), a label outside [0, n) has no class to
    # score: its loss is NaN (as TF on a GPU), decided on the device, without a round trip.
    valid = M.logical_and(idx >= 0, idx < n)
    return M.where(valid, loss, float("nan"))


def sigmoid_cross_entropy_with_logits(labels=None, logits=None):
    """Element-wise logistic loss, computed as TF does so gradients agree at 0:
    max(x, 0) - x z + log(1 + e ** -|x|)."""
    x = to_tensor(logits)
    z = to_tensor(labels) if isinstance(labels, (Tensor, Variable)) else adopt(labels, x)
    if z.shape != x.shape or z.dtype != x.dtype:  # checked first: a failed op records nothing
        raise InvalidArgumentError(f"logits and labels must have the same shape and dtype: "
                                   f"logits {x.shape} {x.dtype.name} vs labels {z.shape} "
                                   f"{z.dtype.name}.", "sigmoid_cross_entropy_with_logits")
    positive = x >= 0
    relu_x = M.where(positive, x, 0)
    neg_abs = M.where(positive, -x, x)
    return relu_x - x * z + M.log1p(M.exp(neg_abs))


def dropout(x, rate, noise_shape=None, seed=None, training=True):
    """Zero each element with probability ``rate`` and scale the rest by 1/(1-rate)."""
    x = to_tensor(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate}.")
    if not training or rate == 0:
        return x
    from .. import random
    u = random.uniform(x.shape if noise_shape is None else tuple(noise_shape), dtype=x.dtype,
                       seed=seed, device=x._device)
    return x * M.cast(u >= rate, x.dtype) * (1 / (1 - rate))


# -- layers and initializers (gpuad/nn/layers.py, gpuad/nn/initializers.py) ----------
from . import initializers  # noqa: E402
from .layers import (  # noqa: E402
    Dense, Dropout, Embedding, LayerNorm, Sequential, layer_norm, masked_softmax,
)

__all__ += ["initializers", "Dense", "Dropout", "Embedding", "LayerNorm", "Sequential",
            "layer_norm", "masked_softmax"]
