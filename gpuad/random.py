"""Random numbers from Philox-4x32-10, a counter-based generator.

Each draw takes a fresh stretch of the stream, so results depend only on the
seed and the order of calls, never on the device or how a kernel is launched.

>>> import gpuad as ad
>>> ad.random.set_seed(7)
>>> a = ad.random.normal((3,))
>>> ad.random.set_seed(7)
>>> bool(ad.reduce_all(a == ad.random.normal((3,))))
True
"""
from __future__ import annotations

import os
import threading

from . import devices as _devices
from . import dtypes as _dtypes
from .devices import philox
from .ops import table as T
from .ops.core import bind
from .ops.shapes import as_int, shape_arg
from .tensor import Tensor

__all__ = ["set_seed", "normal", "uniform"]

_lock = threading.Lock()
_global_seed = int.from_bytes(os.urandom(4), "little")
_offsets: dict[int, int] = {}  # per op seed: the next unused Philox block


def _seed_bits(op: str, seed) -> int:
    """An integer seed (of any size; its low 32 bits key the stream) as those bits.
    Non-integers raise naming the op: ``set_seed("x")`` or ``seed=2.5`` are mistakes."""
    return as_int(op, "seed", seed) & 0xFFFFFFFF


def set_seed(seed: int | None) -> None:
    """Make every later draw reproducible (as ``tf.random.set_seed``); ``None``
    makes them unpredictable again.

    >>> import gpuad as ad
    >>> ad.random.set_seed(7); a = ad.random.uniform((2,)).numpy()
    >>> ad.random.set_seed(7); bool((ad.random.uniform((2,)).numpy() == a).all())
    True
    """
    global _global_seed
    bits = (int.from_bytes(os.urandom(4), "little") if seed is None
            else _seed_bits("random.set_seed", seed))
    with _lock:
        _global_seed = bits
        _offsets.clear()


class _Stream:
    """The Philox stream of one op seed: each claim takes the next unused stretch."""

    __slots__ = ("op_seed",)

    def __init__(self, op_seed: int):
        self.op_seed = op_seed

    def claim(self, op: str, n: int, dtype) -> tuple[int, int]:
        """The (key, block offset) for a draw of ``n`` values; advances the stream."""
        blocks = (n * philox.words_per_element(op, dtype) + 3) // 4
        with _lock:
            key = _global_seed | (self.op_seed << 32)
            offset = _offsets.get(self.op_seed, 0)
            _offsets[self.op_seed] = offset + blocks
        return key, offset


def _draw(prim, shape, dtype, seed, device) -> Tensor:
    dtype = _dtypes.as_dtype(dtype)
    shape = shape_arg(f"random.{prim.name.removeprefix('random_')}", shape)
    op_seed = 0 if seed is None else _seed_bits(f"random.{prim.name.removeprefix('random_')}", seed)
    dev = _devices.current() if device is None else _devices.get(device)
    return bind(prim, (), shape=shape, dtype=dtype.numpy, stream=_Stream(op_seed), device=dev)


def normal(shape, mean=0.0, stddev=1.0, dtype=_dtypes.float32, seed=None, device=None) -> Tensor:
    """Samples from N(mean, stddev**2)."""
    z = _draw(T.RANDOM_NORMAL, shape, dtype, seed, device)
    if stddev != 1.0:
        z = z * stddev
    return z + mean if mean != 0.0 else z


def uniform(shape, minval=0.0, maxval=None, dtype=_dtypes.float32, seed=None, device=None) -> Tensor:
    """Samples from U[minval, maxval) (maxval defaults to 1)."""
    u = _draw(T.RANDOM_UNIFORM, shape, dtype, seed, device)
    maxval = 1.0 if maxval is None else maxval
    if (minval, maxval) != (0.0, 1.0):
        u = u * (maxval - minval) + minval
    return u
