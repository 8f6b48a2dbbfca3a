"""From a traced graph to the plan a call replays: the passes, fusion, the fused
kernels compiled for the graph's device, and the replay around them.

``GPUAD_FUSION=0`` turns fusion off (every node runs its own kernel), and
``GPUAD_CUDA_GRAPHS=0`` device graphs (:mod:`.capture`), to compare.
"""
from __future__ import annotations

import os
import threading

from . import passes
from .capture import graphs_enabled
from .fusion import fuse, group_plan
from .graph import Graph
from .replay import build_replay

__all__ = ["compile_graph", "FusedStep"]


class FusedStep:
    """One generated kernel of a plan: the group it computes and its source."""

    def __init__(self, group, kernel, device, inputs, results):
        self.group = group
        self.kernel = kernel
        self.device = device
        self.inputs = inputs
        self.results = results

    @property
    def source(self) -> str:
        from .codegen import source
        return source(self.group, "cpp" if self.device.kind == "cpu" else "cuda")

    def __str__(self):
        ins = ", ".join(f"%{s}" for s in self.inputs)
        outs = ", ".join(f"%{s}" for s in self.results)
        ops = " ".join(op.prim for op in self.group.ops)
        return (f"fused kernel ({outs}) = [{ops}]({ins}) over {list(self.group.shape)} on "
                f"{self.device.name}:\n" + "\n".join("    " + line for line in self.source.splitlines()))


def _fusion_enabled() -> bool:
    return os.environ.get("GPUAD_FUSION", "1") not in ("0", "")


def compile_graph(graph: Graph, buffers: bool = False) -> tuple:
    """Optimise ``graph`` in place and build its replay: ``(replay, source, stats)``."""
    stats = passes.optimize(graph)
    fused_steps = {}
    if _fusion_enabled():
        from .codegen import compile_groups
        found = []  # (members, group, inputs, results, device)
        for members in fuse(graph):
            group, inputs, results = group_plan(graph, members)
            if results:
                found.append((members, group, inputs, results,
                              graph.avals[graph.nodes[members[0]].out][2]))
        for device in {f[4] for f in found}:
            # every group of a device in one compiler run and one module
            mine = [f for f in found if f[4] is device]
            kernels = compile_groups([f[1] for f in mine], device)
            for (members, group, inputs, results, _), kernel in zip(mine, kernels):
                graph.fused.append(FusedStep(group, kernel, device, inputs, results))
                fused_steps[members[0]] = (kernel.unchecked, inputs, results, set(members))
    stats["fused"] = sum(len(s[3]) for s in fused_steps.values())
    stats["kernels"] = len(fused_steps)
    graphs = graphs_enabled() and not buffers  # (a branch or loop body runs inside a replay)
    replay, source, memory = build_replay(graph, fused_steps, buffers=buffers, graphs=graphs)
    stats["buffers"] = len(memory)
    stats["graphs"] = source.count("\ndef segment") + source.startswith("def segment")
    if memory:
        replay = _with_memory(replay, memory)
    if stats["graphs"]:
        replay = _one_at_a_time(replay)
    return replay, source, stats


def _one_at_a_time(replay):
    """The replay, run by one thread at a time: a device graph's buffers are the
    same at every launch, so two calls at once would share them."""
    lock = threading.Lock()

    def run(*buffers):
        with lock:
            return replay(*buffers)
    return run


def _with_memory(replay, kinds):
    """The replay, given one set of the plan's reusable buffers per call. A set is
    taken from a free list (made on first use) and put back after the call, so two
    threads (or a replay inside a replay) never share one."""
    sets: list = []

    def make():
        from ..ops.table import FILL
        return [FILL.kernel(device)(shape=shape, value=0, dtype=dtype) for shape, dtype, device in kinds]

    def run(*buffers):
        m = sets.pop() if sets else make()
        try:
            return replay(*buffers, m)
        finally:
            sets.append(m)
    run.memory = sets
    return run
