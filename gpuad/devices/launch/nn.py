"""Launch code for ``kernels/nn.cu`` (the ``softmax`` family: softmax, log_softmax;
``softmax_xent``: softmax_cross_entropy; and the fused backward of the latter) and
``kernels/random.cu`` (the ``random`` family: Philox-4x32-10 random_uniform and
random_normal samples, the same numbers as ``gpuad/devices/philox.py``). Kernels
are named ``<op>_<dtype>[_<schedule>]``: ``softmax_cross_entropy_f32_warp``.

Softmax-like kernels see each operand as rows x len along ``axis`` (any axis,
any strides). A launch picks one of three schedules (see kernels/nn.cu):
``col`` (one thread per row) when there are enough rows to fill the GPU that
way and the axis is not the innermost one (neighbouring threads then read
neighbouring memory) or the rows are very short; else ``warp`` (one warp per
row) for rows up to ``_WARP_MAX_LEN`` and ``block`` (one block per row) beyond.

:func:`softmax_xent_bwd` is the fused backward kernel
``g[..., None] * (softmax(logits) - labels)``; the protocol does not call it yet.

softmax and softmax_xent keep their launch plan (kernel, work items, row Layouts,
scalar arguments) per (op, dtypes, shapes, strides, axis, schedule) in a bounded
dict, as the element-wise families do: a repeated call does no row geometry.
"""
from __future__ import annotations

import math

import numpy as np

from .. import philox
from . import common as L
from .strides import broadcast_strides, c_strides, coalesce, element_strides

SCHEDULES = ("warp", "block", "col")
_WARP_MAX_LEN = 2048
_COL_MIN_ROWS = 256
_COL_MAX_LEN = 8  # short contiguous rows: a thread per row beats a mostly idle warp
_MASK64 = (1 << 64) - 1


def _float_suffix(dtype, what):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{what}: the kernel device supports float32 and float64, got {dtype}")
    return L.suffix(dtype)


def _rows(shape, axis, *strides):
    """Split ``shape`` at ``axis``: (rows shape, [rows strides per operand] coalesced,
    [axis stride per operand], len)."""
    rows_shape = tuple(n for d, n in enumerate(shape) if d != axis)
    rows = [tuple(s for d, s in enumerate(st) if d != axis) for st in strides]
    axis_strides = [int(st[axis]) for st in strides]
    rshape, rstrides = coalesce(rows_shape, *rows)
    return rshape, rstrides, axis_strides, int(shape[axis])


def _schedule(len_, nrows, x_axis_stride, schedule):
    if schedule is not None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        return schedule
    if nrows >= _COL_MIN_ROWS and len_ > 1 and (x_axis_stride != 1 or len_ <= _COL_MAX_LEN):
        return "col"
    return "warp" if len_ <= _WARP_MAX_LEN else "block"


def _rows_kernel(name, schedule, nrows):
    """(kernel, work items) of a row kernel ``name`` under ``schedule``."""
    if schedule == "warp":
        return f"{name}_warp", nrows * 32
    if schedule == "block":
        return f"{name}_block", nrows * L.BLOCK
    return f"{name}_col", nrows


def _launch_rows(dev, name, schedule, nrows, args):
    kernel, work = _rows_kernel(name, schedule, nrows)
    dev.launch(kernel, work, args)


#: Launch plans of softmax and softmax_xent, keyed by dtypes, shapes, strides, axis
#: and schedule only (no buffers); emptied when full.
_PLAN_CAP = L.PLAN_CAP
_plans: dict = {}


def _plan(key, make, *args):
    """The cached plan of ``key``, else ``make(*args)`` (kept unless the key is
    unhashable; errors are never kept)."""
    try:
        plan = _plans.get(key)
    except TypeError:  # an unhashable axis or schedule: the planner says what is wrong
        return make(*args)
    if plan is None:
        plan = L.keep(_plans, key, make(*args), _PLAN_CAP)
    return plan


def _axis(axis, ndim):
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"axis {axis} is out of range for rank {ndim}")
    return int(axis) % ndim


def softmax(dev, op, x, axis):
    return _softmax(dev, op, x, axis)


def softmax_xent(dev, op, labels, logits, axis):
    return _softmax_xent(dev, op, labels, logits, axis)


def _softmax(dev, op, x, axis, schedule=None):
    dt = x.dtype
    shape, kernel, work, lo, oa, lx, xa, nrows, len_ = _plan(
        (op, dt, x.shape, x.strides, axis, schedule), _softmax_plan, op, x, axis, schedule)
    out = dev.launcher.empty(shape, dt)  # (shape a tuple, dt a NumPy dtype: what dev.empty makes)
    if kernel is not None:
        dev.launch(kernel, work, (out, lo, oa, x, lx, xa, nrows, len_), op=op)
    return out


