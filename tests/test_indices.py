"""Out-of-range indices (issue 12): gather, Embedding lookups and sparse labels.

The cpu device always checks and raises InvalidArgumentError (as TensorFlow's CPU
kernels). The kernel devices (cuda, emulated) do not check by default (no host round
trip: gather reads zeros, a label gives a NaN loss) and check, raising the same error,
when GPUAD_CHECK_INDICES=1 was set when the device was created."""
import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

import gpuad as ad
from gpuad.errors import InvalidArgumentError
from gpuad.devices import emulated

from .conftest import DEVICES

SLOW = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def checked(device, monkeypatch):
    """``device`` with index checks on (the cpu device checks anyway)."""
    dev = ad.devices.get(device)
    monkeypatch.setattr(dev, "checks_indices", True)
    return dev


def _bad_index_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    idx_shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    size = int(np.prod(idx_shape))
    good = draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size))
    bad = draw(st.one_of(st.integers(n, n + 1000), st.integers(-1000, -1), st.just(2**31 - 1)))
    pos = draw(st.integers(0, size - 1))
    good[pos] = bad
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    return shape, axis, np.array(good, dtype).reshape(idx_shape), bad, n


bad_index_cases = st.composite(_bad_index_case)


@SLOW
@given(case=bad_index_cases())
def test_gather_out_of_range_raises_naming_index_and_range(checked, case):
    shape, axis, idx, bad, n = case
    x = ad.constant(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    with pytest.raises(InvalidArgumentError) as e:
        ad.gather(x, ad.constant(idx), axis=axis)
    msg = str(e.value)
    first = tuple(int(i) for i in np.argwhere((idx < 0) | (idx >= n))[0])
    assert f"indices[{','.join(map(str, first))}] = {idx[first]} is not in [0, {n})" in msg
    assert msg.endswith("[Op:gather]") and "Fix the indices" in msg


@SLOW
@given(batch=st.integers(1, 6), classes=st.integers(1, 5), data=st.data())
def test_sparse_labels_out_of_range_raise(checked, batch, classes, data):
    labels = data.draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
    bad = data.draw(st.one_of(st.integers(classes, classes + 100), st.integers(-100, -1)))
    labels[data.draw(st.integers(0, batch - 1))] = bad
    logits = ad.constant(np.zeros((batch, classes), np.float32))
    with ad.GradientTape() as tape:
        tape.watch(logits)
        with pytest.raises(InvalidArgumentError) as e:
            ad.nn.sparse_softmax_cross_entropy_with_logits(ad.constant(labels), logits)
        y = ad.reduce_sum(logits * 2.0)
    msg = str(e.value)
    first = next(v for v in labels if not 0 <= v < classes)
    assert f"Received a label value of {first} which is outside the valid range of [0, {classes})" in msg
    assert "Label values: " + " ".join(map(str, labels)) in msg
    assert msg.endswith("[Op:sparse_softmax_cross_entropy_with_logits]")
    # the tape goes on working after the failed call
    np.testing.assert_array_equal(tape.gradient(y, logits).numpy(), np.full((batch, classes), 2.0))


def test_cpu_checks_without_the_environment_variable(monkeypatch):
    monkeypatch.delenv("GPUAD_CHECK_INDICES", raising=False)
    with ad.device("cpu"):
        with pytest.raises(InvalidArgumentError, match=r"label value of 3 .*\[0, 3\)"):
            ad.nn.sparse_softmax_cross_entropy_with_logits(ad.constant([3]), ad.zeros((1, 3)))
        emb = ad.nn.Embedding(4, 2)
        with pytest.raises(InvalidArgumentError, match=r"indices\[0,1\] = 4 is not in \[0, 4\)"):
            emb(ad.constant([[0, 4]]))


def test_embedding_out_of_range_raises_when_checked(checked):
    emb = ad.nn.Embedding(3, 2, embeddings_initializer="ones")
    before = emb.embeddings.numpy()
    with pytest.raises(InvalidArgumentError, match=r"indices\[1\] = -1 is not in \[0, 3\)"):
        emb(ad.constant([2, -1]))
    np.testing.assert_array_equal(emb.embeddings.numpy(), before)


@SLOW
@given(n=st.integers(1, 6), data=st.data())
def test_valid_indices_give_the_same_result_checked_or_not(device, monkeypatch, n, data):
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=8)), np.int64)
    x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    logits = np.random.default_rng(n + 1).normal(size=(idx.size, n)).astype(np.float32)
    dev = ad.devices.get(device)
    results = []
    for on in (False, True):
        if device != "cpu":
            monkeypatch.setattr(dev, "checks_indices", on)
        g = ad.gather(ad.constant(x), ad.constant(idx)).numpy()
        loss = ad.nn.sparse_softmax_cross_entropy_with_logits(ad.constant(idx), ad.constant(logits)).numpy()
        results.append((g, loss))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], x[idx])
    assert np.all(np.isfinite(results[0][1]))


KERNEL_DEVICES = [d for d in DEVICES if d != "cpu"]


@pytest.mark.parametrize("name", KERNEL_DEVICES)
def test_kernel_devices_unchecked_by_default_make_no_round_trip(name, monkeypatch):
    """The documented fast path: no check, no transfer; gather reads zeros and an
    out-of-range label's loss is NaN (as TensorFlow on a GPU)."""
    dev = ad.devices.get(name)
    monkeypatch.setattr(dev, "checks_indices", False)
    with ad.device(name):
        x = ad.constant([1.0, 2.0, 3.0])
        idx = ad.constant([0, 7, -1])
        logits = ad.zeros((2, 3))
        labels = ad.constant([1, 3])
        before = dev.transfers
        g = ad.gather(x, idx)
        loss = ad.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        assert dev.transfers == before
        np.testing.assert_array_equal(g.numpy(), [1.0, 0.0, 0.0])
        out = loss.numpy()
        assert np.isclose(out[0], np.log(3)) and np.isnan(out[1])


@pytest.mark.skipif(not KERNEL_DEVICES or "emulated" not in DEVICES, reason="needs the emulated device")
@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("on", True), ("0", False), ("", False)])
def test_environment_variable_is_read_when_the_device_is_created(monkeypatch, value, on):
    monkeypatch.setenv("GPUAD_CHECK_INDICES", value)
    assert emulated.device().checks_indices is on


@pytest.mark.parametrize("name", KERNEL_DEVICES)
def test_checked_kernel_device_raises_the_cpu_error(name, monkeypatch):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([0, 9, 4])
    messages = []
    for dev_name in ("cpu", name):
        monkeypatch.setattr(ad.devices.get(dev_name), "checks_indices", True)
        with ad.device(dev_name):
            with pytest.raises(InvalidArgumentError) as e:
                ad.nn.sparse_softmax_cross_entropy_with_logits(ad.constant(labels), ad.constant(logits))
            messages.append(str(e.value))
            with pytest.raises(InvalidArgumentError) as e:
                ad.gather(ad.constant(logits), ad.constant([[1, 2], [3, 5]]), axis=1)
            messages.append(str(e.value))
    assert messages[:2] == messages[2:]


def test_one_hot_out_of_range_is_a_zero_row(device):
    """As TensorFlow on every device: one_hot does not raise for out-of-range indices."""
    out = ad.one_hot(ad.constant([0, 3, -1, 2]), 3).numpy()
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]])
