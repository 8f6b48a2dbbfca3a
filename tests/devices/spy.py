"""A kernel device that records the kernels it launches, so a test can check which
path (contiguous, strided, byte copy, ...) a call took."""
from gpuad.devices.launch import KernelDevice


class Spy(KernelDevice):
    """Records the kernels launched, to check which path ran."""

    def __init__(self, launcher):
        super().__init__(launcher)
        self.launched = []

    def launch(self, kernel, n, args, **kw):
        self.launched.append(kernel)
        super().launch(kernel, n, args, **kw)
