"""gpuad.save / gpuad.load: safetensors round trips, atomic writes, and every
way a load can fail (truncation, corruption, missing/unexpected keys, shape and
dtype mismatches) -- each a clear error that changes nothing."""
import errno
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


# ---------------------------------------------------------------------------
# saves the target's permissions or kind do not allow: a clear error naming the
# user's path, the file as it was, no temporary file left behind
# ---------------------------------------------------------------------------

def _state(path):
    """A file's bytes and mode, or a directory's listing and mode."""
    st = os.stat(path)
    if os.path.isdir(path):
        return sorted(os.listdir(path)), st.st_mode
    return _read_bytes(path), st.st_mode


@pytest.mark.parametrize("mode", [0o444, 0o400, 0o440, 0o404, 0o555, 0o500])
def test_save_over_a_read_only_file_is_refused_and_leaves_it(ckpt, mode):
    # The permission bits are checked by gpuad itself, so this holds for root
    # too (whom the operating system would let replace the file).
    ad.save(ckpt, {"a": ad.constant([1.0])})
    os.chmod(ckpt, mode)
    try:
        before, listing = _state(ckpt), _dir_listing(ckpt)
        with pytest.raises(PermissionError) as info:
            ad.save(ckpt, {"a": ad.constant([2.0])})
        msg = str(info.value)
        assert ckpt in msg and "read-only" in msg and "chmod" in msg and ".tmp" not in msg
        assert info.value.filename == ckpt
        assert _state(ckpt) == before and _dir_listing(ckpt) == listing
        assert ad.load(ckpt)["a"].numpy().tolist() == [1.0]
    finally:
        os.chmod(ckpt, 0o644)


def test_save_over_a_file_this_user_cannot_write_is_refused(ckpt, monkeypatch):
    # a file with write bits for others only (another user's file): what
    # os.access says for this user decides, as open(path, "w") would
    ad.save(ckpt, {"a": ad.constant([1.0])})
    before = _state(ckpt)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if os.fspath(p) == ckpt
                        else real_access(p, m, **kw))
    with pytest.raises(PermissionError, match="read-only"):
        ad.save(ckpt, {"a": ad.constant([2.0])})
    monkeypatch.undo()
    assert _state(ckpt) == before and _dir_listing(ckpt) == ["model.safetensors"]


@pytest.mark.parametrize("slash", ["", "/"])
def test_save_to_a_directory_names_the_path(tmp_path, slash):
    target = tmp_path / "checkpoints"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    path = str(target) + slash
    with pytest.raises(IsADirectoryError) as info:
        ad.save(path, {"a": ad.constant([1.0])})
    msg = str(info.value)
    assert path in msg and "is a directory" in msg and "model.safetensors" in msg
    assert ".tmp" not in msg
    assert sorted(os.listdir(tmp_path)) == ["checkpoints"]
    assert os.listdir(target) == ["keep.txt"]


@pytest.mark.parametrize("mode", [0o555, 0o500, 0o444])
@pytest.mark.parametrize("exists", [False, True])
def test_save_into_a_read_only_directory_names_the_path(tmp_path, mode, exists):
    d = tmp_path / "ro"
    d.mkdir()
    path = str(d / "model.safetensors")
    if exists:
        ad.save(path, {"a": ad.constant([1.0])})
    before = _state(path) if exists else None
    os.chmod(d, mode)
    try:
        with pytest.raises(PermissionError) as info:
            ad.save(path, {"a": ad.constant([2.0])})
        msg = str(info.value)
        assert path in msg and "read-only" in msg and ".tmp" not in msg
    finally:
        os.chmod(d, 0o755)
    assert os.listdir(d) == (["model.safetensors"] if exists else [])
    if exists:
        assert _state(path) == before


