"""Launch code for ``kernels/optim.cu``: the ``optim`` family, fused optimizer
updates (``sgd``, ``adam``, ``rmsprop``, ``adagrad``).

``optim(dev, op, params, grads, slots, hyper, cache=None, in_place=True)`` returns
``(new_params, new_slots)``: the buffers holding the updated parameters and slots,
in the structure of ``params`` and ``slots``. An entry is either the input buffer
itself, updated in place -- the one place gpuad writes into existing buffers;
:mod:`gpuad.optimizers` makes sure it owns them first -- or a new buffer, and the
caller adopts what it gets. The update is **all or nothing**:

- everything that can fail (argument checks, planning, copies, pointer tables,
  allocations) happens before the first launch writes into an input buffer;
- ``in_place=False``: no input buffer is ever written; every returned buffer is a
  new one (a device copy of the input, then updated);
- ``in_place=True``: a step that fits one launch (up to :data:`MAX_TENSORS`
  tensors with elements) updates the inputs in place. A step that needs several
  launches updates the tensors of every launch but the last in copies, launched
  first, and those of the last launch in place, so a failing launch leaves every
  input untouched. (A kernel that faults while it runs, as opposed to a launch
  that fails, can still leave the last launch's tensors half updated.)

One launch covers every tensor (up to :data:`MAX_TENSORS` per launch, so a few
launches for very many tensors), whatever their sizes:

- a *table* (one small int64 device buffer per launch) holds the element offsets
  of the tensors and the pointers of the parameters and of their slots. Building
  it copies it from the host (a counted transfer), so the table of the in-place
  launch is kept in ``cache``, a dict the caller owns (one per optimizer, device
  and dtype), and rebuilt only when a buffer changes: a steady-state step of up
  to MAX_TENSORS tensors makes no transfer (the launches that update copies
  build theirs every step: a copy and a table upload per step is the price of
  atomicity beyond MAX_TENSORS tensors);
- the gradient pointers change every step: they travel by value, as a kernel
  argument (``struct OptimGrads``, a 0-d structured NumPy array: CuPy passes
  a size-one NumPy array by value as its bytes), which is part of the launch.

Arguments (the cpu device's ``optim`` method takes the same):

- ``params``: buffers of one float dtype (float32 or float64), C-contiguous;
- ``grads``: one buffer per parameter, same shape and dtype (C-contiguous, or
  copied to be);
- ``slots``: a list of slot kinds, each a list with one buffer per parameter,
  in this order: sgd ``[momentum]`` (only when ``momentum != 0``); adam
  ``[momentum, velocity]`` (+ ``velocity_hat`` with ``amsgrad``); rmsprop
  ``[velocity]`` (+ ``momentum`` when ``momentum > 0``, + ``average_gradient``
  when ``centered``); adagrad ``[accumulator]``; C-contiguous;
- ``hyper``: Python numbers computed on the host (no device sync): ``lr``,
  ``weight_decay`` (None for none) and per op: sgd ``momentum``, ``nesterov``;
  adam ``alpha``, ``one_minus_beta_1``, ``one_minus_beta_2``, ``epsilon``,
  ``amsgrad``; rmsprop ``rho``, ``one_minus_rho``, ``momentum``, ``epsilon``,
  ``centered``; adagrad ``epsilon``. Floats are converted to the parameters'
  dtype, so a float32 value passed as a Python float arrives exactly.
"""
from __future__ import annotations

import numpy as np

from . import common as L

#: The capacity of ``struct OptimGrads``: ``GPUAD_OPTIM_MAX_TENSORS`` in kernels/optim.cu.
_GRADS_CAPACITY = 256
_GRADS = np.dtype([("ptr", np.uint64, (_GRADS_CAPACITY,))], align=True)  # struct OptimGrads
#: Tensors per launch (at most _GRADS_CAPACITY; tests lower it to make many launches).
MAX_TENSORS = _GRADS_CAPACITY

_FLOAT_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def slot_count(op: str, hyper: dict) -> int:
    """How many slot kinds ``op`` updates with these hyperparameters."""
    if op == "sgd":
        return 1 if hyper["momentum"] != 0 else 0
    if op == "adam":
        return 3 if hyper.get("amsgrad") else 2
    if op == "rmsprop":
        return 1 + (hyper["momentum"] > 0) + bool(hyper.get("centered"))
    if op == "adagrad":
        return 1
    raise KeyError(f"unknown optim op {op!r}; the optim family has sgd, adam, rmsprop and adagrad")


def check(op, params, grads, slots, hyper):
    """Validate the arguments of ``optim`` (shared with the cpu device); returns the dtype."""
    want = slot_count(op, hyper)
    if len(slots) != want:
        raise ValueError(f"optim {op} with {hyper} updates {want} slot kind(s), got {len(slots)}")
    if len(grads) != len(params) or any(len(s) != len(params) for s in slots):
        raise ValueError(f"optim {op}: {len(params)} params, {len(grads)} grads and slot lists of "
                         f"lengths {[len(s) for s in slots]}; give one of each per parameter")
    if not params:
        return None
    dt = params[0].dtype
    if dt not in _FLOAT_SUFFIX:
        raise TypeError(f"optim {op} updates float32 or float64 parameters, got {dt}")
    for j, p in enumerate(params):
        bufs = [p, grads[j]] + [s[j] for s in slots]
        for b in bufs:
            if b.dtype != dt or b.shape != p.shape:
                raise TypeError(f"optim {op}: parameter {j} is {p.dtype}{list(p.shape)} but a gradient "
                                f"or slot is {b.dtype}{list(b.shape)}; they must all match")
    return dt


