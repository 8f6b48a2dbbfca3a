"""Launch code for the kernels of ``kernels/layout.cu``: the layout family
(reshape, transpose, broadcast_to, strided_slice, strided_slice_grad), concat,
gather / scatter_add and one_hot.

Every copy goes through :func:`copy`: a view is (buffer, element offset, shape,
element strides), axes are coalesced first (size-1 axes dropped, axes that are
contiguous in both source and destination merged), then the cheapest way
runs: a byte copy (``dev.copy_bytes``: ``cudaMemcpyAsync`` on cuda) when both
views are contiguous, a tiled shared-memory transpose when the source is read
along its second-to-last axis, or a general strided copy kernel.

Unlike the cpu device (NumPy views), every result here except a reshape of a
contiguous buffer is a new contiguous buffer.

gather: an index outside ``[0, x.shape[axis])`` raises on the cpu device; here
the kernel writes 0 for it (and scatter_add skips it): checking would cost a
device-to-host round trip per call.
"""
from __future__ import annotations

import numpy as np

from . import launch as L

FAMILIES = ("layout", "concat", "gather", "one_hot")

#: Elements per thread and grid-stride step of the strided copy kernels (``kCopyUnroll``
#: in kernels/layout.cu): launches size their grid for n / COPY_UNROLL threads.
COPY_UNROLL = 8
# The tiled transpose pays off when both tile sides are reasonably filled.
_TILE = 32
_TILE_MIN = 16
_INDEX_SUFFIX = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}


# -- geometry (host metadata only) ------------------------------------------------------
def c_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    out, s = [], 1
    for n in reversed(tuple(shape)):
        out.append(s)
        s *= int(n)
    return tuple(reversed(out))


def coalesce(shape, *strides):
    """``(shape, [strides, ...])`` with size-1 axes dropped and neighbouring axes
    merged where they are contiguous in every operand. The row-major linear
    index -> element offset map of every operand is unchanged."""
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


def broadcast_strides(buf, shape) -> tuple:
    """Element strides of ``buf`` read as broadcast to ``shape`` (NumPy rules)."""
    shape = tuple(shape)
    own, strides = tuple(buf.shape), L.element_strides(buf)
    lead = len(shape) - len(own)
    if lead < 0:
        raise ValueError(f"cannot broadcast a buffer of shape {own} to {shape}")
    out = [0] * lead
    for d, (n, s) in enumerate(zip(own, strides)):
        if n == shape[lead + d]:
            out.append(s)
        elif n == 1:
            out.append(0)
        else:
            raise ValueError(f"cannot broadcast a buffer of shape {own} to {shape}")
    return tuple(out)


def flat_layout(buf) -> np.void:
    """The Layout of ``buf`` over its own shape, coalesced (same linear-index map)."""
    shape, (strides,) = coalesce(buf.shape, L.element_strides(buf))
    return L.make_layout(shape, strides)


def slice_geometry(shape, strides, key):
    """``(offset, shape, strides)`` of ``x[key]`` for a basic key (see
    ``gpuad.ops.array.canonical_key``: per axis an int or a slice, plus None
    entries that insert axes), in elements of ``x``'s buffer."""
    offset, dim = 0, 0
    out_shape: list[int] = []
    out_strides: list[int] = []
    for k in key:
        if k is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        n, s = int(shape[dim]), int(strides[dim])
        if isinstance(k, slice):
            if k.start is None or k.step is None:  # not canonical: Python's rules
                start, stop, step = k.indices(n)
            else:  # canonical: explicit start; a None stop on a backward slice runs past 0
                start, step = int(k.start), int(k.step)
                stop = int(k.stop) if k.stop is not None else (-1 if step < 0 else n)
            length = len(range(start, stop, step))
            if length:
                offset += start * s
            out_shape.append(length)
            out_strides.append(step * s)
        else:
            offset += (int(k) % n) * s
        dim += 1
    for d in range(dim, len(shape)):
        out_shape.append(int(shape[d]))
        out_strides.append(int(strides[d]))
    return offset, tuple(out_shape), tuple(out_strides)


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# -- kernels ------------------------------------------------------------------------------
def zero(dev, out) -> None:
    """Fill the contiguous buffer ``out`` with zeros."""
    if out.size:
        dev.launch(f"layout_zero_{L.suffix(out.dtype)}", out.size, (out, L.i64(out.size)))


