"""What CuPy would hand the CUDA driver for each kernel argument, checked against
the kernel's parameters, for every launch of the ``emulated`` device.

The ``cuda`` launcher passes the argument tuple of each launch to CuPy
(``RawModule.get_function(name)(grid, block, args)``). CuPy turns each argument
into a ``CPointer`` (``_pointer`` in ``cupy/cuda/function.pyx``) whose ``.ptr``
the driver reads ``sizeof(param)`` bytes from. Nothing checks those bytes
against the kernel's parameter types, so a wrong argument type is garbage on a
GPU, and a type CuPy does not know fails every launch. This module mirrors that
dispatch, both in CuPy 13.6 and in CuPy 14, with CuPy's own ``CNumpyArray`` and
``CScalar`` classes producing the bytes (they import without a GPU):

- ``None``: 13.6 ``CPointer()``, no value at all (the kernel reads garbage,
  cupy/cupy#9046); 14 ``CIntptr(0)``, a null pointer;
- a ``cupy.ndarray`` (on ``emulated``: a NumPy buffer for a pointer parameter):
  its device pointer;
- a ``numpy.ndarray`` of size 1 (0-d, structured dtypes included):
  ``CNumpyArray``, its bytes, by value; a larger one: ``TypeError``;
- anything else: 13.6 only NumPy scalars of ``'?bhilqBHILQefdFD'`` (so not
  ``np.void``), a Python int as int64, float as float64, bool as int64 (``int``
  is tested first), complex as complex128, else ``TypeError('Unsupported
  type')``; 14 ``CScalar``: NumPy scalars (``np.void`` too) as their bytes, a
  Python bool as bool, int as int64 (uint64 from 2**63), float as float64.

For a by-value parameter both versions must give exactly ``size`` bytes with
the parameter's alignment (``dtype.alignment``; a struct dtype must be built
with ``align=True``), equal to the bytes the host launcher packs for it; a
pointer parameter takes a buffer. :func:`install` wraps
:meth:`gpuad.devices.host_build.HostModule.launch` so that every launch the
host launcher accepts is checked first; ``tests/conftest.py`` installs it for
the whole suite when CuPy is importable.
"""
from __future__ import annotations

import ctypes
import struct
import threading

import numpy as np

try:  # CuPy's packing classes: importable without a GPU or a driver
    from cupy._core._scalar import CScalar
    from cupy.cuda.function import CNumpyArray
except Exception:  # noqa: BLE001 - no CuPy, or one that cannot load at all
    CScalar = CNumpyArray = None

AVAILABLE = CScalar is not None

#: ``_pointer_numpy_types`` of CuPy 13.6: the NumPy scalar types it passes by value.
NUMPY_TYPES_13 = frozenset(np.dtype(c).type for c in "?bhilqBHILQefdFD")
RULES = ("13.6", "14")
KINDS = {"p": "pointer", "f": "floating point", "i": "signed integer", "u": "unsigned integer", "b": "bool",
         "s": "struct"}

#: Launches and arguments checked since :func:`install` (for reports).
stats = {"launches": 0, "arguments": 0}


class Packed:
    """What one CuPy version hands the driver for one argument: ``pointer``
    (a device pointer), or by value ``data`` (bytes) with ``align``, or
    ``error`` (CuPy raises, or passes no usable value)."""

    __slots__ = ("pointer", "data", "align", "what", "error")

    def __init__(self, what, data=None, align=0, pointer=False, error=None):
        self.what, self.data, self.align, self.pointer, self.error = what, data, align, pointer, error

    def describe(self) -> str:
        if self.error:
            return f"{self.error} (given {self.what})"
        if self.pointer:
            return f"{self.what} (a device pointer)"
        return f"{self.what}: {len(self.data)} bytes aligned to {self.align}"


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        dt = f"a {a.dtype.itemsize}-byte structured dtype" if a.dtype.names is not None else a.dtype
        return f"numpy.ndarray of {dt} and shape {a.shape}"
    if isinstance(a, np.void):
        return f"np.void of {a.dtype.itemsize} bytes"
    if isinstance(a, np.generic):
        return f"np.{type(a).__name__}"
    return f"Python {type(a).__name__}"


def _array_bytes(a: np.ndarray) -> bytes:
    c = CNumpyArray(a)
    return ctypes.string_at(c.ptr, a.dtype.itemsize)


