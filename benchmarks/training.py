#!/usr/bin/env python3
"""Training throughput of a small MLP: gpuad against PyTorch eager on the same
device, in one run.

What is measured
----------------
One training step of an MLP 784-512-512-10 (ReLU after the two hidden layers,
softmax cross-entropy averaged over the batch, plain SGD), forward, backward
and update, in float32:

  gpuad    with ad.GradientTape() as tape:
               h = relu(x @ W1 + b1); h = relu(h @ W2 + b2); logits = h @ W3 + b3
               loss = reduce_mean(sparse_softmax_cross_entropy_with_logits(labels, logits))
           grads = tape.gradient(loss, params); v.assign_sub(lr * g) for each
  torch    the same with torch.relu and F.cross_entropy; grads by torch.autograd.grad;
           ``p -= lr * g`` under torch.no_grad()   (the same update, op for op)

Both start from the same weights (NumPy arrays copied into each; He-normal
weights, zero biases) and see the same batches (``--data-batches`` fixed
batches of Gaussian inputs, labelled by a fixed random linear "teacher",
used in turn), already on the device: nothing crosses between host and device
inside the timed region (gpuad's transfer counter is recorded to show it).

Reported per batch size (``--batches``, default 128 and 4096): examples per
second for each library (batch * steps / time), the median of ``--repeats``
repeats of ``--steps`` steps each after ``--warmup`` untimed steps, and
``gpuad/torch`` = gpuad's time / torch's time (below 1 gpuad is faster).
Repeats are interleaved between the libraries so that drift hits both alike.

On ``cuda`` each repeat is timed with the host clock between two device
synchronisations (``cupy.cuda.Device.synchronize`` for gpuad,
``torch.cuda.synchronize`` for torch), so all queued work is inside it.
TF32 is off for both (torch's matmul precision "highest"; CuPy uses TF32 only
when ``CUPY_TF32=1``). On ``cpu`` gpuad uses NumPy and torch its CPU build;
on ``emulated`` (gpuad's kernels compiled for the host) torch runs on the CPU:
**the emulated figures mean nothing** (a smoke test of this script).

Correctness
-----------
The same steps are replayed in float64 (the reference: NumPy, or on ``cuda``
CuPy's own float64 kernels and cuBLAS, none of gpuad's). Each
library's loss at the last step of every repeat and its loss on the first
batch after all the steps must agree with the reference to a relative 1e-3
(float32 against float64 after a few hundred steps); a library that does not
is marked ``WRONG`` instead of timed, and the script exits 1.

    PYTHONPATH=. python benchmarks/training.py 2>&1 | tee benchmarks/results/<device>-<date>-training.log
    python benchmarks/training.py --device cpu --quick        # a smoke test
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _helpers():
    """The machine/JSON/table helpers of benchmarks/kernels.py (one definition)."""
    path = Path(__file__).resolve().parent / "kernels.py"
    spec = importlib.util.spec_from_file_location("_gpuad_bench_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


H = _helpers()

SIZES = (784, 512, 512, 10)
LR = 0.05
RTOL = 1e-3


# -- data, initial weights and the float64 reference -------------------------------------------

def make_params(rng) -> list:
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    return params


def make_data(rng, batch, count) -> list:
    teacher = rng.standard_normal((SIZES[0], SIZES[-1]))
    out = []
    for _ in range(count):
        x = rng.standard_normal((batch, SIZES[0]), dtype=np.float32)
        labels = np.argmax(x.astype(np.float64) @ teacher, axis=1).astype(np.int64)
        out.append((x, labels))
    return out


def _forward64(xp, params, x, labels):
    w1, b1, w2, b2, w3, b3 = params
    z1 = x @ w1 + b1
    h1 = xp.maximum(z1, 0)
    z2 = h1 @ w2 + b2
    h2 = xp.maximum(z2, 0)
    z3 = h2 @ w3 + b3
    m = z3.max(axis=1, keepdims=True)
    e = xp.exp(z3 - m)
    s = e.sum(axis=1, keepdims=True)
    rows = xp.arange(x.shape[0])
    loss = float(xp.mean(xp.log(s[:, 0]) + m[:, 0] - z3[rows, labels]))
    return loss, (z1, h1, z2, h2, e / s)


def reference(params, data, steps, lr, xp=np) -> tuple[list, float]:
    """Losses of ``steps`` SGD steps in float64 (the loss of step i is computed before
    its update, on batch i % len(data)), and the loss on batch 0 after the last one.
    ``xp`` is NumPy, or CuPy on a GPU (its own float64 kernels and cuBLAS DGEMM, none
    of gpuad's), which is much faster at the larger batches."""
    p = [xp.asarray(a, dtype=xp.float64) for a in params]
    d64 = [(xp.asarray(x, dtype=xp.float64), xp.asarray(y)) for x, y in data]
    losses = []
    for i in range(steps):
        x, y = d64[i % len(d64)]
        w1, b1, w2, b2, w3, b3 = p
        n = x.shape[0]
        loss, (z1, h1, z2, h2, prob) = _forward64(xp, p, x, y)
        losses.append(loss)
        d3 = prob
        d3[xp.arange(n), y] -= 1.0
        d3 /= n
        g_w3, g_b3 = h2.T @ d3, d3.sum(axis=0)
        d2 = (d3 @ w3.T) * (z2 > 0)
        g_w2, g_b2 = h1.T @ d2, d2.sum(axis=0)
        d1 = (d2 @ w2.T) * (z1 > 0)
        g_w1, g_b1 = x.T @ d1, d1.sum(axis=0)
        p = [a - lr * g for a, g in zip(p, (g_w1, g_b1, g_w2, g_b2, g_w3, g_b3))]
    final, _ = _forward64(xp, p, d64[0][0], d64[0][1])
    return losses, final


# -- the libraries ------------------------------------------------------------------------------

class NotInstalled(Exception):
    pass


class Gpuad:
    name = "gpuad"

    def __init__(self, device):
        H.use_this_checkout()
        import gpuad as ad
        self.ad = ad
        self.dev = ad.devices.get(device)
        self.device = self.dev.name
        self.version = ad.__version__
        if self.dev.kind == "cuda":
            import cupy
            self._cuda = cupy.cuda.Device(int(self.device.split(":")[1]))
        else:
            self._cuda = None
        self.note = f"device {self.device}"

    def synchronize(self):
        if self._cuda is not None:
            self._cuda.synchronize()

    def transfers(self):
        return getattr(self.dev, "transfers", None)

    def setup(self, params, data, lr):
        ad = self.ad
        with ad.device(self.dev):
            ps = [ad.Variable(p) for p in params]
            batches = [(ad.constant(x), ad.constant(y)) for x, y in data]
        self.i = 0

        def step(x, labels):
            with ad.GradientTape() as tape:
                h = ad.nn.relu(x @ ps[0] + ps[1])
                h = ad.nn.relu(h @ ps[2] + ps[3])
                logits = h @ ps[4] + ps[5]
                loss = ad.reduce_mean(ad.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            grads = tape.gradient(loss, ps)
            for v, g in zip(ps, grads):
                v.assign_sub(lr * g)
            return loss

        def run(n):
            loss = None
            with ad.device(self.dev):
                for _ in range(n):
                    x, labels = batches[self.i % len(batches)]
                    loss = step(x, labels)
                    self.i += 1
            return loss

        def final_loss():
            with ad.device(self.dev):
                x, labels = batches[0]
                h = ad.nn.relu(x @ ps[0] + ps[1])
                h = ad.nn.relu(h @ ps[2] + ps[3])
                logits = h @ ps[4] + ps[5]
                return float(ad.reduce_mean(ad.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        return run, final_loss

    @staticmethod
    def value(loss) -> float:
        return float(loss)


class Torch:
    name = "torch"

    def __init__(self, device):
        try:
            import torch
            import torch.nn.functional as F
        except ImportError as e:
            raise NotInstalled(str(e)) from None
        self.torch, self.F = torch, F
        kind = device.split(":")[0]
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise NotInstalled(f"torch {torch.__version__} has no usable CUDA device")
            self.device = torch.device("cuda", int(device.split(":")[1]) if ":" in device else 0)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:  # cpu, and the emulated smoke test
            self.device = torch.device("cpu")
        torch.set_float32_matmul_precision("highest")
        self.version = torch.__version__
        self.note = (f"eager on {self.device}" + (f", {torch.get_num_threads()} threads"
                                                  if self.device.type == "cpu" else ""))

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def transfers(self):
        return None

    def setup(self, params, data, lr):
        torch, F = self.torch, self.F
        ps = [torch.tensor(p, device=self.device).requires_grad_() for p in params]
        batches = [(torch.tensor(x, device=self.device), torch.tensor(y, device=self.device))
                   for x, y in data]
        self.i = 0

        def forward(x, labels):
            h = torch.relu(x @ ps[0] + ps[1])
            h = torch.relu(h @ ps[2] + ps[3])
            logits = h @ ps[4] + ps[5]
            return F.cross_entropy(logits, labels)

        def run(n):
            loss = None
            for _ in range(n):
                x, labels = batches[self.i % len(batches)]
                loss = forward(x, labels)
                grads = torch.autograd.grad(loss, ps)
                with torch.no_grad():
                    for p, g in zip(ps, grads):
                        p -= lr * g
                self.i += 1
            return loss

        def final_loss():
            with torch.no_grad():
                return float(forward(*batches[0]))
        return run, final_loss

    @staticmethod
    def value(loss) -> float:
        return float(loss.detach())


FACTORIES = {"gpuad": Gpuad, "torch": Torch}


# -- running --------------------------------------------------------------------------------------

def _agrees(got, want) -> tuple[bool, float]:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-3)))
    return bool(np.all(np.isfinite(got)) and err <= RTOL), err


def measure_batch(libs, batch, args, seed, xp=np) -> dict:
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    data = make_data(rng, batch, args.data_batches)
    total = args.warmup + args.repeats * args.steps
    t0 = time.perf_counter()
    ref_losses, ref_final = reference(params, data, total, args.lr, xp)
    out = {"batch": batch, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
           "reference": {"loss_first": ref_losses[0], "loss_last": ref_losses[-1], "loss_final": ref_final,
                         "computed_with": f"{xp.__name__} float64", "seconds": time.perf_counter() - t0}}
    # the loss returned by the last step of the warm-up and of each repeat
    checkpoints = [args.warmup - 1 + r * args.steps for r in range(args.repeats + 1)]
    if args.warmup == 0:
        checkpoints = checkpoints[1:]

    runs = {}
    for name, lib in libs.items():
        e = out[name] = {"status": "ok"}
        try:
            run, final_loss = lib.setup(params, data, args.lr)
            e["losses"], e["runs_s"] = [], []
            if args.warmup:
                e["losses"].append(lib.value(run(args.warmup)))
            lib.synchronize()
            runs[name] = (run, final_loss)
        except Exception as ex:  # noqa: BLE001 -- a library that breaks is reported, not fatal
            e.update(status="error", error=f"{type(ex).__name__}: {ex}")

    for _ in range(args.repeats):
        for name, (run, _) in runs.items():
            lib, e = libs[name], out[name]
            if e["status"] != "ok":
                continue
            try:
                before = lib.transfers()
                lib.synchronize()
                t0 = time.perf_counter()
                loss = run(args.steps)
                lib.synchronize()
                dt = time.perf_counter() - t0
                after = lib.transfers()
                if before is not None:
                    e.setdefault("transfers_in_timed_steps", []).append(after - before)
                e["runs_s"].append(dt)
                e["losses"].append(lib.value(loss))
            except Exception as ex:  # noqa: BLE001
                e.update(status="error", error=f"{type(ex).__name__}: {ex}")

    want = [ref_losses[i] for i in checkpoints]
    for name, (_, final_loss) in runs.items():
        e = out[name]
        if e["status"] != "ok":
            continue
        try:
            e["loss_final"] = final_loss()
        except Exception as ex:  # noqa: BLE001
            e.update(status="error", error=f"{type(ex).__name__}: {ex}")
            continue
        ok1, err1 = _agrees(e["losses"], want)
        ok2, err2 = _agrees([e["loss_final"]], [ref_final])
        e["max_relative_loss_error"] = max(err1, err2)
        if not (ok1 and ok2):
            e["status"] = "WRONG"
            continue
        e["median_s"] = statistics.median(e["runs_s"])
        e["examples_per_s"] = batch * args.steps / e["median_s"]
        e["examples_per_s_runs"] = [batch * args.steps / t for t in e["runs_s"]]
        e["ms_per_step"] = e["median_s"] / args.steps * 1e3
    g, t = out.get("gpuad", {}), out.get("torch", {})
    if g.get("median_s") and t.get("median_s"):
        out["time_ratio_gpuad_over_torch"] = g["median_s"] / t["median_s"]
    return out


# -- output ---------------------------------------------------------------------------------------

def _cell(e) -> str:
    if e.get("status") == "ok" and "examples_per_s" in e:
        v = e["examples_per_s"]
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    if e.get("status") == "WRONG":
        return f"WRONG (loss err {e['max_relative_loss_error']:.2g})"
    return e.get("status", "-")


def format_table(report) -> str:
    header = ["batch", "gpuad examples/s", "torch examples/s", "gpuad/torch time",
              "gpuad ms/step", "torch ms/step", "final loss gpuad", "torch", "float64 ref"]
    rows = []
    for r in report["results"]:
        g, t = r.get("gpuad", {}), r.get("torch", {})
        ratio = r.get("time_ratio_gpuad_over_torch")
        rows.append([r["batch"], _cell(g), _cell(t), f"{ratio:.2f}" if ratio is not None else "-",
                     f"{g['ms_per_step']:.3g}" if "ms_per_step" in g else "-",
                     f"{t['ms_per_step']:.3g}" if "ms_per_step" in t else "-",
                     f"{g['loss_final']:.5f}" if "loss_final" in g else "-",
                     f"{t['loss_final']:.5f}" if "loss_final" in t else "-",
                     f"{r['reference']['loss_final']:.5f}"])
    return H.markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda",
                        help="cuda, cuda:N (default cuda), cpu, or emulated (a smoke test: figures mean nothing)")
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes (default 128,4096; with --quick 16,64)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per repeat (default 50; with --quick 3)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per library and batch size; the median is reported "
                             "(default 5; with --quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; --quick 1)")
    parser.add_argument("--data-batches", type=int, default=4, help="distinct batches used in turn (default 4)")
    parser.add_argument("--lr", type=float, default=LR, help=f"SGD learning rate (default {LR})")
    parser.add_argument("--libs", default="gpuad,torch", help="comma-separated subset of gpuad,torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a smoke test (batches 16,64, 2 repeats of 3 steps)")
    parser.add_argument("--out", default=str(H.DEFAULT_OUT),
                        help="directory for the JSON results (default benchmarks/results)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batches = args.batches or ("16,64" if quick else "128,4096")
    args.steps = args.steps if args.steps is not None else (3 if quick else 50)
    args.repeats = args.repeats if args.repeats is not None else (2 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 5)
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error("--batches must be comma-separated integers")
    if not batches or min(batches) < 1 or args.steps < 1 or args.repeats < 1 or args.warmup < 0 \
            or args.data_batches < 1:
        parser.error("batch sizes, --steps, --repeats and --data-batches must be at least 1, --warmup at least 0")
    wanted = [n.strip() for n in args.libs.split(",") if n.strip()]
    if "gpuad" not in wanted or any(n not in FACTORIES for n in wanted):
        parser.error("--libs must include gpuad and name only gpuad and torch")
    kind = args.device.split(":")[0].lower()
    if kind not in ("cuda", "cpu", "emulated"):
        parser.error("--device must be cuda, cuda:N, cpu or emulated")

    libraries, loaded = {}, {}
    for name in wanted:
        try:
            lib = FACTORIES[name](args.device)
        except NotInstalled as e:
            libraries[name] = {"status": "not installed", "why": str(e)}
            continue
        except Exception as e:  # noqa: BLE001 -- gpuad's device is not usable here: say why
            if name == "gpuad":
                print(f"training.py: device {args.device} is not usable here: {type(e).__name__}: {e}",
                      file=sys.stderr)
                return 2
            libraries[name] = {"status": "error", "why": f"{type(e).__name__}: {e}"}
            continue
        loaded[name] = lib
        libraries[name] = {"status": "ok", "version": lib.version, "note": lib.note}
    device = loaded["gpuad"].device

    report = {"benchmark": "training", "date": H.now(), "command": H.command_line(), "argv": sys.argv[1:]}
    report.update(H.environment(device))
    report["settings"] = {"model": "MLP " + "-".join(map(str, SIZES)) + ", relu, softmax cross-entropy, SGD",
                          "dtype": "float32", "batches": batches, "steps": args.steps, "repeats": args.repeats,
                          "warmup": args.warmup, "data_batches": args.data_batches, "lr": args.lr,
                          "seed": args.seed, "quick": quick, "loss_rtol": RTOL,
                          "timer": "time.perf_counter between device synchronisations"}
    report["libraries"] = libraries
    meaningful = kind != "emulated"
    if not meaningful:
        report["note"] = ("emulated device: gpuad's kernels run on the host and torch on the CPU; these "
                          "figures mean nothing, this run only checks the script.")

    d = report["device"]
    print(f"gpuad training benchmark (MLP {'-'.join(map(str, SIZES))}), {report['date']}")
    print(f"device {device}: {d.get('name', d['kind'])}" + (f", driver {d['driver']}" if "driver" in d else ""))
    for name, lib in libraries.items():
        print(f"  {name:<6} " + (f"{lib['version']}: {lib['note']}" if lib["status"] == "ok"
                                 else f"{lib['status']} ({lib['why']})"))
    print(f"Median of {args.repeats} repeats of {args.steps} steps after {args.warmup} warm-up steps; "
          f"losses checked against a float64 replay of the same steps "
          f"({'CuPy' if kind == 'cuda' else 'NumPy'}).")
    if not meaningful:
        print("NOTE: " + report["note"])
    print(flush=True)

    xp = np
    if kind == "cuda":  # the float64 reference on the GPU, through CuPy (not gpuad's kernels)
        import cupy as xp
        xp.cuda.Device(int(device.split(":")[1])).use()
    report["settings"]["reference"] = f"{xp.__name__} float64"
    report["results"] = []
    for k, batch in enumerate(batches):
        r = measure_batch(loaded, batch, args, args.seed + k, xp)
        for name, lib in libraries.items():
            if lib["status"] != "ok":
                r[name] = {"status": lib["status"]}
        report["results"].append(r)

    print(format_table(report))
    print("\ngpuad/torch = gpuad's time / torch's time for the same steps: below 1 gpuad is faster.")
    if not meaningful:
        print("NOTE: " + report["note"])
    failed = False
    for r in report["results"]:
        for name in libraries:
            e = r.get(name, {})
            if e.get("status") in ("WRONG", "error"):
                print(f"  batch {r['batch']} {name}: {e['status']}: "
                      f"{e.get('error') or 'max relative loss error %.2g' % e['max_relative_loss_error']}")
                failed = failed or e["status"] == "WRONG" or name == "gpuad"
            moved = [m for m in e.get("transfers_in_timed_steps", []) if m]
            if moved:
                print(f"  batch {r['batch']} {name}: {sum(moved)} host<->device transfers inside the timed steps")
    path = H.write_results(report, args.out, "training")
    print(f"\nwrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
