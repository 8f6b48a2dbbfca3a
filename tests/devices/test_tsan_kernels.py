"""ThreadSanitizer over gpuad's real kernels: the reduction, layout and nn
kernels (shared memory, barriers, warp shuffles, atomics) run on a TSan build
of the host emulation, where every emulated CUDA thread is a TSan fiber, and
must report no data race while matching the cpu device."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuad.devices import host_build as hb
from gpuad.devices.kernel_sources import kernel_dir

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ["reduction.cu", "layout.cu", "nn.cu", "unary.cu", "binary.cu", "cast.cu"]

SCRIPT = r"""
import numpy as np
import gpuad
from gpuad.devices import host_build as hb
from gpuad.devices.launch import KernelDevice, reduction, nn
from gpuad.devices.emulated import HostLauncher
from gpuad.devices.kernel_sources import kernel_dir

class TsanLauncher(HostLauncher):
    def module(self):
        if self._module is None:
            d = kernel_dir()
            self._module = hb.HostModule([d / f for f in %r], [d], tsan=True)
        return self._module

dev, cpu = KernelDevice(TsanLauncher(poison=True)), gpuad.devices.get("cpu")
rng = np.random.default_rng(0)
def same(a, b, what):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=2e-5, atol=1e-5, err_msg=what)

# reductions: block-per-row, warp-per-row, split rows, columns
for shape, axes in [((3, 5000), (1,)), ((40, 70), (1,)), ((2, 20000), (1,)), ((3000, 5), (0,)),
                    ((6, 7, 8), (0, 2))]:
    x = rng.normal(size=shape).astype(np.float32)
    for op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_logsumexp"):
        same(dev.reduce(op, x, axes, False), cpu.reduce(op, x, axes, False), f"{op} {shape} {axes}")
    same(dev.arg_reduce("argmax", x, axes[0]), cpu.arg_reduce("argmax", x, axes[0]), f"argmax {shape}")

# layout: tiled transpose, strided copy, gather and its scatter-add (atomics)
x = rng.normal(size=(70, 45)).astype(np.float32)
same(dev.layout("transpose", x, perm=(1, 0)), cpu.layout("transpose", x, perm=(1, 0)), "transpose")
same(dev.layout("strided_slice", x, key=(slice(69, None, -2), slice(0, 45, 3))),
     cpu.layout("strided_slice", x, key=(slice(69, None, -2), slice(0, 45, 3))), "slice")
idx = rng.integers(0, 70, size=300).astype(np.int64)
upd = rng.normal(size=(300, 45)).astype(np.float32)
same(dev.gather("scatter_add", upd, idx, 0, shape=(70, 45)),
     cpu.gather("scatter_add", upd, idx, 0, shape=(70, 45)), "scatter_add")

# softmax and cross-entropy in each schedule (warp, block, column)
for shape, axis in [((33, 40), 1), ((4, 3000), 1), ((300, 6), 0)]:
    z = rng.normal(size=shape).astype(np.float32)
    for op in ("softmax", "log_softmax"):
        same(dev.softmax(op, z, axis), cpu.softmax(op, z, axis), f"{op} {shape}")
    labels = cpu.softmax("softmax", rng.normal(size=shape).astype(np.float32), axis)
    same(dev.softmax_xent("softmax_cross_entropy", labels, z, axis),
         cpu.softmax_xent("softmax_cross_entropy", labels, z, axis), f"xent {shape}")
print("finished")
""" % (FAMILIES,)


@pytest.mark.slow
def test_reduction_layout_and_nn_kernels_have_no_race():
    try:
        libtsan = hb.tsan_runtime()
    except hb.HostBuildError as e:
        pytest.skip(str(e))
    d = kernel_dir()
    hb.build([d / f for f in FAMILIES], [d], tsan=True)  # compile here; the child hits the cache
    env = dict(os.environ, LD_PRELOAD=str(libtsan), PYTHONPATH=str(REPO),
               TSAN_OPTIONS="halt_on_error=0 exitcode=66 report_signal_unsafe=0")
    python = sys.executable  # the interpreter binary (a pyenv shim script would not load TSan)
    proc = subprocess.run([python, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=900)
    assert "finished" in proc.stdout, proc.stderr[-6000:]
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-6000:]
    assert proc.returncode == 0, proc.stderr[-6000:]
