"""The argument packing check (tests/devices/cupy_packing.py): what CuPy 13.6 and
14 hand the CUDA driver for each kernel argument, compared with the kernel's
parameter (size, alignment, bytes).

It shows the check catches the bugs it exists for (an ``np.void`` struct, which
CuPy 13 rejects; a Python float for a ``float``, which reaches the kernel as half
a double; an ``np.int64`` or Python int for an ``int``; a struct of the wrong size
or alignment; ``None`` for a pointer), that the forms gpuad passes are right, that
a ``Layout``'s bytes as CuPy passes them are ``struct Layout`` field for field, and
that one launch of every kernel family has no mismatch. The same check runs on
every emulated launch of the whole suite (tests/conftest.py).
"""
import os
import shutil
import struct

import numpy as np
import pytest

from gpuad.devices.launch import KernelDevice, optim, strides
from gpuad.devices.launch.common import LAYOUT_DTYPE, make_layout

from . import cupy_packing as cp_pack

pytestmark = [
    pytest.mark.skipif(shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")) is None,
                       reason="the emulated device compiles the CUDA kernels with g++, which is not installed"),
    pytest.mark.skipif(not cp_pack.AVAILABLE, reason="CuPy is not importable: its packing classes are the reference"),
]


@pytest.fixture(scope="module")
def mod():
    from gpuad.devices.emulated import HostLauncher
    return HostLauncher().module()


def param(mod, kernel, index):
    k = mod._kernels[kernel]
    return k.params[index], k.decls[index]


def problems(mod, kernel, index, arg):
    p, _ = param(mod, kernel, index)
    return cp_pack.check_argument(p, arg)


def versions(found):
    return {v for v in cp_pack.RULES if any(f.startswith(f"CuPy {v}") for f in found)}


# -- the parameters the checks below use are what they are said to be --------------------------
def test_parameter_info(mod):
    for kernel, index, decl, size, align, kind in [
            ("binary_add_f32_strided", 2, "Layout", 136, 8, b"s"),
            ("optim_adam_f32", 1, "OptimGrads", 8 * optim.MAX_TENSORS, 8, b"s"),
            ("optim_adam_f32", 2, "int", 4, 4, b"i"),
            ("optim_adam_f32", 4, "float", 4, 4, b"f"),
            ("fill_b8", 1, "bool", 1, 1, b"b"),
            ("fill_i32", 2, "int64_t", 8, 8, b"i"),
            ("random_uniform_f32", 1, "uint64_t", 8, 8, b"u")]:
        p, d = param(mod, kernel, index)
        assert d.split()[0] == decl and (p.size, p.align, p.kind) == (size, align, kind), (kernel, index, d)


# -- the check fails on what CuPy would pass wrong ------------------------------------------------
def test_np_void_struct_is_a_mismatch_for_cupy_13(mod):
    found = problems(mod, "binary_add_f32_strided", 2, make_layout((3, 4), (4, 1))[()])
    assert versions(found) == {"13.6"}, found  # CuPy 14's CScalar takes an np.void; 13.6 raises
    assert "Unsupported type" in found[0] and "numpy.void" in found[0]


def test_python_float_for_a_float_is_a_mismatch(mod):
    found = problems(mod, "optim_adam_f32", 4, 0.001)
    assert versions(found) == {"13.6", "14"}, found
    assert all("8 bytes" in f for f in found)  # a double, where the kernel reads 4 bytes
    assert problems(mod, "optim_adam_f32", 4, np.float32(0.001)) == []
    assert problems(mod, "optim_adam_f64", 4, 0.001) == []  # a double param takes a Python float


def test_wrong_size_integers_are_mismatches(mod):
    for arg in (np.int64(3), 3, np.int16(3)):  # int count
        found = problems(mod, "optim_adam_f32", 2, arg)
        assert versions(found) == {"13.6", "14"}, (arg, found)
    assert problems(mod, "optim_adam_f32", 2, np.int32(3)) == []
    assert problems(mod, "fill_i32", 2, np.int32(3))  # int64_t n
    assert problems(mod, "fill_i32", 2, 3) == [] and problems(mod, "fill_i32", 2, np.int64(3)) == []
    # 2**63: CuPy 14 passes a uint64 (8 bytes: the size of an int64_t), CuPy 13.6 raises OverflowError.
    assert versions(problems(mod, "fill_i32", 2, 1 << 63)) == {"13.6"}


