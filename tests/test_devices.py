"""The device protocol: every primitive has its kernel on every usable device,
device selection (context manager, GPUAD_DEVICE), and the Philox generator
behind gpuad.random."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuad as ad
from gpuad import devices
from gpuad.devices import KERNEL_SET, philox
from gpuad.ops import infer
from gpuad.ops.core import Primitive, bind
from gpuad.ops.table import PRIMITIVES

ROOT = Path(__file__).resolve().parent.parent
DEVICE_NAMES = devices.available()


def _python(code, **env):
    """Run ``code`` in a fresh interpreter that imports this checkout's gpuad."""
    full_env = {k: v for k, v in os.environ.items() if k != "GPUAD_DEVICE"}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=120)


# -- the kernel set ------------------------------------------------------------------

def test_cpu_is_available():
    assert "cpu" in devices.available()
    assert all(isinstance(n, str) for n in devices.available())


def test_the_table_is_not_empty():
    # guards the tests below against passing vacuously
    assert len(PRIMITIVES) > 40
    assert sum(p.family is not None for p in PRIMITIVES.values()) > 40


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_every_primitive_has_its_kernel_on_every_device(name):
    dev = devices.get(name)
    missing = [f"{p.name} ({p.family})" for p in PRIMITIVES.values()
               if p.family is not None and not dev.supports(p.family, p.name)]
    assert not missing, f"device {name} lacks kernels for: {', '.join(missing)}"
    for p in PRIMITIVES.values():
        if p.family is not None:
            assert p.name in KERNEL_SET[p.family], f"{p.name} is not in KERNEL_SET[{p.family!r}]"
            assert callable(p.kernel(dev)), p.name


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_every_family_is_a_callable_method(name):
    dev = devices.get(name)
    for family in KERNEL_SET:
        assert callable(getattr(dev, family, None)), f"device {name} has no method {family!r}"
        for op in KERNEL_SET[family]:
            assert dev.supports(family, op), f"device {name} does not support {family}/{op}"


def _buf(dev, values, dtype=np.float32):
    return dev.from_host(np.asarray(values, dtype=dtype))


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_elementwise_and_reduce_kernels_really_run(name):
    """supports() is a declaration; calling each element-wise and reduce kernel
    once proves the device implements what it declares."""
    dev = devices.get(name)
    x, y = _buf(dev, [0.25, 0.5, 1.5]), _buf(dev, [0.5, 2.0, 1.0])
    bx, by = _buf(dev, [True, False, True], bool), _buf(dev, [True, True, False], bool)
    for op in sorted(KERNEL_SET["unary"]):
        out = dev.kernel("unary", op)(bx if op.startswith("logical") else x)
        assert dev.to_host(out).shape == (3,), op
    for op in sorted(KERNEL_SET["binary"]):
        args = (bx, by) if op.startswith("logical") else (x, y)
        assert dev.to_host(dev.kernel("binary", op)(*args)).shape == (3,), op
    for op in sorted(KERNEL_SET["unary_grad"]):
        assert dev.to_host(dev.kernel("unary_grad", op)(x, y)).shape == (3,), op
    for op in sorted(KERNEL_SET["reduce"]):
        out = dev.to_host(dev.kernel("reduce", op)(x, axes=(0,), keepdims=False))
        assert out.shape == (), op


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_a_missing_kernel_is_detected_and_a_clear_error(name):
    dev = devices.get(name)
    fake = Primitive("no_such_op", infer.unary("f"), "unary")
    assert not dev.supports(fake.family, fake.name)
    assert not dev.supports("no_such_family", "add")
    # what the table test above would report
    assert not all(dev.supports(p.family, p.name) for p in [*PRIMITIVES.values(), fake]
                   if p.family is not None)
    # and at run time: an error naming the kernel, never a silent host fallback
    with ad.device(name):
        x = ad.constant([1.0, 2.0])
    with pytest.raises(NotImplementedError, match="no_such_op"):
        bind(fake, (x,))
    with pytest.raises(NotImplementedError, match="no_such_op"):
        dev.kernel("binary", "no_such_op")


# -- choosing the device ----------------------------------------------------------------

def test_device_context_places_new_tensors_and_restores():
    before = devices.current()
    with ad.device("cpu") as dev:
        assert dev is devices.get("cpu")
        assert devices.current() is dev
        assert ad.constant(1.0).device == "cpu"
        assert ad.zeros((2,)).device == "cpu"
    assert devices.current() is before


@pytest.fixture
def fake_kind(monkeypatch):
    """A second device kind, ``fake`` (NumPy underneath), registered for one test."""
    from gpuad.devices import cpu as cpu_module

    class Fake(cpu_module.CpuDevice):
        name = "fake"
        kind = "fake"

    monkeypatch.setattr(devices, "_factories", dict(devices._factories))
    monkeypatch.setattr(devices, "_instances", dict(devices._instances))
    devices.register("fake", lambda name: Fake())
    return Fake


def test_device_context_switches_and_restores_between_kinds(fake_kind):
    outer = devices.current()
    with ad.device("fake"):
        assert ad.constant([1.0]).device == "fake"
        with ad.device("cpu"):
            assert ad.constant([1.0]).device == "cpu"
        assert ad.ones((2,)).device == "fake"
        assert (ad.constant([1.0]) * 2.0).device == "fake"
    assert devices.current() is outer
    assert ad.constant(1.0).device == outer.name


