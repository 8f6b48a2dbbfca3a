"""The workloads of ``python -m gpuad bench``, written once for every library.

Each workload is a computation expressed through a library adapter's pieces
(:mod:`gpuad.bench.libraries.base`): its array functions ``F``, its constants and
its way of differentiating. The model code below is therefore the same, op for
op, in gpuad, PyTorch, JAX, TensorFlow and autograd, and runs once more on NumPy
in float64 (``NUMPY_F``) for the reference every library is checked against.

Every workload builds, for one library, a :class:`Program`:

* ``check()`` computes the value that is compared with the float64 reference
  (a gradient, fitted parameters, or a training loss and a directional
  derivative of it), through the same code path the timing runs;
* ``step()`` is one timed unit (one forward + backward, one training step,
  1000 steps of the quadratic fit, one optimizer update);
* ``figures(seconds)`` turns the median seconds per unit into the reported
  figures (the headline ``value`` in ``unit``, plus throughputs).

Training workloads are checked at their initial parameters: the loss, and the
gradient's inner product with a fixed random direction ``v`` against a central
difference of the float64 loss along ``v`` (``(L(p+hv) - L(p-hv)) / 2h``), which
needs no hand-written backward pass. The optimizer workload is checked after
three updates against Keras 3's Adam in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .libraries.base import NUMPY_F, OptSpec

SEED = 20261121


@dataclass
class Program:
    check: Callable[[], np.ndarray]
    step: Callable[[], object]


class Workload:
    """Base class: ``name`` (the key), ``title`` (a table row), ``unit`` of the
    headline figure, ``scale`` (seconds per unit -> that figure), tolerances of
    the check (``|got - want| <= atol + rtol * |want|`` element-wise)."""
    name = "?"
    title = "?"
    unit = "ms/step"
    scale = 1e3
    rtol, atol = 1e-4, 1e-6

    def __init__(self, quick: bool = False):
        self.quick = quick
        self._reference = None

    def reference(self) -> np.ndarray:
        if self._reference is None:
            self._reference = np.asarray(self._compute_reference(), dtype=np.float64)
        return self._reference

    def _compute_reference(self) -> np.ndarray:
        raise NotImplementedError

    def program(self, lib) -> Program:
        raise NotImplementedError

    def figures(self, seconds: float) -> dict:
        return {"value": seconds * self.scale, "unit": self.unit}


# -- element-wise chains -------------------------------------------------------------

def chain10(F, x):
    """Ten element-wise ops: the per-op overhead workload, and (twice) the long chain."""
    y = x * 1.5
    y = y + 0.25
    y = F.sin(y)
    y = y * x
    y = F.exp(y)
    y = F.tanh(y)
    y = y - x
    y = F.square(y)
    y = y * 0.5
    return F.cos(y)


def chain20(F, x):
    return chain10(F, chain10(F, x))


def _complex_step_grad(fn, x: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """d sum(fn(x)) / dx for an element-wise ``fn``, exact to rounding: the
    imaginary part of ``fn(x + ih) / h`` with ``h = 1e-30``, in chunks to bound memory."""
    h = 1e-30
    out = np.empty(x.shape, np.float64)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(0, flat_x.size, chunk):
        z = flat_x[i:i + chunk].astype(np.complex128) + 1j * h
        flat_out[i:i + chunk] = fn(NUMPY_F, z).imag / h
    return out


class Overhead(Workload):
    name = "overhead"
    title = "per-op overhead: 10 element-wise ops on 4 floats, fwd+bwd"
    unit = "us/op"
    scale = 1e6 / 10
    rtol, atol = 1e-4, 1e-5

    def __init__(self, quick=False):
        super().__init__(quick)
        self.x = np.array([-0.8, -0.1, 0.35, 0.9], np.float32)

    def _compute_reference(self):
        return _complex_step_grad(chain10, self.x.astype(np.float64))

    def program(self, lib):
        x, grad = lib.const(self.x), lib.grad_of_sum(chain10)
        return Program(check=lambda: lib.to_numpy(grad(x)), step=lambda: grad(x))


class LongChain(Workload):
    name = "chain16m"
    title = "20 element-wise ops on 16M float32, fwd+bwd"
    unit = "ms/step"
    rtol, atol = 1e-3, 1e-4
    ops = 20

    def __init__(self, quick=False):
        super().__init__(quick)
        self.n = (1 << 16) if quick else (1 << 24)
        if quick:
            self.title = self.title.replace("16M", "64K")
        self.x = np.random.default_rng(SEED).uniform(-1, 1, self.n).astype(np.float32)

    def _compute_reference(self):
        return _complex_step_grad(chain20, self.x.astype(np.float64))

    def program(self, lib):
        x, grad = lib.const(self.x), lib.grad_of_sum(chain20)
        return Program(check=lambda: lib.to_numpy(grad(x)), step=lambda: grad(x))

    def figures(self, seconds):
        # Bytes an eager, unfused evaluation must move at least: per op one read
        # and one write forward, two reads and one write backward (4 bytes each).
        moved = 4 * self.n * self.ops * (2 + 3)
        return {**super().figures(seconds), "GB/s": moved / seconds / 1e9}


def smooth(F, x):
    """The function whose second derivative the nested-tape workload takes."""
    return F.tanh(x) * F.sin(x)


class SecondDerivative(Workload):
    name = "hessian1m"
    title = "second derivative (nested tapes) of tanh(x)*sin(x) on 1M float32"
    unit = "ms/step"
    rtol, atol = 1e-3, 1e-4

    def __init__(self, quick=False):
        super().__init__(quick)
        n = 4096 if quick else (1 << 20)
        if quick:
            self.title = self.title.replace("1M", "4K")
        self.x = np.random.default_rng(SEED + 1).uniform(-2, 2, n).astype(np.float32)

    def _compute_reference(self):
        x = self.x.astype(np.float64)
        t, s, c = np.tanh(x), np.sin(x), np.cos(x)
        dt = 1 - t * t                      # tanh' ; tanh'' = -2 t (1 - t^2)
        return -2 * t * dt * s + 2 * dt * c - t * s

    def program(self, lib):
        x, grad2 = lib.const(self.x), lib.second_grad_of_sum(smooth)
        return Program(check=lambda: lib.to_numpy(grad2(x)), step=lambda: grad2(x))


# -- training workloads -----------------------------------------------------------------

def mlp_loss(F, params, x, onehot):
    """Dense layers with ReLU between them; mean softmax cross-entropy against
    one-hot labels."""
    h = x
    layers = len(params) // 2
    for i in range(layers):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < layers - 1:
            h = F.relu(h)
    return -F.mean(F.sum(onehot * F.log_softmax(h), axis=1))


def _dense_init(rng, fan_in, fan_out):
    w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)  # He normal
    return [w.astype(np.float32), np.zeros(fan_out, np.float32)]


class _Training(Workload):
    """A training step: ``loss_fn(F, params, *batch)`` with ``opt``; checked by
    the loss and a directional derivative at the initial parameters."""
    unit = "ms/step"
    rtol, atol = 2e-3, 1e-5
    loss_fn: Callable = None
    opt: OptSpec = None
    examples = 1       # examples per step, for examples/s
    fd_step = 1e-6     # h of the central difference (float64)

    def __init__(self, quick=False):
        super().__init__(quick)
        self.params: list = []
        self.batch: tuple = ()

    def _direction(self):
        rng = np.random.default_rng(SEED + 7)
        return [rng.standard_normal(p.shape) for p in self.params]

    def _loss64(self, params):
        batch = [b.astype(np.float64) if b.dtype.kind == "f" else b for b in self.batch]
        return float(type(self).loss_fn(NUMPY_F, params, *batch))

    def _compute_reference(self):
        p = [q.astype(np.float64) for q in self.params]
        v, h = self._direction(), self.fd_step
        plus = self._loss64([a + h * b for a, b in zip(p, v)])
        minus = self._loss64([a - h * b for a, b in zip(p, v)])
        return [self._loss64(p), (plus - minus) / (2 * h)]

    def program(self, lib):
        trainer = lib.trainer(type(self).loss_fn, self.params, self.opt)
        batch = [lib.const(b) for b in self.batch]
        v = self._direction()

        def check():
            loss, grads = trainer.value_and_grad(*batch)
            inner = sum(float(np.sum(lib.to_numpy(g).astype(np.float64) * d))
                        for g, d in zip(grads, v))
            return np.array([float(lib.to_numpy(loss)), inner])
        return Program(check=check, step=lambda: trainer.step(*batch))

    def figures(self, seconds):
        return {**super().figures(seconds), "examples/s": self.examples / seconds}


class MLP(_Training):
    sizes = (784, 512, 512, 10)
    loss_fn = staticmethod(mlp_loss)
    opt = OptSpec("sgd", 0.05)
    fd_step = 1e-9  # small enough that the difference seldom straddles a ReLU kink

    def __init__(self, full_batch, quick=False):
        super().__init__(quick)
        self.name = f"mlp{full_batch}"   # the name stays; --quick shrinks the batch 8- or 16-fold
        batch = (full_batch // 8 if full_batch <= 128 else full_batch // 16) if quick else full_batch
        self.examples = batch
        self.title = f"MLP 784-512-512-10 training step (SGD), batch {batch}"
        rng = np.random.default_rng(SEED + batch)
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.params += _dense_init(rng, fan_in, fan_out)
        x = rng.standard_normal((batch, self.sizes[0])).astype(np.float32)
        teacher = rng.standard_normal((self.sizes[0], self.sizes[-1]))
        labels = np.argmax(x @ teacher, axis=1)
        self.batch = (x, np.eye(self.sizes[-1], dtype=np.float32)[labels])


class Digits(_Training):
    name = "digits"
    loss_fn = staticmethod(mlp_loss)
    opt = OptSpec("adam", 3e-3)
    fd_step = 1e-9
    examples = 32

    def __init__(self, quick=False):
        super().__init__(quick)
        from ..apps.digits import digits_split
        self.title = ("digits task training step: MLP 64-128-64-10 (Adam), batch 32 "
                      "(python -m gpuad train)")
        x, y, _, _ = digits_split()
        rng = np.random.default_rng(SEED + 3)
        for fan_in, fan_out in ((64, 128), (128, 64), (64, 10)):
            self.params += _dense_init(rng, fan_in, fan_out)
        self.batch = (np.asarray(x[:32], np.float32), np.eye(10, dtype=np.float32)[np.asarray(y[:32])])


def transformer_loss(F, params, ids, pos, mask_bias, target_weights, *, heads=2):
    """The addition task's causal transformer (gpuad/apps/addition.py), as
    functions: token + position embeddings, pre-LN blocks of masked multi-head
    self-attention and a GELU MLP, a final LayerNorm, output tied to the token
    embedding. ``ids`` (B, T) int32; ``pos`` (T, D) is the position embedding's
    first T rows (a parameter); ``mask_bias`` (T, T) 0 or -1e9 above the diagonal;
    ``target_weights`` (B*T, V) one-hot targets times each position's loss weight."""
    tok, pos = params[0], params[1]
    b, t = ids.shape
    d = tok.shape[1]
    dh = d // heads
    h = F.reshape(F.take(tok, ids) + pos, (b * t, d))
    blocks = (len(params) - 4) // 16
    for i in range(blocks):
        (g1, b1, wq, bq, wk, bk, wv, bv, wo, bo,
         g2, b2, w1, c1, w2, c2) = params[2 + 16 * i: 18 + 16 * i]
        a = F.layer_norm(h, g1, b1)
        q, k, v = ((F.transpose(F.reshape(a @ w + c, (b, t, heads, dh)), (0, 2, 1, 3)))
                   for w, c in ((wq, bq), (wk, bk), (wv, bv)))
        scores = q @ F.transpose(k, (0, 1, 3, 2)) * (1.0 / math.sqrt(dh)) + mask_bias
        y = F.softmax(scores, axis=-1) @ v                                   # (B, H, T, Dh)
        y = F.reshape(F.transpose(y, (0, 2, 1, 3)), (b * t, d))
        h = h + (y @ wo + bo)
        m = F.layer_norm(h, g2, b2)
        h = h + (F.gelu(m @ w1 + c1) @ w2 + c2)
    h = F.layer_norm(h, params[-2], params[-1])
    logits = h @ F.transpose(tok, (1, 0))
    return -F.sum(target_weights * F.log_softmax(logits))


