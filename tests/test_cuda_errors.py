"""Errors of the kernel devices: out of memory (retry after freeing the pool's cache,
then gpuad.OutOfMemoryError), kernels that do not compile, unknown kernel names,
failed launches, and GPUAD_SYNC=1. Without a GPU: fakes of CuPy's pool and module,
and the emulated device (whose launch layer is the cuda device's)."""
import sys
import types

import numpy as np
import pytest

import gpuad as ad
from gpuad.devices.cuda import CupyLauncher, allocate_with_retry
from gpuad.devices.launch import KernelCompileError, KernelDevice, KernelLaunchError
from gpuad.devices.host_build import HostBuildError, HostLaunchError, HostModule
from gpuad.devices.kernel_sources import kernel_dir

needs_emulated = pytest.mark.skipif("emulated" not in ad.devices.available(),
                                    reason="the emulated device needs a host C++ compiler (g++)")


# --------------------------------------------------------------------------- out of memory
class FakeOOM(MemoryError):
    """Stands in for cupy.cuda.memory.OutOfMemoryError (also a MemoryError)."""


class FakePool:
    def __init__(self, used=3 * 2**30, total=4 * 2**30):
        self.used, self.total, self.freed = used, total, 0

    def free_all_blocks(self):
        self.freed += 1

    def used_bytes(self):
        return self.used

    def total_bytes(self):
        return self.total


def test_oom_is_a_memory_error():
    assert issubclass(ad.OutOfMemoryError, MemoryError)
    assert ad.OutOfMemoryError is ad.errors.OutOfMemoryError


def test_allocation_succeeds_first_time_without_freeing():
    pool = FakePool()
    assert allocate_with_retry(lambda: "buf", pool, 8, "cuda:0", FakeOOM) == "buf"
    assert pool.freed == 0


def test_retry_after_freeing_the_cached_blocks():
    pool = FakePool()
    calls = []

    def alloc():
        calls.append(pool.freed)
        if pool.freed == 0:
            raise FakeOOM("out of memory")
        return "buf"
    assert allocate_with_retry(alloc, pool, 1024, "cuda:0", FakeOOM) == "buf"
    assert calls == [0, 1]  # failed, freed the cache once, succeeded
    assert pool.freed == 1


def test_both_attempts_fail_raises_out_of_memory_with_the_numbers():
    pool = FakePool(used=3 * 2**30, total=4 * 2**30)
    attempts = []

    def alloc():
        attempts.append(1)
        raise FakeOOM("out of memory allocating")
    with pytest.raises(ad.OutOfMemoryError) as e:
        allocate_with_retry(alloc, pool, 2**31, "cuda:1", FakeOOM, device_memory=lambda: (2**20, 80 * 2**30))
    assert len(attempts) == 2 and pool.freed == 1
    err = e.value
    assert isinstance(err, MemoryError)
    msg = str(err)
    assert "cuda:1" in msg
    assert "2,147,483,648 bytes" in msg and "2.00 GiB" in msg           # asked for
    assert "3,221,225,472 bytes" in msg and "4,294,967,296 bytes" in msg  # pool used / total
    assert "80.00 GiB" in msg                                             # the device
    assert "smaller batch" in msg and "del" in msg and "gc.collect()" in msg
    assert (err.requested, err.pool_used, err.pool_total, err.device) == (2**31, 3 * 2**30, 4 * 2**30, "cuda:1")
    assert isinstance(err.__cause__, FakeOOM)


def test_other_errors_are_not_retried():
    pool = FakePool()

    def alloc():
        raise ValueError("negative dimensions are not allowed")
    with pytest.raises(ValueError):
        allocate_with_retry(alloc, pool, 8, "cuda:0", FakeOOM)
    assert pool.freed == 0


# --------------------------------------------------------------------------- CupyLauncher with a fake CuPy
class FakeDriverError(RuntimeError):
    pass


