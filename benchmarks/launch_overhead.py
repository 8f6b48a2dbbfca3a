#!/usr/bin/env python3
"""Host-side overhead of gpuad's kernel launch layer, per device-protocol call,
beside PyTorch eager's time per op on tiny CPU tensors.

What is measured
----------------
A :class:`gpuad.devices.launch.KernelDevice` (the launch layer shared by the
``cuda`` and ``emulated`` devices) is built over a *do-nothing launcher*: it has
the interface of the emulated device's ``HostLauncher`` (``name``, ``kind``,
``max_blocks``, ``empty``, ``from_host``, ``to_host``, ``launch``,
``synchronize``, ``matmul``), but ``launch`` returns at once and ``empty``
hands out NumPy arrays preallocated per (shape, dtype), so neither kernels nor
allocation are in the figures: what remains is the Python work gpuad does per
call before CuPy would allocate or launch (kernel choice, dtype checks, shapes,
layouts, launch shape, argument packing). On ``cuda`` add CuPy's own cost of
``cupy.empty`` and of a ``RawKernel`` launch to each figure.

Rows:

- ``dev.<family>``: one device-protocol call as the op layer makes it
  (``dev.binary("multiply", a, b)``, ``dev.reduce("reduce_sum", a, axes=(1,), keepdims=False)``,
  ...), on (ROWS, COLS) float32 buffers (default 64 x 128; the figures do not
  depend on the size, nothing is computed);
- ``op:``: the public eager op (``x * y`` on ``gpuad.Tensor`` s placed on that
  device), with no tape and inside a ``GradientTape`` that watches ``x``: the
  op layer's overhead on top of the launch layer's.

Beside each row, PyTorch eager on the CPU doing the same operation on tiny
tensors (the same structure at (4, 8): the kernels' own time is a small part
of its figure) with one thread, and with ``requires_grad`` for the tape rows.
PyTorch's time includes its (tiny) computation; gpuad's includes none. The
ratio is gpuad / torch: below 1, gpuad's host time is smaller.

Timing: as ``timeit``: each statement is compiled into a loop of ``number``
calls (``number`` chosen so that a repeat takes about ``--target-seconds``),
timed with ``time.perf_counter``; the figure is the median of ``--repeats``
repeats, in microseconds per call. The repeats of gpuad, PyTorch and the
baseline (below) alternate, row by row, so that a machine whose load drifts
slows them alike and the ratios hold better than the absolute figures.
Nothing here checks a result.

``--baseline DIR`` times a second gpuad, the ``gpuad/`` package of the checkout
``DIR`` (e.g. ``git worktree add /tmp/base HEAD~3``), imported in the same
process as ``gpuad_baseline``, interleaved with this one: the before/after
figures of a change, immune to the drift between two runs.

Usage::

    python benchmarks/launch_overhead.py                 # table on stdout
    python benchmarks/launch_overhead.py --json out.json # and every repeat as JSON
    python benchmarks/launch_overhead.py --quick         # smoke run (a few seconds)
    python benchmarks/launch_overhead.py --only binary   # rows whose name contains 'binary'
    python benchmarks/launch_overhead.py --baseline /tmp/base  # and an older gpuad, interleaved
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gpuad as ad  # noqa: E402
from gpuad.devices.telemetry import cpu_info  # noqa: E402


class NullLauncher:
    """A launcher that launches nothing: the HostLauncher interface, NumPy buffers
    preallocated per (shape, dtype) and handed out again on every ``empty``."""

    name = "null"
    kind = "null"
    max_blocks = 8 * 132  # what CupyLauncher computes for a 132-SM GPU (H100 SXM)

    def __init__(self):
        self._pool = {}
        self._occupancy = {}
        self.launches = 0

    def empty(self, shape, dtype):
        key = (shape, dtype)
        buf = self._pool.get(key)
        if buf is None:
            buf = self._pool[key] = np.zeros(shape, dtype)
        return buf

    def from_host(self, array):
        return np.array(array, copy=True)

    def to_host(self, buffer):
        return np.array(buffer, copy=True)

    def launch(self, kernel, grid, block, args, shared_mem=0):
        pass

    def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
        pass

    def max_blocks_for(self, kernel, block, shared_mem=0):
        """As CupyLauncher: one dict lookup per launch (4 blocks per SM here)."""
        return self._occupancy.setdefault((kernel, block, shared_mem), 4 * 132)

    def synchronize(self):
        pass

    def matmul(self, a, b, transpose_a, transpose_b):
        return self.empty(a.shape[:-1] + b.shape[-1:], a.dtype)


# -- the rows ---------------------------------------------------------------------------------
# (name, gpuad statement, torch statement, gpuad setup, torch setup). Names of the
# namespace each statement runs in: see _gpuad_namespace and _torch_namespace.
ROWS = [
    ("dev.unary exp", 'dev.unary("exp", a)', "torch.exp(a)"),
    ("dev.binary multiply", 'dev.binary("multiply", a, b)', "torch.mul(a, b)"),
    ("dev.binary multiply scalar", 'dev.binary("multiply", a, s)', "torch.mul(a, s)"),
    ("dev.binary add row (R,C)+(C,)", 'dev.binary("add", a, row)', "torch.add(a, row)"),
    ("dev.binary add col (R,C)+(R,1)", 'dev.binary("add", a, col)', "torch.add(a, col)"),
    ("dev.binary add transposed", 'dev.binary("add", at, bt)', "torch.add(at, bt)"),
    ("dev.unary_grad tanh_grad", 'dev.unary_grad("tanh_grad", a, b)', "tanh_backward(b, a)"),
    ("dev.where contiguous", 'dev.where("where", c, a, b)', "torch.where(c, a, b)"),
    ("dev.cast f32->f64", 'dev.cast("cast", a, F64)', "a.to(torch.float64)"),
    ("dev.fill (R,C)", 'dev.fill("fill", SHAPE, 1.0, F32)', "torch.full(SHAPE, 1.0)"),
    ("dev.reduce reduce_sum axis -1", 'dev.reduce("reduce_sum", a, axes=(1,), keepdims=False)', "torch.sum(a, -1)"),
    ("dev.reduce reduce_sum all", 'dev.reduce("reduce_sum", a, axes=(0, 1), keepdims=False)', "torch.sum(a)"),
    ("dev.reduce reduce_sum axis 0", 'dev.reduce("reduce_sum", a, axes=(0,), keepdims=False)', "torch.sum(a, 0)"),
    ("dev.arg_reduce argmax -1", 'dev.arg_reduce("argmax", a, axis=1)', "torch.argmax(a, -1)"),
    ("dev.softmax -1", 'dev.softmax("softmax", a, axis=1)', "torch.softmax(a, -1)"),
    ("dev.softmax_xent softmax_cross_entropy -1", 'dev.softmax_xent("softmax_cross_entropy", lab, a, axis=1)',
     'cross_entropy(a, lab, reduction="none")'),
    ("dev.layout reshape", 'dev.layout("reshape", a, shape=RSHAPE)', "a.reshape(RSHAPE)"),
    ("dev.layout transpose", 'dev.layout("transpose", a, perm=(1, 0))', "a.permute(1, 0).contiguous()"),
    ("dev.layout broadcast_to", 'dev.layout("broadcast_to", row, shape=SHAPE)',
     "row.broadcast_to(SHAPE).contiguous()"),
    ("dev.layout strided_slice", 'dev.layout("strided_slice", a, key=KEY)', "a[KEY].contiguous()"),
    ("dev.layout strided_slice_grad", 'dev.layout("strided_slice_grad", g, shape=SHAPE, key=KEY)',
     "slice_backward(g, SHAPE, 0, 1, SHAPE[0], 2)"),
    ("dev.concat axis 0", 'dev.concat("concat", a, b, axis=0)', "torch.cat((a, b), 0)"),
    ("dev.concat axis 1", 'dev.concat("concat", a, b, axis=1)', "torch.cat((a, b), 1)"),
    ("dev.gather axis 0", 'dev.gather("gather", a, idx, axis=0)', "torch.index_select(a, 0, idx)"),
    ("dev.gather scatter_add axis 0", 'dev.gather("scatter_add", upd, idx, axis=0, shape=SHAPE)',
     "torch.zeros(SHAPE).index_add_(0, idx, upd)"),
    ("dev.one_hot", 'dev.one_hot("one_hot", li, depth=DEPTH, on_value=1.0, off_value=0.0, dtype=F32)',
     "one_hot(li, DEPTH)"),
    ("op: x * y", "x * y", "x * y"),
    ("op: x + 1.0", "x + 1.0", "x + 1.0"),
    ("op: x + row", "x + xrow", "x + xrow"),
    ("op: exp(x)", "ad.exp(x)", "torch.exp(x)"),
    ("op: reduce_sum(x, -1)", "ad.reduce_sum(x, -1)", "torch.sum(x, -1)"),
    ("op: softmax(x)", "ad.nn.softmax(x)", "torch.softmax(x, -1)"),
    ("op: x * y (tape)", "x * y", "xg * y", "tape.__enter__(); tape.watch(x)", ""),
    ("op: exp(x) (tape)", "ad.exp(x)", "torch.exp(xg)", "tape.__enter__(); tape.watch(x)", ""),
]
#: teardown of the rows with a setup (leave the tape)
TEARDOWN = "tape.__exit__(None, None, None)"


def _gpuad_namespace(ad, dev, rows, cols):
    f32 = np.dtype(np.float32)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, cols)).astype(f32)
    b = rng.standard_normal((rows, cols)).astype(f32)
    ns = dict(dev=dev, ad=ad, np=np, F32=f32, F64=np.dtype(np.float64), SHAPE=(rows, cols),
              RSHAPE=(cols, rows), a=a, b=b, at=a.reshape(cols, rows).T, bt=b.reshape(cols, rows).T,
              s=dev.fill("fill", (), 2.0, f32), row=np.ones((cols,), f32), col=np.ones((rows, 1), f32),
              c=a > 0, lab=np.full((rows, cols), 1.0 / cols, f32),
              idx=np.arange(rows - 1, -1, -2, dtype=np.int64),
              KEY=(slice(1, rows, 2), slice(0, cols, 1)), g=a[1::2].copy(),
              upd=np.ones(((rows + 1) // 2, cols), f32), li=np.arange(rows, dtype=np.int64) % cols,
              DEPTH=cols)
    with ad.device(dev):
        ns["x"] = ad.constant(a)
        ns["y"] = ad.constant(b)
        ns["xrow"] = ad.constant(ns["row"])
    ns["tape"] = None
    return ns


def _torch_namespace(torch, rows, cols):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, cols, generator=g)
    b = torch.randn(rows, cols, generator=g)
    ns = dict(torch=torch, SHAPE=(rows, cols), RSHAPE=(cols, rows), a=a, b=b,
              at=a.reshape(cols, rows).T, bt=b.reshape(cols, rows).T, s=torch.tensor(2.0),
              row=torch.ones(cols), col=torch.ones(rows, 1), c=a > 0,
              lab=torch.full((rows, cols), 1.0 / cols), idx=torch.arange(rows - 1, -1, -2),
              KEY=(slice(1, rows, 2), slice(0, cols, 1)), x=a.clone(), y=b.clone(),
              xrow=torch.ones(cols), xg=a.clone().requires_grad_(True),
              tanh_backward=torch.ops.aten.tanh_backward.default,
              g=a[1::2].clone(), upd=torch.ones((rows + 1) // 2, cols), li=torch.arange(rows) % cols,
              DEPTH=cols, slice_backward=torch.ops.aten.slice_backward.default,
              one_hot=torch.nn.functional.one_hot,
              cross_entropy=torch.nn.functional.cross_entropy)
    return ns


_TEMPLATE = """
def inner(_number, _timer):
    {setup}
    _t0 = _timer()
    for _ in range(_number):
        {stmt}
    _t1 = _timer()
    {teardown}
    return _t1 - _t0
