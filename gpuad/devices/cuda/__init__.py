"""The kernel launch layer, shared by the ``cuda`` and ``emulated`` devices.

A :class:`KernelDevice` turns every call of the device protocol into launches
of the kernels in ``kernels/*.cu``: it picks the kernel for the op and dtype,
computes broadcast layouts and strides, chooses the launch shape, packs
arguments as NumPy-typed scalars and allocates outputs. It does all that
through a *launcher*, the only part that differs between devices:

- ``emulated``: NumPy buffers, kernels compiled by g++ for the host
  (``gpuad/devices/emulated.py``);
- ``cuda``: CuPy buffers, kernels compiled by NVRTC through ``cupy.RawModule``.

A launcher provides ``name``, ``kind``, ``max_blocks``, ``empty(shape, dtype)``,
``from_host(array)``, ``to_host(buffer)``, ``launch(kernel, grid, block, args,
shared_mem)`` and ``matmul(a, b, transpose_a, transpose_b)`` (cuBLAS on cuda).
Nothing above the launcher differs between the two devices.
"""
from __future__ import annotations

import numpy as np

from .. import KERNEL_SET, Device
from . import launch as L


class KernelDevice(Device):
    """A device whose kernels are the CUDA sources in ``kernels/``."""

    kernels = KERNEL_SET

    def __init__(self, launcher):
        self.launcher = launcher
        self.name = launcher.name
        self.kind = launcher.kind
        self.max_blocks = launcher.max_blocks
        self.transfers = 0  # host <-> device copies; a training step must make none

    # -- buffers and transfers ------------------------------------------------
    def from_host(self, array):
        self.transfers += 1
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            array = np.ascontiguousarray(array).reshape(array.shape)
        return self.launcher.from_host(array)

    def to_host(self, buffer):
        self.transfers += 1
        return self.launcher.to_host(buffer)

    def empty(self, shape, dtype):
        return self.launcher.empty(tuple(shape), np.dtype(dtype))

    def launch(self, kernel: str, n: int, args, block: int = L.BLOCK, shared_mem: int = 0,
               blocks: int | None = None):
        """Launch ``kernel`` over ``n`` work items (grid-stride), or on ``blocks`` blocks."""
        g = blocks if blocks is not None else L.grid(n, self.max_blocks, block)
        self.launcher.launch(kernel, g, block, args, shared_mem)

    def matmul(self, op, a, b, transpose_a, transpose_b):
        return self.launcher.matmul(a, b, transpose_a, transpose_b)


# Each family module implements some families of the device protocol as
# functions ``family(device, op, *buffers, **attrs)``; bind them as methods.
from . import elementwise, reduction, layout, nn  # noqa: E402

for _module in (elementwise, reduction, layout, nn):
    for _family in _module.FAMILIES:
        setattr(KernelDevice, _family, getattr(_module, _family))
