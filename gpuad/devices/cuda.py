"""The ``cuda`` device: the launch layer (:class:`gpuad.devices.launch.KernelDevice`)
over a :class:`CupyLauncher`: CuPy buffers (CuPy's memory pool), ``kernels/*.cu``
compiled by NVRTC one family at a time, on first use, and cached on disk
(:mod:`gpuad.devices.nvrtc`), launched on the current CuPy stream with grids
sized from each kernel's occupancy; matrix products through ``cupy.matmul``
(cuBLAS). :func:`device` builds ``cuda:N``; :func:`usable` lists the GPUs.

Importing this module needs no CuPy; :func:`probe` explains what is missing.

Every allocation goes through :func:`allocate_with_retry`: when the GPU is out
of memory it releases the blocks CuPy's pool caches but no tensor uses, tries
once more, and then raises :class:`gpuad.OutOfMemoryError` with the numbers.
Kernel sources that do not compile raise :class:`gpuad.errors.KernelCompileError`
with NVRTC's log; a kernel name no family defines, :class:`gpuad.errors.KernelLaunchError`.
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np

from ..errors import GraphCaptureError, KernelLaunchError, OutOfMemoryError
from . import nvrtc
from .launch import KernelDevice
from .nvrtc import CudaUnavailableError

__all__ = ["device", "CupyLauncher", "CudaUnavailableError", "probe", "usable", "allocate_with_retry"]

_FALLBACK = ("Fall back to the CPU with gpuad.device('cpu') or GPUAD_DEVICE=cpu.")


def probe() -> int:
    """The number of usable GPUs, or a CudaUnavailableError saying which of
    CuPy, the driver, a GPU, NVRTC or cuBLAS is missing (and how to install it), or
    which GPU the installed NVRTC cannot build kernels for."""
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
    _check_libraries(cupy)
    for index in range(count):  # a GPU this NVRTC cannot build for (Volta on CUDA 13)
        with cupy.cuda.Device(index) as gpu:
            capability = int(gpu.compute_capability)
        try:
            nvrtc.target_for(capability)
        except CudaUnavailableError as e:
            raise CudaUnavailableError(f"cuda:{index}: {e}. {_FALLBACK}") from None
    return count


def _check_libraries(cupy) -> None:
    """NVRTC (every kernel) and cuBLAS (matmul) load, or a CudaUnavailableError naming
    the missing one and the pip line that installs it. A GPU without them must not
    become the default device, to fail at the first op."""
    try:
        nvrtc.nvrtc_version()
    except CudaUnavailableError as e:
        raise CudaUnavailableError(f"{e} {_FALLBACK}") from None
    try:
        cupy.cuda.cublas  # CuPy loads libcublas when this is first read
    except (ImportError, OSError, AttributeError) as e:
        major = _cuda_major(cupy)
        raise CudaUnavailableError(
            f"cuBLAS, which gpuad's matrix products run on, was not found ({e}). Install it with "
            f"pip install 'cuda-toolkit[cublas]=={major}.*', or install gpuad with its extra, "
            f"pip install 'gpuad[cuda{major}]', which brings it. " + _FALLBACK) from None


def _cuda_major(cupy) -> int:
    """The CUDA major version CuPy was built for (12 or 13), for pip lines."""
    try:
        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:
        return 13


def _bytes(n) -> str:
    """``1,073,741,824 bytes (1.00 GiB)``."""
    n = int(n)
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.2f} {unit})"
    return f"{n:,} bytes"


def allocate_with_retry(alloc, pool, nbytes: int, device_name: str, oom_type, device_memory=None):
    """``alloc()``; if it raises ``oom_type``, free ``pool``'s cached blocks
    (``pool.free_all_blocks()``: memory the pool holds but no array uses, so no
    tensor is touched) and call ``alloc()`` once more. If that fails too, raise
    :class:`gpuad.OutOfMemoryError` naming ``nbytes``, the pool's used and total
    bytes (``pool.used_bytes()``, ``pool.total_bytes()``), ``device_name`` and the
    fix. ``device_memory``, if given, returns the device's ``(free, total)`` bytes.

    >>> class Pool:
    ...     def __init__(self): self.cached = True
    ...     def free_all_blocks(self): self.cached = False
    ...     def used_bytes(self): return 3 << 30
    ...     def total_bytes(self): return 4 << 30
    >>> pool = Pool()
    >>> def alloc():
    ...     if pool.cached:
    ...         raise MemoryError("out of memory")
    ...     return "buffer"
    >>> allocate_with_retry(alloc, pool, 1 << 20, "cuda:0", MemoryError)
    'buffer'
    """
    try:
        return alloc()
    except oom_type:
        pass  # (released below, outside the handler, so the failed attempt holds nothing)
    pool.free_all_blocks()
    try:
        return alloc()
    except oom_type as e:
        error = e
    used = total = None
    try:
        used, total = int(pool.used_bytes()), int(pool.total_bytes())
    except Exception:  # the numbers are for the message only
        pass
    msg = f"Out of memory on {device_name}: allocating {_bytes(nbytes)} failed"
    msg += " even after freeing the memory pool's cached blocks."
    if used is not None:
        msg += f" The pool holds {_bytes(used)} in use by live tensors, of {_bytes(total)} it has reserved."
    if device_memory is not None:
        try:
            free, dev_total = device_memory()
            msg += f" The device has {_bytes(free)} free of {_bytes(dev_total)}."
        except Exception:
            pass
    msg += (" To fix: use a smaller batch (or model), drop the tensors you no longer need "
            "(`del t`, then `gc.collect()`), and avoid persistent tapes that keep "
            "intermediate results alive. Tensors that existed before this error are intact.")
    raise OutOfMemoryError(msg, requested=int(nbytes), pool_used=used, pool_total=total,
                           device=device_name) from error


@functools.lru_cache(maxsize=1)
def usable() -> tuple:
    """The usable GPUs' names (probed once per process: importing CuPy is slow)."""
    try:
        return tuple(f"cuda:{i}" for i in range(probe()))
    except CudaUnavailableError:
        return ()


