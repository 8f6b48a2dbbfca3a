"""What a benchmark result needs beside it: the device, the driver and CUDA,
the CPU and its threads, and the versions of gpuad, NumPy, CuPy and every peer."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path


#: distributions whose version the report names when installed (module -> distributions)
PACKAGES = {"numpy": ("numpy",), "cupy": ("cupy-cuda13x", "cupy-cuda12x", "cupy"),
            "nvidia-ml-py": ("nvidia-ml-py",), "torch": ("torch",), "jax": ("jax",),
            "jaxlib": ("jaxlib",), "tensorflow": ("tensorflow", "tensorflow-cpu"),
            "keras": ("keras",), "autograd": ("autograd",)}


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def git_revision() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes) when gpuad runs
    from a git checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name, dists in PACKAGES.items():
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def environment(device: str) -> dict:
    """The facts for a run on ``device`` ("cpu", "cuda", "emulated")."""
    import gpuad
    from gpuad.devices.telemetry import cpu_info, gpu_info
    env = {"gpuad": gpuad.__version__, "gpuad_git": git_revision(), "versions": versions(),
           "cpu": cpu_info(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "executable": sys.executable, "device": {"kind": device}}
    if device == "cuda":
        gpus, status = gpu_info()
        env["device"]["nvml_status"] = status
        if gpus:
            g = gpus[0]
            env["device"].update(name=g["name"], driver=g["driver_version"],
                                 cuda_driver=g["cuda_driver_version"],
                                 compute_capability=g["compute_capability"],
                                 memory_bytes=g["memory_total"], power_limit_w=g["power_limit"])
        try:
            import cupy
            env["device"]["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
            env["device"].setdefault("name", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
        except Exception as e:  # noqa: BLE001 -- reported, not fatal
            env["device"]["cupy_error"] = f"{type(e).__name__}: {e}"
    else:
        env["device"]["name"] = env["cpu"]["model"]
    return env


def device_slug(env: dict) -> str:
    """The device part of the results' file names: ``cpu``, ``emulated``, or the
    GPU's name in lower case (``nvidia-h100-80gb-hbm3``)."""
    dev = env["device"]
    if dev["kind"] != "cuda":
        return dev["kind"]
    name = "".join(c if c.isalnum() else "-" for c in str(dev.get("name") or "cuda").lower())
    return "-".join(part for part in name.split("-") if part) or "cuda"


__all__ = ["environment", "device_slug", "git_revision", "now", "versions"]
