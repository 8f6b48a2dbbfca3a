"""What several applications share."""
from __future__ import annotations

import gpuad as ad


def pick_device(requested=None) -> str:
    """The name of the device to run on: ``requested`` if given (checked, and
    canonical, e.g. ``"cuda"`` -> ``"cuda:0"``), else gpuad's default: the first
    usable GPU (or ``GPUAD_DEVICE``), else the CPU."""
    if requested:
        return ad.devices.get(requested).name
    return ad.devices.available()[0]
