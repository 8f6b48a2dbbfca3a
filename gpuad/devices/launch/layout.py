"""Launch code for the kernels of ``kernels/layout.cu``: the layout family
(reshape, transpose, broadcast_to, strided_slice, strided_slice_grad), concat,
gather / scatter_add and one_hot.

Every copy is planned by :func:`_copy_steps`: a view is (buffer, element offset, shape,
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

Launch plans: everything a call launches besides the buffers -- output shape and
dtype, kernel names, work items, offsets, Layouts and the other scalar arguments,
byte copies -- depends only on the op, its attributes and the operands' dtypes,
shapes and strides. Each family keeps it per such key in a bounded dict
(:data:`_PLAN_CAP` entries, emptied when full; keys and plans hold no buffers), so a
repeated op does no shape arithmetic: its host work is building the key, one dict
lookup, the allocation and the launches. Nothing here depends on the device (the
grid is sized by ``dev.launch`` from each kernel's occupancy at every launch), so
the dicts are module-level. Errors are never cached: a key whose planning raises is
planned, and raises, on every call.
"""
from __future__ import annotations

import math

import numpy as np

from . import common as L
from . import strides as S

#: Elements per thread and grid-stride step of the strided copy kernels (``kCopyUnroll``
#: in kernels/layout.cu): launches size their grid for n / COPY_UNROLL threads.
COPY_UNROLL = 8
# The tiled transpose pays off when both tile sides are reasonably filled.
_TILE = 32
_TILE_MIN = 16
_INDEX_SUFFIX = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}


# -- geometry (host metadata only) ------------------------------------------------------
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


# -- launch plans (see the module docstring) ----------------------------------------------
# A plan of the copy families (layout, concat) is (output shape, output dtype, steps);
# a step writes the new output ``out`` from the call's inputs ``xs``:
#
# - ``(kernel, work, src, head, tail)``: ``dev.launch(kernel, work, (out,) + head +
#   (xs[src],) + tail)``, or ``(out,) + head`` when src is None (layout_zero);
# - ``(None, nbytes, src, out_byte_offset, src_byte_offset)``: ``dev.copy_bytes(out,
#   out_byte_offset, xs[src], src_byte_offset, nbytes)``.
#
# Planners read buffers' dtype, shape, strides and size, never keep them. Where the
# code before plans allocated the output before a check that may raise, a planner
# asks the launcher for that allocation itself when it would fail (a negative size),
# so that the same error comes first.

_PLAN_CAP = L.PLAN_CAP  # (common.py says why plans are capped)

_layout_plans: dict = {}
_concat_plans: dict = {}
_gather_plans: dict = {}
_one_hot_plans: dict = {}
_one_hot_values: dict = {}

#: Marks a slice in a plan key: slices are unhashable before Python 3.12, so a key
#: holds ``(_SLICE, start, stop, step)`` for each (a tuple no caller can pass).
_SLICE = object()


def _cached(plans: dict, key, plan):
    return L.keep(plans, key, plan, _PLAN_CAP)  # (the cap read here: tests lower it)


def _slice_key(key: tuple) -> tuple:
    return tuple([(_SLICE, k.start, k.stop, k.step) if k.__class__ is slice else k for k in key])


def _alloc_check(dev, shape, dtype) -> None:
    """Where the code before plans allocated ``shape`` before a later check: a shape
    the launcher rejects (a negative size) raises the launcher's error first, as then."""
    for d in shape:
        if d < 0:
            dev.empty(shape, dtype)
            return


def _run(dev, op, plan, xs):
    shape, dtype, steps = plan
    out = dev.launcher.empty(shape, dtype)
    for kernel, work, src, head, tail in steps:
        if kernel is None:
            dev.copy_bytes(out, head, xs[src], tail, work, op=op)
        elif src is None:
            dev.launch(kernel, work, (out, *head), op=op)
        else:
            dev.launch(kernel, work, (out, *head, xs[src], *tail), op=op)
    return out


