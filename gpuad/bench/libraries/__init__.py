"""The libraries ``python -m gpuad bench`` compares: one adapter each (see
:mod:`.base` for the contract), imported only when asked for, so that a peer
that is not installed costs nothing and is reported as such."""
from __future__ import annotations

import importlib

from .base import Library, OptSpec, Trainer, Unavailable, Updater

#: name -> "module:class" (a module of this package, or a dotted absolute path);
#: the order of the tables' columns.
ADAPTERS = {
    "gpuad": "gpuad_lib:Gpuad",
    "gpuad-unfused": "gpuad_lib:GpuadUnfused",
    "gpuad-function": "gpuad_lib:GpuadFunction",
    "torch": "torch_lib:Torch",
    "jax": "jax_lib:Jax",
    "jax-jit": "jax_lib:JaxJit",
    "tensorflow": "tf_lib:TensorFlow",
    "tf-function": "tf_lib:TFFunction",
    "autograd": "autograd_lib:Autograd",
}


def load(name: str, device: str) -> Library:
    """The adapter ``name`` on ``device`` ("cpu", "cuda" or, for gpuad only,
    "emulated"); raises :class:`Unavailable` with the reason when it cannot run,
    ``"not installed (...)"`` when the peer's package cannot be imported."""
    module, cls = ADAPTERS[name].split(":")
    try:
        mod = importlib.import_module(module if "." in module else f"{__name__}.{module}")
        # The adapters import their peer in __init__ (so that importing an adapter
        # module costs nothing): a missing package surfaces here, not above.
        return getattr(mod, cls)(device)
    except ImportError as e:  # the peer's package, or one it needs, is missing
        raise Unavailable(f"not installed ({type(e).__name__}: {e})") from None


__all__ = ["ADAPTERS", "Library", "OptSpec", "Trainer", "Unavailable", "Updater", "load"]
