"""Optimizers with Keras 3's semantics: ``SGD``, ``Adam``, ``AdamW``,
``RMSprop``, ``Adagrad``, and learning-rate ``schedules``.

>>> import gpuad as ad
>>> x = ad.Variable(1.0)
>>> opt = ad.optimizers.SGD(learning_rate=0.1)
>>> with ad.GradientTape() as tape:
...     loss = x * x
>>> opt.apply_gradients(zip(tape.gradient(loss, [x]), [x]))
<gpuad.Variable 'sgd/iteration:0' shape=() dtype=int64, device=cpu, numpy=1>
>>> float(x)
0.800000011920929

Semantics (TensorFlow 2.21 / Keras 3; TF_REFERENCE.md §15):

- The update rules, defaults and arithmetic are Keras 3's: every operation is
  rounded to the variable's dtype in Keras' order, and a hyperparameter such as
  ``1 - beta_1`` is computed as a Python double before it is cast, so float32
  steps equal TensorFlow's bit for bit. The learning rate is held in float32
  (``opt.learning_rate`` is a float32 Variable) and cast to each variable's
  dtype, so a float64 variable sees ``float64(float32(lr))``.
- ``apply_gradients(grads_and_vars)`` takes any iterable of ``(gradient,
  variable)`` pairs (a one-shot ``zip`` too). The first call builds the
  optimizer for its variables; a variable it was not built with is a
  ``ValueError``. A ``None`` gradient skips its variable with a ``UserWarning``
  naming it; all ``None`` is a ``ValueError``. A gradient whose shape differs
  from its variable's is an :class:`~gpuad.InvalidArgumentError`; one of another
  dtype is cast. Nothing changes unless the whole step is valid, and
  ``iterations`` counts the steps applied.
- ``minimize(loss, var_list, tape=None)`` (Keras 2's): ``loss`` is a
  zero-argument callable evaluated under an internal tape, or a Tensor computed
  under ``tape``.
- ``clipnorm`` (per gradient), ``global_clipnorm`` and ``clipvalue`` clip as
  Keras does; ``weight_decay`` (every optimizer; AdamW's default 0.004) applies
  ``w -= w * weight_decay * lr`` before the rule.
- Hyperparameters are checked when set (in the constructor and after, as
  ``opt.beta_1 = ...``): a ``ValueError`` names the optimizer, the argument,
  the value and the valid range -- finite numbers only; ``learning_rate`` and
  ``weight_decay`` >= 0; ``beta_1``, ``beta_2``, ``rho`` in [0, 1) (1 divides
  by zero or never updates); ``momentum`` in [0, 1]; ``epsilon`` > 0 (Adagrad:
  >= 0, not both it and ``initial_accumulator_value`` 0); ``clipnorm``,
  ``clipvalue``, ``global_clipnorm``, ``loss_scale_factor`` > 0 or None; flags
  ``True``/``False``. A step whose learning rate is not finite and >= 0 (a
  value assigned to the variable, a schedule's or a callable's) raises before
  anything changes.
- State: ``opt.variables`` lists gpuad Variables -- ``iterations``, the
  learning rate (unless it is a schedule) and every slot, named like
  ``adam/Variable_0_momentum`` -- after ``opt.build(var_list)`` (or the first
  step). Saving them and assigning them back into a fresh optimizer built on
  the same variables restores it exactly.

**One fused update per step, all or nothing.** A step is one primitive,
``apply_update`` (``gpuad/ops/state.py``): it runs the device kernel
``optim/<rule>`` once per (device, dtype) of the variables -- on ``cuda`` and
``emulated`` one launch updates every parameter and slot (a few for more than
256 tensors) through a table of pointers kept on the device, so a steady-state
step makes one launch and no host transfer. Every check, the clipping, the
learning rate and the hyperparameters come first; the update then runs with
every affected variable locked, and either every variable, slot and
``iterations`` changes or none does (a fault in the kernel, or Ctrl-C, leaves
the step unapplied). The kernel writes in place only into buffers no Tensor
can see: a variable tracks the Tensors it handed out (``Variable``'s lease),
and one whose value is still held (a Tensor read before the step, a view, a
tape that kept it) or was adopted by ``assign`` moves to a fresh copy first.
A value read before a step therefore keeps its old contents, as in TensorFlow,
and a training loop that holds no reads once ``tape.gradient`` has run pays
no copies.
"""
from __future__ import annotations

