"""Compile ``kernels/*.cu`` for NVIDIA GPUs with NVRTC: one program per kernel
family (source file), compiled on first use and cached on disk.

gpuad drives NVRTC itself rather than through ``cupy.RawModule`` because
RawModule decides things that change results or correctness:

- it appends ``-ftz=true``, so every float32 kernel would flush subnormals
  (``exp(-100.0)`` is 0 instead of 3.7e-44, unlike the cpu device);
- its disk-cache key covers the text handed to it, not the files that text
  ``#include``s, so after a kernel edit or an upgrade an old binary would run.

Here the source of a family is *assembled*: every ``#include "..."`` of a file in
``kernels/`` is inlined (``#line`` directives keep NVRTC's messages pointing at the
real file and line). The cache key is a hash of that full text, the options, the
NVRTC version and the target architecture, so any change to any included file,
flag or compiler recompiles. Options are gpuad's own (:func:`options`): IEEE
subnormals and correctly rounded division and square root everywhere, and no
FMA contraction in the optimizer family, whose updates match the cpu device bit
for bit.

A family compiles in under a second to about twenty seconds (binary is the largest);
``python -m gpuad kernels`` fills the cache ahead of time, or checks that every
family compiles (``--check``), with no GPU needed: only NVRTC.

>>> from gpuad.devices import nvrtc
>>> nvrtc.family_of("binary_multiply_f32_contig"), nvrtc.family_of("reduce_sum_f64")
('binary', 'reduction')
>>> "--ftz=false" in nvrtc.options("binary", "sm_90")
True
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import KernelCompileError
from . import kernel_sources
from .kernel_sources import atomic_write, kernel_dir

__all__ = ["CudaUnavailableError", "FAMILIES", "family_of", "assemble", "options", "cache_key", "compile_family",
           "nvrtc_version", "supported_archs", "parse_arch", "target_for", "NvrtcUnavailableError",
           "cache_dir", "Compiled"]

#: Kernel families: the source file stem of each, in ``kernels/``.
FAMILIES = ("unary", "binary", "cast", "reduction", "layout", "nn", "random", "optim")

# Kernel name prefix -> family (kernels/README.md: names are <family op>_<dtype>...; the
# unary_grad kernels are unary_<op>_..., their ops ending in _grad). A prefix that starts
# another must come after it.
_PREFIXES = (
    ("unary_", "unary"), ("binary_", "binary"), ("where_", "binary"),
    ("cast_", "cast"), ("fill_", "cast"),
    ("arg_reduce_", "reduction"), ("reduce_", "reduction"),
    ("layout_", "layout"), ("gather_", "layout"), ("scatter_add_", "layout"), ("one_hot_", "layout"),
    ("softmax_", "nn"), ("log_softmax_", "nn"),
    ("random_", "random"),
    ("optim_", "optim"),
)

#: Bumped when the way sources are assembled or compiled changes (part of every cache key).
_BUILDER_VERSION = "gpuad-nvrtc-1"

# Every family: C++17; IEEE float32 (no flush-to-zero of subnormals, correctly rounded
# division and square root), as the cpu device computes.
_BASE_OPTIONS = ("--std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
# FMA contraction: allowed where the kernels spell out the roundings that matter
# (gpuad::mul_rn in common.cuh); off for the optimizer rules, which must equal the
# cpu device's updates bit for bit.
_FMAD = {"optim": False}


class CudaUnavailableError(RuntimeError):
    """Raised when the ``cuda`` device is asked for where it cannot run: no CuPy, no
    driver, no GPU, or a library it needs (NVRTC, cuBLAS) missing."""


class NvrtcUnavailableError(CudaUnavailableError):
    """NVRTC (``libnvrtc``) could not be loaded, so no kernel can be compiled."""


def family_of(kernel: str) -> str:
    """The family (source file stem) that defines ``kernel``, from its name."""
    for prefix, family in _PREFIXES:
        if kernel.startswith(prefix):
            return family
    raise KeyError(f"kernel {kernel!r} belongs to no gpuad kernel family: names start with one of "
                   f"{', '.join(p for p, _ in _PREFIXES)} (kernels/README.md)")


def cache_dir() -> Path:
    """Where compiled families live: ``$GPUAD_CACHE_DIR/cuda``, else
    ``$XDG_CACHE_HOME/gpuad/cuda``, else ``~/.cache/gpuad/cuda``."""
    return kernel_sources.cache_dir("cuda")


# ---------------------------------------------------------------------------- sources
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*(?://[^\n]*)?$', re.M)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.M)


def assemble(family: str, directory: Path | None = None) -> str:
    """The full source NVRTC compiles for ``family``: ``<family>.cu`` with every
    ``#include "..."`` found in ``directory`` (default: gpuad's kernels) inlined,
    each file once (they use ``#pragma once``). Angle-bracket includes stay (NVRTC
    provides its own); a quoted include that is not in ``directory`` is an error."""
    directory = Path(directory) if directory is not None else kernel_dir()
    if family not in FAMILIES and not (directory / f"{family}.cu").is_file():
        raise KeyError(f"unknown kernel family {family!r}; the families are {', '.join(FAMILIES)}")
    seen: set[str] = set()

    def expand(name: str) -> str:
        path = directory / name
        try:
            text = path.read_text()
        except OSError as e:
            raise FileNotFoundError(f"kernel source {path} ({e.strerror})") from None
        seen.add(name)
        text = _PRAGMA_ONCE.sub("", text)
        out, pos, line = [f'#line 1 "{name}"\n'], 0, 1
        for m in _INCLUDE.finditer(text):
            out.append(text[pos:m.start()])
            line += text.count("\n", pos, m.end())
            included = m.group(1)
            if included not in seen:
                if not (directory / included).is_file():
                    raise FileNotFoundError(f'{name}:{line}: #include "{included}" is not in {directory}')
                out.append(expand(included))
            out.append(f'\n#line {line + 1} "{name}"')
            pos = m.end()
        out.append(text[pos:])
        return "".join(out)

    return expand(f"{family}.cu")


def options(family: str, arch: str) -> tuple[str, ...]:
    """NVRTC's options for ``family`` built for ``arch`` (``sm_90``: a cubin;
    ``compute_90``: PTX)."""
    fmad = _FMAD.get(family, True)
    return _BASE_OPTIONS + (f"--fmad={'true' if fmad else 'false'}", f"--gpu-architecture={arch}")


def cache_key(source: str, opts, version: tuple, arch: str) -> str:
    """The hash that names a compiled family: full source, options, NVRTC version, target."""
    h = hashlib.sha256(_BUILDER_VERSION.encode() + b"\0")
    for part in (f"nvrtc {version[0]}.{version[1]}", arch, *opts):
        h.update(part.encode() + b"\0")
    h.update(source.encode())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------- NVRTC
_nvrtc_lock = threading.Lock()
_nvrtc_module = None


def _nvrtc():
    """CuPy's binding of NVRTC, loaded (the library is found on first call)."""
    global _nvrtc_module
    if _nvrtc_module is None:
        with _nvrtc_lock:
            if _nvrtc_module is None:
                try:
                    from cupy_backends.cuda.libs import nvrtc as module
                    module.getVersion()  # loads libnvrtc, or fails here
                except ImportError as e:
                    raise NvrtcUnavailableError(
                        "compiling gpuad's CUDA kernels needs CuPy, which is not installed: "
                        "pip install 'gpuad[cuda13]' (or 'gpuad[cuda12]' for a CUDA 12 driver)") from e
                except Exception as e:  # cuda.pathfinder's DynamicLibNotFoundError, an OSError
                    raise NvrtcUnavailableError(
                        f"NVRTC, the CUDA runtime compiler gpuad builds its kernels with, was not "
                        f"found ({e}). Install it with pip install 'cuda-toolkit[nvrtc]==13.*' "
                        f"(or ==12.* to match a CUDA 12 CuPy), or install gpuad with its extra, "
                        f"pip install 'gpuad[cuda13]', which brings it.") from e
                _nvrtc_module = module
    return _nvrtc_module


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor) version; :class:`NvrtcUnavailableError` without NVRTC."""
    return tuple(_nvrtc().getVersion())


def supported_archs() -> tuple[int, ...]:
    """The compute capabilities NVRTC can build for, e.g. ``(75, 80, ..., 90, 100, 120)``."""
    return tuple(int(a) for a in _nvrtc().getSupportedArchs())


def parse_arch(text: str) -> str:
    """``"sm_90"``, ``"90"``, ``"9.0"`` -> ``"sm_90"``; ``"compute_90"`` stays (PTX)."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(sm_|compute_)?(\d+)(?:\.(\d))?([af]?)", t)
    if not m:
        raise ValueError(f"not a GPU architecture: {text!r}; write it as sm_90, 90 or 9.0")
    prefix, major, minor, suffix = m.groups()
    return f"{prefix or 'sm_'}{major}{minor or ''}{suffix}"


