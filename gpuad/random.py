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
from .errors import InvalidArgumentError
from .tensor import Tensor

__all__ = ["set_seed", "normal", "uniform"]

_lock = threading.Lock()
_global_seed = int.from_bytes(os.urandom(4), "little")
_offsets: dict[int, int] = {}  # per op seed: the next unused Philox block


def set_seed(seed: int) -> None:
    """Make every later draw reproducible (as ``tf.random.set_seed``)."""
    global _global_seed
    with _lock:
        _global_seed = int(seed) & 0xFFFFFFFF
        _offsets.clear()


def _claim(op: str, n: int, dtype, seed) -> tuple[int, int]:
    """The (key, block offset) for a draw of ``n`` values, and advance the stream."""
    op_seed = 0 if seed is None else int(seed) & 0xFFFFFFFF
    blocks = (n * philox.words_per_element("random_" + op, dtype) + 3) // 4
    with _lock:
        key = _global_seed | (op_seed << 32)
        offset = _offsets.get(op_seed, 0)
        _offsets[op_seed] = offset + blocks
    return key, offset


def _draw(op, shape, dtype, seed, device) -> Tensor:
    dtype = _dtypes.as_dtype(dtype)
    if not dtype.is_floating:
        raise InvalidArgumentError(f"random.{op} makes float tensors; got dtype {dtype.name}.", op)
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
    n = 1
    for d in shape:
        n *= d
    key, offset = _claim(op, n, dtype.numpy, seed)
    dev = _devices.current() if device is None else _devices.get(device)
    return Tensor(dev.random("random_" + op, shape, dtype.numpy, key, offset), dev)


def normal(shape, mean=0.0, stddev=1.0, dtype=_dtypes.float32, seed=None, device=None) -> Tensor:
    """Samples from N(mean, stddev**2)."""
    z = _draw("normal", shape, dtype, seed, device)
    if stddev != 1.0:
        z = z * stddev
    return z + mean if mean != 0.0 else z


def uniform(shape, minval=0.0, maxval=None, dtype=_dtypes.float32, seed=None, device=None) -> Tensor:
    """Samples from U[minval, maxval) (maxval defaults to 1)."""
    u = _draw("uniform", shape, dtype, seed, device)
    maxval = 1.0 if maxval is None else maxval
    if (minval, maxval) != (0.0, 1.0):
        u = u * (maxval - minval) + minval
    return u
