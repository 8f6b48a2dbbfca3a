"""Shared fixtures: every test that computes takes ``device`` and so runs on
each device this machine can use (``cpu`` always; ``emulated`` and ``cuda``
where they exist)."""
import os

import numpy as np
import pytest
from hypothesis import settings

# Kernel devices fill every new buffer with NaN (or a sentinel) so that an
# element a kernel forgot to write fails the comparison with the cpu device.
os.environ.setdefault("GPUAD_POISON", "1")

import gpuad as ad  # noqa: E402

# Property tests draw the same examples in every run (CI and here): a failure
# reproduces, and a change that breaks one is caught by the next run, not by chance.
settings.register_profile("gpuad", derandomize=True)
settings.load_profile("gpuad")

AVAILABLE = ad.devices.available()


def _device_param(name):
    marks = []
    if name.startswith("cuda"):
        marks.append(pytest.mark.cuda)  # `pytest -m cuda` runs the GPU part alone
    if name not in AVAILABLE:
        why = {"emulated": "the emulated device needs a host C++ compiler (g++)",
               "cuda:0": "no usable CUDA GPU (gpuad.devices.available() has no cuda device)"}
        marks.append(pytest.mark.skip(reason=why.get(name, f"{name} is not available")))
    return pytest.param(name, marks=marks, id=name.split(":")[0])


DEVICES = [d for d in ("cpu", "emulated", "cuda:0") if d in AVAILABLE]


@pytest.fixture(params=[_device_param(d) for d in ("cpu", "emulated", "cuda:0")])
def device(request):
    """Run the test with ``request.param`` as the current device."""
    with ad.device(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session", autouse=True)
def cupy_argument_packing():
    """Every launch on the emulated device is also checked against CuPy's own
    argument packing (CuPy 13.6's rules and 14's, tests/devices/cupy_packing.py):
    an argument CuPy would hand the driver as other bytes than the kernel's
    parameter expects fails the test with an AssertionError. Active where CuPy
    imports (no GPU needed); GPUAD_TEST_CUPY_PACKING=0 turns it off."""
    if os.environ.get("GPUAD_TEST_CUPY_PACKING", "1") == "0":
        yield None
        return
    from .devices import cupy_packing
    installed = cupy_packing.install()
    yield cupy_packing if installed else None
    cupy_packing.uninstall()


@pytest.fixture(autouse=True)
def shape_rules_match_kernels():
    """Every op in every test runs under tests/ops/infer_check.py's interpreter,
    which checks the primitive's shape/dtype rule against the kernel's result."""
    from gpuad.ops.core import interpreting
    from .ops.infer_check import CheckInfer
    with interpreting(CheckInfer()) as checker:
        yield checker


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the primitives ``bind`` handed to the eager interpreter
    (``ops.core.eager``), in order: none for an op refused by its rule."""
    from gpuad.ops import core
    calls = []
    real = core.eager

    def counting(prim, inputs, attrs):
        calls.append(prim.name)
        return real(prim, inputs, attrs)
    monkeypatch.setattr(core, "eager", counting)
    return calls