def test_python_bool_and_none(mod):
    assert versions(problems(mod, "fill_b8", 1, True)) == {"13.6"}  # 13.6: an int64 (int is tested first)
    assert problems(mod, "fill_b8", 1, np.bool_(True)) == []
    assert versions(problems(mod, "fill_b8", 0, None)) == {"13.6"}  # 13.6: no pointer at all (cupy#9046)
    assert problems(mod, "fill_b8", 0, np.zeros(3, np.bool_)) == []


def test_wrong_structs_are_mismatches(mod):
    lay = param(mod, "binary_add_f32_strided", 2)[0]
    small = np.zeros((), [("a", np.int64)])
    assert versions(cp_pack.check_argument(lay, small)) == {"13.6", "14"}
    unaligned = np.zeros((), [("rank", np.int32), ("pad", np.int32), ("rest", np.int64, (16,))])
    assert unaligned.dtype.itemsize == 136 and unaligned.dtype.alignment == 1
    found = cp_pack.check_argument(lay, unaligned)
    assert versions(found) == {"13.6", "14"} and all("aligned to 1" in f for f in found), found
    assert versions(cp_pack.check_argument(lay, np.zeros(2, LAYOUT_DTYPE))) == {"13.6", "14"}  # size 2: TypeError
    grads = param(mod, "optim_adam_f32", 1)[0]
    packed_grads = np.zeros((), [("ptr", np.uint64, (optim.MAX_TENSORS,))])  # without align=True
    assert versions(cp_pack.check_argument(grads, packed_grads)) == {"13.6", "14"}


# -- and passes the forms gpuad uses --------------------------------------------------------------
def test_layout_and_optim_grads_forms_pass(mod):
    lay, _ = param(mod, "binary_add_f32_strided", 2)
    layout = make_layout((2, 3, 4), (12, 1, 3))
    assert isinstance(layout, np.ndarray) and layout.shape == () and not layout.flags.writeable
    assert cp_pack.check_argument(lay, layout, layout.tobytes()) == []
    grads, _ = param(mod, "optim_adam_f32", 1)
    rec = np.zeros((), optim._GRADS)
    rec["ptr"][:3] = [0x1000, 0x2000, 0x3000]
    assert cp_pack.check_argument(grads, rec, rec.tobytes()) == []


def test_layout_bytes_as_cupy_passes_them_are_struct_layout(mod):
    from cupy.cuda.function import CNumpyArray
    import ctypes
    layout = make_layout((2, 3, 4), (12, -1, 0))
    data = ctypes.string_at(CNumpyArray(layout).ptr, 136)
    assert len(data) == LAYOUT_DTYPE.itemsize == 136 and LAYOUT_DTYPE.alignment == 8
    assert struct.unpack_from("<i", data, 0) == (3,)  # int rank at offset 0
    assert struct.unpack_from("<8q", data, 8) == (2, 3, 4, 0, 0, 0, 0, 0)  # int64 shape[8] at 8
    assert struct.unpack_from("<8q", data, 72) == (12, -1, 0, 0, 0, 0, 0, 0)  # int64 strides[8] at 72
    assert data[4:8] == bytes(4)


def test_cached_layouts_are_read_only():
    x, y = np.zeros((3, 4), np.float32), np.zeros(4, np.float32)
    a, b = strides.layouts((3, 4), x, y)
    again = strides.layouts((3, 4), x, y)
    assert again[0] is a  # cached: shared by every launch with this geometry
    assert not a.flags.writeable and not b.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a["rank"] = 5
    with pytest.raises(ValueError, match="read-only"):
        b["strides"][0] = 7
    assert int(b["rank"]) == 2 and list(b["strides"][:2]) == [0, 1]


