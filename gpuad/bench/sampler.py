"""GPU telemetry while a workload runs: a background thread that samples NVML
(nvidia-ml-py) about ten times a second, and the intervals it is asked to
account for.

The runner calls :meth:`GpuSampler.begin` and :meth:`GpuSampler.end` around each
timed repeat (outside the timed region) and gets, per workload and library:

* ``peak_memory_bytes``: the most device memory in use during its repeats
  (NVML's figure for the whole GPU: every library's cached pools count, as do
  other processes; read it as an upper bound);
* ``mean_utilization``: the mean of NVML's GPU utilisation (% of time a kernel
  ran) over the samples inside its repeats;
* ``energy_per_step_j``: joules per timed step, from NVML's total-energy counter
  read at both ends of every repeat where the GPU has one (Volta and newer),
  else the mean sampled power times the time.
"""
from __future__ import annotations

import threading
import time


class GpuSampler:
    """Samples GPU ``index`` every ``period`` seconds until :meth:`stop`.
    Construct it only on a GPU run; it raises RuntimeError when NVML cannot
    start (the runner then reports the telemetry as unavailable)."""

    def __init__(self, index: int = 0, period: float = 0.1):
        import pynvml
        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self._period = period
        self._samples: list = []           # (time, memory used, utilisation %, power W)
        self._open: dict = {}              # key -> (start time, start energy mJ)
        self._spans: dict = {}             # key -> list of (t0, t1, energy J or None, steps)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuad-bench-nvml", daemon=True)
        self._thread.start()

    def _read(self, fn):
        try:
            return getattr(self._nvml, fn)(self._handle)
        except Exception:  # NotSupported on this GPU: that figure stays unknown
            return None

    def _run(self):
        while not self._halt.is_set():
            mem, util = self._read("nvmlDeviceGetMemoryInfo"), self._read("nvmlDeviceGetUtilizationRates")
            power = self._read("nvmlDeviceGetPowerUsage")
            self._samples.append((time.perf_counter(), mem.used if mem else None,
                                  util.gpu if util else None,
                                  power / 1000.0 if power is not None else None))
            self._halt.wait(self._period)

    def begin(self, key) -> None:
        self._open[key] = (time.perf_counter(), self._read("nvmlDeviceGetTotalEnergyConsumption"))

    def end(self, key, steps: int) -> None:
        t0, e0 = self._open.pop(key)
        e1 = self._read("nvmlDeviceGetTotalEnergyConsumption")
        energy = (e1 - e0) / 1000.0 if e0 is not None and e1 is not None else None
        self._spans.setdefault(key, []).append((t0, time.perf_counter(), energy, steps))

    def summary(self, key) -> dict:
        """The figures for ``key`` (None where nothing was measured)."""
        spans = self._spans.get(key, [])
        inside = [s for s in list(self._samples) if any(t0 <= s[0] <= t1 for t0, t1, _, _ in spans)]
        mem = [s[1] for s in inside if s[1] is not None]
        util = [s[2] for s in inside if s[2] is not None]
        power = [s[3] for s in inside if s[3] is not None]
        steps = sum(n for *_, n in spans)
        if spans and all(e is not None for _, _, e, _ in spans):
            energy = sum(e for _, _, e, _ in spans) / steps
            source = "energy counter"
        elif power and steps:
            energy = sum(power) / len(power) * sum(t1 - t0 for t0, t1, _, _ in spans) / steps
            source = "mean sampled power x time"
        else:
            energy, source = None, None
        return {"peak_memory_bytes": max(mem) if mem else None,
                "mean_utilization": sum(util) / len(util) if util else None,
                "mean_power_w": sum(power) / len(power) if power else None,
                "energy_per_step_j": energy, "energy_source": source, "samples": len(inside)}

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=2)
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass
