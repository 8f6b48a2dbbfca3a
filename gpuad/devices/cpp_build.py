"""Compile generated C++ (``gpuad.compiler``'s fused loops) into a shared library
for the ``cpu`` device, cached on disk, loaded with :mod:`ctypes`.

The compiler is ``$GPUAD_HOST_CXX`` (default ``g++``), as for the emulated
device. The flags keep results equal to NumPy's: ``-O3`` vectorises, but there
is no ``-ffast-math`` (it would reorder, contract and flush) and no
``-march=native`` (a machine-dependent library, and FMA instructions where the
source has a separate multiply and add); ``-ffp-contract=off`` keeps GCC from
contracting ``a * b + c`` on targets that have an FMA. ``-fopenmp`` lets a loop
that is worth it run on every core.

Libraries are cached under ``$GPUAD_CACHE_DIR/cpu`` (default
``~/.cache/gpuad/cpu``), named by a hash of the source with gpuad's kernel
headers inlined (so an edited header rebuilds), the flags and the compiler.

>>> from gpuad.devices import cpp_build
>>> "-ffast-math" in cpp_build.FLAGS, "-ffp-contract=off" in cpp_build.FLAGS
(False, True)
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ..errors import KernelCompileError
from . import kernel_sources
from .kernel_sources import atomic_write

__all__ = ["FLAGS", "CompilerUnavailableError", "compiler", "build", "load", "cache_dir"]

FLAGS = ("-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-strict-aliasing",
         "-fvisibility=hidden", "-fdiagnostics-color=never")
_BUILDER_VERSION = b"gpuad-cpp-build-1"

_lock = threading.Lock()
_loaded: dict[Path, ctypes.CDLL] = {}


class CompilerUnavailableError(RuntimeError):
    """No C++ compiler: the cpu device cannot compile generated code (callers fall
    back to its NumPy kernels)."""


def cache_dir() -> Path:
    """Where built libraries live: ``$GPUAD_CACHE_DIR/cpu``, else ``~/.cache/gpuad/cpu``."""
    return kernel_sources.cache_dir("cpu")


def compiler() -> str | None:
    """The path of the C++ compiler (``$GPUAD_HOST_CXX``, default ``g++``), or None."""
    return shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++"))


def _key(text: str, cxx: str) -> str:
    st = os.stat(cxx)
    h = hashlib.sha256(_BUILDER_VERSION + b"\0")
    for part in (os.path.realpath(cxx), str(st.st_size), str(st.st_mtime_ns), *FLAGS):
        h.update(part.encode() + b"\0")
    h.update(text.encode())
    return h.hexdigest()[:32]


def build(source: str, name: str = "generated") -> Path:
    """Compile C++ ``source`` (which may ``#include "..."`` gpuad's kernel headers)
    into a shared library and return its path; an unchanged source, compiler and
    flags give the cached file without compiling. Raises
    :class:`CompilerUnavailableError` without a compiler and
    :class:`gpuad.errors.KernelCompileError` with the compiler's log."""
    from .nvrtc import assemble_source  # (imports nothing of CuPy)
    cxx = compiler()
    if cxx is None:
        raise CompilerUnavailableError(
            f"no C++ compiler {os.environ.get('GPUAD_HOST_CXX', 'g++')!r} on PATH; install g++ or set GPUAD_HOST_CXX")
    text = assemble_source(source, f"{name}.cpp")
    cache = cache_dir()
    path = cache / f"{name}-{_key(text, cxx)}.so"
    if path.is_file():
        return path
    with _lock:
        if path.is_file():
            return path
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
            src = Path(tmp) / f"{name}.cpp"
            src.write_text(text)
            so = Path(tmp) / "lib.so"
            proc = subprocess.run([cxx, *FLAGS, "-x", "c++", str(src), "-o", str(so)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                log = (proc.stdout + proc.stderr).replace(tmp, "<build>")
                raise KernelCompileError(f"{Path(cxx).name} could not compile the generated {name} for the cpu "
                                         f"device (exit {proc.returncode}). Compiler log:\n{log.rstrip()}",
                                         kernel=name, files=[f"{name}.cpp"], log=log)
            atomic_write(path, so.read_bytes())
    return path


def load(path: Path) -> ctypes.CDLL:
    """The library at ``path``, loaded once per process."""
    lib = _loaded.get(path)
    if lib is None:
        with _lock:
            lib = _loaded.get(path)
            if lib is None:
                # OpenMP's threads (libgomp reads this when the first library loads)
                # sleep between parallel loops instead of spinning: spinning, they
                # took the cores from the BLAS threads of the matmuls in between
                # (the 4096-batch MLP step was 20 % slower).
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                lib = _loaded[path] = ctypes.CDLL(str(path))
    return lib
