"""The one bind point and the self-describing rows (gpuad/ops/core.py, table.py).

- every primitive has a row whose shape rule agrees with its kernel, on a
  sample call per primitive;
- bad input raises from the rule, before any kernel runs;
- no device kernel runs except through ``bind`` (a device that refuses any
  other caller trains, checkpoints and restores a model);
- the tape keeps only each row's declared residuals;
- rows are readable: named VJPs, functors that exist in kernels/.
"""
from __future__ import annotations

import gc
import re
import traceback
import weakref
from pathlib import Path

import numpy as np
import pytest

import gpuad as ad
from gpuad import devices
from gpuad.devices import KERNEL_SET
from gpuad.devices.cpu import CpuDevice
from gpuad.ops import core, table as T
from gpuad.ops.table import PRIMITIVES
from .ops.infer_check import CheckInfer, InferMismatch

ROOT = Path(__file__).resolve().parents[1]


def _t(values, dtype=np.float32):
    return ad.constant(np.asarray(values, dtype=dtype))


def _f(*shape):
    return _t(np.linspace(0.25, 1.5, int(np.prod(shape))).reshape(shape))


def _i(values):
    return _t(values, np.int64)


def _b(values):
    return _t(values, np.bool_)


def _unary_sample(name):
    if name == "logical_not":
        return lambda: ((_b([True, False]),), {})
    return lambda: ((_f(2, 3),), {})


# name -> a function giving (inputs, attrs) of one valid call
SAMPLES = {name: _unary_sample(name) for name, p in PRIMITIVES.items() if p.family == "unary"}
SAMPLES.update({name: (lambda: ((_f(2, 3), _f(2, 3)), {}))
                for name, p in PRIMITIVES.items() if p.family == "unary_grad"})
SAMPLES.update({name: (lambda n=name: ((_b([[True], [False]]), _b([True, True, False])) if
                                       n.startswith("logical") else (_f(2, 1), _f(3)), {}))
                for name, p in PRIMITIVES.items() if p.family == "binary"})
SAMPLES.update({name: (lambda: ((_f(2, 3, 4),), {"axes": (0, 2), "keepdims": False}))
                for name, p in PRIMITIVES.items() if p.family == "reduce"})
SAMPLES.update({
    "argmax": lambda: ((_f(2, 3),), {"axis": 1}),
    "argmin": lambda: ((_f(2, 3),), {"axis": 0}),
    "where": lambda: ((_b([True, False, True]), _f(2, 3), _f(1, 3)), {}),
    "cast": lambda: ((_f(2, 3),), {"dtype": np.dtype(np.int32)}),
    "matmul": lambda: ((_f(5, 2, 3), _f(4, 3)), {"transpose_a": False, "transpose_b": True}),
    "reshape": lambda: ((_f(2, 3),), {"shape": (3, 2)}),
    "transpose": lambda: ((_f(2, 3, 4),), {"perm": (2, 0, 1)}),
    "broadcast_to": lambda: ((_f(3, 1),), {"shape": (2, 3, 4)}),
    "strided_slice": lambda: ((_f(4, 5),), {"key": (slice(1, 4, 2), 3, None)}),
    "strided_slice_grad": lambda: ((_f(2),), {"shape": (4, 5), "key": (slice(1, 4, 2), 3)}),
    "concat": lambda: ((_f(2, 3), _f(2, 1), _f(2, 2)), {"axis": 1}),
    "gather": lambda: ((_f(4, 3), _i([[3, 0], [1, 1]])), {"axis": 0}),
    "scatter_add": lambda: ((_f(2, 2, 3), _i([[3, 0], [1, 1]])), {"axis": 0, "shape": (4, 3)}),
    "one_hot": lambda: ((_i([0, 2, 5]),), {"depth": 4, "on_value": 1.0, "off_value": 0.0,
                                           "dtype": np.dtype(np.float32)}),
    "softmax": lambda: ((_f(2, 3),), {"axis": 1}),
    "log_softmax": lambda: ((_f(2, 3),), {"axis": 0}),
    "softmax_cross_entropy": lambda: ((_f(2, 3), _f(2, 3)), {"axis": 1}),
    "fill": lambda: ((), {"shape": (2, 0, 3), "value": 7, "dtype": np.dtype(np.int32),
                          "device": devices.current()}),
    "constant": lambda: ((), {"value": np.ones((3, 2)), "device": devices.current()}),
    "random_uniform": lambda: ((), _random_attrs()),
    "random_normal": lambda: ((), _random_attrs()),
    "copy": lambda: ((_f(2, 3),), {"device": devices.get("cpu")}),
    "read_variable": lambda: ((), {"variable": ad.Variable(np.ones((2, 3)))}),
})


def _random_attrs():
    from gpuad.random import _Stream
    return {"shape": (3, 2), "dtype": np.dtype(np.float64), "stream": _Stream(5),
            "device": devices.current()}


