"""The ``emulated`` device: the CUDA kernels of ``kernels/*.cu`` compiled by g++
for the host and run with CUDA semantics (``kernels/host/``), on NumPy buffers.

It exists so that every kernel is checked against the ``cpu`` device in CI,
where there is no GPU: it shares the whole launch layer with ``cuda``
(:class:`gpuad.devices.launch.KernelDevice`); only the launcher
(:class:`HostLauncher`, here) differs. :func:`device` builds it.

>>> import gpuad as ad
>>> with ad.device("emulated"):              # doctest: +SKIP
...     (ad.constant([1.0, 2.0]) * 3.0).numpy()
array([3., 6.], dtype=float32)
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import shutil
import threading

import numpy as np

from ..errors import GraphCaptureError
from .cpu_memory import host_empty
from .kernel_sources import kernel_dir
from .launch import KernelDevice

__all__ = ["device", "HostLauncher", "usable"]


def device(name: str = "emulated") -> KernelDevice:
    """The ``emulated`` device: the launch layer over a :class:`HostLauncher`."""
    dev = KernelDevice(HostLauncher())
    dev.generated_block = 32  # fibers per generated module (see KernelDevice.generated_block)
    return dev


class HostLauncher:
    """Launches kernels compiled for the host; buffers are NumPy arrays."""

    name = "emulated"
    kind = "emulated"
    # Grid-stride loops make any grid correct; a few blocks keep emulation fast
    # while still running several blocks (in shuffled order) per launch.
    max_blocks = 4

    def __init__(self, poison: bool | None = None):
        self._module = None
        self._lock = threading.Lock()
        self._seeds = itertools.count(1)
        # Fill new buffers with NaN (floats) or a sentinel (ints) so an element a
        # kernel forgot to write shows up in tests.
        self.poison = os.environ.get("GPUAD_POISON") == "1" if poison is None else poison
        self._generated: dict[str, _HostGenerated] = {}  # source hash -> module
        # While :meth:`capture` runs: (the capturing thread, the work it recorded).
        self._capture: tuple | None = None

    def module(self):
        if self._module is None:
            with self._lock:
                if self._module is None:
                    from .host_build import HostModule
                    d = kernel_dir()
                    self._module = HostModule(sorted(d.glob("*.cu")), [d])
        return self._module

    def compile(self, source: str):
        """Generated CUDA C ``source`` built for the host: the file is written to
        the build cache under its hash (host_build caches by path and text), built
        with gpuad's kernel headers on the include path, and kept per source."""
        import hashlib
        from .host_build import cache_dir
        from .kernel_sources import atomic_write
        digest = hashlib.sha256(source.encode()).hexdigest()[:32]
        module = self._generated.get(digest)
        if module is None:
            from .host_build import HostModule
            folder = cache_dir() / "generated"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"generated-{digest}.cu"
            if not path.is_file():
                atomic_write(path, source.encode())
            module = self._generated[digest] = _HostGenerated(self, HostModule([path], [kernel_dir()]))
        return module

    def empty(self, shape, dtype):
        # host memory, as the cpu device's: a request the host cannot give raises
        # gpuad.OutOfMemoryError before anything is allocated (gpuad/devices/cpu_memory.py)
        out = host_empty(None, shape, dtype, self.name)
        if self.poison:
            out.fill(np.nan if dtype.kind == "f" else (True if dtype.kind == "b" else -0x5A5A5A5A))
        return out

    def from_host(self, array):
        self._no_host("a copy from the host")
        return np.array(array, copy=True)

    def to_host(self, buffer):
        self._no_host("a copy to the host")
        return np.array(buffer, copy=True)

    def launch(self, kernel, grid, block, args, shared_mem=0):
        self._run(self.module(), kernel, grid, block, args, shared_mem)

    def _run(self, module, kernel, grid, block, args, shared_mem):
        """Run one kernel of ``module`` now, or record it while capturing."""
        work = self._recording()
        if work is None:
            module.launch(kernel, grid, block, args, shared_mem=shared_mem, seed=next(self._seeds))
        else:
            work.append(lambda: module.launch(kernel, grid, block, args, shared_mem=shared_mem,
                                              seed=next(self._seeds)))

    def synchronize(self):
        """Nothing to wait for: a host launch returns when the kernel has finished."""
        self._no_host("a wait for the device")

    def matmul(self, a, b, transpose_a, transpose_b):
        # stands in for cuBLAS, which the cuda device calls through cupy.matmul
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        work = self._recording()
        if work is None:
            return np.matmul(a, b)
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = self.empty(shape, np.result_type(a.dtype, b.dtype))
        work.append(functools.partial(np.matmul, a, b, out=out))
        return out

    def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
        """Copy ``nbytes`` bytes of ``src`` from byte ``src_offset`` to ``dst`` at byte
        ``dst_offset`` (stands in for the cuda launcher's ``cudaMemcpyAsync``)."""
        copy = functools.partial(ctypes.memmove, dst.ctypes.data + dst_offset,
                                 src.ctypes.data + src_offset, nbytes)
        work = self._recording()
        if work is None:
            copy()
        else:
            work.append(lambda: copy() and None)

    # -- graphs: the cuda launcher's stream capture, on the host ---------------------
    def capture(self, fn):
        """``(graph, fn())`` where ``graph.launch()`` runs the kernels and copies that
        ``fn`` queued, which are recorded, not run (as CUDA stream capture does:
        buffers ``fn`` allocates are allocated, their contents are not computed). A
        transfer or wait meanwhile raises :class:`GraphCaptureError`, as it does on cuda."""
        if self._capture is not None:
            raise GraphCaptureError("emulated: a graph is being captured already; captures do not nest")
        work: list = []
        self._capture = (threading.get_ident(), work)
        try:
            result = fn()
        finally:
            self._capture = None
        return _HostGraph(work), result

    def _recording(self):
        """The list the current thread's launches go to while it captures, else None."""
        capture = self._capture
        if capture is not None and capture[0] == threading.get_ident():
            return capture[1]
        return None

    def _no_host(self, what):
        if self._recording() is not None:
            raise GraphCaptureError(f"emulated: {what} while capturing a graph (a graph replays "
                                    f"device work only)")


class _HostGraph:
    """Recorded host launches, run again in their order by :meth:`launch`."""

    def __init__(self, work):
        self.work = work

    def launch(self):
        for run in self.work:
            run()


class _HostGenerated:
    """A generated module on the host: launches with the launcher's block order seeds."""

    def __init__(self, launcher: HostLauncher, module):
        self.launcher, self.host_module = launcher, module

    def launch(self, kernel, grid, block, args, shared_mem=0):
        self.launcher._run(self.host_module, kernel, grid, block, args, shared_mem)

    def max_blocks_for(self, kernel, block, shared_mem=0):
        return self.launcher.max_blocks


def usable() -> list[str]:
    """``["emulated"]`` where a host C++ compiler is present."""
    return ["emulated"] if shutil.which(os.environ.get("CXX", "g++")) else []
