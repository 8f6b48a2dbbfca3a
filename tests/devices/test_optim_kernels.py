"""The optim family: kernels/optim.cu through gpuad/devices/launch/optim.py on the emulated
launcher, bit for bit against the cpu device (gpuad/devices/cpu_optim.py), and the contract
of both: ``optim(...) -> (new_params, new_slots)``, all or nothing.

- Bit for bit: tensors far longer than the grid's stride (a thread stays in one tensor for
  many elements) mixed with one-element tensors (a thread's next element lies several
  tensors on), for every rule and both float dtypes.
- All or nothing: a fault injected at each stage (the cpu rule on the k-th variable; the
  emulated launcher's k-th copy, table upload or launch, over several launches) leaves
  every input buffer bit-identical; ``in_place=False`` never writes an input; one launch
  updates the inputs in place, several update copies but for the last; the results are the
  same whichever way they were computed."""
import os
import shutil

import numpy as np
import pytest

import gpuad.devices as devices
from gpuad.devices import cpu_optim
from gpuad.devices.launch import KernelDevice, KernelLaunchError
from gpuad.devices.launch import optim as launch_optim

needs_gxx = pytest.mark.skipif(not shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")),
                               reason="the emulated device compiles kernels with g++, which is missing")

# (op, hyper without lr/weight_decay, slot kinds)
RULES = [
    ("sgd", {"momentum": 0.0, "nesterov": False}, 0),
    ("sgd", {"momentum": 0.9, "nesterov": False}, 1),
    ("sgd", {"momentum": 0.7, "nesterov": True}, 1),
    ("adam", {"alpha": 0.01, "one_minus_beta_1": 0.1, "one_minus_beta_2": 0.001, "epsilon": 1e-7,
              "amsgrad": False}, 2),
    ("adam", {"alpha": 0.01, "one_minus_beta_1": 0.1, "one_minus_beta_2": 0.001, "epsilon": 1e-7,
              "amsgrad": True}, 3),
    ("rmsprop", {"rho": 0.9, "one_minus_rho": 0.1, "momentum": 0.0, "epsilon": 1e-7, "centered": False}, 1),
    ("rmsprop", {"rho": 0.9, "one_minus_rho": 0.1, "momentum": 0.5, "epsilon": 1e-7, "centered": False}, 2),
    ("rmsprop", {"rho": 0.8, "one_minus_rho": 0.2, "momentum": 0.0, "epsilon": 1e-7, "centered": True}, 2),
    ("rmsprop", {"rho": 0.8, "one_minus_rho": 0.2, "momentum": 0.9, "epsilon": 1e-7, "centered": True}, 3),
    ("adagrad", {"epsilon": 1e-7}, 1),
]
# the emulated grid is 4 blocks x 256 threads: a stride of 1024 elements
SIZES = [5000, 1, 1, 2, 1, 3000, 1, 1025, 1, 1023, 1024, 7, 2049, 1]
ADAM = dict(RULES[4][1], lr=0.05, weight_decay=0.01)  # amsgrad: three slot kinds


def _emulated(launcher_class=None, **kwargs):
    from gpuad.devices.emulated import HostLauncher
    return KernelDevice((launcher_class or HostLauncher)(poison=True, **kwargs))


@needs_gxx
@pytest.mark.parametrize("op,hyper,n_slots", RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_and_short_tensors_bit_for_bit(op, hyper, n_slots, dtype):
    emu, cpu = _emulated(), devices.get("cpu")
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(n).astype(dtype) for n in SIZES]
    slots = [[np.abs(rng.standard_normal(n)).astype(dtype) for n in SIZES] for _ in range(n_slots)]
    for weight_decay in (None, 0.01):
        h = dict(hyper, lr=0.05, weight_decay=weight_decay)
        state = {name: ([p.copy() for p in params], [[b.copy() for b in s] for s in slots])
                 for name in ("cpu", "emu")}
        cache = {}
        for step in range(2):
            grads = [rng.standard_normal(n).astype(dtype) for n in SIZES]
            for name, dev in (("cpu", cpu), ("emu", emu)):
                p, s = state[name]
                new_p, new_s = dev.optim(op, p, [g.copy() for g in grads], s, h,
                                         cache=cache if name == "emu" else None)
                assert len(new_p) == len(p) and [len(k) for k in new_s] == [len(k) for k in s]
                state[name] = (new_p, new_s)
        for a, b in zip(state["emu"][0] + sum(state["emu"][1], []), state["cpu"][0] + sum(state["cpu"][1], [])):
            np.testing.assert_array_equal(a, b, err_msg=f"{op} {hyper} wd={weight_decay}")


