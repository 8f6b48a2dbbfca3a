"""Shapes and strides: the one place where the launch layer broadcasts operands,
merges axes and builds the ``Layout`` arguments of kernels from them. Every
family plans with these (elementwise, layout, reduction, nn).

Strides are in elements (a buffer's byte strides divided by its item size), may
be negative, and are 0 along a broadcast axis. *Coalescing* drops size-1 axes
and merges neighbouring axes that are contiguous in every operand, which keeps
the row-major linear index -> element offset map of every operand and leaves
most broadcasts at rank 1 or 2 (fewer divisions per element in the kernels).
"""
from __future__ import annotations

import functools

import numpy as np

from . import common as L

__all__ = ["element_strides", "c_strides", "broadcast_shape", "broadcast", "broadcast_strides",
           "coalesce", "merged", "layouts", "flat_layout"]


def element_strides(buf) -> tuple:
    """``buf``'s strides in elements."""
    item = buf.dtype.itemsize
    return tuple(s // item for s in buf.strides)


def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    out, s = [], 1
    for n in reversed(tuple(shape)):
        out.append(s)
        s *= int(n)
    return tuple(reversed(out))


def broadcast_shape(what: str, *shapes) -> tuple:
    """The shape ``shapes`` broadcast to (NumPy rules); a ValueError naming ``what``
    (e.g. ``"binary add"``) and the shapes if they do not broadcast."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{what}: shapes {' and '.join(map(str, shapes))} do not broadcast "
                         f"(NumPy rules)") from None


def broadcast(shape, strides, out_shape) -> tuple:
    """The strides of an operand of ``shape`` and ``strides`` read as broadcast to
    ``out_shape``: leading axes added and stretched size-1 axes get stride 0. A
    ValueError if ``shape`` does not broadcast to ``out_shape``."""
    shape, out_shape = tuple(shape), tuple(out_shape)
    lead = len(out_shape) - len(shape)
    if lead < 0:
        raise ValueError(f"cannot broadcast a buffer of shape {shape} to {out_shape}")
    out = [0] * lead
    for d, (n, s) in enumerate(zip(shape, strides)):
        if n == out_shape[lead + d]:
            out.append(s)
        elif n == 1:
            out.append(0)
        else:
            raise ValueError(f"cannot broadcast a buffer of shape {shape} to {out_shape}")
    return tuple(out)


def broadcast_strides(buf, out_shape) -> tuple:
    """The element strides of buffer ``buf`` read as broadcast to ``out_shape``."""
    return broadcast(buf.shape, element_strides(buf), out_shape)


def coalesce(shape, *strides):
    """``(shape, [strides, ...])`` with size-1 axes dropped and neighbouring axes
    merged where they are contiguous in every operand (one strides tuple per
    operand, all over ``shape``). The row-major linear index -> element offset map
    of every operand is unchanged."""
    out_shape: list[int] = []
    out_strides: list[list[int]] = [[] for _ in strides]
    for d, n in enumerate(shape):
        n = int(n)
        if n == 1:
            continue
        ss = [int(s[d]) for s in strides]
        if out_shape and all(prev[-1] == s * n for prev, s in zip(out_strides, ss)):
            out_shape[-1] *= n
            for prev, s in zip(out_strides, ss):
                prev[-1] = s
        else:
            out_shape.append(n)
            for prev, s in zip(out_strides, ss):
                prev.append(s)
    return tuple(out_shape), [tuple(s) for s in out_strides]


def merged(dims) -> list:
    """:func:`coalesce` of one operand given as ``(size, stride)`` pairs, as pairs."""
    shape, (strides,) = coalesce([n for n, _ in dims], [s for _, s in dims])
    return list(zip(shape, strides))


@functools.lru_cache(maxsize=4096)
def _layouts(out_shape: tuple, operands: tuple) -> tuple:
    shape, strides = coalesce(out_shape, *(broadcast(s, st, out_shape) for s, st in operands))
    return tuple(L.make_layout(shape, s) for s in strides)


def layouts(out_shape, *bufs) -> tuple:
    """One ``Layout`` per buffer in ``bufs``, each read as broadcast to ``out_shape``,
    all over the same coalesced shape, so one index decomposition addresses every
    operand. Cached per (shape, operand shapes and strides): Layouts are read-only
    and shared."""
    return _layouts(tuple(out_shape), tuple((tuple(b.shape), element_strides(b)) for b in bufs))


def flat_layout(buf):
    """The Layout of ``buf`` over its own shape, coalesced (same linear-index map)."""
    shape, (strides,) = coalesce(buf.shape, element_strides(buf))
    return L.make_layout(shape, strides)
