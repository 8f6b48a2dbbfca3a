"""State that changes all at once, and safely across threads: Variable
ownership (leases instead of reference counts), optimizer steps and
checkpoint loads that apply wholly or not at all, consistent snapshots.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gpuad as ad
from gpuad.ops import state

ROOT = Path(__file__).resolve().parents[1]


def test_no_reference_counting_decides_anything():
    sources = [p for p in (ROOT / "gpuad").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in sources if "getrefcount" in p.read_text()]
    assert offenders == []


# -- ownership -----------------------------------------------------------------------------------

def _step(opt, v, g=1.0):
    opt.apply_gradients([(ad.ones(v.shape) * g, v)])


def test_a_read_value_never_changes(device):
    v = ad.Variable(np.zeros(4, np.float32))
    opt = ad.optimizers.SGD(1.0)
    read = v.read_value()
    view = ad.reshape(read, (2, 2))[0]     # a view of the variable's buffer
    alias = ad.stop_gradient(read)
    _step(opt, v)
    _step(opt, v)
    np.testing.assert_array_equal(v.numpy(), [-2.0] * 4)
    for t in (read, view, alias):
        assert not np.any(t.numpy()), "a Tensor handed out before the step changed"


def test_a_free_buffer_is_updated_in_place(device):
    """No Tensor holds the value: the step writes into the variable's own buffer
    (no copy), as a steady-state training loop needs. (The cpu device computes
    every step on copies, its way of being all or nothing, so this is for the
    kernel devices.)"""
    if device == "cpu":
        pytest.skip("the cpu device's optim always returns new buffers")
    v = ad.Variable(np.zeros(4, np.float32))
    opt = ad.optimizers.SGD(1.0)
    _step(opt, v)                      # the first step copies: v adopted a constant's buffer
    buffer = v._data
    _step(opt, v)
    assert v._data is buffer
    np.testing.assert_array_equal(v.numpy(), [-2.0] * 4)


def test_a_lease_is_held_by_views_and_released_with_them(device):
    if device == "cpu":
        pytest.skip("nothing writes into a cpu variable's buffer: its reads hold no lease")
    v = ad.Variable(np.zeros(4, np.float32))
    opt = ad.optimizers.SGD(1.0)
    _step(opt, v)
    view = ad.transpose(ad.reshape(v.read_value(), (2, 2)))
    assert not v._writable()
    del view
    assert v._writable()


def test_assign_from_another_variable_keeps_both_values_apart(device):
    w = ad.Variable(np.ones(3, np.float32))
    v = ad.Variable(np.zeros(3, np.float32))
    opt_w, opt_v = ad.optimizers.SGD(1.0), ad.optimizers.SGD(1.0)
    _step(opt_w, w)                    # w = 0, in a buffer of its own
    v.assign(w)                        # v shares w's buffer for now
    _step(opt_w, w)
    np.testing.assert_array_equal(v.numpy(), [0.0] * 3)
    _step(opt_v, v)
    _step(opt_w, w)
    np.testing.assert_array_equal(w.numpy(), [-2.0] * 3)
    np.testing.assert_array_equal(v.numpy(), [-1.0] * 3)


def test_an_exported_buffer_is_never_written(device):
    v = ad.Variable(np.zeros(3, np.float32))
    opt = ad.optimizers.SGD(1.0)
    _step(opt, v)
    outside = np.from_dlpack(v) if device != "cuda:0" else None
    _step(opt, v)
    if outside is not None:
        np.testing.assert_array_equal(outside, [-1.0] * 3)
    np.testing.assert_array_equal(v.numpy(), [-2.0] * 3)


# -- threads --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [d for d in ("cpu", "emulated") if d in ad.devices.available()])
def test_reads_while_another_thread_trains(name):
    """The issue's scenario: one thread runs optimizer steps in a loop, another
    reads the variable 200 times. Every step lowers every element by 1, so a
    read whose elements differ mixes two steps; a read that differs when looked
    at again later changed after it was returned. Neither may happen."""
    with ad.device(name):
        v = ad.Variable(np.zeros(4096, np.float32))
        opt = ad.optimizers.SGD(1.0)
        g = ad.ones((4096,))
        stop = threading.Event()
        steps = []

        def train():
            with ad.device(name):
                while not stop.is_set():
                    opt.apply_gradients([(g, v)])
                    steps.append(1)

        trainer = threading.Thread(target=train)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often, so reads land between steps
        trainer.start()
        try:
            reads, seen = [], set()
            deadline = time.monotonic() + 30
            # both threads busy for a while, until reads saw the variable change
            while (len(reads) < 200 or len(steps) < 20 or len(seen) < 2) and time.monotonic() < deadline:
                t = v.read_value()
                reads.append((t, t.numpy().copy()))
                seen.add(float(reads[-1][1][0]))
        finally:
            stop.set()
            trainer.join()
            sys.setswitchinterval(interval)
        mixed = sum(1 for _, a in reads if not np.all(a == a[0]))
        changed = sum(1 for t, a in reads if not np.array_equal(t.numpy(), a))
        assert (mixed, changed) == (0, 0)
        assert len(steps) > 0 and len({a[0] for _, a in reads}) > 1, "the threads never overlapped"


def test_concurrent_assign_add_loses_no_update(device):
    v = ad.Variable(0.0)
    one = ad.constant(1.0)

    def add():
        with ad.device(device):
            for _ in range(300):
                v.assign_add(one)

    threads = [threading.Thread(target=add) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert float(v) == 900.0


def test_save_while_training_writes_one_moment(device, tmp_path):
    """Two variables stepped together stay equal in every checkpoint."""
    a = ad.Variable(np.zeros(1000, np.float32))
    b = ad.Variable(np.zeros(1000, np.float32))
    opt = ad.optimizers.SGD(1.0)
    g = ad.ones((1000,))
    stop = threading.Event()

    def train():
        with ad.device(device):
            while not stop.is_set():
                opt.apply_gradients([(g, a), (g, b)])

    trainer = threading.Thread(target=train)
    trainer.start()
    seen = set()
    try:
        for i in range(40):
            path = tmp_path / f"c{i}.safetensors"
            ad.save(path, {"a": a, "b": b, "opt": opt})
            loaded = ad.load(path)
            va, vb = loaded["a"].numpy(), loaded["b"].numpy()
            assert np.all(va == va[0]) and np.all(vb == vb[0]) and va[0] == vb[0]
            assert -va[0] == int(loaded["opt.iteration"]), "iterations from another step"
            seen.add(float(va[0]))
    finally:
        stop.set()
        trainer.join()
    assert len(seen) > 1, "the threads never overlapped"


# -- all or nothing: optimizer steps ------------------------------------------------------------------

def _state(opt, variables):
    return [v.numpy().copy() for v in list(variables) + opt.variables]


def _model(device, dtypes=(np.float32, np.float32)):
    rng = np.random.default_rng(0)
    return [ad.Variable(rng.standard_normal((3, 2)).astype(dt)) for dt in dtypes]


class Fault(Exception):
    pass


OPTIMIZERS = [lambda: ad.optimizers.Adam(0.1), lambda: ad.optimizers.SGD(0.1, momentum=0.9),
              lambda: ad.optimizers.RMSprop(0.1, centered=True), lambda: ad.optimizers.Adagrad(0.1)]


def _fails_and_changes_nothing(opt, variables, grads, exc=Fault):
    before = _state(opt, variables)
    with pytest.raises(exc):
        opt.apply_gradients(zip(grads, variables))
    after = _state(opt, variables)
    assert all(np.array_equal(x, y) for x, y in zip(before, after)), "a failed step changed state"


@pytest.mark.parametrize("make", range(len(OPTIMIZERS)))
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64)],
                         ids=["one-group", "two-groups"])
def test_a_fault_in_the_fused_update_changes_nothing(device, make, dtypes, monkeypatch):
    """The device's optim kernel fails on its k-th call (one call per dtype
    group), after a step that worked: every variable, slot and iterations
    stay as they were; the next step then works."""
    variables = _model(device, dtypes)
    grads = [ad.ones(v.shape, v.dtype) for v in variables]
    opt = OPTIMIZERS[make]()
    opt.apply_gradients(zip(grads, variables))
    dev = ad.devices.get(device)
    real = type(dev).optim
    for k in range(len(set(dtypes))):
        calls = []

        def failing(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == k + 1:
                raise Fault(f"injected on call {k + 1}")
            return real(self, *args, **kwargs)
        monkeypatch.setattr(type(dev), "optim", failing)
        _fails_and_changes_nothing(opt, variables, grads)
        monkeypatch.setattr(type(dev), "optim", real)
    opt.apply_gradients(zip(grads, variables))
    assert int(opt.iterations) == 2


def test_a_fault_inside_the_cpu_rule_changes_nothing(monkeypatch):
    """On the cpu the rule runs variable by variable: a fault at the k-th
    variable must not leave the first k - 1 updated."""
    from gpuad.devices import cpu_optim
    with ad.device("cpu"):
        variables = _model("cpu", (np.float32,) * 3)
        grads = [ad.ones(v.shape) for v in variables]
        opt = ad.optimizers.Adam(0.1)
        opt.apply_gradients(zip(grads, variables))
        real = cpu_optim._RULES["adam"]
        for k in range(3):
            calls = []

            def failing(*args, k=k):
                calls.append(1)
                if len(calls) == k + 1:
                    raise Fault
                return real(*args)
            monkeypatch.setitem(cpu_optim._RULES, "adam", failing)
            _fails_and_changes_nothing(opt, variables, grads)
        monkeypatch.setitem(cpu_optim._RULES, "adam", real)


@pytest.mark.skipif("emulated" not in ad.devices.available(), reason="needs g++")
def test_a_fault_in_a_later_launch_changes_nothing(monkeypatch):
    """More than 256 tensors take several launches; the k-th failing leaves
    every variable as it was (earlier launches worked on copies)."""
    with ad.device("emulated"):
        variables = [ad.Variable(np.full(2, i, np.float32)) for i in range(300)]
        grads = [ad.ones((2,)) for _ in variables]
        opt = ad.optimizers.SGD(0.5, momentum=0.5)
        opt.apply_gradients(zip(grads, variables))
        launcher = ad.devices.get("emulated").launcher
        real = type(launcher).launch
        for k in range(2):
            calls = []

            def failing(self, kernel, *args, **kwargs):
                if kernel.startswith("optim_"):
                    calls.append(1)
                    if len(calls) == k + 1:
                        raise Fault
                return real(self, kernel, *args, **kwargs)
            monkeypatch.setattr(type(launcher), "launch", failing)
            _fails_and_changes_nothing(opt, variables, grads)
        monkeypatch.setattr(type(launcher), "launch", real)


def test_ctrl_c_during_a_step_applies_it_wholly_or_not_at_all(device, monkeypatch):
    """A real SIGINT arrives while the device computes the update. The cpu device
    works on copies, so the step stops cleanly (nothing changed); a kernel device
    writes in place, so Ctrl-C is held back until the step is whole. Either way:
    every variable, slot and iterations agree."""
    variables = _model(device)
    twins = [ad.Variable(v.numpy()) for v in variables]
    grads = [ad.ones(v.shape) for v in variables]
    opt, reference = ad.optimizers.Adam(0.1), ad.optimizers.Adam(0.1)
    opt.apply_gradients(zip(grads, variables))
    reference.apply_gradients(zip(grads, twins))
    before = _state(opt, variables)
    dev = ad.devices.get(device)
    real = type(dev).optim

    def interrupted(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving mid-step
        return real(self, *args, **kwargs)
    monkeypatch.setattr(type(dev), "optim", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opt.apply_gradients(zip(grads, variables))
    monkeypatch.setattr(type(dev), "optim", real)
    if dev.optim_in_place:
        reference.apply_gradients(zip(grads, twins))
        assert int(opt.iterations) == 2
        for v, w in zip(variables, twins):
            np.testing.assert_array_equal(v.numpy(), w.numpy())
    else:
        assert all(np.array_equal(x, y) for x, y in zip(before, _state(opt, variables)))


def test_held_back_interrupts_reach_the_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with state.deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            assert seen == []
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


# -- all or nothing: checkpoint loads -------------------------------------------------------------------

def _saved_model(tmp_path):
    model = ad.nn.Sequential([ad.nn.Dense(3, 4), ad.nn.Dense(4, 2)])
    path = tmp_path / "m.safetensors"
    ad.save(path, model)
    fresh = ad.nn.Sequential([ad.nn.Dense(3, 4), ad.nn.Dense(4, 2)])
    return path, fresh


def test_a_fault_while_staging_a_load_changes_nothing(device, tmp_path, monkeypatch):
    path, fresh = _saved_model(tmp_path)
    dev = ad.devices.get(device)
    real = type(dev).from_host
    for k in range(4):
        before = [v.numpy().copy() for v in fresh.variables]
        calls = []

        def failing(self, array, k=k):
            calls.append(1)
            if len(calls) == k + 1:
                raise MemoryError("injected")
            return real(self, array)
        monkeypatch.setattr(type(dev), "from_host", failing)
        with pytest.raises(MemoryError):
            ad.load(path, into=fresh)
        monkeypatch.setattr(type(dev), "from_host", real)
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, fresh.variables))


@pytest.mark.parametrize("exc", [Fault, KeyboardInterrupt])
def test_a_fault_in_the_assign_phase_of_a_load_changes_nothing(device, tmp_path, monkeypatch, exc):
    """The commit itself fails half way (on the 3rd of 4 variables): the two
    already switched are switched back."""
    path, fresh = _saved_model(tmp_path)
    before = [v.numpy().copy() for v in fresh.variables]
    real = ad.Variable._adopt
    calls = []

    def failing(self, value):
        calls.append(1)
        if len(calls) == 3:
            raise exc()
        return real(self, value)
    monkeypatch.setattr(ad.Variable, "_adopt", failing)
    with pytest.raises(exc):
        ad.load(path, into=fresh)
    monkeypatch.setattr(ad.Variable, "_adopt", real)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, fresh.variables))


def test_ctrl_c_during_the_assign_phase_of_a_load_applies_it_whole(device, tmp_path, monkeypatch):
    path, fresh = _saved_model(tmp_path)
    real = ad.Variable._adopt
    calls = []

    def interrupted(self, value):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, value)
    monkeypatch.setattr(ad.Variable, "_adopt", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ad.load(path, into=fresh)
    monkeypatch.setattr(ad.Variable, "_adopt", real)
    saved = ad.load(path)
    for key, v in fresh.named_variables():
        np.testing.assert_array_equal(v.numpy(), saved[key].numpy())
