"""Graph-to-graph passes: dead code and common subexpressions.

Constant folding happens while tracing (the tracer runs an op whose inputs are
all constants eagerly), so a graph reaching these passes computes only what
depends on its parameters, its variables or its random numbers.

Effectful nodes (variable reads and writes, random numbers) are never removed
or merged: a replay reads, writes and draws exactly as the eager run did.
"""
from __future__ import annotations

from .graph import Graph

__all__ = ["eliminate_dead_code", "eliminate_common_subexpressions", "optimize"]


def eliminate_dead_code(graph: Graph) -> int:
    """Drop pure nodes whose results nothing uses; returns how many were dropped."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if node.effect is None and not any(o in live for o in node.outs):
            continue
        kept.append(node)
        live.update(node.inputs)
    dropped = len(graph.nodes) - len(kept)
    kept.reverse()
    graph.nodes = kept
    for slot in [s for s in graph.constants if s not in live]:
        del graph.constants[slot]
    return dropped


def _attrs_key(attrs: dict):
    """A hashable form of a node's attributes, or None (then the node is not merged)."""
    try:
        key = tuple(sorted(attrs.items()))
        hash(key)
        return key
    except TypeError:
        return None


def eliminate_common_subexpressions(graph: Graph) -> int:
    """Merge pure nodes that apply the same primitive to the same inputs with the
    same attributes (and constants holding the same Tensor); returns how many
    nodes were merged away."""
    rename: dict[int, int] = {}
    seen: dict = {}
    kept = []
    for node in graph.nodes:
        node.inputs = tuple(rename.get(s, s) for s in node.inputs)
        if node.effect is None and type(node.out) is int:
            attrs = _attrs_key(node.attrs)
            if attrs is not None:
                key = (node.prim, node.inputs, attrs)
                first = seen.get(key)
                if first is not None:
                    rename[node.out] = first
                    continue
                seen[key] = node.out
        kept.append(node)
    merged = len(graph.nodes) - len(kept)
    graph.nodes = kept
    graph.outputs = [rename.get(s, s) for s in graph.outputs]
    return merged


def optimize(graph: Graph) -> dict:
    """Run the passes; returns what each did (for the compile log)."""
    return {"merged": eliminate_common_subexpressions(graph), "dead": eliminate_dead_code(graph)}
