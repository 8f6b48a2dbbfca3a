"""The launch-overhead benchmark (benchmarks/launch_overhead.py) runs end to end
with --quick: a do-nothing launcher, so no compiler or GPU is needed. It prints
one table row per call and writes finite figures to its JSON. Nothing here
asserts a time."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "launch_overhead.py"


def _load_rows():
    import importlib.util
    spec = importlib.util.spec_from_file_location("launch_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_overhead_quick(tmp_path):
    out = tmp_path / "overhead.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    names = [row[0] for row in _load_rows().ROWS]
    for family in ("unary", "binary", "unary_grad", "where", "cast", "fill", "reduce", "arg_reduce",
                   "softmax", "softmax_xent", "layout", "gather"):
        assert any(n.startswith(f"dev.{family} ") for n in names), family
    assert any(n.startswith("op: ") and "(tape)" in n for n in names)

    report = json.loads(out.read_text())
    assert report["benchmark"] == "launch_overhead" and report["settings"]["repeats"] == 3
    assert list(report["results"]) == names
    has_torch = report["versions"]["torch"] is not None
    for name in names:
        # one table row per call: | name | gpuad | torch | ratio |
        cells = [c.strip() for c in re.search(rf"^\| {re.escape(name)} +\|(.*)\|$", proc.stdout,
                                              re.M).group(1).split("|")]
        assert len(cells) == 3, (name, cells)
        e = report["results"][name]
        libs = ("gpuad", "torch") if has_torch else ("gpuad",)
        for lib in libs:
            r = e[lib]
            assert len(r["runs_us"]) == 3 and r["number"] >= 1
            assert all(math.isfinite(v) and v > 0 for v in r["runs_us"] + [r["median_us"]]), (name, lib, r)
        assert math.isfinite(float(cells[0]))
        if has_torch:
            assert math.isfinite(e["ratio"]) and math.isfinite(float(cells[2]))


def test_launch_overhead_against_a_baseline_checkout(tmp_path):
    """--baseline DIR imports DIR's gpuad beside this one (here: this checkout itself)."""
    out = tmp_path / "overhead.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-torch", "--only", "dev.binary multiply",
                           "--baseline", str(ROOT), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"dev.binary multiply", "dev.binary multiply scalar"}
    for e in report["results"].values():
        assert e["baseline"]["median_us"] > 0 and math.isfinite(e["vs_baseline"])
        assert "torch" not in e and e["ratio"] is None
    assert "| gpuad/baseline |" in proc.stdout
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, str(SCRIPT), "--quick", "--baseline", str(tmp_path)],
                       capture_output=True, check=True, timeout=600, cwd=ROOT)
