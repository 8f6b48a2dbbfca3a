"""The ops: primitives (``table``, one row each), ``bind`` (``core``), and
what is composed from them.

``gpuad.ops.table.PRIMITIVES`` is the complete list of primitives, each with
its shape/dtype rule (``infer``), device kernel, VJPs and residuals; ``math``,
``array`` and ``creation`` hold the public functions (re-exported at the top
level of ``gpuad``).
"""
from . import math, array, creation  # noqa: F401
from . import operators  # noqa: F401  (binds Python operators to Tensor and Variable)
