"""Every kernel source compiles with nvcc for the GPUs gpuad targets (sm_80,
sm_90) with no warnings, and ptxas reports no register spills for the
element-wise and reduction kernels."""
import concurrent.futures
import re
import shutil
import subprocess

import pytest

from gpuad.devices.kernel_sources import kernel_dir

NVCC = shutil.which("nvcc")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")]

SOURCES = sorted(kernel_dir().glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
NO_SPILLS = {"unary.cu", "binary.cu", "cast.cu", "reduction.cu"}


def _compile(src, arch, tmp):
    out = tmp / f"{src.stem}.{arch}.cubin"
    proc = subprocess.run(
        [NVCC, "-std=c++17", f"-arch={arch}", f"-I{kernel_dir()}", "-cubin", "-Xptxas", "-v",
         "-o", str(out), str(src)], capture_output=True, text=True, timeout=600)
    return proc


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cubin")
    jobs = [(src, arch) for src in SOURCES for arch in ARCHS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda job: _compile(*job, tmp), jobs))
    return dict(zip(jobs, procs))


def test_there_are_kernel_sources():
    assert {p.name for p in SOURCES} >= {"unary.cu", "binary.cu", "cast.cu", "reduction.cu", "layout.cu", "nn.cu",
                                         "random.cu"}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_compiles_without_warnings(builds, src, arch):
    proc = builds[(src, arch)]
    assert proc.returncode == 0, f"nvcc failed on {src.name} for {arch}:\n{proc.stderr}"
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert not warnings, f"{src.name} ({arch}) compiles with warnings:\n" + "\n".join(warnings)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", [s for s in SOURCES if s.name in NO_SPILLS], ids=lambda p: p.name)
def test_no_register_spills(builds, src, arch):
    log = builds[(src, arch)].stderr
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert spills, f"ptxas -v printed no resource usage for {src.name}:\n{log[:2000]}"
    bad = [(s, l) for s, l in spills if int(s) or int(l)]
    assert not bad, f"{src.name} ({arch}) spills registers: {bad}"
