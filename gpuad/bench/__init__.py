"""``python -m gpuad bench``: gpuad's workloads (eager and in ``gpuad.function``)
side by side with PyTorch, JAX (op by op and ``jax.jit``), TensorFlow (eager and
``tf.function``) and HIPS autograd, on the CPU or a GPU, in one run.

Each workload (:mod:`.workloads`) is written once against a small adapter
contract (:mod:`.libraries.base`), so every library runs the same computation.
Every library's result is checked against a float64 NumPy reference before it
is timed; one that disagrees is reported as ``WRONG`` and not timed. The run
writes ``<out>/<device>-<date>.json`` (every repeat, the checks, the
environment), ``.md`` (the tables, with the ratios gpuad/peer), ``.png`` (a bar
chart of the ratios) and ``.log`` (what it printed).

    python -m gpuad bench                       # every workload, every installed peer
    python -m gpuad bench --quick               # small sizes and few repeats (a smoke run)
    python -m gpuad bench --device cuda --out /results
    python -m gpuad bench --libs gpuad,torch --workloads mlp128,transformer
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..apps.arguments import (UsageError, check_output_dir, check_values, finite_positive_float,
                              name_list, nonnegative_int, positive_int, refuse)
from . import libraries
from .workloads import NAMES


#: the rules of the flags (``type=`` and :func:`check_arguments`)
FLAGS = {"libs": name_list(libraries.ADAPTERS, "libraries"),
         "workloads": name_list(NAMES, "workloads"),
         "repeats": positive_int, "warmup": nonnegative_int,
         "target_seconds": finite_positive_float}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda", "emulated"), default=None,
                        help="where every library runs (default: cuda when gpuad can use a GPU, "
                             "else cpu; emulated runs gpuad's CUDA kernels on the host, gpuad only, "
                             "its figures mean nothing)")
    parser.add_argument("--libs", type=FLAGS["libs"], default=",".join(libraries.ADAPTERS),
                        help="comma-separated libraries, gpuad among them (default: all; a missing "
                             f"one is reported as not installed): {', '.join(libraries.ADAPTERS)}")
    parser.add_argument("--workloads", type=FLAGS["workloads"], default=",".join(NAMES),
                        help=f"comma-separated workloads (default: all): {', '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, 3 short repeats: a smoke run (minutes), "
                             "not figures to quote")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed repeats, >= 1 (default 7; --quick 3)")
    parser.add_argument("--warmup", type=nonnegative_int, default=None,
                        help="untimed steps first, >= 0 (default 2; --quick 1)")
    parser.add_argument("--target-seconds", type=finite_positive_float, default=None,
                        help="about how long one repeat runs, finite and > 0 "
                             "(default 0.25; --quick 0.02)")
    parser.add_argument("--out", default="bench-results",
                        help="folder for the .json, .md, .png and .log, created if missing; "
                             "checked to be writable before anything runs (default: bench-results/)")


def check_arguments(args) -> None:
    """Raise :class:`~gpuad.apps.arguments.UsageError` for a value :data:`FLAGS`
    does not allow, ``--libs`` without gpuad, or an ``--out`` that cannot be written;
    creates nothing."""
    check_values(args, FLAGS)
    if "gpuad" not in FLAGS["libs"](args.libs):
        raise UsageError(f"argument --libs: must include gpuad (every figure is compared with "
                         f"gpuad's), got {args.libs if isinstance(args.libs, str) else ','.join(args.libs)!r}")
    check_output_dir(args.out, "out")


def _default_device() -> str:
    import gpuad
    return "cuda" if any(d.startswith("cuda") for d in gpuad.devices.available()) else "cpu"


def _stem(out: Path, slug: str, date: str) -> Path:
    stem, k = out / f"{slug}-{date}", 2
    while any(stem.with_name(stem.name + ext).exists() for ext in (".json", ".md", ".png", ".log")):
        stem, k = out / f"{slug}-{date}-{k}", k + 1
    return stem


def _load_libraries(names, device, log):
    """``(adapters that can run, {name: status, version, note or reason})``."""
    loaded, facts = {}, {}
    for name in names:
        try:
            lib = libraries.load(name, device)
        except libraries.Unavailable as e:
            facts[name] = {"status": "unavailable", "reason": str(e)}
            log(f"  {name:<14} not run: {e}")
            continue
        loaded[name] = lib
        facts[name] = {"status": "ok", "version": lib.version, "note": lib.note}
        log(f"  {name:<14} {lib.version}: {lib.note}")
    return loaded, facts


def run(args) -> int:
    """Run the bench for parsed ``args`` (see :func:`add_arguments`); returns the
    exit status: 0, 1 when gpuad itself fails a check or errors, 2 (before anything
    runs or is written) for bad arguments."""
    from . import report as reports
    from .environment import device_slug, environment, now
    from .runner import Settings, ratios, run_workload
    from .workloads import all_workloads
    from tqdm import tqdm

    try:
        check_arguments(args)
    except UsageError as e:
        return refuse(e, "python -m gpuad bench")
    wanted_libs, wanted_work = FLAGS["libs"](args.libs), FLAGS["workloads"](args.workloads)
    quick = args.quick
    settings = Settings(
        repeats=args.repeats if args.repeats is not None else (3 if quick else 7),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 2),
        target_seconds=args.target_seconds if args.target_seconds is not None else (0.02 if quick else 0.25))
    device = args.device or _default_device()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    date = now()
    stem = _stem(out, device_slug(env), date[:10])
    log_file = open(stem.with_name(stem.name + ".log"), "w", encoding="utf-8")

    def log(line=""):
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    try:
        log(f"gpuad bench on {device} ({env['device'].get('name') or 'no GPU found'}), {date}; command: "
            f"python -m gpuad bench {' '.join(sys.argv[2:]) if sys.argv[1:2] == ['bench'] else ''}".rstrip())
        loaded, lib_facts = _load_libraries(wanted_libs, device, log)
        if "gpuad" not in loaded:
            log(f"error: gpuad itself cannot run on {device} here ({lib_facts['gpuad']['reason']}); "
                f"nothing to compare. Use --device cpu"
                + (", or on a machine with an NVIDIA GPU install CuPy: pip install 'gpuad[cuda13]'"
                   if device == "cuda" else ""))
            return 1

        sampler = None
        if device == "cuda":
            try:
                from .sampler import GpuSampler
                sampler = GpuSampler(0)
            except Exception as e:  # noqa: BLE001 -- telemetry is optional
                log(f"  GPU telemetry unavailable: {type(e).__name__}: {e}")

        workloads = all_workloads(quick, wanted_work)
        report = {"gpuad_bench_format": 1, "date": date, "command": sys.argv, "environment": env,
                  "settings": {"quick": quick, "device": device, "repeats": settings.repeats,
                               "warmup": settings.warmup, "target_seconds": settings.target_seconds},
                  "libraries": lib_facts, "workloads": {}}
        total = sum(settings.repeats for w in workloads for lib in loaded.values()
                    if lib.workloads is None or w.name in lib.workloads)
        # a progress bar on a terminal only (disable=None), not in logs
        progress = tqdm(total=total, desc="bench", unit="repeat", disable=None, leave=False)
        try:
            for w in workloads:
                progress.set_description(w.name)
                started = time.perf_counter()
                entries = run_workload(w, loaded, settings, sampler, progress)
                report["workloads"][w.name] = {"title": w.title, "unit": w.unit, "results": entries,
                                               "ratios": ratios(entries)}
                summary = ", ".join(f"{n} {reports.cell(e)}" for n, e in entries.items())
                log(f"{w.name} ({w.unit}; {time.perf_counter() - started:.0f} s): {summary}")
        finally:
            progress.close()
            if sampler is not None:
                sampler.stop()

        paths = reports.write(report, stem)
        log("")
        log(reports.markdown(report))
        log(f"wrote {paths['json']}, {paths['md']}, {paths['png']} and {stem.name}.log")
        ours = [w["results"].get("gpuad", {}).get("status") for w in report["workloads"].values()]
        return 0 if all(s == "ok" for s in ours) else 1
    finally:
        log_file.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuad bench",
                                     description="gpuad's workloads beside the installed peers.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
    except UsageError as e:
        parser.error(str(e))
    return run(args)


__all__ = ["add_arguments", "main", "run"]
