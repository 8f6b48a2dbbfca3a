"""DESIGN.md rule 6: memory is released as early as it can be.

- an op records a node only when an active tape watches one of its inputs;
- a non-persistent tape frees what it saved as soon as gradient() ran, and a
  dropped tape frees everything (by reference counting: no cycles);
- a persistent tape keeps its intermediates until it is deleted;
- a long training loop does not grow memory.
"""
import gc
import weakref

import numpy as np
import pytest

import gpuad as ad


@pytest.fixture
def no_gc():
    """Run with the cyclic collector off, so anything freed was freed by refcount."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _alive(refs):
    return [r() is not None for r in refs]


# ---------------------------------------------------------------------------
# recording only what a tape watches
# ---------------------------------------------------------------------------

def test_unwatched_ops_record_nothing(device):
    u = ad.constant([1.0, 2.0])
    v = ad.Variable([1.0, 2.0], trainable=False)
    with ad.GradientTape() as t:
        a = ad.sin(u * 2.0) + v
        b = ad.reduce_sum(ad.matmul(ad.reshape(a, (1, 2)), ad.ones((2, 3))))
        assert float(b) != 0.0
    assert t._nodes == []
    assert not t._tracked


def test_recording_starts_at_the_watched_input(device):
    u = ad.constant([1.0, 2.0])
    x = ad.constant([3.0, 4.0])
    with ad.GradientTape() as t:
        a = ad.exp(u) * 3.0            # unwatched: nothing
        t.watch(x)
        b = x * 2.0                    # one node
        c = a + b                      # one node (b is tracked)
        d = ad.tanh(a)                 # unwatched again: nothing
    assert len(t._nodes) == 2
    assert t._tracked >= {x._id, b._id, c._id}
    assert a._id not in t._tracked and d._id not in t._tracked


def test_non_float_results_are_not_recorded(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        m = x > 1.0
        i = ad.argmax(x)
        c = ad.cast(x, ad.int32)
    assert m.dtype == ad.bool and i.dtype == ad.int64 and c.dtype == ad.int32
    assert t._nodes == []


def test_no_tape_no_bookkeeping(device):
    # with no tape active an op builds nothing tape-related that keeps inputs alive
    x = ad.constant(np.ones((8, 8), np.float32))
    r = weakref.ref(x)
    y = ad.tanh(x * 2.0)
    del x
    assert r() is None
    assert y.shape == (8, 8)


def test_only_watching_tape_records(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = x * x
    assert len(inner._nodes) == 1
    assert outer._nodes == []


# ---------------------------------------------------------------------------
# release of intermediates
# ---------------------------------------------------------------------------

def _forward(t, x):
    """Intermediates created inside tape ``t``; returns (target, weakrefs)."""
    a = x * 2.0
    b = ad.sin(a)
    c = b * b
    d = ad.matmul(c, c)
    y = ad.reduce_sum(d)
    refs = [weakref.ref(o) for o in (a, b, c, d)]
    return y, refs


# What the VJPs read: sin keeps its input a, multiply keeps b, matmul keeps c;
# reduce_sum needs only d's shape, so the tape does not hold d.
NEEDED = [True, True, True, False]


def test_non_persistent_gradient_releases_intermediates(device, no_gc):
    x = ad.constant(np.full((4, 4), 0.5, np.float32))
    with ad.GradientTape() as t:
        t.watch(x)
        y, refs = _forward(t, x)
    assert _alive(refs) == NEEDED, "the tape must keep what the backward pass needs, no more"
    g = t.gradient(y, x)
    assert g is not None and g.shape == (4, 4)
    assert _alive(refs) == [False] * 4, "intermediates outlived a non-persistent gradient()"
    assert t._nodes == []
    del g


def test_dropping_a_tape_releases_intermediates(device, no_gc):
    x = ad.constant(np.full((4, 4), 0.5, np.float32))
    with ad.GradientTape() as t:
        t.watch(x)
        y, refs = _forward(t, x)
    yref = weakref.ref(y)
    del y
    assert _alive(refs) == NEEDED
    assert yref() is None, "the tape held the target, which no VJP reads"
    tref = weakref.ref(t)
    del t
    assert tref() is None, "the tape is in a reference cycle"
    assert _alive(refs) == [False] * 4


def test_persistent_tape_keeps_intermediates_until_deleted(device, no_gc):
    x = ad.constant(np.full((4, 4), 0.5, np.float32))
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y, refs = _forward(t, x)
    g1 = t.gradient(y, x)
    assert _alive(refs) == NEEDED
    g2 = t.gradient(y, x)
    assert _alive(refs) == NEEDED
    np.testing.assert_array_equal(g1.numpy(), g2.numpy())
    del y, t
    assert _alive(refs) == [False] * 4


def test_exception_inside_tape_does_not_leak(device, no_gc):
    x = ad.constant(np.ones((4, 4), np.float32))
    refs = []
    with pytest.raises(ZeroDivisionError):
        with ad.GradientTape() as t:
            t.watch(x)
            a = ad.exp(x)
            refs.append(weakref.ref(a))
            1 / 0
    assert not ad.tape._state.stack, "the tape stayed on the stack after an exception"
    del a, t
    assert _alive(refs) == [False]


def test_nested_gradient_releases_inner_tape(device, no_gc):
    x = ad.constant(np.full((3,), 0.5, np.float32))
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            a = ad.sin(x)
            y = ad.reduce_sum(a * a)
        ra = weakref.ref(a)
        del a
        g = inner.gradient(y, x)
    assert inner._nodes == []
    h = outer.gradient(g, x)
    assert h.shape == (3,)
    del y, g, inner, outer
    assert ra() is None


def test_unwatched_intermediates_are_not_saved(device, no_gc):
    u = ad.constant(np.ones((4, 4), np.float32))
    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        t.watch(x)
        a = ad.exp(u)           # not needed by the tape
        ra = weakref.ref(a)
        y = ad.reduce_sum(ad.tanh(a)) * x
        del a
        assert ra() is None, "a tensor no tape needs was saved"
    assert float(t.gradient(y, x)) == pytest.approx(16 * np.tanh(np.e), rel=1e-6)


# ---------------------------------------------------------------------------
# a long loop does not grow memory
# ---------------------------------------------------------------------------

def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # pragma: no cover - not Linux
        return None


def _device_pool_bytes():
    """``(in use, held)`` bytes of CuPy's memory pool when the current device is
    cuda (gpuad allocates from it), else None."""
    if ad.devices.current().kind != "cuda":
        return None
    import cupy
    pool = cupy.get_default_memory_pool()
    return pool.used_bytes(), pool.total_bytes()


def _assert_memory_flat(step, steps=2000):
    """Run ``step`` ``steps`` times; host memory after step 200 and at the end
    must agree (traced Python allocations and the process's RSS), and on cuda
    so must the bytes CuPy's pool has in use and holds."""
    import tracemalloc

    tracemalloc.start()
    try:
        losses = []
        for i in range(steps):
            loss = step()
            if i == 0:
                losses.append(float(loss))
            if i == 199:
                gc.collect()  # also empties CPython's free lists, which tracemalloc counts
                traced_200, rss_200 = tracemalloc.get_traced_memory()[0], _rss_bytes()
                pool_200 = _device_pool_bytes()
        losses.append(float(loss))
        gc.collect()
        traced_2000, rss_2000 = tracemalloc.get_traced_memory()[0], _rss_bytes()
        pool_2000 = _device_pool_bytes()
    finally:
        tracemalloc.stop()
    assert losses[1] < losses[0], "the loop did not train: the test measures nothing"
    assert ad.tape._state.stack == []
    grew = traced_2000 - traced_200
    assert grew < 256 * 1024, f"traced memory grew by {grew / 1024:.0f} KiB over 1800 steps"
    if rss_200 is not None:
        rss_grew = rss_2000 - rss_200
        assert rss_grew < 8 * 1024 * 1024, f"RSS grew by {rss_grew / 2**20:.1f} MiB over 1800 steps"
    if pool_200 is not None:
        used, held = (b - a for a, b in zip(pool_200, pool_2000))
        assert used <= 64 * 1024 and held <= 1024 * 1024, \
            f"CuPy's pool grew over 1800 steps: {used} bytes more in use, {held} more held"


def test_training_loop_memory_is_flat(device):
    rng = np.random.default_rng(0)
    w1 = ad.Variable((rng.standard_normal((64, 64)) * 0.1).astype(np.float32), name="w1")
    b1 = ad.Variable(np.zeros(64, np.float32), name="b1")
    w2 = ad.Variable((rng.standard_normal((64, 64)) * 0.1).astype(np.float32), name="w2")
    x = ad.constant(rng.standard_normal((64, 64)).astype(np.float32))
    target = ad.constant(rng.standard_normal((64, 64)).astype(np.float32))
    params = [w1, b1, w2]

    def step():
        with ad.GradientTape() as tape:
            h = ad.tanh(ad.matmul(x, w1) + b1)
            y = ad.nn.relu(ad.matmul(h, w2))
            loss = ad.reduce_mean(ad.square(y - target))
        grads = tape.gradient(loss, params)
        for g, v in zip(grads, params):
            v.assign_sub(g * 0.01)
        return loss

    _assert_memory_flat(step)



def test_training_with_modules_and_adam_memory_is_flat(device):
    # issue 5: 2000 training steps (layers, Adam's fused update) without growth
    ad.random.set_seed(0)
    model = ad.nn.Sequential([ad.nn.Dense(32, 64, activation=ad.nn.relu), ad.nn.Dense(64, 10)])
    opt = ad.optimizers.Adam(1e-3)
    x = ad.random.normal((32, 32))
    labels = ad.constant(np.arange(32) % 10)

    def step():
        with ad.GradientTape() as tape:
            logits = model(x)
            loss = ad.reduce_mean(ad.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        variables = model.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    _assert_memory_flat(step)