def device(name: str) -> KernelDevice:
    """The device ``cuda:N`` (``cuda`` is ``cuda:0``): a CudaUnavailableError saying what is
    missing where no GPU is usable, a ValueError naming the GPUs for an index out of range."""
    count = probe()
    index = int(name.split(":")[1]) if ":" in name else 0
    if not 0 <= index < count:
        raise ValueError(f"Unknown device {name!r}: this machine has {count} GPU(s), "
                         f"cuda:0 to cuda:{count - 1}. Use one of those, or 'cpu'.")
    return KernelDevice(CupyLauncher(index))


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
            self.sm_count = int(self._device.attributes["MultiProcessorCount"])
            self.capability = int(self._device.compute_capability)  # "90" on an H100
        #: An upper bound of resident blocks (2048 threads per SM of 256-thread blocks);
        #: launches use each kernel's own occupancy (:meth:`max_blocks_for`).
        self.max_blocks = 8 * self.sm_count
        self._target = None
        self._modules: dict[str, object] = {}   # family -> cupy.RawModule
        self._paths: dict[str, str] = {}         # family -> its cubin (or PTX) in the cache
        self._functions: dict[str, object] = {}  # kernel -> cupy.cuda.Function
        self._occupancy: dict[tuple, int] = {}   # (kernel, block, shared_mem) -> blocks
        self._lock = threading.Lock()
        self._generated: dict[str, _CudaGenerated] = {}  # generated source -> its module
        self._capturing = None  # the thread running :meth:`capture`, while it runs

    def target(self) -> str:
        """What the kernels are built as for this GPU: ``sm_90`` (a cubin), or PTX for
        the newest architecture NVRTC knows (``compute_XX``) on a GPU newer than it."""
        if self._target is None:
            self._target = nvrtc.target_for(self.capability)
        return self._target

    def module(self, family: str):
        """The loaded module of one kernel family (``kernels/<family>.cu``), compiled
        by NVRTC or read from the disk cache on first use; :class:`KernelCompileError`
        with the files and NVRTC's log if it does not compile."""
        module = self._modules.get(family)
        if module is None:
            with self._lock:  # one thread compiles; the others wait for its module
                module = self._modules.get(family)
                if module is None:
                    compiled = nvrtc.compile_family(family, self.target())
                    with self._device:  # (RawModule loads the file at its first get_function)
                        module = self._cupy.RawModule(path=str(compiled.path))
                    self._paths[family] = str(compiled.path)
                    self._modules[family] = module
        return module

    def compile(self, source: str):
        """Generated CUDA C ``source`` compiled by NVRTC for this GPU
        (:func:`nvrtc.compile_source`, cached on disk) and loaded; kept per source."""
        module = self._generated.get(source)
        if module is None:
            with self._lock:
                module = self._generated.get(source)
                if module is None:
                    compiled = nvrtc.compile_source(source, self.target())
                    with self._device:
                        raw = self._cupy.RawModule(path=str(compiled.path))
                    module = self._generated[source] = _CudaGenerated(self, raw)
        return module

    def _alloc(self, alloc, nbytes):
        """``alloc()`` on this GPU, retried once after freeing the pool's cache."""
        cp = self._cupy

        def device_memory():
            with self._device:
                return cp.cuda.runtime.memGetInfo()

        def run():
            with self._device:
                return alloc()
        return allocate_with_retry(run, cp.get_default_memory_pool(), nbytes, self.name,
                                   cp.cuda.memory.OutOfMemoryError, device_memory)

    def synchronize(self):
        """Wait for every kernel launched on this GPU; raises the error of a failed one."""
        self._device.synchronize()

    def empty(self, shape, dtype):
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes > (1 << 30):  # a request beyond the GPU's whole memory fails at once
            self._check_total(nbytes)  # (and never reaches CuPy's size arithmetic)
        return self._alloc(lambda: self._cupy.empty(shape, dtype), nbytes)

    def _check_total(self, nbytes):
        total = getattr(self, "_total_bytes", None)
        if total is None:
            with self._device:
                total = self._total_bytes = int(self._cupy.cuda.runtime.memGetInfo()[1])
        if nbytes > total:
            raise OutOfMemoryError(
                f"Out of memory on {self.name}: allocating {_bytes(nbytes)} is more than the "
                f"GPU's whole memory ({_bytes(total)}). To fix: ask for a smaller shape (or "
                f"process the data in batches). Nothing was allocated; tensors that existed "
                f"before are intact.", requested=int(nbytes), device=self.name)

    def from_host(self, array):
        self._no_host("a copy from the host")
        return self._alloc(lambda: self._cupy.asarray(array), array.nbytes)

    def to_host(self, buffer):
        self._no_host("a copy to the host")
        return self._cupy.asnumpy(buffer)

    def _no_host(self, what):
        # CUDA itself refuses most of these while a stream captures, but a copy from
        # pageable host memory could be recorded as one that reads that memory at every
        # replay: refuse them all, with the reason.
        if self._capturing == threading.get_ident():
            raise GraphCaptureError(f"{self.name}: {what} while capturing a CUDA graph (a graph "
                                    f"replays device work only)")

    def capture(self, fn):
        """``(graph, fn())``: the kernels, copies and cuBLAS calls ``fn`` queues,
        captured into a CUDA graph (CuPy's stream capture on a stream of its own),
        not run; ``graph.launch()`` runs them on the current stream. What ``fn``
        allocates comes from a memory pool the graph owns, so those buffers stay
        the graph's after the capture (no later allocation can be handed them)."""
        cp = self._cupy
        if self._capturing is not None:
            raise GraphCaptureError(f"{self.name}: a graph is being captured already; captures do not nest")
        pool = cp.cuda.MemoryPool()
        stream = cp.cuda.Stream(non_blocking=True)
        with self._device, cp.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            self._capturing = threading.get_ident()
            try:
                result = fn()
            except BaseException:
                self._capturing = None
                try:  # ends the (now invalid) capture; its error is the one above
                    stream.end_capture()
                except Exception:
                    pass
                raise
            self._capturing = None
            graph = stream.end_capture()
        return _CudaGraph(self, graph, pool), result

    def launch(self, kernel, grid, block, args, shared_mem=0):
        fn = self._functions.get(kernel)
        if fn is None:
            fn = self._functions[kernel] = self._function(kernel)
        grid = grid if isinstance(grid, tuple) else (grid,)
        block = block if isinstance(block, tuple) else (block,)
        with self._device:
            fn(grid, block, tuple(args), shared_mem=shared_mem)

    def max_blocks_for(self, kernel: str, block: int, shared_mem: int = 0) -> int:
        """Blocks of ``kernel`` the whole GPU runs at once: the occupancy API's blocks
        per multiprocessor (registers, shared memory and threads all counted) times
        the multiprocessors. Grid-stride launches use no more, so there is no
        partial last wave."""
        key = (kernel, block, shared_mem)
        blocks = self._occupancy.get(key)
        if blocks is None:
            fn = self._functions.get(kernel)
            if fn is None:
                fn = self._functions[kernel] = self._function(kernel)
            with self._device:
                per_sm = self._cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                    fn.ptr, block, shared_mem)
            blocks = self._occupancy[key] = max(1, int(per_sm)) * self.sm_count
        return blocks

    def _function(self, kernel):
        try:
            family = nvrtc.family_of(kernel)
        except KeyError as e:
            raise KernelLaunchError(f"kernel {kernel} is not a gpuad kernel on {self.name}: {e.args[0]}",
                                    kernel=kernel) from None
        module = self.module(family)
        with self._device:
            try:
                # RawModule.get_function gives a RawKernel; its .kernel is the
                # cupy.cuda.Function of this device: the CUfunction handle (.ptr) the
                # occupancy API takes, and a cheaper call per launch
                return module.get_function(kernel).kernel
            except Exception as e:  # CUDADriverError
                if "CUDA_ERROR_NOT_FOUND" in str(e):
                    raise KernelLaunchError(
                        f"kernel {kernel} is not in gpuad's {family} kernels on {self.name} ({e}): no "
                        f'extern "C" __global__ function of that name in kernels/{family}.cu. Check the '
                        f"kernel name and that its source defines it for this dtype.", kernel=kernel) from e
                raise KernelLaunchError(
                    f"loading gpuad's {family} kernels ({self._paths.get(family)}) on {self.name} failed: "
                    f"{e}. A damaged cache file, or a driver older than the NVRTC that built it: delete "
                    f"the file (or run python -m gpuad kernels --check --arch native), or update the "
                    f"driver.", kernel=kernel) from e

    def matmul(self, a, b, transpose_a, transpose_b):
        cp = self._cupy
        if transpose_a:
            a = cp.swapaxes(a, -1, -2)
        if transpose_b:
            b = cp.swapaxes(b, -1, -2)
        try:
            shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            nbytes = math.prod(shape) * np.result_type(a.dtype, b.dtype).itemsize
        except (IndexError, ValueError):  # not a batch of matrices: cupy.matmul will say so
            nbytes = 0
        return self._alloc(lambda: cp.matmul(a, b), nbytes)

    def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
        """Copy ``nbytes`` bytes of ``src`` from byte ``src_offset`` to ``dst`` at byte
        ``dst_offset`` (CuPy arrays on this GPU): ``cudaMemcpyAsync`` device to device on
        the current stream, in order with the kernels."""
        rt = self._cupy.cuda.runtime
        with self._device:
            rt.memcpyAsync(dst.data.ptr + dst_offset, src.data.ptr + src_offset, nbytes,
                           rt.memcpyDeviceToDevice, self._cupy.cuda.get_current_stream().ptr)