def fake_cupy(*, oom_times=0):
    """Just enough of CuPy for CupyLauncher: NumPy arrays as device arrays, an
    allocator that fails ``oom_times`` times, a RawModule (loaded from the path
    NVRTC's cache gives) that knows one kernel, ``binary_known_f32``, and an
    occupancy of 4 blocks per multiprocessor."""
    cp = types.ModuleType("cupy")
    pool = FakePool(used=5 * 2**20, total=8 * 2**20)
    state = {"oom": oom_times, "launched": [], "synced": 0}

    def allocating(fn):
        def run(*a, **k):
            if state["oom"]:
                state["oom"] -= 1
                raise FakeOOM("Out of memory allocating")
            return fn(*a, **k)
        return run

    class Device:
        def __init__(self, index=0):
            self.attributes = {"MultiProcessorCount": 132}
            self.compute_capability = "90"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            state["synced"] += 1

    class Function:  # cupy.cuda.Function: the CUfunction handle, callable
        ptr = 1234

        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args, shared_mem=0):
            state["launched"].append((self.name, grid))

    class RawKernel:  # what RawModule.get_function returns: no .ptr; .kernel loads lazily
        def __init__(self, name):
            self.name = name

        @property
        def kernel(self):
            if state["load_error"]:
                raise FakeDriverError(state["load_error"])
            if not any(self.name.startswith(k) for k in state["known"]):
                raise FakeDriverError("CUDA_ERROR_NOT_FOUND: named symbol not found")
            return Function(self.name)

    class RawModule:
        def __init__(self, path):
            state["loaded"].append(path)

        def get_function(self, name):
            return RawKernel(name)

    state["known"] = {"binary_known_f32"}
    state["load_error"] = None
    state["loaded"] = []
    cp.cuda = types.SimpleNamespace(
        Device=Device, memory=types.SimpleNamespace(OutOfMemoryError=FakeOOM),
        driver=types.SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=lambda ptr, block, smem: 4),
        runtime=types.SimpleNamespace(memGetInfo=lambda: (2**20, 80 * 2**30)))
    cp.RawModule = RawModule
    cp.get_default_memory_pool = lambda: pool
    cp.empty = allocating(np.empty)
    cp.asarray = allocating(np.array)
    cp.matmul = allocating(np.matmul)
    cp.swapaxes = np.swapaxes
    cp.asnumpy = np.asarray
    cp.pool, cp.state = pool, state
    return cp


def test_cupy_launcher_allocations_retry_then_raise(monkeypatch):
    cp = fake_cupy(oom_times=1)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    launcher = CupyLauncher(0)
    assert launcher.empty((4, 4), np.dtype(np.float32)).shape == (4, 4)  # one OOM, freed, retried
    assert cp.pool.freed == 1

    cp.state["oom"] = 2  # from_host: both attempts fail
    with pytest.raises(ad.OutOfMemoryError, match=r"cuda:0: allocating 4,000 bytes") as e:
        launcher.from_host(np.zeros(1000, np.float32))
    assert "5,242,880 bytes" in str(e.value) and "8,388,608 bytes" in str(e.value)

    cp.state["oom"] = 2  # matmul's output: 3 x 5 float64
    a, b = np.ones((3, 2)), np.ones((5, 2))
    with pytest.raises(ad.OutOfMemoryError, match="allocating 120 bytes"):
        launcher.matmul(a, b, False, True)
    np.testing.assert_array_equal(launcher.matmul(a, b, False, True), np.full((3, 5), 2.0))


@pytest.fixture
def fake_nvrtc(monkeypatch, tmp_path):
    """NVRTC replaced: every family "compiles" to a file in tmp_path, or, for the
    families in ``broken`` (a dict family -> log), fails with that log."""
    from gpuad.devices import nvrtc
    calls, broken = [], {}

    def compile_family(family, arch, directory=None, cache=None):
        calls.append((family, arch))
        if family in broken:
            raise KernelCompileError(f"NVRTC could not compile gpuad's {family} kernels. Compiler log:\n"
                                     f"{broken[family]}", files=[f"{family}.cu"], log=broken[family])
        path = tmp_path / f"{family}-{arch}.cubin"
        path.write_bytes(b"cubin")
        return nvrtc.Compiled(family, arch, path, False, 0.0)

    monkeypatch.setattr(nvrtc, "compile_family", compile_family)
    monkeypatch.setattr(nvrtc, "target_for", lambda capability: f"sm_{capability}")
    return types.SimpleNamespace(calls=calls, broken=broken)


