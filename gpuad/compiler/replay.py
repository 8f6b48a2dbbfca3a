"""A plan's replay: the graph turned into one straight-line Python function.

Each node becomes one line that calls its device kernel on buffers (kernels and
attributes resolved once, when the plan is built): no rule checks, no Tensor
objects, no tapes, no interpreter lookups. A buffer is released (``del``) right
after its last use, so memory follows the graph's liveness.

Variable reads hand out the variable's buffer; on a device whose optimizer
writes in place (cuda, emulated) the read holds the variable's lease for as long
as the buffer or a view of it is alive in the replay, exactly as an eager read's
Tensor would, so an optimizer step later in the same plan never writes into a
buffer that is still needed (or returned).

>>> import gpuad as ad
>>> f = ad.function(lambda x: ad.reduce_sum(x * x, axis=0))
>>> print(f.get_concrete_function(ad.constant([1.0, 2.0])).replay_source)
def replay(b0, m):
    b1 = k0(b0, b0, out=m[0])
    b2 = k1(b1)
    del b1
    return (T(b2, d2),)

(``m`` holds the plan's reused buffers; ``k0`` is NumPy's multiply, writing into one.)
"""
from __future__ import annotations

import functools

import numpy as np

from ..tensor import Tensor
from .graph import Graph

__all__ = ["build_replay"]


def _wrap(buffer, device, holder):
    """A Tensor over ``buffer``; with the lease of ``holder`` (a variable read) if any."""
    t = Tensor(buffer, device)
    if holder is not None:
        t._lease = holder._lease
    return t


def _run_effect(prim, attrs, devices, *buffers_and_holders):
    """An effectful row run as eagerly (assign, apply_update, copy): its ``eager``
    function on Tensors. Returns the result's buffer (None for writes)."""
    n = len(devices)
    tensors = [_wrap(b, d, h) for b, d, h in zip(buffers_and_holders[:n], devices,
                                                  buffers_and_holders[n:])]
    out = prim.eager(*tensors, **attrs)
    return None if out is None else out._data


def _contiguous(constant):
    """A constant's buffer, C-contiguous: a folded ``broadcast_to`` is a view with
    zero strides, which a generated kernel would otherwise copy on every call."""
    data = constant._data
    flags = getattr(data, "flags", None)
    if flags is None or flags.c_contiguous:
        return data
    from ..ops.table import CAST
    return CAST.kernel(constant._device)(data, dtype=data.dtype)


def _kernel(prim, device, attrs):
    k = prim.kernel(device)
    return functools.partial(k, **attrs) if attrs else k


def _kernel_of(node, avals):
    if node.prim.eager is not None or "run" in node.attrs or not node.inputs:
        return None
    return node.prim.kernel(avals[node.inputs[0]][2])


