"""Facts about the machine: the CPU, the versions of gpuad and its libraries, the
usable devices and, through NVML (the ``nvidia-ml-py`` package, imported only
when asked for), every NVIDIA GPU with its memory, utilisation, power and driver.

:func:`info` never fails for want of a GPU: without nvidia-ml-py, without a
driver or without a GPU, ``gpus`` is empty and ``gpu_status`` says why.

>>> from gpuad.devices import telemetry
>>> facts = telemetry.info()
>>> sorted(facts)
['cpu', 'cupy', 'devices', 'gpu_status', 'gpuad', 'gpus']
>>> "cpu" in facts["devices"] and facts["cpu"]["threads"] >= 1
True
>>> print(telemetry.format_info(facts))          # doctest: +ELLIPSIS
gpuad ...
CPU ...
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys

__all__ = ["info", "cpu_info", "gpu_info", "format_info", "INSTALL_HINT"]

#: What to install for GPU telemetry (and the cuda device).
INSTALL_HINT = "pip install 'gpuad[cuda13]' (or 'gpuad[cuda12]' for a CUDA 12 driver)"


def info() -> dict:
    """Facts about this machine, as a JSON-serialisable dict:

    - ``gpuad``, ``cupy``: versions (``cupy`` is None where CuPy is not installed);
    - ``cpu``: ``model`` (from /proc/cpuinfo where present, else the platform),
      ``processor`` (the architecture), ``threads`` (logical CPUs), ``usable_threads``
      (those this process may run on), ``numpy``, ``python``, ``platform``;
    - ``devices``: the usable gpuad device names, the default first;
    - ``gpus``: one dict per NVIDIA GPU (see :func:`gpu_info`), and ``gpu_status``:
      ``"ok"``, or why there are none ("nvidia-ml-py is not installed: ...",
      "NVML could not start: ...", "no NVIDIA GPU found").

    >>> import gpuad as ad
    >>> facts = ad.devices.info()
    >>> facts["gpu_status"] == "ok" or facts["gpus"] == []
    True
    """
    import gpuad
    from . import available
    devices = available()
    gpus, status = gpu_info()
    return {"gpuad": gpuad.__version__, "cupy": _cupy_version(), "cpu": cpu_info(),
            "devices": devices, "gpus": gpus, "gpu_status": status}


def cpu_info() -> dict:
    """The CPU: model name, architecture, logical threads, NumPy and Python versions."""
    import numpy as np
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"model": _cpu_model(), "processor": platform.processor() or platform.machine(),
            "threads": os.cpu_count(), "usable_threads": usable, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _cpu_model(path: str = "/proc/cpuinfo") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    # x86: "model name"; some ARM and POWER kernels: "Model", "Hardware", "cpu"
    for key in ("model name", "Model", "Hardware", "cpu model", "cpu"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _cupy_version() -> str | None:
    """CuPy's version, without importing it when it is not imported yet (slow)."""
    mod = sys.modules.get("cupy")
    if mod is not None and getattr(mod, "__version__", None):
        return mod.__version__
    for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _text(v) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def gpu_info() -> tuple[list[dict], str]:
    """``(gpus, status)``: one dict per NVIDIA GPU that NVML sees, and ``"ok"`` or
    why the list is empty. Each dict has ``index``, ``name``, ``compute_capability``
    (``"9.0"``), ``memory_used``/``memory_total`` (bytes), ``utilization`` (GPU %),
    ``memory_utilization`` (%), ``power_draw``/``power_limit`` (W), ``driver_version``
    and ``cuda_driver_version`` (``"12.4"``); a value the GPU does not report is None.
    """
    try:
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return [], f"nvidia-ml-py is not installed: {INSTALL_HINT}"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError: no driver, library not found, ...
        return [], f"NVML could not start: {_reason(e)}"
    try:
        def get(fn, *args):
            try:
                return getattr(pynvml, fn)(*args)
            except Exception:  # NVMLError_NotSupported and friends: unknown, not fatal
                return None

        driver = get("nvmlSystemGetDriverVersion")
        cuda = get("nvmlSystemGetCudaDriverVersion")
        count = get("nvmlDeviceGetCount") or 0
        gpus = []
        for i in range(count):
            h = get("nvmlDeviceGetHandleByIndex", i)
            if h is None:
                continue
            name = get("nvmlDeviceGetName", h)
            cc = get("nvmlDeviceGetCudaComputeCapability", h)
            mem = get("nvmlDeviceGetMemoryInfo", h)
            util = get("nvmlDeviceGetUtilizationRates", h)
            power = get("nvmlDeviceGetPowerUsage", h)  # milliwatts
            limit = get("nvmlDeviceGetEnforcedPowerLimit", h)
            if limit is None:
                limit = get("nvmlDeviceGetPowerManagementLimit", h)
            gpus.append({
                "index": i,
                "name": _text(name) if name is not None else None,
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "memory_used": int(mem.used) if mem is not None else None,
                "memory_total": int(mem.total) if mem is not None else None,
                "utilization": int(util.gpu) if util is not None else None,
                "memory_utilization": int(util.memory) if util is not None else None,
                "power_draw": power / 1000.0 if power is not None else None,
                "power_limit": limit / 1000.0 if limit is not None else None,
                "driver_version": _text(driver) if driver is not None else None,
                "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
            })
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus, ("ok" if gpus else "no NVIDIA GPU found")


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "not found" in text.lower() or "driver not loaded" in text.lower():
        text += " (is an NVIDIA driver installed and loaded? nvidia-smi should list the GPUs)"
    return text


# --------------------------------------------------------------------------- report
def _size(n) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _or(v, unit: str = "") -> str:
    return "?" if v is None else f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def format_info(facts: dict) -> str:
    """:func:`info`'s dict as the readable report of ``python -m gpuad info``."""
    cpu = facts["cpu"]
    lines = [f"gpuad {facts['gpuad']}  (NumPy {cpu['numpy']}, CuPy {facts['cupy'] or 'not installed'}, "
             f"Python {cpu['python']})",
             f"CPU     {cpu['model']}  ({cpu['processor']}, {cpu['threads']} threads"
             + (f", {cpu['usable_threads']} usable" if cpu.get("usable_threads") not in (None, cpu["threads"])
                else "") + ")",
             f"devices {', '.join(facts['devices'])}  (default: {facts['devices'][0] if facts['devices'] else '?'})"]
    if not facts["gpus"]:
        lines.append(f"GPUs    none: {facts['gpu_status']}")
    for g in facts["gpus"]:
        lines.append(f"GPU {g['index']}   {_or(g['name'])}  (compute capability {_or(g['compute_capability'])})")
        lines.append(f"        memory {_size(g['memory_used'])} used of {_size(g['memory_total'])}, "
                     f"utilisation {_or(g['utilization'], '%')}, "
                     f"power {_or(g['power_draw'], ' W')} of {_or(g['power_limit'], ' W')}")
        lines.append(f"        driver {_or(g['driver_version'])}, CUDA {_or(g['cuda_driver_version'])}")
    return "\n".join(lines)
