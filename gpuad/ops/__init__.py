"""The ops: primitives (``table``) and what is composed from them.

``gpuad.ops.table.PRIMITIVES`` is the complete list of primitives, each with
its device kernel and VJPs; ``math``, ``array`` and ``creation`` hold the
public functions (re-exported at the top level of ``gpuad``).
"""
from . import math, array, creation  # noqa: F401
from . import operators  # noqa: F401  (binds Python operators to Tensor and Variable)
