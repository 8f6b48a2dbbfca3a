"""Device graphs: runs of a plan's kernels replayed as one launch.

On a kernel device (``cuda``: a CUDA graph through CuPy's stream capture;
``emulated``: the same, recorded on the host, so CI proves this path) the
replay's maximal runs of *capturable* steps (kernels, fused kernels, variable
reads) become :class:`CapturedSegment` calls. A segment runs its steps plainly
once (kernels load, plans and caches warm up), then captures them into a graph
on its second call and launches the graph from then on: a replay of a
forward-and-backward plan is one launch from Python instead of one per kernel.

A graph replays fixed buffers, so a segment keeps *static* buffers:

- its inputs (the function's arguments, results of steps outside it) are copied
  into its own input buffers before each launch (one device-to-device copy each;
  constants are used in place: they never change);
- its results live in buffers the graph writes at every launch. A result that
  leaves the replay (a function output) or goes to a step that could keep it
  (a write, a control-flow node) is copied out; one that only feeds kernels or
  an optimizer step later in the same replay is used as it is;
- a variable read inside it reads the variable's buffer in place. A variable
  whose buffer was replaced since the capture (an ``assign`` of a new buffer, an
  optimizer step that had to copy) is caught before the launch, and the segment
  is captured again (given up on, and run plainly, after :data:`RECAPTURES`).

Not captured, and run between segments as plain steps: random numbers (their
seeds are host values per call), optimizer steps (their hyperparameters are),
other writes, ``cond``/``while_loop`` nodes (a host decision), and any run
whose capture fails (a step that needs the host, e.g. ``GPUAD_CHECK_INDICES=1``):
that segment is logged (``GPUAD_LOG_COMPILES=1``) and runs plainly from then on.
``GPUAD_CUDA_GRAPHS=0`` turns graphs off.
"""
from __future__ import annotations

import logging
import os
import threading

__all__ = ["CapturedSegment", "graphs_enabled", "RECAPTURES"]

_log = logging.getLogger("gpuad")

#: Captures a segment gets (the first one included) before it is run plainly for good.
RECAPTURES = 4


def graphs_enabled() -> bool:
    return os.environ.get("GPUAD_CUDA_GRAPHS", "1") not in ("0", "")


class CapturedSegment:
    """``segment(*input_buffers) -> result buffers``: ``run`` (the segment's steps as
    a Python function of the same signature) replayed as a device graph.

    ``device`` captures (:attr:`gpuad.devices.Device.capture`); ``reads`` are the
    variables its steps read in place; ``copy_out[k]`` says whether result ``k``
    is copied out of the graph's buffer at each call (it leaves the replay or may
    be kept)."""

    def __init__(self, run, device, reads, copy_out, name: str):
        self.run = run
        self.device = device
        self.reads = tuple(reads)
        self.copy_out = tuple(copy_out)
        self.name = name
        self.calls = 0
        self.captures = 0
        self.plain = False     # given up on graphs: run plainly
        self.reason = None     # why, when plain
        self.graph = None
        self._inputs = None    # the static input buffers the graph reads
        self._results = None   # the buffers the graph writes
        self._read_buffers = None  # each read variable's buffer when captured
        self._lock = threading.Lock()

    def __call__(self, *buffers):
        if self.plain:
            return self.run(*buffers)
        with self._lock:
            self.calls += 1
            if self.graph is None or not self._reads_unchanged():
                if self.calls == 1:  # the warm-up: kernels load, caches fill
                    return self.run(*buffers)
                if not self._capture(buffers):
                    return self.run(*buffers)
            else:
                self._copy_in(buffers)
            self.graph.launch()
            return self._results_out()

    # -- capturing ----------------------------------------------------------------
    def _reads_unchanged(self) -> bool:
        for v, buffer in zip(self.reads, self._read_buffers):
            if v._data is not buffer:
                return False
        return True

    def _capture(self, buffers) -> bool:
        """Capture the graph on static copies of ``buffers``; False (and plain from
        now on) when the capture fails or this segment keeps being recaptured."""
        if self.captures >= RECAPTURES:
            return self._give_up(f"its variables' buffers changed {self.captures} times "
                                 f"(each change needs a new capture)")
        self.captures += 1
        self.graph = None
        try:
            inputs = [self._static_copy(b) for b in buffers]
            read_buffers = [v._data for v in self.reads]
            graph, results = self.device.capture(lambda: self.run(*inputs))
        except Exception as e:  # noqa: BLE001  (any failure: the plain run says what is wrong)
            return self._give_up(f"capturing failed: {type(e).__name__}: {e}")
        self.graph, self._inputs, self._results = graph, inputs, tuple(results)
        self._read_buffers = read_buffers
        return True

    def _give_up(self, reason) -> bool:
        self.plain, self.reason, self.graph = True, reason, None
        self._inputs = self._results = self._read_buffers = None
        if os.environ.get("GPUAD_LOG_COMPILES", "") not in ("", "0"):
            _log.warning("gpuad.function %s: runs without a device graph: %s", self.name, reason)
        return False

    # -- per call -------------------------------------------------------------------
    def _static_copy(self, buffer):
        """A C-contiguous copy of ``buffer`` on the device (the graph's input buffer)."""
        from ..ops.table import CAST
        return CAST.kernel(self.device)(buffer, dtype=buffer.dtype)

    def _copy_in(self, buffers):
        device = self.device
        for source, static in zip(buffers, self._inputs):
            if source is static or not static.size:
                continue
            if not source.flags.c_contiguous:  # a strided view: made contiguous first
                source = self._static_copy(source)
            device.copy_bytes(static, 0, source, 0, static.nbytes, op="function")

    def _results_out(self):
        results = self._results
        if not any(self.copy_out):
            return results
        return tuple(self._copy_out(b) if c else b for b, c in zip(results, self.copy_out))

    def _copy_out(self, buffer):
        """A new buffer holding ``buffer``'s values: a device-to-device copy (no kernel)."""
        if not buffer.flags.c_contiguous:
            return self._static_copy(buffer)
        out = self.device.empty(buffer.shape, buffer.dtype, op="function")
        if buffer.size:
            self.device.copy_bytes(out, 0, buffer, 0, buffer.nbytes, op="function")
        return out


