"""Running the workloads: check each library's result, then time it.

For each workload, every library first builds its program and computes the
checked value; one that disagrees with the float64 reference is marked
``WRONG`` (with its error) and is not timed, one that raises is marked
``error``. The rest are warmed up (compilation, caches, memory pools), timed
once to choose how many steps one repeat runs (about ``target_seconds``), then
timed for ``repeats`` repeats, interleaved between the libraries so that drift
of the machine (clock, other load) hits all of them alike. A repeat is
``steps`` calls of the program's step, then ``lib.sync(out)`` (all queued
device work finished), timed with ``time.perf_counter``; the figure is the
median repeat, per step.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Settings:
    repeats: int = 7
    warmup: int = 2
    target_seconds: float = 0.25
    max_steps: int = 100_000


def check(workload, got) -> dict:
    """``got`` against the workload's reference: element-wise
    ``|got - want| <= atol + rtol * |want|``; the worst ratio is reported."""
    want = workload.reference()
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return {"passed": False, "detail": f"shape {got.shape}, expected {want.shape}"}
    diff = np.abs(got - want)
    ratio = diff / (workload.atol + workload.rtol * np.abs(want))
    worst = float(np.max(ratio)) if ratio.size else 0.0
    finite = bool(np.all(np.isfinite(got)))
    return {"passed": finite and worst <= 1.0,
            "max_abs_error": float(np.max(diff)) if diff.size else 0.0,
            "error_over_tolerance": worst if finite else float("inf"),
            "rtol": workload.rtol, "atol": workload.atol}


def _applies(lib, workload) -> bool:
    return lib.workloads is None or workload.name in lib.workloads


def _time(program, lib, steps) -> float:
    out = None
    t0 = time.perf_counter()
    for _ in range(steps):
        out = program.step()
    lib.sync(out)
    return time.perf_counter() - t0


def _failure(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) < 400 else text[:400] + " ..."


def run_workload(workload, libs: dict, settings: Settings, sampler=None, progress=None) -> dict:
    """``{library name: entry}`` for one workload (see the module docstring)."""
    entries, programs = {}, {}
    for name, lib in libs.items():
        if not _applies(lib, workload):
            continue
        entry = entries[name] = {"status": "ok"}
        try:
            program = workload.program(lib)
            entry["check"] = check(workload, program.check())
            if not entry["check"]["passed"]:
                entry["status"] = "WRONG"
                continue
            for _ in range(settings.warmup):
                lib.sync(program.step())
            once = _time(program, lib, 1)
            entry["steps_per_repeat"] = int(min(settings.max_steps,
                                                max(1, math.ceil(settings.target_seconds / max(once, 1e-9)))))
            entry["seconds"] = []
            programs[name] = program
        except Exception as e:  # noqa: BLE001 -- a library that breaks is reported, not fatal
            entry.update(status="error", error=_failure(e))
        finally:
            if progress is not None and name not in programs:
                progress.update(settings.repeats)

    for _ in range(settings.repeats):
        for name, program in list(programs.items()):
            entry, lib = entries[name], libs[name]
            steps = entry["steps_per_repeat"]
            gc.collect()
            count = getattr(lib, "transfers", None)
            try:
                before = count() if count else None
                if sampler is not None:
                    sampler.begin((workload.name, name))
                seconds = _time(program, lib, steps)
                if sampler is not None:
                    sampler.end((workload.name, name), steps)
                if before is not None:  # gpuad: host <-> device copies inside the timed steps
                    entry["transfers"] = entry.get("transfers", 0) + count() - before
            except Exception as e:  # noqa: BLE001
                entry.update(status="error", error=_failure(e))
                del programs[name]
                continue
            entry["seconds"].append(seconds / steps)
            if progress is not None:
                progress.update(1)

    for name, entry in entries.items():
        if entry["status"] == "ok":
            runs = entry["seconds"]
            entry.update(median=statistics.median(runs), min=min(runs), max=max(runs),
                         repeats=len(runs), figures=workload.figures(statistics.median(runs)))
            if sampler is not None:
                entry["gpu"] = sampler.summary((workload.name, name))
    programs.clear()
    gc.collect()
    return entries


def ratios(entries: dict, base: str = "gpuad") -> dict:
    """``{peer: gpuad's median / the peer's}`` for the peers timed beside gpuad."""
    ours = entries.get(base, {})
    if ours.get("status") != "ok":
        return {}
    return {name: ours["median"] / e["median"] for name, e in entries.items()
            if name != base and e.get("status") == "ok"}