def test_cupy_bytes_of_scalars():
    assert cp_pack.packed(1.5, "14", False).data == struct.pack("<d", 1.5)
    assert cp_pack.packed(1.5, "13.6", False).data == struct.pack("<d", 1.5)
    assert cp_pack.packed(np.float32(1.5), "13.6", False).data == struct.pack("<f", 1.5)
    assert cp_pack.packed(np.int32(-2), "14", False).data == struct.pack("<i", -2)
    assert cp_pack.packed(True, "13.6", False).data == struct.pack("<q", 1)
    assert cp_pack.packed(True, "14", False).data == b"\x01"
    assert "Unsupported type" in cp_pack.packed(np.zeros((), LAYOUT_DTYPE)[()], "13.6", False).error


# -- the suite-wide hook raises for a launch the host launcher accepts but CuPy would garble ------
def test_installed_check_fails_a_launch(mod, monkeypatch, request):
    if cp_pack._original is None:  # tests/conftest.py installs it unless GPUAD_TEST_CUPY_PACKING=0
        assert cp_pack.install()
        request.addfinalizer(cp_pack.uninstall)
    k = mod._kernels["fill_f32"]
    loose = list(k.converters)
    loose[1] = float  # a launcher that (wrongly) takes a Python float for a float
    monkeypatch.setattr(k, "converters", loose)
    out = np.zeros(4, np.float32)
    with pytest.raises(AssertionError, match=r"fill_f32[\s\S]*argument 1 \(float value\): CuPy 13.6 passes "
                                             r"Python float as float64: 8 bytes.*expects 4 bytes aligned to 4"):
        mod.launch("fill_f32", 1, 32, [out, 1.5, np.int64(4)])
    monkeypatch.undo()
    with pytest.raises(TypeError, match="takes np.float32"):  # the launcher's own refusal is unchanged
        mod.launch("fill_f32", 1, 32, [out, 1.5, np.int64(4)])
    mod.launch("fill_f32", 1, 32, [out, np.float32(1.5), np.int64(4)])
    assert (out == 1.5).all()


# -- one launch per kernel family, each checked explicitly: no mismatch ---------------------------
def test_every_family_packs_right():
    from gpuad.devices.emulated import HostLauncher

    class Checking(HostLauncher):
        def __init__(self):
            super().__init__(poison=True)
            self.launched, self.problems = [], []

        def launch(self, kernel, grid, block, args, shared_mem=0):
            k = self.module()._kernels[kernel]
            self.problems += [f"{kernel}: {p}" for p in cp_pack.check_launch(k, args)]
            self.launched.append(kernel)
            super().launch(kernel, grid, block, args, shared_mem)

    launcher = Checking()
    dev = KernelDevice(launcher)
    rng = np.random.default_rng(0)
    x = rng.random((6, 5)).astype(np.float32)
    y = rng.random((5, 6)).astype(np.float32)
    np.testing.assert_allclose(dev.binary("add", x.T, y), x.T + y)  # strided elementwise
    np.testing.assert_array_equal(dev.fill("fill", (3,), 2.5, np.float32), np.full(3, 2.5, np.float32))
    np.testing.assert_allclose(dev.reduce("reduce_sum", x, (1,), False), x.sum(1), rtol=1e-6)
    np.testing.assert_array_equal(dev.layout("transpose", x, perm=(1, 0)), x.T)
    idx = np.array([4, 0, 2], np.int64)
    np.testing.assert_array_equal(dev.gather("gather", x, idx, axis=0), x[idx])
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(dev.softmax("softmax", x, 1), e / e.sum(1, keepdims=True), rtol=1e-5)
    r = dev.random("random_uniform", (64,), np.float32, 7, 0)
    assert ((r >= 0) & (r < 1)).all()
    p, g = x.copy(), y.T.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    hyper = dict(lr=0.1, weight_decay=None, alpha=0.1, one_minus_beta_1=0.1, one_minus_beta_2=0.001,
                 epsilon=1e-7, amsgrad=False)
    (p,), _ = dev.optim("adam", [p], [g], [[m], [v]], hyper)
    assert not np.array_equal(p, x)
    families = {k.split("_")[0] for k in launcher.launched}
    assert {"binary", "fill", "reduce", "layout", "gather", "softmax", "random", "optim"} <= families, families
    assert any(k.endswith("_strided") for k in launcher.launched)
    assert launcher.problems == []
