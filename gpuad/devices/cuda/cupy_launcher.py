"""The ``cuda`` launcher: CuPy buffers (CuPy's memory pool), ``kernels/*.cu``
compiled by NVRTC through ``cupy.RawModule`` once per GPU, launched on the
current CuPy stream; matrix products through ``cupy.matmul`` (cuBLAS).

Importing this module needs no CuPy; :func:`probe` explains what is missing.
"""
from __future__ import annotations

import functools
import threading

import numpy as np


class CudaUnavailableError(RuntimeError):
    """Raised when the ``cuda`` device is asked for where it cannot run."""


_FALLBACK = ("Fall back to the CPU with gpuad.device('cpu') or GPUAD_DEVICE=cpu.")


def probe() -> int:
    """The number of usable GPUs, or a CudaUnavailableError saying which of
    CuPy, the driver, or a GPU is missing."""
    try:
        import cupy
    except ImportError:
        raise CudaUnavailableError(
            "The cuda device needs CuPy, which is not installed: pip install 'gpuad[cuda13]' "
            "(or 'gpuad[cuda12]' for a CUDA 12 driver). " + _FALLBACK) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver, or a driver too old
        raise CudaUnavailableError(
            f"CuPy is installed but the NVIDIA driver is not usable ({e}). Install or update "
            f"the driver, or check that the GPU is visible (nvidia-smi). " + _FALLBACK) from None
    if count == 0:
        raise CudaUnavailableError("The NVIDIA driver reports no CUDA device on this machine. " + _FALLBACK)
    return count


@functools.lru_cache(maxsize=1)
def usable() -> tuple:
    """The usable GPUs' names (probed once per process: importing CuPy is slow)."""
    try:
        return tuple(f"cuda:{i}" for i in range(probe()))
    except CudaUnavailableError:
        return ()


class CupyLauncher:
    """Launches the kernels on one GPU; buffers are CuPy arrays."""

    kind = "cuda"

    def __init__(self, index: int):
        import cupy
        self._cupy = cupy
        self.index = index
        self.name = f"cuda:{index}"
        self._device = cupy.cuda.Device(index)
        with self._device:
            sms = self._device.attributes["MultiProcessorCount"]
        self.max_blocks = 8 * sms
        self._module = None
        self._functions = {}
        self._lock = threading.Lock()

    def module(self):
        if self._module is None:
            with self._lock:
                if self._module is None:
                    from ..kernel_sources import kernel_dir
                    d = kernel_dir()
                    code = "\n".join(f'#include "{p.name}"' for p in sorted(d.glob("*.cu")))
                    with self._device:
                        self._module = self._cupy.RawModule(
                            code=code, options=("-std=c++17", f"-I{d}"))
        return self._module

    def empty(self, shape, dtype):
        with self._device:
            return self._cupy.empty(shape, dtype)

    def from_host(self, array):
        with self._device:
            return self._cupy.asarray(array)

    def to_host(self, buffer):
        return self._cupy.asnumpy(buffer)

    def launch(self, kernel, grid, block, args, shared_mem=0):
        fn = self._functions.get(kernel)
        if fn is None:
            fn = self._functions[kernel] = self.module().get_function(kernel)
        grid = grid if isinstance(grid, tuple) else (grid,)
        block = block if isinstance(block, tuple) else (block,)
        with self._device:
            fn(grid, block, tuple(args), shared_mem=shared_mem)

    def matmul(self, a, b, transpose_a, transpose_b):
        cp = self._cupy
        if transpose_a:
            a = cp.swapaxes(a, -1, -2)
        if transpose_b:
            b = cp.swapaxes(b, -1, -2)
        with self._device:
            return cp.matmul(a, b)
