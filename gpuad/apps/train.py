"""``python -m gpuad train``: the flags shared by every task, the task registry
and the dispatch. Each task is a module of :mod:`gpuad.apps` with ``run(args) -> int``
(see the package docstring)."""
from __future__ import annotations

from . import addition, digits

#: ``--task`` name -> task module; ``python -m gpuad train --task NAME`` calls
#: ``TASKS[NAME].run(args)`` with the parsed arguments and exits with its status.
TASKS = {
    "digits": digits,
    "addition": addition,
}

HELP = ("train a model: an MLP on the bundled 8x8 handwritten digits, or "
        "(--task addition) a small causal transformer on digit addition")

DESCRIPTION = ("Train a model. --task digits (the default): an MLP 64-128-64-10 with Adam on the "
               "8x8 UCI handwritten digits shipped with gpuad, a fixed-seed 1437/360 train/test "
               "split, showing a progress bar with loss and accuracy, then writing metrics.json, "
               "curves.png (loss and accuracy per epoch) and checkpoint.safetensors (model and "
               "optimizer) to --out. --task addition: a small causal transformer learns "
               "multi-digit addition, then reports its exact-match accuracy on held-out problems.")


def add_arguments(parser) -> None:
    """The ``train`` subcommand's flags; a flag left out is ``None`` (the task's default)."""
    parser.add_argument("--task", choices=sorted(TASKS), default="digits",
                        help="what to train (default: digits)")
    parser.add_argument("--device", default=None,
                        help="cpu, emulated, cuda:N (default: the first usable GPU, else the CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training set "
                        "(default: the task's, 20 for digits)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per step (default: the task's, 32 for digits)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default: the task's, 0.003 for digits)")
    parser.add_argument("--out", default="out", help="output folder (default: out/)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="train on the first N training examples only (a short run)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the split, the initial weights and the shuffling (default: 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help="--task addition: training steps (default 1000)")
    parser.add_argument("--digits", type=int, default=None,
                        help="--task addition: digits per operand (default 2)")


def run(args) -> int:
    """Run the task ``args.task``; its exit status."""
    return TASKS[args.task].run(args)
