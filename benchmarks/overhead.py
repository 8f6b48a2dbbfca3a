#!/usr/bin/env python3
"""Per-op overhead of eager autodiff: gpuad (CPU device) side by side with
PyTorch CPU eager and TensorFlow CPU eager, in one run.

What is measured
----------------
The tensors are tiny (4 and 16 float32 elements), so the arithmetic costs
next to nothing and what is timed is the *engine*: creating tensors,
dispatching each op to its kernel, recording it on the tape, and walking the
tape backwards through the VJPs.

``chain``  A chain of 10 element-wise ops on a 4-element float32 tensor
           (x*1.5, +0.25, sin, *x, exp, tanh, -x, square, *0.5, cos),
           run forward and backward under a fresh tape each iteration:

             gpuad   with ad.GradientTape() as t: t.watch(x); y = chain(x); t.gradient(y, x)
             torch   x.grad = None; y = chain(x); y.sum().backward()   (x: requires_grad)
             TF      with tf.GradientTape() as t: t.watch(x); y = chain(x); t.gradient(y, x)

           (gpuad and TF sum a non-scalar target implicitly; torch needs the
           explicit ``sum``, one more recorded op, as PyTorch users write it.)
           Reported as microseconds per recorded op, forward plus backward:
           total time / (iterations * 10).

``fit``    1000 steps of gradient descent on ``a*x**2 + b*x + c`` with a, b, c
           trainable scalars (gpuad/TF Variables, torch leaf tensors), x a fixed
           16-element float32 tensor, the mean squared error to fixed targets,
           a fresh tape per step and the update ``a -= lr * grad`` (lr = 0.1).
           Reported as milliseconds for the 1000 steps.

How it is timed
---------------
Each library is warmed up first (the chain's iteration count is calibrated so
that one repeat takes about ``--target-seconds``), then timed with
``time.perf_counter`` for ``--repeats`` repeats, interleaved round-robin
between the libraries so that drift of the machine hits all of them alike;
the figure is the median repeat. The garbage collector stays on (as in real
use) and is run once before each repeat. PyTorch is pinned to one thread
(``torch.set_num_threads(1)``, ``set_num_interop_threads(1)``) and TensorFlow
to one intra-op and one inter-op thread: at this size threads only add
noise, and the comparison is fair only with the same one core for everyone.

Every library's result is checked against a float64 NumPy reference (the
chain's gradient, by the complex-step derivative; the fitted a, b, c of the
same gradient descent in float64). A library that disagrees is marked WRONG
and its time is not reported; a peer that is not installed is reported as
"not installed".

Reading the ratio
-----------------
``gpuad/peer`` is gpuad's figure divided by the peer's: below 1 gpuad is
faster than that peer, above 1 it is slower (2.0 = gpuad takes twice as long).
Lower is better for gpuad.

    python benchmarks/overhead.py                   # the table
    python benchmarks/overhead.py --repeats 9 --json results.json
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CHAIN_OPS = 10
FIT_STEPS = 1000
FIT_LR = 0.1
LIBS = ("gpuad", "torch", "tensorflow")

# -- the data (identical for every library) --------------------------------------------

CHAIN_X = np.array([-0.8, -0.1, 0.35, 0.9], dtype=np.float32)
FIT_X = np.linspace(-1.0, 1.0, 16, dtype=np.float32)
FIT_Y = (1.5 * FIT_X.astype(np.float64) ** 2 - 0.7 * FIT_X + 0.3
         + 0.05 * np.sin(7.0 * FIT_X)).astype(np.float32)


def _chain(x, mul, add, sub, sin, exp, tanh, square, cos):
    """The 10 ops, written once for every library (operators where users write them)."""
    y = mul(x, 1.5)
    y = add(y, 0.25)
    y = sin(y)
    y = mul(y, x)
    y = exp(y)
    y = tanh(y)
    y = sub(y, x)
    y = square(y)
    y = mul(y, 0.5)
    return cos(y)


def _op(a, b):
    return a * b


def _add(a, b):
    return a + b


def _sub(a, b):
    return a - b


# -- float64 references ---------------------------------------------------------------

def chain_reference() -> np.ndarray:
    """d sum(chain(x)) / dx in float64, by the complex-step derivative: exact to
    rounding, since every element of the output depends only on its own input."""
    h = 1e-30
    z = CHAIN_X.astype(np.complex128) + 1j * h
    y = _chain(z, _op, _add, _sub, np.sin, np.exp, np.tanh, np.square, np.cos)
    return y.imag / h


def fit_reference() -> np.ndarray:
    """a, b, c after the same 1000 steps of gradient descent, in float64."""
    x = FIT_X.astype(np.float64)
    y = FIT_Y.astype(np.float64)
    a = b = c = 0.0
    for _ in range(FIT_STEPS):
        r = a * x ** 2 + b * x + c - y
        ga, gb, gc = np.mean(2 * r * x ** 2), np.mean(2 * r * x), np.mean(2 * r)
        a, b, c = a - FIT_LR * ga, b - FIT_LR * gb, c - FIT_LR * gc
    return np.array([a, b, c])


# -- the libraries ----------------------------------------------------------------------

class NotInstalled(Exception):
    pass


class Gpuad:
    name = "gpuad"

    def __init__(self):
        root = Path(__file__).resolve().parent.parent
        if (root / "gpuad" / "__init__.py").is_file():
            sys.path.insert(0, str(root))  # measure this checkout, not some installed copy
        try:
            import gpuad as ad
        except ImportError as e:
            raise NotInstalled(str(e)) from None
        self.ad = ad
        self.version = ad.__version__
        self.where = str(Path(ad.__file__).parent)
        self.device = ad.devices.get("cpu")
        self.note = f"device cpu ({self.where})"

    def chain_setup(self):
        ad = self.ad
        with ad.device(self.device):
            x = ad.constant(CHAIN_X)
        ops = (_op, _add, _sub, ad.sin, ad.exp, ad.tanh, ad.square, ad.cos)
        GradientTape, chain = ad.GradientTape, _chain

        def run(n):
            g = None
            for _ in range(n):
                with GradientTape() as t:
                    t.watch(x)
                    y = chain(x, *ops)
                g = t.gradient(y, x)
            return g
        return run

    def chain_result(self, g):
        return np.asarray(g.numpy(), dtype=np.float64)

    def fit(self):
        ad = self.ad
        with ad.device(self.device):
            x, y = ad.constant(FIT_X), ad.constant(FIT_Y)
            a, b, c = ad.Variable(0.0), ad.Variable(0.0), ad.Variable(0.0)
            params = [a, b, c]
            for _ in range(FIT_STEPS):
                with ad.GradientTape() as tape:
                    loss = ad.reduce_mean((a * x ** 2 + b * x + c - y) ** 2)
                grads = tape.gradient(loss, params)
                for v, g in zip(params, grads):
                    v.assign_sub(FIT_LR * g)
        return np.array([float(a), float(b), float(c)])


class Torch:
    name = "torch"

    def __init__(self):
        try:
            import torch
        except ImportError as e:
            raise NotInstalled(str(e)) from None
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before any inter-op work has started
            pass
        self.torch = torch
        self.version = torch.__version__
        self.note = (f"CPU eager, {torch.get_num_threads()} intra-op / "
                     f"{torch.get_num_interop_threads()} inter-op thread")

    def chain_setup(self):
        torch = self.torch
        x = torch.tensor(CHAIN_X, requires_grad=True)
        ops = (_op, _add, _sub, torch.sin, torch.exp, torch.tanh, torch.square, torch.cos)
        chain = _chain

        def run(n):
            g = None
            for _ in range(n):
                x.grad = None  # each forward builds a fresh graph; backward frees it
                y = chain(x, *ops)
                y.sum().backward()
                g = x.grad
            return g
        return run

    def chain_result(self, g):
        return g.detach().numpy().astype(np.float64)

    def fit(self):
        torch = self.torch
        x, y = torch.tensor(FIT_X), torch.tensor(FIT_Y)
        a, b, c = (torch.zeros((), dtype=torch.float32, requires_grad=True) for _ in range(3))
        params = [a, b, c]
        for _ in range(FIT_STEPS):
            loss = ((a * x ** 2 + b * x + c - y) ** 2).mean()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for v, g in zip(params, grads):
                    v -= FIT_LR * g
        return np.array([float(a.detach()), float(b.detach()), float(c.detach())])


class TensorFlow:
    name = "tensorflow"

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow as tf
        except ImportError as e:
            raise NotInstalled(str(e)) from None
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # only settable before the runtime has started
            pass
        self.tf = tf
        self.version = tf.__version__
        self.note = (f"CPU eager, {tf.config.threading.get_intra_op_parallelism_threads()} "
                     f"intra-op / {tf.config.threading.get_inter_op_parallelism_threads()} "
                     f"inter-op thread")
        self._cpu = tf.device("/CPU:0")

    def chain_setup(self):
        tf = self.tf
        with self._cpu:
            x = tf.constant(CHAIN_X)
        ops = (_op, _add, _sub, tf.sin, tf.exp, tf.tanh, tf.square, tf.cos)
        GradientTape, chain, cpu = tf.GradientTape, _chain, self._cpu

        def run(n):
            g = None
            with cpu:
                for _ in range(n):
                    with GradientTape() as t:
                        t.watch(x)
                        y = chain(x, *ops)
                    g = t.gradient(y, x)
            return g
        return run

    def chain_result(self, g):
        return g.numpy().astype(np.float64)

    def fit(self):
        tf = self.tf
        with self._cpu:
            x, y = tf.constant(FIT_X), tf.constant(FIT_Y)
            a, b, c = (tf.Variable(0.0) for _ in range(3))
            params = [a, b, c]
            for _ in range(FIT_STEPS):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((a * x ** 2 + b * x + c - y) ** 2)
                grads = tape.gradient(loss, params)
                for v, g in zip(params, grads):
                    v.assign_sub(FIT_LR * g)
        return np.array([float(a), float(b), float(c)])


FACTORIES = {"gpuad": Gpuad, "torch": Torch, "tensorflow": TensorFlow}


# -- running ------------------------------------------------------------------------------

def _agrees(got, want, rtol, atol):
    err = float(np.max(np.abs(got - want) / (atol + rtol * np.abs(want))))
    return bool(np.all(np.isfinite(got)) and err <= 1.0), float(np.max(np.abs(got - want)))


def _timed(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(libs: dict, repeats: int, target_s: float) -> dict:
    """Both workloads for every loaded library; returns {workload: {lib: entry}}."""
    results = {"chain": {}, "fit": {}}
    chain_ref, fit_ref = chain_reference(), fit_reference()

    # -- chain: warm up, check, calibrate -----------------------------------------------
    plans = {}
    for name, lib in libs.items():
        entry = results["chain"][name] = {"unit": "us/op", "status": "ok"}
        try:
            run = lib.chain_setup()
            run(20)  # warm-up
            per_iter, g = _timed(run, 50)
            ok, err = _agrees(lib.chain_result(g), chain_ref, rtol=1e-4, atol=1e-5)
            if not ok:
                entry.update(status="WRONG", max_abs_error=err)
                continue
            n = max(50, int(target_s / max(per_iter / 50, 1e-9)))
            run(min(n, 2000))  # more warm-up, at the size that will be timed
            plans[name] = (run, n)
            entry.update(iterations=n, runs=[])
        except Exception as e:  # a peer that breaks is reported, not fatal
            entry.update(status="error", error=f"{type(e).__name__}: {e}")

    for _ in range(repeats):
        for name, (run, n) in plans.items():
            entry = results["chain"][name]
            if entry["status"] != "ok":
                continue
            dt, g = _timed(run, n)
            ok, err = _agrees(libs[name].chain_result(g), chain_ref, rtol=1e-4, atol=1e-5)
            if not ok:
                entry.update(status="WRONG", max_abs_error=err)
                continue
            entry["runs"].append(dt / (n * CHAIN_OPS) * 1e6)

    # -- fit: one full (checked) warm-up run, then the repeats ------------------------------
    fitting = []
    for name, lib in libs.items():
        entry = results["fit"][name] = {"unit": "ms/1000 steps", "status": "ok"}
        try:
            ok, err = _agrees(lib.fit(), fit_ref, rtol=1e-3, atol=1e-4)
        except Exception as e:
            entry.update(status="error", error=f"{type(e).__name__}: {e}")
            continue
        if not ok:
            entry.update(status="WRONG", max_abs_error=err)
            continue
        entry["runs"] = []
        fitting.append(name)

    for _ in range(repeats):
        for name in fitting:
            entry = results["fit"][name]
            if entry["status"] != "ok":
                continue
            dt, abc = _timed(libs[name].fit)
            ok, err = _agrees(abc, fit_ref, rtol=1e-3, atol=1e-4)
            if not ok:
                entry.update(status="WRONG", max_abs_error=err)
                continue
            entry["runs"].append(dt * 1e3)

    for workload in results.values():
        for entry in workload.values():
            if entry["status"] == "ok" and entry.get("runs"):
                entry["median"] = statistics.median(entry["runs"])
                entry["min"] = min(entry["runs"])
        base = workload.get("gpuad", {}).get("median")
        for name, entry in workload.items():
            if name != "gpuad" and base is not None and entry.get("median"):
                entry["ratio_gpuad_over"] = base / entry["median"]
    return results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- output ------------------------------------------------------------------------------

def _cell(entry) -> str:
    status = entry.get("status")
    if status == "ok" and "median" in entry:
        return f"{entry['median']:.2f}" if entry["median"] < 100 else f"{entry['median']:.0f}"
    if status == "WRONG":
        return f"WRONG (err {entry['max_abs_error']:.2g})"
    if status == "error":
        return "error"
    return status or "-"


def format_table(report: dict) -> str:
    names = list(report["libraries"])
    peers = [n for n in names if n != "gpuad"]
    rows = [["workload"] + names + [f"gpuad/{p}" for p in peers]]
    titles = {"chain": "chain of 10 ops, fwd+bwd (us/op)",
              "fit": f"fit a*x^2+b*x+c, {FIT_STEPS} steps (ms)"}
    for key, title in titles.items():
        workload = report["results"][key]
        row = [title]
        for n in names:
            lib = report["libraries"][n]
            row.append(_cell(workload[n]) if lib["status"] == "ok" else lib["status"])
        for p in peers:
            r = workload.get(p, {}).get("ratio_gpuad_over")
            row.append(f"{r:.2f}" if r is not None else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed repeats per library and workload; the median is reported (default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the full results as JSON to PATH")
    parser.add_argument("--target-seconds", type=float, default=0.25,
                        help="about how long one repeat of the chain takes (default 0.25)")
    parser.add_argument("--libs", default=",".join(LIBS),
                        help=f"comma-separated subset of {','.join(LIBS)} (default: all)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    wanted = [n.strip() for n in args.libs.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in FACTORIES]
    if unknown:
        parser.error(f"unknown library {', '.join(unknown)}; choose from {', '.join(LIBS)}")

    libraries, loaded = {}, {}
    for name in wanted:
        try:
            lib = FACTORIES[name]()
        except NotInstalled:
            libraries[name] = {"status": "not installed"}
            continue
        except Exception as e:
            libraries[name] = {"status": "error", "error": f"{type(e).__name__}: {e}"}
            continue
        loaded[name] = lib
        libraries[name] = {"status": "ok", "version": lib.version, "note": lib.note}

    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "settings": {"repeats": args.repeats, "target_seconds": args.target_seconds,
                     "chain_ops": CHAIN_OPS, "fit_steps": FIT_STEPS},
        "libraries": libraries,
    }
    print(f"gpuad per-op overhead benchmark, {report['date']}")
    print(f"CPU: {report['machine']['cpu']} ({report['machine']['cores']} cores), "
          f"Python {report['machine']['python']}, NumPy {np.__version__}")
    for name, lib in libraries.items():
        desc = f"{lib['version']}: {lib['note']}" if lib["status"] == "ok" else lib["status"]
        if lib["status"] == "error":
            desc += f" ({lib['error']})"
        print(f"  {name:<11} {desc}")
    print("Threads: torch pinned to 1 (torch.set_num_threads(1)); TensorFlow to 1 intra-op and "
          "1 inter-op thread.")
    print(f"Median of {args.repeats} repeats after warm-up; every result checked against a "
          f"float64 NumPy reference.\n")

    report["results"] = measure(loaded, args.repeats, args.target_seconds)
    for name, lib in libraries.items():  # peers that never loaded still get a cell
        if lib["status"] != "ok":
            for workload in report["results"].values():
                workload[name] = {"status": lib["status"]}

    print(format_table(report))
    print("\ngpuad/peer = gpuad's time / the peer's time: below 1 gpuad is faster, above 1 slower.")
    for key, workload in report["results"].items():
        for name, entry in workload.items():
            if entry.get("status") == "error" and "error" in entry:
                print(f"  {key}/{name}: {entry['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    bad = [n for w in report["results"].values() for n, e in w.items() if e.get("status") == "WRONG"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
