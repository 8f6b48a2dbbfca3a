"""The ops: primitives (``table``) and what is composed from them.

``gpuad.ops.table.PRIMITIVES`` is the complete list of primitives, each with
its device kernel and VJPs; the modules here are the public functions.
"""
from .math import *  # noqa: F401,F403
from .array import *  # noqa: F401,F403
from .creation import *  # noqa: F401,F403
from . import operators  # noqa: F401  (binds Python operators to Tensor and Variable)
