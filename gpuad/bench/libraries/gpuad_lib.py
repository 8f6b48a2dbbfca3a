"""gpuad itself: ``GradientTape`` and gpuad's optimizers (one fused update per
step on ``cuda``), on the device the benchmark asks for.

Two columns of the tables: ``gpuad`` runs eagerly, op by op; ``gpuad-function``
wraps each differentiated function, and each whole training or optimizer step
(forward, backward and ``optimizer.apply``), once in ``gpuad.function`` and
calls that for every later step and after ``reset()``, which only assigns the
initial values back into the same parameter and optimizer variables (as the
``tf-function`` adapter does). The compiled functions take tensors only, so a
tracer traces each once.
"""
from __future__ import annotations

import types

import numpy as np

from .base import Library, Trainer, Unavailable, Updater

_DEVICES = {"cpu": "cpu", "cuda": "cuda:0", "emulated": "emulated"}


def _optimizer(ad, variables, opt):
    """A gpuad optimizer built for ``variables``: its slots exist before any
    ``gpuad.function`` traces a step that applies it."""
    if opt.kind == "sgd":
        o = ad.optimizers.SGD(opt.lr)
    else:
        o = ad.optimizers.Adam(opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
    o.build(variables)
    return o


def _variables(lib, params):
    return [lib.ad.Variable(lib.const(np.asarray(p, np.float32)), name=f"p{i}")
            for i, p in enumerate(params)]


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        ad = lib.ad
        self._initial = [np.array(p, dtype=np.float32) for p in params]
        self._vars = _variables(lib, self._initial)
        self._opt = _optimizer(ad, self._vars, opt)
        # Its step count, learning rate and zero slots, to put back on reset.
        self._opt_initial = [v.numpy() for v in self._opt.variables]

        def value_and_grad(*batch):
            with ad.GradientTape() as tape:
                loss = loss_fn(lib.F, self._vars, *batch)
            return loss, tape.gradient(loss, self._vars)

        def train_step(*batch):
            loss, grads = value_and_grad(*batch)
            self._opt.apply(grads, self._vars)
            return loss

        self._value_and_grad = lib.compile(value_and_grad)
        self._step = lib.compile(train_step)

    def value_and_grad(self, *batch):
        return self._value_and_grad(*batch)

    def step(self, *batch):
        return self._step(*batch)

    def params(self):
        return [v.numpy() for v in self._vars]

    def reset(self):
        # Assign into the same variables (a compiled step holds them and the
        # optimizer), so the step is not compiled again.
        for v, a in zip(self._vars + self._opt.variables, self._initial + self._opt_initial):
            v.assign(a)


class _Updater(Updater):
    def __init__(self, lib, params, opt, fused):
        self._vars = _variables(lib, params)
        # fused: one optimizer for all (one launch per step on cuda/emulated);
        # unfused: one optimizer per parameter, so one launch per parameter.
        opts = ([_optimizer(lib.ad, self._vars, opt)] if fused
                else [_optimizer(lib.ad, [v], opt) for v in self._vars])

        def update(grads):
            if len(opts) == 1:
                opts[0].apply(grads, self._vars)
            else:
                for o, g, v in zip(opts, grads, self._vars):
                    o.apply([g], [v])
        self._update = lib.compile(update)

    def step(self, grads):
        self._update(grads)

    def params(self):
        return [v.numpy() for v in self._vars]


class Gpuad(Library):
    name = family = "gpuad"
    mode = "eager"
    fused = True

    def __init__(self, device):
        super().__init__(device)
        import gpuad as ad
        self.ad = ad
        self.version = ad.__version__
        dev = _DEVICES.get(device)
        if dev is None or dev not in ad.devices.available():
            raise Unavailable(f"gpuad has no usable {device} device here "
                              f"(usable: {', '.join(ad.devices.available())})")
        self.dev = ad.devices.get(dev)
        self.note = f"{self.mode}, device {self.dev.name}"
        nn = ad.nn
        self.F = types.SimpleNamespace(
            sin=ad.sin, cos=ad.cos, exp=ad.exp, tanh=ad.tanh, log=ad.log, sqrt=ad.sqrt,
            square=ad.square, relu=nn.relu,
            sum=lambda x, axis=None: ad.reduce_sum(x, axis=axis),
            mean=lambda x, axis=None: ad.reduce_mean(x, axis=axis),
            reshape=ad.reshape, transpose=ad.transpose, take=ad.gather,
            softmax=nn.softmax, log_softmax=nn.log_softmax,
            layer_norm=lambda x, gamma, beta: nn.layer_norm(x, gamma, beta, epsilon=1e-5),
            gelu=nn.gelu)

    def compile(self, fn):
        """``fn`` as this variant runs it: eagerly here, in ``gpuad.function`` in
        :class:`GpuadFunction`."""
        return fn

    def const(self, a):
        with self.ad.device(self.dev):
            return self.ad.constant(np.asarray(a))

    def to_numpy(self, x):
        return np.asarray(x.numpy())

    def sync(self, out=None):
        synchronize = getattr(getattr(self.dev, "launcher", None), "synchronize", None)
        if synchronize is not None:
            synchronize()

    def transfers(self):
        """Host <-> device copies so far (cuda and emulated; None on the cpu):
        the runner records how many the timed steps made (DESIGN rule 3: none)."""
        return getattr(self.dev, "transfers", None)

    def grad_of_sum(self, fn):
        ad, F = self.ad, self.F

        def grad(x):
            with ad.GradientTape() as tape:
                tape.watch(x)
                y = fn(F, x)
            return tape.gradient(y, x)  # a non-scalar target is summed, as in TF
        return self.compile(grad)

    def second_grad_of_sum(self, fn):
        ad, F = self.ad, self.F

        def grad2(x):
            with ad.GradientTape() as outer:
                outer.watch(x)
                with ad.GradientTape() as inner:
                    inner.watch(x)
                    y = fn(F, x)
                g = inner.gradient(y, x)
            return outer.gradient(g, x)
        return self.compile(grad2)

    def trainer(self, loss_fn, params, opt):
        return _Trainer(self, loss_fn, params, opt)

    def optimizer(self, params, opt):
        return _Updater(self, params, opt, self.fused)


class GpuadUnfused(Gpuad):
    """gpuad with one optimizer per parameter: one update launch per parameter
    tensor on ``cuda``, the baseline the fused optimizer kernel is measured against."""
    name = "gpuad-unfused"
    fused = False
    workloads = ("adam100",)


class GpuadFunction(Gpuad):
    """gpuad with every differentiated function and every whole training or
    optimizer step in ``gpuad.function``: the counterpart of ``jax-jit`` and
    ``tf-function``."""
    name = "gpuad-function"
    mode = "gpuad.function"

    def compile(self, fn):
        return self.ad.function(fn)
