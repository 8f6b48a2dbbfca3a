"""The traced graph: what ``gpuad.function`` records and the compiler turns into a plan.

A graph is a list of nodes over numbered *slots* (values). A slot is one of:

- a parameter: a tensor argument of the function (``graph.params``), or a value
  captured from an enclosing trace (a ``gpuad.cond`` branch reading the
  function's values);
- a constant: an eager Tensor the function used (a closure's tensor, a number
  like the 2.0 of ``x * 2.0``, anything computed from constants only: the
  tracer folds those while tracing); captured by value, Tensors never change;
- the result of a node.

A node is one ``bind``: primitive, input slots, attributes and its result slot
(None for writes, which return nothing). Nodes are kept in the order they ran;
effectful ones (variable reads and writes, random numbers) keep that order in
every plan.

>>> import gpuad as ad
>>> f = ad.function(lambda x: ad.exp(x) * 2.0)
>>> print(f.get_concrete_function(ad.TensorSpec([3], ad.float32)).graph)  # doctest: +NORMALIZE_WHITESPACE
graph <lambda>(%0: float32[3] cpu):
  %2 = exp(%0)
  %3 = multiply(%2, %1)
  return (%3)
constants: %1 = float32[] 2.0
"""
from __future__ import annotations

import numpy as np

__all__ = ["Node", "Graph"]


class Node:
    """``out = prim(*inputs, **attrs)`` over slot numbers. ``out`` is a slot, None
    (writes) or a tuple of slots (control flow: ``cond`` and ``while_loop`` nodes,
    whose ``attrs["run"]`` runs them on buffers). ``effect`` is the row's, or the
    strongest effect inside a control-flow node's branches."""

    __slots__ = ("prim", "inputs", "attrs", "out", "effect")

    def __init__(self, prim, inputs: tuple, attrs: dict, out, effect=None):
        self.prim = prim
        self.inputs = inputs
        self.attrs = attrs
        self.out = out
        self.effect = effect or prim.effect

    @property
    def outs(self) -> tuple:
        """The result slots, as a tuple."""
        out = self.out
        return () if out is None else out if type(out) is tuple else (out,)

    def __repr__(self):
        args = ", ".join(f"%{i}" for i in self.inputs)
        shown = {k: v for k, v in self.attrs.items() if k not in ("device", "run")}
        if shown:
            args += (", " if args else "") + ", ".join(f"{k}={_short(v)}" for k, v in shown.items())
        lhs = "".join(f"%{o}, " for o in self.outs)[:-2] + " = " if self.outs else ""
        return f"{lhs}{self.prim.name}({args})"


def _short(value) -> str:
    """An attribute as the graph's text shows it (variables by name, big things by kind)."""
    name = getattr(value, "_name", None)
    if name is not None and hasattr(value, "_lock"):
        return f"<variable {name}>"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{len(value)} items]"
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype}{list(value.shape)}>"
    if isinstance(value, Graph):
        return f"<graph {value.name}: {len(value.nodes)} nodes>"
    if isinstance(value, dict):
        return "{...}"
    if callable(value) and not isinstance(value, type):
        return f"<{getattr(value, '__name__', type(value).__name__)}>"
    if isinstance(value, np.dtype):
        return value.name
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Graph:
    """A traced function: parameters, constants, nodes, outputs, and each slot's
    (shape, numpy dtype, device)."""

    def __init__(self, name: str):
        self.name = name
        self.params: list[int] = []       # slots bound to the call's tensors, in order
        self.constants: dict = {}         # slot -> eager Tensor (captured by value)
        self.nodes: list[Node] = []
        self.outputs: list[int] = []
        self.avals: list[tuple] = []      # slot -> (shape, dtype, device)
        self.fused: list = []             # set by the compiler: the generated kernels

    def new_slot(self, shape, dtype, device) -> int:
        self.avals.append((tuple(shape), np.dtype(dtype), device))
        return len(self.avals) - 1

    def variables(self) -> list:
        """The Variables the graph reads or writes, once each, in first-use order."""
        seen, out = set(), []
        for node in self.nodes:
            for key in ("variable", "variables", "iterations"):
                v = node.attrs.get(key)
                for x in (v if isinstance(v, (list, tuple)) else (v,)):
                    if x is not None and x._id not in seen:
                        seen.add(x._id)
                        out.append(x)
            for kind in node.attrs.get("slots", ()):
                for x in kind:
                    if x._id not in seen:
                        seen.add(x._id)
                        out.append(x)
        return out

    def read_variables(self) -> list:
        """The Variables whose values the graph reads (their gradients flow back
        through a call), once each, in order."""
        seen, out = set(), []
        for node in self.nodes:
            if node.prim.name == "read_variable":
                found = [node.attrs["variable"]]
            else:  # a cond or while_loop node: the reads of its branches
                found = node.attrs.get("reads", ())
            for v in found:
                if v._id not in seen:
                    seen.add(v._id)
                    out.append(v)
        return out

    def has_effects(self, kinds=("random", "write")) -> bool:
        return any(node.effect in kinds for node in self.nodes)

    def strongest_effect(self):
        """The effect a node running this graph has: "write", "random", "read" or None."""
        effects = {node.effect for node in self.nodes}
        for kind in ("write", "random", "read"):
            if kind in effects:
                return kind
        return None

    def _aval_text(self, slot) -> str:
        shape, dtype, device = self.avals[slot]
        return f"{dtype.name}{list(shape)} {device.name}"

    def __str__(self):
        params = ", ".join(f"%{s}: {self._aval_text(s)}" for s in self.params)
        lines = [f"graph {self.name}({params}):"]
        lines += [f"  {node!r}" for node in self.nodes]
        lines.append("  return (" + ", ".join(f"%{s}" for s in self.outputs) + ")")
        if self.constants:
            shown = []
            for slot, t in sorted(self.constants.items()):
                value = t.numpy() if t.size <= 4 else None
                text = f"%{slot} = {t.dtype.name}{list(t.shape)}"
                shown.append(text if value is None else f"{text} {np.array2string(np.asarray(value))}")
            lines.append("constants: " + ", ".join(shown))
        for node in self.nodes:  # the branches and loop bodies of control-flow nodes
            for value in node.attrs.values():
                if isinstance(value, Graph):
                    lines.append("  " + str(value).replace("\n", "\n  "))
        for kernel in self.fused:
            lines.append(str(kernel))
        return "\n".join(lines)

    __repr__ = __str__
