"""Launch code for the kernels of `kernels/elementwise.cu` (being written)."""

FAMILIES = ()