@pytest.mark.parametrize("where", ["open", "replace", "write"])
@pytest.mark.parametrize("err", [errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EXDEV])
def test_os_errors_name_the_users_path_not_the_temporary_file(ckpt, monkeypatch, where, err):
    # what the operating system reports about the temporary file is retold
    # about the user's path, keeping the errno (and its OSError subclass)
    ad.save(ckpt, {"a": ad.constant([1.0])})
    before = _state(ckpt)
    real_open, real_replace = os.open, os.replace

    def failing_open(p, *a, **kw):
        if os.fspath(p).endswith(".tmp"):
            raise OSError(err, os.strerror(err), os.fspath(p))
        return real_open(p, *a, **kw)

    def failing_replace(src, dst, *a, **kw):
        raise OSError(err, os.strerror(err), os.fspath(src), os.fspath(dst))

    def failing_write(f, data):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(*{"open": (os, "open", failing_open),
                          "replace": (os, "replace", failing_replace),
                          "write": (ad.io, "_write_all", failing_write)}[where])
    with pytest.raises(OSError) as info:
        ad.save(ckpt, {"a": ad.constant([2.0])})
    monkeypatch.undo()
    msg = str(info.value)
    assert info.value.errno == err and type(info.value) is type(OSError(err, "x"))
    assert ckpt in msg and ".tmp" not in msg and os.strerror(err) in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert _state(ckpt) == before and _dir_listing(ckpt) == ["model.safetensors"]


def test_save_through_a_symlink_writes_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.safetensors"
    link = tmp_path / "latest.safetensors"
    ad.save(str(real), {"a": ad.constant([1.0])})
    os.symlink(real.name, link)
    ad.save(str(link), {"a": ad.constant([2.0])})
    assert os.path.islink(link)  # still a link, not replaced by a file
    assert ad.load(str(real))["a"].numpy().tolist() == [2.0]
    assert sorted(os.listdir(tmp_path)) == ["latest.safetensors", "real.safetensors"]


# ---------------------------------------------------------------------------
# dtypes gpuad does not hold: refused at load, nothing assigned
# ---------------------------------------------------------------------------

_ITEMSIZE = {"F16": 2, "BF16": 2, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "U32": 4, "U64": 8,
             "F8_E4M3": 1, "F8_E5M2": 1, "F32": 4, "I64": 8}


def _write_safetensors(path, tensors):
    """A safetensors file by hand (NumPy has no bfloat16/float8): ``tensors`` maps
    key -> (dtype code, shape); the data bytes are a ramp."""
    header, offset, blob = {}, 0, b""
    for key, (code, shape) in tensors.items():
        n = int(np.prod(shape)) * _ITEMSIZE[code]
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        blob += bytes(i % 61 for i in range(n)) if code != "F32" else \
            np.ones(int(np.prod(shape)), np.float32).tobytes()
        offset += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    _rewrite(path, struct.pack("<Q", len(h)) + h + blob)


@pytest.mark.parametrize("code", ["F16", "BF16", "U8", "I8", "I16", "U16", "U32", "U64",
                                  "F8_E4M3", "F8_E5M2"])
def test_load_refuses_a_dtype_gpuad_does_not_hold(ckpt, device, code):
    _write_safetensors(ckpt, {"good": ("F32", (2,)), "half.w": (code, (2, 3))})
    for kwargs in ({}, {"into": {"good": ad.Variable(ad.zeros(2))}, "strict": False}):
        target = kwargs.get("into")
        with pytest.raises(CheckpointError) as info:
            ad.load(ckpt, **kwargs)
        msg = str(info.value)
        assert "'half.w'" in msg and repr(code) in msg and ckpt in msg
        assert "F32 (float32)" in msg and "I64 (int64)" in msg and "BOOL (bool)" in msg
        assert "truncated or corrupted" not in msg and "nothing was loaded" in msg
        assert info.value.problems == [f"tensor 'half.w' has dtype {code!r}"]
        if target is not None:  # all or nothing: the loadable key is not assigned either
            assert target["good"].numpy().tolist() == [0.0, 0.0]


def test_every_unsupported_tensor_is_listed(ckpt):
    _write_safetensors(ckpt, {"a": ("F16", (1,)), "b": ("BF16", (1,)), "c": ("I64", (1,))})
    with pytest.raises(CheckpointError) as info:
        ad.load(ckpt)
    assert info.value.problems == ["tensor 'a' has dtype 'F16'", "tensor 'b' has dtype 'BF16'"]


# ---------------------------------------------------------------------------
# optimizer state: all of it or an error, never silently dropped
# ---------------------------------------------------------------------------

_STATEFUL = {
    "adam": lambda: ad.optimizers.Adam(0.01),
    "adamw_amsgrad": lambda: ad.optimizers.AdamW(0.01, amsgrad=True),
    "sgd_momentum": lambda: ad.optimizers.SGD(0.1, momentum=0.9),
    "rmsprop": lambda: ad.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: ad.optimizers.Adagrad(0.1),
}