# -- the contract: (new_params, new_slots), all or nothing ------------------------------------

def _problem(n=10, dtype=np.float32, seed=1):
    """Adam (amsgrad) over n small tensors and an empty one: params, grads, slots."""
    rng = np.random.default_rng(seed)
    sizes = [(i % 3 + 1) * 5 for i in range(n)] + [0]
    params = [rng.standard_normal(k).astype(dtype) for k in sizes]
    grads = [rng.standard_normal(k).astype(dtype) for k in sizes]
    slots = [[np.abs(rng.standard_normal(k)).astype(dtype) for k in sizes] for _ in range(3)]
    return params, grads, slots


def _snapshot(params, grads, slots):
    return [b.tobytes() for b in [*params, *grads, *(x for s in slots for x in s)]]


def _reference(params, grads, slots):
    """The step computed by the cpu rules, one variable at a time, in place on copies: what
    the cpu device's optim computed before it returned its results."""
    p = [w.copy() for w in params]
    s = [[b.copy() for b in k] for k in slots]
    f = p[0].dtype.type
    lr, wd = f(ADAM["lr"]), f(ADAM["weight_decay"])
    args = cpu_optim._ARGS["adam"](ADAM, f)
    for j, (w, g) in enumerate(zip(p, grads)):
        if w.size:
            t = w * wd
            t *= lr
            w -= t
            cpu_optim._RULES["adam"](w, g, [k[j] for k in s], lr, *args)
    return p, s


def _assert_equal(got, want):
    (gp, gs), (wp, ws) = got, want
    assert len(gp) == len(wp) and [len(k) for k in gs] == [len(k) for k in ws]
    for a, b in zip(gp + sum(gs, []), wp + sum(ws, [])):
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("in_place", [True, False])
def test_cpu_returns_copies_with_the_in_place_results(in_place):
    params, grads, slots = _problem()
    before = _snapshot(params, grads, slots)
    out = devices.get("cpu").optim("adam", params, grads, slots, ADAM, in_place=in_place)
    _assert_equal(out, _reference(params, grads, slots))
    assert _snapshot(params, grads, slots) == before
    new_params, new_slots = out
    assert not any(a is b for a, b in zip(new_params + sum(new_slots, []), params + sum(slots, [])))


@pytest.mark.parametrize("k", range(10))
def test_cpu_fault_on_the_kth_variable_leaves_the_inputs_untouched(monkeypatch, k):
    params, grads, slots = _problem()
    before = _snapshot(params, grads, slots)
    calls = []
    rule = cpu_optim._RULES["adam"]

    def faulty(*args):
        calls.append(1)
        if len(calls) == k + 1:
            raise FloatingPointError(f"injected fault on variable {k}")
        rule(*args)
    monkeypatch.setitem(cpu_optim._RULES, "adam", faulty)
    with pytest.raises(FloatingPointError, match="injected"):
        devices.get("cpu").optim("adam", params, grads, slots, ADAM)
    assert _snapshot(params, grads, slots) == before


def test_cpu_takes_read_only_and_strided_inputs():
    params, grads, slots = _problem(3)
    for b in [*params, *(x for s in slots for x in s)]:
        b.flags.writeable = False
    wide = [np.repeat(g, 2)[::2] for g in grads]  # strided views of the same values
    _assert_equal(devices.get("cpu").optim("adam", params, wide, slots, ADAM), _reference(params, grads, slots))


def test_no_parameters_gives_empty_lists():
    for name in ("cpu", "emulated") if shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) else ("cpu",):
        assert devices.get(name).optim("adagrad", [], [], [[]], {"lr": 0.1, "epsilon": 1e-7}) == ([], [[]])


@needs_gxx
@pytest.mark.parametrize("limit", [launch_optim.MAX_TENSORS, 4], ids=["one-launch", "three-launches"])
def test_emulated_in_place_updates_the_last_launch_in_place(monkeypatch, limit):
    """One launch: every returned buffer is its input, updated. Several: the tensors of
    every launch but the last are new buffers, the inputs behind them untouched."""
    monkeypatch.setattr(launch_optim, "MAX_TENSORS", limit)
    params, grads, slots = _problem()  # 10 tensors with elements: 3 launches of at most 4
    want = _reference(params, grads, slots)
    inputs = params + sum(slots, [])
    originals = [b.copy() for b in inputs]
    launches = []
    dev = _emulated()
    launch = dev.launch
    dev.launch = lambda kernel, *a, **kw: (launches.append(kernel), launch(kernel, *a, **kw))[1]
    out = dev.optim("adam", params, grads, slots, ADAM, cache={})
    _assert_equal(out, want)
    assert launches == ["optim_adam_f32"] * (1 if limit > 10 else 3)
    in_place = set(range(10)) if limit > 10 else {8, 9}
    for j, (a, b) in enumerate(zip(out[0], params)):
        assert (a is b) == (j in in_place or j == 10), j  # (the empty tensor is never written)
    for s in range(3):
        for j, (a, b) in enumerate(zip(out[1][s], slots[s])):
            assert (a is b) == (j in in_place or j == 10), (s, j)
    n = len(params)
    for i, (b, orig) in enumerate(zip(inputs, originals)):
        if i % n not in in_place:
            assert b.tobytes() == orig.tobytes(), i  # a copy was updated, not this input


