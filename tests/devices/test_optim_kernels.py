"""kernels/optim.cu through gpuad/devices/launch/optim.py on the emulated launcher, bit for
bit against the cpu device: tensors far longer than the grid's stride (a thread stays in
one tensor for many elements) mixed with one-element tensors (a thread's next element
lies several tensors on), for every rule and both float dtypes."""
import os
import shutil

import numpy as np
import pytest

if not shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")):
    pytest.skip("the emulated device compiles kernels with g++, which is missing", allow_module_level=True)

import gpuad.devices as devices  # noqa: E402
from gpuad.devices.launch import KernelDevice  # noqa: E402
from gpuad.devices.emulated import HostLauncher  # noqa: E402

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


@pytest.mark.parametrize("op,hyper,n_slots", RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_and_short_tensors_bit_for_bit(op, hyper, n_slots, dtype):
    emu, cpu = KernelDevice(HostLauncher(poison=True)), devices.get("cpu")
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
                dev.optim(op, p, [g.copy() for g in grads], s, h, cache=cache if name == "emu" else None)
        for a, b in zip(state["emu"][0] + sum(state["emu"][1], []), state["cpu"][0] + sum(state["cpu"][1], [])):
            np.testing.assert_array_equal(a, b, err_msg=f"{op} {hyper} wd={weight_decay}")