def target_for(capability: int) -> str:
    """The target to build for a GPU of compute ``capability`` (e.g. 90): its own
    cubin when NVRTC knows the architecture; else PTX for the newest architecture
    NVRTC knows below it, which the driver compiles when it loads the module."""
    archs = supported_archs()
    if capability in archs:
        return f"sm_{capability}"
    older = [a for a in archs if a <= capability]
    if not older:
        raise NvrtcUnavailableError(
            f"this NVRTC ({'.'.join(map(str, nvrtc_version()))}) cannot build for compute capability "
            f"{capability // 10}.{capability % 10} (it supports {', '.join(map(str, archs))}); "
            f"CUDA 13 dropped GPUs older than Turing: for Volta (sm_70) install gpuad[cuda12]")
    return f"compute_{max(older)}"


@dataclass(frozen=True)
class Compiled:
    """A compiled family: ``path`` of the cubin or PTX file in the cache, whether it
    came from the cache, and the compile time in seconds (0 when cached)."""
    family: str
    arch: str
    path: Path
    cached: bool
    seconds: float

    @property
    def image(self) -> bytes:
        return self.path.read_bytes()


def compile_family(family: str, arch: str, directory: Path | None = None,
                   cache: Path | None = None) -> Compiled:
    """Compile ``family`` for ``arch`` (``sm_XX``: cubin, ``compute_XX``: PTX), or find
    it in the cache. Raises :class:`KernelCompileError` with NVRTC's log when the
    sources do not compile, :class:`NvrtcUnavailableError` without NVRTC."""
    arch = parse_arch(arch)
    source = assemble(family, directory)
    opts = options(family, arch)
    version = nvrtc_version()
    key = cache_key(source, opts, version, arch)
    cache = Path(cache) if cache is not None else cache_dir()
    path = cache / f"{family}-{arch}-{key}.{'ptx' if arch.startswith('compute_') else 'cubin'}"
    if path.is_file():
        return Compiled(family, arch, path, True, 0.0)
    start = time.perf_counter()
    image = _compile(family, source, opts, arch.startswith("compute_"))
    seconds = time.perf_counter() - start
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(path, image)
    except OSError as e:  # a read-only home, a root-owned image cache: run, but say so
        path = Path(tempfile.mkdtemp(prefix="gpuad-kernels-")) / path.name
        path.write_bytes(image)
        warnings.warn(f"gpuad could not write its kernel cache in {cache} ({e}); the {family} kernels "
                      f"are used from {path} and compiled again in the next process. Set "
                      f"GPUAD_CACHE_DIR to a writable folder.", RuntimeWarning, stacklevel=2)
    return Compiled(family, arch, path, False, seconds)


def _compile(family: str, source: str, opts, ptx: bool) -> bytes:
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(source, f"{family}.cu", (), ())
    try:
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as e:
            log = nvrtc.getProgramLog(prog)
            files = sorted(set(re.findall(r"([\w.-]+\.cuh?)\(\d+\): error", log))) or [f"{family}.cu"]
            where = ", ".join(f"kernels/{f}" for f in files)
            raise KernelCompileError(
                f"NVRTC could not compile gpuad's {family} kernels ({where}; {e}) with "
                f"{' '.join(opts)}. Compiler log:\n{log.rstrip()}", files=files, log=log) from None
        return nvrtc.getPTX(prog) if ptx else nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)
