"""benchmarks/gpu_check.sh, the script a session runs first on a lent GPU, runs
end to end without one (GPUAD_CHECK_DEVICE=emulated): the kernel check for sm_90,
the collection of the cuda tests, and both benchmarks on the emulated device, with
every log and JSON in one folder. What it does on a GPU is the same commands."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="the emulated device needs g++")
def test_gpu_check_runs_every_step_on_emulated(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "GPUAD_CHECK_DEVICE": "emulated", "GPUAD_CHECK_LIMIT_SCALE": "8", "PYTHON": sys.executable,
           "GPUAD_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env,
                          timeout=900)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = re.findall(r"^== (\w+):", summary, re.M)
    assert steps == ["environment", "kernels", "pytest", "function", "bandwidth", "bench"]
    assert re.findall(r"exit (\d+) after", summary) == ["0"] * 6
    assert "every step passed" in summary
    for step in steps:
        assert (out / f"{step}.log").stat().st_size > 0
    assert "8 of 8 built" in (out / "kernels.log").read_text()
    bandwidth = json.loads(next(out.glob("emulated-*-kernels.json")).read_text())
    assert bandwidth["benchmark"] == "kernels" and bandwidth["results"]
    bench = [p for p in out.glob("emulated-*.json") if not p.name.endswith("-kernels.json")]
    assert len(bench) == 1 and json.loads(bench[0].read_text())["workloads"]


def test_gpu_check_limits_fit_in_eight_minutes():
    """Each step's time limit is in the script; together they must leave the run
    under 8 minutes (a lent GPU's session has about 15, start-up included)."""
    limits = [int(n) for n in re.findall(r"^step \w+ (\d+) ", SCRIPT.read_text(), re.M)]
    assert len(limits) == 6 and sum(limits) <= 8 * 60
