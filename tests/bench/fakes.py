"""Adapters that misbehave on purpose, for the bench's tests."""
from gpuad.bench.libraries.gpuad_lib import Gpuad


class SlightlyWrong(Gpuad):
    """gpuad with every first-order gradient 1 % too large: its results must be
    reported as WRONG and never timed."""
    name = "slightly-wrong"

    def grad_of_sum(self, fn):
        grad = super().grad_of_sum(fn)
        return lambda x: grad(x) * 1.01


class Exploding(Gpuad):
    """gpuad whose second derivative raises: reported as an error."""
    name = "exploding"

    def second_grad_of_sum(self, fn):
        def fail(x):
            raise RuntimeError("simulated failure in the backward pass")
        return fail
