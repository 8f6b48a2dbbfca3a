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

import itertools
import os
import shutil
import threading

import numpy as np

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
        return np.array(array, copy=True)

    def to_host(self, buffer):
        return np.array(buffer, copy=True)

    def launch(self, kernel, grid, block, args, shared_mem=0):
        self.module().launch(kernel, grid, block, args, shared_mem=shared_mem, seed=next(self._seeds))

    def synchronize(self):
        """Nothing to wait for: a host launch returns when the kernel has finished."""

    def matmul(self, a, b, transpose_a, transpose_b):
        # stands in for cuBLAS, which the cuda device calls through cupy.matmul
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        return np.matmul(a, b)

    def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
        """Copy ``nbytes`` bytes of ``src`` from byte ``src_offset`` to ``dst`` at byte
        ``dst_offset`` (stands in for the cuda launcher's ``cudaMemcpyAsync``)."""
        import ctypes
        ctypes.memmove(dst.ctypes.data + dst_offset, src.ctypes.data + src_offset, nbytes)


class _HostGenerated:
    """A generated module on the host: launches with the launcher's block order seeds."""

    def __init__(self, launcher: HostLauncher, module):
        self.launcher, self.host_module = launcher, module

    def launch(self, kernel, grid, block, args, shared_mem=0):
        self.host_module.launch(kernel, grid, block, args, shared_mem=shared_mem, seed=next(self.launcher._seeds))

    def max_blocks_for(self, kernel, block, shared_mem=0):
        return self.launcher.max_blocks


def usable() -> list[str]:
    """``["emulated"]`` where a host C++ compiler is present."""
    return ["emulated"] if shutil.which(os.environ.get("CXX", "g++")) else []
