"""gpuad itself: eager ops, ``GradientTape`` and gpuad's optimizers (one fused
update per step on ``cuda``), on the device the benchmark asks for."""
from __future__ import annotations

import types

import numpy as np

from .base import Library, Trainer, Unavailable, Updater

_DEVICES = {"cpu": "cpu", "cuda": "cuda:0", "emulated": "emulated"}


def _optimizer(ad, opt):
    if opt.kind == "sgd":
        return ad.optimizers.SGD(opt.lr)
    return ad.optimizers.Adam(opt.lr, beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        self._lib, self._loss_fn, self._spec = lib, loss_fn, opt
        self._initial = [np.array(p, dtype=np.float32) for p in params]
        ad = lib.ad
        self._vars = [ad.Variable(lib.const(p), name=f"p{i}") for i, p in enumerate(self._initial)]
        self._opt = _optimizer(ad, opt)

    def value_and_grad(self, *batch):
        with self._lib.ad.GradientTape() as tape:
            loss = self._loss_fn(self._lib.F, self._vars, *batch)
        return loss, tape.gradient(loss, self._vars)

    def step(self, *batch):
        loss, grads = self.value_and_grad(*batch)
        self._opt.apply(grads, self._vars)
        return loss

    def params(self):
        return [v.numpy() for v in self._vars]

    def reset(self):
        for v, p in zip(self._vars, self._initial):
            v.assign(self._lib.const(p))
        self._opt = _optimizer(self._lib.ad, self._spec)


class _Updater(Updater):
    def __init__(self, lib, params, opt, fused):
        ad = lib.ad
        self._vars = [ad.Variable(lib.const(np.asarray(p, np.float32)), name=f"p{i}")
                      for i, p in enumerate(params)]
        # fused: one optimizer for all (one launch per step on cuda/emulated);
        # unfused: one optimizer per parameter, so one launch per parameter.
        self._opts = ([_optimizer(ad, opt)] if fused
                      else [_optimizer(ad, opt) for _ in self._vars])

    def step(self, grads):
        if len(self._opts) == 1:
            self._opts[0].apply(grads, self._vars)
        else:
            for o, g, v in zip(self._opts, grads, self._vars):
                o.apply([g], [v])

    def params(self):
        return [v.numpy() for v in self._vars]


class Gpuad(Library):
    name = family = "gpuad"
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
        self.note = f"eager, device {self.dev.name}"
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
        return grad

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
        return grad2

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
