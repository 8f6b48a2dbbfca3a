"""Shared fixtures: every test that computes takes ``device`` and so runs on
each device this machine can use (``cpu`` always; ``emulated`` and ``cuda``
where they exist)."""
import os

import numpy as np
import pytest

# Kernel devices fill every new buffer with NaN (or a sentinel) so that an
# element a kernel forgot to write fails the comparison with the cpu device.
os.environ.setdefault("GPUAD_POISON", "1")

import gpuad as ad  # noqa: E402

DEVICES = [d for d in ("cpu", "emulated", "cuda:0") if d in ad.devices.available()]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run the test with ``request.param`` as the current device."""
    with ad.device(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
