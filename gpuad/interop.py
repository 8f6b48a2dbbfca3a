"""Zero-copy interchange with NumPy, PyTorch, JAX and CuPy: DLPack both ways
and, for tensors on ``cuda``, the CUDA array interface.

- :func:`from_dlpack` turns any DLPack producer (an object with ``__dlpack__``
  and ``__dlpack_device__``, or a legacy ``"dltensor"`` capsule) into a gpuad
  Tensor that *aliases* the producer's memory;
- ``Tensor.__dlpack__`` / ``Tensor.__dlpack_device__`` make a gpuad Tensor (or
  Variable) a DLPack producer, so ``np.from_dlpack(t)``, ``torch.from_dlpack(t)``,
  ``jnp.from_dlpack(t)`` and ``cupy.from_dlpack(t)`` alias gpuad's buffer;
- ``Tensor.__cuda_array_interface__`` exists for tensors on ``cuda`` only.

None of these is a host <-> device transfer: the memory stays where it is.

**Aliasing.** gpuad treats every buffer as immutable: it never writes into a
buffer once a tensor holds it. The other library may, though. Mutating the
source of :func:`from_dlpack` afterwards, or an array imported from a gpuad
tensor, changes the gpuad tensor too (and every tensor sharing that buffer):
that is the caller's responsibility. Copy first (``a.copy()``, ``t.clone()``)
where the data will change.

>>> import gpuad as ad, numpy as np
>>> a = np.arange(4.0)
>>> t = ad.from_dlpack(a)                     # a float64 tensor on cpu, no copy
>>> t
<gpuad.Tensor: shape=(4,), dtype=float64, device=cpu, numpy=array([0., 1., 2., 3.])>
>>> np.shares_memory(np.from_dlpack(t), a)    # and back again, no copy either
True
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import devices as _devices

__all__ = ["from_dlpack"]

# DLDeviceType (dlpack.h)
kDLCPU, kDLCUDA = 1, 2
_DEVICE_TYPES = {
    1: "kDLCPU", 2: "kDLCUDA", 3: "kDLCUDAHost", 4: "kDLOpenCL", 7: "kDLVulkan",
    8: "kDLMetal", 9: "kDLVPI", 10: "kDLROCM", 11: "kDLROCMHost", 12: "kDLExtDev",
    13: "kDLCUDAManaged", 14: "kDLOneAPI", 15: "kDLWebGPU", 16: "kDLHexagon", 17: "kDLMAIA",
}

# The dtypes gpuad holds (gpuad.dtypes knows a few more names, for messages only).
_SUPPORTED = frozenset(np.dtype(n) for n in ("float32", "float64", "int32", "int64", "bool"))
_SUPPORTED_NAMES = "float32, float64, int32, int64 and bool"


def from_dlpack(x, device=None):
    """A gpuad Tensor that shares the memory of ``x``, a DLPack producer.

    ``x`` is any object with ``__dlpack__`` and ``__dlpack_device__`` (NumPy,
    PyTorch, JAX and CuPy arrays, gpuad tensors) or a legacy DLPack capsule
    (``torch.utils.dlpack.to_dlpack(t)``). Where the data lives picks the device:

    - CPU memory (``kDLCPU``) gives a tensor on ``cpu``, or on ``emulated`` with
      ``device="emulated"`` (its buffers are host NumPy arrays too);
    - CUDA memory (``kDLCUDA``) of GPU ``N`` gives a tensor on ``cuda:N``,
      through ``cupy.from_dlpack`` (CuPy synchronizes with the producer's stream);
    - any other memory (ROCm, Metal, oneAPI, ...) is a ``BufferError`` naming it.

    No data is copied: the result *aliases* ``x``'s memory, so mutating ``x``
    afterwards changes the tensor as well; gpuad itself never writes into it
    (see the module docstring). The exception: the ``emulated`` and ``cuda``
    kernels want C-contiguous (and aligned) buffers, so a strided source (a
    transposed array) placed there is first copied on that device; the ``cpu``
    device keeps any strides. ``device=`` never moves data between host and
    GPU: import, then call ``.to(...)``. The tensor is an ordinary tensor:
    tapes record what is computed from it, but ``x``'s own autodiff history
    (PyTorch's ``requires_grad``, say) does not come along.

    Dtypes other than float32, float64, int32, int64 and bool raise a
    ``TypeError``: cast at the source first.

    >>> import gpuad as ad, numpy as np
    >>> a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    >>> t = ad.from_dlpack(a.T)                   # strides come along: still no copy
    >>> t.shape, t.dtype, t.device
    ((3, 2), gpuad.int64, 'cpu')
    >>> np.shares_memory(np.from_dlpack(t), a)
    True
    >>> ad.from_dlpack(a, device="emulated").device   # host memory, kernel device
    'emulated'
    >>> ad.from_dlpack(np.zeros(2, np.float16))
    Traceback (most recent call last):
      ...
    TypeError: gpuad.from_dlpack: gpuad has no dtype float16; it holds float32, float64, int32, int64 and bool. Cast the array at its source first (NumPy: a.astype(np.float32); PyTorch: t.float(); JAX: x.astype(jnp.float32)).
    """
    from .tensor import Tensor, Variable

    target = None if device is None else _devices.get(device)

    if isinstance(x, (Tensor, Variable)):  # a gpuad tensor: share its buffer directly
        t = x._lend() if isinstance(x, Variable) else x
        src = t._device
        dev = target or src
        if dev is not src and not (_host_memory(src) and _host_memory(dev)):
            raise _placement_error(src.name, dev.name)
        out = Tensor(_for_device(dev, t._data), dev)
        out._lease = t._lease  # the same buffer: keeps a Variable from writing into it
        return out

    if _is_capsule(x):
        x = _Capsule(x)
    elif not hasattr(x, "__dlpack__"):
        raise TypeError(f"gpuad.from_dlpack takes an object with __dlpack__ and __dlpack_device__ "
                        f"(a NumPy, PyTorch, JAX or CuPy array) or a DLPack capsule, not "
                        f"{type(x).__name__}; use gpuad.constant to copy other data in.")
    elif not hasattr(x, "__dlpack_device__"):
        raise TypeError(f"gpuad.from_dlpack: {type(x).__name__} has __dlpack__ but no "
                        f"__dlpack_device__, so where its memory lives is unknown.")

    dev_type, dev_id = (int(v) for v in x.__dlpack_device__())
    if dev_type == kDLCPU:
        dev = target or _devices.get("cpu")
        if not _host_memory(dev):
            raise _placement_error("cpu", dev.name)
        _check_source_dtype(x)
        try:
            buf = np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError) as e:
            raise _import_error(x, e) from e
    elif dev_type == kDLCUDA:
        name = f"cuda:{dev_id}"
        dev = _devices.get(name)  # explains what is missing where CuPy or the GPU is
        if target is not None and target is not dev:
            raise _placement_error(name, target.name)
        _check_source_dtype(x)
        cupy = dev.launcher._cupy
        try:
            with cupy.cuda.Device(dev_id):
                buf = cupy.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError) as e:
            raise _import_error(x, e) from e
    else:
        kind = _DEVICE_TYPES.get(dev_type, "an unknown device type")
        raise BufferError(
            f"gpuad.from_dlpack: the data is on DLPack device type {dev_type} ({kind}), "
            f"device id {dev_id}; gpuad imports CPU memory (kDLCPU=1, as a cpu tensor) and "
            f"CUDA memory (kDLCUDA=2, as a cuda:N tensor) only. Copy it to the CPU first "
            f"(PyTorch: t.cpu(); JAX: jax.device_put(x, jax.devices('cpu')[0]); or "
            f"np.asarray(x)) and import that, or use gpuad.constant.")
    _check_dtype(buf.dtype)
    return Tensor(_for_device(dev, buf), dev)


# -- export (the Tensor dunder methods delegate here) ----------------------------

def dlpack(data, *, stream=None, max_version=None, dl_device=None, copy=None):
    """``buffer.__dlpack__`` for a gpuad buffer (a NumPy or CuPy array).

    NumPy refuses to export a read-only array (gpuad's broadcast and transpose
    views on ``cpu``) to a consumer that asks for the legacy, unversioned
    protocol, which cannot flag it read-only; such a consumer gets a
    C-contiguous copy instead (unless it passed ``copy=False``: then the
    ``BufferError`` stands). Versioned consumers get the view itself.
    """
    kwargs = {k: v for k, v in (("stream", stream), ("max_version", max_version),
                                ("dl_device", dl_device), ("copy", copy)) if v is not None}
    try:
        return data.__dlpack__(**kwargs)
    except BufferError:
        if copy is False or not isinstance(data, np.ndarray) or data.flags.writeable:
            raise
    return data.copy(order="C").__dlpack__(**kwargs)


def dlpack_device(data) -> tuple:
    """``buffer.__dlpack_device__()``: ``(kDLCPU, 0)`` for NumPy buffers (``cpu``
    and ``emulated``), ``(kDLCUDA, N)`` for CuPy buffers on GPU ``N``."""
    return data.__dlpack_device__()


# -- helpers ---------------------------------------------------------------------

def _host_memory(dev) -> bool:
    """Whether the device's buffers are host NumPy arrays (``cpu``, ``emulated``)."""
    return dev.kind in ("cpu", "emulated")


def _for_device(dev, buf):
    """``buf`` as ``dev`` keeps buffers: as is on ``cpu``; C-contiguous and
    aligned on the kernel devices (a copy on that device where it is not)."""
    if dev.kind == "cpu":
        return buf
    flags = buf.flags
    if flags.c_contiguous and (not isinstance(buf, np.ndarray) or flags.aligned):
        return buf
    if dev.kind == "cuda":
        with dev.launcher._device:
            return buf.copy(order="C")
    return np.array(buf, order="C", copy=True)


def _placement_error(src: str, dst: str) -> ValueError:
    return ValueError(f"gpuad.from_dlpack: the data is in {src} memory and cannot become a "
                      f"tensor on {dst} without a copy; DLPack shares memory, it does not "
                      f"move it. Import it where it is, then copy: "
                      f"gpuad.from_dlpack(x).to({dst!r}).")


def _dtype_error(dtype) -> TypeError:
    return TypeError(f"gpuad.from_dlpack: gpuad has no dtype {dtype}; it holds "
                     f"{_SUPPORTED_NAMES}. Cast the array at its source first (NumPy: "
                     f"a.astype(np.float32); PyTorch: t.float(); JAX: x.astype(jnp.float32)).")


def _check_dtype(dtype) -> None:
    if dtype not in _SUPPORTED:
        raise _dtype_error(dtype)


def _source_dtype_name(x) -> str | None:
    """The producer's dtype as a plain name (``torch.bfloat16`` -> ``bfloat16``), if it says."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return None
    name = getattr(dt, "name", None)
    if not isinstance(name, str):
        name = str(dt)
    return name.removeprefix("torch.")


def _check_source_dtype(x) -> None:
    """Reject an unsupported dtype before importing, where the producer names it
    (NumPy cannot even import some, e.g. bfloat16)."""
    name = _source_dtype_name(x)
    if name is None:
        return
    try:
        dt = np.dtype(name)
    except TypeError:
        if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "complex32", "qint8"):
            raise _dtype_error(name) from None
        return  # an unknown name: let the import decide
    if dt.kind in "biufc" and dt not in _SUPPORTED:
        raise _dtype_error(dt)


def _import_error(x, e: Exception) -> Exception:
    """A TypeError where the import failed on the dtype, else the original error."""
    name = _source_dtype_name(x)
    if name is not None and name not in ("float32", "float64", "int32", "int64", "bool"):
        return _dtype_error(name)
    return e


# -- legacy capsules -------------------------------------------------------------

_PTR = ctypes.sizeof(ctypes.c_void_p)
# Offset of DLTensor in the capsule's struct: DLManagedTensor starts with it;
# DLManagedTensorVersioned has {uint32 major, minor; void *ctx; void (*deleter)(); uint64 flags} first.
_CAPSULE_NAMES = {b"dltensor": 0, b"dltensor_versioned": 8 + 2 * _PTR + 8}
_capsule_api = None


def _api():
    global _capsule_api
    if _capsule_api is None:  # own prototypes: never touch ctypes.pythonapi's shared ones
        api = ctypes.pythonapi
        is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_IsValid", api))
        get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", api))
        _capsule_api = is_valid, get_pointer
    return _capsule_api


def _is_capsule(x) -> bool:
    return type(x).__name__ == "PyCapsule" and type(x).__module__ == "builtins"


class _Capsule:
    """A DLPack capsule dressed as a producer, for ``np.from_dlpack``/``cupy.from_dlpack``."""

    def __init__(self, capsule):
        is_valid, get_pointer = _api()
        for name, offset in _CAPSULE_NAMES.items():
            if is_valid(capsule, name):
                # DLTensor: {void *data; DLDevice {int32 device_type, device_id}; ...}
                ptr = get_pointer(capsule, name) + offset + _PTR
                device = (ctypes.c_int32 * 2).from_address(ptr)
                self._device = (device[0], device[1])
                self._capsule = capsule
                return
        if is_valid(capsule, b"used_dltensor") or is_valid(capsule, b"used_dltensor_versioned"):
            raise BufferError("gpuad.from_dlpack: this DLPack capsule was already consumed "
                              "(a capsule can be imported once); export a new one.")
        raise TypeError("gpuad.from_dlpack: this capsule is not a DLPack capsule "
                        "(its name is neither 'dltensor' nor 'dltensor_versioned').")

    def __dlpack_device__(self):
        return self._device

    def __dlpack__(self, stream=None, **kwargs):
        capsule, self._capsule = self._capsule, None
        if capsule is None:
            raise BufferError("gpuad.from_dlpack: the DLPack capsule was already consumed.")
        return capsule
