"""gpuad's compiler: what ``gpuad.function`` turns a traced graph into. ``codegen``
generates and compiles one kernel per group of element-wise ops."""