"""


def make_timer(stmt, ns, setup="", teardown=""):
    """``inner(number, timer) -> seconds`` running ``stmt`` ``number`` times in a
    loop compiled in ``ns`` (as timeit does: no function call per iteration)."""
    src = _TEMPLATE.format(stmt=stmt, setup=setup or "pass", teardown=teardown or "pass")
    code = compile(src, f"<bench {stmt}>", "exec")
    local = {}
    exec(code, ns, local)
    return local["inner"]


def _calibrate(inner, target, max_number=10 ** 6) -> int:
    """Calls per repeat: about ``target`` seconds' worth."""
    number = 1
    while True:
        t = inner(number, time.perf_counter)
        if t >= target / 5 or number >= max_number:
            break
        number *= 10 if t < target / 50 else 2
    return max(1, min(max_number, int(number * target / max(t, 1e-9))))


def measure(timers: dict, repeats, target) -> dict:
    """Per timer: median, min and every repeat, in µs per call. ``number`` is
    calibrated per timer first; then the timers' repeats alternate (in turned
    order every other round), so drift of the machine hits every timer alike."""
    numbers = {k: _calibrate(inner, target) for k, inner in timers.items()}
    runs = {k: [] for k in timers}
    order = list(timers)
    for r in range(repeats):
        for k in (order if r % 2 == 0 else order[::-1]):
            runs[k].append(timers[k](numbers[k], time.perf_counter) / numbers[k] * 1e6)
    return {k: {"median_us": statistics.median(v), "min_us": min(v), "number": numbers[k], "runs_us": v}
            for k, v in runs.items()}