def _zero_step(dtype, shape):
    """The step filling a new contiguous ``shape`` output with zeros, or None if empty."""
    n = math.prod(shape)
    if not n:
        return None
    return (f"layout_zero_{L.suffix(dtype)}", n, None, (L.i64(n),), ())


def _copy_steps(out_offset, out_strides, src, dtype, x_offset, x_strides, shape) -> list:
    """The steps of ``out[view] = xs[src][view]`` elementwise over ``shape``, each view
    given by an element offset into its buffer and element strides (both ``dtype``):
    none when empty; a byte copy when both views are contiguous; a tiled transpose when
    the source is read along its second-to-last axis; else a strided copy kernel."""
    n = math.prod(shape)
    if n == 0:
        return []
    sfx = L.suffix(dtype)
    shp, (ds, ss) = S.coalesce(shape, out_strides, x_strides)
    oo, xo, nn = L.i64(out_offset), L.i64(x_offset), L.i64(n)
    if ds != S.c_strides(shp):
        return [(f"layout_copy_{sfx}_dst_strided", -(-n // COPY_UNROLL), src,
                 (oo, L.make_layout(shp, ds)), (xo, L.make_layout(shp, ss), nn))]
    if ss == ds:  # both contiguous: a byte copy (cudaMemcpyAsync on cuda)
        item = dtype.itemsize
        return [(None, n * item, src, int(out_offset) * item, int(x_offset) * item)]
    if len(shp) in (2, 3) and ss[-2] == 1 and min(shp[-2:]) >= _TILE_MIN:
        nb, ni, nj = ((1,) + shp)[-3:]
        sb = ((0,) + ss)[-3]
        tiles = nb * -(-ni // _TILE) * -(-nj // _TILE)
        return [(f"layout_transpose_{sfx}_tiled", tiles * L.BLOCK, src, (oo,),
                 (xo, L.i64(nb), L.i64(ni), L.i64(nj), L.i64(sb), L.i64(ss[-2]), L.i64(ss[-1])))]
    return [(f"layout_copy_{sfx}", -(-n // COPY_UNROLL), src, (oo,), (xo, L.make_layout(shp, ss), nn))]


def _materialize_plan(dev, x, offset, shape, strides):
    """The plan of a new contiguous buffer holding the view (offset, shape, strides) of x."""
    _alloc_check(dev, shape, x.dtype)
    return (shape, x.dtype, tuple(_copy_steps(0, S.c_strides(shape), 0, x.dtype, offset, strides, shape)))


# -- the protocol -------------------------------------------------------------------------
def layout(dev, op, x, **attrs):
    if op == "reshape":
        if L.is_contiguous(x):  # a view of a contiguous buffer is free
            return x.reshape(tuple(attrs["shape"]))
        key = (op, x.dtype, x.shape, x.strides)
        plan = _layout_plans.get(key)
        if plan is None:
            plan = _cached(_layout_plans, key, _materialize_plan(dev, x, 0, tuple(x.shape), S.element_strides(x)))
        return _run(dev, op, plan, (x,)).reshape(tuple(attrs["shape"]))
    if op == "transpose":
        arg = attrs["perm"]
    elif op == "broadcast_to":
        arg = attrs["shape"]
    elif op == "strided_slice":
        arg = attrs["key"]
    elif op == "strided_slice_grad":
        arg = (attrs["shape"], attrs["key"])
    else:
        raise KeyError(op)
    try:
        if op == "strided_slice":
            arg = tuple(arg)
            key = (op, x.dtype, x.shape, x.strides, _slice_key(arg))
        elif op == "strided_slice_grad":
            arg = (tuple(arg[0]), tuple(arg[1]))
            key = (op, x.dtype, x.shape, x.strides, arg[0], _slice_key(arg[1]))
        else:
            arg = tuple(arg)
            key = (op, x.dtype, x.shape, x.strides, arg)
        plan = _layout_plans.get(key)
    except TypeError:  # an unhashable or non-iterable attribute: the planner says what is wrong
        key = plan = None
    if plan is None:
        plan = _layout_plan(dev, op, x, arg)
        if key is not None:
            _cached(_layout_plans, key, plan)
    return _run(dev, op, plan, (x,))


def _layout_plan(dev, op, x, arg):
    if op == "transpose":
        perm = tuple(int(p) % max(len(x.shape), 1) for p in arg)
        strides = S.element_strides(x)
        return _materialize_plan(dev, x, 0, tuple(x.shape[p] for p in perm), tuple(strides[p] for p in perm))
    if op == "broadcast_to":
        shape = tuple(int(n) for n in arg)
        return _materialize_plan(dev, x, 0, shape, S.broadcast_strides(x, shape))
    if op == "strided_slice":
        offset, shape, strides = slice_geometry(x.shape, S.element_strides(x), arg)
        return _materialize_plan(dev, x, offset, shape, strides)
    # strided_slice_grad: x is the upstream gradient of full[key]
    shape, key = arg
    shape = tuple(int(n) for n in shape)
    _alloc_check(dev, shape, x.dtype)
    zero = _zero_step(x.dtype, shape)
    offset, sshape, sstrides = slice_geometry(shape, S.c_strides(shape), key)
    steps = _copy_steps(offset, sstrides, 0, x.dtype, 0, S.broadcast_strides(x, sshape), sshape)
    return (shape, x.dtype, tuple(([zero] if zero else []) + steps))


def concat(dev, op, *xs, axis):
    key = (axis,) + tuple([(x.dtype, x.shape, x.strides) for x in xs])  # (a list: faster)
    return _run(dev, op, L.planned(_concat_plans, key, lambda: _concat_plan(xs, axis),
                                   _PLAN_CAP), xs)


def _concat_plan(xs, axis):
    first = xs[0]
    ndim = len(first.shape)
    axis = int(axis) % ndim if ndim else 0
    for x in xs:
        if x.dtype != first.dtype or len(x.shape) != ndim:
            raise TypeError(f"concat: inputs of dtypes/ranks {[(str(x.dtype), len(x.shape)) for x in xs]}; "
                            f"the kernel device concatenates one dtype and rank")
    shape = list(first.shape)
    shape[axis] = sum(int(x.shape[axis]) for x in xs)
    shape = tuple(shape)
    cs = S.c_strides(shape)
    steps = []
    start = 0
    for i, x in enumerate(xs):  # one copy per input into its slab of out
        steps += _copy_steps(start * cs[axis], cs, i, x.dtype, 0, S.element_strides(x), tuple(x.shape))
        start += int(x.shape[axis])
    return (shape, first.dtype, tuple(steps))


def _index_suffix(indices, op):
    try:
        return _INDEX_SUFFIX[np.dtype(indices.dtype)]
    except KeyError:
        raise TypeError(f"{op}: the kernel device takes int32 or int64 indices, got "
                        f"{indices.dtype}; cast them first") from None


def gather(dev, op, x, indices, axis, shape=None):
    """gather (``shape`` None) or scatter_add. An index outside ``[0, x.shape[axis])`` is not
    checked (that needs a host round trip): gather reads zeros for it, scatter_add drops its
    update. With ``GPUAD_CHECK_INDICES=1`` gather checks (``KernelDevice.check_indices``)."""
    if dev.checks_indices and op == "gather":
        dev.check_indices(op, indices, x.shape[int(axis)], axis=int(axis) % len(x.shape), shape=x.shape)
    try:
        key = (op, x.dtype, x.shape, x.strides, indices.dtype, indices.shape, indices.strides, axis,
               shape if shape is None else tuple(shape))
        plan = _gather_plans.get(key)
    except TypeError:
        key = plan = None
    if plan is None:
        plan = _gather_plan(dev, op, x, indices, axis, shape if key is None else key[-1])
        if key is not None:
            _cached(_gather_plans, key, plan)
    # (output shape, dtype, zero step or None, kernel or None, work items, Layouts, tail)
    out_shape, dtype, zero, kernel, n, lx, li, tail = plan
    out = dev.launcher.empty(out_shape, dtype)
    if zero is not None:
        dev.launch(zero[0], zero[1], (out, *zero[3]), op=op)
    if kernel is not None:
        dev.launch(kernel, n, (out, x, lx, indices, li, *tail), op=op)
    return out


def _gather_plan(dev, op, x, indices, axis, shape):
    axis = int(axis)
    isfx = _index_suffix(indices, op)
    n_idx = int(indices.size)
    if op == "gather":
        axis %= len(x.shape)
        out_shape = tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1:])
        n = math.prod(out_shape)
        if not n:
            return (out_shape, x.dtype, None, None, 0, None, None, None)
        inner = math.prod(x.shape[axis + 1:])
        return (out_shape, x.dtype, None, f"gather_{L.suffix(x.dtype)}_{isfx}", n,
                S.flat_layout(x), S.flat_layout(indices),
                (L.i64(n_idx), L.i64(x.shape[axis]), L.i64(inner), L.i64(n)))
    if op == "scatter_add":  # x holds the updates; shape is the result's
        shape = tuple(int(d) for d in shape)
        axis %= len(shape)
        if x.dtype == np.bool_:
            raise TypeError("scatter_add: the kernel device adds float32, float64, int32 and int64")
        _alloc_check(dev, shape, x.dtype)
        zero = _zero_step(x.dtype, shape)
        n = int(x.size)
        if not n:
            return (shape, x.dtype, zero, None, 0, None, None, None)
        inner = math.prod(shape[axis + 1:])
        return (shape, x.dtype, zero, f"scatter_add_{L.suffix(x.dtype)}_{isfx}", n,
                S.flat_layout(x), S.flat_layout(indices),
                (L.i64(n_idx), L.i64(shape[axis]), L.i64(inner), L.i64(n)))
    raise KeyError(op)


def one_hot(dev, op, indices, depth, on_value, off_value, dtype):
    try:
        key = (indices.dtype, indices.shape, indices.strides, depth, dtype)
        plan = _one_hot_plans.get(key)
    except TypeError:
        key = plan = None
    if plan is None:
        plan = _one_hot_plan(dev, op, indices, depth, on_value, off_value, dtype)
        if key is not None:
            _cached(_one_hot_plans, key, plan)
    # (output shape, dtype, kernel or None, work items, indices' Layout, depth, n)
    shape, dtype, kernel, n, li, depth, nn = plan
    out = dev.launcher.empty(shape, dtype)
    if kernel is not None:
        dev.launch(kernel, n, (out, indices, li, depth, _one_hot_value(on_value, dtype),
                               _one_hot_value(off_value, dtype), nn), op=op)
    return out


def _one_hot_plan(dev, op, indices, depth, on_value, off_value, dtype):
    dtype = np.dtype(dtype)
    depth = int(depth)
    shape = tuple(indices.shape) + (depth,)
    _alloc_check(dev, shape, dtype)
    n = math.prod(shape)
    if not n:
        return (shape, dtype, None, 0, None, None, None)
    isfx = _index_suffix(indices, op)
    if dtype not in L.SUFFIX:  # the values were converted before the dtype was checked
        _one_hot_value(on_value, dtype), _one_hot_value(off_value, dtype)
    return (shape, dtype, f"one_hot_{L.suffix(dtype)}_{isfx}", n, S.flat_layout(indices), L.i64(depth),
            L.i64(n))


def _one_hot_value(value, dtype):
    """``value`` as the kernel argument of ``dtype`` (``np.asarray(value, dtype)``).
    Python numbers that convert exactly (so without a NumPy warning) are converted
    once per (type, value, dtype); the key tells 0.0 from -0.0."""
    cls = type(value)
    key = None
    if cls is float or cls is int or cls is bool:
        key = (cls, value, dtype) if value else (cls, value, dtype, math.copysign(1.0, value))
        v = _one_hot_values.get(key)
        if v is not None:
            return v
    v = np.asarray(value, dtype)[()]
    if key is not None and v.item() == value:  # (item: a Python comparison, which never warns)
        _cached(_one_hot_values, key, v)
    return v
