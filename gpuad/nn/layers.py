"""Layers: ``Dense``, ``Sequential``, ``Embedding``, ``LayerNorm``, ``Dropout``,
and the functional ``layer_norm`` and ``masked_softmax``.

Every layer is a :class:`gpuad.Module` built from gpuad ops only, so it runs on
every device and is differentiable (nested tapes included). Weights are created
on the current device (``with gpuad.device(...)``) when the layer is built.

>>> import gpuad as ad
>>> ad.random.set_seed(0)
>>> model = ad.nn.Sequential([
...     ad.nn.Dense(4, 8, activation="relu"),
...     ad.nn.Dropout(0.1),
...     ad.nn.Dense(8, 3),
... ])
>>> [path for path, _ in model.named_variables()]
['layers.0.bias', 'layers.0.kernel', 'layers.2.bias', 'layers.2.kernel']
>>> x = ad.ones((2, 4))
>>> with ad.GradientTape() as tape:
...     loss = ad.reduce_mean(ad.square(model(x, training=True)))
>>> [g.shape for g in tape.gradient(loss, model.trainable_variables)]
[(8,), (4, 8), (3,), (8, 3)]
"""
from __future__ import annotations

import inspect
import itertools
import threading

import numpy as np

from .. import dtypes as _dtypes
from ..errors import InvalidArgumentError
from ..module import Module
from ..ops import array as A, math as M
from ..ops.operands import to_tensor
from ..ops.shapes import normalize_axes
from ..tensor import Tensor, Variable, convert_to_tensor
from . import initializers

__all__ = ["Dense", "Sequential", "Embedding", "LayerNorm", "Dropout", "layer_norm",
           "masked_softmax"]


# -- unique default names, as Keras: dense, dense_1, dense_2, ... --------------------
_name_lock = threading.Lock()
_name_counters: dict = {}


def _unique_name(base: str) -> str:
    with _name_lock:
        n = _name_counters.setdefault(base, itertools.count())
        i = next(n)
    return base if i == 0 else f"{base}_{i}"