class _CudaGraph:
    """A captured CUDA graph and the memory pool of the buffers it uses."""

    def __init__(self, launcher: CupyLauncher, graph, pool):
        self.launcher, self.graph, self.pool = launcher, graph, pool

    def launch(self):
        with self.launcher._device:
            self.graph.launch()  # on the current stream, in order with the kernels


class _CudaGenerated:
    """A module of generated kernels on one GPU (:meth:`CupyLauncher.compile`)."""

    def __init__(self, launcher: CupyLauncher, raw):
        self.launcher, self.raw = launcher, raw
        self._functions: dict[str, object] = {}
        self._occupancy: dict[tuple, int] = {}

    def _function(self, kernel):
        fn = self._functions.get(kernel)
        if fn is None:
            with self.launcher._device:
                fn = self._functions[kernel] = self.raw.get_function(kernel).kernel
        return fn

    def launch(self, kernel, grid, block, args, shared_mem=0):
        fn = self._function(kernel)
        with self.launcher._device:
            fn((grid,), (block,), tuple(args), shared_mem=shared_mem)

    def max_blocks_for(self, kernel, block, shared_mem=0):
        key = (kernel, block, shared_mem)
        blocks = self._occupancy.get(key)
        if blocks is None:
            fn = self._function(kernel)
            with self.launcher._device:
                per_sm = self.launcher._cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
                    fn.ptr, block, shared_mem)
            blocks = self._occupancy[key] = max(1, int(per_sm)) * self.launcher.sm_count
        return blocks
