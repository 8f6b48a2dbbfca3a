"""``python -m gpuad train``: the flags shared by every task, the task registry
and the dispatch. Each task is a module of :mod:`gpuad.apps` with ``run(args) -> int``,
``check_arguments(args)`` and ``FLAGS``, the flags it uses (see the package docstring)."""
from __future__ import annotations

from . import addition, digits
from .arguments import UsageError, check_values, flag, refuse

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
               "multi-digit addition, then reports its exact-match accuracy on held-out problems. "
               "A flag the chosen task does not use is refused; a run whose loss stops being "
               "finite exits with status 1.")

#: the flags every task takes; each task's ``FLAGS`` holds the rest (and these)
COMMON = ("device", "batch_size", "lr", "seed")


def _type(name):
    """The type function of flag ``name`` (the same in every task that uses it)."""
    return next(task.FLAGS[name] for task in TASKS.values() if name in task.FLAGS)


def _tasks_using(name):
    return [t for t, task in TASKS.items() if name in task.FLAGS]


def add_arguments(parser) -> None:
    """The ``train`` subcommand's flags; a flag left out is ``None`` (the task's default)."""
    parser.add_argument("--task", choices=sorted(TASKS), default="digits",
                        help="what to train (default: digits)")
    parser.add_argument("--device", type=_type("device"), default=None,
                        help="cpu, emulated, cuda:N (default: the first usable GPU, else the CPU)")
    parser.add_argument("--epochs", type=_type("epochs"), default=None,
                        help="--task digits: passes over the training set, >= 1 (default 20)")
    parser.add_argument("--batch-size", type=_type("batch_size"), default=None,
                        help="examples per step, >= 1 (default: the task's, 32 for digits)")
    parser.add_argument("--lr", type=_type("lr"), default=None,
                        help="Adam learning rate, finite and > 0 (default: the task's, "
                             "0.003 for digits)")
    parser.add_argument("--out", type=str, default=None,
                        help="--task digits: output folder, created if missing; checked to be "
                             "writable before training (default: out/)")
    parser.add_argument("--samples", type=_type("samples"), default=None, metavar="N",
                        help="--task digits: train on the first N training examples only "
                             "(a short run), 1 to 1437")
    parser.add_argument("--seed", type=_type("seed"), default=None,
                        help="seed of the split, the initial weights and the shuffling, "
                             "0 to 2**32-1 (default: 0)")
    parser.add_argument("--steps", type=_type("steps"), default=None,
                        help="--task addition: training steps, >= 1 (default 1000)")
    parser.add_argument("--digits", type=_type("digits"), default=None,
                        help="--task addition: digits per operand, 1 to 18 (default 2)")


def check_arguments(args) -> None:
    """Raise :class:`~gpuad.apps.arguments.UsageError` for a flag ``args.task``
    does not use, or a value it does not allow (see the task's ``check_arguments``)."""
    task = getattr(args, "task", None) or "digits"
    if task not in TASKS:
        raise UsageError(f"argument --task: invalid choice {task!r} (choose from "
                         f"{', '.join(sorted(TASKS))})")
    for name in sorted({n for t in TASKS.values() for n in t.FLAGS} - set(TASKS[task].FLAGS)):
        if getattr(args, name, None) is not None:
            raise UsageError(f"argument {flag(name)}: --task {task} does not use it (it is for "
                             f"--task {' / '.join(_tasks_using(name))})")
    check_values(args, TASKS[task].FLAGS)
    TASKS[task].check_arguments(args)


def run(args) -> int:
    """Run the task ``args.task``; its exit status (2, saying why, for bad arguments)."""
    try:
        check_arguments(args)
    except UsageError as e:
        return refuse(e, "python -m gpuad train")
    return TASKS[getattr(args, "task", None) or "digits"].run(args)
