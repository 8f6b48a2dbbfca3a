"""PyTorch, as its users write it: eager ops, ``torch.autograd`` for gradients
and ``torch.optim`` for the updates, on the CPU or ``cuda:0`` (TF32 off, so
float32 matmuls are float32, as everyone else's)."""
from __future__ import annotations

import types

import numpy as np

from .base import Library, Trainer, Unavailable, Updater


def _optimizer(torch, params, spec):
    """``torch.optim.SGD`` or ``torch.optim.Adam`` for ``spec``, with torch.optim's
    default implementation (the multi-tensor ``foreach`` kernels when the
    parameters are on cuda, a per-tensor loop on the CPU; ``fused=True`` is
    opt-in, not what a user gets). torch's Adam adds ``eps`` after the bias
    correction; the adam100 workload's gradients keep that from mattering."""
    if spec.kind == "sgd":
        return torch.optim.SGD(params, lr=spec.lr)
    return torch.optim.Adam(params, lr=spec.lr, betas=(spec.beta_1, spec.beta_2), eps=spec.epsilon)


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        self._lib, self._loss_fn, self._spec = lib, loss_fn, opt
        # The initial values stay on the device: reset() (timed, in the
        # quadratic fit) copies them back without a host transfer.
        self._initial = [lib.const(np.asarray(p, np.float32)) for p in params]
        self._params = [p.clone().requires_grad_() for p in self._initial]
        self._opt = _optimizer(lib.torch, self._params, opt)

    def value_and_grad(self, *batch):
        loss = self._loss_fn(self._lib.F, self._params, *batch)
        return loss, list(self._lib.torch.autograd.grad(loss, self._params))

    def step(self, *batch):
        self._opt.zero_grad(set_to_none=True)
        loss = self._loss_fn(self._lib.F, self._params, *batch)
        loss.backward()
        self._opt.step()
        return loss

    def params(self):
        return [self._lib.to_numpy(p) for p in self._params]

    def reset(self):
        with self._lib.torch.no_grad():
            for p, p0 in zip(self._params, self._initial):
                p.copy_(p0)
        self._opt = _optimizer(self._lib.torch, self._params, self._spec)


class _Updater(Updater):
    def __init__(self, lib, params, opt):
        self._lib = lib
        self._params = [lib.const(np.asarray(p, np.float32)).requires_grad_() for p in params]
        self._opt = _optimizer(lib.torch, self._params, opt)

    def step(self, grads):
        for p, g in zip(self._params, grads):
            p.grad = g
        self._opt.step()

    def params(self):
        return [self._lib.to_numpy(p) for p in self._params]


class Torch(Library):
    name = family = "torch"

    def __init__(self, device):
        super().__init__(device)
        import torch
        self.torch = torch
        self.version = str(torch.__version__)
        if device == "cpu":
            self.dev = torch.device("cpu")
            self.note = f"eager, CPU, {torch.get_num_threads()} intra-op threads"
        elif device == "cuda":
            if not torch.cuda.is_available():
                raise Unavailable(
                    f"torch {self.version} has no CUDA support (a CPU-only build)"
                    if torch.version.cuda is None else
                    f"torch {self.version} (CUDA {torch.version.cuda}) finds no usable GPU")
            self.dev = torch.device("cuda:0")
            # TF32 would round matmul inputs to 10 mantissa bits: off, so that
            # float32 means float32 here as in every other library.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            self.note = f"eager, cuda:0 ({torch.cuda.get_device_name(0)}), TF32 off"
        else:
            raise Unavailable(f"the {device!r} device is gpuad's own; torch runs on cpu or cuda")
        nnf = torch.nn.functional
        self.F = types.SimpleNamespace(
            sin=torch.sin, cos=torch.cos, exp=torch.exp, tanh=torch.tanh, log=torch.log,
            sqrt=torch.sqrt, square=torch.square, relu=torch.relu,
            sum=lambda x, axis=None: torch.sum(x) if axis is None else torch.sum(x, dim=axis),
            mean=lambda x, axis=None: torch.mean(x) if axis is None else torch.mean(x, dim=axis),
            reshape=torch.reshape, transpose=lambda x, perm: x.permute(*perm),
            take=lambda table, ids: table[ids],   # int32 indices are accepted as they are
            softmax=lambda x, axis=-1: torch.softmax(x, dim=axis),
            log_softmax=lambda x, axis=-1: torch.log_softmax(x, dim=axis),
            layer_norm=lambda x, gamma, beta: nnf.layer_norm(x, x.shape[-1:], gamma, beta, 1e-5),
            gelu=nnf.gelu)   # exact (erf) by default

    def const(self, a):
        return self.torch.tensor(np.asarray(a), device=self.dev)

    def to_numpy(self, x):
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def sync(self, out=None):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def grad_of_sum(self, fn):
        torch, F = self.torch, self.F

        def grad(x):
            x = x.detach().requires_grad_()   # a fresh leaf per call
            return torch.autograd.grad(fn(F, x).sum(), x)[0]
        return grad

    def second_grad_of_sum(self, fn):
        torch, F = self.torch, self.F

        def grad2(x):
            x = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(fn(F, x).sum(), x, create_graph=True)
            return torch.autograd.grad(g.sum(), x)[0]
        return grad2

    def trainer(self, loss_fn, params, opt):
        return _Trainer(self, loss_fn, params, opt)

    def optimizer(self, params, opt):
        return _Updater(self, params, opt)
