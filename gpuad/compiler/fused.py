"""Compiling and running fused groups: :func:`compile_group` (and
:func:`compile_groups`, many groups with one compiler run) return a
:class:`FusedKernel` per group and device.

Each device runs the generated code its own way:

- ``cpu``: the ``"cpp"`` source, compiled by the device (g++, ``-O3 -fopenmp``,
  no fast math) into a shared library, called through :mod:`ctypes`; without a
  compiler, the device's own NumPy kernels op by op (still correct, unfused);
- ``emulated`` / ``cuda``: the ``"cuda"`` source, compiled by the device (g++
  through the host emulation / NVRTC) and launched grid-stride as the family
  kernels are.

Integer floordiv/floormod by zero and integer pow with a negative exponent raise
:class:`gpuad.errors.InvalidArgumentError` naming the op, as the eager kernels
do: the generated code returns (cpu) or sets (kernel devices: a zeroed flag
buffer, read back after the launch) one error bit per checked op.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..errors import InvalidArgumentError
from . import emit
from .ir import CHECKED, Group, np_dtype

__all__ = ["FusedKernel", "compile_group", "compile_groups", "clear_cache"]

_I32 = np.dtype(np.int32)
_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
           np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64, np.dtype(np.bool_): ctypes.c_bool}

_addressof = ctypes.addressof
_from_buffer = ctypes.c_char.from_buffer

_cache: dict = {}  # (group key, device name) -> FusedKernel
_CACHE_CAP = 4096
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every compiled FusedKernel of this process (the disk caches stay)."""
    with _lock:
        _cache.clear()


def _fill_value(value, dtype):
    """``value`` as the fill kernel converts it (np.full's unsafe cast)."""
    box = np.empty((), dtype)
    with np.errstate(all="ignore"):
        np.copyto(box, value, casting="unsafe")
    return box[()]


class FusedKernel:
    """The compiled kernel of one group on one device.

    ``kernel(*inputs, out=None)`` takes one buffer per group input (its shape and
    dtype; a non-contiguous one is copied first) and returns a tuple with one new
    C-contiguous buffer per group output, of the group's shape and the output op's
    dtype. ``out``, when given, is a tuple of such buffers to write into instead
    (they may be the very buffers of same-shaped inputs, read at the element they
    write, but must not overlap any other input); it is returned.
    """

    def __init__(self, group: Group, device, runner, fused: bool = True):
        self.group = group
        self.device = device
        self._run = runner  # (inputs, outs) -> None; raises for bad integer operands
        self._out_specs = tuple((group.shape, group.ops[j].dtype) for j in group.outputs)
        self._in_specs = tuple((x.shape, x.dtype) for x in group.inputs)
        self._arity, self._size = len(group.inputs), group.size
        self._checked = any(op.checked for op in group.ops)
        launcher = getattr(device, "launcher", None)
        self._empty = launcher.empty if launcher is not None else np.empty
        #: False where the cpu device had no compiler: the group runs its NumPy kernels op by op
        self.fused = fused

    def __repr__(self):
        prims = ",".join(op.prim for op in self.group.ops)
        return f"<FusedKernel [{prims}] {self.group.shape} on {self.device.name}{'' if self.fused else ' (unfused)'}>"

    def __call__(self, *inputs, out=None):
        if len(inputs) != self._arity:
            raise TypeError(f"{self!r} takes {self._arity} input buffer(s), got {len(inputs)}")
        for x, spec in zip(inputs, self._in_specs):
            if (x.shape, x.dtype) != spec:
                self._bad_input(inputs)
        if out is None:
            empty = self._empty
            outs = tuple([empty(shape, dtype) for shape, dtype in self._out_specs])
        else:
            outs = tuple(out)
            self._check_out(outs)
        if self._size:
            self._run(inputs, outs)
        elif self._checked:
            # nothing to compute, but the eager kernels check a non-empty divisor anyway
            _Eager(self.group, self.device)(inputs, None)
        return outs

    def unchecked(self, *inputs, out=None):
        """The call without its argument checks: for a plan, whose buffers have the
        group's shapes and dtypes by construction (and whose ``out`` buffers, when
        given, are its own, of the right kind)."""
        outs = out if out is not None else tuple([self._empty(shape, dtype)
                                                  for shape, dtype in self._out_specs])
        if self._size:
            self._run(inputs, outs)
        elif self._checked:
            _Eager(self.group, self.device)(inputs, None)
        return outs

    def _bad_input(self, inputs):
        for k, (x, (shape, dtype)) in enumerate(zip(inputs, self._in_specs)):
            if x.shape != shape or x.dtype != dtype:
                raise ValueError(f"{self!r}: input {k} must have shape {shape} and dtype {dtype}, got "
                                 f"{tuple(x.shape)} and {x.dtype}")

    def _check_out(self, outs):
        if len(outs) != len(self._out_specs):
            raise TypeError(f"{self!r}: out must hold {len(self._out_specs)} buffer(s), got {len(outs)}")
        for m, (o, (shape, dtype)) in enumerate(zip(outs, self._out_specs)):
            if tuple(o.shape) != shape or o.dtype != dtype or not o.flags.c_contiguous:
                raise ValueError(f"{self!r}: out[{m}] must be a C-contiguous buffer of shape {shape} and dtype "
                                 f"{dtype}, got shape {tuple(o.shape)}, dtype {o.dtype}")
            if isinstance(o, np.ndarray) and not o.flags.writeable:
                raise ValueError(f"{self!r}: out[{m}] is read-only")


