"""The compiler behind ``gpuad.function``.

- ``trace.py``: the tracer records a :class:`~gpuad.compiler.graph.Graph` (``graph.py``);
- ``passes.py``: dead and repeated nodes removed (constants were folded while tracing);
- ``fusion.py``: runs of element-wise nodes grouped; ``codegen.py`` (``ir.py``,
  ``emit.py``, ``fused.py``) generates and compiles one kernel per group, for each device;
- ``replay.py``: the plan as one straight-line Python function, with its memory planned;
- ``plan.py``: graph -> plan, the steps above in order.
"""
