"""gpuad.save / gpuad.load: safetensors round trips, atomic writes, and every
way a load can fail (truncation, corruption, missing/unexpected keys, shape and
dtype mismatches) -- each a clear error that changes nothing."""
import json
import os
import struct

import numpy as np
import pytest

import gpuad as ad
from gpuad.io import CheckpointError


def _mlp(seed):
    ad.random.set_seed(seed)
    return ad.nn.Sequential([ad.nn.Dense(4, 6, activation="relu"), ad.nn.LayerNorm(6),
                             ad.nn.Dense(6, 3)])


def _snapshot(obj):
    vs = obj.variables if hasattr(obj, "variables") else list(obj.values())
    return [v.numpy().copy() for v in vs]


def _assert_unchanged(obj, before):
    vs = obj.variables if hasattr(obj, "variables") else list(obj.values())
    for v, b in zip(vs, before):
        assert np.array_equal(v.numpy(), b), f"{v.name} changed"


class FakeOptimizer:
    """What the optimizer exposes to checkpoints: a ``variables`` list of
    uniquely named Variables. The names must not depend on process-wide
    counters (``dense_3/kernel``), or a fresh optimizer would not match a saved
    one: here they follow the position in the variable list."""

    def __init__(self, model):
        self.iterations = ad.Variable(0, dtype=ad.int64, trainable=False, name="iteration")
        self.slots = [ad.Variable(ad.zeros_like(v), trainable=False, name=f"m/{i}")
                      for i, v in enumerate(model.trainable_variables)]

    @property
    def variables(self):
        return [self.iterations] + self.slots


@pytest.fixture
def ckpt(tmp_path):
    return str(tmp_path / "model.safetensors")


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------

def test_module_round_trip(device, ckpt):
    src, dst = _mlp(1), _mlp(2)
    assert not np.array_equal(src.layers[0].kernel.numpy(), dst.layers[0].kernel.numpy())
    ad.save(ckpt, src)
    loaded = ad.load(ckpt)
    assert sorted(loaded) == sorted(p for p, _ in src.named_variables())
    assert "layers.0.kernel" in loaded and "layers.1.gamma" in loaded
    assert all(t.device == ad.devices.get(device).name for t in loaded.values())
    assert ad.load(ckpt, into=dst) is dst
    for a, b in zip(src.variables, dst.variables):
        assert np.array_equal(a.numpy(), b.numpy()) and a.dtype == b.dtype
        assert b.device == ad.devices.get(device).name
    x = ad.ones((2, 4))
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())


def test_nested_dict_round_trip(device, ckpt):
    tree = {
        "a": {"b": ad.Variable([[1.0, 2.0]], name="b"), "c": ad.constant([3.0], dtype=ad.float64)},
        "count": ad.Variable(7, dtype=ad.int64, trainable=False),
        "flags": ad.Variable([True, False]),
        "scalar": ad.Variable(2.5),
        "ints": ad.constant([1, 2, 3]),
        "empty": ad.Variable(ad.zeros((0, 3))),
    }
    ad.save(ckpt, tree)
    loaded = ad.load(ckpt)
    assert list(loaded) == ["a.b", "a.c", "count", "empty", "flags", "ints", "scalar"]
    assert loaded["a.c"].dtype == ad.float64 and loaded["count"].dtype == ad.int64
    assert loaded["flags"].dtype == ad.bool and loaded["ints"].dtype == ad.int32
    assert loaded["scalar"].shape == () and float(loaded["scalar"]) == 2.5
    assert loaded["empty"].shape == (0, 3)
    np.testing.assert_array_equal(loaded["a.b"].numpy(), [[1.0, 2.0]])

    target = {"a": {"b": ad.Variable([[0.0, 0.0]])},
              "count": ad.Variable(0, dtype=ad.int64), "flags": ad.Variable([False, False]),
              "scalar": ad.Variable(0.0), "empty": ad.Variable(ad.zeros((0, 3)))}
    ad.load(ckpt, into=target, strict=False)  # "a.c" and "ints" have no variable
    assert target["a"]["b"].numpy().tolist() == [[1.0, 2.0]]
    assert int(target["count"]) == 7 and target["flags"].numpy().tolist() == [True, False]
    assert float(target["scalar"]) == 2.5