def _kernel_device_class(module):
    """``KernelDevice`` of the gpuad package ``module``: from ``gpuad.devices.launch``, or, in a
    checkout from before that package, the class of its emulated device (the same class)."""
    try:
        return importlib.import_module(module.__name__ + ".devices.launch").KernelDevice
    except ModuleNotFoundError:
        return type(module.devices.get("emulated"))


#: The op names of the device protocol before they became the primitives' names
#: (new -> old), so that ``--baseline`` can time a checkout from before that change.
_OLD_OP_NAMES = {
    "negative": "neg", "subtract": "sub", "multiply": "mul", "divide": "div", "equal": "eq",
    "not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge",
    **{f"{op}_grad": op for op in ("relu", "sigmoid", "tanh", "sqrt", "rsqrt", "reciprocal")},
    **{f"reduce_{op}": op for op in ("sum", "max", "min", "prod", "logsumexp")},
    "softmax_cross_entropy": "softmax_xent", "random_uniform": "uniform", "random_normal": "normal",
}


def _for_checkout(stmt, module):
    """``stmt`` with its op names as the gpuad package ``module`` spells them."""
    if "multiply" in module.devices.KERNEL_SET["binary"]:
        return stmt
    return re.sub(r'"(\w+)"', lambda m: f'"{_OLD_OP_NAMES.get(m.group(1), m.group(1))}"', stmt)


