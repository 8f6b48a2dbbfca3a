"""``python -m gpuad``: the command line.

    python -m gpuad train    train an MLP on the bundled 8x8 digits (plot, checkpoint, metrics),
                             or --task addition, a small causal transformer
    python -m gpuad demo     fit a quadratic by gradient descent, printing progress
    python -m gpuad info     the devices gpuad can use
    python -m gpuad bench    gpuad's workloads beside PyTorch, JAX, TensorFlow and autograd
    python -m gpuad kernels  compile (or --check) every CUDA kernel family with NVRTC, no GPU needed

Every flag is checked before anything runs: a value that is not allowed gets a
usage message on stderr naming the flag and exit status 2, and nothing is written.

This module only wires up the subcommands: the applications (``train`` and its
tasks, ``demo``) live in :mod:`gpuad.apps`, the benchmarks in :mod:`gpuad.bench`.
"""
from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    import gpuad as ad
    from gpuad.devices.telemetry import format_info
    facts = ad.devices.info()
    print(json.dumps(facts, indent=2) if args.json else format_info(facts))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuad", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from .apps import demo, train
    train_parser = sub.add_parser("train", help=train.HELP, description=train.DESCRIPTION)
    train.add_arguments(train_parser)
    train_parser.set_defaults(run=train.run, check_arguments=train.check_arguments)
    demo_parser = sub.add_parser("demo", help=demo.HELP, description=demo.DESCRIPTION)
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run, check_arguments=demo.check_arguments)
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
        description="Run gpuad's workloads, eager and in gpuad.function, beside PyTorch, "
                    "JAX (op by op and jax.jit), "
                    "TensorFlow (eager and tf.function) and HIPS autograd, whichever are "
                    "installed, on the CPU or a GPU. Every result is checked against a float64 "
                    "NumPy reference before it is timed; writes <out>/<device>-<date>.json, "
                    ".md, .png and .log.")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.run, check_arguments=bench.check_arguments)
    from .devices import kernels_command
    kernels = sub.add_parser(
        "kernels", help="compile every CUDA kernel family with NVRTC for chosen GPU architectures "
                        "(no GPU needed): fill the disk cache, --check, or --emit ptx|cubin",
        description=kernels_command.__doc__.splitlines()[0] + " Families compile in parallel, "
                    "exactly as the cuda device compiles them.")
    kernels_command.add_arguments(kernels)
    kernels.set_defaults(run=kernels_command.run)
    args = parser.parse_args(argv)
    # Checks across flags and against the machine (a flag the task does not use, an
    # --out that cannot be written) before anything runs, reported as argparse does.
    from .apps.arguments import UsageError
    try:
        getattr(args, "check_arguments", lambda args: None)(args)
    except UsageError as e:
        sub.choices[args.command].error(str(e))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
