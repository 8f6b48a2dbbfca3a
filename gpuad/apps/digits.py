"""Task ``digits`` of ``python -m gpuad train`` (the default): :func:`run`.

An MLP (64-128-64-10, relu) on the 8x8 UCI handwritten digits that
ship in :mod:`gpuad.data`, trained with Adam on sparse softmax cross-entropy.
It writes to ``--out``:

* ``metrics.json``: the settings, the training loss on the training set before
  and after training, per-epoch mean loss and train/test accuracy, the final
  test accuracy and the time taken;
* ``curves.png``: the loss and the accuracy curves (matplotlib, Agg);
* ``checkpoint.safetensors``: ``gpuad.save(path, {"model": model, "optimizer": opt})``;
  restore with :func:`build_model` / :func:`build_optimizer` and
  ``gpuad.load(path, into={"model": ..., "optimizer": ...})``.

Every flag is checked before anything is trained or written (``--out`` must be
a directory it can write in, or be creatable as one). If the training loss
stops being finite (too large a ``--lr``), training stops at the end of that
epoch, ``metrics.json`` says ``"diverged"`` (non-finite numbers as ``null``: it
is always strict JSON), no checkpoint is written and the exit status is 1.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

import gpuad as ad
from gpuad.data import load_digits

from .arguments import (UsageError, bounded_int, check_output_dir, check_values, device_name,
                        finite_positive_float, positive_int, refuse, seed_int)
from .common import pick_device

#: Defaults of the digits task (the CLI's defaults when a flag is not given).
DIGITS_DEFAULTS = {"epochs": 20, "batch_size": 32, "lr": 3e-3, "seed": 0}
DIGITS_TEST_SIZE = 360  # 1797 = 1437 train + 360 test
DIGITS_TRAIN_SIZE = 1437

#: the ``train`` flags this task uses, and what each allows
FLAGS = {"device": device_name, "epochs": positive_int, "batch_size": positive_int,
         "lr": finite_positive_float, "seed": seed_int, "out": str,
         "samples": bounded_int(1, DIGITS_TRAIN_SIZE)}

#: what a run writes in ``--out``
OUTPUTS = ("metrics.json", "curves.png", "checkpoint.safetensors")


def digits_split(seed: int = 0, test_size: int = DIGITS_TEST_SIZE):
    """``(x_train, y_train, x_test, y_test)``: the digits flattened to 64
    float32 features in [0, 1], int32 labels, split by a permutation drawn from
    ``numpy.random.default_rng(seed)``."""
    images, labels = load_digits()
    x = images.reshape(len(images), -1)
    perm = np.random.default_rng(seed).permutation(len(x))
    test, train = perm[:test_size], perm[test_size:]
    return x[train], labels[train], x[test], labels[test]


def build_model(seed: int = 0):
    """The digits MLP, 64-128-64-10 with relu, initialised from gpuad's
    generator seeded with ``seed``, on the current device. Layer names are fixed
    so a checkpoint loads into a model built in another process."""
    ad.random.set_seed(seed)
    return ad.nn.Sequential([
        ad.nn.Dense(64, 128, activation="relu", name="hidden_1"),
        ad.nn.Dense(128, 64, activation="relu", name="hidden_2"),
        ad.nn.Dense(64, 10, name="logits"),
    ], name="mlp")


def build_optimizer(model, lr: float = DIGITS_DEFAULTS["lr"]):
    """Adam for ``model``, built (slots created) so its state can be loaded."""
    opt = ad.optimizers.Adam(learning_rate=lr)
    opt.build(model.trainable_variables)
    return opt


def evaluate(model, x, y, batch_size: int = 1024):
    """``(mean loss, accuracy)`` of ``model`` on host arrays ``x``, ``y``."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = ad.constant(x[i:i + batch_size]), ad.constant(y[i:i + batch_size])
        logits = model(xb)
        total_loss += float(ad.reduce_sum(ad.nn.sparse_softmax_cross_entropy_with_logits(yb, logits)))
        correct += int(ad.reduce_sum(ad.cast(ad.equal(ad.argmax(logits, -1, output_type=ad.int32), yb),
                                             ad.int32)))
    return total_loss / len(x), correct / len(x)


