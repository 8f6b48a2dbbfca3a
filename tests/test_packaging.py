"""What a user gets: the wheel installs and works outside the checkout, the
README's tour runs as written, and the command line answers."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _env(**extra):
    """The environment for a child process: this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "GPUAD_DEVICE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run(cmd, cwd, env=None, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (f"{' '.join(map(str, cmd))} exited {r.returncode}\n"
                               f"--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r


# -- (i) the wheel -------------------------------------------------------------------------

_SKIP_ANYWHERE = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks", ".cache"}
_SKIP_AT_ROOT = {".venv", "venv", "build", "dist", "out"}


def _ignore(directory, names):
    """What not to copy: caches anywhere, build outputs and venvs at the top."""
    top = Path(directory).resolve() == ROOT
    return {n for n in names if n in _SKIP_ANYWHERE or n.endswith((".egg-info", ".pyc"))
            or (top and n in _SKIP_AT_ROOT)}

_CHECK_INSTALLED = textwrap.dedent("""
    import json, sys, sysconfig
    from pathlib import Path
    import gpuad as ad
    from gpuad.devices import kernel_sources

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    kdir = Path(kernel_sources.kernel_dir()).resolve()
    assert Path(ad.__file__).resolve().is_relative_to(site), (ad.__file__, str(site))
    assert kdir.is_relative_to(site), f"kernel_dir() {kdir} is not inside {site}"
    assert (kdir / "common.cuh").is_file(), sorted(p.name for p in kdir.iterdir())
    assert "common.cuh" in kernel_sources.sources()

    x = ad.Variable([1.0, 2.0, 3.0])
    with ad.GradientTape() as tape:
        y = ad.reduce_sum(x * x + ad.sin(x))
    g = tape.gradient(y, x).numpy()
    expected = [2 * v + __import__("math").cos(v) for v in (1.0, 2.0, 3.0)]
    assert all(abs(a - b) < 1e-5 for a, b in zip(g.tolist(), expected)), (g, expected)
    print(json.dumps({"site": str(site), "kernels": str(kdir),
                      "package": str(Path(ad.__file__).resolve().parent),
                      "shipped": sorted(p.name for p in kdir.glob("*.cu*"))}))
""")


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_works_outside_the_checkout(tmp_path):
    # Build from a copy, so no build/ or *.egg-info lands in (or leaks from) the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(wheels)],
         cwd=tmp_path)
    (wheel,) = wheels.glob("gpuad-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "PYTHONHOME", "GPUAD_DEVICE", "VIRTUAL_ENV")}
    _run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path, env=clean)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _run([str(py), "-c", _CHECK_INSTALLED], cwd=elsewhere, env=clean, timeout=120)
    facts = json.loads(r.stdout.strip().splitlines()[-1])

    # every subpackage and every kernel source of the checkout made it into the wheel
    package = Path(facts["package"])
    for init in sorted((ROOT / "gpuad").rglob("__init__.py")):
        rel = init.relative_to(ROOT / "gpuad")
        assert (package / rel).is_file(), (
            f"gpuad/{rel.parent.as_posix()} is missing from the wheel: add it to "
            f"[tool.setuptools] packages in pyproject.toml")
    shipped = set(facts["shipped"])
    for source in sorted((ROOT / "kernels").glob("*.cu*")):
        assert source.name in shipped, f"kernels/{source.name} is not shipped in the wheel"

    # the console script works too
    r = _run([str(bindir / "gpuad"), "info"], cwd=elsewhere, env=clean, timeout=120)
    assert "cpu" in r.stdout


# -- (ii) the README's tour ------------------------------------------------------------------

def _python_blocks(text):
    """(first line number, code) of every ```python block, in order."""
    blocks = []
    for m in re.finditer(r"^```(?:python|py)[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
        line = text.count("\n", 0, m.start(1)) + 1
        blocks.append((line, m.group(1)))
    return blocks


def test_readme_python_blocks_are_found():
    text = "a\n```python\nx = 1\n```\n```sh\nmake\n```\n```python\ny = x\n```\n"
    assert _python_blocks(text) == [(3, "x = 1\n"), (9, "y = x\n")]


def test_readme_tour_runs(tmp_path, monkeypatch, capsys):
    if not README.is_file():
        pytest.fail(f"{README} does not exist: the README's API tour (a '## A short tour' "
                    f"section with ```python blocks) is part of the tested documentation.")
    text = README.read_text(encoding="utf-8")
    blocks = _python_blocks(text)
    assert blocks, "README.md has no ```python blocks to run"
    tour = re.search(r"^## A short tour\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert tour, "README.md has no '## A short tour' section"
    assert "```python" in tour.group(1), "the '## A short tour' section has no ```python block"

    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace = {"__name__": "__readme__"}
    for line, code in blocks:
        # padded so a traceback points at the README's own line numbers
        exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)
    capsys.readouterr()


# -- (iii) the command line ------------------------------------------------------------------

def test_cli_help(tmp_path):
    r = _run([sys.executable, "-m", "gpuad", "--help"], cwd=tmp_path, env=_env(), timeout=120)
    assert "demo" in r.stdout and "info" in r.stdout
    r = _run([sys.executable, "-m", "gpuad", "demo", "--help"], cwd=tmp_path, env=_env(), timeout=120)
    assert "--steps" in r.stdout


def test_cli_demo_runs_and_learns(tmp_path):
    r = _run([sys.executable, "-m", "gpuad", "demo", "--steps", "50"], cwd=tmp_path, env=_env(),
             timeout=300)
    losses = [float(v) for v in re.findall(r"loss\s+([0-9.eE+-]+)", r.stdout)]
    assert len(losses) >= 2, r.stdout
    assert losses[-1] < losses[0], f"the demo's loss did not go down:\n{r.stdout}"


def test_cli_info(tmp_path):
    r = _run([sys.executable, "-m", "gpuad", "info"], cwd=tmp_path, env=_env(), timeout=120)
    assert "cpu" in r.stdout


def test_cli_rejects_an_unknown_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gpuad", "no-such-command"], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "no-such-command" in r.stderr
