"""``python -m gpuad demo``: fit ``y = a*x**2 + b*x + c`` to noisy samples by
plain gradient descent on three scalar Variables, printing the loss and the
coefficients as they go."""
from __future__ import annotations

import sys

import numpy as np

import gpuad as ad

from .arguments import UsageError, check_values, device_name, finite_positive_float, positive_int, refuse
from .common import pick_device

HELP = "fit a quadratic by gradient descent"
DESCRIPTION = ("Fit y = a*x**2 + b*x + c to 64 noisy samples by plain gradient descent on "
               "three scalar Variables, printing the loss and the coefficients as they go.")


#: the flags, and what each allows
FLAGS = {"steps": positive_int, "lr": finite_positive_float, "device": device_name}


def add_arguments(parser) -> None:
    """The ``demo`` subcommand's flags."""
    parser.add_argument("--steps", type=positive_int, default=500,
                        help="gradient-descent steps, >= 1 (default 500)")
    parser.add_argument("--lr", type=finite_positive_float, default=0.05,
                        help="step size, finite and > 0 (default 0.05)")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, emulated, cuda:N (default: the first usable)")


def check_arguments(args) -> None:
    """Raise :class:`~gpuad.apps.arguments.UsageError` for a value :data:`FLAGS` does not allow."""
    check_values(args, FLAGS)


def run(args) -> int:
    """Fit the quadratic for ``args.steps`` steps of size ``args.lr``. Exit status: 0;
    1 when the loss stops being finite (too large an ``--lr``); 2 for a bad value."""
    try:
        check_arguments(args)
    except UsageError as e:
        return refuse(e, "python -m gpuad demo")
    dev = pick_device(args.device)
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
            if step % max(args.steps // 10, 1) == 0 or step == args.steps:
                if not np.isfinite(float(loss)):  # once NaN or inf, it stays so: checked here only
                    print(f"error: gradient descent diverged: the loss is {float(loss)} at step "
                          f"{step} (try a smaller --lr than {args.lr:g})", file=sys.stderr)
                    return 1
                print(f"step {step:5d}  loss {float(loss):.6f}  a={float(a):+.4f} "
                      f"b={float(b):+.4f} c={float(c):+.4f}")
        if not all(np.isfinite(float(v)) for v in (a, b, c)):
            print(f"error: gradient descent diverged: the coefficients are a={float(a)} b={float(b)} "
                  f"c={float(c)} after step {args.steps} (try a smaller --lr than {args.lr:g})",
                  file=sys.stderr)
            return 1
    print(f"true values:             a={true[0]:+.4f} b={true[1]:+.4f} c={true[2]:+.4f}")
    return 0
