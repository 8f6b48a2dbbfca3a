"""``python -m gpuad bench``: every library's results agree with the float64
references, a library that disagrees is reported and not timed, and a quick
run writes valid JSON, Markdown, PNG and a log. Nothing here asserts a time."""
import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gpuad import bench
from gpuad.bench import libraries, report, runner
from gpuad.bench.libraries.base import F_FUNCTIONS, NUMPY_F
from gpuad.bench.workloads import NAMES, all_workloads

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load(name, device="cpu"):
    try:
        return libraries.load(name, device)
    except libraries.Unavailable as e:
        pytest.skip(f"{name} cannot run here: {e}")


@pytest.fixture(scope="module")
def quick_workloads():
    return all_workloads(quick=True)


@pytest.mark.parametrize("name", list(libraries.ADAPTERS))
def test_every_library_agrees_with_the_float64_references(name, quick_workloads):
    lib = _load(name)
    assert set(F_FUNCTIONS) <= set(vars(lib.F)), "the adapter's F lacks functions the models use"
    for w in quick_workloads:
        if lib.workloads is not None and w.name not in lib.workloads:
            continue
        program = w.program(lib)
        result = runner.check(w, program.check())
        assert result["passed"], f"{name} / {w.name}: {result}"
        lib.sync(program.step())  # a step runs after the check


@pytest.mark.parametrize("name", ["gpuad", "gpuad-function"])
def test_the_emulated_device_runs_the_same_workloads(name, quick_workloads):
    lib = _load(name, "emulated")
    for w in quick_workloads:
        if w.name in ("quadratic", "chain16m"):  # slow on the emulator, and no kernel they alone use
            continue
        assert runner.check(w, w.program(lib).check())["passed"], w.name


class _CountingFunction:
    """Stands in for ``gpuad.function``: runs the function eagerly and records,
    per compiled function, the signature of every call (each tensor argument's
    shape and dtype, in lists as given) -- what a tracer traces once per -- and
    any argument that is not a tensor."""

    def __init__(self):
        self.signatures = []   # per compiled function: the set of call signatures
        self.calls = 0
        self.not_tensors = []

    def __call__(self, fn):
        seen = set()
        self.signatures.append(seen)

        def compiled(*args):
            self.calls += 1
            seen.add(self._signature(args))
            return fn(*args)
        return compiled

    def _signature(self, arg):
        import gpuad as ad
        if isinstance(arg, (list, tuple)):
            return tuple(self._signature(a) for a in arg)
        if not isinstance(arg, ad.Tensor):
            self.not_tensors.append(arg)
            return type(arg).__name__
        return arg.shape, arg.dtype.name


def test_gpuad_function_compiles_every_step_once(monkeypatch, quick_workloads):
    """Every timed step of gpuad-function goes through ``gpuad.function``; the
    compiled functions are made when the program is built (not per step) and
    are called with tensors of one shape and dtype each, so a tracer traces
    each once, not once per call."""
    import gpuad as ad
    counting = _CountingFunction()
    monkeypatch.setattr(ad, "function", counting)
    lib = _load("gpuad-function")
    for w in quick_workloads:
        program = w.program(lib)
        assert runner.check(w, program.check())["passed"], w.name
        lib.sync(program.step())  # a workload may build what it times on first use
        made, calls = len(counting.signatures), counting.calls
        for _ in range(2):
            lib.sync(program.step())
        assert len(counting.signatures) == made, f"{w.name}: a step made a new compiled function"
        assert counting.calls > calls, f"{w.name}: a step ran outside gpuad.function"
    assert not counting.not_tensors, f"arguments that are not tensors: {counting.not_tensors[:5]}"
    for seen in counting.signatures:
        assert len(seen) <= 1, f"a compiled function was called with {len(seen)} signatures: {seen}"


@pytest.mark.parametrize("name", [n for n in libraries.ADAPTERS if not n.startswith("gpuad")])
def test_peers_refuse_the_emulated_device_with_a_reason(name):
    with pytest.raises(libraries.Unavailable) as e:
        libraries.load(name, "emulated")
    assert str(e.value)


def test_the_check_rejects_a_result_off_by_more_than_the_tolerance(quick_workloads):
    w = quick_workloads[0]
    want = w.reference()
    assert runner.check(w, want)["passed"]
    assert runner.check(w, want * (1 + 3 * w.rtol) + w.atol)["passed"] is False
    assert runner.check(w, np.full_like(want, np.nan))["passed"] is False
    assert runner.check(w, want[:-1])["passed"] is False