class Transformer(_Training):
    name = "transformer"
    opt = OptSpec("adam", 3e-3)

    def __init__(self, quick=False, batch=64, digits=2, d_model=32, layers=2):
        super().__init__(quick)
        from ..apps import addition as task
        batch = 8 if quick else batch
        self.examples = batch
        self.title = (f"addition transformer training step (Adam): {layers} blocks, d_model "
                      f"{d_model}, 2 heads, batch {batch} x {task.sequence_length(digits) - 1} tokens")
        rng = np.random.default_rng(SEED + 5)
        tokens, _ = task.make_batch(rng, batch, digits)
        ids, targets = tokens[:, :-1].astype(np.int32), tokens[:, 1:]
        t, v = ids.shape[1], len(task.VOCAB)
        weights = np.asarray(task.loss_mask(digits), np.float64)
        weights = weights / (weights.sum() * batch)
        onehot = np.eye(v)[targets] * weights[None, :, None]
        mask_bias = np.triu(np.full((t, t), -1e9), 1)
        self.batch = (ids, mask_bias.astype(np.float32),
                      onehot.reshape(batch * t, v).astype(np.float32))

        def normal(*shape, std=0.02):
            return (rng.standard_normal(shape) * std).astype(np.float32)

        def dense(i, o):
            w = rng.uniform(-1, 1, (i, o)) * math.sqrt(6.0 / (i + o))     # Glorot uniform
            return [w.astype(np.float32), np.zeros(o, np.float32)]
        ones, zeros = np.ones(d_model, np.float32), np.zeros(d_model, np.float32)
        self.params = [normal(v, d_model), normal(t, d_model)]
        for _ in range(layers):
            self.params += [ones, zeros]
            for _ in range(4):
                self.params += dense(d_model, d_model)
            self.params += [ones, zeros] + dense(d_model, 4 * d_model) + dense(4 * d_model, d_model)
        self.params += [ones, zeros]

    @staticmethod
    def loss_fn(F, params, ids, mask_bias, target_weights):
        return transformer_loss(F, params, ids, params[1], mask_bias, target_weights)

    def _loss64(self, params):
        ids, mask_bias, weights = self.batch
        return float(transformer_loss(NUMPY_F, params, ids, params[1],
                                      mask_bias.astype(np.float64), weights.astype(np.float64)))