def _raise_for(group: Group, bits: int):
    """The eager kernels' error for the first checked op whose bit is set."""
    for i, j in enumerate(emit.checked_ops(group)):
        if bits & (1 << min(i, 30)):
            op = group.ops[j].prim
            raise InvalidArgumentError(CHECKED[op], op)


# -- runners: one per way of running a group ---------------------------------------------------

class _CpuLoop:
    """The ``"cpp"`` function of a group in a loaded library, called through ctypes."""

    def __init__(self, group: Group, lib):
        acc = emit.access(group)
        fn = getattr(lib, emit.kernel_name(group, "cpp"))
        fills = [group.ops[j] for j in emit.fill_ops(group)]
        argtypes = [ctypes.c_void_p] * (len(group.outputs) + len(group.inputs))
        argtypes += [_CTYPES[op.dtype] for op in fills]
        tail = [_fill_value(op.attr("value"), op.dtype).item() for op in fills]
        self._keep = []  # the shape and stride arrays the pointers in tail point into
        if acc.strided:
            argtypes += [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * len(acc.strided)
            arrays = [np.asarray(acc.shape, np.int64)] + [np.asarray(acc.strides[k], np.int64) for k in acc.strided]
            self._keep = arrays
            tail += [arrays[0].ctypes.data, len(acc.shape)] + [a.ctypes.data for a in arrays[1:]]
        argtypes.append(ctypes.c_int64)
        tail.append(group.size)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
        self.fn, self.tail, self.group = fn, tuple(tail), group

    def __call__(self, inputs, outs):
        ptrs, copies = [], []
        for a in (*outs, *inputs):
            if type(a) is not np.ndarray:  # a NumPy scalar (what a ufunc gives for 0-d inputs)
                a = np.asarray(a)
                copies.append(a)  # (alive until the call returns)
            try:  # (a writable C-contiguous array: 5x faster than a.ctypes.data)
                ptrs.append(_addressof(_from_buffer(a)))
            except (TypeError, ValueError, BufferError):  # read-only, or not contiguous: copied
                if not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
                    copies.append(a)  # (alive until the call returns)
                ptrs.append(a.ctypes.data)
        bits = self.fn(*ptrs, *self.tail)
        if bits:
            _raise_for(self.group, bits)


class _Launch:
    """The ``"cuda"`` kernel of a group in a module of a kernel device (cuda, emulated)."""

    def __init__(self, group: Group, dev, module):
        from ..devices.launch.common import make_layout
        acc = emit.access(group)
        self.dev, self.module, self.group = dev, module, group
        self.name = emit.kernel_name(group, "cuda")
        self.op = "fused(" + ",".join(op.prim for op in group.ops) + ")"
        self.layouts = tuple(make_layout(acc.shape, acc.strides[k]) if kind == "strided" else None
                             for k, kind in enumerate(acc.kinds))
        self.contiguous = tuple(kind != "scalar" for kind in acc.kinds)
        self.tail = tuple(_fill_value(group.ops[j].attr("value"), group.ops[j].dtype) for j in emit.fill_ops(group))
        self.tail += (np.int64(group.size),)
        self.checked = bool(emit.checked_ops(group))

    def __call__(self, inputs, outs):
        dev = self.dev
        args = list(outs)
        for x, layout, contiguous in zip(inputs, self.layouts, self.contiguous):
            if contiguous and not x.flags.c_contiguous:
                x = dev.layout("reshape", x, shape=tuple(x.shape))  # a contiguous copy
            args.append(x)
            if layout is not None:
                args.append(layout)
        args += self.tail
        if not self.checked:
            self.module.launch(self.name, self.group.size, args, op=self.op)
            return
        # a zeroed flag, by the fill kernel itself: dev.fill would remember the one-element
        # buffer as holding 0 for ever (launch/elementwise.py), and this kernel writes it
        flag = dev.empty((1,), _I32, op=self.op)
        dev.launch("fill_i32", 1, (flag, np.int32(0), np.int64(1)), op=self.op)
        args.append(flag)
        self.module.launch(self.name, self.group.size, args, op=self.op)
        bits = int(dev.to_host(flag)[0])  # (one 4-byte transfer, as the eager checked kernels make)
        if bits:
            _raise_for(self.group, bits)


class _Eager:
    """A group run op by op with the device's own kernels (no compiler on cpu; the
    checks of an empty group): results equal the eager ones by construction."""

    def __init__(self, group: Group, dev):
        self.group, self.dev = group, dev

    def __call__(self, inputs, outs):
        group, dev = self.group, self.dev
        values = []
        for op in group.ops:
            args = [inputs[i] if kind == "in" else values[i] for kind, i in op.args]
            if op.prim == "fill":
                result = dev.kernel("fill", "fill")(shape=tuple(op.attr("shape", group.shape)),
                                                    value=op.attr("value"), dtype=op.dtype)
            elif op.prim == "cast":
                result = dev.kernel("cast", "cast")(args[0], dtype=np_dtype(op.attr("dtype", op.dtype)))
            else:
                from ..ops.table import PRIMITIVES
                result = dev.kernel(PRIMITIVES[op.prim].family, op.prim)(*args)
            values.append(result)
        if outs is None:
            return
        for o, j in zip(outs, group.outputs):  # (cpu only: the kernel devices never run groups this way)
            np.copyto(o, np.broadcast_to(np.asarray(values[j]), group.shape))


# -- compiling -----------------------------------------------------------------------------

def compile_group(group: Group, device) -> FusedKernel:
    """The :class:`FusedKernel` of ``group`` on ``device`` (a gpuad Device or its
    name), compiled on first use: cached in memory per ``(group.key(), device)``
    and, by the devices, on disk by the hash of the source and compiler options.

    >>> import numpy as np, gpuad as ad
    >>> from gpuad.compiler.codegen import Group, Op, Operand, compile_group
    >>> f32 = np.dtype(np.float32)
    >>> g = Group((2, 3), (Operand((2, 3), f32), Operand((3,), f32)),
    ...           (Op("multiply", (("in", 0), ("in", 1)), f32), Op("relu", (("op", 0),), f32)), (1,))
    >>> kernel = compile_group(g, "cpu")
    >>> x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    >>> kernel(x, np.array([1, -1, 2], np.float32))[0]
    array([[0., 1., 0.],
           [1., 0., 6.]], dtype=float32)
    """
    return compile_groups([group], device)[0]


def compile_groups(groups, device) -> list:
    """:func:`compile_group` of each group, the ones not yet compiled with one
    compiler run (one source holding all their kernels): what a plan of many
    groups wants, as each compiler run has a fixed cost of about a second."""
    from .. import devices
    dev = devices.get(device)
    groups = list(groups)
    keys = [(g.key(), dev.name) for g in groups]
    kernels = [_cache.get(k) for k in keys]
    todo = {}
    for g, k, kernel in zip(groups, keys, kernels):
        if kernel is None:
            todo.setdefault(k, g)
    if todo:
        built = _build(list(todo.values()), dev)
        with _lock:
            if len(_cache) + len(built) > _CACHE_CAP:
                _cache.clear()
            for k, kernel in zip(todo, built):
                _cache[k] = kernel
        kernels = [_cache.get(k) or built[list(todo).index(k)] for k in keys]
    return kernels


def _build(groups, dev) -> list:
    target = dev.generated_source
    if target is None:
        raise NotImplementedError(f"device {dev.name} runs no generated kernels")
    to_compile = [g for g in groups if g.size]  # empty groups launch nothing
    module = None
    if to_compile:
        source = emit.module_source(to_compile, target)
        if target == "cpp":
            from ..devices.cpp_build import CompilerUnavailableError
            try:
                module = dev.compile(source)
            except CompilerUnavailableError:
                return [FusedKernel(g, dev, _Eager(g, dev), fused=False) for g in groups]
        else:
            module = dev.compile(source)
    out = []
    for g in groups:
        if not g.size:
            runner = _Eager(g, dev)  # (never called with outputs: nothing to compute)
        elif target == "cpp":
            runner = _CpuLoop(g, module)
        else:
            runner = _Launch(g, dev, module)
        out.append(FusedKernel(g, dev, runner))
    return out