def test_cupy_launcher_compiles_one_family_on_first_use(monkeypatch, fake_nvrtc):
    cp = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    dev = KernelDevice(CupyLauncher(0))
    dev.launch("binary_known_f32", 10**6, ())
    dev.launch("binary_known_f32", 8, ())
    # only the binary family was built, for this GPU's architecture, and loaded once
    assert fake_nvrtc.calls == [("binary", "sm_90")]
    assert [p.rsplit("/", 1)[-1] for p in cp.state["loaded"]] == ["binary-sm_90.cubin"]
    # grids come from the kernel's occupancy: 4 blocks per SM x 132 SMs, fewer for small n
    assert cp.state["launched"] == [("binary_known_f32", (4 * 132,)), ("binary_known_f32", (1,))]


def test_cupy_launcher_compile_error_shows_files_and_log(monkeypatch, fake_nvrtc):
    log = ("binary.cu(12): error: identifier \"undefined_name\" is undefined\n"
           "1 error detected in the compilation of \"binary.cu\".")
    fake_nvrtc.broken["binary"] = log
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    launcher = CupyLauncher(0)
    with pytest.raises(KernelCompileError) as e:
        launcher.module("binary")
    assert isinstance(e.value, RuntimeError)
    assert "binary" in str(e.value) and "undefined_name" in str(e.value)
    assert e.value.files == ["binary.cu"] and e.value.log == log
    # through the device: the error also names the kernel being launched
    dev = KernelDevice(launcher)
    with pytest.raises(KernelCompileError, match="kernel binary_add_f32_contig on device cuda:0") as e:
        dev.launch("binary_add_f32_contig", 8, ())
    assert "undefined_name" in str(e.value) and e.value.kernel == "binary_add_f32_contig"


def test_cupy_launcher_unknown_kernel_is_named(monkeypatch, fake_nvrtc):
    cp = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    dev = KernelDevice(CupyLauncher(0))
    dev.launch("binary_known_f32", 8, ())
    assert cp.state["launched"] == [("binary_known_f32", (1,))]
    with pytest.raises(KernelLaunchError, match="kernel binary_nothing_f32 is not in gpuad's binary") as e:
        dev.launch("binary_nothing_f32", 8, ())
    assert e.value.kernel == "binary_nothing_f32"
    with pytest.raises(KernelLaunchError, match="kernel no_such_kernel is not a gpuad kernel") as e:
        dev.launch("no_such_kernel", 8, ())
    assert e.value.kernel == "no_such_kernel"


def test_cupy_launcher_gpuad_sync(monkeypatch, fake_nvrtc):
    cp = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    KernelDevice(CupyLauncher(0)).launch("binary_known_f32", 8, ())
    assert cp.state["synced"] == 0
    monkeypatch.setenv("GPUAD_SYNC", "1")
    dev = KernelDevice(CupyLauncher(0))
    dev.launch("binary_known_f32", 8, ())
    dev.launch("binary_known_f32", 8, ())
    assert cp.state["synced"] == 2


def test_cupy_launcher_reductions_size_grids_from_occupancy(monkeypatch, fake_nvrtc):
    """reduce and arg_reduce plan with the launcher's occupancy (max_blocks_for(kernel),
    block and shared memory defaulted) and launch through real RawKernel handles."""
    cp = fake_cupy()
    cp.state["known"] = {"reduce_", "arg_reduce_"}
    monkeypatch.setitem(sys.modules, "cupy", cp)
    dev = KernelDevice(CupyLauncher(0))
    x = np.ones((64, 5000), np.float32)
    dev.reduce("reduce_sum", x, (1,), False)
    dev.arg_reduce("argmax", x, 0)
    launched = [name for name, _ in cp.state["launched"]]
    assert launched and all(name.startswith(("reduce_sum_f32", "arg_reduce_argmax_f32")) for name in launched)
    assert all(grid[0] <= 4 * 132 for _, grid in cp.state["launched"])
    assert fake_nvrtc.calls == [("reduction", "sm_90")]


