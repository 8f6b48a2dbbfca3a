"""Launch code for the kernels of `kernels/reduction.cu` (being written)."""

FAMILIES = ()
