"""Launch code for the kernels of `kernels/layout.cu` (being written)."""

FAMILIES = ()