def _softmax_plan(op, x, axis, schedule):
    """``(out shape, kernel, work, *the kernel's arguments but out and x)``."""
    if op not in ("softmax", "log_softmax"):
        raise KeyError(op)
    sfx = _float_suffix(x.dtype, op)
    axis = _axis(axis, len(x.shape))
    shape = tuple(x.shape)
    size = math.prod(shape)
    if size == 0:
        return shape, None, 0, None, None, None, None, None, None
    rshape, (xr, orr), (xa, oa), len_ = _rows(shape, axis, element_strides(x), c_strides(shape))
    nrows = size // len_
    kernel, work = _rows_kernel(f"{op}_{sfx}", _schedule(len_, nrows, xa, schedule), nrows)
    return (shape, kernel, work, L.make_layout(rshape, orr), L.i64(oa), L.make_layout(rshape, xr),
            L.i64(xa), L.i64(nrows), L.i64(len_))


def _softmax_xent(dev, op, labels, logits, axis, schedule=None):
    dt = logits.dtype
    shape, kernel, work, ly, ya, lx, xa, nrows, len_ = _plan(
        (op, labels.dtype, dt, labels.shape, labels.strides, logits.shape, logits.strides, axis, schedule),
        _softmax_xent_plan, op, labels, logits, axis, schedule)
    out = dev.launcher.empty(shape, dt)
    if kernel is not None:
        dev.launch(kernel, work, (out, labels, ly, ya, logits, lx, xa, nrows, len_), op=op)
    return out


def _softmax_xent_plan(op, labels, logits, axis, schedule):
    """``(out shape, kernel, work, *the kernel's arguments but out, labels and logits)``."""
    if op != "softmax_cross_entropy":
        raise KeyError(op)
    sfx = _float_suffix(logits.dtype, op)
    if labels.dtype != logits.dtype:
        raise TypeError(f"{op}: labels ({labels.dtype}) and logits ({logits.dtype}) differ in dtype")
    axis = _axis(axis, len(logits.shape))
    shape = tuple(logits.shape)
    out_shape = shape[:axis] + shape[axis + 1:]
    nrows = math.prod(out_shape)
    if nrows == 0:
        return out_shape, None, 0, None, None, None, None, None, None
    rshape, (yr, xr), (ya, xa), len_ = _rows(shape, axis, broadcast_strides(labels, shape),
                                             element_strides(logits))
    kernel, work = _rows_kernel(f"{op}_{sfx}", _schedule(len_, nrows, xa, schedule), nrows)
    return (out_shape, kernel, work, L.make_layout(rshape, yr), L.i64(ya), L.make_layout(rshape, xr),
            L.i64(xa), L.i64(nrows), L.i64(len_))


def softmax_xent_bwd(dev, g, labels, logits, axis, schedule=None):
    """``g[..., None] * (softmax(logits) - labels)`` along ``axis`` (g has the
    loss's shape: logits' without ``axis``), in one kernel."""
    sfx = _float_suffix(logits.dtype, "softmax_xent_bwd")
    if not labels.dtype == logits.dtype == g.dtype:
        raise TypeError(f"softmax_xent_bwd: g ({g.dtype}), labels ({labels.dtype}) and logits "
                        f"({logits.dtype}) must share one dtype")
    axis = _axis(axis, len(logits.shape))
    shape = tuple(logits.shape)
    out = dev.empty(shape, logits.dtype)
    if out.size == 0:
        return out
    g_strides = broadcast_strides(g, shape[:axis] + shape[axis + 1:])
    g_strides = g_strides[:axis] + (0,) + g_strides[axis:]  # any stride: the axis is split off
    rshape, (orr, gr, yr, xr), (oa, _, ya, xa), len_ = _rows(
        shape, axis, c_strides(shape), g_strides, broadcast_strides(labels, shape), element_strides(logits))
    nrows = out.size // len_
    args = (out, L.make_layout(rshape, orr), L.i64(oa), g, L.make_layout(rshape, gr), labels,
            L.make_layout(rshape, yr), L.i64(ya), logits, L.make_layout(rshape, xr), L.i64(xa),
            L.i64(nrows), L.i64(len_))
    _launch_rows(dev, f"softmax_xent_bwd_{sfx}", _schedule(len_, nrows, xa, schedule), nrows, args)
    return out


# -- random ---------------------------------------------------------------------------------
def random(dev, op, shape, dtype, key, offset):
    if op not in ("random_uniform", "random_normal"):
        raise KeyError(op)
    dtype = np.dtype(dtype)
    sfx = _float_suffix(dtype, op)
    out = dev.empty(tuple(shape), dtype, op=op)
    n = out.size
    if n:
        per_block = 4 // philox.words_per_element(op, dtype)  # elements per Philox block
        dev.launch(f"{op}_{sfx}", -(-n // per_block),
                   (out, np.uint64(int(key) & _MASK64), np.uint64(int(offset) & _MASK64), L.i64(n)), op=op)
    return out


def random_bits(dev, n, key, offset):
    """The first ``n`` raw 32-bit words of the stream (as int32), from the kernel."""
    out = dev.empty((int(n),), np.int32)
    if n:
        dev.launch("random_bits_i32", -(-int(n) // 4),
                   (out, np.uint64(int(key) & _MASK64), np.uint64(int(offset) & _MASK64), L.i64(n)))
    return out
