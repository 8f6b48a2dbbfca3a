"""docker/: no Docker engine runs in CI, so check what can be checked without
one -- the Dockerfiles parse, every path they copy exists and is not excluded
by .dockerignore, they default to `python -m gpuad bench --out /results`, and
the CPU image's install and run steps (the same pip lines in a fresh venv, from
a folder holding only what the image copies, then the same bench command in
--quick mode) succeed."""
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile.cpu", "cuda": ROOT / "docker" / "Dockerfile.cuda"}
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse(path: Path) -> list:
    """``[(INSTRUCTION, arguments)]``: comments dropped, ``\\`` continuations joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name} ends inside a continued line"
    return out


def exec_form(args: str) -> list:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def ignored(rel: str, patterns: list) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.replace("**/", "")) \
                    or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                return True
    return False


def dockerignore() -> list:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def copies(instructions) -> list:
    """The sources of every COPY (the last argument is the destination)."""
    out = []
    for word, args in instructions:
        if word in ("COPY", "ADD"):
            parts = exec_form(args) if args.startswith("[") else shlex.split(args)
            parts = [p for p in parts if not p.startswith("--")]
            out += parts[:-1]
    return out


def pip_lines(instructions) -> list:
    """The arguments after ``pip install`` of every RUN that installs with pip."""
    out = []
    for word, args in instructions:
        if word == "RUN" and "pip install" in args:
            for command in args.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    out.append(words[2:])
    return out


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_parses_and_copies_paths_that_exist(kind):
    instructions = parse(DOCKERFILES[kind])
    assert all(word in INSTRUCTIONS for word, _ in instructions), instructions
    first = [word for word, _ in instructions if word != "ARG"][0]
    assert first == "FROM"
    sources = copies(instructions)
    assert sources, "the image copies nothing from the repository"
    for src in sources:
        assert (ROOT / src).exists(), f"{DOCKERFILES[kind].name} copies {src!r}, which does not exist"
        assert not ignored(src, dockerignore()), f"{src!r} is excluded by .dockerignore"
    # pyproject.toml's readme must travel with it, or the install fails
    assert {"pyproject.toml", "README.md", "gpuad", "kernels"} <= set(sources)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_runs_the_bench_into_results_by_default(kind):
    instructions = dict(parse(DOCKERFILES[kind]))
    command = exec_form(instructions["ENTRYPOINT"]) + exec_form(instructions["CMD"])
    assert command[:4] == ["python", "-m", "gpuad", "bench"]
    assert command[command.index("--out") + 1] == "/results"
    assert command[command.index("--device") + 1] == kind
    assert "/results" in instructions["VOLUME"]


def test_dockerignore_keeps_local_state_out():
    patterns = dockerignore()
    for path in (".git", ".venv", "benchmarks/results/x.json", "gpuad/__pycache__/a.pyc"):
        assert ignored(path, patterns), path
    for path in ("gpuad/bench/runner.py", "kernels/binary.cu", "README.md"):
        assert not ignored(path, patterns), path


def test_cuda_image_peer_requirements_are_valid():
    from packaging.requirements import Requirement
    lines = pip_lines(parse(DOCKERFILES["cuda"]))
    peers = [Requirement(r) for line in lines for r in line if not r.startswith((".", "-"))]
    assert {r.name for r in peers} == {"torch", "jax", "tensorflow", "autograd"}
    assert "cuda13" in next(r for r in peers if r.name == "jax").extras


def test_cuda_image_builds_the_kernel_cache_it_runs_with():
    """The CUDA image compiles every kernel family at build time (after installing
    gpuad, for sm_80 and sm_90) into the cache directory its containers use."""
    instructions = parse(DOCKERFILES["cuda"])
    words = [(word, args) for word, args in instructions]
    install = next(i for i, (w, a) in enumerate(words) if w == "RUN" and 'pip install ".[cuda13]"' in a)
    build = next(i for i, (w, a) in enumerate(words) if w == "RUN" and "python -m gpuad kernels" in a)
    assert install < build
    assert shlex.split(words[build][1])[4:] == ["--arch", "sm_80", "--arch", "sm_90"]
    env = [a for w, a in words[:build] if w == "ENV"]
    assert any(a.startswith("GPUAD_CACHE_DIR=") for a in env), "the cache must be where containers look"


@pytest.mark.slow
def test_cpu_image_steps_succeed_in_a_fresh_venv(tmp_path):
    """The CPU image's pip lines in a fresh venv, run from a folder holding only
    what the Dockerfile copies, then its command in --quick mode. The only
    difference: the image's --extra-index-url (PyTorch's CPU wheels) is dropped,
    as this machine serves torch's CPU wheel locally. The cuda image's gpuad line
    (`.[cuda13]`) runs too: CuPy installs without a GPU."""
    context = tmp_path / "opt-gpuad"
    context.mkdir()
    instructions = parse(DOCKERFILES["cpu"])
    for src in copies(instructions):
        (shutil.copytree if (ROOT / src).is_dir() else shutil.copy2)(
            ROOT / src, context / src, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (ROOT / src).is_dir() else {}))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    cuda_lines = [line for line in pip_lines(parse(DOCKERFILES["cuda"])) if line[0].startswith(".")]
    for line in pip_lines(instructions) + cuda_lines:
        args = [a for a in line if a not in ("--extra-index-url", "$TORCH_INDEX") and "TORCH_INDEX" not in a]
        proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], cwd=context,
                              capture_output=True, text=True, timeout=1800, env=env)
        assert proc.returncode == 0, f"pip install {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    command = exec_form(dict(instructions)["ENTRYPOINT"]) + exec_form(dict(instructions)["CMD"])
    results = tmp_path / "results"
    command[command.index("--out") + 1] = str(results)
    command = [str(python)] + command[1:] + ["--quick"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (report,) = results.glob("cpu-*.json")
    libs = json.loads(report.read_text())["libraries"]
    assert libs["gpuad"]["status"] == "ok" and libs["torch"]["status"] == "ok", libs
    assert {p.suffix for p in results.iterdir()} == {".json", ".md", ".png", ".log"}
