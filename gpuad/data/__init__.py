"""Small data sets shipped inside the package (no downloads at run time).

>>> from gpuad.data import load_digits
>>> images, labels = load_digits()
>>> images.shape, images.dtype, labels.shape, labels.dtype
((1797, 8, 8), dtype('float32'), (1797,), dtype('int32'))
>>> float(images.min()), float(images.max()), sorted(set(labels.tolist())) == list(range(10))
(0.0, 1.0, True)
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["load_digits"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_digits():
    """The 8x8 UCI handwritten digits (see ``gpuad/data/README.md``):
    ``(images, labels)``, images float32 ``(1797, 8, 8)`` scaled from 0..16 to
    [0, 1], labels int32 ``(1797,)`` in 0..9."""
    with np.load(os.path.join(_HERE, "digits.npz")) as f:
        images = f["images"].astype(np.float32) / np.float32(16.0)
        labels = f["labels"].astype(np.int32)
    return images, labels
