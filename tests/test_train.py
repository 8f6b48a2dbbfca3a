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

    metrics = _strict_json((out / "metrics.json").read_text())
    assert metrics["diverged"] is False
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


def _strict_json(text):
    """JSON as the standard defines it: ``NaN`` and ``Infinity`` are not numbers there."""
    def refuse(constant):
        raise AssertionError(f"not valid JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_lr_nan_is_a_usage_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    for value in ("nan", "inf"):
        r = _train("--lr", value, "--samples", "64", "--epochs", "1", "--device", "cpu",
                   "--out", str(out), timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.startswith("usage:") and "argument --lr" in r.stderr and value in r.stderr
        assert r.stdout == "" and not out.exists()


def _readonly_dir(tmp_path):
    """A directory this process cannot write in, even as root (then /sys, a read-only
    file system in containers and for non-root users alike)."""
    import tempfile
    if os.geteuid() == 0:
        try:
            tempfile.TemporaryFile(dir="/sys").close()
        except OSError:
            return "/sys"
        pytest.skip("running as root and /sys is writable: no read-only directory to test with")
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    return str(d)


@pytest.mark.parametrize("kind", ["existing file", "below a file", "read-only", "below read-only"])
def test_an_out_that_cannot_be_written_is_refused_before_training(kind, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    out = {"existing file": str(a_file), "below a file": str(a_file / "out"),
           "read-only": _readonly_dir(tmp_path),
           "below read-only": os.path.join(_readonly_dir(tmp_path), "out")}[kind]
    r = _train("--samples", "64", "--epochs", "1", "--device", "cpu", "--out", out, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("usage:") and "argument --out" in r.stderr and out in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == "", "training started"
    assert a_file.read_text() == "keep me" and sorted(os.listdir(tmp_path)) in (
        ["a-file"], ["a-file", "readonly"])


def test_a_diverging_run_says_so_exits_1_and_writes_strict_json(tmp_path):
    r = _train("--lr", "1e30", "--samples", "64", "--batch-size", "64", "--epochs", "3",
               "--device", "cpu", "--out", str(tmp_path), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "training diverged" in r.stderr and "--lr" in r.stderr
    metrics = _strict_json((tmp_path / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["diverged_at_epoch"] < 3
    assert None in [metrics["final_loss"], metrics["test_loss"]]
    assert not (tmp_path / "checkpoint.safetensors").exists(), "a NaN checkpoint was written"
