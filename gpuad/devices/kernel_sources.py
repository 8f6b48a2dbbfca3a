"""Where the CUDA sources live: ``kernels/`` in a source checkout, or
``gpuad/kernels/`` inside an installed wheel (pyproject maps one to the other);
where what is built from them is cached, and how cache files are written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """The cache of one kind of build (``"cuda"``: NVRTC's cubins; ``"emulated"``: the
    host libraries): ``$GPUAD_CACHE_DIR/<kind>``, else ``$XDG_CACHE_HOME/gpuad/<kind>``,
    else ``~/.cache/gpuad/<kind>``."""
    if os.environ.get("GPUAD_CACHE_DIR"):
        return Path(os.environ["GPUAD_CACHE_DIR"]).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gpuad" / kind


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old file or the whole new one; processes
    that build the same thing at once write identical bytes."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def kernel_dir() -> Path:
    """The directory holding ``*.cu`` and ``*.cuh`` files."""
    here = Path(__file__).resolve().parent.parent  # the gpuad package
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / "common.cuh").is_file():
            return candidate
    raise FileNotFoundError(f"gpuad's CUDA kernel sources were not found next to {here}; "
                            f"reinstall gpuad (the wheel ships them in gpuad/kernels).")


def sources() -> dict[str, str]:
    """{file name: text} of every kernel source."""
    d = kernel_dir()
    return {p.name: p.read_text() for p in sorted(d.glob("*.cu*"))}