def find_segments(graph, steps, min_kernels: int = 2) -> list:
    """The runs of ``steps`` (a replay's, see :func:`~gpuad.compiler.replay.build_replay`)
    to capture, as ``(first, last)`` step indices: maximal runs of capturable steps on
    one device that has graphs, with at least ``min_kernels`` kernels (a lone kernel
    gains nothing from a graph and pays for the copies)."""
    from ..ops.table import READ_VARIABLE
    avals = graph.avals

    def is_read(step):
        return step[0] == "node" and step[4].prim is READ_VARIABLE

    def device_of(step):
        if is_read(step):
            return step[4].attrs["variable"]._device
        outs = step[3]
        return avals[outs[0]][2] if outs else None

    def capturable(step):
        kind, _, ins, outs, node = step
        if kind == "fused" or is_read(step):
            return True
        return (bool(ins) and bool(outs) and node.effect is None and node.prim.eager is None
                and "run" not in node.attrs)

    consumers: dict[int, list] = {}
    for j, step in enumerate(steps):
        for s in step[2]:
            consumers.setdefault(s, []).append(j)
    outputs = set(graph.outputs)
    ok = [capturable(s) and getattr(device_of(s), "capture", None) is not None for s in steps]

    def runs():
        found, start = [], None
        for i in range(len(steps) + 1):
            if start is not None and (i == len(steps) or not ok[i]
                                      or device_of(steps[i]) is not device_of(steps[start])):
                found.append((start, i - 1))
                start = None
            if i < len(steps) and ok[i] and start is None:
                start = i
        return found

    def escapes(i, first, last) -> bool:
        """Whether the value of read ``i``, or a view of it, is used outside its run."""
        group = {steps[i][3][0]}
        for j in range(i + 1, last + 1):
            kind, _, ins, outs, node = steps[j]
            if kind == "node" and node.prim.aliases and ins and ins[0] in group:
                group.update(outs)
        return any(s in outputs or any(not first <= j <= last for j in consumers.get(s, ()))
                   for s in group)

    while True:
        segments = runs()
        dropped = [i for first, last in segments for i in range(first, last + 1)
                   if is_read(steps[i]) and escapes(i, first, last)]
        if not dropped:
            break
        for i in dropped:
            ok[i] = False
    return [(first, last) for first, last in segments
            if sum(not is_read(steps[i]) for i in range(first, last + 1)) >= min_kernels]