def test_cupy_launcher_module_load_failure_names_the_file(monkeypatch, fake_nvrtc):
    """A cache file the driver cannot load is not reported as a missing kernel."""
    cp = fake_cupy()
    cp.state["load_error"] = "CUDA_ERROR_INVALID_IMAGE: device kernel image is invalid"
    monkeypatch.setitem(sys.modules, "cupy", cp)
    dev = KernelDevice(CupyLauncher(0))
    with pytest.raises(KernelLaunchError, match=r"loading gpuad's binary kernels \(.*binary-sm_90.cubin\).*"
                                                r"INVALID_IMAGE.*delete the file") as e:
        dev.launch("binary_known_f32", 8, ())
    assert "not in gpuad's" not in str(e.value)


def test_missing_nvrtc_is_named_with_its_pip_line_not_a_launch_error(monkeypatch):
    """A GPU without NVRTC: the launch raises CudaUnavailableError naming the library and
    the pip line, not a KernelLaunchError with a hint about asynchronous kernels."""
    from gpuad.devices import nvrtc

    def missing():
        raise nvrtc.NvrtcUnavailableError("NVRTC ... was not found (libnvrtc.so.13). Install it with "
                                          "pip install 'cuda-toolkit[nvrtc]==13.*'")
    monkeypatch.setattr(nvrtc, "_nvrtc", missing)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    dev = KernelDevice(CupyLauncher(0))
    with pytest.raises(nvrtc.CudaUnavailableError, match=r"libnvrtc.*pip install") as e:
        dev.launch("binary_known_f32", 8, ())
    assert "GPUAD_SYNC" not in str(e.value)


# --------------------------------------------------------------------------- emulated: compile errors
def _host_launcher():
    from gpuad.devices.emulated import HostLauncher
    return HostLauncher


@pytest.fixture
def broken_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUAD_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "broken_family.cu"
    bad.write_text('#include "common.cuh"\n'
                   'extern "C" __global__ void broken(float* x) { x[0] = undefined_name; }\n')

    class BrokenLauncher(_host_launcher()):
        def module(self):
            if self._module is None:
                self._module = HostModule([bad], [kernel_dir()])
            return self._module
    return BrokenLauncher(poison=True)


@needs_emulated
def test_emulated_compile_error_names_the_kernel_and_shows_the_log(broken_launcher):
    dev = KernelDevice(broken_launcher)
    with pytest.raises(KernelCompileError) as e:
        dev.launch("broken", 1, (np.zeros(1, np.float32),))
    msg = str(e.value)
    assert "kernel broken on device emulated" in msg
    assert "broken_family.cu" in msg and "undefined_name" in msg and "error" in msg  # the file, the log
    assert "broken_family.cu" in e.value.files and e.value.kernel == "broken"
    assert isinstance(e.value.__cause__, HostBuildError)


@needs_emulated
def test_emulated_compile_error_through_an_op_names_the_op(broken_launcher):
    dev = KernelDevice(broken_launcher)
    with pytest.raises(KernelCompileError, match=r"kernel unary_negative_f32_contig \(op negative\)"):
        dev.unary("negative", np.ones(4, np.float32))


@needs_emulated
def test_emulated_unknown_kernel_is_named():
    dev = KernelDevice(_host_launcher()(poison=True))
    with pytest.raises(KernelLaunchError, match="kernel no_such_kernel on device emulated failed") as e:
        dev.launch("no_such_kernel", 1, ())
    assert "unknown kernel 'no_such_kernel'" in str(e.value)
    assert e.value.kernel == "no_such_kernel"
    assert isinstance(e.value.__cause__, HostLaunchError)


# --------------------------------------------------------------------------- emulated: launch failures, GPUAD_SYNC
def _counting_launcher(fail_launch=False, fail_sync=False):
    class Counting(_host_launcher()):
        launches = 0
        syncs = 0

        def launch(self, kernel, grid, block, args, shared_mem=0):
            type(self).launches += 1
            if fail_launch:
                raise HostLaunchError("thread (3,0,0) of block (0,0,0) called __trap()", 7, kernel)
            super().launch(kernel, grid, block, args, shared_mem)

        def synchronize(self):
            type(self).syncs += 1
            if fail_sync:
                raise RuntimeError("an illegal memory access was encountered")
    return Counting(poison=True)


