"""The compiler behind ``gpuad.function``: the tracer (``trace.py``) records a
:class:`~gpuad.compiler.graph.Graph`, ``passes.py`` removes dead and repeated
nodes, and ``replay.py`` turns the graph into the plan a call replays."""
