"""Launch helpers shared by every kernel family: dtype suffixes, the ``Layout``
struct of kernels/common.cuh, the block size and the launch-plan caches. (Shapes
and strides -- broadcasting, merging axes, building Layouts -- are in ``strides``.)

Kernel names follow ``<family>_<op>_<dtype suffix>[_<variant>]``, e.g.
``binary_multiply_f32_contig``; the suffixes are below.
"""
from __future__ import annotations

import numpy as np

MAX_RANK = 8
BLOCK = 256

SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64",
          np.dtype(np.int32): "i32", np.dtype(np.int64): "i64", np.dtype(np.bool_): "b8"}

#: ``struct Layout`` of kernels/common.cuh, field for field, with C alignment
#: (int rank; 4 bytes padding; int64 shape[8]; int64 strides[8]: 136 bytes).
LAYOUT_DTYPE = np.dtype([("rank", np.int32), ("shape", np.int64, (MAX_RANK,)),
                         ("strides", np.int64, (MAX_RANK,))], align=True)


def suffix(dtype) -> str:
    try:
        return SUFFIX[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"no kernels for dtype {np.dtype(dtype)}; gpuad kernels support "
                        f"float32, float64, int32, int64 and bool") from None


def make_layout(shape, strides) -> np.ndarray:
    """A ``struct Layout`` (kernels/common.cuh) as a read-only 0-d structured
    NumPy array, passed to kernels by value; ``strides`` are in elements, 0 along
    broadcast axes.

    A 0-d array, not its ``np.void`` element: CuPy passes a NumPy array of size
    one by value as its bytes (13.x and 14.x alike), while CuPy 13's argument
    packer rejects ``np.void`` ("Unsupported type"). Read-only, because layouts
    are cached (:func:`gpuad.devices.launch.strides.layouts`) and shared."""
    shape, strides = tuple(shape), tuple(strides)
    if len(shape) != len(strides):
        raise ValueError(f"shape {shape} and strides {strides} differ in rank")
    if len(shape) > MAX_RANK:
        raise ValueError(f"gpuad kernels support rank <= {MAX_RANK}, got shape {shape}")
    rec = np.zeros((), dtype=LAYOUT_DTYPE)
    rec["rank"] = len(shape)
    rec["shape"][:len(shape)] = shape
    rec["strides"][:len(strides)] = strides
    rec.flags.writeable = False
    return rec


def is_contiguous(buf) -> bool:
    return bool(buf.flags.c_contiguous)


i64 = np.int64


#: Launch plans kept per family cache (elementwise, layout, nn, and per device in
#: reduction). A full cache is emptied: shapes that change all the time cost a plan
#: per call, as without plans, and never grow memory.
PLAN_CAP = 4096


def keep(plans: dict, key, plan, cap: int = PLAN_CAP):
    """``plans[key] = plan`` (emptying ``plans`` first when it holds ``cap``); returns ``plan``."""
    if len(plans) >= cap:
        plans.clear()
    plans[key] = plan
    return plan


def planned(plans: dict, key, make, cap: int = PLAN_CAP):
    """The plan kept under ``key``, else ``make()``, kept (see :func:`keep`). A key
    that cannot be hashed (a list for a shape, an unhashable dtype argument) is
    planned on every call and never kept, so the planner says what is wrong with
    the argument; errors are never cached."""
    try:
        plan = plans.get(key)
    except TypeError:
        return make()
    if plan is None:
        plan = keep(plans, key, make(), cap)
    return plan