def test_the_references_are_independent_of_the_model_code():
    # The references run the same model functions on NumPy float64: check that
    # namespace against first principles where the math is short.
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(np.sum(np.exp(NUMPY_F.log_softmax(x))), 1.0)
    from math import erf
    np.testing.assert_allclose(NUMPY_F.gelu(np.array([1.0])), [0.5 * (1 + erf(1 / np.sqrt(2)))])
    ln = NUMPY_F.layer_norm(x, 1.0, 0.0)
    np.testing.assert_allclose([ln.mean(), ln.var()], [0.0, 1.0], atol=1e-5)


def _run_in_process(monkeypatch, tmp_path, *args):
    monkeypatch.setitem(libraries.ADAPTERS, "slightly-wrong", "tests.bench.fakes:SlightlyWrong")
    monkeypatch.setitem(libraries.ADAPTERS, "exploding", "tests.bench.fakes:Exploding")
    code = bench.main(["--quick", "--out", str(tmp_path), *args])
    (path,) = tmp_path.glob("*.json")
    return code, json.loads(path.read_text()), path


def test_a_library_that_disagrees_is_reported_and_not_timed(monkeypatch, tmp_path):
    code, rep, path = _run_in_process(monkeypatch, tmp_path, "--libs", "gpuad,slightly-wrong,exploding",
                                      "--workloads", "overhead,hessian1m,digits")
    assert code == 0  # gpuad itself is right; the peers' problems are reported
    wrong = rep["workloads"]["overhead"]["results"]["slightly-wrong"]
    assert wrong["status"] == "WRONG" and not wrong["check"]["passed"]
    assert "median" not in wrong and "seconds" not in wrong
    assert "slightly-wrong" not in rep["workloads"]["overhead"]["ratios"]
    # second derivatives and training do not use grad_of_sum: timed as usual
    assert rep["workloads"]["hessian1m"]["results"]["slightly-wrong"]["status"] == "ok"
    broken = rep["workloads"]["hessian1m"]["results"]["exploding"]
    assert broken["status"] == "error" and "simulated failure" in broken["error"]
    md = path.with_suffix(".md").read_text()
    assert "WRONG" in md and "simulated failure" in md


@pytest.mark.parametrize("argv, flag", [
    (["--libs", "gpuad,nonesuch"], "--libs"), (["--workloads", "everything"], "--workloads"),
    (["--workloads", ""], "--workloads"), (["--libs", "torch"], "--libs"),
    (["--repeats", "0"], "--repeats"), (["--warmup", "-1"], "--warmup"),
    (["--target-seconds", "0"], "--target-seconds"), (["--target-seconds", "inf"], "--target-seconds"),
    (["--target-seconds", "nan"], "--target-seconds"),
])
def test_bad_arguments_are_refused(argv, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main([*argv, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "a refused run writes nothing"
    # run() called with a Namespace built in code refuses the same way
    args = argparse.Namespace(device="cpu", libs="gpuad", workloads="overhead", quick=True,
                              repeats=None, warmup=None, target_seconds=None, out=str(tmp_path / "out"))
    setattr(args, flag[2:].replace("-", "_"), argv[1])
    assert bench.run(args) == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(tmp_path / "f")])
    assert e.value.code == 2 and "argument --out" in capsys.readouterr().err


def test_a_missing_peer_is_unavailable_not_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)   # import jax now raises ImportError
    monkeypatch.setitem(sys.modules, "autograd", None)
    for name in ("jax", "jax-jit", "autograd"):
        with pytest.raises(libraries.Unavailable, match="not installed"):
            libraries.load(name, "cpu")


def test_the_json_report_is_strict_json(tmp_path):
    rep = {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}}
    assert report.strict_json(rep) == {"a": None, "b": [None, 1.5], "c": {"d": None}}


#: ``python -c`` that runs ``python -m gpuad`` where only the named packages can be
#: imported of the peers: the others are blocked as if they were not installed.
_ONLY_TORCH = """
import sys, importlib.abc
BLOCKED = {"jax", "jaxlib", "tensorflow", "autograd", "keras"}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from gpuad.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_bench_runs_with_only_pytorch_installed(tmp_path):
    """A venv with gpuad and PyTorch only: the other peers are reported as not
    installed, in the JSON and in the tables, and the run goes on."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", _ONLY_TORCH, "bench", "--quick", "--device", "cpu",
                           "--workloads", "overhead", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (path,) = tmp_path.glob("cpu-*.json")
    rep = json.loads(path.read_text())
    for name in ("jax", "jax-jit", "tensorflow", "tf-function", "autograd"):
        lib = rep["libraries"][name]
        assert lib["status"] == "unavailable" and "not installed" in lib["reason"], (name, lib)
        assert name not in rep["workloads"]["overhead"]["results"]
    assert rep["workloads"]["overhead"]["results"]["gpuad"]["status"] == "ok"
    if importlib_has("torch"):
        assert rep["libraries"]["torch"]["status"] == "ok"
        assert "torch" in rep["workloads"]["overhead"]["ratios"]
    md = path.with_suffix(".md").read_text()
    assert "| jax | - | not run: not installed" in md