import functools

import numbers
import warnings

import numpy as np

from . import schedules
from .dtypes import float32, int64
from .ops.core import bind
from .ops.state import APPLY_UPDATE
from .tensor import Tensor, Variable, convert_to_tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "schedules"]

_FLOAT_KINDS = ("float32", "float64")
_F32_MAX = float(np.finfo(np.float32).max)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _range(lo, hi, lo_open=False, hi_open=False, optional=False, integer=False):
    """A check that a hyperparameter is a finite real (an integer when
    ``integer``) in the interval given, or None when ``optional``."""
    text = ("an integer" if integer else "a finite float") + (
        " >= " + str(lo) if hi is None and not lo_open else
        " > " + str(lo) if hi is None else
        f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")
    if optional:
        text += " (or None)"

    def check(value):
        if value is None:
            return optional
        if not _is_real(value) or (integer and not isinstance(value, numbers.Integral)):
            return False
        v = float(value)
        if not np.isfinite(v):
            return False
        if v < lo or (lo_open and v == lo):
            return False
        return hi is None or v < hi or (not hi_open and v == hi)
    return check, text


def _flag(value) -> bool:
    return isinstance(value, (bool, np.bool_))


_FLAG = (_flag, "True or False")
_UNIT = _range(0, 1)                           # [0, 1]
_BETA = _range(0, 1, hi_open=True)            # [0, 1): 1 never forgets (Adam divides by 0)
_POSITIVE_OPT = _range(0, None, lo_open=True, optional=True)
_FIXES = {
    "beta_1": "beta_1=1 divides by 1 - beta_1**t = 0 (NaN weights); typical values are 0.9",
    "beta_2": "beta_2=1 never updates the second moment; typical values are 0.999",
    "rho": "rho=1 never updates the moving average of g**2; typical values are 0.9",
    "epsilon": "a zero epsilon gives 0/0 = NaN where a gradient is 0; typical values are 1e-7",
    "momentum": "typical values are 0.9",
    "clipnorm": "pass None for no clipping",
    "clipvalue": "pass None for no clipping",
    "global_clipnorm": "pass None for no clipping",
    "loss_scale_factor": "pass None for no loss scaling",
    "weight_decay": "pass None or 0 for no weight decay",
}


class Optimizer:
    """Base class of gpuad's optimizers (Keras 3's ``Optimizer``): learning rate
    handling, gradient clipping, weight decay, ``iterations``, the optimizer
    variables and the fused step. Subclasses name their device rule (``_rule``),
    their slots (``_slot_names``) and their hyperparameters (``_hyper``).

    >>> import gpuad as ad
    >>> opt = ad.optimizers.Adam(learning_rate=0.1)
    >>> w = ad.Variable([1.0, -2.0])
    >>> opt.build([w])
    >>> [v.name for v in opt.variables]
    ['adam/iteration:0', 'adam/learning_rate:0', 'adam/Variable_0_momentum:0', 'adam/Variable_0_velocity:0']
    """

    _rule: str = ""
    _default_name: str = "optimizer"
    # hyperparameter -> (check, the valid values in words): checked on every
    # assignment, in the constructor and after (``opt.beta_1 = 1.0`` too)
    _checks: dict = {
        "weight_decay": _range(0, None, optional=True),
        "clipnorm": _POSITIVE_OPT, "clipvalue": _POSITIVE_OPT, "global_clipnorm": _POSITIVE_OPT,
        "loss_scale_factor": _POSITIVE_OPT,
        "ema_momentum": _UNIT,
        "ema_overwrite_frequency": _range(1, None, optional=True, integer=True),
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        merged = {}
        for base in reversed(cls.__mro__):
            merged.update(base.__dict__.get("_checks", {}))
        cls._checks = merged

    def __setattr__(self, name, value):
        check = self._checks.get(name)
        if check is not None and not check[0](value):
            self._invalid(name, value, check[1])
        object.__setattr__(self, name, value)

    def _invalid(self, name, value, valid):
        fix = _FIXES.get(name)
        raise ValueError(f"{type(self).__name__}: argument `{name}` must be {valid}; received "
                         f"{name}={value!r}." + (f" ({fix}.)" if fix else ""))

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if use_ema:
            raise NotImplementedError("use_ema=True (an exponential moving average of the weights) is not "
                                      "implemented in gpuad; leave it False.")
        if gradient_accumulation_steps:
            raise NotImplementedError("gradient_accumulation_steps is not implemented in gpuad; accumulate "
                                      "the gradients yourself and call apply_gradients every N steps.")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                             f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.name = str(name) if name is not None else self._default_name
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.built = False

        self._iterations = Variable(0, trainable=False, name=f"{self.name}/iteration", dtype=int64,
                                    device="cpu")
        self._variables = [self._iterations]
        self._lr_var = None
        self._learning_rate = None
        self._set_learning_rate(learning_rate, creating=True)

        self._trainable_variables: list = []
        self._index: dict[int, int] = {}      # variable._id -> index in _trainable_variables
        self._slots: list[list] = []           # slot kind -> one Variable per trainable variable
        self._slot_kinds: list[str] = []       # the kind's name, parallel to _slots
        self._caches: dict = {}                # (device name, dtype) -> the device's table cache

    # -- learning rate and iterations -------------------------------------------
    def _set_learning_rate(self, learning_rate, creating=False):
        if isinstance(learning_rate, schedules.LearningRateSchedule) or (
                callable(learning_rate) and not isinstance(learning_rate, (Tensor, Variable))):
            if self._lr_var is not None:
                self._variables = [v for v in self._variables if v is not self._lr_var]
                self._lr_var = None
            self._learning_rate = learning_rate
            return
        if isinstance(learning_rate, (Tensor, Variable)) or isinstance(learning_rate, np.ndarray):
            arr = np.asarray(learning_rate)
            if arr.size != 1 or arr.dtype.kind not in "iuf":
                raise ValueError(f"{type(self).__name__}: argument `learning_rate` must be a "
                                 f"number, a LearningRateSchedule or a callable; received a "
                                 f"{arr.dtype} array of shape {arr.shape}.")
            learning_rate = float(arr.reshape(()))
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
            raise ValueError("Argument `learning_rate` should be float, or an instance of "
                             "LearningRateSchedule, or a callable (that takes in the current iteration "
                             f"value and returns the corresponding learning rate value). Received "
                             f"instead: learning_rate={learning_rate!r}")
        try:
            lr = float(learning_rate)
        except OverflowError:  # an int too large for a float
            lr = float("inf")
        if not (0.0 <= lr <= _F32_MAX):  # NaN fails too; a float32 variable holds it
            raise ValueError(f"{type(self).__name__}: argument `learning_rate` must be a finite "
                             f"float >= 0 (at most {_F32_MAX:.4g}, float32's largest); received "
                             f"learning_rate={learning_rate!r}. A NaN or infinite learning rate "
                             f"turns every weight into NaN; typical values are 1e-4 to 1e-1.")
        if not creating and isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not "
                            "settable. If you need the learning rate to be settable, you should "
                            "instantiate the optimizer with a float `learning_rate` argument.")
        if self._lr_var is None:
            self._lr_var = Variable(np.float32(learning_rate), trainable=False, dtype=float32,
                                    name=f"{self.name}/learning_rate", device="cpu")
            self._variables.insert(1, self._lr_var)
        else:
            self._lr_var.assign(np.float32(learning_rate))
        self._learning_rate = self._lr_var

    @property
    def learning_rate(self):
        """The learning rate: the float32 Variable (settable: ``opt.learning_rate
        = 0.5``), or a schedule's value at the current step as a Tensor."""
        if self._learning_rate is self._lr_var:
            return self._lr_var
        from .tensor import constant
        return constant(self._current_lr(), device="cpu")

    @learning_rate.setter
    def learning_rate(self, value):
        self._set_learning_rate(value)

    # The step count and the learning rate variable live on the cpu, and nothing
    # writes into their buffers (a step or an assign swaps in a new one), so one
    # read of ``_data`` is a consistent value: no lock, no copy, no device sync.
    def _step_count(self) -> int:
        return int(self._iterations._data)

    def _current_lr(self) -> np.float32:
        """The learning rate of the next step, as float32, computed on the host."""
        lr = self._learning_rate
        if lr is self._lr_var:
            value = np.float32(self._lr_var._data)
        elif isinstance(lr, schedules.LearningRateSchedule):
            if type(lr).value is not schedules.LearningRateSchedule.value:
                value = np.float32(lr.value(self._step_count()))
            else:
                value = np.float32(float(lr(self._iterations)))
        else:
            value = np.float32(float(lr()))
        if not 0 <= value <= _F32_MAX:  # one comparison a step; NaN fails it too
            self._bad_learning_rate(value)
        return value

    def _bad_learning_rate(self, value):
        """Refuse a step whose learning rate (assigned to the variable, or from a
        schedule or a callable) is not finite and >= 0: nothing has changed yet."""
        lr = self._learning_rate
        source = ("the value assigned to its `learning_rate` variable" if lr is self._lr_var else
                  f"its schedule {lr!r} at step {self._step_count()}"
                  if isinstance(lr, schedules.LearningRateSchedule) else
                  f"its learning-rate callable {lr!r} at step {self._step_count()}")
        raise ValueError(f"{type(self).__name__}: the learning rate is {float(value)!r} ({source}); "
                         f"it must be a finite float >= 0, or every weight would become NaN or "
                         f"move the wrong way. Nothing was updated. Set a valid one, e.g. "
                         f"`opt.learning_rate = 1e-3`.")

    @property
    def iterations(self) -> Variable:
        """The number of steps applied (an int64 Variable on the cpu)."""
        return self._iterations

    @property
    def variables(self) -> list:
        """The optimizer's state as gpuad Variables, in a stable order:
        ``iterations``, the learning rate (unless it is a schedule or a callable),
        then every slot variable (kind by kind, in the order of the variables
        the optimizer was built with). Assign saved values back to restore."""
        return list(self._variables)

    def named_variables(self) -> list:
        """``(key, Variable)`` pairs of the state, the keys checkpoints use:
        ``iteration``, ``learning_rate`` (when it is a Variable) and
        ``<slot kind>.<i>`` for the slot of the i-th variable the optimizer was
        built with. The keys follow positions, not variable names, so a model
        rebuilt in the same process (whose layers get new default names) still
        matches a saved optimizer.

        >>> import gpuad as ad
        >>> opt = ad.optimizers.SGD(0.1, momentum=0.9)
        >>> opt.build([ad.Variable([1.0, 2.0]), ad.Variable(3.0)])
        >>> [key for key, _ in opt.named_variables()]
        ['iteration', 'learning_rate', 'momentum.0', 'momentum.1']
        """
        pairs = [("iteration", self._iterations)]
        if self._lr_var is not None:
            pairs.append(("learning_rate", self._lr_var))
        for kind, slots in zip(self._slot_kinds, self._slots):
            pairs.extend((f"{kind}.{i}", slot) for i, slot in enumerate(slots))
        return pairs

    # -- building ------------------------------------------------------------------
    def build(self, var_list):
        """Create the slot variables for ``var_list`` (done by the first
        ``apply_gradients`` otherwise). Building twice does nothing."""
        if self.built:
            return
        var_list = list(var_list)
        for v in var_list:
            self._check_variable(v)
        self._trainable_variables = var_list[:]
        self._index = {v._id: i for i, v in enumerate(var_list)}
        bases, seen = [], {}
        for v in var_list:
            base = v.name.replace("/", "_").replace(":", "_")
            n = seen.get(base, 0)
            seen[base] = n + 1
            bases.append(base if n == 0 else f"{base}_{n}")
        from .ops.creation import _filled
        self._slots, self._slot_kinds = [], []
        for group in self._slot_names():
            kinds = [[] for _ in group]
            self._slot_kinds.extend(kind for kind, _ in group)
            for v, base in zip(var_list, bases):  # interleaved within a group, as Keras 3
                for (kind, init), kind_vars in zip(group, kinds):
                    slot = Variable(_filled(v.shape, init, v.dtype, v._device), trainable=False,
                                    name=f"{self.name}/{base}_{kind}")
                    kind_vars.append(slot)
                    self._variables.append(slot)
            self._slots.extend(kinds)
        self.built = True

    def _slot_names(self) -> list:
        """The slot kinds for this optimizer's configuration, in the order of the
        device rule: groups of ``(kind, initial value)``. ``variables`` lists the
        slots group by group, and within a group variable by variable (Keras 3's
        ``add_optimizer_variables`` order)."""
        return []

    @staticmethod
    def _check_variable(v):
        if not isinstance(v, Variable):
            raise TypeError(f"Optimizers update gpuad.Variables; got {type(v).__name__} {v!r}. Wrap the "
                            f"value in gpuad.Variable(...) and compute the loss from that.")
        if v._data.dtype.kind != "f":
            raise TypeError(f"Optimizers update float32 or float64 variables; '{v.name}' is "
                            f"{v.dtype.name}.")

    # -- gradients -------------------------------------------------------------------
    def _check_variables_are_known(self, variables):
        for v in variables:
            if v._id not in self._index:
                raise ValueError(f"Unknown variable: {v}. This optimizer can only be called for the "
                                 "variables it was originally built with. When working with a new set "
                                 "of variables, you should recreate a new optimizer instance.")

    def _clip_by_norm(self, g):
        from .ops import math as M
        from .ops.creation import ones_like
        l2sum = M.reduce_sum(g * g, keepdims=True)
        pred = l2sum > 0
        l2sum_safe = M.where(pred, l2sum, ones_like(l2sum))
        l2norm = M.where(pred, M.sqrt(l2sum_safe), l2sum)
        return (g * self.clipnorm) / M.maximum(l2norm, self.clipnorm)

    def _clip_gradients(self, grads):
        if not (self.clipnorm or self.global_clipnorm or self.clipvalue):
            return grads  # the common case, checked first: no import on every step
        from .ops import math as M
        if self.clipnorm and self.clipnorm > 0:
            return [self._clip_by_norm(g) for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            from .ops.array import stack
            from .ops.math import cast
            sq = [M.reduce_sum(g * g) for g in grads]
            if len({s.dtype for s in sq}) > 1:
                sq = [cast(s, float32) for s in sq]
            norm = M.sqrt(M.reduce_sum(stack(sq)))
            c = self.global_clipnorm
            scale = c * M.minimum(1.0 / norm, 1.0 / c)
            scale = scale + (norm - norm)  # NaN for a non-finite norm, as Keras
            return [g * (scale if scale.dtype == g.dtype else cast(scale, g.dtype)) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            v = self.clipvalue
            return [M.clip_by_value(g, -v, v) for g in grads]
        return grads

    def _prepare_gradient(self, g, v):
        if isinstance(g, Variable):
            g = g._read()
        if not isinstance(g, Tensor):
            g = convert_to_tensor(g, dtype=v.dtype, device=v._device)
        # (devices and shapes: apply_update's rule checks them, before anything changes)
        if g._data.dtype is not v._data.dtype and g.dtype.name not in _FLOAT_KINDS:
            from .ops.math import cast
            g = cast(g, v.dtype)
        return g

    # -- the step ----------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply one step from ``(gradient, variable)`` pairs; returns ``iterations``.

        >>> import gpuad as ad
        >>> v = ad.Variable([3.0, 4.0])
        >>> opt = ad.optimizers.SGD(learning_rate=1.0, clipnorm=1.0)
        >>> _ = opt.apply_gradients([(ad.constant([3.0, 4.0]), v)])
        >>> v.numpy()
        array([2.4, 3.2], dtype=float32)
        """
        pairs = list(grads_and_vars)
        for p in pairs:
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise TypeError(f"apply_gradients takes (gradient, variable) pairs, e.g. "
                                f"zip(grads, vars); got {p!r}")
        self.apply([p[0] for p in pairs], [p[1] for p in pairs])
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        """Keras 3's ``apply``: gradients and, unless the optimizer is built,
        their variables (by default those it was built with). Returns None."""
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError("When passing `grads` without `variables`, the optimizer must already "
                                 "be built on a list of variables. Call "
                                 "`optimizer.build(trainable_variables)` first.")
            if len(grads) != len(self._trainable_variables):
                raise ValueError(f"When passing `grads` as a list of gradient tensors, the gradients "
                                 f"must match the optimizer's variables one-to-one. Received a list of "
                                 f"{len(grads)} gradients, but the optimizer is tracking "
                                 f"{len(self._trainable_variables)} trainable variables.")
            variables = list(self._trainable_variables)
        else:
            variables = list(trainable_variables)
            if len(variables) != len(grads):
                raise ValueError(f"Got {len(grads)} gradients for {len(variables)} variables.")
            for v in variables:
                self._check_variable(v)
            if not self.built:
                self.build(variables)
            self._check_variables_are_known(variables)
        seen = set()
        for v in variables:
            if v._id in seen:
                raise ValueError(f"Variable '{v.name}' appears more than once in one step; sum its "
                                 f"gradients and pass it once.")
            seen.add(v._id)

        # skip None gradients, as Keras 3
        kept = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if not kept:
            raise ValueError("No gradients provided for any variable.")
        missing = [v.name for g, v in zip(grads, variables) if g is None]
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss. "
                          "If using `model.compile()`, did you forget to provide a `loss` argument?",
                          UserWarning, stacklevel=3 if trainable_variables is not None else 2)

        grads = [self._prepare_gradient(g, v) for g, v in kept]  # every check before any update
        variables = [v for _, v in kept]
        if self.loss_scale_factor is not None:
            grads = [g / self.loss_scale_factor for g in grads]
        grads = self._clip_gradients(grads)
        if any(g._data.dtype != v._data.dtype for g, v in zip(grads, variables)):
            from .ops.math import cast
            grads = [g if g.dtype == v.dtype else cast(g, v.dtype) for g, v in zip(grads, variables)]
        slots = [[kind[self._index[v._id]] for v in variables] for kind in self._slots]
        dtypes = tuple({v._data.dtype for v in variables})
        bind(APPLY_UPDATE, tuple(grads), rule=self._rule, variables=variables, slots=slots,
             hyper=functools.partial(self._hypers, dtypes), iterations=self._iterations,
             caches=self._caches)

    def _hypers(self, dtypes) -> dict:
        """Each dtype's hyperparameters for the coming step. A callable attribute of
        the update, called when the update runs, not when it is bound: a step that
        ``gpuad.function`` replays gets the learning rate and step count of its own
        call."""
        lr32 = self._current_lr()
        step = self._step_count()
        hyper = {}
        for dtype in dtypes:
            f = dtype.type
            h = self._hyper(f, f(lr32), step)
            h["lr"] = float(f(lr32))
            h["weight_decay"] = None if self.weight_decay is None else float(f(self.weight_decay))
            hyper[dtype] = h
        return hyper

    def _hyper(self, f, lr, step) -> dict:
        """The rule's hyperparameters for variables of float type ``f`` (a NumPy
        scalar type), as Python floats holding values of that type."""
        return {}

    # -- minimize ---------------------------------------------------------------------
    def minimize(self, loss, var_list, tape=None):
        """Keras 2's ``minimize``: compute the gradients of ``loss`` with respect
        to ``var_list`` (a list of Variables, or a callable returning one) and
        apply them. ``loss`` is a zero-argument callable, evaluated under an
        internal tape, or a Tensor computed under ``tape``. Returns None.

        >>> import gpuad as ad
        >>> x = ad.Variable(1.0)
        >>> ad.optimizers.SGD(learning_rate=0.1).minimize(lambda: x * x, [x])
        >>> float(x)
        0.800000011920929
        """
        from .tape import GradientTape
        if not callable(loss) and tape is None:
            raise ValueError(f"`tape` is required when a `Tensor` loss is passed. Received: "
                             f"loss={loss!r}, tape={tape}.")
        if callable(loss):
            with GradientTape() as tape:
                if callable(var_list):
                    var_list = var_list()
                var_list = list(var_list)
                for v in var_list:
                    tape.watch(v)
                loss = loss()
        else:
            if callable(var_list):
                var_list = var_list()
            var_list = list(var_list)
        grads = tape.gradient(loss, var_list)
        self.apply_gradients(zip(grads, var_list))

    # -- config -----------------------------------------------------------------------
    def get_config(self) -> dict:
        """The constructor arguments, as Keras 3's ``get_config``."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif lr is self._lr_var:
            lr = float(self._current_lr())
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """An optimizer (without state) from :meth:`get_config`'s dict."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<gpuad.optimizers.{type(self).__name__} name={self.name!r} iterations={self._step_count()}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras 3's rule:
    ``w -= lr * g``; with momentum ``m = momentum * m - lr * g; w += m``; with
    Nesterov ``w += momentum * m - lr * g`` instead.

    >>> import gpuad as ad
    >>> x = ad.Variable(1.0)
    >>> opt = ad.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    >>> for _ in range(3):
    ...     opt.minimize(lambda: x * x, [x])
    >>> float(x)
    0.062000006437301636
    """

    _rule = "sgd"
    _default_name = "sgd"
    _checks = {"momentum": (_UNIT[0], "a float between [0, 1]"), "nesterov": _FLAG}

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    def _slot_names(self):
        return [[("momentum", 0)]] if self.momentum != 0 else []

    def _hyper(self, f, lr, step):
        return {"momentum": float(f(self.momentum)), "nesterov": bool(self.nesterov)}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Keras 3): with ``t = iterations + 1``,
    ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``,
    ``m += (g - m) * (1 - beta_1)``, ``v += (g*g - v) * (1 - beta_2)``,
    ``w -= m * alpha / (sqrt(v) + epsilon)``; ``amsgrad`` uses the running
    maximum of ``v``.

    >>> import gpuad as ad
    >>> x = ad.Variable([1.0, -2.0])
    >>> opt = ad.optimizers.Adam(learning_rate=0.1)
    >>> opt.minimize(lambda: ad.reduce_sum(x ** 3), [x])
    >>> x.numpy().tolist()
    [0.9000007510185242, -2.09999942779541]
    """

    _rule = "adam"
    _default_name = "adam"
    _checks = {"beta_1": _BETA, "beta_2": _BETA, "epsilon": _range(0, None, lo_open=True),
               "amsgrad": _FLAG}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def _slot_names(self):
        groups = [[("momentum", 0), ("velocity", 0)]]
        return groups + [[("velocity_hat", 0)]] if self.amsgrad else groups

    def _hyper(self, f, lr, step):
        t = f(step + 1)
        if f is np.float32:  # as TensorFlow's scalar pow (see schedules.pow32)
            b1p, b2p = schedules.pow32(f(self.beta_1), t), schedules.pow32(f(self.beta_2), t)
        else:  # float64: the C library's pow, as Python's
            b1p, b2p = f(float(f(self.beta_1)) ** float(t)), f(float(f(self.beta_2)) ** float(t))
        alpha = lr * np.sqrt(f(1) - b2p) / (f(1) - b1p)
        return {"alpha": float(f(alpha)), "one_minus_beta_1": float(f(1 - self.beta_1)),
                "one_minus_beta_2": float(f(1 - self.beta_2)), "epsilon": float(f(self.epsilon)),
                "amsgrad": bool(self.amsgrad)}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3): before the Adam rule,
    ``w -= w * weight_decay * lr`` (``weight_decay=0.004`` by default).

    >>> import gpuad as ad
    >>> w = ad.Variable(1.0)
    >>> opt = ad.optimizers.AdamW(learning_rate=0.5, weight_decay=0.1)
    >>> _ = opt.apply_gradients([(ad.constant(0.0), w)])
    >>> float(w)
    0.949999988079071
    """

    _default_name = "adamw"
    _checks = {"weight_decay": _range(0, None)}  # AdamW always decays: None is no value here

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """RMSprop (Keras 3): ``v = rho * v + (1 - rho) * g*g``; centered:
    ``a = rho * a + (1 - rho) * g`` and the denominator ``sqrt(v - a*a + eps)``,
    else ``sqrt(v + eps)``; ``inc = lr * g / denominator``; with momentum
    ``m = momentum * m + inc; w -= m``, else ``w -= inc``.

    >>> import gpuad as ad
    >>> x = ad.Variable(10.0)
    >>> ad.optimizers.RMSprop(learning_rate=0.1).minimize(lambda: x * x / 2.0, [x])
    >>> round(float(x), 6)
    9.683772
    """

    _rule = "rmsprop"
    _default_name = "rmsprop"
    _checks = {"rho": _BETA, "momentum": _UNIT, "epsilon": _range(0, None, lo_open=True),
               "centered": _FLAG}

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _slot_names(self):
        groups = [[("velocity", 0)]]
        if self.momentum > 0:
            groups.append([("momentum", 0)])
        if self.centered:
            groups.append([("average_gradient", 0)])
        return groups

    def _hyper(self, f, lr, step):
        return {"rho": float(f(self.rho)), "one_minus_rho": float(f(1 - self.rho)),
                "momentum": float(f(self.momentum)), "epsilon": float(f(self.epsilon)),
                "centered": bool(self.centered)}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad (Keras 3): ``acc += g*g; w -= lr * g / sqrt(acc + epsilon)``,
    accumulators starting at ``initial_accumulator_value``.

    >>> import gpuad as ad
    >>> x = ad.Variable(1.0)
    >>> ad.optimizers.Adagrad(learning_rate=0.1).minimize(lambda: x * x, [x])
    >>> round(float(x), 6)
    0.901227
    """

    _rule = "adagrad"
    _default_name = "adagrad"
    _checks = {"initial_accumulator_value": _range(0, None), "epsilon": _range(0, None)}

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def __setattr__(self, name, value):
        pair = ("initial_accumulator_value", "epsilon")
        if name in pair and self._checks[name][0](value) and value == 0 and \
                getattr(self, pair[1 - pair.index(name)], 1) == 0:
            raise ValueError(f"Adagrad: `initial_accumulator_value` and `epsilon` cannot both be 0 "
                             f"(received {name}={value!r}): the first step would divide 0 by "
                             f"sqrt(0) = NaN where a gradient is 0. Make one of them > 0 "
                             f"(defaults: 0.1 and 1e-7).")
        super().__setattr__(name, value)

    def _slot_names(self):
        return [[("accumulator", self.initial_accumulator_value)]]

    def _hyper(self, f, lr, step):
        return {"epsilon": float(f(self.epsilon))}

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