def _trained(make, seed, steps=2):
    model, opt = _mlp(seed), make()
    x = ad.constant(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
    for _ in range(steps):
        opt.minimize(lambda: ad.reduce_sum(model(x) ** 2), model.trainable_variables)
    return model, opt


@pytest.mark.parametrize("prefixed", [True, False])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("kind", sorted(_STATEFUL))
def test_load_into_an_unbuilt_optimizer_says_build_it(ckpt, device, kind, strict, prefixed):
    make = _STATEFUL[kind]
    model, opt = _trained(make, 21)
    ad.save(ckpt, {"model": model, "optimizer": opt} if prefixed else opt)
    model2, opt2 = _mlp(22), make()
    into = {"model": model2, "optimizer": opt2} if prefixed else opt2
    before = _snapshot(model2) + [v.numpy().copy() for v in opt2.variables]
    with pytest.raises(CheckpointError) as info:
        ad.load(ckpt, into=into, strict=strict)  # strict=False must not drop the slots
    msg = str(info.value)
    assert "not built" in msg and "opt.build(model.trainable_variables)" in msg
    assert "pass strict=False" not in msg and "nothing was assigned" in msg
    assert "momentum.0" in msg or "accumulator.0" in msg or "velocity.0" in msg
    assert not opt2.built
    after = list(model2.variables) + list(opt2.variables)
    assert len(after) == len(before)
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(after, before))
    # the suggested fix works and restores the optimizer exactly
    opt2.build(model2.trainable_variables)
    ad.load(ckpt, into=into, strict=strict)
    for a, b in zip(opt.variables, opt2.variables):
        assert np.array_equal(a.numpy(), b.numpy())


def test_strict_false_still_refuses_an_optimizer_configured_differently(ckpt, device):
    model, opt = _trained(lambda: ad.optimizers.Adam(0.01, amsgrad=True), 23)
    ad.save(ckpt, {"model": model, "optimizer": opt})
    model2, opt2 = _mlp(24), ad.optimizers.Adam(0.01)  # no velocity_hat slots
    opt2.build(model2.trainable_variables)
    before = [v.numpy().copy() for v in opt2.variables]
    with pytest.raises(CheckpointError, match="velocity_hat.0") as info:
        ad.load(ckpt, into={"model": model2, "optimizer": opt2}, strict=False)
    assert "configured differently" in str(info.value)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(opt2.variables, before))
    # a Module's extra keys stay excusable with strict=False (the documented promise)
    ad.load(ckpt, into={"model": model2}, strict=False)


@pytest.mark.parametrize("key,value", [("optimizer.learning_rate", np.float32(np.nan)),
                                       ("optimizer.learning_rate", np.float32(np.inf)),
                                       ("optimizer.learning_rate", np.float32(-0.5)),
                                       ("optimizer.iteration", np.int64(-3))])
def test_load_refuses_invalid_optimizer_values(ckpt, key, value):
    import safetensors.numpy
    model, opt = _trained(_STATEFUL["adam"], 25, steps=1)
    ad.save(ckpt, {"model": model, "optimizer": opt})
    arrays = {k: np.asarray(v.numpy()) for k, v in ad.load(ckpt).items()}
    arrays[key] = np.asarray(value)
    safetensors.numpy.save_file(arrays, ckpt)
    model2, opt2 = _mlp(26), ad.optimizers.Adam(0.01)
    opt2.build(model2.trainable_variables)
    variables = list(opt2.variables) + list(model2.variables)
    before = [v.numpy().copy() for v in variables]
    with pytest.raises(CheckpointError, match=f"invalid value for '{key}'"):
        ad.load(ckpt, into={"model": model2, "optimizer": opt2})
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(variables, before))


@pytest.mark.parametrize("dtype", ["float16", "uint8", "int8", "int16"])
def test_save_refuses_a_dtype_load_would_refuse(ckpt, dtype):
    ad.save(ckpt, {"a": ad.constant([1.0])})
    before = _state(ckpt)
    for value in (np.ones(2, dtype),):  # (gpuad makes no tensors of these dtypes: cast refuses them)
        with pytest.raises(TypeError) as info:
            ad.save(ckpt, {"ok": ad.constant([1.0]), "half": value})
        msg = str(info.value)
        assert f"'half' ({dtype})" in msg and ckpt in msg and "gpuad.cast" in msg
        assert _state(ckpt) == before and _dir_listing(ckpt) == ["model.safetensors"]
