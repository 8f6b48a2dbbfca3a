#!/usr/bin/env python3
"""Achieved memory bandwidth of gpuad's CUDA kernel families, against a
device-to-device copy measured in the same run, and the launch overhead of one
small op from Python.

What is measured
----------------
Every kernel here is memory-bound, so its figure is **bandwidth**: the fewest
bytes it must move (each input read once, each output written once) divided
by its time, in GB/s (10^9 bytes/s), and that as a percentage of the copy
bandwidth measured in the same run. The kernels are called through the public
device protocol (``dev = gpuad.devices.get("cuda:0")``; ``dev.unary("exp",
buf)``, ``dev.reduce("reduce_sum", buf, axes=..., keepdims=False)``, ...), so the
launch layer's host work is part of each call, as it is for gpuad's ops.

With N = ``--elements`` float32 elements (default 64M = 2^26):

  copy          D2D copy of N elements: cudaMemcpyAsync, and CuPy's ``dst[...] = src``
                (the faster of the two is the reference, "100 %")
  exp           unary exp, contiguous                       target >= 90 % of copy
  add           binary add of two N-vectors, contiguous     target >= 90 %
  add_bcast     (N/1024, 1024) + (1024,)                    target >= 75 %
  sum_all       sum over all of (N/1024, 1024)              target >= 75 %
  sum_last      sum over the last axis of (N/1024, 1024)    target >= 75 %
  sum_first     sum over the first axis of (N/1024, 1024)   target >= 75 %
  transpose     (8192, N/8192) -> (N/8192, 8192), tiled     target >= 75 %
  softmax       softmax along the rows of (N/1024, 1024)    target >= 75 %
  gather        rows of (N/1024, 1024) by a permutation     (no target set)
  adam          one fused Adam step over N parameters       target >= 80 %
                (reads parameter, gradient and both slots, writes parameter and
                slots: 28 bytes per element; checked bit for bit against the cpu
                device's update)

and, beside each, the same operation in CuPy (its own kernels, CUB reductions)
as the peer. ``overhead`` times one small op from Python: ``x + 1.0`` with
``x = gpuad.constant([1., 2.])`` on the device, 1000 times in a loop, with one
device synchronisation at the end (target: under 10 us per op), beside the
launch layer alone (``dev.binary``), CuPy and PyTorch doing the same.

How it is timed
---------------
Every result is first checked against NumPy on the host (the whole output;
bit-exact where float32 arithmetic is exact: copies, adds and sums of
integer-valued floats; within 1e-5 (exp) and 1e-4 (softmax) relative error of
float64, element by element: float32 lands far below, a wrong element far above). Before that check the memory pool is poisoned with NaN, so an
element a kernel never writes shows. A kernel or peer that disagrees is
reported as ``WRONG`` instead of timed, and the script exits 1.

On ``cuda`` each repeat is timed with CUDA events around ``--inner`` calls
(default 10) on the current stream, after ``--warmup`` calls; a short spin
kernel is queued first so that the host has queued all the calls before the
start event fires (host time is not in the figure; a repeat where the host was
slower than the spin is counted in ``host_bound_repeats``). The figure is the
median of ``--repeats`` repeats (default 20). The inputs (256 MB each at the
default size) are far larger than the L2 cache.

On ``emulated`` (the same kernels compiled for the host; a smoke test of this
script) the "copy" is a NumPy copy and times come from ``time.perf_counter``:
**those figures mean nothing** and the script says so.

Output
------
A Markdown table on stdout (for benchmarks/README.md) and everything, every
repeat included, as JSON in ``--out`` (default benchmarks/results), named
``<device>-<YYYY-MM-DD>-kernels.json``; the caller keeps the log (``| tee``).

    PYTHONPATH=. python benchmarks/kernels.py 2>&1 | tee benchmarks/results/<device>-<date>-kernels.log
    python benchmarks/kernels.py --device emulated --elements 65536 --repeats 2   # smoke test
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
TARGET_CONTIG = 0.90    # contiguous element-wise: >= 90 % of copy bandwidth
TARGET_OTHER = 0.75     # broadcasting binaries, reductions, softmax, transposes: >= 75 %
TARGET_OPTIM = 0.80     # the fused optimizer step: >= 80 %
TARGET_OVERHEAD_US = 10.0
ROW = 1024              # row length of the 2-D workloads
TRANSPOSE_ROWS = 8192
OVERHEAD_ITERS = 1000


def use_this_checkout():
    """Import gpuad from this checkout, not from some installed copy."""
    if (ROOT / "gpuad" / "__init__.py").is_file() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


# -- the machine ------------------------------------------------------------------------------

def _run_text(cmd) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision() -> str | None:
    rev = _run_text(["git", "rev-parse", "--short", "HEAD"])
    if rev is None:
        return None
    dirty = _run_text(["git", "status", "--porcelain", "--untracked-files=no"])
    return rev + ("-dirty" if dirty else "")


def module_version(name: str) -> str | None:
    """The version of an installed module, without importing it when it is not already."""
    mod = sys.modules.get(name)
    if mod is not None:
        return getattr(mod, "__version__", "unknown")
    try:
        from importlib import metadata
    except ImportError:
        return None
    for dist in {"cupy": ("cupy-cuda13x", "cupy-cuda12x", "cupy"), "torch": ("torch",),
                 "pynvml": ("nvidia-ml-py",)}.get(name, (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _gpu_info(index: int) -> dict:
    """Name, memory, driver and CUDA versions of GPU ``index``, from every source that works."""
    info: dict = {}
    try:
        import gpuad
        facts = gpuad.devices.info()
        info["gpuad_devices_info"] = facts
        # NVML's numbering can differ from CUDA's (CUDA_VISIBLE_DEVICES): trust it for
        # the name only where it sees a single GPU or CUDA sees them all in NVML's order
        gpus = [g for g in facts.get("gpus") or [] if isinstance(g, dict)]
        gpu = gpus[index] if len(gpus) > index and not os.environ.get("CUDA_VISIBLE_DEVICES") else (
            gpus[0] if len(gpus) == 1 else None)
        if gpu is not None:
            if gpu.get("name"):
                info["name"] = str(gpu["name"])
                info["name_from"] = "gpuad.devices.info()"
            for key, as_ in (("driver_version", "driver"), ("cuda_driver_version", "cuda_driver"),
                             ("compute_capability", "compute_capability"), ("power_limit", "power_limit_w"),
                             ("memory_total", "memory_bytes")):
                if gpu.get(key) is not None:
                    info[as_] = gpu[key]
        elif facts.get("gpu_status") and facts.get("gpu_status") != "ok":
            info["gpuad_gpu_status"] = facts["gpu_status"]
    except Exception as e:  # noqa: BLE001 -- the benchmark must run regardless
        info["gpuad_devices_info_error"] = f"{type(e).__name__}: {e}"
    try:
        import cupy
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(index)
        name = props.get("name", b"")
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        info.setdefault("name", name)
        info.setdefault("name_from", "cupy.cuda.runtime.getDeviceProperties")
        info.setdefault("compute_capability", f"{props.get('major')}.{props.get('minor')}")
        for key, as_ in (("multiProcessorCount", "multiprocessors"), ("totalGlobalMem", "memory_bytes"),
                         ("l2CacheSize", "l2_cache_bytes"), ("memoryBusWidth", "memory_bus_bits"),
                         ("memoryClockRate", "memory_clock_khz"), ("clockRate", "sm_clock_khz")):
            if key in props:
                info.setdefault(as_, int(props[key]))
        info["cuda_driver_api_version"] = rt.driverGetVersion()    # e.g. 13000 = CUDA 13.0
        info["cuda_runtime_version"] = rt.runtimeGetVersion()
        try:
            from cupy_backends.cuda.libs import nvrtc
            info["nvrtc_version"] = ".".join(map(str, nvrtc.getVersion()))
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001
        info["cupy_error"] = f"{type(e).__name__}: {e}"
    if "driver" not in info:
        try:
            import pynvml
            pynvml.nvmlInit()
            drv = pynvml.nvmlSystemGetDriverVersion()
            info["driver"] = drv.decode() if isinstance(drv, bytes) else str(drv)
        except Exception:  # noqa: BLE001
            smi = _run_text(["nvidia-smi", f"--id={index}", "--query-gpu=driver_version",
                             "--format=csv,noheader"])
            if smi:
                info["driver"] = smi.splitlines()[0].strip()
    return info


def environment(device_name: str) -> dict:
    """Everything about the machine and the software that a result needs beside it."""
    from gpuad.devices.telemetry import cpu_info  # (this checkout's gpuad: main() imported it first)
    kind = device_name.split(":")[0]
    env = {
        "device": {"gpuad_device": device_name, "kind": kind},
        "host": {"cpu": cpu_info()["model"], "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "gpuad": None, "gpuad_git": git_revision(),
                     "cupy": module_version("cupy"), "torch": module_version("torch")},
    }
    try:
        import gpuad
        env["versions"]["gpuad"] = gpuad.__version__
    except Exception:  # noqa: BLE001
        pass
    if kind == "cuda":
        index = int(device_name.split(":")[1]) if ":" in device_name else 0
        env["device"].update(_gpu_info(index))
    return env


def device_slug(env: dict) -> str:
    """The device part of a results file name: the GPU's name on cuda, else the device kind."""
    dev = env["device"]
    if dev["kind"] == "cuda" and dev.get("name"):
        return re.sub(r"[^a-z0-9]+", "-", dev["name"].lower()).strip("-") or "cuda"
    return dev["kind"]


