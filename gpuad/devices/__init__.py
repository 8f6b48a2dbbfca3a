"""Devices: where tensors live and what computes on them.

A device owns buffers (a NumPy array on ``cpu``; a CuPy array on ``cuda``) and
implements the *kernel set* below. Every primitive in ``gpuad.ops.table`` names
one kernel family and one op inside it, and nothing above this package calls
NumPy or CuPy: that is what lets the same tape run forward and backward on any
device without host round trips.

>>> import gpuad as ad
>>> with ad.device("cpu"):
...     ad.constant([1.0, 2.0]).device
'cpu'
>>> "cpu" in ad.devices.available()
True
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading

__all__ = ["Device", "KERNEL_SET", "get", "available", "current", "device", "info"]

#: The kernel set a device implements: family -> the op names in it. A family
#: is one method on the device, called as ``device.<family>(op, *buffers, **attrs)``.
#: Op names are the names of the primitives of ``gpuad.ops.table`` that run them
#: (``multiply``, ``reduce_sum``), and every CUDA kernel of an op has that name in its
#: symbol (``binary_multiply_f32_contig``, ``reduce_sum_f32``): one name per primitive.
KERNEL_SET: dict[str, frozenset[str]] = {
    # element-wise, NumPy broadcasting between operands
    "unary": frozenset("""negative abs sign square sqrt rsqrt reciprocal exp log log1p expm1
        sin cos tan tanh sigmoid relu softplus erf floor round logical_not""".split()),
    "binary": frozenset("""add subtract multiply divide floordiv floormod pow maximum minimum
        equal not_equal less less_equal greater greater_equal logical_and logical_or""".split()),
    # fused backward kernels: (forward result or input, upstream gradient) -> gradient
    "unary_grad": frozenset("relu_grad sigmoid_grad tanh_grad sin_grad cos_grad square_grad sqrt_grad rsqrt_grad "
                            "reciprocal_grad".split()),
    "where": frozenset({"where"}),
    "cast": frozenset({"cast"}),
    # reductions over a set of axes, and the index reductions over one axis
    "reduce": frozenset("reduce_sum reduce_max reduce_min reduce_prod reduce_logsumexp".split()),
    "arg_reduce": frozenset("argmax argmin".split()),
    # linear algebra (cuBLAS on cuda)
    "matmul": frozenset({"matmul"}),
    # layout
    "layout": frozenset("reshape transpose broadcast_to strided_slice strided_slice_grad".split()),
    "concat": frozenset({"concat"}),
    "gather": frozenset("gather scatter_add".split()),
    "one_hot": frozenset({"one_hot"}),
    # nn
    "softmax": frozenset("softmax log_softmax".split()),
    "softmax_xent": frozenset({"softmax_cross_entropy"}),
    # creation and random numbers (counter-based Philox-4x32-10)
    "fill": frozenset({"fill"}),
    "random": frozenset("random_uniform random_normal".split()),
    # fused optimizer steps, all or nothing: -> (new_params, new_slots), buffers updated in
    # place or new ones (the contract: gpuad/devices/launch/optim.py; used by gpuad.optimizers)
    "optim": frozenset("sgd adam rmsprop adagrad".split()),
}


class Device:
    """The protocol a device implements.

    Buffers are opaque to everything above ``devices/``; the device alone knows
    whether they are NumPy or CuPy arrays. Subclasses implement ``from_host``,
    ``to_host`` and one method per family of ``KERNEL_SET``, accepting every op
    name listed there. Each buffer exposes ``.shape`` (a tuple) and ``.dtype``
    (a NumPy dtype).
    """

    name: str = "abstract"
    kind: str = "abstract"

    def __repr__(self):
        return f"<gpuad device {self.name}>"

    def __str__(self):
        return self.name

    # transfers: the only paths between host memory and the device
    def from_host(self, array):  # a NumPy array -> a buffer (always a copy)
        raise NotImplementedError

    def to_host(self, buffer):  # a buffer -> a new NumPy array
        raise NotImplementedError

    def kernel(self, family: str, op: str):
        """A callable ``fn(*buffers, **attrs)`` for one kernel. Primitives resolve it
        once per device and cache it, so a device can hand back its fastest entry
        point (the NumPy ufunc itself, a compiled CUDA function)."""
        if not self.supports(family, op):
            raise NotImplementedError(f"device {self.name} has no kernel {family}/{op}; "
                                      f"gpuad never falls back to the host silently.")
        return functools.partial(getattr(self, family), op)

    def supports(self, family: str, op: str) -> bool:
        """Whether this device implements ``op`` of kernel ``family``."""
        return op in self.kernels.get(family, ())

    kernels: dict[str, frozenset[str]] = {}

    #: The language of the generated kernels :meth:`compile` takes: ``"cuda"`` (CUDA C,
    #: the kernel devices) or ``"cpp"`` (C++ loops, the cpu device); None: none.
    generated_source: str | None = None

    def compile(self, source: str):
        """Compile a generated kernel ``source`` (in :attr:`generated_source`'s
        language, from :mod:`gpuad.compiler`) and return its module: a handle on
        which the device runs the source's functions (``cpu``: the loaded
        ``ctypes`` library; kernel devices: a module with ``launch(kernel, n, args)``).
        Compiled once per source and cached on disk."""
        raise NotImplementedError(f"device {self.name} compiles no generated kernels")

    #: Whether ``optim`` (with ``in_place=True``) writes into the buffers it is given
    #: (the kernel devices), or always returns new ones (cpu): the caller must then
    #: not be interrupted between that write and adopting the results.
    optim_in_place: bool = True

    #: On devices with graphs (the kernel devices), ``capture(fn) -> (graph, result)``:
    #: run ``fn()`` recording, not running, the device work it queues; ``graph.launch()``
    #: then runs all of it again, on the same buffers, as one launch (a CUDA graph on
    #: ``cuda``). It raises :class:`gpuad.errors.GraphCaptureError` when ``fn`` needs the
    #: host meanwhile (a transfer, a wait). None where there are no graphs (cpu).
    capture = None


_factories: dict[str, callable] = {}
_instances: dict[str, Device] = {}
_lock = threading.Lock()


def register(kind: str, factory) -> None:
    """Make ``factory(name)`` build the device for names of this kind (``cpu``, ``cuda:0``)."""
    _factories[kind] = factory


def _canonical(name: str) -> str:
    name = str(name).strip().lower()
    if name.startswith("/"):  # TF-style "/GPU:0" or "/device:CPU:0"
        name = name.rsplit("/", 1)[-1].removeprefix("device:")
        name = {"gpu": "cuda"}.get(name.split(":")[0], name.split(":")[0]) + (
            ":" + name.split(":")[1] if ":" in name else "")
    if name == "cuda":
        return "cuda:0"
    if name.startswith("cpu"):
        return "cpu"
    return name


def get(name) -> Device:
    """The device of this name (``"cpu"``, ``"emulated"``, ``"cuda"``, ``"cuda:1"``)."""
    if isinstance(name, Device):
        return name
    key = _canonical(name)
    dev = _instances.get(key)
    if dev is not None:
        return dev
    kind = key.split(":")[0]
    factory = _factories.get(kind)
    if factory is None:
        raise ValueError(f"Unknown device {name!r}. Known device kinds: "
                         f"{', '.join(sorted(_factories))}; gpuad.devices.available() "
                         f"lists the usable ones.")
    with _lock:
        dev = _instances.get(key)
        if dev is None:
            dev = _instances[key] = factory(key)
    return dev


def available() -> list[str]:
    """Names of the devices usable in this process, the default first."""
    names = []
    for kind, factory in _factories.items():
        for name in getattr(factory, "usable", lambda: [kind])():
            names.append(name)
    default = _default_name()
    return sorted(names, key=lambda n: n != default)


class _DeviceState(threading.local):
    def __init__(self):
        self.stack: list[Device] = []


_state = _DeviceState()
_default: Device | None = None


def _default_name() -> str:
    """``GPUAD_DEVICE`` if set, else the first usable GPU, else the CPU."""
    name = os.environ.get("GPUAD_DEVICE")
    if name:
        return _canonical(name)
    gpus = _factories["cuda"].usable() if "cuda" in _factories else []
    return gpus[0] if gpus else "cpu"


def current() -> Device:
    """The device new tensors are placed on: the innermost ``gpuad.device(...)``,
    else ``GPUAD_DEVICE``, else the first usable GPU, else the CPU."""
    stack = _state.stack
    if stack:
        return stack[-1]
    global _default
    if _default is None:
        _default = get(_default_name())
    return _default


@contextlib.contextmanager
def device(name):
    """Place new tensors and ops on device ``name`` inside the ``with`` block.

    >>> import gpuad as ad
    >>> with ad.device("cpu"):
    ...     x = ad.ones((2,))
    >>> x.device
    'cpu'
    """
    dev = get(name)
    _state.stack.append(dev)
    try:
        yield dev
    finally:
        _state.stack.pop()


def info() -> dict:
    """Facts about the CPU, the versions, the usable devices and, through
    nvidia-ml-py where present, the GPUs; see :func:`gpuad.devices.telemetry.info`.
    Without nvidia-ml-py or a GPU, ``gpu_status`` says why ``gpus`` is empty.

    >>> import gpuad as ad
    >>> facts = ad.devices.info()
    >>> facts["devices"] == ad.devices.available(), "gpu_status" in facts
    (True, True)
    """
    from .telemetry import info as _info
    return _info()


from . import cpu as _cpu  # noqa: E402


class _Lazy:
    """The factory of the device kind defined by module ``gpuad.devices.<module>``
    (its ``device(name)`` and ``usable()``), imported when first asked for."""

    def __init__(self, module: str):
        self.module = module

    def _load(self):
        return importlib.import_module(f"{__name__}.{self.module}")

    def __call__(self, name: str) -> Device:
        return self._load().device(name)

    def usable(self):
        return self._load().usable()


register("cpu", lambda name: _cpu.CpuDevice())
register("emulated", _Lazy("emulated"))
register("cuda", _Lazy("cuda"))
