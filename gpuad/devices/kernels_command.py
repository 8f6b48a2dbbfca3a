"""``python -m gpuad kernels``: build or check every kernel family with NVRTC,
for chosen GPU architectures, with no GPU needed.

    python -m gpuad kernels                       fill the disk cache for sm_80 and sm_90
    python -m gpuad kernels --check               compile every family afresh (ignoring and then
                                                  refreshing the cache); exit 1 on an error
    python -m gpuad kernels --arch native         the architecture of this machine's GPU
    python -m gpuad kernels --emit ptx --out DIR  write <family>.<arch>.ptx files

Each family is compiled exactly as the ``cuda`` device compiles it
(:func:`gpuad.devices.nvrtc.compile_family`: same assembled source, same
options, same NVRTC), families in parallel, one line per family and architecture.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import KernelCompileError
from . import nvrtc

DEFAULT_ARCHS = ("sm_80", "sm_90")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", action="append", metavar="ARCH",
                        help="a GPU architecture: sm_90, 90, 9.0, compute_90 (PTX), or 'native' "
                             "(this machine's GPU); repeat for several (default: sm_80 and sm_90)")
    parser.add_argument("--family", action="append", choices=nvrtc.FAMILIES, metavar="FAMILY",
                        help=f"only this family; repeatable (default: all of {', '.join(nvrtc.FAMILIES)})")
    parser.add_argument("--check", action="store_true",
                        help="compile every family afresh, even where the cache has it (the cache "
                             "then holds the new build), and exit 1 naming each family that fails, "
                             "with NVRTC's log")
    parser.add_argument("--emit", choices=("ptx", "cubin"),
                        help="also write the result of each family and architecture to --out "
                             "(ptx: the PTX of compute_XX; cubin: the machine code of sm_XX)")
    parser.add_argument("--out", type=Path, help="folder for --emit")
    parser.add_argument("--jobs", type=_jobs, default=None,
                        help="families compiled at once (default: the number of CPUs)")


def _jobs(text) -> int:
    """``--jobs``: a whole number >= 1 (argparse reports anything else as a usage error)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def _native_arch() -> str:
    """The build target of GPU 0 (``nvrtc.target_for`` of its compute capability)."""
    from .cuda import probe
    import cupy
    probe()
    with cupy.cuda.Device(0) as device:
        return nvrtc.target_for(int(device.compute_capability))


def _targets(args) -> list[str]:
    archs = []
    for text in args.arch or DEFAULT_ARCHS:
        arch = _native_arch() if text == "native" else nvrtc.parse_arch(text)
        if args.emit == "ptx":
            arch = arch.replace("sm_", "compute_")
        elif args.emit == "cubin" and arch.startswith("compute_"):
            raise ValueError(f"--emit cubin needs a real architecture (sm_XX), got {arch}")
        if arch not in archs:
            archs.append(arch)
    return archs


def run(args) -> int:
    if args.emit and args.out is None:
        print("python -m gpuad kernels: --emit needs --out DIR", file=sys.stderr)
        return 2
    try:
        archs = _targets(args)
        version = nvrtc.nvrtc_version()
    except (ValueError, nvrtc.CudaUnavailableError) as e:
        print(f"python -m gpuad kernels: {e}", file=sys.stderr)
        return 2
    families = args.family or list(nvrtc.FAMILIES)
    jobs = [(family, arch) for arch in archs for family in families]
    # --check must prove the sources compile now: build into an empty folder, then
    # move each result into the cache
    scratch = Path(tempfile.mkdtemp(prefix="gpuad-kernels-")) if args.check else None
    print(f"NVRTC {version[0]}.{version[1]}: {len(families)} families for {', '.join(archs)} into "
          f"{nvrtc.cache_dir()}" + (" (--check: compiled afresh)" if args.check else ""))

    def build(job):
        family, arch = job
        try:
            compiled = nvrtc.compile_family(family, arch, cache=scratch)
        except (KernelCompileError, OSError, RuntimeError) as e:  # (a missing include, NVRTC itself)
            return job, None, e
        if scratch is not None:
            cached = nvrtc.cache_dir() / compiled.path.name
            cached.parent.mkdir(parents=True, exist_ok=True)
            nvrtc.atomic_write(cached, compiled.image)  # (other processes may be reading it)
            compiled = nvrtc.Compiled(family, arch, cached, False, compiled.seconds)
        return job, compiled, None

    start = time.perf_counter()
    failed = []
    try:
        with ThreadPoolExecutor(args.jobs or os.cpu_count() or 1) as pool:  # NVRTC releases the GIL
            for (family, arch), compiled, error in pool.map(build, jobs):
                if error is not None:
                    failed.append((family, arch, error))
                    print(f"  {family:<12} {arch:<11} FAILED")
                    continue
                how = "cached" if compiled.cached else f"{compiled.seconds:6.1f} s"
                print(f"  {family:<12} {arch:<11} {how:>8}  {compiled.path.stat().st_size:>10,} bytes")
                if args.emit:
                    args.out.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(compiled.path, args.out / f"{family}.{arch}.{args.emit}")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(jobs) - len(failed)} of {len(jobs)} built in {time.perf_counter() - start:.1f} s")
    for family, arch, error in failed:
        print(f"\nkernels/{family}.cu did not compile for {arch}:\n{error}", file=sys.stderr)
    return 1 if failed else 0