class GpuadSide:
    """One gpuad package (this checkout's, or a baseline's) over a NullLauncher."""

    def __init__(self, module, rows, cols):
        self.ad = module
        self.dev = _kernel_device_class(module)(NullLauncher())
        self.ns = _gpuad_namespace(module, self.dev, rows, cols)

    def timer(self, stmt, setup):
        stmt = _for_checkout(stmt, self.ad)
        if not setup:
            return make_timer(stmt, self.ns)
        inner = make_timer(stmt, self.ns, setup, TEARDOWN)

        def with_tape(number, timer):  # a fresh tape per repeat: nodes do not pile up
            self.ns["tape"] = self.ad.GradientTape(persistent=False)
            return inner(number, timer)
        return with_tape


def load_baseline(path):
    """The ``gpuad`` package of the checkout ``path``, imported as ``gpuad_baseline``."""
    pkg = Path(path).resolve() / "gpuad"
    if not (pkg / "__init__.py").is_file():
        raise SystemExit(f"--baseline {path}: no gpuad/__init__.py there (give a checkout's root)")
    spec = importlib.util.spec_from_file_location("gpuad_baseline", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpuad_baseline"] = module
    spec.loader.exec_module(module)
    return module


def _git_commit(where=ROOT):
    """``abc1234`` (``+dirty`` with uncommitted changes to tracked files), or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(x):
    return "-" if x is None else (f"{x:.2f}" if x < 100 else f"{x:.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="gpuad buffers are (rows, cols) (default 64)")
    parser.add_argument("--cols", type=int, default=128, help="(default 128)")
    parser.add_argument("--torch-shape", default="4,8",
                        help="torch's (rows,cols): tiny, so its compute is small (default 4,8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per row (default 7)")
    parser.add_argument("--target-seconds", type=float, default=0.05,
                        help="about how long one repeat runs (default 0.05)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats of ~2 ms")
    parser.add_argument("--only", default=None, help="run only the rows whose name contains this")
    parser.add_argument("--no-torch", action="store_true", help="gpuad only")
    parser.add_argument("--baseline", metavar="DIR", default=None,
                        help="also time the gpuad of checkout DIR, interleaved (before/after a change)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.target_seconds = 3, 0.002
    if args.repeats < 1 or args.target_seconds <= 0 or args.rows < 2 or args.cols < 2:
        parser.error("--repeats must be >= 1, --target-seconds > 0, --rows and --cols >= 2")
    trows, tcols = (int(v) for v in args.torch_shape.split(","))

    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(1)
        except ImportError:
            torch = None

    sides = {"gpuad": GpuadSide(ad, args.rows, args.cols)}
    if args.baseline:
        sides["baseline"] = GpuadSide(load_baseline(args.baseline), args.rows, args.cols)
    tns = _torch_namespace(torch, trows, tcols) if torch is not None else None
    rows = [r for r in ROWS if args.only is None or args.only in r[0]]
    results = {}
    for row in rows:
        name, gstmt, tstmt = row[:3]
        setup = row[3] if len(row) > 3 else ""
        tsetup = row[4] if len(row) > 4 else ""
        timers = {k: side.timer(gstmt, setup) for k, side in sides.items()}
        if tns is not None:
            timers["torch"] = make_timer(tstmt, tns, tsetup)
        entry = {"gpuad_stmt": gstmt, "torch_stmt": tstmt}
        entry.update(measure(timers, args.repeats, args.target_seconds))
        g = entry["gpuad"]["median_us"]
        entry["ratio"] = g / entry["torch"]["median_us"] if "torch" in entry else None
        if "baseline" in entry:
            entry["vs_baseline"] = g / entry["baseline"]["median_us"]
        results[name] = entry

    width = max(len(n) for n in results) if results else 10
    print(f"# gpuad launch-layer host overhead (do-nothing launcher), µs per call, median of "
          f"{args.repeats} repeats")
    print(f"# gpuad buffers ({args.rows}, {args.cols}); torch {torch.__version__ if torch else 'absent'}"
          f" on CPU, 1 thread, ({trows}, {tcols})" + (f"; baseline: gpuad of {args.baseline}"
                                                       if args.baseline else ""))
    extra_head = " baseline µs | gpuad/baseline |" if args.baseline else ""
    print(f"| {'call':<{width}} | gpuad µs | torch µs | gpuad/torch |" + extra_head)
    print(f"|{'-' * (width + 2)}|---:|---:|---:|" + ("---:|---:|" if args.baseline else ""))
    for name, e in results.items():
        g = e["gpuad"]["median_us"]
        t = e["torch"]["median_us"] if "torch" in e else None
        line = f"| {name:<{width}} | {_fmt(g):>8} | {_fmt(t):>8} | {_fmt(e['ratio']):>11} |"
        if args.baseline:
            line += f" {_fmt(e['baseline']['median_us']):>11} | {_fmt(e['vs_baseline']):>14} |"
        print(line)

    if args.json:
        report = {
            "benchmark": "launch_overhead",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name if sys.argv else "launch_overhead.py"] +
                                (argv if argv is not None else sys.argv[1:])),
            "gpuad_commit": _git_commit(),
            "baseline_commit": _git_commit(args.baseline) if args.baseline else None,
            "host": {"python": platform.python_version(), "machine": platform.machine(),
                     "cpu": cpu_info()["model"], "cpus": os.cpu_count(),
                     "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
            "versions": {"gpuad": ad.__version__, "numpy": np.__version__,
                         "torch": torch.__version__ if torch else None},
            "settings": {"rows": args.rows, "cols": args.cols, "torch_shape": [trows, tcols],
                         "repeats": args.repeats, "target_seconds": args.target_seconds,
                         "baseline": str(Path(args.baseline).resolve()) if args.baseline else None},
            "results": results,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, allow_nan=False))
    bad = [n for n, e in results.items() if not math.isfinite(e["gpuad"]["median_us"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