def test_model_and_optimizer_state_by_prefix(device, ckpt):
    model = _mlp(3)
    opt = FakeOptimizer(model)
    opt.iterations.assign(ad.constant(12, dtype=ad.int64))
    opt.slots[0].assign_add(ad.ones_like(opt.slots[0]))
    ad.save(ckpt, {"model": model, "optimizer": opt})
    keys = list(ad.load(ckpt))
    assert "model.layers.0.kernel" in keys and "optimizer.iteration" in keys
    assert any(k.startswith("optimizer.m/") for k in keys)

    model2 = _mlp(4)
    opt2 = FakeOptimizer(model2)
    ad.load(ckpt, into={"model": model2, "optimizer": opt2})
    assert int(opt2.iterations) == 12
    assert np.all(opt2.slots[0].numpy() == 1)
    for a, b in zip(model.variables, model2.variables):
        assert np.array_equal(a.numpy(), b.numpy())
    # only the model, from the combined file: its keys carry the "model." prefix
    model3 = _mlp(5)
    ad.load(ckpt, into={"model": model3}, strict=False)
    assert np.array_equal(model3.layers[2].kernel.numpy(), model.layers[2].kernel.numpy())


def test_real_optimizer_restores_into_a_model_rebuilt_in_the_same_process(device, ckpt):
    # The rebuilt model's layers get new default names (dense_2, ... instead of
    # dense, dense_1): the optimizer's checkpoint keys must not depend on them.
    def step(model, opt):
        x = ad.constant(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
        with ad.GradientTape() as tape:
            loss = ad.reduce_sum(model(x) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))

    model, opt = _mlp(3), ad.optimizers.Adam(0.01)
    for _ in range(3):
        step(model, opt)
    ad.save(ckpt, {"model": model, "optimizer": opt})
    assert {"optimizer.iteration", "optimizer.momentum.0", "optimizer.velocity.0"} <= set(ad.load(ckpt))

    model2, opt2 = _mlp(4), ad.optimizers.Adam(0.01)
    assert model2.layers[0].name != model.layers[0].name
    opt2.build(model2.trainable_variables)
    ad.load(ckpt, into={"model": model2, "optimizer": opt2})
    assert int(opt2.iterations) == 3
    step(model, opt)
    step(model2, opt2)
    for a, b in zip(model.variables, model2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_values_go_to_each_variables_device(ckpt):
    devices = ad.devices.available()
    with ad.device("cpu"):
        src = _mlp(6)
        ad.save(ckpt, src)
        dst = _mlp(7)
    for dev in devices:
        with ad.device(dev):  # the current device does not matter for `into`
            ad.load(ckpt, into=dst)
        assert all(v.device == "cpu" for v in dst.variables)
    if "emulated" in devices:
        with ad.device("emulated"):
            on_emulated = _mlp(8)
        ad.load(ckpt, into=on_emulated)
        assert all(v.device == "emulated" for v in on_emulated.variables)
        np.testing.assert_array_equal(on_emulated.layers[0].kernel.numpy(),
                                      src.layers[0].kernel.numpy())


def test_tied_weights_saved_once(ckpt):
    class Tied(ad.Module):
        def __init__(self):
            super().__init__()
            self.emb = ad.nn.Embedding(4, 2)
            self.head = {"w": self.emb.embeddings}

    m = Tied()
    ad.save(ckpt, m)
    assert list(ad.load(ckpt)) == ["emb.embeddings"]
    ad.load(ckpt, into=Tied())


def test_file_from_plain_safetensors_loads(ckpt):
    """A file written by another tool (no gpuad checksums) still loads."""
    import safetensors.numpy
    safetensors.numpy.save_file({"w": np.arange(3, dtype=np.float32)}, ckpt)
    target = {"w": ad.Variable(ad.zeros(3))}
    ad.load(ckpt, into=target)
    assert target["w"].numpy().tolist() == [0.0, 1.0, 2.0]


def test_save_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="needs a name"):
        ad.save(str(tmp_path / "x"), ad.Variable(1.0))
    with pytest.raises(TypeError, match="takes a Module"):
        ad.save(str(tmp_path / "x"), {"a": "text"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ad.save(str(tmp_path / "no" / "such" / "dir.safetensors"), {"a": ad.constant(1.0)})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ad.load(str(tmp_path / "missing.safetensors"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------

def _dir_listing(path):
    return sorted(os.listdir(os.path.dirname(path)))


@pytest.mark.parametrize("where", ["mid_write", "fsync", "replace", "serialize"])
def test_failed_save_leaves_previous_file_intact(ckpt, monkeypatch, where):
    model = _mlp(9)
    ad.save(ckpt, model)
    with open(ckpt, "rb") as f:
        original = f.read()
    listing = _dir_listing(ckpt)

    def boom(*args, **kwargs):
        raise OSError("simulated failure (disk full)")

    if where == "mid_write":
        def half_then_fail(f, data):
            f.write(bytes(data[: len(data) // 2]))
            f.flush()
            raise OSError("simulated failure (disk full)")
        monkeypatch.setattr(ad.io, "_write_all", half_then_fail)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    elif where == "replace":
        monkeypatch.setattr(os, "replace", boom)
    else:
        import safetensors.numpy
        monkeypatch.setattr(safetensors.numpy, "save", boom)

    model.layers[0].kernel.assign_add(ad.ones_like(model.layers[0].kernel))
    with pytest.raises(OSError, match="simulated"):
        ad.save(ckpt, model)
    monkeypatch.undo()
    with open(ckpt, "rb") as f:
        assert f.read() == original
    assert _dir_listing(ckpt) == listing  # no temporary file left behind
    fresh = _mlp(10)
    ad.load(ckpt, into=fresh)  # and it still loads


def test_save_overwrites_and_keeps_mode(ckpt):
    ad.save(ckpt, {"a": ad.constant([1.0])})
    os.chmod(ckpt, 0o640)
    ad.save(ckpt, {"a": ad.constant([2.0])})
    assert ad.load(ckpt)["a"].numpy().tolist() == [2.0]
    assert os.stat(ckpt).st_mode & 0o777 == 0o640
    assert _dir_listing(ckpt) == ["model.safetensors"]


# ---------------------------------------------------------------------------
# corrupted and mismatched files: a clear error, nothing changed
# ---------------------------------------------------------------------------

@pytest.fixture
def saved(ckpt):
    """A checkpoint of one model, and a second model (different values) to load into."""
    ad.save(ckpt, _mlp(11))
    target = _mlp(12)
    return ckpt, target, _snapshot(target)


def _rewrite(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _header_len(data):
    return struct.unpack("<Q", data[:8])[0]


@pytest.mark.parametrize("cut", ["empty", "in_length", "in_header", "in_data", "last_byte"])
def test_truncated_file(saved, device, cut):
    path, target, before = saved
    data = _read_bytes(path)
    n = _header_len(data)
    keep = {"empty": 0, "in_length": 5, "in_header": 8 + n // 2,
            "in_data": 8 + n + (len(data) - 8 - n) // 2, "last_byte": len(data) - 1}[cut]
    _rewrite(path, data[:keep])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        ad.load(path, into=target)
    assert path in str(info.value) and "Re-save" in str(info.value)
    _assert_unchanged(target, before)
    with pytest.raises(CheckpointError):
        ad.load(path)


def test_trailing_garbage(saved):
    path, target, before = saved
    _rewrite(path, _read_bytes(path) + b"\x00junk")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        ad.load(path, into=target)
    _assert_unchanged(target, before)


@pytest.mark.parametrize("how", ["length_prefix", "json_syntax", "dtype_name", "offsets"])
def test_corrupted_header(saved, device, how):
    path, target, before = saved
    data = bytearray(_read_bytes(path))
    n = _header_len(data)
    header = bytes(data[8:8 + n])
    if how == "length_prefix":
        data[:8] = struct.pack("<Q", 1 << 40)
    elif how == "json_syntax":
        data[8] = ord("[")            # '{' -> '[': no longer the JSON object expected
        data[9] = ord("!")
    elif how == "dtype_name":
        i = header.index(b'"F32"')
        data[8 + i + 1:8 + i + 4] = b"Q99"
    else:                             # an offset digit changed: tensors no longer tile the data
        i = header.index(b'"data_offsets":[') + len(b'"data_offsets":[')
        while not chr(data[8 + i]).isdigit():
            i += 1
        data[8 + i] = ord("9") if data[8 + i] != ord("9") else ord("8")
    _rewrite(path, bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        ad.load(path, into=target)
    assert path in str(info.value)
    _assert_unchanged(target, before)


def test_corrupted_data_bytes_fail_the_checksum(saved, device):
    path, target, before = saved
    data = bytearray(_read_bytes(path))
    n = _header_len(data)
    header = json.loads(bytes(data[8:8 + n]))
    start, end = header["layers.2.kernel"]["data_offsets"]
    data[8 + n + start + (end - start) // 2] ^= 0x40  # one flipped bit in one float
    _rewrite(path, bytes(data))
    with pytest.raises(CheckpointError, match=r"'layers.2.kernel' fails its CRC-32") as info:
        ad.load(path, into=target)
    assert path in str(info.value)
    _assert_unchanged(target, before)


def test_missing_key(saved, device):
    path, target, before = saved
    target.layers.append(ad.nn.Dense(3, 2))  # the file has no layers.3.*
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as info:
        ad.load(path, into=target, strict=False)  # strict=False does not excuse a missing key
    msg = str(info.value)
    assert "missing key 'layers.3.kernel'" in msg and "missing key 'layers.3.bias'" in msg
    assert "shape (3, 2)" in msg and path in msg and "Fix:" in msg
    assert "nothing was assigned" in msg
    _assert_unchanged(target, before)


def test_unexpected_key(ckpt, device):
    model = _mlp(13)
    ad.save(ckpt, model)
    target = ad.nn.Sequential([ad.nn.Dense(4, 6, activation="relu"), ad.nn.LayerNorm(6)])
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as info:
        ad.load(ckpt, into=target)
    msg = str(info.value)
    assert "unexpected key 'layers.2.kernel'" in msg and "strict=False" in msg
    _assert_unchanged(target, before)
    ad.load(ckpt, into=target, strict=False)  # the matching part loads
    assert np.array_equal(target.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())


def test_shape_mismatch(saved, device):
    path, _, _ = saved
    ad.random.set_seed(14)
    target = ad.nn.Sequential([ad.nn.Dense(4, 6, activation="relu"), ad.nn.LayerNorm(6),
                               ad.nn.Dense(6, 5)])
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as info:
        ad.load(path, into=target)
    msg = str(info.value)
    assert "shape mismatch for 'layers.2.kernel'" in msg
    assert "(6, 5)" in msg and "(6, 3)" in msg and path in msg
    assert "shape mismatch for 'layers.2.bias'" in msg
    # layers.0 matched, but was not assigned either: all or nothing
    _assert_unchanged(target, before)


def test_dtype_mismatch(saved, device):
    path, _, _ = saved
    target = ad.nn.Sequential([ad.nn.Dense(4, 6, activation="relu"), ad.nn.LayerNorm(6),
                               ad.nn.Dense(6, 3, dtype=ad.float64)])
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as info:
        ad.load(path, into=target)
    msg = str(info.value)
    assert "dtype mismatch for 'layers.2.kernel'" in msg
    assert "float64" in msg and "float32" in msg and path in msg
    assert info.value.path == path and len(info.value.problems) == 2
    _assert_unchanged(target, before)


def test_load_into_tensor_is_an_error(ckpt):
    ad.save(ckpt, {"a": ad.constant([1.0])})
    with pytest.raises(CheckpointError, match="cannot be assigned"):
        ad.load(ckpt, into={"a": ad.constant([0.0])})