def command_line() -> str:
    return shlex.join([Path(sys.executable).name] + sys.argv)


def write_results(report: dict, out_dir, name: str) -> Path:
    """``<out_dir>/<device>-<YYYY-MM-DD>-<name>.json`` (``-2``, ``-3``... rather than
    overwrite an earlier run of the same day)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{device_slug(report)}-{report['date'][:10]}-{name}"
    path = out_dir / f"{stem}.json"
    k = 2
    while path.exists():
        path = out_dir / f"{stem}-{k}.json"
        k += 1
    path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return o.decode(errors="replace")
    return str(o)


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# -- backends: buffers, copies, timers ---------------------------------------------------------

SPIN_SOURCE = r"""
extern "C" __global__ void gpuad_bench_spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


class CudaBackend:
    """Times with CUDA events on CuPy's current stream (the one gpuad launches on)."""

    meaningful = True

    def __init__(self, dev, name):
        import cupy
        self.cp = cupy
        self.xp = cupy
        self.dev = dev
        self.index = int(name.split(":")[1]) if ":" in name else 0
        self.device = cupy.cuda.Device(self.index)
        self.device.use()
        self._spin = cupy.RawKernel(SPIN_SOURCE, "gpuad_bench_spin")
        self.cycles_per_ms = self._calibrate()

    def stream(self):
        return self.cp.cuda.get_current_stream()

    def synchronize(self):
        self.device.synchronize()

    def _spin_for(self, cycles):
        self._spin((1,), (1,), (np.int64(max(int(cycles), 1)),))

    def _calibrate(self) -> float:
        cp = self.cp
        s = self.stream()
        self._spin_for(1000)
        self.synchronize()
        a, b = cp.cuda.Event(), cp.cuda.Event()
        cycles = 1 << 22
        a.record(s)
        self._spin_for(cycles)
        b.record(s)
        b.synchronize()
        ms = cp.cuda.get_elapsed_time(a, b)
        return self._clamp_rate(cycles / ms if ms > 0 else 1.5e6)

    @staticmethod
    def _clamp_rate(cycles_per_ms):
        return min(max(cycles_per_ms, 1e5), 5e6)  # 100 MHz .. 5 GHz: never a runaway spin

    def peer_name(self):
        return f"cupy {self.cp.__version__}"

    def upload(self, array):
        return self.dev.from_host(array)

    def download(self, buf):
        return self.dev.to_host(buf)

    def empty_like(self, buf):
        return self.cp.empty_like(buf)

    def poison(self, nbytes):
        """Leave one NaN-filled free block of ``nbytes`` in CuPy's pool, so that the next
        allocation of that size (the kernel's output) starts as NaN (best effort)."""
        cp = self.cp
        self.synchronize()
        cp.get_default_memory_pool().free_all_blocks()
        n = max(1, -(-int(nbytes) // 4))
        block = cp.empty(n, np.float32)
        block.fill(np.nan)
        del block

    def copies(self, src, dst):
        rt = self.cp.cuda.runtime
        nbytes = src.nbytes

        def memcpy():
            rt.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, rt.memcpyDeviceToDevice, self.stream().ptr)

        def assign():
            dst[...] = src
        return {"cudaMemcpyAsync D2D": memcpy, "cupy dst[...] = src": assign}

    def time(self, fn, inner, repeats, warmup):
        """Milliseconds per call, one figure per repeat, by CUDA events."""
        cp = self.cp
        s = self.stream()
        for _ in range(warmup):
            fn()
        self.synchronize()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        host_ms = (time.perf_counter() - t0) * 1e3
        self.synchronize()
        spin_ms = 1.5 * host_ms + 0.2
        ev0, start, end = cp.cuda.Event(), cp.cuda.Event(), cp.cuda.Event()
        runs, host_bound = [], 0
        for _ in range(repeats):
            self.synchronize()
            spin_ms = min(spin_ms, 200.0)
            cycles = spin_ms * self.cycles_per_ms
            ev0.record(s)
            self._spin_for(cycles)
            start.record(s)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            host_ms = (time.perf_counter() - t0) * 1e3
            end.record(s)
            end.synchronize()
            runs.append(cp.cuda.get_elapsed_time(start, end) / inner)
            spun = cp.cuda.get_elapsed_time(ev0, start)
            if spun > 0.05:  # the SM clock changes under load: keep the spin's rate current
                self.cycles_per_ms = self._clamp_rate(cycles / spun)
            if host_ms > spun:  # the GPU may have waited for the host: spin longer next time
                host_bound += 1
                spin_ms = 2 * host_ms + 0.2
        return runs, {"host_bound_repeats": host_bound, "timer": "cuda events"}


class HostBackend:
    """The emulated device: NumPy buffers, wall-clock times. The figures mean nothing."""

    meaningful = False

    def __init__(self, dev, name):
        self.xp = np
        self.dev = dev

    def synchronize(self):
        pass

    def peer_name(self):
        return f"numpy {np.__version__}"

    def upload(self, array):
        return self.dev.from_host(array)

    def download(self, buf):
        return self.dev.to_host(buf)

    def empty_like(self, buf):
        return np.empty_like(buf)

    def poison(self, nbytes):
        pass  # GPUAD_POISON=1: the emulated device fills every new buffer with NaN

    def copies(self, src, dst):
        def copy():
            np.copyto(dst, src)
        return {"numpy copyto": copy}

    def time(self, fn, inner, repeats, warmup):
        for _ in range(warmup):
            fn()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            runs.append((time.perf_counter() - t0) * 1e3 / inner)
        return runs, {"timer": "time.perf_counter (host)"}


# -- workloads ----------------------------------------------------------------------------------

class Workload:
    def __init__(self, key, what, target, nbytes, gpuad, peer, reference, check, shape):
        self.key, self.what, self.target, self.nbytes = key, what, target, nbytes
        self.gpuad, self.peer, self.reference, self.check, self.shape = gpuad, peer, reference, check, shape


def _exact(got, want):
    """Bit-exact agreement (float32 results that involve no rounding, or the same rounding)."""
    want = np.asarray(want)
    if got.shape != want.shape:
        return False, f"shape {got.shape}, expected {want.shape}"
    bad = got != want if got.dtype == want.dtype else got.astype(np.float64) != want.astype(np.float64)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        return False, (f"{int(bad.sum())} of {bad.size} elements differ, first at flat index {i}: "
                       f"{got.ravel()[i]!r} vs {want.ravel()[i]!r}")
    return True, "exact"


def _relative(tol):
    def check(got, want):
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            return False, f"shape {got.shape}, expected {want.shape}"
        g = got.astype(np.float64)
        if not np.all(np.isfinite(g)):
            return False, f"{int((~np.isfinite(g)).sum())} non-finite elements"
        err = float(np.max(np.abs(g - want) / np.maximum(np.abs(want), 1e-30)))
        return err <= tol, f"max relative error {err:.2e} (tolerance {tol:.0e})"
    return check


def _softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def transpose_shape(n: int) -> tuple:
    """(8192, n/8192) where that leaves both sides tile-sized, else a square-ish matrix."""
    if n % TRANSPOSE_ROWS == 0 and n // TRANSPOSE_ROWS >= 64:
        return TRANSPOSE_ROWS, n // TRANSPOSE_ROWS
    r = 1 << (n.bit_length() - 1) // 2
    while n % r:
        r //= 2
    return r, n // r


def make_workloads(dev, be, n, rng):
    """The workloads over shared device inputs (uploaded once) and their host copies."""
    xp = be.xp
    f32 = np.float32
    rows = n // ROW
    xh = rng.standard_normal(n, dtype=f32)
    yh = rng.standard_normal(n, dtype=f32)
    # integer-valued floats: every partial sum is exact in float32 (|partial| << 2^24),
    # so a sum in any order must equal the float64 reference exactly
    ih = rng.integers(-8, 9, size=n).astype(f32)
    bh = rng.standard_normal(ROW, dtype=f32)
    perm = rng.permutation(rows).astype(np.int32)
    tr, tc = transpose_shape(n)

    x, y, xi, b, idx = (be.upload(a) for a in (xh, yh, ih, bh, perm))
    X = dev.layout("reshape", x, shape=(rows, ROW))
    XI = dev.layout("reshape", xi, shape=(rows, ROW))
    XT = dev.layout("reshape", x, shape=(tr, tc))
    Xh, XIh = xh.reshape(rows, ROW), ih.reshape(rows, ROW)

    def p_softmax():
        e = xp.exp(X - X.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    W = Workload
    return [
        W("exp", "unary exp, contiguous", TARGET_CONTIG, 8 * n,
          lambda: dev.unary("exp", x), lambda: xp.exp(x),
          lambda: np.exp(xh.astype(np.float64)), _relative(1e-5), f"({n},)"),
        W("add", "binary add, contiguous", TARGET_CONTIG, 12 * n,
          lambda: dev.binary("add", x, y), lambda: x + y,
          lambda: xh + yh, _exact, f"({n},) + ({n},)"),
        W("add_bcast", "binary add, broadcasting", TARGET_OTHER, 8 * n + 4 * ROW,
          lambda: dev.binary("add", X, b), lambda: X + b,
          lambda: Xh + bh, _exact, f"({rows}, {ROW}) + ({ROW},)"),
        W("sum_all", "reduce sum, all axes", TARGET_OTHER, 4 * n + 4,
          lambda: dev.reduce("reduce_sum", XI, axes=(0, 1), keepdims=False), lambda: XI.sum(),
          lambda: np.asarray(ih.astype(np.float64).sum()), _exact, f"({rows}, {ROW}) -> ()"),
        W("sum_last", "reduce sum, last axis", TARGET_OTHER, 4 * n + 4 * rows,
          lambda: dev.reduce("reduce_sum", XI, axes=(1,), keepdims=False), lambda: XI.sum(axis=1),
          lambda: XIh.astype(np.float64).sum(axis=1), _exact, f"({rows}, {ROW}) -> ({rows},)"),
        W("sum_first", "reduce sum, first axis", TARGET_OTHER, 4 * n + 4 * ROW,
          lambda: dev.reduce("reduce_sum", XI, axes=(0,), keepdims=False), lambda: XI.sum(axis=0),
          lambda: XIh.astype(np.float64).sum(axis=0), _exact, f"({rows}, {ROW}) -> ({ROW},)"),
        W("transpose", "transpose (tiled)", TARGET_OTHER, 8 * n,
          lambda: dev.layout("transpose", XT, perm=(1, 0)), lambda: xp.ascontiguousarray(XT.T),
          lambda: xh.reshape(tr, tc).T, _exact, f"({tr}, {tc}) -> ({tc}, {tr})"),
        W("softmax", "softmax along rows", TARGET_OTHER, 8 * n,
          lambda: dev.softmax("softmax", X, axis=1), p_softmax,
          lambda: _softmax64(Xh), _relative(1e-4), f"({rows}, {ROW}), axis 1"),
        W("gather", "gather rows (a permutation)", None, 8 * n + 4 * rows,
          lambda: dev.gather("gather", X, idx, axis=0), lambda: xp.take(X, idx, axis=0),
          lambda: Xh[perm], _exact, f"({rows}, {ROW})[perm of {rows}]"),
        adam_workload(dev, be, n, rng),
    ]


#: One Adam step (Keras 3's rule; step 1, learning rate 1e-3) as the optim family takes it.
ADAM = {"lr": 1e-3, "weight_decay": None, "alpha": 1e-3 * (1 - 0.999) ** 0.5 / (1 - 0.9),
        "one_minus_beta_1": 0.1, "one_minus_beta_2": 0.001, "epsilon": 1e-7, "amsgrad": False}


def adam_workload(dev, be, n, rng):
    """The fused optimizer step over one n-element float32 parameter: gpuad's one
    launch, against the same update in the peer's array operations (one pass per
    operation, as the cpu device does it). The first call of each is checked against
    the cpu device's update of the same state, bit for bit: the optim kernels are
    compiled without FMA contraction so that they round as NumPy does."""
    from gpuad.devices import get
    f32 = np.float32
    state = [rng.standard_normal(n, dtype=f32), rng.standard_normal(n, dtype=f32),
             (rng.standard_normal(n, dtype=f32) * 0.1).astype(f32), rng.random(n, dtype=f32)]  # p, g, m, v
    ours = [be.upload(a) for a in state]
    theirs = [be.upload(a) for a in state]
    tables = {}  # the optimizer's pointer-table cache: steady-state steps upload nothing

    def gpuad_step():  # in place on a kernel device: the buffers it returns are ours
        p, g, m, v = ours
        (p,), ((m,), (v,)) = dev.optim("adam", [p], [g], [[m], [v]], ADAM, cache=tables)
        ours[0], ours[2], ours[3] = p, m, v
        return p

    def peer_step():
        p, g, m, v = theirs
        xp = be.xp
        m += (g - m) * f32(ADAM["one_minus_beta_1"])
        v += (g * g - v) * f32(ADAM["one_minus_beta_2"])
        p -= (m * f32(ADAM["alpha"])) / (xp.sqrt(v) + f32(ADAM["epsilon"]))
        return p

    def reference():
        p, g, m, v = state
        (p,), _ = get("cpu").optim("adam", [p], [g], [[m], [v]], ADAM)
        return p

    return Workload("adam", "fused Adam step (optim family)", TARGET_OPTIM, 28 * n, gpuad_step, peer_step,
                    reference, _exact, f"({n},) parameter, 2 slots")


def _verify(be, fn, reference, check, out_nbytes):
    """Run ``fn`` once into a poisoned pool and check its whole output on the host."""
    be.poison(out_nbytes)
    out = fn()
    be.synchronize()
    got = np.asarray(be.download(out))
    return check(got, reference)


def measure_kernels(dev, be, n, repeats, inner, warmup, rng) -> tuple[dict, dict]:
    # -- the copy: the reference bandwidth ---------------------------------------------------
    src = be.upload(rng.standard_normal(n, dtype=np.float32))
    dst = be.empty_like(src)
    copy = {"bytes": 8 * n, "methods": {}}
    src_host = be.download(src)
    for name, fn in be.copies(src, dst).items():
        entry = copy["methods"][name] = {"status": "ok"}
        try:
            be.poison(4 * n)
            fn()
            be.synchronize()
            ok, detail = _exact(np.asarray(be.download(dst)), src_host)
            if not ok:
                entry.update(status="WRONG", detail=detail)
                continue
            runs, how = be.time(fn, inner, repeats, warmup)
            entry.update(how, runs_ms=runs, median_ms=statistics.median(runs))
            entry["gbps"] = copy["bytes"] / (entry["median_ms"] * 1e-3) / 1e9
        except Exception as e:  # noqa: BLE001
            entry.update(status="error", error=f"{type(e).__name__}: {e}")
    good = {k: e["gbps"] for k, e in copy["methods"].items() if e.get("status") == "ok"}
    if good:
        copy["reference"] = max(good, key=good.get)
        copy["gbps"] = good[copy["reference"]]
    del src, dst, src_host

    # -- the kernel families -------------------------------------------------------------------
    results = {}
    for w in make_workloads(dev, be, n, rng):
        entry = results[w.key] = {"what": w.what, "shape": w.shape, "bytes": w.nbytes,
                                  "target_fraction_of_copy": w.target}
        want = w.reference()
        out_nbytes = want.size * 4
        for who, fn in (("gpuad", w.gpuad), ("peer", w.peer)):
            e = entry[who] = {"status": "ok"}
            try:
                ok, detail = _verify(be, fn, want, w.check, out_nbytes)
                e["check"] = detail
                if not ok:
                    e["status"] = "WRONG"
                    continue
                runs, how = be.time(fn, inner, repeats, warmup)
                e.update(how, runs_ms=runs, median_ms=statistics.median(runs), min_ms=min(runs))
                e["gbps"] = w.nbytes / (e["median_ms"] * 1e-3) / 1e9
                if copy.get("gbps"):
                    e["fraction_of_copy"] = e["gbps"] / copy["gbps"]
            except Exception as ex:  # noqa: BLE001
                e.update(status="error", error=f"{type(ex).__name__}: {ex}")
        g, p = entry["gpuad"], entry["peer"]
        if w.target is not None and "fraction_of_copy" in g:
            g["meets_target"] = g["fraction_of_copy"] >= w.target
        if g.get("median_ms") and p.get("median_ms"):
            entry["time_ratio_gpuad_over_peer"] = g["median_ms"] / p["median_ms"]
        del want
    return copy, results


# -- launch overhead ------------------------------------------------------------------------------

def measure_overhead(ad, dev, be, name, repeats, kind) -> dict:
    """Microseconds per small op issued from Python, synchronising once per loop of 1000."""
    with ad.device(name):
        x = ad.constant([1.0, 2.0])
        yt = ad.constant([3.0, 4.0])
    a = be.upload(np.array([1.0, 2.0], np.float32))
    b = be.upload(np.array([3.0, 4.0], np.float32))
    cases = {}

    def gpuad_scalar():
        return x + 1.0

    def gpuad_tensors():
        return x + yt

    def gpuad_literal():
        with ad.device(name):
            return ad.constant([1.0, 2.0]) + 1.0

    def launch_layer():
        return dev.binary("add", a, b)

    cases["gpuad: x + 1.0"] = (gpuad_scalar, [2.0, 3.0], True)
    cases["gpuad: x + y"] = (gpuad_tensors, [4.0, 6.0], False)
    cases["gpuad: constant([1., 2.]) + 1.0 (with its host-to-device copy)"] = (gpuad_literal, [2.0, 3.0], False)
    cases["gpuad launch layer: dev.binary('add', a, b)"] = (launch_layer, [4.0, 6.0], False)
    xp = be.xp
    pa, pb = (a, b) if kind == "cuda" else (np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32))
    cases[f"{be.peer_name().split()[0]}: a + b"] = (lambda: xp.add(pa, pb), [4.0, 6.0], False)
    torch_dev = None
    if kind == "cuda":
        try:
            import torch
            if torch.cuda.is_available():
                torch_dev = torch.device("cuda", be.index)
                ta = torch.tensor([1.0, 2.0], device=torch_dev)
                cases["torch: a + 1.0"] = (lambda: ta + 1.0, [2.0, 3.0], False)
        except ImportError:
            pass

    def to_numpy(v):
        if isinstance(v, ad.Tensor):
            return v.numpy()
        module = type(v).__module__
        if module.startswith("torch"):
            return v.detach().cpu().numpy()
        if module.startswith("cupy"):
            return v.get()
        return np.asarray(v)

    def sync():
        be.synchronize()
        if torch_dev is not None:
            import torch
            torch.cuda.synchronize(torch_dev)

    results = {}
    for label, (fn, want, is_target) in cases.items():
        e = results[label] = {"status": "ok", "iterations": OVERHEAD_ITERS}
        if is_target:
            e["target_us"] = TARGET_OVERHEAD_US
        try:
            got = to_numpy(fn())
            if not np.array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32)):
                e.update(status="WRONG", detail=f"{got!r}, expected {want!r}")
                continue
            for _ in range(100):
                fn()
            sync()
            runs = []
            for _ in range(max(repeats, 5)):
                t0 = time.perf_counter()
                for _ in range(OVERHEAD_ITERS):
                    fn()
                sync()
                runs.append((time.perf_counter() - t0) / OVERHEAD_ITERS * 1e6)
            e.update(runs_us=runs, median_us=statistics.median(runs), min_us=min(runs))
            if is_target:
                e["meets_target"] = e["median_us"] < TARGET_OVERHEAD_US
        except Exception as ex:  # noqa: BLE001
            e.update(status="error", error=f"{type(ex).__name__}: {ex}")
    return results