def _scalar_bytes(x) -> tuple:
    c = CScalar(x)
    return ctypes.string_at(c.ptr, c.descr.itemsize), c.descr


def packed(a, rule: str, buffer: bool) -> Packed:
    """What CuPy ``rule`` ("13.6" or "14") hands the driver for argument ``a``.
    ``buffer``: whether ``a``, a NumPy array, stands for a device buffer (a
    ``cupy.ndarray`` on the cuda device: a pointer parameter's argument)."""
    what = _describe(a)
    if a is None:
        if rule == "13.6":
            return Packed("None", error="passes no pointer value: CPointer(), a null kernelParams entry (the "
                                        "kernel reads garbage, cupy/cupy#9046)")
        return Packed("None as a null pointer (CIntptr(0))", data=bytes(8), align=8)
    if isinstance(a, np.ndarray):
        if buffer:
            return Packed(f"a buffer ({what})", pointer=True)
        if a.size != 1:
            return Packed(what, error="raises TypeError: only numpy.ndarrays of size one are passed by value")
        return Packed(what + " by value (CNumpyArray)", data=_array_bytes(a), align=a.dtype.alignment)
    x = a
    if rule == "13.6":
        if type(x) not in NUMPY_TYPES_13:
            if isinstance(x, int):  # bool included: int is tested first
                try:
                    x = np.int64(x)
                except OverflowError:
                    return Packed(what, error="raises OverflowError (it passes a Python int as an int64)")
            elif isinstance(x, float):
                x = np.float64(x)
            elif isinstance(x, complex):
                x = np.complex128(x)
            else:
                return Packed(what, error=f"raises TypeError('Unsupported type {type(x)}')")
            what += f" as {x.dtype}"
        if x.itemsize not in (1, 2, 4, 8, 16):
            return Packed(what, error=f"raises TypeError (unsupported size {x.itemsize})")
        data = _array_bytes(np.asarray(x))  # == CInt<8*itemsize>(x.view(int...)).ptr's bytes
        return Packed(what, data=data, align=x.dtype.alignment)
    try:
        data, descr = _scalar_bytes(x)
    except (TypeError, OverflowError, ValueError) as e:
        return Packed(what, error=f"raises {type(e).__name__}({e})")
    if not isinstance(x, np.generic):
        what += f" as {descr}"
    return Packed(what, data=data, align=descr.alignment)


def expected(p) -> str:
    kind = p.kind.decode()
    return f"{p.size} bytes aligned to {p.align} ({KINDS.get(kind, kind)})"


def check_argument(p, a, host_bytes: bytes | None = None) -> list:
    """Mismatches between what CuPy 13.6 and 14 pass for argument ``a`` and
    parameter ``p`` (a :class:`~gpuad.devices.host_build._ParamInfo`): ``[]`` when
    both hand the driver what the kernel expects. ``host_bytes``: the bytes the
    host launcher packs for ``a`` (by-value parameters), compared too."""
    out = []
    pointer_param = p.kind == b"p"
    for rule in RULES:
        got = packed(a, rule, buffer=pointer_param and isinstance(a, np.ndarray))
        if got.error:
            out.append(f"CuPy {rule} {got.describe()}")
        elif pointer_param:
            if not got.pointer and not (a is None and rule == "14"):
                out.append(f"CuPy {rule} passes {got.describe()} where the kernel takes a pointer: pass a buffer")
        elif got.pointer:  # (not reached on emulated: NumPy arrays are by value here)
            out.append(f"CuPy {rule} passes a device pointer where the kernel takes a value")
        elif len(got.data) != p.size or got.align != p.align:
            out.append(f"CuPy {rule} passes {got.describe()}")
        elif host_bytes is not None and got.data != host_bytes:
            out.append(f"CuPy {rule} passes {got.describe()} = {got.data.hex()}, but the host launcher packs "
                       f"{host_bytes.hex()}")
    return out


# Type-level verdicts (everything but the bytes) per (parameter, argument type):
# by-value NumPy scalars and arrays of one dtype give the same verdict whatever
# their value; Python ints do not (their range), so they are never cached.
_verdicts: dict = {}
_pack_cache: dict = {}


def _host_bytes(fmt: str, value) -> bytes:
    s = _pack_cache.get(fmt)
    if s is None:
        s = _pack_cache[fmt] = struct.Struct("<" + fmt)
    return s.pack(value)


