"""Shared fixtures: every test that computes takes ``device`` and so runs on
each device this machine can use (``cpu`` always; ``emulated`` and ``cuda``
where they exist)."""
import numpy as np
import pytest

import gpuad as ad

DEVICES = [d for d in ("cpu", "emulated", "cuda:0") if d in ad.devices.available()]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run the test with ``request.param`` as the current device."""
    with ad.device(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
