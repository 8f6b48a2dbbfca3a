"""Learning-rate schedules (``gpuad.optimizers.schedules``), as Keras 3's.

A schedule maps the optimizer's step count (its ``iterations`` before the
update) to a learning rate. The arithmetic is Keras 3's, in float32, and runs
on the host: an optimizer step never waits for the device to learn its
learning rate.

>>> import gpuad as ad
>>> lr = ad.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
>>> float(lr(10))
0.05000000074505806
>>> opt = ad.optimizers.SGD(learning_rate=lr)
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "serialize", "deserialize"]

_f32 = np.float32


def _libm_float(name):
    """The C library's float function ``name`` (``powf``, ``cosf``), or None."""
    try:
        import ctypes
        import ctypes.util
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6"), name)
    except (OSError, AttributeError, TypeError):
        return None
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float] * (2 if name == "powf" else 1)
    return fn


_powf, _cosf = _libm_float("powf"), _libm_float("cosf")


def pow32(x, y) -> np.float32:
    """``x ** y`` in float32 as TensorFlow computes a scalar ``tf.pow``: the C
    library's ``powf`` (NumPy's float32 power may use a SIMD routine that differs
    by an ulp), with subnormal results flushed to zero as TensorFlow's CPU
    kernels do. Without a C library at hand: the float64 power, rounded."""
    r = _f32(_powf(float(x), float(y))) if _powf is not None else _f32(float(_f32(x)) ** float(_f32(y)))
    return r if not (r != 0 and abs(r) < np.finfo(np.float32).tiny) else _f32(0.0) * r


def cos32(x) -> np.float32:
    """``cos(x)`` in float32 as a scalar ``tf.cos`` computes it (the C library's ``cosf``)."""
    return _f32(_cosf(float(x))) if _cosf is not None else _f32(np.cos(np.float64(_f32(x))))


def _step(step) -> int:
    """A step count from an int, a NumPy scalar, a Tensor or a Variable."""
    return int(np.asarray(step).item() if not hasattr(step, "numpy") else step.numpy().item())


class LearningRateSchedule:
    """Base class: subclasses implement :meth:`value` (the learning rate at a
    step, as a ``numpy.float32``) and :meth:`get_config`. Calling a schedule
    returns the rate as a float32 scalar Tensor on the cpu device."""

    def value(self, step: int) -> np.float32:
        raise NotImplementedError(f"{type(self).__name__} must implement value(step)")

    def __call__(self, step):
        from .tensor import constant
        return constant(self.value(_step(step)), device="cpu")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config()")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check(schedule: str, name: str, value, lo=0.0, hi=None, lo_open=False, optional=False,
           integer=False) -> None:
    """Refuse a schedule argument that is not a finite real number (an integer
    when ``integer``) >= ``lo`` (> with ``lo_open``) and <= ``hi`` (None when
    ``optional``), naming the schedule, the argument, the value and the range."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and (not integer or isinstance(value, (int, np.integer)))
    if ok:
        try:
            v = float(value)
        except OverflowError:
            v = math.inf
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    if not ok:
        kind = "an integer" if integer else "a finite float"
        valid = f"{kind} {'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise ValueError(f"{schedule}: argument `{name}` must be {valid}"
                         f"{' (or None)' if optional else ''}; received {name}={value!r}.")


def _check_steps(name, value, schedule="schedule"):
    _check(schedule, name, value, lo_open=True)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``, with an
    integer ``step // decay_steps`` when ``staircase`` (Keras 3, float32).

    >>> import gpuad as ad
    >>> s = ad.optimizers.schedules.ExponentialDecay(1.0, 2, 0.5, staircase=True)
    >>> [float(s(k)) for k in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        _check_steps("decay_steps", decay_steps, "ExponentialDecay")
        _check("ExponentialDecay", "initial_learning_rate", initial_learning_rate)
        _check("ExponentialDecay", "decay_rate", decay_rate)  # < 0 would give NaN rates
        if not isinstance(staircase, (bool, np.bool_)):
            raise ValueError(f"ExponentialDecay: argument `staircase` must be True or False; "
                             f"received staircase={staircase!r}.")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def value(self, step: int) -> np.float32:
        p = _f32(step) / _f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _f32(self.initial_learning_rate) * pow32(_f32(self.decay_rate), p)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to ``initial_learning_rate *
    alpha`` over ``decay_steps`` steps, constant after (Keras 3, float32); with
    ``warmup_target``, a linear warmup from ``initial_learning_rate`` to it over
    ``warmup_steps`` steps first, then the decay from ``warmup_target``.

    >>> import gpuad as ad
    >>> s = ad.optimizers.schedules.CosineDecay(1.0, decay_steps=4)
    >>> [round(float(s(k)), 6) for k in (0, 2, 4, 9)]
    [1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _check_steps("decay_steps", decay_steps, "CosineDecay")
        _check("CosineDecay", "initial_learning_rate", initial_learning_rate)
        _check("CosineDecay", "alpha", alpha, hi=1.0)  # the final rate's fraction of the first
        _check("CosineDecay", "warmup_target", warmup_target, optional=True)
        _check("CosineDecay", "warmup_steps", warmup_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def _decay(self, step, decay_steps, decay_from):
        fraction = step / decay_steps
        cosine = _f32(0.5) * (_f32(1.0) + cos32(_f32(math.pi) * fraction))
        decayed = _f32(1 - self.alpha) * cosine + _f32(self.alpha)
        return decay_from * decayed

    def value(self, step: int) -> np.float32:
        initial = _f32(self.initial_learning_rate)
        decay_steps = _f32(self.decay_steps)
        step = _f32(step)
        if self.warmup_target is None:
            return self._decay(np.minimum(step, decay_steps), decay_steps, initial)
        target = _f32(self.warmup_target)
        warmup_steps = _f32(self.warmup_steps)
        step = np.minimum(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (target - initial) * (step / warmup_steps) + initial
        return self._decay(step - warmup_steps, decay_steps, target)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


_CLASSES = {"ExponentialDecay": ExponentialDecay, "CosineDecay": CosineDecay}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": {...}}``, JSON-compatible."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict, custom_objects: dict | None = None) -> LearningRateSchedule:
    """The schedule :func:`serialize` described."""
    classes = {**_CLASSES, **(custom_objects or {})}
    name = config.get("class_name")
    if name not in classes:
        raise ValueError(f"Unknown learning rate schedule {name!r}; known: {', '.join(sorted(classes))} "
                         f"(pass others in custom_objects)")
    return classes[name].from_config(config["config"])
