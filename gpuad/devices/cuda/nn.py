"""Launch code for the kernels of `kernels/nn.cu` (being written)."""

FAMILIES = ()
