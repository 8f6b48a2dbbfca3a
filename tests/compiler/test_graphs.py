"""Device graphs (gpuad/compiler/capture.py): a compiled function's runs of kernels
replayed as one launch, on the kernel devices (emulated here, cuda with a GPU).

The emulated device records the launches of a capture as CUDA stream capture
does (buffers allocated, nothing computed, host transfers refused), so these
tests check the plan side of graphs (static inputs, results copied out,
variable guards, fallbacks) on every machine."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import gpuad as ad
from gpuad import devices
from gpuad.compiler.capture import RECAPTURES

from ..test_function import assert_same


@pytest.fixture
def kernel_device(device):
    dev = devices.get(device)
    if dev.capture is None:
        pytest.skip(f"{device} has no device graphs")
    return dev


class _Launches:
    """Counts, at the launcher, kernels launched one by one, graph launches,
    allocations and host transfers."""

    def __init__(self, dev, monkeypatch):
        self.dev = dev
        self.kernels = self.graphs = self.allocations = 0
        launcher = dev.launcher
        real_launch, real_matmul, real_empty = launcher.launch, launcher.matmul, launcher.empty
        real_capture = launcher.capture

        def launch(*a, **k):
            self.kernels += 1
            return real_launch(*a, **k)

        def matmul(*a, **k):
            self.kernels += 1
            return real_matmul(*a, **k)

        def empty(*a, **k):
            self.allocations += 1
            return real_empty(*a, **k)

        def capture(fn):
            graph, result = real_capture(fn)
            real_graph_launch = graph.launch

            def graph_launch():
                self.graphs += 1
                real_graph_launch()
            graph.launch = graph_launch
            return graph, result

        monkeypatch.setattr(launcher, "launch", launch)
        monkeypatch.setattr(launcher, "matmul", matmul)
        monkeypatch.setattr(launcher, "empty", empty)
        monkeypatch.setattr(launcher, "capture", capture)

    def measure(self, fn):
        before = self.kernels, self.graphs, self.allocations, self.dev.transfers
        out = fn()
        after = self.kernels, self.graphs, self.allocations, self.dev.transfers
        return out, dict(zip(("kernels", "graphs", "allocations", "transfers"),
                             (b - a for a, b in zip(before, after))))


def _forward(x, w):
    h = ad.nn.relu(ad.matmul(x, w) + 0.5)
    return ad.reduce_sum(ad.transpose(h) * ad.sigmoid(h[:, 0]), axis=1) * 2.0


def _find_segments(concrete):
    """The CapturedSegment objects of a concrete function's replay."""
    from gpuad.compiler.capture import CapturedSegment
    seen, todo, found = set(), [concrete._replay], []
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for cell in getattr(fn, "__closure__", None) or ():
            value = cell.cell_contents
            if callable(value):
                todo.append(value)
        for value in getattr(fn, "__globals__", {}).values():
            if isinstance(value, CapturedSegment):
                found.append(value)
    return found


def test_a_steady_state_replay_is_one_graph_launch(kernel_device, monkeypatch, rng):
    """After the warm-up call and the capture, a call copies its arguments into the
    graph's buffers, launches the graph once and copies its result out: no kernel
    launched from Python, no transfer, one allocation (the result)."""
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    xs = [ad.constant(rng.standard_normal((8, 4)).astype(np.float32)) for _ in range(5)]
    f = ad.function(_forward)
    counts = _Launches(kernel_device, monkeypatch)
    for x in xs[:2]:  # traces and runs plainly; captures
        assert_same(f(x, w), _forward(x, w))
    concrete = f.get_concrete_function(xs[0], w)
    assert concrete.stats["graphs"] == 1
    assert "def segment0(" in concrete.replay_source
    for x in xs[2:]:  # new argument values every call: the copies in are what the graph reads
        got, n = counts.measure(lambda: f(x, w))
        assert_same(got, _forward(x, w))
        assert n == {"kernels": 0, "graphs": 1, "allocations": 1, "transfers": 0}, n


def test_results_stay_when_the_graph_runs_again(kernel_device, rng):
    """A result is the caller's: the next launch, which rewrites the graph's
    buffers, does not change it."""
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    xs = [ad.constant(rng.standard_normal((8, 4)).astype(np.float32)) for _ in range(4)]
    f = ad.function(_forward)
    results = [f(x, w) for x in xs]
    for x, got in zip(xs, results):
        assert_same(got, _forward(x, w))


def test_strided_arguments_are_copied_in_as_their_values(kernel_device, rng):
    data = ad.constant(rng.standard_normal((16, 4)).astype(np.float32))
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    f = ad.function(_forward)
    for start in range(4):
        x = data[start::2]  # a view with a row stride of two rows, where the layer allows one
        assert_same(f(x, w), _forward(x, w))