def copy(dev, out, out_offset, out_strides, x, x_offset, x_strides, shape) -> None:
    """``out[view] = x[view]`` elementwise over ``shape``, each view given by an
    element offset into its buffer and element strides."""
    n = _size(shape)
    if n == 0:
        return
    if out.dtype != x.dtype:
        raise TypeError(f"copy between {x.dtype} and {out.dtype}")
    sfx = L.suffix(x.dtype)
    shp, (ds, ss) = coalesce(shape, out_strides, x_strides)
    oo, xo, nn = L.i64(out_offset), L.i64(x_offset), L.i64(n)
    if ds != c_strides(shp):
        dev.launch(f"layout_copy_{sfx}_dst_strided", -(-n // COPY_UNROLL),
                   (out, oo, L.make_layout(shp, ds), x, xo, L.make_layout(shp, ss), nn))
    elif ss == ds:  # both contiguous: a byte copy (cudaMemcpyAsync on cuda)
        item = x.dtype.itemsize
        dev.copy_bytes(out, int(out_offset) * item, x, int(x_offset) * item, n * item)
    elif len(shp) in (2, 3) and ss[-2] == 1 and min(shp[-2:]) >= _TILE_MIN:
        nb, ni, nj = ((1,) + shp)[-3:]
        sb = ((0,) + ss)[-3]
        tiles = nb * -(-ni // _TILE) * -(-nj // _TILE)
        dev.launch(f"layout_transpose_{sfx}_tiled", tiles * L.BLOCK,
                   (out, oo, x, xo, L.i64(nb), L.i64(ni), L.i64(nj), L.i64(sb), L.i64(ss[-2]), L.i64(ss[-1])))
    else:
        dev.launch(f"layout_copy_{sfx}", -(-n // COPY_UNROLL), (out, oo, x, xo, L.make_layout(shp, ss), nn))


def materialize(dev, x, offset, shape, strides):
    """A new contiguous buffer holding the view (offset, shape, strides) of ``x``."""
    out = dev.empty(shape, x.dtype)
    copy(dev, out, 0, c_strides(shape), x, offset, strides, shape)
    return out


def contiguous(dev, x):
    """``x`` itself if C-contiguous, else a contiguous copy made by a kernel."""
    if L.is_contiguous(x):
        return x
    return materialize(dev, x, 0, tuple(x.shape), L.element_strides(x))


# -- the protocol -------------------------------------------------------------------------
def layout(dev, op, x, **attrs):
    if op == "reshape":  # a view of a contiguous buffer is free
        return contiguous(dev, x).reshape(tuple(attrs["shape"]))
    if op == "transpose":
        perm = tuple(int(p) % max(len(x.shape), 1) for p in attrs["perm"])
        strides = L.element_strides(x)
        return materialize(dev, x, 0, tuple(x.shape[p] for p in perm), tuple(strides[p] for p in perm))
    if op == "broadcast_to":
        shape = tuple(int(n) for n in attrs["shape"])
        return materialize(dev, x, 0, shape, broadcast_strides(x, shape))
    if op == "strided_slice":
        offset, shape, strides = slice_geometry(x.shape, L.element_strides(x), attrs["key"])
        return materialize(dev, x, offset, shape, strides)
    if op == "strided_slice_grad":  # x is the upstream gradient of full[key]
        shape = tuple(int(n) for n in attrs["shape"])
        out = dev.empty(shape, x.dtype)
        zero(dev, out)
        offset, sshape, sstrides = slice_geometry(shape, c_strides(shape), attrs["key"])
        copy(dev, out, offset, sstrides, x, 0, broadcast_strides(x, sshape), sshape)
        return out
    raise KeyError(op)


def concat(dev, op, *xs, axis):
    first = xs[0]
    ndim = len(first.shape)
    axis = int(axis) % ndim if ndim else 0
    for x in xs:
        if x.dtype != first.dtype or len(x.shape) != ndim:
            raise TypeError(f"concat: inputs of dtypes/ranks {[(str(x.dtype), len(x.shape)) for x in xs]}; "
                            f"the kernel device concatenates one dtype and rank")
    shape = list(first.shape)
    shape[axis] = sum(int(x.shape[axis]) for x in xs)
    out = dev.empty(tuple(shape), first.dtype)
    cs = c_strides(shape)
    start = 0
    for x in xs:  # one strided copy per input into its slab of out
        copy(dev, out, start * cs[axis], cs, x, 0, L.element_strides(x), tuple(x.shape))
        start += int(x.shape[axis])
    return out


def _index_suffix(indices, op):
    try:
        return _INDEX_SUFFIX[np.dtype(indices.dtype)]
    except KeyError:
        raise TypeError(f"{op}: the kernel device takes int32 or int64 indices, got "
                        f"{indices.dtype}; cast them first") from None


def gather(dev, op, x, indices, axis, shape=None):
    axis = int(axis)
    isfx = _index_suffix(indices, op)
    n_idx = int(indices.size)
    if op == "gather":
        axis %= len(x.shape)
        out_shape = tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1:])
        out = dev.empty(out_shape, x.dtype)
        n = out.size
        if n:
            inner = _size(x.shape[axis + 1:])
            dev.launch(f"gather_{L.suffix(x.dtype)}_{isfx}", n,
                       (out, x, flat_layout(x), indices, flat_layout(indices), L.i64(n_idx),
                        L.i64(x.shape[axis]), L.i64(inner), L.i64(n)))
        return out
    if op == "scatter_add":  # x holds the updates; shape is the result's
        shape = tuple(int(d) for d in shape)
        axis %= len(shape)
        if x.dtype == np.bool_:
            raise TypeError("scatter_add: the kernel device adds float32, float64, int32 and int64")
        out = dev.empty(shape, x.dtype)
        zero(dev, out)
        n = int(x.size)
        if n:
            inner = _size(shape[axis + 1:])
            dev.launch(f"scatter_add_{L.suffix(x.dtype)}_{isfx}", n,
                       (out, x, flat_layout(x), indices, flat_layout(indices), L.i64(n_idx),
                        L.i64(shape[axis]), L.i64(inner), L.i64(n)))
        return out
    raise KeyError(op)


def one_hot(dev, op, indices, depth, on_value, off_value, dtype):
    dtype = np.dtype(dtype)
    depth = int(depth)
    out = dev.empty(tuple(indices.shape) + (depth,), dtype)
    n = out.size
    if n:
        isfx = _index_suffix(indices, op)
        on, off = np.asarray(on_value, dtype)[()], np.asarray(off_value, dtype)[()]
        dev.launch(f"one_hot_{L.suffix(dtype)}_{isfx}", n,
                   (out, indices, flat_layout(indices), L.i64(depth), on, off, L.i64(n)))
    return out
