"""``python -m gpuad train``: the digits job end to end, in a subprocess as a user runs it."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import gpuad as ad
from gpuad.apps import digits as T
from gpuad.data import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run([sys.executable, "-m", "gpuad", "train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bundled_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert labels.shape == (1797,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # the split is fixed by the seed and covers every image once
    a = T.digits_split(0)
    b = T.digits_split(0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a[0]) == 1437 and len(a[2]) == 360


def test_help():
    r = _train("--help", timeout=60)
    assert r.returncode == 0, r.stderr
    for flag in ("--task", "--device", "--epochs", "--batch-size", "--lr", "--out", "--samples",
                 "--seed"):
        assert flag in r.stdout


@pytest.mark.parametrize("dev", ["cpu", "emulated"])
def test_short_run(dev, tmp_path):
    if dev not in ad.devices.available():
        pytest.skip(f"{dev} is not available here (the emulated device needs g++)")
    out = tmp_path / "out"
    r = _train("--samples", "300", "--epochs", "1", "--device", dev, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"on device {dev}" in r.stdout.splitlines()[0]
    assert "final test accuracy" in r.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == dev and metrics["train_samples"] == 300
    assert len(metrics["history"]) == 1
    assert metrics["final_loss"] < metrics["initial_loss"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the checkpoint loads back into a fresh model and optimizer and reproduces the accuracy
    ckpt = out / "checkpoint.safetensors"
    with ad.device("cpu"):
        model = T.build_model(seed=123)
        opt = T.build_optimizer(model)
        ad.load(ckpt, into={"model": model, "optimizer": opt})
        assert int(opt.iterations) == (300 + 31) // 32
        _, _, x_test, y_test = T.digits_split(metrics["seed"])
        _, acc = T.evaluate(model, x_test, y_test)
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1 / 360 + 1e-9)


def test_bad_task_is_rejected():
    r = _train("--task", "nope", timeout=60)
    assert r.returncode != 0 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_full_run_reaches_095_on_cpu(tmp_path):
    t0 = time.perf_counter()
    r = _train("--device", "cpu", "--out", str(tmp_path))
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95, metrics
    assert wall < 60, f"the default run took {wall:.1f} s"
    assert (tmp_path / "curves.png").exists() and (tmp_path / "checkpoint.safetensors").exists()