def check_launch(kernel, args, values=None) -> list:
    """Mismatches of one launch of ``kernel`` (a ``host_build._Kernel``) with
    ``args``: ``["argument i (decl): ...; the kernel expects ..."]``, ``[]`` if
    none. ``values``: the host launcher's converted arguments (computed here if
    not given; its TypeError propagates)."""
    if values is None:
        values = [c(a) for c, a in zip(kernel.converters, args)]
    problems = []
    for i, (p, a, fmt, v) in enumerate(zip(kernel.params, args, kernel.formats, values)):
        stats["arguments"] += 1
        t = type(a)
        if p.kind == b"p":
            if t is np.ndarray:
                continue  # a buffer: a device pointer on the cuda device
            found = check_argument(p, a)
        else:
            host = _host_bytes(fmt, v)
            key = None
            if t is not int:
                key = (p.size, p.align, p.kind, t, getattr(a, "dtype", None),
                       a.size == 1 if t is np.ndarray else None)
                verdict = _verdicts.get(key)
                if verdict is None:  # first sight of this type: everything, CuPy's own bytes included
                    verdict = _verdicts[key] = tuple(check_argument(p, a, host))
                if verdict:
                    found = list(verdict)
                else:  # the type is right: the value's bytes still have to match
                    found = _bytes_mismatch(p, a, host)
            else:
                found = check_argument(p, a, host)
        if found:
            problems.append(f"argument {i} ({kernel.decls[i]}): {'; '.join(found)}; the kernel expects "
                            f"{expected(p)}")
    return problems


def _bytes_mismatch(p, a, host: bytes) -> list:
    """The by-value bytes of ``a`` (whose type is right) against the host launcher's."""
    if type(a) is np.ndarray:  # CNumpyArray in both versions: the bytes at the array's data pointer
        # (a.ctypes.data: the address CNumpyArray takes from __array_interface__, which costs
        # 10 us for a structured dtype; the verdict for this dtype compared CNumpyArray's own bytes)
        if ctypes.string_at(a.ctypes.data, a.dtype.itemsize) == host:
            return []
    elif isinstance(a, np.generic) and type(a) in NUMPY_TYPES_13:  # its own bytes in both versions
        if _scalar_bytes(a)[0] == host:
            return []
    out = []
    for rule in RULES:
        got = packed(a, rule, buffer=False)
        if got.data != host:
            out.append(f"CuPy {rule} passes {got.describe()} = {got.data.hex()}, but the host launcher packs "
                       f"{host.hex()}")
    return out


def mismatch_error(kernel, problems) -> AssertionError:
    return AssertionError(
        f"CuPy would not pass the arguments of {kernel.name} as the kernel expects them (checked by "
        f"tests/devices/cupy_packing.py against CuPy 13.6's and 14's argument packing):\n  "
        + "\n  ".join(problems))


_install_lock = threading.Lock()
_original = None


def install() -> bool:
    """Wrap ``HostModule.launch`` so that every launch whose arguments the host
    launcher accepts is checked first; a mismatch raises :func:`mismatch_error`.
    Arguments the launcher itself refuses go on to raise its TypeError. Returns
    False (and does nothing) without CuPy."""
    global _original
    if not AVAILABLE:
        return False
    from gpuad.devices.host_build import HostModule
    with _install_lock:
        if _original is not None:
            return True
        original = HostModule.launch

        def launch(self, name, grid, block, args, shared_mem=0, seed=0):
            k = self._kernels.get(name)
            if k is not None and len(args) == len(k.converters):
                try:
                    values = [c(a) for c, a in zip(k.converters, args)]
                except Exception:  # noqa: BLE001 - the launcher raises it below, as without the check
                    values = None
                if values is not None:
                    stats["launches"] += 1
                    problems = check_launch(k, args, values)
                    if problems:
                        raise mismatch_error(k, problems)
            return original(self, name, grid, block, args, shared_mem=shared_mem, seed=seed)

        launch.__wrapped__ = original
        launch.__doc__ = original.__doc__
        HostModule.launch = launch
        _original = original
    return True


def uninstall() -> None:
    global _original
    from gpuad.devices.host_build import HostModule
    with _install_lock:
        if _original is not None:
            HostModule.launch = _original
            _original = None
