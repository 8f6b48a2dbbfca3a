"""HIPS autograd: NumPy code differentiated by tracing every call
(``autograd.grad``, ``autograd.value_and_grad``), on the CPU only; the
optimizers are written in NumPy (autograd has none to step one at a time)."""
from __future__ import annotations

import math
import types

import numpy as np

from .base import Library, Trainer, Unavailable, Updater


class _Optimizer:
    """``OptSpec``'s SGD or Adam (Keras's rule) on lists of float32 NumPy
    arrays. Updates are functional, ``step`` returns new arrays, as in
    autograd's own examples; Python-float factors keep float32 under NumPy 2."""

    def __init__(self, params, spec):
        self._spec, self._t = spec, 0
        if spec.kind == "adam":
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        s = self._spec
        if s.kind == "sgd":
            return [p - s.lr * g for p, g in zip(params, grads)]
        self._t += 1
        lr_t = np.float32(s.lr * math.sqrt(1.0 - s.beta_2 ** self._t) / (1.0 - s.beta_1 ** self._t))
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self._m[i] = s.beta_1 * self._m[i] + (1.0 - s.beta_1) * g
            self._v[i] = s.beta_2 * self._v[i] + (1.0 - s.beta_2) * np.square(g)
            out.append(p - lr_t * self._m[i] / (np.sqrt(self._v[i]) + s.epsilon))
        return out


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        self._spec = opt
        # Never updated in place (the optimizer returns new arrays), so reset()
        # can hand these same arrays out again.
        self._initial = [np.array(p, dtype=np.float32) for p in params]
        self._value_and_grad = lib.autograd.value_and_grad(
            lambda ps, *batch: loss_fn(lib.F, ps, *batch))
        self.reset()

    def value_and_grad(self, *batch):
        return self._value_and_grad(self._params, *batch)

    def step(self, *batch):
        loss, grads = self._value_and_grad(self._params, *batch)
        self._params = self._opt.step(self._params, grads)
        return loss

    def params(self):
        return [np.asarray(p) for p in self._params]

    def reset(self):
        self._params = list(self._initial)
        self._opt = _Optimizer(self._params, self._spec)


class _Updater(Updater):
    def __init__(self, params, opt):
        self._params = [np.array(p, dtype=np.float32) for p in params]
        self._opt = _Optimizer(self._params, opt)

    def step(self, grads):
        self._params = self._opt.step(self._params, grads)

    def params(self):
        return [np.asarray(p) for p in self._params]


class Autograd(Library):
    name = family = "autograd"

    def __init__(self, device):
        super().__init__(device)
        import autograd
        import autograd.numpy as anp
        from autograd.extend import notrace_primitive
        from autograd.scipy.special import erf
        from importlib.metadata import version
        self.autograd = autograd
        self.version = version("autograd")   # the package has no __version__
        if device != "cpu":
            raise Unavailable("autograd runs on NumPy, on the CPU only" if device == "cuda" else
                              f"the {device!r} device is gpuad's own; autograd runs on the CPU")
        self.note = ("eager (traces every call), NumPy on the CPU: element-wise ops on one "
                     "thread, matmuls on NumPy's BLAS with its default thread count")

        # The max that keeps exp() from overflowing, outside the trace: the shift
        # cancels in (log_)softmax, and anp.max's own vjp divides a bool mask,
        # which under NumPy 2 turns the whole backward pass into float64.
        row_max = notrace_primitive(lambda x, axis: np.max(x, axis=axis, keepdims=True))

        def log_softmax(x, axis=-1):
            s = x - row_max(x, axis)
            return s - anp.log(anp.sum(anp.exp(s), axis=axis, keepdims=True))

        def softmax(x, axis=-1):
            e = anp.exp(x - row_max(x, axis))
            return e / anp.sum(e, axis=axis, keepdims=True)

        def layer_norm(x, gamma, beta):
            mean = anp.mean(x, axis=-1, keepdims=True)
            var = anp.mean(anp.square(x - mean), axis=-1, keepdims=True)
            return (x - mean) / anp.sqrt(var + 1e-5) * gamma + beta

        self.F = types.SimpleNamespace(
            sin=anp.sin, cos=anp.cos, exp=anp.exp, tanh=anp.tanh, log=anp.log, sqrt=anp.sqrt,
            square=anp.square,
            # not anp.maximum(x, 0.0): its vjp is float64 under NumPy 2, as anp.max's
            relu=lambda x: x * (x > 0),
            sum=lambda x, axis=None: anp.sum(x, axis=axis),
            mean=lambda x, axis=None: anp.mean(x, axis=axis),
            reshape=anp.reshape, transpose=anp.transpose, take=lambda table, ids: table[ids],
            softmax=softmax, log_softmax=log_softmax, layer_norm=layer_norm,
            gelu=lambda x: 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0)))))

    def const(self, a):
        return np.array(a)

    def to_numpy(self, x):
        return np.asarray(x)

    def sync(self, out=None):
        pass  # NumPy computes synchronously

    def grad_of_sum(self, fn):
        anp, F = self.autograd.numpy, self.F
        return self.autograd.grad(lambda x: anp.sum(fn(F, x)))

    def second_grad_of_sum(self, fn):
        anp, F = self.autograd.numpy, self.F
        grad = self.autograd.grad(lambda x: anp.sum(fn(F, x)))
        return self.autograd.grad(lambda x: anp.sum(grad(x)))

    def trainer(self, loss_fn, params, opt):
        return _Trainer(self, loss_fn, params, opt)

    def optimizer(self, params, opt):
        return _Updater(params, opt)
