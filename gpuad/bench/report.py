"""The report of a bench run, in three forms: JSON (everything), a Markdown
table (the figures and the ratios gpuad/peer) and a PNG bar chart of the ratios."""
from __future__ import annotations

import json
import math
from pathlib import Path

RATIO_NOTE = ("gpuad/peer = gpuad's time / the peer's time for the same work: below 1 gpuad "
              "is faster, above 1 it is slower (2.0 = gpuad takes twice as long).")


def _number(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{min(digits, 4)}f}"


def cell(entry: dict | None) -> str:
    """One library's figure for one workload, or why there is none."""
    if entry is None:
        return "n/a"
    status = entry.get("status")
    if status == "ok":
        return _number(entry["figures"]["value"])
    if status == "WRONG":
        c = entry.get("check", {})
        detail = c.get("detail") or f"err {c.get('max_abs_error', float('nan')):.2g}"
        return f"WRONG ({detail})"
    return status or "?"


def peers(report: dict) -> list:
    return [n for n, lib in report["libraries"].items() if n != "gpuad" and lib["status"] == "ok"]


def markdown(report: dict) -> str:
    env, libs = report["environment"], report["libraries"]
    names = [n for n, lib in libs.items() if lib["status"] == "ok"]
    # the ratios to the other libraries first, then to gpuad's own variants
    others = ([n for n in peers(report) if not n.startswith("gpuad-")]
              + [n for n in peers(report) if n.startswith("gpuad-")])
    dev = env["device"]
    v = env["versions"]
    lines = [f"# gpuad bench: {dev.get('name') or dev['kind']} ({dev['kind']}), {report['date'][:10]}", ""]
    facts = [f"gpuad {env['gpuad']}" + (f" at `{env['gpuad_git']}`" if env.get("gpuad_git") else ""),
             f"Python {v['python']}", f"NumPy {v.get('numpy')}"]
    if dev["kind"] == "cuda":
        facts += [f"driver {dev.get('driver')}", f"CUDA {dev.get('cuda_driver')}",
                  f"CuPy {v.get('cupy')}"]
    cpu = env["cpu"]
    facts.append(f"CPU {cpu['model']} ({cpu['usable_threads']} usable threads)")
    lines += ["; ".join(facts) + ".", ""]
    s = report["settings"]
    lines += [f"Median of {s['repeats']} repeats (each about {s['target_seconds']} s) after "
              f"{s['warmup']} warm-up steps, interleaved between libraries"
              + (" (**--quick**: small sizes, few repeats, figures only indicative)" if s["quick"] else "")
              + ". Every library's result was checked against a float64 NumPy reference first.", ""]
    lines += ["| library | version | how it runs |", "|---|---|---|"]
    for n, lib in libs.items():
        lines.append(f"| {n} | {lib.get('version', '-')} | "
                     + (lib.get("note", "") if lib["status"] == "ok" else f"not run: {lib.get('reason')}")
                     + " |")
    lines.append("")

    header = ["workload", "unit"] + names + [f"gpuad/{p}" for p in others]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, w in report["workloads"].items():
        row = [w["title"], w["unit"]] + [cell(w["results"].get(n)) for n in names]
        row += [f"**{w['ratios'][p]:.2f}**" if p in w["ratios"] else "-" for p in others]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", RATIO_NOTE, ""]

    extra = [(key, w, k) for key, w in report["workloads"].items()
             for k in ("examples/s", "GB/s") if any(k in e.get("figures", {}) for e in w["results"].values())]
    if extra:
        lines += ["Throughput (higher is better):", "",
                  "| workload | figure | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
        for key, w, k in extra:
            vals = [_number(w["results"][n]["figures"][k]) if w["results"].get(n, {}).get("status") == "ok"
                    else cell(w["results"].get(n)) for n in names]
            lines.append(f"| {key} | {k} | " + " | ".join(vals) + " |")
        lines.append("")

    gpu_rows = [(key, n, e["gpu"]) for key, w in report["workloads"].items()
                for n, e in w["results"].items() if e.get("gpu")]
    if gpu_rows:
        lines += ["GPU telemetry (nvidia-ml-py, ~10 Hz, during the timed repeats; memory is the "
                  "whole GPU's, every library's pool included):", "",
                  "| workload | library | peak memory (MiB) | mean utilisation (%) | energy per step (mJ) |",
                  "|---|---|---|---|---|"]
        for key, n, g in gpu_rows:
            mem = f"{g['peak_memory_bytes'] / 2**20:.0f}" if g.get("peak_memory_bytes") else "-"
            util = f"{g['mean_utilization']:.0f}" if g.get("mean_utilization") is not None else "-"
            energy = _number(g["energy_per_step_j"] * 1e3) if g.get("energy_per_step_j") else "-"
            lines.append(f"| {key} | {n} | {mem} | {util} | {energy} |")
        lines.append("")

    problems = [(key, n, e) for key, w in report["workloads"].items()
                for n, e in w["results"].items() if e["status"] in ("WRONG", "error")]
    if problems:
        lines += ["Not timed:", ""]
        for key, n, e in problems:
            why = e.get("error") or (f"result disagrees with the float64 reference: max abs error "
                                     f"{e['check'].get('max_abs_error', float('nan')):.3g}, "
                                     f"{e['check'].get('error_over_tolerance', float('nan')):.3g}x the "
                                     f"tolerance" if "detail" not in e["check"] else e["check"]["detail"])
            lines.append(f"- {key} / {n}: {e['status']}: {why}")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    """A bar chart of gpuad/peer per workload (log scale; below 1: gpuad faster)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = peers(report)
    keys = list(report["workloads"])
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(keys) + 4), 4.8))
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(keys))]
        ys = [report["workloads"][key]["ratios"].get(n, float("nan")) for key in keys]
        ax.bar(xs, ys, width, label=f"gpuad/{n}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=20, ha="right")
    ax.set_ylabel("gpuad time / peer time (log; < 1: gpuad faster)")
    dev = report["environment"]["device"]
    ax.set_title(f"gpuad bench, {dev.get('name') or dev['kind']}, {report['date'][:10]}"
                 + (" (--quick)" if report["settings"]["quick"] else ""))
    if names:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def strict_json(value):
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON's
    ``null``): JSON has no such numbers, and ``NaN`` in a file is not JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write(report: dict, stem: Path) -> dict:
    """``stem``.json (strict JSON: a non-finite number is ``null``), .md and .png;
    returns the paths by kind."""
    paths = {k: stem.with_name(stem.name + "." + k) for k in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths
