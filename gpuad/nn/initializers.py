"""Weight initializers, drawing from gpuad's seeded Philox generator.

Each initializer is a class called as ``init(shape, dtype=gpuad.float32)``
(Keras' convention), and each has a snake-case function that draws directly:
``glorot_uniform(shape, dtype=gpuad.float32, seed=None, device=None)``.
:func:`get` turns a name (``"glorot_uniform"``, ``"he_normal"``, ``"zeros"``,
``"ones"``, ``"uniform"``, ``"normal"``), an instance or any callable
``f(shape, dtype)`` into an initializer; the layers take all three.

Draws come from :mod:`gpuad.random`, so ``gpuad.random.set_seed(s)`` before
building a model makes its initial weights reproducible.

>>> import gpuad as ad
>>> ad.random.set_seed(0)
>>> a = ad.nn.initializers.glorot_uniform((3, 4))
>>> ad.random.set_seed(0)
>>> b = ad.nn.initializers.get("glorot_uniform")((3, 4))
>>> bool(ad.reduce_all(a == b)), a.shape
(True, (3, 4))
>>> ad.nn.initializers.zeros((2,)).numpy()
array([0., 0.], dtype=float32)
"""
from __future__ import annotations

import math

from .. import dtypes as _dtypes
from .. import random as _random
from ..ops import creation as C, math as M

__all__ = ["Initializer", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "Zeros",
           "Ones", "Constant", "RandomUniform", "RandomNormal", "glorot_uniform", "glorot_normal",
           "he_normal", "he_uniform", "zeros", "ones", "get"]

# stddev of the standard normal truncated to [-2, 2] (Keras' correction constant)
_TRUNC_STD = 0.87962566103423978


def compute_fans(shape) -> tuple:
    """(fan_in, fan_out) of a weight shape, as Keras computes them: a matrix
    ``(in, out)``; a vector ``(n,)`` counts n both ways; a convolution kernel
    ``(..., in, out)`` multiplies by its receptive field."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(shape, stddev, dtype, seed, device):
    """N(0, 1) truncated to [-2, 2], scaled by ``stddev``: values outside are
    redrawn (on the device, a fixed number of rounds, then clipped -- after
    eight rounds the chance an element is still outside is below 1e-10)."""
    z = _random.normal(shape, dtype=dtype, seed=seed, device=device)
    for _ in range(8):
        redraw = _random.normal(shape, dtype=dtype, seed=seed, device=device)
        z = M.where(M.abs(z) > 2.0, redraw, z)
    return M.clip_by_value(z, -2.0, 2.0) * stddev


class Initializer:
    """Base class: ``init(shape, dtype=gpuad.float32)`` returns a Tensor."""

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        return C.zeros(shape, dtype=dtype, device=device)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        return C.ones(shape, dtype=dtype, device=device)


class Constant(Initializer):
    """Every element ``value``."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        return C.ones(shape, dtype=dtype, device=device) * self.value


class RandomUniform(Initializer):
    """U[minval, maxval) (Keras' ``"uniform"``: [-0.05, 0.05))."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        return _random.uniform(shape, self.minval, self.maxval, dtype=dtype, seed=self.seed,
                               device=device)


class RandomNormal(Initializer):
    """N(mean, stddev**2) (Keras' ``"normal"``: stddev 0.05)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        return _random.normal(shape, self.mean, self.stddev, dtype=dtype, seed=self.seed,
                              device=device)


class GlorotUniform(Initializer):
    """U[-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Xavier uniform)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        fan_in, fan_out = compute_fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
        return _random.uniform(shape, -limit, limit, dtype=dtype, seed=self.seed, device=device)


class GlorotNormal(Initializer):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) (Xavier normal)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        fan_in, fan_out = compute_fans(shape)
        std = math.sqrt(2.0 / max(1.0, fan_in + fan_out)) / _TRUNC_STD
        return _truncated_normal(shape, std, dtype, self.seed, device)


class HeNormal(Initializer):
    """Truncated normal (at two standard deviations) with stddev sqrt(2 / fan_in),
    as Keras' ``he_normal``."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        fan_in, _ = compute_fans(shape)
        std = math.sqrt(2.0 / max(1.0, fan_in)) / _TRUNC_STD
        return _truncated_normal(shape, std, dtype, self.seed, device)


class HeUniform(Initializer):
    """U[-limit, limit) with limit = sqrt(6 / fan_in)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=_dtypes.float32, device=None):
        fan_in, _ = compute_fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in))
        return _random.uniform(shape, -limit, limit, dtype=dtype, seed=self.seed, device=device)


def glorot_uniform(shape, dtype=_dtypes.float32, seed=None, device=None):
    """Draw a Glorot (Xavier) uniform tensor of ``shape``."""
    return GlorotUniform(seed)(shape, dtype, device)


def glorot_normal(shape, dtype=_dtypes.float32, seed=None, device=None):
    """Draw a Glorot (Xavier) truncated-normal tensor of ``shape``."""
    return GlorotNormal(seed)(shape, dtype, device)


def he_normal(shape, dtype=_dtypes.float32, seed=None, device=None):
    """Draw a He truncated-normal tensor of ``shape`` (stddev sqrt(2 / fan_in))."""
    return HeNormal(seed)(shape, dtype, device)


def he_uniform(shape, dtype=_dtypes.float32, seed=None, device=None):
    """Draw a He uniform tensor of ``shape``."""
    return HeUniform(seed)(shape, dtype, device)


def zeros(shape, dtype=_dtypes.float32, device=None):
    """A zero tensor of ``shape``."""
    return C.zeros(shape, dtype=dtype, device=device)


def ones(shape, dtype=_dtypes.float32, device=None):
    """A tensor of ones of ``shape``."""
    return C.ones(shape, dtype=dtype, device=device)


_BY_NAME = {
    "glorot_uniform": GlorotUniform, "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "xavier_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "zeros": Zeros, "zero": Zeros, "ones": Ones, "one": Ones,
    "uniform": RandomUniform, "random_uniform": RandomUniform,
    "normal": RandomNormal, "random_normal": RandomNormal,
}


def get(identifier):
    """An initializer from a name, an :class:`Initializer` or a callable
    ``f(shape, dtype)``.

    >>> import gpuad as ad
    >>> ad.nn.initializers.get("he_normal")
    HeNormal()
    """
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"Unknown initializer {identifier!r}; use one of "
                             f"{sorted(_BY_NAME)}, an Initializer, or a callable f(shape, dtype).")
        return _BY_NAME[key]()
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret initializer {identifier!r}: pass a name, an "
                    f"Initializer, or a callable f(shape, dtype).")
