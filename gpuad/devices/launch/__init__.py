"""The kernel launch layer, shared by the ``cuda`` and ``emulated`` devices.

A :class:`KernelDevice` turns every call of the device protocol into launches
of the kernels in ``kernels/*.cu``: it picks the kernel for the op and dtype,
computes broadcast layouts and strides, chooses the launch shape, packs
arguments as NumPy-typed scalars and allocates outputs. It does all that
through a *launcher*, the only part that differs between devices:

- ``emulated``: NumPy buffers, kernels compiled by g++ for the host
  (``gpuad/devices/emulated.py``);
- ``cuda``: CuPy buffers, kernels compiled by NVRTC per family
  (``gpuad/devices/nvrtc.py``), loaded with ``cupy.RawModule``
  (``gpuad/devices/cuda.py``).

The families live one module per kernel source file: ``elementwise`` (unary,
binary, unary_grad, where, cast, fill), ``reduction`` (reduce, arg_reduce),
``layout`` (layout, concat, gather, one_hot), ``nn`` (softmax, softmax_xent,
random) and ``optim``, each a function ``family(dev, op, *buffers, **attrs)``
that :class:`KernelDevice` binds as its method. ``common`` holds what every
family needs (dtype suffixes, the ``Layout`` struct, plan caches) and
``strides`` the shape and stride arithmetic (broadcasting, merging axes).

A launcher provides ``name``, ``kind``, ``max_blocks`` (and, optionally,
``max_blocks_for(kernel, block, shared_mem)``: a kernel's occupancy), ``empty(shape, dtype)``,
``copy_bytes(dst, dst_offset, src, src_offset, nbytes)`` (a device-to-device copy),
``from_host(array)``, ``to_host(buffer)``, ``launch(kernel, grid, block, args,
shared_mem)``, ``synchronize()`` and ``matmul(a, b, transpose_a, transpose_b)``
(cuBLAS on cuda).
Nothing above the launcher differs between the two devices.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .. import KERNEL_SET, Device
from ...errors import (GraphCaptureError, KernelCompileError, KernelLaunchError, OutOfMemoryError,
                       index_checks_enabled, index_error)
from ..nvrtc import CudaUnavailableError
from . import common as L
from . import elementwise as _elementwise
from . import layout as _layout
from . import nn as _nn
from . import optim as _optim
from . import reduction as _reduction

__all__ = ["KernelDevice", "KernelCompileError", "KernelLaunchError"]


class KernelDevice(Device):
    """A device whose kernels are the CUDA sources in ``kernels/``."""

    kernels = KERNEL_SET

    def __init__(self, launcher):
        self.launcher = launcher
        self.name = launcher.name
        self.kind = launcher.kind
        self.max_blocks = launcher.max_blocks
        self._occupancy = getattr(launcher, "max_blocks_for", None)  # per kernel (cuda)
        self.transfers = 0  # host <-> device copies; a training step must make none
        # GPUAD_SYNC=1: wait for every kernel, so a fault is reported by the launch
        # (kernel and op) that caused it rather than by a later one. Slow; for debugging.
        self.sync = os.environ.get("GPUAD_SYNC", "").strip().lower() in ("1", "true", "yes", "on")
        # GPUAD_CHECK_INDICES=1: gather (Embedding) indices and sparse labels are checked
        # against their range (two reductions and a host read per call), raising the cpu
        # device's InvalidArgumentError. Off by default: an out-of-range index then reads
        # zeros (gather) and an out-of-range label gives a NaN loss, with no round trip.
        self.checks_indices = index_checks_enabled()

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

    def empty(self, shape, dtype, op: str | None = None):
        """A new buffer; out of memory raises :class:`gpuad.OutOfMemoryError`, naming
        ``op`` where given."""
        try:
            return self.launcher.empty(tuple(shape), np.dtype(dtype))
        except OutOfMemoryError as e:
            if op is None or getattr(e, "op", None):
                raise
            error = OutOfMemoryError(f"{op}: {e}", requested=e.requested, pool_used=e.pool_used,
                                     pool_total=e.pool_total, device=e.device)
            error.op = op
            raise error from e

    # -- the kernel families of KERNEL_SET ---------------------------------------
    # Each is the function ``family(dev, op, ...)`` of its family module, bound as a
    # method by assignment: no wrapper, so no extra Python call per op.
    unary = _elementwise.unary
    binary = _elementwise.binary
    unary_grad = _elementwise.unary_grad
    where = _elementwise.where
    cast = _elementwise.cast
    fill = _elementwise.fill
    reduce = _reduction.reduce
    arg_reduce = _reduction.arg_reduce
    layout = _layout.layout
    concat = _layout.concat
    gather = _layout.gather
    one_hot = _layout.one_hot
    softmax = _nn.softmax
    softmax_xent = _nn.softmax_xent
    random = _nn.random
    optim = _optim.optim

    def matmul(self, op, a, b, transpose_a, transpose_b):
        return self.launcher.matmul(a, b, transpose_a, transpose_b)

    def capture(self, fn):
        """:attr:`Device.capture`: a CUDA graph on cuda, recorded host launches on emulated."""
        return self.launcher.capture(fn)

    def check_indices(self, op, indices, n, axis=None, shape=None):
        """With index checks on (``checks_indices``, from ``GPUAD_CHECK_INDICES`` when the
        device was created), raise the cpu device's InvalidArgumentError if an element of
        ``indices`` is outside ``[0, n)``: a min and a max reduction on the device, then a
        host read of the two numbers (and of the indices, to name the bad one, only when
        one is bad). Without them, nothing: no launch, no round trip."""
        if not self.checks_indices or not indices.size:
            return
        axes = tuple(range(len(indices.shape)))
        lo = self.reduce("reduce_min", indices, axes, False)
        hi = self.reduce("reduce_max", indices, axes, False)
        if int(self.to_host(lo)) < 0 or int(self.to_host(hi)) >= n:
            raise index_error(op, self.to_host(indices), int(n), axis=axis, shape=shape)

    # -- launches ---------------------------------------------------------------------
    def launch(self, kernel: str, n: int, args, block: int = L.BLOCK, shared_mem: int = 0,
               blocks: int | None = None, op: str | None = None):
        """Launch ``kernel`` over ``n`` work items (grid-stride), or on ``blocks`` blocks,
        for the protocol op ``op`` (every family function passes it; errors name it).

        A grid-stride launch gets enough blocks to cover ``n``, at most as many as the
        device runs at once for this kernel (:meth:`max_blocks_for`). With
        ``GPUAD_SYNC=1`` in the environment when the device was created, wait for
        every kernel to finish after its launch. A failure to compile the kernels
        raises :class:`KernelCompileError`, any other launch (or, when
        synchronising, execution) failure :class:`KernelLaunchError`; both name the
        kernel and the op that launched it. Out-of-memory errors and a missing
        library (:class:`CudaUnavailableError`: NVRTC) pass as they are.
        """
        try:
            if blocks is None:  # enough blocks to cover n, capped (inline: this runs for every op)
                blocks = (n + block - 1) // block
                cap = self.max_blocks_for(kernel, block, shared_mem)
                if blocks > cap:
                    blocks = cap
                elif blocks < 1:
                    blocks = 1
            self.launcher.launch(kernel, blocks, block, args, shared_mem)
            if self.sync:
                self.launcher.synchronize()
        except (MemoryError, TypeError, ValueError, CudaUnavailableError, GraphCaptureError):
            raise  # out of memory; arguments that do not fit the kernel's parameters; no NVRTC
        except RuntimeError as e:
            raise self._launch_error(kernel, e, op) from e

    generated_source = "cuda"
    #: Threads per block of generated (grid-stride) kernels. The emulated device runs
    #: each thread of a block as a fiber with its own stack, and each generated module
    #: keeps its own fibers (two memory mappings each): small blocks keep the process
    #: far from its mapping limit when thousands of functions are compiled.
    generated_block = L.BLOCK

    def compile(self, source: str) -> "GeneratedModule":
        """The module of a generated CUDA C ``source`` (:mod:`gpuad.compiler`),
        compiled by the launcher (NVRTC on cuda, g++ on emulated; cached on disk),
        whose kernels run with :meth:`GeneratedModule.launch`. A source that does
        not compile raises :class:`KernelCompileError` with the compiler's log."""
        from ..host_build import HostBuildError
        try:
            return GeneratedModule(self, self.launcher.compile(source))
        except HostBuildError as e:
            raise KernelCompileError(f"a generated kernel did not compile on device {self.name}.\n{e}",
                                     files=["generated.cu"], log=str(e)) from e

    def max_blocks_for(self, kernel: str, block: int = L.BLOCK, shared_mem: int = 0) -> int:
        """How many blocks of ``kernel`` the device runs at once: from the occupancy
        API on cuda (the launcher's ``max_blocks_for``), else the launcher's fixed
        ``max_blocks`` (a few on emulated)."""
        occupancy = self._occupancy
        return self.max_blocks if occupancy is None else occupancy(kernel, block, shared_mem)

    def _launch_error(self, kernel: str, error: RuntimeError, op: str | None = None) -> RuntimeError:
        """``error`` from launching ``kernel`` for ``op``, as a gpuad error naming both."""
        what = f"kernel {kernel}" + (f" (op {op})" if op else "") + f" on device {self.name}"
        from ..host_build import HostBuildError  # (the emulated device's compile error)
        if isinstance(error, (KernelCompileError, HostBuildError)):
            files = getattr(error, "files", None) or sorted(
                {m.group(1) for m in re.finditer(r"([\w.-]+\.cuh?)[:(]\d+", str(error))})
            return KernelCompileError(f"{what}: the kernel sources did not compile.\n{error}",
                                      kernel=kernel, files=files,
                                      log=getattr(error, "log", None) or str(error))
        hint = "" if self.sync or self.kind != "cuda" or isinstance(error, KernelLaunchError) else (
            "\nKernels run asynchronously: the failure may come from an earlier launch. Set "
            "GPUAD_SYNC=1 to check after every launch and name the kernel that failed.")
        return KernelLaunchError(f"{what} failed: {error}{hint}", kernel=kernel, op=op)

    def copy_bytes(self, dst, dst_offset: int, src, src_offset: int, nbytes: int,
                   op: str | None = None) -> None:
        """Copy ``nbytes`` bytes of buffer ``src`` from byte ``src_offset`` to buffer ``dst``
        at byte ``dst_offset``, on the device, in order with the kernels
        (``cudaMemcpyAsync`` on cuda), for ``op`` (named by errors). Waits for it under
        ``GPUAD_SYNC=1``, like a launch."""
        try:
            self.launcher.copy_bytes(dst, dst_offset, src, src_offset, nbytes)
            if self.sync:
                self.launcher.synchronize()
        except GraphCaptureError:
            raise
        except RuntimeError as e:
            raise self._launch_error("copy_bytes (cudaMemcpyAsync)", e, op) from e


class GeneratedModule:
    """Generated kernels compiled for a :class:`KernelDevice` (:meth:`KernelDevice.compile`)."""

    def __init__(self, dev: KernelDevice, module):
        self.dev = dev
        self.module = module  # the launcher's: launch(kernel, grid, block, args, shared_mem), max_blocks_for

    def launch(self, kernel: str, n: int, args, op: str | None = None) -> None:
        """Launch grid-stride ``kernel`` over ``n`` work items (n > 0) in blocks of
        :data:`BLOCK` threads: enough blocks to cover n, at most as many as the device
        runs at once, as :meth:`KernelDevice.launch` sizes the family kernels."""
        dev = self.dev
        block = dev.generated_block
        try:
            blocks = max(1, min((n + block - 1) // block, self.module.max_blocks_for(kernel, block, 0)))
            self.module.launch(kernel, blocks, block, args, 0)
            if dev.sync:
                dev.launcher.synchronize()
        except (MemoryError, TypeError, ValueError, CudaUnavailableError, GraphCaptureError):
            raise
        except RuntimeError as e:
            raise dev._launch_error(kernel, e, op) from e