def build_replay(graph: Graph, fused_steps=None, buffers=False, plan=True,
                 plan_fused_outputs=True, graphs=False):
    """The graph's replay: ``(replay, source, memory)``. ``replay(*param_buffers)``
    returns the output Tensors; with ``buffers``, the output buffers (a branch of a
    ``cond`` or a loop body, run by its node inside another replay). ``memory``
    lists the (shape, dtype, device) of the buffers the plan reuses (``plan``):
    when there are any, the replay takes one more argument, a list of such
    buffers, which one call at a time may use.

    ``fused_steps`` (from the fusion pass) maps a node index to a fused kernel call
    replacing a run of nodes: ``(callable, input slots, output slots, node indices)``.

    With ``graphs``, runs of kernels on a device with graphs are replayed as device
    graphs (:mod:`gpuad.compiler.capture`): each run becomes a function of its own,
    called through a :class:`~gpuad.compiler.capture.CapturedSegment`.
    """
    from .capture import CapturedSegment, find_segments
    from ..ops.state import PreparedUpdate
    from ..ops.table import APPLY_UPDATE, READ_VARIABLE
    ns = {"T": Tensor, "W": _wrap}
    avals = graph.avals
    # which lease holder (the read's Tensor, ``t<slot>``) each slot's buffer depends on
    holder: dict[int, int] = {}

    steps = []  # (node index or None, callable name, inputs, outputs, node) in order
    skip = set()
    fused_steps = fused_steps or {}
    for n, node in enumerate(graph.nodes):
        if n in skip:
            continue
        if n in fused_steps:
            fn, ins, outs, covered = fused_steps[n]
            skip.update(covered)
            ns[f"f{n}"] = fn
            steps.append(("fused", f"f{n}", ins, outs, None))
            continue
        steps.append(("node", n, node.inputs, node.outs, node))

    # liveness: the last step that reads each slot (outputs live to the end)
    last_use: dict[int, int] = {}
    for i, (_, _, ins, _, _) in enumerate(steps):
        for s in ins:
            last_use[s] = i
    outputs = set(graph.outputs)
    for s in graph.constants:
        ns[f"c{s}"] = _contiguous(graph.constants[s])

    segments = find_segments(graph, steps) if graphs else []
    in_segment = {i: k for k, (first, last) in enumerate(segments) for i in range(first, last + 1)}

    # Lease holders: a read of a variable on a device that updates in place, and
    # the views of it (aliasing rows), share the read's lease until the last of
    # them is last used (or forever, when one is an output). A read inside a graph
    # holds none: its value never leaves the graph (find_segments sees to that).
    for i, (kind, _, ins, outs, node) in enumerate(steps):
        if kind != "node" or i in in_segment:
            continue
        if node.prim is READ_VARIABLE and node.attrs["variable"]._device.optim_in_place:
            holder[node.out] = node.out
        elif node.prim.aliases and ins and ins[0] in holder:
            holder[node.out] = holder[ins[0]]
    release_holder: dict[int, list] = {}
    for h in set(holder.values()):
        group = [s for s, r in holder.items() if r == h]
        if not any(s in outputs for s in group):
            end = max(last_use.get(s, -1) for s in group)
            release_holder.setdefault(max(end, _producer(steps, h)), []).append(h)

    def name(s):
        return f"c{s}" if s in graph.constants else f"b{s}"

    captured = {id(steps[i]) for i in in_segment}

    def writes_into(step):
        if id(step) in captured:  # a graph's buffers are its own, the same at every launch
            return False
        kind, ref, ins, outs, node = step
        if kind == "fused":
            return plan_fused_outputs
        return isinstance(ns.get(f"k{ref}") or _kernel_of(node, avals), np.ufunc) and not node.attrs

    memory, kinds = plan_memory(graph, steps, last_use, writes_into) if plan else ({}, [])

    def emit(i, lines, releases=True):
        """The lines of step ``i``: its call and the ``del`` of what no later step reads."""
        kind, ref, ins, outs, node = steps[i]
        if kind == "fused":
            lhs = ", ".join(f"b{s}" for s in outs)
            args = [name(s) for s in ins]
            if any(s in memory for s in outs):
                args.append("out=(" + "".join(f"m[{memory[s]}], " for s in outs) + ")")
            lines.append(f"{lhs}, = {ref}({', '.join(args)})")
        else:
            n, prim = ref, node.prim
            attrs = dict(node.attrs)
            if "run" in attrs:  # cond / while_loop: runs its branches' replays on buffers
                ns[f"e{n}"] = attrs["run"]
                lhs = "".join(f"b{o}, " for o in outs) + "= " if outs else ""
                lines.append(f"{lhs}e{n}({', '.join(name(s) for s in ins)})")
            elif prim is READ_VARIABLE:
                ns[f"v{n}"] = attrs["variable"]
                if node.out in holder:
                    lines.append(f"t{node.out} = v{n}._lend()")
                    lines.append(f"b{node.out} = t{node.out}._data")
                else:
                    lines.append(f"b{node.out} = v{n}._data")
            elif prim is APPLY_UPDATE:  # an optimizer step, prepared once for the plan
                step = PreparedUpdate(**attrs)
                ns[f"e{n}"] = lambda *grads, _step=step: _step(grads)
                lines.append(f"e{n}({', '.join(name(s) for s in ins)})")
            elif prim.eager is not None:
                devices = tuple(avals[s][2] for s in ins)
                ns[f"e{n}"] = functools.partial(_run_effect, prim, attrs, devices)
                held = [f"t{holder[s]}" if s in holder else "None" for s in ins]
                call = f"e{n}({', '.join([name(s) for s in ins] + held)})"
                lines.append(call if node.out is None else f"b{node.out} = {call}")
            else:
                if not ins:  # random numbers: the device comes with the attributes
                    device = attrs.pop("device")
                else:
                    device = avals[ins[0]][2]
                ns[f"k{n}"] = _kernel(prim, device, attrs)
                args = [name(s) for s in ins]
                if node.out in memory:  # a ufunc writing into the plan's buffer
                    args.append(f"out=m[{memory[node.out]}]")
                lines.append(f"b{node.out} = k{n}({', '.join(args)})")
        # release what no later step reads
        for s in sorted(set(ins)):
            if last_use.get(s) == i and s not in outputs and s not in graph.constants \
                    and s not in graph.params:
                lines.append(f"del b{s}")
        for s in outs:
            if s not in last_use and s not in outputs and s not in holder:
                lines.append(f"del b{s}")
        if releases:
            for h in release_holder.get(i, ()):
                lines.append(f"del t{h}")

    def emit_segment(k, lines):
        """Steps ``first..last`` as the function ``segment<k>``, and its call."""
        first, last = segments[k]
        inputs, produced, reads = [], [], []
        for i in range(first, last + 1):
            for s in steps[i][2]:
                if s not in produced and s not in inputs and s not in graph.constants:
                    inputs.append(s)
            produced.extend(steps[i][3])
            node = steps[i][4]
            if node is not None and node.prim is READ_VARIABLE:
                reads.append(node.attrs["variable"])
        results = [s for s in produced if s in outputs or last_use.get(s, -1) > last]
        body = []
        for i in range(first, last + 1):
            emit(i, body, releases=False)
        body.append("return (" + "".join(f"b{s}, " for s in results).rstrip(" ") + ")")
        segment_sources.append(f"def segment{k}({', '.join(f'b{s}' for s in inputs)}):\n"
                               + "".join(f"    {line}\n" for line in body))
        device = avals[produced[0]][2]
        ns[f"s{k}"] = (k, reads, device, [s in outputs or _may_keep(s, last) for s in results])
        lhs = "".join(f"b{s}, " for s in results) + "= " if results else ""
        lines.append(f"{lhs}s{k}({', '.join(name(s) for s in inputs)})")
        for s in inputs:
            if first <= last_use.get(s, -1) <= last and s not in outputs and s not in graph.params:
                lines.append(f"del b{s}")
        for i in range(first, last + 1):
            for h in release_holder.get(i, ()):
                lines.append(f"del t{h}")

    def _may_keep(s, last) -> bool:
        """Whether a step after ``last``, outside any graph, could keep buffer ``s``."""
        for j in range(last + 1, len(steps)):
            kind, _, ins, _, node = steps[j]
            if s in ins and j not in in_segment and kind != "fused" and \
                    not _reads_only(node) and node.prim is not APPLY_UPDATE:
                return True
        return False

    lines, segment_sources = [], []
    for i in range(len(steps)):
        k = in_segment.get(i)
        if k is None:
            emit(i, lines)
        elif i == segments[k][0]:
            emit_segment(k, lines)

    results = []
    if buffers:
        # A branch's result that aliases a variable's buffer is copied: its lease
        # ends with this replay, and the enclosing replay may still need the value
        # after an optimizer step wrote into that buffer.
        from ..ops.table import CAST
        for s in graph.outputs:
            if s in holder:
                ns[f"x{s}"] = functools.partial(CAST.kernel(avals[s][2]), dtype=avals[s][1])
                results.append(f"x{s}({name(s)})")
            else:
                results.append(name(s))
    for s in () if buffers else graph.outputs:
        ns[f"d{s}"] = avals[s][2]
        src = name(s)
        if s in holder:
            results.append(f"W({src}, d{s}, t{holder[s]})")
        else:
            results.append(f"T({src}, d{s})")
    lines.append("return (" + "".join(r + ", " for r in results).rstrip(" ") + ")")
    params = [f"b{s}" for s in graph.params] + (["m"] if kinds else [])
    source = f"def replay({', '.join(params)}):\n" + "".join(f"    {line}\n" for line in lines)
    source = "\n".join(segment_sources + [source])
    exec(compile(source, f"<gpuad replay of {graph.name}>", "exec"), ns)
    for k in range(len(segments)):
        _, reads, device, copy_out = ns[f"s{k}"]
        ns[f"s{k}"] = CapturedSegment(ns[f"segment{k}"], device, reads, copy_out,
                                      name=f"{graph.name} (graph {k})")
    return ns["replay"], source.rstrip("\n"), kinds


