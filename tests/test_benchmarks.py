"""The kernel benchmark script (benchmarks/kernels.py) runs end to end, as a
smoke test on the emulated device, where its figures mean nothing. (The
workloads against the peers are `python -m gpuad bench`: tests/bench/.) It
writes one JSON file with the expected keys and exits 0 (a result that disagrees
with the NumPy reference would make it exit 1). Nothing here asserts a time."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gpuad as ad

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
DATE = r"\d{4}-\d{2}-\d{2}"

needs_emulated = pytest.mark.skipif("emulated" not in ad.devices.available(),
                                    reason="the emulated device needs a host C++ compiler (g++)")


def _run(script, tmp_path, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    return files[0], json.loads(files[0].read_text()), proc.stdout


def _common(report, name, device_kind):
    for key in ("benchmark", "date", "command", "device", "host", "versions", "settings", "results"):
        assert key in report, key
    assert report["benchmark"] == name
    assert report["device"]["kind"] == device_kind
    assert f"benchmarks/{name}.py" in report["command"]
    assert report["versions"]["numpy"] and report["versions"]["gpuad"] == ad.__version__


@pytest.mark.slow
@needs_emulated
def test_kernels_script_on_the_emulated_device(tmp_path):
    path, report, out = _run("kernels.py", tmp_path, "--device", "emulated", "--elements", "65536",
                             "--repeats", "2")
    assert re.fullmatch(f"emulated-{DATE}-kernels", path.stem)
    _common(report, "kernels", "emulated")
    assert "mean nothing" in report["note"] and "mean nothing" in out
    assert report["settings"]["elements"] == 65536 and report["settings"]["repeats"] == 2
    assert report["copy"]["gbps"] > 0
    expected = {"exp", "add", "add_bcast", "sum_all", "sum_last", "sum_first", "transpose", "softmax", "gather",
                "adam"}
    assert set(report["results"]) == expected
    for key, r in report["results"].items():
        for who in ("gpuad", "peer"):
            e = r[who]
            assert e["status"] == "ok", (key, who, e)
            assert len(e["runs_ms"]) == 2 and e["gbps"] > 0 and e["fraction_of_copy"] > 0
    # the goals: contiguous element-wise 90 %, reductions and softmax 75 %, optimizer 80 %
    targets = {k: r["target_fraction_of_copy"] for k, r in report["results"].items()}
    assert targets["exp"] == targets["add"] == 0.9 and targets["adam"] == 0.8
    assert targets["sum_all"] == targets["sum_last"] == targets["softmax"] == 0.75
    overhead = report["overhead"]["gpuad: x + 1.0"]
    assert overhead["status"] == "ok" and overhead["median_us"] > 0 and overhead["target_us"] == 10
    assert "| kernel |" in out and "| small op from Python" in out