# -- output ---------------------------------------------------------------------------------------

def _pct(f):
    return f"{100 * f:.0f} %" if f is not None else "-"


def _num(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _bw_cell(e):
    if e.get("status") == "ok" and "gbps" in e:
        return _num(e["gbps"])
    if e.get("status") == "WRONG":
        return "WRONG"
    return e.get("status", "-")


def format_tables(report) -> str:
    copy, results = report["copy"], report["results"]
    peer = report["settings"]["peer"].split()[0]
    head = ["kernel", "shape", "MB moved", "gpuad GB/s", "% of copy", "target", "met",
            f"{peer} GB/s", f"{peer} % of copy", f"gpuad/{peer} time"]
    rows = []
    for name, m in copy["methods"].items():
        ref = name == copy.get("reference")
        frac = m["gbps"] / copy["gbps"] if m.get("gbps") and copy.get("gbps") else None
        rows.append([f"copy: {name}" + (" (reference)" if ref else ""), f"({report['settings']['elements']},)",
                     _num(copy['bytes'] / 1e6), _bw_cell(m), _pct(frac), "-", "-", "-", "-", "-"])
    for key, r in results.items():
        g, p = r["gpuad"], r["peer"]
        t = r["target_fraction_of_copy"]
        met = "-" if t is None or "meets_target" not in g else ("yes" if g["meets_target"] else "**NO**")
        ratio = r.get("time_ratio_gpuad_over_peer")
        rows.append([f"{key}: {r['what']}", r["shape"], _num(r['bytes'] / 1e6), _bw_cell(g),
                     _pct(g.get("fraction_of_copy")), f">= {_pct(t)}" if t is not None else "none set",
                     met, _bw_cell(p), _pct(p.get("fraction_of_copy")),
                     f"{ratio:.2f}" if ratio is not None else "-"])
    out = [markdown_table(head, rows), ""]
    orows = []
    for label, e in report["overhead"].items():
        cell = (f"{e['median_us']:.2f}" if "median_us" in e else
                ("WRONG" if e["status"] == "WRONG" else e["status"]))
        met = "-" if "meets_target" not in e else ("yes" if e["meets_target"] else "**NO**")
        orows.append([label, cell, f"< {e['target_us']:.0f}" if "target_us" in e else "-", met])
    out.append(markdown_table(["small op from Python (1000 in a loop, one sync)", "us/op (median)",
                               "target", "met"], orows))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda",
                        help="cuda, cuda:N (default cuda) or emulated (a smoke test: figures mean nothing)")
    parser.add_argument("--elements", type=int, default=64 * 2 ** 20,
                        help="float32 elements per workload, a multiple of 1024 (default 64M = 67108864)")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed repeats per kernel; the median is reported (default 20)")
    parser.add_argument("--inner", type=int, default=10,
                        help="calls per timed repeat (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="directory for the JSON results (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.inner < 1 or args.warmup < 0:
        parser.error("--repeats and --inner must be at least 1, --warmup at least 0")
    if args.elements < 16 * ROW or args.elements % ROW:
        parser.error(f"--elements must be a multiple of {ROW} and at least {16 * ROW}")
    kind = args.device.split(":")[0].lower()
    if kind not in ("cuda", "emulated"):
        parser.error("--device must be cuda, cuda:N or emulated")
    if kind == "emulated":
        os.environ.setdefault("GPUAD_POISON", "1")  # unwritten elements show as NaN

    use_this_checkout()
    import gpuad as ad
    try:
        dev = ad.devices.get(args.device)
        name = dev.name
        be = CudaBackend(dev, name) if kind == "cuda" else HostBackend(dev, name)
    except Exception as e:  # noqa: BLE001 -- no CuPy, no driver, no GPU, no g++: say which
        print(f"kernels.py: device {args.device} is not usable here: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    report = {"benchmark": "kernels", "date": now(), "command": command_line(), "argv": sys.argv[1:]}
    report.update(environment(name))
    report["settings"] = {"elements": args.elements, "dtype": "float32", "repeats": args.repeats,
                          "inner": args.inner, "warmup": args.warmup, "seed": args.seed,
                          "peer": be.peer_name(), "timer": "cuda events" if kind == "cuda" else
                          "time.perf_counter", "gb": "10^9 bytes",
                          "bytes": "fewest bytes moved: each input read once, each output written once"}
    report["targets"] = {"contiguous_elementwise": TARGET_CONTIG, "broadcast_reduce_transpose": TARGET_OTHER,
                         "optimizer_step": TARGET_OPTIM, "small_op_overhead_us": TARGET_OVERHEAD_US}
    if not be.meaningful:
        report["note"] = ("emulated device: the kernels run on the host and the 'copy' is a NumPy "
                          "copy; these figures mean nothing, this run only checks the script.")

    d = report["device"]
    print(f"gpuad kernel bandwidth benchmark, {report['date']}")
    print(f"device {name}: {d.get('name', d['kind'])}"
          + (f", compute capability {d['compute_capability']}" if "compute_capability" in d else "")
          + (f", driver {d['driver']}" if "driver" in d else "")
          + (f", CUDA runtime {d['cuda_runtime_version']}" if "cuda_runtime_version" in d else ""))
    v = report["versions"]
    print(f"gpuad {v['gpuad']} ({v['gpuad_git']}), NumPy {v['numpy']}, CuPy {v['cupy']}, torch {v['torch']}, "
          f"Python {v['python']}")
    print(f"{args.elements} float32 elements; median of {args.repeats} repeats of {args.inner} calls "
          f"after {args.warmup} warm-up calls; every result checked against NumPy first.")
    if not be.meaningful:
        print("NOTE: " + report["note"])
    print(flush=True)

    rng = np.random.default_rng(args.seed)
    report["copy"], report["results"] = measure_kernels(dev, be, args.elements, args.repeats, args.inner,
                                                        args.warmup, rng)
    report["overhead"] = measure_overhead(ad, dev, be, name, args.repeats, kind)

    print(format_tables(report))
    print(f"\nGB/s = (bytes read + bytes written) / median time; % of copy = against "
          f"{report['copy'].get('reference', 'no copy')} in this run. gpuad/{be.peer_name().split()[0]} "
          f"= gpuad's time / the peer's: below 1 gpuad is faster.")
    if not be.meaningful:
        print("NOTE: " + report["note"])
    problems = []  # (ours, where, entry): a WRONG anywhere, or an error of gpuad or the copy, fails the run
    for key, e in report["copy"]["methods"].items():
        if e["status"] != "ok":
            problems.append((True, f"copy {key}", e))
    for key, r in report["results"].items():
        for who in ("gpuad", "peer"):
            if r[who]["status"] != "ok":
                problems.append((who == "gpuad", f"{key} {who}", r[who]))
    for key, e in report["overhead"].items():
        if e["status"] != "ok":
            problems.append((key.startswith("gpuad"), f"overhead {key}", e))
    for _, where, e in problems:
        print(f"  {where}: {e['status']}: {e.get('error') or e.get('detail') or e.get('check')}")
    path = write_results(report, args.out, "kernels")
    print(f"\nwrote {path}")
    failed = [where for ours, where, e in problems if ours or e["status"] == "WRONG"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
