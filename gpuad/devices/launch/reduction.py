"""Launch code for the kernels of ``kernels/reduction.cu``: ``reduce`` (reduce_sum,
reduce_max, reduce_min, reduce_prod, reduce_logsumexp over any set of axes; the kernels
are ``<op>_<dtype>...``) and ``arg_reduce`` (argmax, argmin over one axis).

Nothing is transposed or copied: the input is read as (kept axes, reduced axes) through
two Layouts, the kept one row-major over the output and the reduced one in whatever order
reads memory best (negative strides flipped, axes sorted by stride, adjacent axes merged;
order does not matter to a reduction). A *plan* picks how many threads reduce one output
element (1, a power of two up to a warp, or a whole block) and, for a few very long rows,
splits each row over several blocks: a ``_partial`` launch writes per-chunk accumulator
states and a ``_combine`` launch reduces them. When the reduced elements are one axis
(after merging), a fast kernel reads them (:func:`read_path`): ``_contig`` with 16-byte
vector loads for stride 1, ``_strided`` with unrolled loads otherwise; both also write
the partial states of a split plan.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import common as L
from . import strides as S
from ..nvrtc import CudaUnavailableError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_NUMERIC = _FLOATS + (np.dtype(np.int32), np.dtype(np.int64))
_REDUCE_DTYPES = {"reduce_sum": _NUMERIC, "reduce_max": _NUMERIC, "reduce_min": _NUMERIC,
                  "reduce_prod": _NUMERIC, "reduce_logsumexp": _FLOATS}
_ARG_OPS = ("argmax", "argmin")

#: Bytes per accumulator state in a partial buffer (kernels static_assert they fit).
_STATE_BYTES = 16
#: Rows at least this long are split over several blocks when the outputs are too few
#: to fill the device ...
SPLIT_MIN_ROW = 16384
#: ... into chunks of at least this many elements.
SPLIT_MIN_CHUNK = 4096
#: A column reduction (one thread per output) splits its rows into chunks of at least
#: this many elements when the outputs alone are too few threads.
COLUMN_MIN_CHUNK = 64
#: A whole block (rather than a warp) reduces one row when rows are at least this long
#: and warps per row would leave the device idle.
BLOCK_MIN_ROW = 2048


class Plan(NamedTuple):
    group: int   # threads per unit: 1, 2, 4, ..., 32, or L.BLOCK
    split: int   # units per output (> 1: a _partial launch, then a _combine launch)


#: Tests set this to a function ``(n_out, n_red, plan) -> Plan`` to force every strategy.
_override = None


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def plan(dev, n_out: int, n_red: int, columns: bool, may_split: bool = True,
         capacity: int | None = None) -> Plan:
    """How to reduce ``n_out`` outputs of ``n_red`` elements each. ``columns``: adjacent
    outputs are adjacent in memory while the elements of one output are not, so one
    thread per output (adjacent threads, adjacent outputs) reads coalesced. ``capacity``:
    blocks of the kernel the device runs at once (its occupancy; default
    ``dev.max_blocks``)."""
    if capacity is None:
        capacity = dev.max_blocks

    threads = capacity * L.BLOCK // 2     # enough threads in flight to fill it
    warps = capacity * (L.BLOCK // 32)
    split = 1
    if columns and n_out >= 32:
        if may_split and n_out < threads and n_red >= 2 * COLUMN_MIN_CHUNK:
            split = min(-(-threads // n_out), n_red // COLUMN_MIN_CHUNK)
        p = Plan(1, split)
    else:
        if may_split and n_red >= SPLIT_MIN_ROW and n_out < capacity // 2:
            split = max(1, min(capacity // max(n_out, 1), n_red // SPLIT_MIN_CHUNK))
        row = -(-n_red // split)
        if row <= 1:
            group = 1
        elif row >= BLOCK_MIN_ROW and n_out * split < warps:
            group = L.BLOCK
        else:
            group = min(32, _pow2_at_least(row))
        p = Plan(group, split)
    if _override is not None:
        p = _override(n_out, n_red, p)
    return p if may_split else Plan(p.group, 1)


def _layout(dims):
    return L.make_layout([n for n, _ in dims], [s for _, s in dims])


def _blocks(dev, kernel: str, group: int, n_units: int) -> int:
    """Blocks to launch for n_units groups of ``group`` threads: enough to cover them,
    at most as many as the device runs at once (the kernel's occupancy); blocks
    loop over the units grid-stride beyond that."""
    per_block = 1 if group >= L.BLOCK else L.BLOCK // group
    return max(1, min(dev.max_blocks_for(kernel), -(-n_units // per_block)))


def read_path(red_dims) -> str:
    """The kernel variant that reads the reduced elements: ``_contig`` when they are one
    axis of stride 1 (16-byte vector loads; the kernel finds the aligned part itself),
    ``_strided`` when they are one axis of another stride (unrolled scalar loads), else
    ``""``, the general Layout path."""
    if len(red_dims) != 1:
        return ""
    return "_contig" if red_dims[0][1] == 1 else "_strided"


# -- launch plans ------------------------------------------------------------------------------
# Everything a reduction launches besides the buffers depends only on the op, the input's
# dtype, shape and strides, the axes and the device (its occupancy). ``reduce`` and
# ``arg_reduce`` keep it per such key in a bounded dict on the device, so a repeated
# reduction does no shape arithmetic. A plan: (output shape, output dtype, partial
# buffer shape or None, launches), each launch (kernel, work items, source, destination,
# the remaining arguments, blocks), with source and destination indices into
# (x, out, partial).
_X, _OUT, _PARTIAL = 0, 1, 2
_PLAN_CAP = L.PLAN_CAP


def _plans(dev) -> dict:
    plans = dev.__dict__.get("_reduction_plans")
    if plans is None or len(plans) >= _PLAN_CAP:
        plans = dev._reduction_plans = {}
    return plans


def _execute(dev, op, plan, x):
    out_shape, out_dtype, partial_shape, launches = plan
    out = dev.empty(out_shape, out_dtype)
    bufs = (x, out, dev.empty(partial_shape, np.int64) if partial_shape else None)
    for kernel, n, src, dst, tail, blocks in launches:
        dev.launch(kernel, n, (bufs[src], bufs[dst]) + tail, blocks=blocks, op=op)
    return out


def _launches(dev, op, kernel, kept_dims, red_dims, base, n_out, n_red, columns):
    """``(partial shape or None, launches)`` of a reduction (see above)."""
    fast = read_path(red_dims)
    try:  # (on cuda this loads, perhaps compiles, the family: name the kernel and op on failure)
        capacity = dev.max_blocks_for(kernel + fast)
    except CudaUnavailableError:
        raise
    except RuntimeError as e:
        raise dev._launch_error(kernel + fast, e, op) from e
    p = plan(dev, n_out, n_red, columns, capacity=capacity)
    kept, red = _layout(kept_dims), _layout(red_dims)
    if p.split == 1:
        tail = (kept, red, L.i64(base), L.i64(n_out), L.i64(n_red)) + (
            (L.i64(p.split),) if fast else ()) + (np.int32(p.group),)
        return None, ((kernel + fast, n_out, _X, _OUT, tail, _blocks(dev, kernel + fast, p.group, n_out)),)
    units = n_out * p.split
    first = kernel + (fast or "_partial")
    partial = (first, units, _X, _PARTIAL,
               (kept, red, L.i64(base), L.i64(n_out), L.i64(n_red), L.i64(p.split), np.int32(p.group)),
               _blocks(dev, first, p.group, units))
    # the states, (split, n_out) row-major: reduce each column of `split` states
    q = plan(dev, n_out, p.split, n_out > 1, may_split=False)
    combine = (kernel + "_combine", n_out, _PARTIAL, _OUT,
               (_layout([(n_out, 1)]), _layout([(p.split, n_out)]), L.i64(0), L.i64(n_out),
                L.i64(p.split), np.int32(q.group)),
               _blocks(dev, kernel + "_combine", q.group, n_out))
    return (units, _STATE_BYTES // 8), (partial, combine)


def _check(op, x, dtypes, family):
    if np.dtype(x.dtype) not in dtypes:
        raise TypeError(f"no {family} kernel {op} for dtype {np.dtype(x.dtype)}; it supports "
                        f"{', '.join(str(d) for d in dtypes)}")


def reduce(dev, op, x, axes, keepdims):
    key = ("reduce", op, x.dtype, x.shape, x.strides, tuple(axes), keepdims)
    plans = _plans(dev)
    p = plans.get(key) if _override is None else None
    if p is None:
        p = _reduce_plan(dev, op, x, axes, keepdims)
        if _override is None:  # (forced strategies are for tests: never kept)
            plans[key] = p
    return _execute(dev, op, p, x)


def _reduce_plan(dev, op, x, axes, keepdims):
    if op not in _REDUCE_DTYPES:
        raise KeyError(op)
    _check(op, x, _REDUCE_DTYPES[op], "reduce")
    shape, strides = tuple(x.shape), S.element_strides(x)
    ndim = len(shape)
    axes = tuple(sorted({int(a) % ndim for a in axes})) if ndim else ()
    reduced = set(axes)
    kept_axes = [a for a in range(ndim) if a not in reduced]
    out_shape = (tuple(1 if a in reduced else shape[a] for a in range(ndim)) if keepdims
                 else tuple(shape[a] for a in kept_axes))
    n_out = math.prod(shape[a] for a in kept_axes)
    n_red = math.prod(shape[a] for a in axes)
    if n_out == 0:
        return out_shape, x.dtype, None, ()
    kept_dims = S.merged([(shape[a], strides[a]) for a in kept_axes])
    base = 0
    red_dims = []
    if n_red == 0:
        red_dims = [(0, 0)]
    else:
        for a in axes:
            n, s = shape[a], strides[a]
            if s < 0:  # order is free along reduced axes: read them forwards
                base += (n - 1) * s
                s = -s
            red_dims.append((n, s))
        red_dims.sort(key=lambda d: -d[1])
        red_dims = S.merged(red_dims)
    columns = bool(kept_dims) and abs(kept_dims[-1][1]) == 1 and not (red_dims and red_dims[-1][1] == 1)
    partial, launches = _launches(dev, op, f"{op}_{L.suffix(x.dtype)}", kept_dims, red_dims, base,
                                  n_out, n_red, columns)
    return out_shape, x.dtype, partial, launches


def arg_reduce(dev, op, x, axis):
    key = ("arg_reduce", op, x.dtype, x.shape, x.strides, axis)
    plans = _plans(dev)
    p = plans.get(key) if _override is None else None
    if p is None:
        p = _arg_reduce_plan(dev, op, x, axis)
        if _override is None:
            plans[key] = p
    return _execute(dev, op, p, x)


def _arg_reduce_plan(dev, op, x, axis):
    if op not in _ARG_OPS:
        raise KeyError(op)
    _check(op, x, _NUMERIC, "arg_reduce")
    shape, strides = tuple(x.shape), S.element_strides(x)
    ndim = len(shape)
    if ndim == 0:
        raise ValueError(f"{op} needs an array of rank >= 1")
    axis = int(axis) % ndim
    if shape[axis] == 0:
        raise ValueError(f"attempt to get {op} of an empty sequence")
    kept_axes = [a for a in range(ndim) if a != axis]
    out_shape = tuple(shape[a] for a in kept_axes)
    n_out = math.prod(out_shape)
    if n_out == 0:
        return out_shape, np.dtype(np.int64), None, ()
    kept_dims = S.merged([(shape[a], strides[a]) for a in kept_axes])
    # the index is the position along the axis: keep its direction (first occurrence wins)
    red_dims = [(shape[axis], strides[axis])]
    columns = bool(kept_dims) and abs(kept_dims[-1][1]) == 1 and strides[axis] != 1
    partial, launches = _launches(dev, op, f"arg_reduce_{op}_{L.suffix(x.dtype)}", kept_dims, red_dims, 0,
                                  n_out, shape[axis], columns)
    return out_shape, np.dtype(np.int64), partial, launches
