"""Element-wise fusion code generation: the interface the tracer of
``gpuad.function`` calls for each group of element-wise ops it fuses.

- :class:`Operand`, :class:`Op`, :class:`Group`: the group (``ir.py``);
- :func:`source`: its generated source, ``"cuda"`` (the cuda and emulated
  devices) or ``"cpp"`` (the cpu device), one per-element body for both
  (``emit.py``);
- :func:`compile_group` / :func:`compile_groups`: its :class:`FusedKernel` on a
  device, compiled once and cached (``fused.py``).

>>> import numpy as np
>>> from gpuad.compiler.codegen import Group, Op, Operand, compile_group
>>> f64 = np.dtype(np.float64)
>>> g = Group((3,), (Operand((3,), f64),),
...           (Op("square", (("in", 0),), f64), Op("add", (("op", 0), ("in", 0)), f64)), (1, 0))
>>> total, square = compile_group(g, "cpu")(np.array([1.0, 2.0, 3.0]))
>>> total, square
(array([ 2.,  6., 12.]), array([1., 4., 9.]))
"""
from .emit import kernel_name, module_source, source
from .fused import FusedKernel, clear_cache, compile_group, compile_groups
from .ir import CHECKED, DTYPES, Group, Op, Operand

__all__ = ["Operand", "Op", "Group", "source", "module_source", "kernel_name", "compile_group", "compile_groups",
           "FusedKernel", "clear_cache", "CHECKED", "DTYPES"]