def test_quick_bench_end_to_end_in_a_subprocess(tmp_path):
    """What CI runs: the command line, with every installed peer (PyTorch at least in CI)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "gpuad", "bench", "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("cpu-*.json")
    rep = json.loads(path.read_text())
    assert rep["settings"]["quick"] and rep["settings"]["device"] == "cpu"
    assert set(rep["workloads"]) == set(NAMES)
    assert rep["environment"]["versions"]["numpy"] == np.__version__
    ran = [n for n, lib in rep["libraries"].items() if lib["status"] == "ok"]
    for n, lib in rep["libraries"].items():
        assert lib["status"] == "ok" or lib["reason"], n
    for key, w in rep["workloads"].items():
        ours = w["results"]["gpuad"]
        assert ours["status"] == "ok" and ours["check"]["passed"], key
        assert ours["min"] <= ours["median"] <= ours["max"] and len(ours["seconds"]) == 3
        for n in ran:
            if n in w["results"] and n != "gpuad":
                e = w["results"][n]
                assert e["status"] in ("ok", "WRONG", "error"), (key, n)
                if e["status"] == "ok":
                    assert w["ratios"][n] == pytest.approx(ours["median"] / e["median"])
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# gpuad bench:") and "| workload | unit | gpuad |" in md
    for n in ran:
        if n != "gpuad" and n != "gpuad-unfused":
            assert f"gpuad/{n}" in md
    png = path.with_suffix(".png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    import matplotlib.image
    assert matplotlib.image.imread(str(path.with_suffix(".png"))).shape[2] in (3, 4)
    assert "wrote" in path.with_suffix(".log").read_text()
    if importlib_has("torch"):
        assert rep["libraries"]["torch"]["status"] == "ok"
        assert "torch" in rep["workloads"]["mlp128"]["ratios"]


def importlib_has(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def test_markdown_cells_say_why_there_is_no_figure():
    assert report.cell(None) == "n/a"
    assert report.cell({"status": "error", "error": "x"}) == "error"
    assert report.cell({"status": "WRONG", "check": {"max_abs_error": 0.5}}).startswith("WRONG")
    assert report.cell({"status": "ok", "figures": {"value": 1234.5}}) == "1,234"


class _FakeNvml(types.ModuleType):
    """Enough of pynvml for the sampler: 1 GiB in use, 50 % busy, 100 W, and an
    energy counter that advances by 100 J per second."""

    def __init__(self):
        super().__init__("pynvml")
        import time
        self._t0 = time.perf_counter()

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=2**30)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=50)

    def nvmlDeviceGetPowerUsage(self, h):
        return 100_000  # milliwatts

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        import time
        return int((time.perf_counter() - self._t0) * 100_000)  # millijoules


def test_gpu_sampler_reports_memory_utilisation_and_energy(monkeypatch):
    import time
    from gpuad.bench.sampler import GpuSampler
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    s = GpuSampler(0, period=0.01)
    s.begin(("w", "gpuad"))
    time.sleep(0.2)
    s.end(("w", "gpuad"), steps=10)
    s.stop()
    g = s.summary(("w", "gpuad"))
    assert g["peak_memory_bytes"] == 2**30 and g["mean_utilization"] == 50
    assert g["energy_source"] == "energy counter"
    assert g["energy_per_step_j"] == pytest.approx(100 * 0.2 / 10, rel=0.25)
    assert s.summary(("other", "gpuad"))["energy_per_step_j"] is None


def test_gpuad_makes_no_host_transfers_inside_the_timed_steps(tmp_path):
    """DESIGN rule 3, measured where it matters: the emulated device counts every
    host <-> device copy the same way the cuda device does."""
    _load("gpuad", "emulated")
    code = bench.main(["--quick", "--device", "emulated", "--libs", "gpuad,gpuad-function",
                       "--out", str(tmp_path), "--workloads", "overhead,mlp128,hessian1m,transformer,adam100"])
    assert code == 0
    (path,) = tmp_path.glob("emulated-*.json")
    for key, w in json.loads(path.read_text())["workloads"].items():
        for name in ("gpuad", "gpuad-function"):
            assert w["results"][name]["status"] == "ok", (key, name)
            assert w["results"][name]["transfers"] == 0, (key, name)


def test_a_device_gpuad_cannot_use_is_a_clear_error(tmp_path, capsys):
    import gpuad as ad
    if any(d.startswith("cuda") for d in ad.devices.available()):
        pytest.skip("this machine has a usable GPU")
    assert bench.main(["--device", "cuda", "--libs", "gpuad", "--workloads", "overhead",
                       "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "gpuad itself cannot run on cuda" in out and "--device cpu" in out