class Quadratic(Workload):
    name = "quadratic"
    unit = "ms/1000 steps"
    rtol, atol = 1e-3, 1e-4
    lr = 0.1

    def __init__(self, quick=False):
        super().__init__(quick)
        self.steps = 50 if quick else 1000
        self.scale = 1e3 * 1000 / self.steps
        self.title = (f"quadratic fit: {self.steps} steps of gradient descent on "
                      f"a*x**2 + b*x + c, fresh tape per step")
        self.x = np.linspace(-1.0, 1.0, 16, dtype=np.float32)
        self.y = (1.5 * self.x.astype(np.float64) ** 2 - 0.7 * self.x + 0.3
                  + 0.05 * np.sin(7.0 * self.x)).astype(np.float32)

    @staticmethod
    def loss_fn(F, params, x, y):
        a, b, c = params
        return F.mean(F.square(a * F.square(x) + b * x + c - y))

    def _compute_reference(self):
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        a = b = c = 0.0
        for _ in range(self.steps):
            r = a * x ** 2 + b * x + c - y
            ga, gb, gc = np.mean(2 * r * x ** 2), np.mean(2 * r * x), np.mean(2 * r)
            a, b, c = a - self.lr * ga, b - self.lr * gb, c - self.lr * gc
        return [a, b, c]

    def program(self, lib):
        zero = np.zeros((), np.float32)
        trainer = lib.trainer(self.loss_fn, [zero, zero, zero], OptSpec("sgd", self.lr))
        x, y = lib.const(self.x), lib.const(self.y)
        steps = self.steps

        def fit():
            trainer.reset()
            loss = None
            for _ in range(steps):
                loss = trainer.step(x, y)
            return loss

        def check():
            fit()
            return np.array([float(p) for p in trainer.params()])
        return Program(check=check, step=fit)


