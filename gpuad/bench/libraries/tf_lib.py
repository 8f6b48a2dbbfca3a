"""TensorFlow 2: ``tf.GradientTape``, ``tf.Variable`` parameters and Keras 3's
optimizers (``tf.keras.optimizers.SGD`` / ``Adam``), on one device.

Two columns of the tables: ``tensorflow`` runs eagerly, op by op;
``tf-function`` traces each differentiated function, and each whole training
or optimizer step (forward, backward and ``apply_gradients``), once into a
``tf.function`` graph (TensorFlow's graph runtime, no XLA) and calls that
graph for every later step and after ``reset()``, which only assigns the
initial values back into the same variables.
"""
from __future__ import annotations

import os
import types

import numpy as np

from ...devices.telemetry import cpu_info
from .base import Library, Trainer, Unavailable, Updater


def _optimizer(tf, variables, opt):
    """A Keras optimizer built for ``variables``: its slots exist before any
    ``tf.function`` traces a step (variables may not be created in a retrace)."""
    if opt.kind == "sgd":
        o = tf.keras.optimizers.SGD(learning_rate=opt.lr)
    else:
        o = tf.keras.optimizers.Adam(learning_rate=opt.lr, beta_1=opt.beta_1,
                                     beta_2=opt.beta_2, epsilon=opt.epsilon)
    o.build(variables)
    return o


def _variables(lib, params):
    with lib.tf.device(lib.dev):
        return [lib.tf.Variable(np.asarray(p, np.float32), name=f"p{i}")
                for i, p in enumerate(params)]


class _Trainer(Trainer):
    def __init__(self, lib, loss_fn, params, opt):
        tf = lib.tf
        self._initial = [np.array(p, dtype=np.float32) for p in params]
        self._vars = _variables(lib, self._initial)
        self._opt = _optimizer(tf, self._vars, opt)
        # Its step count, learning rate and zero slots, to put back on reset.
        self._opt_initial = [v.numpy() for v in self._opt.variables]

        def value_and_grad(*batch):
            with tf.device(lib.dev):  # the backward pass too
                with tf.GradientTape() as tape:
                    loss = loss_fn(lib.F, self._vars, *batch)
                return loss, tape.gradient(loss, self._vars)

        def train_step(*batch):
            loss, grads = value_and_grad(*batch)
            with tf.device(lib.dev):
                self._opt.apply_gradients(zip(grads, self._vars))
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
        # Assign into the same variables (the traced graphs hold them), so a
        # tf.function step is not traced again.
        for v, a in zip(self._vars + self._opt.variables, self._initial + self._opt_initial):
            v.assign(a)


class _Updater(Updater):
    def __init__(self, lib, params, opt):
        self._vars = _variables(lib, params)
        self._opt = _optimizer(lib.tf, self._vars, opt)

        def update(grads):
            with lib.tf.device(lib.dev):
                self._opt.apply_gradients(zip(grads, self._vars))
        self._update = lib.compile(update)

    def step(self, grads):
        self._update(grads)

    def params(self):
        return [v.numpy() for v in self._vars]


class TensorFlow(Library):
    name = family = "tensorflow"
    mode = "eager"

    def __init__(self, device):
        super().__init__(device)
        if device == "emulated":
            raise Unavailable("the emulated device is gpuad's own; TensorFlow runs on cpu or cuda")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        # Its retracing warning counts traces per Python function, so one trace
        # per trainer (each workload builds one) looks like excessive retracing.
        tf.get_logger().setLevel("ERROR")
        self.tf = tf
        self.version = tf.__version__
        if device == "cuda":
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise Unavailable("TensorFlow sees no GPU (a CPU-only build such as "
                                  "tensorflow-cpu, or its CUDA libraries are missing)")
            # The libraries share the GPU in one process: by default TensorFlow
            # would take all of its memory at first use.
            try:
                tf.config.experimental.set_memory_growth(gpus[0], True)
            except RuntimeError:  # already initialised (by the other TF adapter)
                pass
            self.dev = "/GPU:0"
            # float32 matmuls and convolutions would otherwise round inputs to TF32.
            tf.config.experimental.enable_tensor_float_32_execution(False)
            where = "GPU:0, TF32 off, memory allocated on demand"
        else:
            self.dev = "/CPU:0"
            # 0 is TensorFlow's default: one intra-op thread per usable CPU.
            threads = (tf.config.threading.get_intra_op_parallelism_threads()
                       or cpu_info()["usable_threads"])
            where = f"CPU, {threads} intra-op threads"
        self.note = f"{self.mode}, {where}"
        nn = tf.nn
        self.F = types.SimpleNamespace(
            sin=tf.sin, cos=tf.cos, exp=tf.exp, tanh=tf.tanh, log=tf.math.log, sqrt=tf.sqrt,
            square=tf.square, relu=nn.relu,
            sum=lambda x, axis=None: tf.reduce_sum(x, axis=axis),
            mean=lambda x, axis=None: tf.reduce_mean(x, axis=axis),
            reshape=tf.reshape, transpose=lambda x, perm: tf.transpose(x, perm),
            take=lambda table, ids: tf.gather(table, ids),
            softmax=lambda x, axis=-1: nn.softmax(x, axis=axis),
            log_softmax=lambda x, axis=-1: nn.log_softmax(x, axis=axis),
            layer_norm=self._layer_norm,
            gelu=lambda x: nn.gelu(x, approximate=False))

    def _layer_norm(self, x, gamma, beta):
        tf = self.tf
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-5) * gamma + beta

    def compile(self, fn):
        """``fn`` as this variant runs it: eagerly here, a ``tf.function`` in
        :class:`TFFunction`."""
        return fn

    def const(self, a):
        with self.tf.device(self.dev):
            return self.tf.constant(np.asarray(a))

    def to_numpy(self, x):
        # convert_to_tensor also densifies the IndexedSlices gradient of tf.gather.
        return np.asarray(self.tf.convert_to_tensor(x))

    def sync(self, out=None):
        # On the CPU an eager op or a tf.function call returns once it has
        # computed its outputs; on a GPU, once its kernels are queued.
        if self.device == "cuda":
            self.tf.test.experimental.sync_devices()

    def grad_of_sum(self, fn):
        tf, F, dev = self.tf, self.F, self.dev

        def grad(x):
            with tf.device(dev):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = fn(F, x)
                return tape.gradient(y, x)  # a non-scalar target is summed
        return self.compile(grad)

    def second_grad_of_sum(self, fn):
        tf, F, dev = self.tf, self.F, self.dev

        def grad2(x):
            with tf.device(dev):
                with tf.GradientTape() as outer:
                    outer.watch(x)
                    with tf.GradientTape() as inner:
                        inner.watch(x)
                        y = fn(F, x)
                    g = inner.gradient(y, x)
                return outer.gradient(g, x)
        return self.compile(grad2)

    def trainer(self, loss_fn, params, opt):
        return _Trainer(self, loss_fn, params, opt)

    def optimizer(self, params, opt):
        return _Updater(self, params, opt)


class TFFunction(TensorFlow):
    name = "tf-function"
    mode = "tf.function (graph, no XLA)"

    def compile(self, fn):
        return self.tf.function(fn)