@needs_emulated
@pytest.mark.parametrize("sync", ["", "1"])
def test_emulated_launch_error_names_kernel_and_op(monkeypatch, sync):
    monkeypatch.setenv("GPUAD_SYNC", sync)
    dev = KernelDevice(_counting_launcher(fail_launch=True))
    x = np.ones(8, np.float32)
    with pytest.raises(KernelLaunchError) as e:
        dev.binary("add", x, x)
    msg = str(e.value)
    assert msg.startswith("kernel binary_add_f32_contig (op add) on device emulated failed: ")
    assert "__trap()" in msg
    assert (e.value.kernel, e.value.op) == ("binary_add_f32_contig", "add")
    assert isinstance(e.value, RuntimeError) and isinstance(e.value.__cause__, HostLaunchError)


@needs_emulated
def test_every_family_names_its_op_in_launch_errors():
    """Each family function hands its op to KernelDevice.launch (and copy_bytes), so a failed
    launch names the op of the protocol call whatever the family."""
    class Failing(_host_launcher()):
        def launch(self, kernel, grid, block, args, shared_mem=0):
            raise HostLaunchError("injected failure", 7, kernel)

        def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
            raise RuntimeError("injected copy failure")

    dev = KernelDevice(Failing(poison=True))
    f32 = np.dtype(np.float32)
    x, c, idx = np.ones((4, 6), f32), np.ones((4, 6), bool), np.array([0, 2], np.int64)
    sgd = dict(lr=0.1, weight_decay=None, momentum=0.0, nesterov=False)
    calls = [
        ("unary", "exp", (x,), {}), ("binary", "multiply", (x, x), {}), ("unary_grad", "tanh_grad", (x, x), {}),
        ("where", "where", (c, x, x), {}), ("cast", "cast", (x, np.float64), {}), ("fill", "fill", ((3,), 1.0, f32), {}),
        ("reduce", "reduce_sum", (x, (1,), False), {}), ("arg_reduce", "argmax", (x, 1), {}),
        ("layout", "transpose", (x,), {"perm": (1, 0)}), ("concat", "concat", (x, x), {"axis": 0}),
        ("gather", "gather", (x, idx, 0), {}), ("gather", "scatter_add", (x[:2], idx, 0, (4, 6)), {}),
        ("one_hot", "one_hot", (idx, 3, 1.0, 0.0, f32), {}), ("softmax", "log_softmax", (x, 1), {}),
        ("softmax_xent", "softmax_cross_entropy", (x, x, 1), {}), ("random", "random_normal", ((8,), f32, 1, 0), {}),
        ("optim", "sgd", ([x.copy()], [x], [], sgd), {}),
    ]
    for family, op, args, kwargs in calls:
        with pytest.raises(KernelLaunchError) as e:
            getattr(dev, family)(op, *args, **kwargs)
        assert e.value.op == op and f"(op {op}) on device emulated failed: injected" in str(e.value), (family, op)


@needs_emulated
def test_gpuad_sync_synchronizes_once_per_launch(monkeypatch):
    monkeypatch.delenv("GPUAD_SYNC", raising=False)
    launcher = _counting_launcher()
    dev = KernelDevice(launcher)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    dev.binary("multiply", x, x)
    assert launcher.launches >= 1 and launcher.syncs == 0

    monkeypatch.setenv("GPUAD_SYNC", "1")
    launcher = _counting_launcher()
    dev = KernelDevice(launcher)
    np.testing.assert_array_equal(dev.binary("multiply", x, x), x * x)
    dev.reduce("reduce_sum", x, (1,), False)
    dev.unary("exp", x.T)
    assert launcher.launches >= 3
    assert launcher.syncs == launcher.launches


@needs_emulated
def test_gpuad_sync_error_names_the_kernel(monkeypatch):
    monkeypatch.setenv("GPUAD_SYNC", "1")
    dev = KernelDevice(_counting_launcher(fail_sync=True))
    x = np.ones(5, np.float32)
    with pytest.raises(KernelLaunchError, match=r"kernel unary_sqrt_f32_contig \(op sqrt\) .*illegal memory"):
        dev.unary("sqrt", x)