def _pointer(dev, buf) -> int:
    return buf.data.ptr if dev.kind == "cuda" else buf.ctypes.data


def _copy(dev, op, buf):
    """A new C-contiguous buffer holding ``buf``'s values (a device-to-device copy)."""
    out = dev.launcher.empty(tuple(buf.shape), buf.dtype)
    if buf.size:
        dev.copy_bytes(out, 0, buf, 0, buf.nbytes, op=op)
    return out


def _table(dev, idx, params, slots):
    """The table of one launch over tensors ``idx``: ``(count, total elements, table)``."""
    count = len(idx)
    sizes = np.array([params[j].size for j in idx], dtype=np.int64)
    table = np.empty(count + 1 + (1 + len(slots)) * count, dtype=np.int64)
    table[0] = 0
    np.cumsum(sizes, out=table[1:count + 1])
    table[count + 1:2 * count + 1] = [_pointer(dev, params[j]) for j in idx]
    for s, bufs in enumerate(slots):
        base = count + 1 + (1 + s) * count
        table[base:base + count] = [_pointer(dev, bufs[j]) for j in idx]
    return count, int(table[count]), dev.from_host(table)


def _cached_table(dev, idx, params, slots, cache):
    """:func:`_table` of the in-place launch, from ``cache`` when its buffers are those
    it was built for."""
    key = tuple(id(params[j]) for j in idx) + tuple(id(b[j]) for b in slots for j in idx)
    if cache is not None and cache.get("key") == key:
        return cache["table"]
    table = _table(dev, idx, params, slots)
    if cache is not None:
        cache["key"], cache["table"] = key, table
    return table


def optim(dev, op, params, grads, slots, hyper, cache=None, in_place=True):
    dt = check(op, params, grads, slots, hyper)
    new_params, new_slots = list(params), [list(s) for s in slots]
    if dt is None:
        return new_params, new_slots
    for b in [*params, *(x for s in slots for x in s)]:
        if not b.flags.c_contiguous:
            raise ValueError(f"optim {op}: parameter and slot buffers must be C-contiguous (they are "
                             f"updated in place, or copied byte for byte)")
    sfx = _FLOAT_SUFFIX[dt]
    f = dt.type
    lr = f(hyper["lr"])
    wd = hyper.get("weight_decay")
    common = (lr, f(0 if wd is None else wd), np.int32(wd is not None))
    if op == "sgd":
        extra = (f(hyper["momentum"]), np.int32(hyper["momentum"] != 0), np.int32(bool(hyper["nesterov"])))
    elif op == "adam":
        extra = (f(hyper["alpha"]), f(hyper["one_minus_beta_1"]), f(hyper["one_minus_beta_2"]),
                 f(hyper["epsilon"]), np.int32(bool(hyper.get("amsgrad"))))
    elif op == "rmsprop":
        extra = (f(hyper["rho"]), f(hyper["one_minus_rho"]), f(hyper["momentum"]), f(hyper["epsilon"]),
                 np.int32(hyper["momentum"] > 0), np.int32(bool(hyper.get("centered"))))
    else:  # adagrad
        extra = (f(hyper["epsilon"]),)
    kernel = f"optim_{op}_{sfx}"

    # -- everything that can fail, before any input buffer is written ---------------------
    per_launch = min(int(MAX_TENSORS), _GRADS_CAPACITY)
    live = [j for j, p in enumerate(params) if p.size]
    chunks = [live[start:start + per_launch] for start in range(0, len(live), per_launch)]
    in_place_chunk = chunks.pop() if in_place and chunks else None
    # the tensors of the other launches are updated in copies (all of them when not in place)
    copied = [j for idx in chunks for j in idx] if in_place else range(len(params))
    for j in copied:
        new_params[j] = _copy(dev, op, params[j])
        for s, bufs in enumerate(slots):
            new_slots[s][j] = _copy(dev, op, bufs[j])
    grad_bufs = {}
    for j in live:
        g = grads[j]
        if not g.flags.c_contiguous:  # a strided view: a contiguous copy (one launch)
            g = dev.cast("cast", g, g.dtype)
        grad_bufs[j] = g  # alive until the launches below are queued
    launches = [(idx, _table(dev, idx, new_params, new_slots)) for idx in chunks]
    if in_place_chunk is not None:  # last: a failing launch before it wrote only into copies
        launches.append((in_place_chunk, _cached_table(dev, in_place_chunk, params, slots, cache)))
    args = []
    for idx, (count, total, table) in launches:
        rec = np.zeros((), dtype=_GRADS)
        ptrs = rec["ptr"]
        for n, j in enumerate(idx):
            ptrs[n] = _pointer(dev, grad_bufs[j])
        # ``rec`` itself (0-d), not ``rec[()]``: CuPy 13 rejects an np.void argument.
        args.append((total, (table, rec, np.int32(count), L.i64(total)) + common + extra))

    # -- the launches ----------------------------------------------------------------------
    for total, a in args:
        dev.launch(kernel, total, a, op=op)
    return new_params, new_slots