def test_a_variable_read_in_the_graph_sees_its_current_value(kernel_device, rng):
    """Reads inside a graph read the variable's buffer in place: an in-place update
    shows at the next launch, and an assign that replaces the buffer is caught
    (a new capture, then plain runs once that keeps happening)."""
    v = ad.Variable(rng.standard_normal((4, 3)).astype(np.float32))
    x = ad.constant(rng.standard_normal((8, 4)).astype(np.float32))

    def forward(x):
        return _forward(x, v)
    f = ad.function(forward)
    for step in range(3 * RECAPTURES):
        assert_same(f(x), _forward(x, v.read_value()), f"call {step}")
        if step % 2:
            v.assign_add(np.full((4, 3), 0.25, np.float32))
        else:
            v.assign(rng.standard_normal((4, 3)).astype(np.float32))
    (segment,) = _find_segments(f.get_concrete_function(x))
    assert segment.captures <= RECAPTURES


def test_a_compiled_training_step_runs_its_gradients_as_a_graph(kernel_device, monkeypatch):
    """Forward and backward are one graph; the optimizer step (host hyperparameters
    per step) runs between graphs, and the loop equals the eager one."""
    rng = np.random.default_rng(0)
    x = ad.constant(rng.standard_normal((32, 4)).astype(np.float32))
    y = ad.constant(rng.standard_normal((32, 1)).astype(np.float32))

    def make():
        params = [ad.Variable(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32) * 0.3),
                  ad.Variable(np.zeros(8, np.float32)),
                  ad.Variable(np.random.default_rng(2).standard_normal((8, 1)).astype(np.float32) * 0.3)]
        opt = ad.optimizers.Adam(ad.schedules.ExponentialDecay(0.01, 5, 0.9))

        def step(x, y):
            with ad.GradientTape() as tape:
                h = ad.tanh(ad.matmul(x, params[0]) + params[1])
                loss = ad.reduce_mean(ad.square(ad.matmul(h, params[2]) - y))
            opt.apply_gradients(zip(tape.gradient(loss, params), params))
            return loss
        return step, params

    eager, eager_params = make()
    step, params = make()
    compiled = ad.function(step)
    counts = _Launches(kernel_device, monkeypatch)
    for i in range(12):
        want = eager(x, y)
        got, n = counts.measure(lambda: compiled(x, y))
        assert_same(got, want, f"step {i}")
        if i >= 2:
            assert n["graphs"] >= 1 and n["transfers"] == 0, n
    for p, e in zip(params, eager_params):
        np.testing.assert_allclose(p.numpy(), e.numpy(), rtol=1e-6, atol=1e-7)


def test_random_numbers_are_new_at_every_call(kernel_device):
    """Random numbers are not captured (their seeds are per call): a graph never
    replays the same draw."""
    ad.random.set_seed(7)
    f = ad.function(lambda x: ad.reduce_sum(ad.exp(ad.random.normal([64]) * x) * 2.0 + x))
    x = ad.constant(0.5)
    draws = [float(f(x)) for _ in range(5)]
    assert len(set(draws)) == 5, draws


def test_a_step_that_needs_the_host_runs_without_a_graph(kernel_device, monkeypatch, caplog, rng):
    """With index checks on, a gather reads its indices' range on the host: that
    capture fails, is logged, and the segment runs plainly (still checking)."""
    monkeypatch.setattr(kernel_device, "checks_indices", True)
    monkeypatch.setenv("GPUAD_LOG_COMPILES", "1")
    table = ad.constant(rng.standard_normal((5, 3)).astype(np.float32))
    f = ad.function(lambda i: ad.reduce_sum(ad.tanh(ad.gather(table, i) * 2.0) + 1.0, axis=0))
    with caplog.at_level(logging.WARNING, logger="gpuad"):
        for k in range(4):
            i = ad.constant([k, 4 - k, 1])
            assert_same(f(i), ad.reduce_sum(ad.tanh(ad.gather(table, i) * 2.0) + 1.0, axis=0))
    assert "runs without a device graph: capturing failed" in caplog.text
    (segment,) = _find_segments(f.get_concrete_function(ad.constant([0, 1, 2])))
    assert segment.plain
    with pytest.raises(ad.errors.InvalidArgumentError, match="not in"):
        f(ad.constant([0, 9, 1]))


def test_concurrent_calls_each_get_their_own_result(kernel_device, rng):
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    xs = [ad.constant(rng.standard_normal((8, 4)).astype(np.float32)) for _ in range(8)]
    f = ad.function(_forward)
    f(xs[0], w), f(xs[0], w)
    results = [None] * len(xs)

    def call(k):
        with ad.device(kernel_device.name):
            for _ in range(5):
                results[k] = f(xs[k], w)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, got in zip(xs, results):
        assert_same(got, _forward(x, w))


def test_graphs_can_be_turned_off(kernel_device, monkeypatch, rng):
    monkeypatch.setenv("GPUAD_CUDA_GRAPHS", "0")
    w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
    f = ad.function(_forward)
    x = ad.constant(rng.standard_normal((8, 4)).astype(np.float32))
    for _ in range(3):
        assert_same(f(x, w), _forward(x, w))
    concrete = f.get_concrete_function(x, w)
    assert concrete.stats["graphs"] == 0 and "segment" not in concrete.replay_source


def test_the_cpu_has_no_graphs(rng):
    with ad.device("cpu"):
        f = ad.function(_forward)
        x = ad.constant(rng.standard_normal((8, 4)).astype(np.float32))
        w = ad.constant(rng.standard_normal((4, 3)).astype(np.float32))
        f(x, w)
        assert f.get_concrete_function(x, w).stats["graphs"] == 0
