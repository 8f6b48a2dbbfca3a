"""What every benchmarked library provides: the contract between the workloads
(written once, in :mod:`gpuad.bench.workloads`) and one library's way of
computing and differentiating them.

A workload never imports a library. It gets an adapter, a :class:`Library`,
and builds its computation from the adapter's pieces:

* ``lib.F``: a namespace of the few array functions the models use (``F.exp``,
  ``F.sum``, ``F.layer_norm``, ...), each the library's own; arithmetic and
  ``@`` are the arrays' operators. The same model code therefore runs, op for
  op, on every library, and on NumPy in float64 for the reference
  (:data:`NUMPY_F`).
* ``lib.const(a)`` puts a NumPy array on the benchmark's device, ``lib.to_numpy``
  brings one back (only ever outside the timed region), ``lib.sync()`` waits
  for queued device work.
* three ways to differentiate: :meth:`Library.grad_of_sum`,
  :meth:`Library.second_grad_of_sum` and :meth:`Library.trainer` (forward,
  backward and an optimizer update, with fresh gradient state every step),
  plus :meth:`Library.optimizer` (an optimizer applied to given gradients).

Variants of one library (JAX with and without ``jax.jit``, TensorFlow eager and
in ``tf.function``) are separate adapters with separate names, so the tables
show them side by side.
"""
from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np


class Unavailable(Exception):
    """The library cannot run here (not installed, or no such device); the
    message says why and ends up in the report instead of a figure."""


@dataclass(frozen=True)
class OptSpec:
    """An optimizer, as every library must build it.

    ``kind`` is ``"sgd"`` (``p -= lr * g``) or ``"adam"`` with Keras 3's rule:
    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``,
    ``p -= lr * sqrt(1-b2**t) / (1-b1**t) * m / (sqrt(v) + epsilon)``.
    Libraries whose Adam puts ``epsilon`` after the bias correction
    (``m_hat / (sqrt(v_hat) + eps)``, PyTorch's) use their own rule: the two
    differ only where a gradient is within a few ``epsilon / sqrt(1-beta_2**t)``
    of zero, which the adam100 workload's gradients never are.
    """
    kind: str
    lr: float
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7


class Trainer:
    """One model's training loop on one library: built by :meth:`Library.trainer`.

    ``step(*batch)`` runs one training step (forward, backward, update) and
    returns the loss as the library's scalar (not converted: no host sync).
    ``value_and_grad(*batch)`` returns ``(loss, [gradients])`` at the current
    parameters, computed the same way as inside ``step`` (compiled the same
    way in the compiled variants), without updating.
    ``params()`` returns the current parameters as NumPy arrays.
    ``reset()`` puts back the initial parameters and a fresh optimizer state.
    """

    def step(self, *batch):
        raise NotImplementedError

    def value_and_grad(self, *batch):
        raise NotImplementedError

    def params(self) -> list:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class Updater:
    """An optimizer over fixed parameters, fed gradients from outside:
    ``step(grads)`` applies one update (``grads``: library arrays from
    ``lib.const``, one per parameter) and may return anything (the new
    parameters, None) -- it is passed to ``sync``; ``params()`` as NumPy arrays."""

    def step(self, grads):
        raise NotImplementedError

    def params(self) -> list:
        raise NotImplementedError


class Library:
    """An adapter. Subclasses set the class attributes and implement the methods.

    ``name``: the key in results and tables (``"jax-jit"``); ``family``: the
    package (``"jax"``), for the version; ``device``: ``"cpu"`` or ``"cuda"``,
    given to ``__init__``, which raises :class:`Unavailable` when the library
    is missing or cannot use that device. ``workloads``: the workload names the
    adapter takes part in (None: all).
    """
    name = "?"
    family = "?"
    workloads = None

    def __init__(self, device: str):
        self.device = device
        self.version = "?"
        self.note = ""           # how it runs: threads, compilation, device
        self.F = None

    # -- arrays --------------------------------------------------------------
    def const(self, a: np.ndarray):
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def sync(self, out=None) -> None:
        """Wait until all work queued so far has finished. ``out`` is what the
        last timed call returned (a gradient, a loss, or None after an optimizer
        update): libraries with asynchronous dispatch (JAX, also on the CPU) must
        block on it *and* on any state the call updated (parameters, optimizer
        slots); GPU libraries synchronise the device. Called after every timed
        repeat, inside the timed region."""

    # -- differentiation -----------------------------------------------------
    def grad_of_sum(self, fn):
        """``g(x)``: the gradient of ``sum(fn(F, x))`` with respect to ``x``."""
        raise NotImplementedError

    def second_grad_of_sum(self, fn):
        """``h(x)``: the gradient of ``sum(d/dx sum(fn(F, x)))``, through
        nested differentiation (for an element-wise ``fn``: its second derivative)."""
        raise NotImplementedError

    def trainer(self, loss_fn, params: list, opt: OptSpec) -> Trainer:
        """A :class:`Trainer` for ``loss_fn(F, params, *batch) -> scalar``, starting
        from ``params`` (float32 NumPy arrays)."""
        raise NotImplementedError

    def optimizer(self, params: list, opt: OptSpec) -> Updater:
        """An :class:`Updater` over ``params`` (float32 NumPy arrays)."""
        raise NotImplementedError


# -- the float64 reference's namespace --------------------------------------------------

def _np_log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _np_layer_norm(x, gamma, beta, epsilon=1e-5):
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _np_gelu(x):
    from math import erf, sqrt
    return 0.5 * x * (1.0 + np.vectorize(erf, otypes=[np.float64])(x / sqrt(2.0)))


NUMPY_F = types.SimpleNamespace(
    sin=np.sin, cos=np.cos, exp=np.exp, tanh=np.tanh, log=np.log, sqrt=np.sqrt,
    square=np.square, relu=lambda x: np.maximum(x, 0.0),
    sum=lambda x, axis=None: np.sum(x, axis=axis),
    mean=lambda x, axis=None: np.mean(x, axis=axis),
    reshape=np.reshape, transpose=np.transpose, take=lambda table, ids: table[ids],
    softmax=lambda x, axis=-1: np.exp(_np_log_softmax(x, axis)),
    log_softmax=_np_log_softmax, layer_norm=_np_layer_norm, gelu=_np_gelu,
)
"""The model functions' namespace in NumPy float64: what the references run."""

F_FUNCTIONS = tuple(sorted(vars(NUMPY_F)))
"""The names every adapter's ``F`` must provide (checked by the tests)."""
