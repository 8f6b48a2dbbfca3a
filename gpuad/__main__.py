"""``python -m gpuad``: the command line.

    python -m gpuad train    train an MLP on the bundled 8x8 digits (plot, checkpoint, metrics)
    python -m gpuad demo     fit a quadratic by gradient descent, printing progress
    python -m gpuad info     the devices gpuad can use
    python -m gpuad bench    gpuad's workloads beside PyTorch, JAX, TensorFlow and autograd
    python -m gpuad kernels  compile (or --check) every CUDA kernel family with NVRTC, no GPU needed
"""
from __future__ import annotations

import argparse
import json
import sys


def _demo(args) -> int:
    import numpy as np
    import gpuad as ad

    dev = args.device or ad.devices.available()[0]
    print(f"gpuad {ad.__version__} on device {dev}: fitting y = a*x**2 + b*x + c by gradient descent")
    rng = np.random.default_rng(0)
    with ad.device(dev):
        xs = ad.constant(np.linspace(-2, 2, 64), dtype=ad.float32)
        true = (1.5, -0.7, 0.3)
        ys = true[0] * xs ** 2 + true[1] * xs + true[2] + ad.constant(rng.normal(0, 0.05, 64), ad.float32)
        a, b, c = (ad.Variable(0.0, name=n) for n in "abc")
        for step in range(args.steps + 1):
            with ad.GradientTape() as tape:
                loss = ad.reduce_mean((a * xs ** 2 + b * xs + c - ys) ** 2)
            grads = tape.gradient(loss, [a, b, c])
            for v, g in zip((a, b, c), grads):
                v.assign_sub(g * args.lr)
            if step % max(args.steps // 10, 1) == 0:
                print(f"step {step:5d}  loss {float(loss):.6f}  a={float(a):+.4f} "
                      f"b={float(b):+.4f} c={float(c):+.4f}")
    print(f"true values:             a={true[0]:+.4f} b={true[1]:+.4f} c={true[2]:+.4f}")
    return 0


#: ``--task`` name -> "module:function"; the function takes the parsed arguments
#: and returns the exit status (see gpuad/train.py).
TASKS = {
    "digits": "gpuad.train:run_digits",
    "addition": "gpuad.tasks_addition:main",
}


def _train(args) -> int:
    import importlib
    module, func = TASKS[args.task].split(":")
    return getattr(importlib.import_module(module), func)(args)


def _info(args) -> int:
    import gpuad as ad
    from gpuad.devices.telemetry import format_info
    facts = ad.devices.info()
    print(json.dumps(facts, indent=2) if args.json else format_info(facts))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuad", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train a model: an MLP on the bundled 8x8 handwritten digits, or "
                      "(--task addition) a small causal transformer on digit addition",
        description="Train a classifier (--task digits: an MLP 64-128-64-10 with Adam on the "
                    "8x8 UCI handwritten digits shipped with gpuad, a fixed-seed 1437/360 "
                    "train/test split), showing a progress bar with loss and accuracy, then "
                    "write metrics.json, curves.png (loss and accuracy per epoch) and "
                    "checkpoint.safetensors (model and optimizer) to --out.")
    train.add_argument("--task", choices=sorted(TASKS), default="digits",
                       help="what to train (default: digits)")
    train.add_argument("--device", default=None,
                       help="cpu, emulated, cuda:N (default: the first usable GPU, else the CPU)")
    train.add_argument("--epochs", type=int, default=None, help="passes over the training set "
                       "(default: the task's, 20 for digits)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="examples per step (default: the task's, 32 for digits)")
    train.add_argument("--lr", type=float, default=None,
                       help="Adam learning rate (default: the task's, 0.003 for digits)")
    train.add_argument("--out", default="out", help="output folder (default: out/)")
    train.add_argument("--samples", type=int, default=None, metavar="N",
                       help="train on the first N training examples only (a short run)")
    train.add_argument("--seed", type=int, default=None,
                       help="seed of the split, the initial weights and the shuffling (default: 0)")
    train.add_argument("--steps", type=int, default=None,
                       help="--task addition: training steps (default 1000)")
    train.add_argument("--digits", type=int, default=None,
                       help="--task addition: digits per operand (default 2)")
    train.set_defaults(run=_train)
    demo = sub.add_parser("demo", help="fit a quadratic by gradient descent")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--lr", type=float, default=0.05)
    demo.add_argument("--device", default=None, help="cpu, emulated, cuda:N (default: the first usable)")
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="the devices gpuad can use, the CPU and the GPUs (nvidia-ml-py)",
                          description="Report the CPU, the versions, the usable gpuad devices and, "
                                      "through nvidia-ml-py, each NVIDIA GPU: memory, utilisation, "
                                      "power and driver.")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(run=_info)
    from . import bench
    bench_parser = sub.add_parser(
        "bench", help="time gpuad's workloads beside every installed peer (PyTorch, JAX, "
                      "TensorFlow, autograd); writes JSON, Markdown, PNG and a log",
        description="Run gpuad's workloads beside PyTorch, JAX (op by op and jax.jit), "
                    "TensorFlow (eager and tf.function) and HIPS autograd, whichever are "
                    "installed, on the CPU or a GPU. Every result is checked against a float64 "
                    "NumPy reference before it is timed; writes <out>/<device>-<date>.json, "
                    ".md, .png and .log.")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.run)
    from .devices import kernels_command
    kernels = sub.add_parser(
        "kernels", help="compile every CUDA kernel family with NVRTC for chosen GPU architectures "
                        "(no GPU needed): fill the disk cache, --check, or --emit ptx|cubin",
        description=kernels_command.__doc__.splitlines()[0] + " Families compile in parallel, "
                    "exactly as the cuda device compiles them.")
    kernels_command.add_arguments(kernels)
    kernels.set_defaults(run=kernels_command.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