def test_device_context_restores_after_an_exception(fake_kind):
    outer = devices.current()
    with pytest.raises(RuntimeError, match="boom"):
        with ad.device("fake"):
            raise RuntimeError("boom")
    assert devices.current() is outer
    assert ad.constant(1.0).device == outer.name


def test_device_argument_overrides_the_context(fake_kind):
    with ad.device("fake"):
        assert ad.constant(1.0, device="cpu").device == "cpu"


def test_unknown_device_names_the_known_kinds():
    with pytest.raises(ValueError, match="tpu") as e:
        with ad.device("tpu"):
            pass
    assert "cpu" in str(e.value)
    with pytest.raises(ValueError, match="cpu"):
        ad.constant(1.0, device="tpu")


def test_gpuad_device_env_is_honoured():
    r = _python("import gpuad; print(gpuad.constant(1.).device)", GPUAD_DEVICE="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cpu"


def test_unknown_gpuad_device_env_is_an_error_naming_the_known_kinds():
    r = _python("import gpuad; print(gpuad.constant(1.).device)", GPUAD_DEVICE="tpu")
    assert r.returncode != 0, r.stdout
    assert "tpu" in r.stderr and "cpu" in r.stderr, r.stderr
    assert "Error" in r.stderr


# -- Philox-4x32-10 and gpuad.random -------------------------------------------------------

def test_philox_known_answer():
    # Random123's known-answer test for philox4x32_10: counter 0, key 0
    words = philox.philox_words(4, 0, 0)
    assert words.dtype == np.uint32
    assert [int(w) for w in words] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_philox_stream_is_split_by_blocks():
    # block offset 1 continues the stream where block 0 ended; a key changes everything
    assert np.array_equal(philox.philox_words(12, 7, 0)[4:], philox.philox_words(8, 7, 1))
    assert np.array_equal(philox.philox_words(6, 7, 0), philox.philox_words(12, 7, 0)[:6])
    assert not np.array_equal(philox.philox_words(4, 7, 0), philox.philox_words(4, 8, 0))


def test_set_seed_makes_draws_reproducible():
    ad.random.set_seed(1234)
    a1, b1 = ad.random.normal((5,)), ad.random.uniform((3, 2))
    ad.random.set_seed(1234)
    a2, b2 = ad.random.normal((5,)), ad.random.uniform((3, 2))
    np.testing.assert_array_equal(a1.numpy(), a2.numpy())
    np.testing.assert_array_equal(b1.numpy(), b2.numpy())
    ad.random.set_seed(1235)
    assert not np.array_equal(ad.random.normal((5,)).numpy(), a1.numpy())


def test_successive_draws_differ():
    ad.random.set_seed(3)
    assert not np.array_equal(ad.random.uniform((4,)).numpy(), ad.random.uniform((4,)).numpy())


@pytest.mark.parametrize("dtype", [ad.float32, ad.float64])
def test_uniform_lies_in_unit_interval(dtype):
    ad.random.set_seed(0)
    u = ad.random.uniform((100_000,), dtype=dtype).numpy()
    assert u.dtype == dtype.numpy and u.shape == (100_000,)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(u.std() - np.sqrt(1 / 12)) < 0.01


@pytest.mark.parametrize("dtype", [ad.float32, ad.float64])
def test_normal_moments(dtype):
    ad.random.set_seed(0)
    z = ad.random.normal((100_000,), dtype=dtype).numpy().astype(np.float64)
    assert np.all(np.isfinite(z))
    assert abs(z.mean()) < 0.02        # standard error 0.003
    assert abs(z.std() - 1.0) < 0.02
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.01


def test_mean_and_stddev_arguments():
    ad.random.set_seed(0)
    z = ad.random.normal((50_000,), mean=3.0, stddev=0.5).numpy()
    assert abs(z.mean() - 3.0) < 0.02 and abs(z.std() - 0.5) < 0.02
    u = ad.random.uniform((50_000,), minval=-2.0, maxval=2.0).numpy()
    assert u.min() >= -2.0 and u.max() < 2.0 and abs(u.mean()) < 0.05


@pytest.mark.parametrize("draw", ["uniform", "normal"])
@pytest.mark.parametrize("dtype", [ad.float32, ad.float64])
def test_draws_of_different_shapes_are_prefixes(draw, dtype):
    """Element k depends only on the seed, the stream offset and k."""
    fn = getattr(ad.random, draw)
    ad.random.set_seed(42)
    long = fn((10, 3), dtype=dtype).numpy().reshape(-1)
    ad.random.set_seed(42)
    short = fn((7,), dtype=dtype).numpy()
    ad.random.set_seed(42)
    square = fn((2, 2), dtype=dtype).numpy().reshape(-1)
    np.testing.assert_array_equal(short, long[:7])
    np.testing.assert_array_equal(square, long[:4])


def test_op_seed_selects_an_independent_stream():
    ad.random.set_seed(1)
    a = ad.random.normal((6,), seed=5).numpy()
    ad.random.set_seed(1)
    b = ad.random.normal((6,), seed=5).numpy()
    c = ad.random.normal((6,), seed=6).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_random_draws_are_the_same_on_every_device(name):
    # uniforms are bit-identical; normals go through log/cos, whose last bit
    # may differ between NumPy and a device's libm
    for draw, exact in ((ad.random.uniform, True), (ad.random.normal, False)):
        ad.random.set_seed(9)
        ref = draw((33,), device="cpu").numpy()
        ad.random.set_seed(9)
        got = draw((33,), device=name)
        assert got.device == name
        if exact:
            np.testing.assert_array_equal(got.numpy(), ref)
        else:
            np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-6)