def _size(layer: str, name: str, value) -> int:
    """A layer's size argument: a positive int (Keras' rule). A float, even an
    integral one, raises ``TypeError``; zero or a negative size ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: {name} must be a positive integer, got {value!r} "
                        f"({type(value).__name__}).")
    if value <= 0:
        raise ValueError(f"Received an invalid value for `{name}` of {layer}, expected a "
                         f"positive integer. Received: {name}={int(value)}.")
    return int(value)


def _activation(activation):
    if activation is None:
        return None
    if callable(activation):
        return activation
    from .. import nn
    table = {"linear": None, "relu": nn.relu, "gelu": nn.gelu, "elu": nn.elu,
             "leaky_relu": nn.leaky_relu, "softplus": nn.softplus, "sigmoid": nn.sigmoid,
             "tanh": nn.tanh, "softmax": nn.softmax, "log_softmax": nn.log_softmax}
    if activation not in table:
        raise ValueError(f"Unknown activation {activation!r}; use one of {sorted(table)} or a "
                         f"callable.")
    return table[activation]


# -- functional ---------------------------------------------------------------------

def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-5):
    """Normalize ``x`` to zero mean and unit variance over ``axis`` (an int or a
    tuple), then scale by ``gamma`` and shift by ``beta`` (each broadcast
    against ``x``; None skips it). The variance is the biased one (divided by
    n), as Keras and PyTorch compute it.

    >>> import gpuad as ad
    >>> y = ad.nn.layer_norm(ad.constant([[1.0, 2.0, 3.0]]), ad.ones(3), ad.zeros(3))
    >>> [round(float(v), 4) for v in y[0]]
    [-1.2247, 0.0, 1.2247]
    """
    x = to_tensor(x)
    if x._data.dtype.kind != "f":
        raise InvalidArgumentError(f"layer_norm takes float tensors, got {x.dtype.name}; cast "
                                   f"with gpuad.cast(x, gpuad.float32).", "layer_norm")
    axes = normalize_axes("layer_norm", axis, x.ndim)
    mean = M.reduce_mean(x, axes, keepdims=True)
    centered = x - mean
    var = M.reduce_mean(M.square(centered), axes, keepdims=True)
    y = centered * M.rsqrt(var + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def masked_softmax(logits, mask, axis=-1):
    """Softmax of ``logits`` along ``axis`` over the positions where ``mask``
    is True (``mask`` broadcasts against ``logits``, e.g. a ``(T, T)`` causal
    mask for ``(B, H, T, T)`` attention scores). Masked positions get
    probability 0; a row with every position masked gives all zeros (not NaN),
    and its gradient is zero.

    >>> import gpuad as ad
    >>> p = ad.nn.masked_softmax(ad.constant([[1.0, 1.0, 5.0], [1.0, 2.0, 3.0]]),
    ...                          ad.constant([[True, True, False], [False, False, False]]))
    >>> p.numpy()
    array([[0.5, 0.5, 0. ],
           [0. , 0. , 0. ]], dtype=float32)
    """
    from . import softmax
    x = to_tensor(logits)
    if x._data.dtype.kind != "f":
        raise InvalidArgumentError(f"masked_softmax takes float logits, got {x.dtype.name}.",
                                   "masked_softmax")
    m = mask if isinstance(mask, Tensor) else to_tensor(mask) if isinstance(mask, Variable) \
        else convert_to_tensor(np.asarray(mask, dtype=bool), device=x._device)
    if m._data.dtype.kind != "b":
        m = m != 0
    # The most negative finite value: exp() of it minus the row max is exactly 0
    # whenever the row has an unmasked logit, and no inf ever enters the graph.
    fill = float(np.finfo(x._data.dtype).min)
    probs = softmax(M.where(m, x, fill), axis=axis)
    # A fully masked row is uniform before this product and zeros after it; the
    # product also cuts its gradient to zero.
    return probs * M.cast(m, x.dtype)


# -- layers ---------------------------------------------------------------------------

class Dense(Module):
    """``activation(x @ kernel + bias)``: ``kernel`` has shape
    ``(in_features, out_features)``, ``bias`` ``(out_features,)``. Inputs of any
    rank >= 1 work; the product is over the last axis.

    >>> import gpuad as ad
    >>> layer = ad.nn.Dense(3, 2, kernel_initializer="ones", name="d")
    >>> layer(ad.constant([[1.0, 2.0, 3.0]])).numpy()
    array([[6., 6.]], dtype=float32)
    >>> [v.name for v in layer.variables]
    ['d/bias:0', 'd/kernel:0']
    """

    def __init__(self, in_features, out_features, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype=_dtypes.float32, name=None):
        super().__init__(name=name if name is not None else _unique_name("dense"))
        self.in_features = _size("Dense", "in_features", in_features)
        self.out_features = _size("Dense", "out_features", out_features)
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        dtype = _dtypes.as_dtype(dtype)
        self.kernel = Variable(initializers.get(kernel_initializer)(
            (self.in_features, self.out_features), dtype), name=f"{self.name}/kernel")
        self.bias = (Variable(initializers.get(bias_initializer)((self.out_features,), dtype),
                              name=f"{self.name}/bias") if self.use_bias else None)

    def __call__(self, x):
        x = to_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise InvalidArgumentError(
                f"Dense layer '{self.name}' expects inputs whose last axis has size "
                f"{self.in_features}, got shape {x.shape}.", "dense")
        if x.ndim == 2:
            y = M.matmul(x, self.kernel)
        else:
            flat = A.reshape(x, (-1, self.in_features))
            y = A.reshape(M.matmul(flat, self.kernel), x.shape[:-1] + (self.out_features,))
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y


def _accepts_training(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class Sequential(Module):
    """Layers (or any callables) applied in order. ``training`` is passed on to
    the layers whose ``__call__`` takes it (``Dropout``).

    >>> import gpuad as ad
    >>> model = ad.nn.Sequential([ad.nn.Dense(2, 2, kernel_initializer="ones"), ad.nn.relu])
    >>> model(ad.constant([[1.0, -3.0]])).numpy()
    array([[0., 0.]], dtype=float32)
    >>> len(model), len(model.trainable_variables)
    (2, 2)
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name if name is not None else _unique_name("sequential"))
        self.layers = list(layers) if layers is not None else []
        for layer in self.layers:
            if not callable(layer):
                raise TypeError(f"Sequential takes callables (layers, functions); got {layer!r}.")

    def add(self, layer):
        """Append a layer."""
        if not callable(layer):
            raise TypeError(f"Sequential takes callables (layers, functions); got {layer!r}.")
        self.layers.append(layer)

    def __call__(self, x, training=False):
        for layer in self.layers:
            x = layer(x, training=training) if _accepts_training(layer) else layer(x)
        return x

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i):
        return self.layers[i]


