"""JAX, functionally: ``jax.grad`` / ``jax.value_and_grad`` of the workload's
function, parameters and optimizer state as values passed in and returned.

Two columns of the tables: ``jax`` runs it op by op (every primitive
dispatched on its own, no ``jax.jit``), ``jax-jit`` compiles each
differentiated function, and each whole training or optimizer step (forward,
backward and update), once with ``jax.jit`` (XLA then fuses the element-wise
chains), reusing the compiled code for every later call and after ``reset()``.
optax is not used: SGD and Keras 3's Adam are written out below.
"""
from __future__ import annotations

import os
import types

import numpy as np

from .base import Library, Trainer, Unavailable, Updater


def _rule(lib, opt):
    """The optimizer as two pure functions over lists of arrays:
    ``init(params) -> state`` and ``update(params, state, grads) -> (params, state)``."""
    jnp = lib.jnp
    if opt.kind == "sgd":
        return (lambda params: (),
                lambda params, state, grads: ([p - opt.lr * g for p, g in zip(params, grads)], ()))

    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon

    def init(params):
        # The step count is a float32 array in the state, not a Python int, so
        # that jit compiles the update once rather than once per value of t.
        def zeros():  # separate buffers for m and v: the compiled step donates both
            return [lib.const(np.zeros(p.shape, np.float32)) for p in params]
        return lib.const(np.zeros((), np.float32)), zeros(), zeros()

    def update(params, state, grads):
        t, ms, vs = state
        t = t + 1
        alpha = opt.lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        # Keras 3's Adam, written in its own order of operations.
        ms = [m + (g - m) * (1 - b1) for m, g in zip(ms, grads)]
        vs = [v + (jnp.square(g) - v) * (1 - b2) for v, g in zip(vs, grads)]
        params = [p - m * alpha / (jnp.sqrt(v) + eps) for p, m, v in zip(params, ms, vs)]
        return params, (t, ms, vs)
    return init, update


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        self._lib = lib
        self._initial = [np.array(p, dtype=np.float32) for p in params]
        self._init, update = _rule(lib, opt)
        value_and_grad = lib.jax.value_and_grad(
            lambda ps, *batch: loss_fn(lib.F, ps, *batch))

        def train_step(state, *batch):
            params, opt_state = state
            loss, grads = value_and_grad(params, *batch)
            return loss, update(params, opt_state, grads)

        self._value_and_grad = lib.compile(value_and_grad)
        # The old state is dead once the step returns: jit may reuse its buffers.
        self._step = lib.compile(train_step, donate_argnums=(0,))
        self.reset()

    def value_and_grad(self, *batch):
        return self._value_and_grad(self._state[0], *batch)

    def step(self, *batch):
        loss, self._state = self._step(self._state, *batch)
        self._lib._pending = self._state
        return loss

    def params(self):
        return [np.asarray(p) for p in self._state[0]]

    def reset(self):
        # Fresh arrays of the same shapes, dtypes and device: the compiled step
        # is reused as it is.
        params = [self._lib.const(p) for p in self._initial]
        self._state = (params, self._init(params))


class _Updater(Updater):
    def __init__(self, lib, params, opt):
        self._lib = lib
        init, update = _rule(lib, opt)
        self._params = [lib.const(np.asarray(p, np.float32)) for p in params]
        self._state = init(self._params)
        self._update = lib.compile(update, donate_argnums=(0, 1))

    def step(self, grads):
        self._params, self._state = self._update(self._params, self._state, grads)
        self._lib._pending = out = (self._params, self._state)
        return out

    def params(self):
        return [np.asarray(p) for p in self._params]


class Jax(Library):
    name = family = "jax"
    mode = "op by op (no jit)"

    def __init__(self, device):
        super().__init__(device)
        if device == "emulated":
            raise Unavailable("the emulated device is gpuad's own; JAX runs on cpu or cuda")
        if device == "cuda":
            # The libraries share the GPU in one process: by default JAX would
            # take 75% of its memory at first use.
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        self.version = jax.__version__
        if device == "cuda":
            try:
                gpus = jax.devices("gpu")
            except RuntimeError as e:  # no GPU backend: a CPU-only jaxlib, or no CUDA device
                raise Unavailable(f"JAX has no GPU backend here (needs jax[cuda13] or jax[cuda12] and a "
                                  f"CUDA device): {e}") from None
            self.dev = gpus[0]
            # float32 matmuls on the GPU would otherwise round inputs to TF32.
            jax.config.update("jax_default_matmul_precision", "highest")
            where = f"cuda:{self.dev.id}, TF32 off, memory allocated on demand"
        else:
            self.dev = jax.devices("cpu")[0]
            where = "CPU"
        self.note = f"{self.mode}, {where}"
        self._pending = None  # the state the last trainer/updater step produced
        nn = jax.nn
        self.F = types.SimpleNamespace(
            sin=jnp.sin, cos=jnp.cos, exp=jnp.exp, tanh=jnp.tanh, log=jnp.log, sqrt=jnp.sqrt,
            square=jnp.square, relu=nn.relu,
            sum=lambda x, axis=None: jnp.sum(x, axis=axis),
            mean=lambda x, axis=None: jnp.mean(x, axis=axis),
            reshape=jnp.reshape, transpose=jnp.transpose,
            take=lambda table, ids: jnp.take(table, ids, axis=0),
            softmax=lambda x, axis=-1: nn.softmax(x, axis=axis),
            log_softmax=lambda x, axis=-1: nn.log_softmax(x, axis=axis),
            layer_norm=self._layer_norm,
            gelu=lambda x: nn.gelu(x, approximate=False))

    def _layer_norm(self, x, gamma, beta):
        jnp = self.jnp
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * self.jax.lax.rsqrt(var + 1e-5) * gamma + beta

    def compile(self, fn, donate_argnums=()):
        """``fn`` as this variant runs it: as it is here, jitted in :class:`JaxJit`."""
        return fn

    def const(self, a):
        return self.jax.device_put(np.asarray(a), self.dev)

    def to_numpy(self, x):
        return np.asarray(x)

    def sync(self, out=None):
        # Dispatch is asynchronous (also on the CPU): wait for the result and
        # for the parameters and optimizer state the last step produced.
        self.jax.block_until_ready((out, self._pending))
        self._pending = None  # a later step may donate (delete) those buffers

    def grad_of_sum(self, fn):
        jax, jnp, F = self.jax, self.jnp, self.F
        return self.compile(jax.grad(lambda x: jnp.sum(fn(F, x))))

    def second_grad_of_sum(self, fn):
        jax, jnp, F = self.jax, self.jnp, self.F
        grad = jax.grad(lambda x: jnp.sum(fn(F, x)))
        return self.compile(jax.grad(lambda x: jnp.sum(grad(x))))

    def trainer(self, loss_fn, params, opt):
        return _Trainer(self, loss_fn, params, opt)

    def optimizer(self, params, opt):
        return _Updater(self, params, opt)


class JaxJit(Jax):
    name = "jax-jit"
    mode = "jax.jit"

    def compile(self, fn, donate_argnums=()):
        return self.jax.jit(fn, donate_argnums=donate_argnums)