# The effectful writes return nothing; tests/test_state.py covers them.
WRITES = {"assign", "assign_add", "assign_sub", "apply_update"}


def test_every_primitive_has_a_sample_call():
    assert set(SAMPLES) | WRITES == set(PRIMITIVES), \
        "add a sample call for the new primitive to SAMPLES"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_shape_rule_agrees_with_the_kernel(name, device):
    prim = PRIMITIVES[name]
    inputs, attrs = SAMPLES[name]()
    shape, dtype = prim.infer(*inputs, **attrs)
    checker = CheckInfer()
    with core.interpreting(checker):
        out = core.bind(prim, inputs, **attrs)
    assert name in checker.checked
    assert (out.shape, out._data.dtype) == (tuple(shape), dtype)


def test_a_rule_that_disagrees_with_its_kernel_is_caught():
    wrong = core.Primitive("negative", lambda x: ((7,), x._data.dtype), "unary")
    with core.interpreting(CheckInfer()):
        with pytest.raises(InferMismatch, match="shape rule said"):
            core.bind(wrong, (_f(2, 3),))


BAD = [
    (lambda: _f(2, 3) + _f(4), "Incompatible shapes"),
    (lambda: ad.matmul(_f(2, 3), _f(2, 3)), "Matrix size-incompatible"),
    (lambda: ad.where(_f(3), _f(3), _f(3)), "condition must be a bool"),
    (lambda: ad.concat([_f(2, 3), _f(3, 3)], axis=1), "Dimension mismatch"),
    (lambda: ad.reshape(_f(2, 3), (4, 2)), "cannot hold|has 8"),
    (lambda: _f(2) + _t([1.0, 2.0], np.float64), "expected to be a float"),
    (lambda: ad.sqrt(_i([1, 2])), "does not support int64"),
    (lambda: ad.gather(_f(4), _f(2)), "indices must be an integer"),
    (lambda: ad.Variable([1.0, 2.0]).assign([1.0, 2.0, 3.0]), "Shape mismatch"),
    (lambda: ad.random.normal((2,), dtype=ad.int32), "makes float tensors"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_raises_from_the_rule_before_any_kernel(case, kernel_calls):
    make, message = BAD[case]
    with pytest.raises((ValueError, TypeError), match=message):
        with ad.GradientTape() as tape:
            kernel_calls.clear()
            tape.watch(ad.constant(1.0))
            make()
    # the operands were made (constants, a variable, its read); the op itself never ran
    ran = [n for n in kernel_calls if n not in ("constant", "fill", "read_variable")]
    assert ran == [], f"kernels ran before the error: {ran}"


# -- no kernel outside bind ------------------------------------------------------------------

class _Guarded(CpuDevice):
    """The cpu device, refusing every kernel call and host-to-device copy that
    does not come from inside ``bind`` (the eager interpreter)."""

    name = "guarded"
    kind = "guarded"
    inside = 0
    offences: list = []

    def _check(self, what):
        if not _Guarded.inside:
            _Guarded.offences.append("".join(traceback.format_stack(limit=6)[:-2]) + what)

    def from_host(self, array):
        self._check("from_host")
        return super().from_host(array)

    def kernel(self, family, op):
        k = super().kernel(family, op)

        def guarded(*args, **kwargs):
            self._check(f"{family}/{op}")
            return k(*args, **kwargs)
        return guarded


def _guard_family(family):
    def method(self, op, *args, **kwargs):
        self._check(f"{family}/{op}")
        return getattr(CpuDevice, family)(self, op, *args, **kwargs)
    return method


for _family in KERNEL_SET:
    setattr(_Guarded, _family, _guard_family(_family))


@pytest.fixture
def guarded(monkeypatch):
    monkeypatch.setattr(devices, "_factories", dict(devices._factories))
    monkeypatch.setattr(devices, "_instances", dict(devices._instances))
    devices.register("guarded", lambda name: _Guarded())
    real = core.eager

    def inside(prim, inputs, attrs):
        _Guarded.inside += 1
        try:
            return real(prim, inputs, attrs)
        finally:
            _Guarded.inside -= 1
    monkeypatch.setattr(core, "eager", inside)
    _Guarded.offences = []
    yield devices.get("guarded")
    assert not _Guarded.offences, "kernels ran outside bind:\n\n" + "\n\n".join(_Guarded.offences)


def test_no_kernel_runs_outside_bind(guarded, tmp_path):
    """Everything a training script does -- constants, initialisers, random
    numbers, layers, losses, a tape, optimizer steps, assign, copies, a
    checkpoint saved and loaded -- reaches the device only through bind."""
    with ad.device("guarded"):
        ad.random.set_seed(3)
        model = ad.nn.Sequential([ad.nn.Dense(4, 8, activation="relu"), ad.nn.Dense(8, 3)])
        x = ad.random.normal((5, 4))
        labels = ad.one_hot(ad.constant([0, 1, 2, 1, 0]), 3)
        for opt in (ad.optimizers.Adam(0.01), ad.optimizers.SGD(0.1, momentum=0.9)):
            for _ in range(2):
                with ad.GradientTape() as tape:
                    logits = model(x)
                    loss = ad.reduce_mean(ad.nn.softmax_cross_entropy_with_logits(labels, logits))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
        v = ad.Variable(ad.zeros((3,)))
        v.assign([1.0, 2.0, 3.0])
        v.assign_add(ad.ones((3,)))
        v.assign_sub(ad.ones((3,)))
        _ = ad.random.uniform((2,)) + ad.fill((2,), 1.5) + ad.range(2.0) + ad.eye(2)[0]
        _ = x.to("cpu").to("guarded")
        ad.save(tmp_path / "m.safetensors", model)
        ad.load(tmp_path / "m.safetensors", into=model)
        assert float(loss) > 0


def test_the_guard_sees_a_kernel_called_directly(guarded):
    guarded.fill("fill", (2,), 1.0, np.dtype(np.float32))
    guarded.from_host(np.ones(2))
    assert len(_Guarded.offences) == 2 and "fill/fill" in _Guarded.offences[0]
    _Guarded.offences.clear()


# -- residuals -----------------------------------------------------------------------------------

def test_the_tape_keeps_only_declared_residuals(device):
    x = ad.constant(np.ones((3, 3), np.float32))
    with ad.GradientTape() as tape:
        tape.watch(x)
        a, b = x * 2.0, x * 3.0
        s = a + b                       # add keeps nothing: a and b are free to go
        y = ad.reduce_sum(ad.exp(s))    # exp keeps its output, reduce_sum nothing
    refs = [weakref.ref(t) for t in (a, b, s)]
    del a, b, s
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), 5 * np.exp(5.0) * np.ones((3, 3)),
                               rtol=1e-6)


