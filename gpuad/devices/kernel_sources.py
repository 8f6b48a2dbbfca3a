"""Where the CUDA sources live: ``kernels/`` in a source checkout, or
``gpuad/kernels/`` inside an installed wheel (pyproject maps one to the other)."""
from __future__ import annotations

from pathlib import Path


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