def test_gpuad_sync_is_read_when_the_device_is_created(monkeypatch):
    monkeypatch.setenv("GPUAD_SYNC", "1")
    assert KernelDevice(types.SimpleNamespace(name="x", kind="emulated", max_blocks=1)).sync
    monkeypatch.setenv("GPUAD_SYNC", "0")
    assert not KernelDevice(types.SimpleNamespace(name="x", kind="emulated", max_blocks=1)).sync


def test_emulated_launcher_synchronize_is_a_no_op():
    from gpuad.devices.emulated import HostLauncher
    assert HostLauncher().synchronize() is None


# --------------------------------------------------------------------------- probe: what a GPU needs
class _CudaNamespace(types.SimpleNamespace):
    """``cupy.cuda`` whose ``cublas`` attribute fails to load, as CuPy's does without libcublas."""

    def __getattr__(self, name):
        if name == "cublas":
            raise ImportError("libcublas.so.13: cannot open shared object file: No such file or directory")
        raise AttributeError(name)


class _Gpu:
    def __init__(self, index, capability="90"):
        self.compute_capability = capability

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _cupy_with_one_gpu(monkeypatch, *, cublas: bool, capability="90"):
    cp = types.ModuleType("cupy")
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 13000)
    device = lambda index: _Gpu(index, capability)  # noqa: E731
    cp.cuda = (types.SimpleNamespace(runtime=runtime, cublas=object(), Device=device) if cublas
               else _CudaNamespace(runtime=runtime, Device=device))
    monkeypatch.setitem(sys.modules, "cupy", cp)


def test_probe_refuses_a_gpu_without_nvrtc(monkeypatch):
    from gpuad.devices import cuda, nvrtc

    def missing():
        raise nvrtc.NvrtcUnavailableError("NVRTC was not found (libnvrtc.so.13). Install it with "
                                          "pip install 'cuda-toolkit[nvrtc]==13.*'")
    monkeypatch.setattr(nvrtc, "_nvrtc", missing)
    _cupy_with_one_gpu(monkeypatch, cublas=True)
    with pytest.raises(cuda.CudaUnavailableError, match=r"libnvrtc.*pip install.*GPUAD_DEVICE=cpu"):
        cuda.probe()


def test_probe_refuses_a_gpu_without_cublas(monkeypatch):
    from gpuad.devices import cuda, nvrtc
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: (13, 0))
    monkeypatch.setattr(nvrtc, "supported_archs", lambda: (75, 80, 86, 89, 90, 100, 120))
    _cupy_with_one_gpu(monkeypatch, cublas=False)
    with pytest.raises(cuda.CudaUnavailableError,
                       match=r"cuBLAS.*libcublas.so.13.*pip install 'cuda-toolkit\[cublas\]==13\.\*'"):
        cuda.probe()
    _cupy_with_one_gpu(monkeypatch, cublas=True)
    assert cuda.probe() == 1
    # a Volta GPU with CUDA 13's NVRTC is not chosen: no kernel could be built for it
    _cupy_with_one_gpu(monkeypatch, cublas=True, capability="70")
    with pytest.raises(cuda.CudaUnavailableError, match=r"cuda:0: .*7\.0.*gpuad\[cuda12\].*GPUAD_DEVICE=cpu"):
        cuda.probe()


def test_nvrtc_missing_message_names_the_library_and_the_fix(monkeypatch):
    """The real loader's message when libnvrtc cannot be found (CuPy without the NVIDIA wheel)."""
    from gpuad.devices import nvrtc

    class Failing(types.ModuleType):
        def getVersion(self):
            raise OSError('Failure finding "libnvrtc.so.13": No such file')
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.nvrtc = Failing("nvrtc")
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs", libs)
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.nvrtc", libs.nvrtc)
    monkeypatch.setattr(nvrtc, "_nvrtc_module", None)
    with pytest.raises(nvrtc.NvrtcUnavailableError, match=r"libnvrtc.so.13.*pip install 'cuda-toolkit\[nvrtc\]"):
        nvrtc.nvrtc_version()