@needs_gxx
@pytest.mark.parametrize("limit", [launch_optim.MAX_TENSORS, 4], ids=["one-launch", "three-launches"])
def test_emulated_not_in_place_never_writes_the_inputs(monkeypatch, limit):
    monkeypatch.setattr(launch_optim, "MAX_TENSORS", limit)
    params, grads, slots = _problem()
    before = _snapshot(params, grads, slots)
    out = _emulated().optim("adam", params, grads, slots, ADAM, cache={}, in_place=False)
    assert _snapshot(params, grads, slots) == before
    _assert_equal(out, _reference(params, grads, slots))
    assert not any(a is b for a, b in zip(out[0] + sum(out[1], []), params + sum(slots, [])))


def _faulty_launcher(stage, k):
    """A HostLauncher whose k-th (1-based) call of ``stage`` raises."""
    from gpuad.devices.emulated import HostLauncher

    class Faulty(HostLauncher):
        calls = 0

        def _tick(self, name):
            if name == stage:
                type(self).calls += 1
                if type(self).calls == k:
                    raise RuntimeError(f"injected fault in {stage} #{k}")

        def launch(self, kernel, grid, block, args, shared_mem=0):
            self._tick("launch")
            super().launch(kernel, grid, block, args, shared_mem)

        def copy_bytes(self, dst, dst_offset, src, src_offset, nbytes):
            self._tick("copy_bytes")
            super().copy_bytes(dst, dst_offset, src, src_offset, nbytes)

        def from_host(self, array):
            self._tick("from_host")
            return super().from_host(array)
    return Faulty


# 10 tensors, at most 4 per launch: 3 launches, 3 table uploads and, in place, the 8 tensors
# of the first two launches copied with their 3 slots (32 copies; 40 when not in place)
STAGES = [("launch", k) for k in (1, 2, 3)] + [("from_host", k) for k in (1, 2, 3)] + \
         [("copy_bytes", k) for k in (1, 17, 32)]


@needs_gxx
@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("stage,k", STAGES, ids=[f"{s}-{k}" for s, k in STAGES])
def test_emulated_fault_at_any_stage_leaves_the_inputs_untouched(monkeypatch, in_place, stage, k):
    monkeypatch.setattr(launch_optim, "MAX_TENSORS", 4)
    params, grads, slots = _problem()
    before, want = _snapshot(params, grads, slots), _reference(params, grads, slots)
    dev = _emulated(_faulty_launcher(stage, k))
    with pytest.raises(RuntimeError, match="injected fault") as e:
        dev.optim("adam", params, grads, slots, ADAM, cache={}, in_place=in_place)
    if stage == "launch":
        assert isinstance(e.value, KernelLaunchError) and e.value.op == "adam"
    assert _snapshot(params, grads, slots) == before
    # and the same device, the fault spent, then makes the whole step
    _assert_equal(dev.optim("adam", params, grads, slots, ADAM, cache={}, in_place=in_place), want)


@needs_gxx
@pytest.mark.parametrize("k", [1, 2])
def test_emulated_fault_over_more_than_max_tensors_leaves_the_inputs_untouched(k):
    """The real limit: 300 one-element tensors take two launches; either failing leaves
    every input as it was (the first launch updated copies)."""
    assert launch_optim.MAX_TENSORS == 256
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(1).astype(np.float32) for _ in range(300)]
    grads = [rng.standard_normal(1).astype(np.float32) for _ in range(300)]
    slots = [[np.ones(1, np.float32) for _ in range(300)] for _ in range(3)]
    before, want = _snapshot(params, grads, slots), _reference(params, grads, slots)
    dev = _emulated(_faulty_launcher("launch", k))
    with pytest.raises(KernelLaunchError, match="injected fault"):
        dev.optim("adam", params, grads, slots, ADAM, cache={})
    assert _snapshot(params, grads, slots) == before
    _assert_equal(dev.optim("adam", params, grads, slots, ADAM, cache={}), want)