def _producer(steps, slot) -> int:
    for i, (_, _, _, outs, _) in enumerate(steps):
        if slot in outs:
            return i
    return -1


# Consumers that only read their inputs' buffers (never return them or a view of
# them): a buffer of the plan's memory may feed them, since nothing outside the
# replay can keep it.
_READERS = frozenset({"unary", "binary", "unary_grad", "cast", "where", "matmul", "softmax",
                      "softmax_xent", "arg_reduce", "one_hot", "concat", "gather"})


def _reads_only(node) -> bool:
    if node.effect is not None or "run" in node.attrs or node.prim.aliases:
        return False
    family = node.prim.family
    if family == "reduce":
        return bool(node.attrs.get("axes"))
    return family in _READERS


def plan_memory(graph: Graph, steps: list, last_use: dict, writes_into) -> dict:
    """Buffers reused by liveness: ``{slot: buffer number}`` for the values a step
    can write into a given buffer (``writes_into(step)``) and that never leave the
    replay (not an output, read only by steps that do not keep them). A buffer
    becomes free after the step that reads its value last, and a later value of
    the same shape, dtype and device takes it: a steady-state replay allocates
    only its outputs."""
    consumers: dict[int, list] = {}
    for i, (kind, _, ins, _, node) in enumerate(steps):
        for s in ins:
            consumers.setdefault(s, []).append(kind == "fused" or _reads_only(node))
    outputs = set(graph.outputs)
    assigned: dict[int, int] = {}
    free: dict[tuple, list] = {}
    kinds: list = []   # buffer number -> (shape, dtype, device)
    release: dict[int, list] = {}
    for i, step in enumerate(steps):
        for b in release.pop(i - 1, ()):
            free.setdefault(kinds[b], []).append(b)
        if not writes_into(step):
            continue
        eligible = [s for s in step[3]
                    if s not in outputs and s in consumers and all(consumers[s])]
        if step[0] == "fused" and len(eligible) != len(step[3]):
            continue  # a fused kernel writes all its results into given buffers, or none
        for s in eligible:
            aval = graph.avals[s]
            pool = free.get(aval)
            if pool:
                b = pool.pop()
            else:
                b = len(kinds)
                kinds.append(aval)
            assigned[s] = b
            release.setdefault(last_use[s], []).append(b)
    return assigned, kinds
