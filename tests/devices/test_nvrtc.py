"""The cuda device's kernel builds (gpuad/devices/nvrtc.py, ``python -m gpuad
kernels``), checked with NVRTC alone: no GPU or driver needed.

- every family compiles for sm_80 and sm_90 through the exact path the device uses;
- float32 arithmetic keeps subnormals (no ``.ftz`` instructions, which CuPy's
  RawModule would have added);
- the disk cache is keyed by the full source, included files too;
- every kernel name maps to the family whose file defines it.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpuad.devices import nvrtc
from gpuad.devices.kernel_sources import kernel_dir
from gpuad.errors import KernelCompileError

REPO = Path(__file__).resolve().parents[2]


def _nvrtc_or_reason():
    try:
        return None if nvrtc.nvrtc_version() else "no NVRTC"
    except nvrtc.CudaUnavailableError as e:
        return str(e)


_REASON = _nvrtc_or_reason()
needs_nvrtc = pytest.mark.skipif(_REASON is not None, reason=f"NVRTC is not usable here: {_REASON}")


def _kernels(*args, cache):
    return subprocess.run([sys.executable, "-m", "gpuad", "kernels", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "GPUAD_CACHE_DIR": str(cache)},
                          timeout=900)


# ----------------------------------------------------------------------------- every family compiles
@needs_nvrtc
@pytest.mark.slow
def test_every_family_compiles_for_sm80_and_sm90(tmp_path):
    proc = _kernels("--check", "--arch", "sm_80", "--arch", "sm_90", cache=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for arch in ("sm_80", "sm_90"):
        for family in nvrtc.FAMILIES:
            assert re.search(rf"^  {family}\s+{arch}\s+[\d.]+ s\s+[\d,]+ bytes$", proc.stdout, re.M), proc.stdout
    assert f"{2 * len(nvrtc.FAMILIES)} of {2 * len(nvrtc.FAMILIES)} built" in proc.stdout
    # the builds are in the cache: the cuda device finds them there
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cuda").glob("*-sm_90-*.cubin")) == sorted(nvrtc.FAMILIES)
    again = _kernels("--arch", "sm_90", "--family", "random", cache=tmp_path)
    assert again.returncode == 0 and re.search(r"^  random\s+sm_90\s+cached", again.stdout, re.M), again.stdout


def _ftz_instructions(ptx: str) -> set[str]:
    """The flush-to-zero arithmetic in ``ptx``: every ``.ftz`` instruction except the
    hardware approximations (``ex2.approx.ftz.f32``, ``rcp.approx.ftz.f32/f64``) that
    libdevice's expf, fmodf and double division use internally on range-reduced
    arguments (never subnormal), and that they handle subnormal inputs and results
    around; ``rcp.approx.f64`` exists only in its .ftz form."""
    found = {m.group(1) for m in re.finditer(r"^\s*(?:@!?%p\d+\s+)?([a-z0-9_.]*\.ftz[a-z0-9_.]*)\s", ptx, re.M)}
    return {op for op in found if ".approx." not in op}


@needs_nvrtc
@pytest.mark.slow
def test_float32_ptx_has_no_flush_to_zero(tmp_path):
    out = tmp_path / "ptx"
    proc = _kernels("--check", "--emit", "ptx", "--arch", "sm_90", "--out", str(out), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(out.glob("*.compute_90.ptx"))
    assert [f.name.split(".")[0] for f in files] == sorted(nvrtc.FAMILIES)
    for f in files:
        flushing = _ftz_instructions(f.read_text())
        assert not flushing, f"{f.name} flushes subnormals: {sorted(flushing)}"


@needs_nvrtc
def test_ftz_check_sees_what_cupys_rawmodule_options_would_produce(tmp_path, monkeypatch):
    """The check above can fail: RawModule appends -ftz=true, which turns plain float
    arithmetic into .ftz instructions."""
    (tmp_path / "probe.cu").write_text('extern "C" __global__ void probe_f32(float* x) {\n'
                                       '    x[0] = x[1] * x[2] / x[3] + sqrtf(x[4]);\n}\n')
    ours = nvrtc.compile_family("probe", "compute_90", directory=tmp_path, cache=tmp_path / "a")
    assert _ftz_instructions(ours.image.decode()) == set()
    monkeypatch.setattr(nvrtc, "_BASE_OPTIONS", nvrtc._BASE_OPTIONS + ("--ftz=true",))
    rawmodule_like = nvrtc.compile_family("probe", "compute_90", directory=tmp_path, cache=tmp_path / "b")
    assert {"mul.ftz.f32", "div.rn.ftz.f32"} <= _ftz_instructions(rawmodule_like.image.decode())


# ----------------------------------------------------------------------------- the cache key
@needs_nvrtc
def test_editing_an_included_file_recompiles(tmp_path):
    """CuPy's RawModule keyed its cache on the text it was handed (only #include lines):
    an edited header ran the stale binary. Here the key covers the assembled source."""
    kernels = tmp_path / "kernels"
    shutil.copytree(kernel_dir(), kernels, ignore=shutil.ignore_patterns("host"))
    cache = tmp_path / "cache"
    first = nvrtc.compile_family("random", "sm_80", directory=kernels, cache=cache)
    again = nvrtc.compile_family("random", "sm_80", directory=kernels, cache=cache)
    assert not first.cached and again.cached and again.path == first.path

    header = kernels / "common.cuh"
    header.write_text(header.read_text() + "\n// an edit that changes no kernel\n")
    edited = nvrtc.compile_family("random", "sm_80", directory=kernels, cache=cache)
    assert not edited.cached and edited.path != first.path
    assert "an edit that changes no kernel" in nvrtc.assemble("random", kernels)
    # options, NVRTC version and target are part of the key as well
    source = nvrtc.assemble("random", kernels)
    keys = {nvrtc.cache_key(source, nvrtc.options("random", "sm_80"), (13, 0), "sm_80"),
            nvrtc.cache_key(source, nvrtc.options("optim", "sm_80"), (13, 0), "sm_80"),
            nvrtc.cache_key(source, nvrtc.options("random", "sm_80"), (13, 1), "sm_80"),
            nvrtc.cache_key(source, nvrtc.options("random", "sm_90"), (13, 0), "sm_90")}
    assert len(keys) == 4


@needs_nvrtc
def test_an_unwritable_cache_warns_and_still_builds(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    with pytest.warns(RuntimeWarning, match="could not write its kernel cache.*GPUAD_CACHE_DIR"):
        compiled = nvrtc.compile_family("random", "sm_80", cache=blocked / "cuda")
    assert compiled.path.is_file() and compiled.image and not compiled.cached


def test_assemble_inlines_local_includes_once_with_line_directives(tmp_path):
    (tmp_path / "a.cuh").write_text("#pragma once\nint a;\n")
    (tmp_path / "b.cuh").write_text('#pragma once\n#include "a.cuh"\nint b;\n')
    (tmp_path / "fam.cu").write_text('#include "a.cuh"\n#include "b.cuh"  // b, and a again\n\nint fam;\n')
    text = nvrtc.assemble("fam", tmp_path)
    assert text.count("int a;") == 1 and "int b;" in text and "#pragma once" not in text
    assert '#line 1 "a.cuh"' in text and '#line 3 "fam.cu"' in text
    (tmp_path / "bad.cu").write_text('#include "missing.cuh"\n')
    with pytest.raises(FileNotFoundError, match=r'bad.cu:1: #include "missing.cuh"'):
        nvrtc.assemble("bad", tmp_path)


@needs_nvrtc
def test_compile_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "helper.cuh").write_text("#pragma once\n\n__device__ int helper() { return undefined_name; }\n")
    (tmp_path / "broken.cu").write_text('#include "helper.cuh"\nextern "C" __global__ void k(int* x) '
                                        '{ x[0] = helper(); }\n')
    with pytest.raises(KernelCompileError, match=r"broken kernels \(kernels/helper.cuh") as e:
        nvrtc.compile_family("broken", "sm_80", directory=tmp_path, cache=tmp_path / "cache")
    assert e.value.files == ["helper.cuh"] and 'helper.cuh(3): error: identifier "undefined_name"' in e.value.log
    assert not list((tmp_path / "cache").glob("*.cubin")), "a failed build leaves nothing in the cache"


# ----------------------------------------------------------------------------- names, targets, options
def test_every_kernel_belongs_to_the_family_of_its_file():
    """family_of (how the cuda device finds a kernel's module) agrees with where the
    host build found each kernel defined."""
    import json
    from gpuad.devices.emulated import HostLauncher, usable
    if not usable():
        pytest.skip("the emulated device needs g++")
    module = HostLauncher().module()
    meta = json.loads(module.path.with_suffix(".json").read_text())["kernels"]
    assert len(meta) > 600
    wrong = {name: info["source"] for name, info in meta.items()
             if Path(info["source"]).stem != nvrtc.family_of(name)}
    assert not wrong
    assert {Path(info["source"]).stem for info in meta.values()} == set(nvrtc.FAMILIES)


def test_family_of_refuses_foreign_names():
    with pytest.raises(KeyError, match="belongs to no gpuad kernel family"):
        nvrtc.family_of("matmul_f32")


@pytest.mark.parametrize("text, arch", [("sm_90", "sm_90"), ("90", "sm_90"), ("9.0", "sm_90"),
                                        ("compute_80", "compute_80"), ("SM_86", "sm_86"), ("sm_90a", "sm_90a")])
def test_parse_arch(text, arch):
    assert nvrtc.parse_arch(text) == arch


def test_parse_arch_refuses_nonsense():
    with pytest.raises(ValueError, match="not a GPU architecture: 'hopper'"):
        nvrtc.parse_arch("hopper")


def test_target_is_the_gpus_own_cubin_else_ptx_for_an_older_arch(monkeypatch):
    monkeypatch.setattr(nvrtc, "supported_archs", lambda: (75, 80, 86, 89, 90, 100))
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: (13, 0))
    assert nvrtc.target_for(90) == "sm_90"
    assert nvrtc.target_for(120) == "compute_100"  # newer than NVRTC: the driver JIT-compiles PTX
    with pytest.raises(nvrtc.CudaUnavailableError, match=r"7\.0.*Volta.*gpuad\[cuda12\]"):
        nvrtc.target_for(70)


def test_options_keep_ieee_float32_and_no_fma_in_optimizers():
    for family in nvrtc.FAMILIES:
        opts = nvrtc.options(family, "sm_90")
        assert {"--ftz=false", "--prec-div=true", "--prec-sqrt=true", "--gpu-architecture=sm_90"} <= set(opts)
    assert "--fmad=false" in nvrtc.options("optim", "sm_90")
    assert "--fmad=true" in nvrtc.options("binary", "sm_90")


def test_kernels_command_refuses_bad_arguments(tmp_path):
    proc = _kernels("--emit", "ptx", cache=tmp_path)
    assert proc.returncode == 2 and "--emit needs --out" in proc.stderr
    proc = _kernels("--arch", "hopper", cache=tmp_path)
    assert proc.returncode == 2 and "not a GPU architecture" in proc.stderr
