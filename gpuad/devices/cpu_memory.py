"""Host memory requests of the ``cpu`` and ``emulated`` devices, checked before they are made.

Linux overcommits memory: ``np.empty`` of more bytes than the machine has usually
succeeds, and the process is killed by the OOM killer when the buffer is written.
:func:`host_empty` therefore compares a large request (``CHECK_ABOVE`` bytes or more)
with the memory the host can still give (:func:`host_available_bytes`: MemAvailable
plus free swap, and the cgroup's limit where one is set) and raises
:class:`gpuad.OutOfMemoryError` naming the op and the size instead; a NumPy
``MemoryError`` becomes the same error. Small requests are not checked (reading
``/proc`` costs more than a small op).
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import OutOfMemoryError

__all__ = ["host_available_bytes", "check_host_request", "host_empty", "CHECK_ABOVE"]

#: Requests below this many bytes are made without asking the host first.
CHECK_ABOVE = 64 << 20


def _format(n: int) -> str:
    for unit, size in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30),
                       ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.2f} {unit})"
    return f"{n:,} bytes"


def _meminfo() -> int | None:
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


def _cgroup() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None


def host_available_bytes() -> int | None:
    """Bytes the host can still give this process (None where it cannot tell)."""
    known = [n for n in (_meminfo(), _cgroup()) if n is not None]
    return min(known) if known else None


def _error(op, nbytes, device, available=None, cause=None) -> OutOfMemoryError:
    what = f"{op} on {device}" if op else device
    msg = f"Out of memory: {what} needs {_format(nbytes)}"
    msg += (f" but the host has {_format(available)} available." if available is not None
            else " and the host could not allocate it.")
    msg += (" To fix: ask for a smaller shape (or generate/process the data in batches), "
            "or free memory (`del` tensors you no longer need). Nothing was allocated; "
            "tensors that existed before are intact.")
    e = OutOfMemoryError(msg, requested=int(nbytes), device=device)
    e.op = op
    return e


def check_host_request(op: str | None, nbytes: int, device: str = "cpu") -> None:
    """Raise :class:`gpuad.OutOfMemoryError` if ``nbytes`` cannot be had from the host."""
    if nbytes < CHECK_ABOVE:
        return
    available = host_available_bytes()
    if available is not None and nbytes > available:
        raise _error(op, nbytes, device, available)


def host_empty(op: str | None, shape, dtype, device: str = "cpu") -> np.ndarray:
    """``np.empty(shape, dtype)`` after :func:`check_host_request`; a NumPy MemoryError
    (or a size NumPy cannot represent) becomes :class:`gpuad.OutOfMemoryError`."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        return np.empty(shape, dtype)  # NumPy's own error for a negative size, as before
    nbytes = math.prod(shape) * dtype.itemsize
    check_host_request(op, nbytes, device)
    try:
        return np.empty(shape, dtype)
    except MemoryError as e:
        raise _error(op, nbytes, device, cause=e) from None
    except ValueError as e:  # "array is too big; `arr.size * arr.dtype.itemsize` is larger than ..."
        if "too big" in str(e):
            raise _error(op, nbytes, device) from None
        raise
