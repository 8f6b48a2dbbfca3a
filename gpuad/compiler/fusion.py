"""Element-wise fusion: runs of element-wise nodes over one shape become one
generated kernel (``codegen``), so a chain of twenty ops is one pass over memory
and one call instead of twenty.

The pass walks the graph in order and grows a *group* while the nodes are
element-wise rows (``unary``, ``binary``, ``unary_grad``, ``where``, ``cast``)
with the group's result shape. Inputs of any smaller shape broadcast inside the
kernel. A node that does not fit (a reduction, a matmul, a variable read) and
does not use the group's values is moved ahead of the group, so the group goes on
growing; one that uses them closes the group. Effectful nodes (writes, random
numbers, control flow) always close it and never move, so effects keep their order.

A group's results are the values its nodes compute that anything outside the
group reads (later nodes, the graph's outputs); the others never leave the kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .graph import Graph

__all__ = ["fuse", "group_plan"]

_FAMILIES = frozenset({"unary", "binary", "unary_grad", "where", "cast"})
_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))


# On the cpu device NumPy computes these functions with vectorised (SIMD) code,
# while a generated loop calls the C library's scalar ones (no fast-math: results
# must match NumPy's to a few ulps), about twice as slow. Past a size where the
# cost of a call no longer dominates, they stay NumPy calls (into planned buffers)
# and split the groups around them.
_LIBM = frozenset("exp log log1p expm1 sin cos tan tanh sigmoid softplus erf pow sin_grad "
                  "cos_grad".split())
_CPU_LARGE = 1 << 14


def _fusible(node, avals) -> bool:
    prim = node.prim
    if prim.family not in _FAMILIES or prim.functor is None or node.effect is not None:
        return False
    if type(node.out) is not int or avals[node.out][1] not in _DTYPES:
        return False
    shape, _, device = avals[node.out]
    if device.kind == "cpu" and prim.name in _LIBM and math.prod(shape) > _CPU_LARGE:
        return False
    return all(avals[s][1] in _DTYPES for s in node.inputs)


def _movable(node) -> bool:
    """Whether a node may run before the open group (it does not use the group's
    values: checked by the caller): pure nodes and variable reads."""
    return node.effect in (None, "read") and "run" not in node.attrs


def fuse(graph: Graph, min_ops: int = 2) -> list:
    """Reorder ``graph.nodes`` so each fused group is a contiguous run, and return the
    groups as lists of node indices (into the reordered list), each of at least
    ``min_ops`` nodes (a lone op gains nothing from a generated kernel)."""
    avals = graph.avals
    order, groups = [], []
    group, shape, device, produced, moved = [], None, None, set(), []

    def close():
        nonlocal group, produced, moved
        order.extend(moved)
        if len(group) >= min_ops:
            groups.append(list(range(len(order), len(order) + len(group))))
        order.extend(group)
        group, produced, moved = [], set(), []

    for node in graph.nodes:
        if _fusible(node, avals):
            out_shape, _, out_device = avals[node.out]
            if group and (out_shape != shape or out_device is not device):
                if not any(s in produced for s in node.inputs):
                    moved.append(node)  # another shape: it waits ahead of the group
                    continue
                close()
            if not group:
                shape, device = out_shape, out_device
            group.append(node)
            produced.add(node.out)
            continue
        if group and _movable(node) and not any(s in produced for s in node.inputs):
            moved.append(node)
            continue
        close()
        order.append(node)
    close()
    graph.nodes = order
    return groups


def group_plan(graph: Graph, members: list):
    """The codegen ``Group`` of the nodes ``members`` (indices into graph.nodes), with
    its external input slots and its result slots (read outside the group)."""
    from .codegen import Group, Op, Operand
    avals = graph.avals
    nodes = [graph.nodes[i] for i in members]
    position = {node.out: j for j, node in enumerate(nodes)}
    inputs, input_at = [], {}
    ops = []
    for node in nodes:
        args = []
        for s in node.inputs:
            if s in position and position[s] < len(ops):
                args.append(("op", position[s]))
            else:
                if s not in input_at:
                    input_at[s] = len(inputs)
                    inputs.append(s)
                args.append(("in", input_at[s]))
        attrs = ()
        if node.prim.name == "cast":
            attrs = (("dtype", np.dtype(node.attrs["dtype"])),)
        ops.append(Op(node.prim.name, tuple(args), avals[node.out][1], attrs))
    inside = set(members)
    used_outside = set(graph.outputs)
    for i, node in enumerate(graph.nodes):
        if i not in inside:
            used_outside.update(node.inputs)
    results = [node.out for node in nodes if node.out in used_outside]
    shape = avals[nodes[0].out][0]
    group = Group(shape, tuple(Operand(avals[s][0], avals[s][1]) for s in inputs), tuple(ops),
                  tuple(position[s] for s in results))
    return group, tuple(inputs), tuple(results)