class Embedding(Module):
    """A lookup table: ``layer(ids)`` gathers rows of ``embeddings``
    (``(num_embeddings, dim)``) at integer ``ids`` of any shape. The gradient
    is dense, a scatter-add on the device (repeated ids add up). An id outside
    ``[0, num_embeddings)`` raises InvalidArgumentError on ``cpu``; on ``cuda`` and
    ``emulated`` it reads a zero row unless ``GPUAD_CHECK_INDICES=1`` (README, API section).

    >>> import gpuad as ad
    >>> emb = ad.nn.Embedding(5, 2, embeddings_initializer="ones")
    >>> emb(ad.constant([[0, 4, 4]])).shape
    (1, 3, 2)
    """

    def __init__(self, num_embeddings, dim, embeddings_initializer="uniform",
                 dtype=_dtypes.float32, name=None):
        super().__init__(name=name if name is not None else _unique_name("embedding"))
        self.num_embeddings = _size("Embedding", "num_embeddings", num_embeddings)
        self.dim = _size("Embedding", "dim", dim)
        self.embeddings = Variable(initializers.get(embeddings_initializer)(
            (self.num_embeddings, self.dim), _dtypes.as_dtype(dtype)),
            name=f"{self.name}/embeddings")

    def __call__(self, ids):
        return A.gather(self.embeddings, ids, axis=0)


class LayerNorm(Module):
    """Layer normalization over the last axis (or the last ``len(dim)`` axes
    when ``dim`` is a tuple), with a learned scale ``gamma`` (ones) and shift
    ``beta`` (zeros). See :func:`layer_norm`.

    >>> import gpuad as ad
    >>> ln = ad.nn.LayerNorm(4)
    >>> y = ln(ad.constant([[1.0, 2.0, 3.0, 4.0]]))
    >>> abs(float(ad.reduce_mean(y))) < 1e-6
    True
    """

    def __init__(self, dim, epsilon=1e-5, center=True, scale=True, dtype=_dtypes.float32,
                 name=None):
        super().__init__(name=name if name is not None else _unique_name("layer_norm"))
        if isinstance(dim, (list, tuple)):
            if not dim:
                raise ValueError("LayerNorm: dim must name at least one axis size, got ().")
            self.shape = tuple(_size("LayerNorm", "dim", d) for d in dim)
        else:
            self.shape = (_size("LayerNorm", "dim", dim),)
        if isinstance(epsilon, (bool, np.bool_, str)) or not epsilon >= 0:
            raise ValueError(f"LayerNorm: epsilon must be a number >= 0, got {epsilon!r}.")
        self.epsilon = float(epsilon)
        dtype = _dtypes.as_dtype(dtype)
        self.gamma = Variable(initializers.ones(self.shape, dtype), name=f"{self.name}/gamma") \
            if scale else None
        self.beta = Variable(initializers.zeros(self.shape, dtype), name=f"{self.name}/beta") \
            if center else None

    def __call__(self, x):
        x = to_tensor(x)
        n = len(self.shape)
        if x.ndim < n or x.shape[x.ndim - n:] != self.shape:
            raise InvalidArgumentError(
                f"LayerNorm '{self.name}' normalizes trailing axes of shape {self.shape}, got an "
                f"input of shape {x.shape}.", "layer_norm")
        return layer_norm(x, self.gamma, self.beta, axis=tuple(range(x.ndim - n, x.ndim)),
                          epsilon=self.epsilon)


class Dropout(Module):
    """Zero each element with probability ``rate`` and scale the rest by
    1 / (1 - rate) -- only when called with ``training=True``; otherwise the
    input passes unchanged (Keras' convention).

    >>> import gpuad as ad
    >>> drop = ad.nn.Dropout(0.5)
    >>> drop(ad.ones(4)).numpy()
    array([1., 1., 1., 1.], dtype=float32)
    >>> sorted(set(drop(ad.ones(1000), training=True).numpy().tolist()))
    [0.0, 2.0]
    """

    def __init__(self, rate, noise_shape=None, seed=None, name=None):
        super().__init__(name=name if name is not None else _unique_name("dropout"))
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer,
                                                                     np.floating)):
            raise TypeError(f"Dropout: rate must be a float in [0, 1), got {rate!r} "
                            f"({type(rate).__name__}).")
        if not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate` of Dropout. Expected "
                             f"a float value in [0, 1) (1 would drop everything). Received: "
                             f"rate={rate}.")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed

    def __call__(self, x, training=False):
        from . import dropout
        return dropout(x, self.rate, noise_shape=self.noise_shape, seed=self.seed,
                       training=bool(training))
