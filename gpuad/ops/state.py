"""Primitives that move data between devices or read and write Variables:
``copy``, ``read_variable``, ``assign``, ``assign_add``, ``assign_sub`` and
``apply_update`` (a fused optimizer step over many variables).

The writes are all or nothing. Everything that can fail -- the shape rule,
kernels that compute new buffers, copies -- runs before the first change to a
variable; the change itself is the swap of buffer references (and, on a kernel
device, the optimizer's fused kernel writing in place into buffers no Tensor
sees), done while holding every affected variable's lock. A failure in the
swaps puts every variable back; Ctrl-C is held back while a kernel writes in
place and until the swaps that go with it are done (and while a checkpoint is
assigned).

>>> import gpuad as ad
>>> v = ad.Variable([1.0, 2.0])
>>> _ = v.assign_add([1.0, 1.0])
>>> v.read_value().numpy()
array([2., 3.], dtype=float32)
"""
from __future__ import annotations

import contextlib
import signal
import threading

from .. import devices as _devices
from ..tape import read_variable
from ..tensor import Tensor, locked
from . import infer as I
from .core import Primitive as P


@contextlib.contextmanager
def deferred_interrupts():
    """Hold back Ctrl-C (SIGINT) inside the block, and raise it after: a
    commit is never cut in half. Only the main thread receives signals, so
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


class _commit:
    """``with _commit(variables):`` swap the variables' buffers inside the block;
    if anything escapes it, every variable gets back what it had (the caller
    holds their locks)."""

    __slots__ = ("_saved",)

    def __init__(self, variables):
        self._saved = [(v, v._ownership()) for v in variables]

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            for v, ownership in self._saved:
                v._restore(ownership)
        return False


# -- copy(x; device): a tensor on another device, through the host ------------------------------
def _copy(x, device):
    dev = _devices.get(device)
    return Tensor(dev.from_host(x._device.to_host(x._data)), dev)


COPY = P("copy", I.copy, eager=_copy)


# -- read_variable(; variable): the current value, recorded on the tapes that watch it ------------
def _read(variable):
    return read_variable(variable, READ_VARIABLE)


# The tape keeps the Variable itself (not a buffer: the variable lives on anyway).
READ_VARIABLE = P("read_variable", I.read_variable, vjps=(lambda g, out, variable: g,),
                  keeps=("variable",), effect="read", eager=_read)


# -- assign(*values; variables), assign_add(delta; variable), assign_sub(delta; variable) ------------
def _assign(*values, variables):
    """Each value becomes its variable's value, all at once (``gpuad.load``
    assigns a whole checkpoint with one call)."""
    if len(variables) == 1:  # a few attribute stores, no call or loop: CPython runs no
        # signal handler (Ctrl-C) in between, so nothing can cut this in half
        with variables[0]._lock:
            variables[0]._adopt(values[0])
        return
    with deferred_interrupts(), locked(variables), _commit(variables):
        for variable, value in zip(variables, values):
            variable._adopt(value)


def _update(row_name):
    def update(delta, variable):
        kernel = getattr(T, row_name).kernel(variable._device)
        with variable._lock:
            # a new buffer, computed before anything changes (the variable made it);
            # then one reference swap
            variable._own(kernel(variable._data, delta._data))
    return update


ASSIGN = P("assign", I.assign, effect="write", eager=_assign)
ASSIGN_ADD = P("assign_add", I.same_as_variable("assign_add"), effect="write",
               eager=_update("ADD"))
ASSIGN_SUB = P("assign_sub", I.same_as_variable("assign_sub"), effect="write",
               eager=_update("SUBTRACT"))


# -- apply_update(*grads; rule, variables, slots, hyper, iterations, caches) ------------------------
def _apply_update(*grads, rule, variables, slots, hyper, iterations, caches):
    """One optimizer step: ``variables[j] -= rule(grads[j], slots)``, with the
    device's fused ``optim`` kernel, per (device, dtype) group. ``slots`` is a
    list of slot kinds, each one Variable per variable; ``hyper`` maps each
    group's NumPy dtype to the rule's hyperparameters, or is a function returning
    that map, called when the step runs (the optimizer's learning rate and step
    count of this very step); ``iterations`` (a Variable, or None) counts the
    step. Either every variable, slot and ``iterations`` changes, or none does."""
    PreparedUpdate(rule, variables, slots, hyper, iterations, caches)([g._data for g in grads])


class PreparedUpdate:
    """An optimizer step with what does not change between its calls worked out
    once (the (device, dtype) groups, their order, every variable the step
    changes and their locks): ``PreparedUpdate(...)(grad_buffers)`` runs one step.
    ``gpuad.function`` prepares each step of a plan once and replays it."""

    __slots__ = ("rule", "variables", "slots", "hyper", "iterations", "caches", "ordered",
                 "state", "lock", "in_place")

    def __init__(self, rule, variables, slots, hyper, iterations, caches):
        self.rule, self.variables, self.slots = rule, variables, slots
        self.hyper, self.iterations, self.caches = hyper, iterations, caches
        groups: dict = {}
        for j, v in enumerate(variables):
            key = (v._device, v._data.dtype)
            group = groups.get(key)
            if group is None:
                groups[key] = [j]
            else:
                group.append(j)
        # Every group but the last works out of place (on copies): if a later group
        # fails, no variable has changed yet. The largest group goes last, in place.
        ordered = list(groups.items())
        if len(ordered) > 1:
            ordered.sort(key=lambda item: sum(variables[j]._data.size for j in item[1]))
        # per group: its key, its variables' indices, and every Variable it changes
        self.ordered = []
        for key, idx in ordered:
            every = [variables[j] for j in idx]
            for kind in slots:
                every.extend([kind[j] for j in idx])
            self.ordered.append((key, idx, every))
        state = list(variables)
        for kind in slots:
            state.extend(kind)
        if iterations is not None:
            state.append(iterations)
        self.state = state
        self.lock = locked(state)
        # A device that writes into the variables' buffers (the kernel devices' last
        # launch) must not be stopped by Ctrl-C between that write and the commit; one
        # that returns new buffers (cpu) is stopped cleanly anywhere before the commit.
        self.in_place = any(dev.optim_in_place for (dev, _), _, _ in self.ordered)

    def __call__(self, grads):
        hyper = self.hyper() if callable(self.hyper) else self.hyper
        if self.in_place:
            with deferred_interrupts(), self.lock:
                self._update(grads, hyper)
        else:
            with self.lock:
                self._update(grads, hyper)

    def _update(self, grads, hyper):
        """The step, once it holds every lock (``grads``: the gradients' buffers)."""
        # 1. Everything that can fail, before any variable changes.
        iterations, caches, slots = self.iterations, self.caches, self.slots
        count = None
        if iterations is not None:
            count = T.ADD.kernel(iterations._device)(iterations._data, _one(iterations))
        last = len(self.ordered) - 1
        results = []  # per group: (its variables and slots, their new buffers)
        for n, ((dev, dtype), idx, every) in enumerate(self.ordered):
            cache = caches.get((dev, dtype))
            if cache is None:
                cache = caches[(dev, dtype)] = {}
            bufs = [v._data for v in every]
            if dev.optim_in_place:
                # Write in place only into buffers no Tensor sees; the others move to a copy.
                writable = [v._writable() for v in every]
                if not all(writable):
                    cache.clear()
                    copy = T.CAST.kernel(dev)
                    bufs = [b if w else copy(b, dtype=dtype) for w, b in zip(writable, bufs)]
            k = len(idx)
            new_params, new_slots = dev.optim(
                self.rule, bufs[:k], [grads[j] for j in idx],
                [bufs[k * (s + 1):k * (s + 2)] for s in range(len(slots))], hyper[dtype],
                cache=cache, in_place=n == last)
            new = list(new_params)
            for kind in new_slots:
                new.extend(kind)
            if any([b is not a for a, b in zip(bufs, new)]):
                cache.clear()  # the kernel's pointer tables name the old buffers
            results.append((every, new))
        # 2. The commit: reference swaps only.
        with _commit(self.state):
            for every, new in results:
                for v, buf in zip(every, new):
                    if buf is not v._data:
                        v._own(buf)
            if count is not None:
                iterations._own(count)


_ones: dict = {}


def _one(counter):
    """A 1 of ``counter``'s dtype on its device (made once: buffers of constants
    are never written)."""
    key = (counter._device, counter._data.dtype)
    one = _ones.get(key)
    if one is None:
        one = _ones[key] = T.FILL.kernel(key[0])(shape=(), value=1, dtype=key[1])
    return one


APPLY_UPDATE = P("apply_update", I.apply_update, effect="write", eager=_apply_update)

from . import table as T  # noqa: E402  (the table imports this module)