def test_every_row_declares_residuals_among_its_inputs():
    for p in PRIMITIVES.values():
        if p.vjps is None or callable(p.vjps):
            continue
        assert p.keep_inputs is not None and len(p.keep_inputs) == len(p.vjps), p.name


# -- readable rows ---------------------------------------------------------------------------------

def test_vjps_have_names_in_tracebacks():
    for p in PRIMITIVES.values():
        if isinstance(p.vjps, tuple):
            for fn in p.vjps:
                if fn is not None:
                    assert fn.__code__.co_name != "<lambda>", p.name
    x = ad.constant(1.0)
    with pytest.raises(ValueError) as failure:
        T.MULTIPLY.vjps[0](None, None, x, x)  # g=None: fails inside the VJP
    names = [f.name for f in traceback.extract_tb(failure.value.__traceback__)]
    assert "multiply_vjp" in names


def test_elementwise_functors_exist_in_the_kernels():
    source = "\n".join(p.read_text() for p in (ROOT / "kernels").glob("*.cu*"))
    defined = set(re.findall(r"struct\s+(\w+)\s*\{", source)) | set(
        re.findall(r"GPUAD_EW_\w+\((\w+),", source))
    for p in PRIMITIVES.values():
        if p.family in ("unary", "binary", "unary_grad", "where", "cast", "fill"):
            assert p.functor, f"{p.name} names no scalar functor"
            assert p.functor in defined, f"{p.name}: no functor {p.functor} in kernels/"


def test_one_name_per_primitive():
    for name, p in PRIMITIVES.items():
        assert p.name == name
        assert getattr(T, name.upper()) is p, f"table.{name.upper()} should be the {name} row"
        if p.family is not None:
            assert name in KERNEL_SET[p.family]


# -- allocation failures ----------------------------------------------------------------------------

def test_a_kernel_allocation_failure_is_gpuads_out_of_memory_error(monkeypatch):
    """Whatever MemoryError a device raises (NumPy's, CuPy's), bind turns it into
    gpuad.OutOfMemoryError naming the op and the size of the result it was making."""
    x = ad.constant(np.ones((3, 4), np.float32), device="cpu")

    def fail(*buffers, **attrs):
        raise MemoryError("Unable to allocate 48 B")
    monkeypatch.setitem(T.MULTIPLY.kernels, x._device, fail)
    with ad.GradientTape() as tape:
        tape.watch(x)
        with pytest.raises(ad.OutOfMemoryError) as info:
            x * x
    assert tape._nodes == []  # a failed op records nothing
    message = str(info.value)
    assert message.startswith("multiply: out of memory on cpu") and "[3, 4]" in message
    assert info.value.requested == 48 and info.value.device == "cpu"


def test_an_op_whose_result_cannot_be_allocated_raises_out_of_memory(device):
    # 128 TiB: refused by the allocator (or by the kernel devices' check before
    # it), nothing is touched. On the cpu broadcast_to is a view, so add fails.
    with pytest.raises(ad.OutOfMemoryError, match=r"(?i)^(broadcast_to|add): .*out of memory") as info:
        ad.broadcast_to(ad.ones((1,)), (2 ** 45,)) + 1.0
    assert info.value.requested >= 2 ** 47