def _plot(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["loss"] for h in history], marker="o", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_title("accuracy")
    ax2.legend()
    fig.suptitle("gpuad: MLP on the 8x8 UCI digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def check_arguments(args) -> None:
    """Raise :class:`~gpuad.apps.arguments.UsageError` for a value :data:`FLAGS`
    does not allow or an ``--out`` that cannot be written; creates nothing."""
    check_values(args, FLAGS)
    check_output_dir(getattr(args, "out", None) or "out", "out", OUTPUTS)


def _finite(x):
    """``x``, or ``None`` where it is NaN or infinite (JSON has no such numbers)."""
    return x if x is None or math.isfinite(x) else None


def run(args) -> int:
    """Train the digits MLP from the parsed ``train`` arguments (``device``, ``epochs``,
    ``batch_size``, ``lr``, ``out``, ``samples``, ``seed``; ``None``: the default in
    :data:`DIGITS_DEFAULTS`); see the module docstring for what it writes. Exit status:
    0; 1 when the loss stopped being finite; 2, before anything runs, for a value
    :data:`FLAGS` does not allow or an ``--out`` that cannot be written."""
    from tqdm import tqdm

    try:
        check_arguments(args)
    except UsageError as e:
        return refuse(e, "python -m gpuad train")

    def opt_arg(name):
        value = getattr(args, name, None)
        return DIGITS_DEFAULTS[name] if value is None else FLAGS[name](value)

    epochs, batch_size, lr, seed = (opt_arg(k) for k in ("epochs", "batch_size", "lr", "seed"))
    samples = getattr(args, "samples", None)
    out = getattr(args, "out", None) or "out"

    dev = pick_device(getattr(args, "device", None))
    x_train, y_train, x_test, y_test = digits_split(seed)
    if samples is not None:
        x_train, y_train = x_train[:samples], y_train[:samples]
    n = len(x_train)
    steps = (n + batch_size - 1) // batch_size
    print(f"gpuad {ad.__version__}: training on device {dev}"
          f"{'' if getattr(args, 'device', None) else ' (the first usable GPU, else the CPU; --device overrides)'}")
    print(f"task digits: MLP 64-128-64-10 (relu), Adam lr={lr:g}, {n} training / {len(x_test)} test "
          f"images, batch {batch_size}, {epochs} epoch(s) of {steps} step(s)")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:  # checked above; a race or a file system that changed since
        return refuse(UsageError(f"argument --out: {out!r} cannot be created ({e.strerror or e})"),
                      "python -m gpuad train")

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    history = []
    diverged = None  # (epoch, what) once a loss is not finite
    with ad.device(dev):
        model = build_model(seed)
        opt = build_optimizer(model, lr)
        variables = model.trainable_variables
        initial_loss, initial_acc = evaluate(model, x_train, y_train)
        print(f"before training: loss {initial_loss:.4f}  train accuracy {initial_acc:.4f}")
        for epoch in range(1, epochs + 1):
            perm = rng.permutation(n)
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(range(steps), desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
                       dynamic_ncols=True, file=sys.stderr)
            for i in bar:
                idx = perm[i * batch_size:(i + 1) * batch_size]
                xb, yb = ad.constant(x_train[idx]), ad.constant(y_train[idx])
                with ad.GradientTape() as tape:
                    logits = model(xb, training=True)
                    loss = ad.reduce_mean(ad.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
                grads = tape.gradient(loss, variables)
                del tape  # it holds the variables' values: the optimizer would copy them
                opt.apply_gradients(zip(grads, variables))
                hits = ad.reduce_sum(ad.cast(ad.equal(ad.argmax(logits, -1, output_type=ad.int32), yb),
                                             ad.int32))
                loss_sum += float(loss) * len(idx)
                correct += int(hits)
                seen += len(idx)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
            bar.close()
            test_loss, test_acc = evaluate(model, x_test, y_test)
            history.append({"epoch": epoch, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                            "test_loss": test_loss, "test_accuracy": test_acc})
            print(f"epoch {epoch}/{epochs}: loss {loss_sum / seen:.4f}  train accuracy "
                  f"{correct / seen:.4f}  test accuracy {test_acc:.4f}")
            if not (math.isfinite(loss_sum / seen) and math.isfinite(test_loss)):
                diverged = (epoch, f"the training loss is {loss_sum / seen} and the test loss "
                                   f"{test_loss} in epoch {epoch}/{epochs}, so training stopped there")
                break
        final_loss, final_train_acc = evaluate(model, x_train, y_train)
        test_loss, test_acc = evaluate(model, x_test, y_test)
        seconds = time.perf_counter() - start
        if diverged is None and not (math.isfinite(final_loss) and math.isfinite(test_loss)):
            diverged = (epochs, f"after the last step the training loss is {final_loss} and the "
                                f"test loss {test_loss}")

        ckpt = os.path.join(out, "checkpoint.safetensors")
        if diverged is None:
            ad.save(ckpt, {"model": model, "optimizer": opt})
    plot = os.path.join(out, "curves.png")
    _plot(history, plot)
    metrics = {
        "task": "digits", "device": dev, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "seed": seed, "train_samples": n, "test_samples": len(x_test),
        "initial_loss": _finite(initial_loss), "final_loss": _finite(final_loss),
        "final_train_accuracy": final_train_acc, "test_loss": _finite(test_loss),
        "test_accuracy": test_acc, "seconds": seconds, "diverged": diverged is not None,
        "history": [{k: _finite(v) for k, v in h.items()} for h in history],
    }
    if diverged is not None:
        metrics["diverged_at_epoch"] = diverged[0]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, allow_nan=False)
        f.write("\n")
    if diverged is not None:
        print(f"error: training diverged: {diverged[1]}; no checkpoint was written "
              f"(try a smaller --lr than {lr:g}); wrote {plot} and "
              f"{os.path.join(out, 'metrics.json')}", file=sys.stderr)
        return 1
    print(f"training loss {initial_loss:.4f} -> {final_loss:.4f}; "
          f"final test accuracy {test_acc:.4f} ({seconds:.1f} s on {dev})")
    print(f"wrote {plot}, {ckpt} and {os.path.join(out, 'metrics.json')}")
    return 0