# -- the optimizer ------------------------------------------------------------------

class AdamStep(Workload):
    name = "adam100"
    unit = "ms/step"
    rtol, atol = 1e-4, 1e-6
    updates_checked = 3

    def __init__(self, quick=False):
        super().__init__(quick)
        width = 32 if quick else 256
        self.title = (f"Adam step over 100 parameter tensors (50 of {width}x{width}, "
                      f"50 of {width})")
        rng = np.random.default_rng(SEED + 11)
        shapes = [(width, width) if i % 2 == 0 else (width,) for i in range(100)]
        self.params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        # Gradients at least 0.5 in size: libraries place Adam's epsilon either
        # before the bias correction (Keras) or after it (PyTorch), which changes
        # an update by up to epsilon/sqrt(1-beta_2**t)/|g|; away from zero that
        # is below 1e-5 of the update, far inside the check's tolerance.
        self.grads = []
        for s in shapes:
            n = rng.standard_normal(s)
            self.grads.append((np.sign(n) * (0.5 + np.abs(n))).astype(np.float32))
        self.opt = OptSpec("adam", 1e-3)

    def _compute_reference(self):
        o = self.opt
        out = []
        for p, g in zip(self.params, self.grads):
            p, g = p.astype(np.float64), g.astype(np.float64)
            m, v = np.zeros_like(p), np.zeros_like(p)
            for t in range(1, self.updates_checked + 1):
                m = o.beta_1 * m + (1 - o.beta_1) * g
                v = o.beta_2 * v + (1 - o.beta_2) * g * g
                lr_t = o.lr * math.sqrt(1 - o.beta_2 ** t) / (1 - o.beta_1 ** t)
                p = p - lr_t * m / (np.sqrt(v) + o.epsilon)
            out.append(p.reshape(-1))
        return np.concatenate(out)

    def program(self, lib):
        grads = [lib.const(g) for g in self.grads]
        checked = lib.optimizer(self.params, self.opt)

        def check():
            for _ in range(self.updates_checked):
                checked.step(grads)
            return np.concatenate([p.reshape(-1).astype(np.float64) for p in checked.params()])

        timed = []

        def step():
            if not timed:  # a fresh optimizer for timing, built on first use
                timed.append(lib.optimizer(self.params, self.opt))
            return timed[0].step(grads)
        return Program(check=check, step=step)


_FACTORIES = {
    "overhead": Overhead, "quadratic": Quadratic,
    "mlp128": lambda quick: MLP(128, quick), "mlp4096": lambda quick: MLP(4096, quick),
    "chain16m": LongChain, "hessian1m": SecondDerivative, "transformer": Transformer,
    "digits": Digits, "adam100": AdamStep,
}
NAMES = tuple(_FACTORIES)
"""The workloads' names, in the order of the tables (the same with ``--quick``)."""


def all_workloads(quick: bool = False, names=NAMES) -> list:
    """The workloads called ``names`` (default: all), in the order of the tables."""
    return [_FACTORIES[n](quick) for n in NAMES if n in names]
