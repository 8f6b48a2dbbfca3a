"""The ``optim`` family on the ``cpu`` device: fused optimizer steps in NumPy.

``optim(dev, op, params, grads, slots, hyper, cache=None, in_place=True) ->
(new_params, new_slots)`` has the contract of :mod:`gpuad.devices.launch.optim`
(read its docstring for the arguments), with exactly the operations of Keras 3's
update rules in their order, each rounded to the parameters' dtype (NumPy scalars
of that dtype, never Python floats, take part), so a float32 step equals
TensorFlow's bit for bit. ``cache`` is unused here.

Whatever ``in_place`` says, this device computes on copies of the parameters and
slots and returns the copies; it never writes into an input buffer. That makes
every step all or nothing by construction (an error on the k-th variable leaves
every input as it was) and lets inputs be read-only or strided views, at the cost
of one copy of each parameter and slot per step.
"""
from __future__ import annotations

import numpy as np

from .launch.optim import check


def optim(dev, op, params, grads, slots, hyper, cache=None, in_place=True):
    dt = check(op, params, grads, slots, hyper)
    if dt is None:
        return [], [list(s) for s in slots]
    f = dt.type
    lr = f(hyper["lr"])
    wd = hyper.get("weight_decay")
    wd = None if wd is None else f(wd)
    rule = _RULES[op]
    args = _ARGS[op](hyper, f)
    # copies, always (see the module docstring): the rules below update them in place
    new_params = [np.array(w, order="C") for w in params]
    new_slots = [[np.array(b, order="C") for b in s] for s in slots]
    for j, (w, g) in enumerate(zip(new_params, grads)):
        if not w.size:
            continue
        if wd is not None:  # Keras: variable.assign(variable - variable * wd * lr)
            t = w * wd
            t *= lr
            w -= t
        rule(w, g, [s[j] for s in new_slots], lr, *args)
    return new_params, new_slots


def _sgd(w, g, slots, lr, momentum, nesterov):
    if slots:
        (m,) = slots
        m *= momentum          # m = m * mu - g * lr
        m -= g * lr
        if nesterov:           # w = w + (m * mu - g * lr)
            t = m * momentum
            t -= g * lr
            w += t
        else:                  # w = w + m
            w += m
    else:                      # w = w - g * lr
        w -= g * lr


def _adam(w, g, slots, lr, alpha, omb1, omb2, eps, amsgrad):
    m, v = slots[0], slots[1]
    t = g - m                  # m = m + (g - m) * (1 - beta_1)
    t *= omb1
    m += t
    t = g * g                  # v = v + (g * g - v) * (1 - beta_2)
    t -= v
    t *= omb2
    v += t
    if amsgrad:                # v_hat = max(v_hat, v)
        vh = slots[2]
        np.maximum(vh, v, out=vh)
        v = vh
    d = np.sqrt(v)             # w = w - (m * alpha) / (sqrt(v) + eps)
    d += eps
    t = m * alpha
    t /= d
    w -= t


def _rmsprop(w, g, slots, lr, rho, omr, momentum, eps, centered):
    v = slots[0]
    v *= rho                   # v = rho * v + (1 - rho) * g * g
    t = g * g
    t *= omr
    v += t
    if centered:               # a = rho * a + (1 - rho) * g;  d = (v - a * a) + eps
        a = slots[-1]
        a *= rho
        a += omr * g
        d = v - a * a
        d += eps
    else:                      # d = v + eps
        d = v + eps
    d = np.sqrt(d)             # increment = (lr * g) / sqrt(d)
    inc = lr * g
    inc /= d
    if momentum > 0:           # m = mu * m + increment;  w = w - m
        m = slots[1]
        m *= momentum
        m += inc
        w -= m
    else:
        w -= inc


def _adagrad(w, g, slots, lr, eps):
    (acc,) = slots
    acc += g * g               # acc = acc + g * g
    d = acc + eps              # w = w - (lr * g) / sqrt(acc + eps)
    d = np.sqrt(d)
    t = lr * g
    t /= d
    w -= t


_RULES = {"sgd": _sgd, "adam": _adam, "rmsprop": _rmsprop, "adagrad": _adagrad}
_ARGS = {
    "sgd": lambda h, f: (f(h["momentum"]), bool(h["nesterov"])),
    "adam": lambda h, f: (f(h["alpha"]), f(h["one_minus_beta_1"]), f(h["one_minus_beta_2"]),
                          f(h["epsilon"]), bool(h.get("amsgrad"))),
    "rmsprop": lambda h, f: (f(h["rho"]), f(h["one_minus_rho"]), f(h["momentum"]), f(h["epsilon"]),
                             bool(h.get("centered"))),
    "adagrad": lambda h, f: (f(h["epsilon"]),),
}
