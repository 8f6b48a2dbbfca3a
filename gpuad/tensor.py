"""Tensor (an immutable value on one device) and Variable (mutable, trainable).

>>> import gpuad as ad
>>> t = ad.constant([0.0, 1.0, 2.0, 3.0])
>>> t
<gpuad.Tensor: shape=(4,), dtype=float32, device=cpu, numpy=array([0., 1., 2., 3.], dtype=float32)>
>>> print(t)
gpuad.Tensor([0. 1. 2. 3.], shape=(4,), dtype=float32)
>>> v = ad.Variable([1.0, 2.0], name="w")
>>> v.assign_add([1.0, 1.0])
<gpuad.Variable 'w:0' shape=(2,) dtype=float32, device=cpu, numpy=array([2., 3.], dtype=float32)>
"""
from __future__ import annotations

import itertools
import math
import operator
import threading
import weakref

import numpy as np

from . import devices as _devices
from . import dtypes as _dtypes
from . import host_data as _host_data
from . import interop as _interop
from .errors import InvalidArgumentError
from .host_data import host_array

__all__ = ["Tensor", "Variable", "Abstract", "constant", "convert_to_tensor", "is_tensor"]

# Every Tensor and Variable gets a fresh id: tapes track ids, never id(obj),
# which Python reuses once an object dies.
_next_id = itertools.count(1).__next__


class Tensor:
    """An immutable n-dimensional value on one device.

    Create tensors with :func:`gpuad.constant` or the ops; read them back with
    ``.numpy()``, ``float()``, ``int()``, ``bool()`` or ``np.asarray``.
    """

    __slots__ = ("_data", "_device", "_id", "_lease", "__weakref__")
    # NumPy arrays and scalars defer their binary operators to us, so
    # ``np.float64(2) * t`` is a Tensor, as in TensorFlow.
    __array_priority__ = 100

    def __init__(self, data, device):
        self._data = data
        self._device = device
        self._id = _next_id()
        self._lease = None  # a Lease when the buffer is (a view of) a Variable's

    # -- properties ---------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> _dtypes.DType:
        return _dtypes.from_numpy(self._data.dtype)

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    @property
    def size(self) -> int:
        return math.prod(self._data.shape)

    @property
    def device(self) -> str:
        return self._device.name

    # -- host conversions: the only ways data leaves the device --------------
    def numpy(self):
        """A host copy: an ``ndarray``, or a NumPy scalar for a 0-d tensor."""
        a = self._device.to_host(self._data)
        return a[()] if a.ndim == 0 else a

    def __array__(self, dtype=None, copy=None):
        _host_data.reads.array = True  # tells host_array that a list held tensors
        a = self._device.to_host(self._data)
        return a if dtype is None else a.astype(dtype, copy=False)

    def _scalar(self, kind):
        if self._data.size != 1:
            if kind is bool:
                raise ValueError("The truth value of an array with more than one element is "
                                 "ambiguous. Use gpuad.reduce_any/reduce_all, or compare a reduction.")
            raise TypeError(f"only 0-dimensional (size-1) tensors can be converted to Python "
                            f"scalars; this one has shape {self.shape}")
        return kind(self._device.to_host(self._data).reshape(()).item())

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        if not self.dtype.is_integer:
            raise TypeError(f"only integer tensors can be used as an index, not {self.dtype.name}")
        return self._scalar(int)

    def __len__(self):
        if not self._data.shape:
            raise TypeError("Scalar tensor has no `len()`")
        return self._data.shape[0]

    def __iter__(self):
        if not self._data.shape:
            raise TypeError("Cannot iterate over a scalar tensor.")
        return (self[i] for i in range(self._data.shape[0]))

    # -- identity -------------------------------------------------------------
    def __hash__(self):
        raise TypeError("Tensor is unhashable. Instead, use tensor.ref() as the key.")

    def ref(self) -> "Reference":
        """A hashable handle: equal for the same tensor, usable as a dict key."""
        return Reference(self)

    def __setitem__(self, key, value):
        raise TypeError("gpuad.Tensor is immutable: it does not support item assignment. "
                        "Build a new tensor (gpuad.where, gpuad.concat) or use a Variable.")

    def __repr__(self):
        return (f"<gpuad.Tensor: shape={self.shape}, dtype={self.dtype.name}, "
                f"device={self.device}, numpy={_numpy_text(self.numpy(), repr)}>")

    def __str__(self):
        return f"gpuad.Tensor({_numpy_text(self.numpy(), str)}, shape={self.shape}, dtype={self.dtype.name})"

    def __format__(self, format_spec):
        """A format spec formats a scalar tensor's value, as in TensorFlow;
        an empty spec gives ``str(t)``.

        >>> import gpuad as ad
        >>> "{:.3f}".format(ad.constant(2.0) / 3), f"{ad.constant(7):>4d}"
        ('0.667', '   7')
        >>> "{:.3f}".format(ad.constant([1.0, 2.0]))
        Traceback (most recent call last):
          ...
        TypeError: unsupported format string '.3f' passed to gpuad.Tensor.__format__: only a scalar (0-d) tensor formats its value, and this one has shape (2,). Format t.numpy() element by element, or use str(t).
        """
        if not format_spec:
            return str(self)
        if self._data.shape:
            raise TypeError(f"unsupported format string {format_spec!r} passed to "
                            f"gpuad.Tensor.__format__: only a scalar (0-d) tensor formats its "
                            f"value, and this one has shape {self.shape}. Format t.numpy() element "
                            f"by element, or use str(t).")
        return format(self.numpy(), format_spec)

    # -- interop: DLPack and the CUDA array interface (gpuad/interop.py) -------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Export this tensor's buffer through DLPack, without a copy, so that
        ``np.from_dlpack(t)``, ``torch.from_dlpack(t)``, ``jnp.from_dlpack(t)``
        and ``cupy.from_dlpack(t)`` alias gpuad's memory. Delegates to the
        buffer (a NumPy array on ``cpu``/``emulated``, a CuPy array on ``cuda``,
        which honours ``stream``); not a host <-> device transfer.

        gpuad never writes into a buffer, but the importer may: mutating the
        imported array changes this tensor (and any sharing its buffer).

        On ``cpu``, broadcast and transpose results are read-only NumPy views.
        A consumer asking for DLPack 1.0 or newer (``max_version``) gets them
        flagged read-only, still without a copy; NumPy cannot export them to a
        legacy consumer, which gets a C-contiguous *copy* instead (and a
        ``BufferError`` if it passed ``copy=False``).

        >>> import gpuad as ad, numpy as np
        >>> t = ad.constant([1.0, 2.0, 3.0])
        >>> a = np.from_dlpack(t)
        >>> a, np.shares_memory(a, np.from_dlpack(t))
        (array([1., 2., 3.], dtype=float32), True)
        >>> t.__dlpack_device__()                   # (kDLCPU, 0)
        (1, 0)
        """
        if self._lease is not None:  # the importer may write: the variable stops writing in place
            self._lease.exported()
        return _interop.dlpack(self._data, stream=stream, max_version=max_version,
                               dl_device=dl_device, copy=copy)

    def __dlpack_device__(self) -> tuple:
        """``(device_type, device_id)`` of the buffer, as DLPack numbers them:
        ``(1, 0)`` (kDLCPU) on ``cpu`` and ``emulated``, ``(2, N)`` (kDLCUDA) on ``cuda:N``."""
        return _interop.dlpack_device(self._data)

    @property
    def __cuda_array_interface__(self) -> dict:
        """The CUDA array interface of the CuPy buffer (Numba, CuPy and PyTorch
        read it, without a copy). Only tensors on ``cuda`` have one: elsewhere
        this raises ``AttributeError``, so ``hasattr`` says False.

        >>> import gpuad as ad
        >>> hasattr(ad.constant(1.0, device="cpu"), "__cuda_array_interface__")
        False
        """
        if self._device.kind != "cuda":
            raise AttributeError(f"'__cuda_array_interface__': only tensors on a cuda device "
                                 f"have one; this tensor is on {self.device}. Use "
                                 f"__dlpack__ (np.from_dlpack, torch.from_dlpack) instead.")
        return self._data.__cuda_array_interface__

    def to(self, device) -> "Tensor":
        """A copy of this tensor on ``device`` (through the host); itself if it is there."""
        dev = _devices.get(device)
        if dev is self._device:
            return self
        return _bind(_T.COPY, (self,), device=dev)

    def cpu(self) -> "Tensor":
        return self.to("cpu")


def _numpy_text(value, fmt) -> str:
    """TF's rule: 0-d values print through ``.item()`` (repr) or ``str``; a
    multi-line array starts on a new line."""
    if isinstance(value, np.ndarray):
        text = fmt(value)
    else:
        text = repr(value.item()) if fmt is repr else str(value)
    return "\n" + text if "\n" in text else text


class Reference:
    """A hashable reference to a Tensor or Variable (``t.ref()``)."""

    __slots__ = ("_obj",)

    def __init__(self, obj):
        self._obj = obj

    def deref(self):
        return self._obj

    def __eq__(self, other):
        return isinstance(other, Reference) and other._obj is self._obj

    def __hash__(self):
        return id(self._obj)

    def __repr__(self):
        return f"<Reference wrapping {self._obj!r}>"


# -- conversion ------------------------------------------------------------------

def _convert(value, dtype, device, dtype_hint, op: str) -> Tensor:
    """:func:`convert_to_tensor`, naming ``op`` in its errors."""
    if dtype is not None:
        dtype = _dtypes.as_dtype(dtype, op)
    if isinstance(value, Variable):
        value = value._read()
    if isinstance(value, Tensor):
        if dtype is not None and value.dtype != dtype:
            raise ValueError(f"Tensor conversion requested dtype {dtype.name} for Tensor with "
                             f"dtype {value.dtype.name}: {value!r}")
        if device is not None and _devices.get(device) is not value._device:
            return value.to(device)
        return value
    if dtype is None and dtype_hint is not None and not isinstance(value, (np.ndarray, np.generic)):
        hint = _dtypes.as_dtype(dtype_hint, op)
        try:
            arr = host_array(value, None, op)
            kind = arr.dtype.kind
        except InvalidArgumentError:  # an int beyond int64: a float hint can hold it
            kind = "i"
        if kind == "f" or hint.is_floating or kind == hint.numpy.kind:
            dtype = hint
    arr = host_array(value, dtype, op)
    dev = _devices.current() if device is None else _devices.get(device)
    return _bind(_T.CONSTANT, (), value=arr, device=dev)


def convert_to_tensor(value, dtype=None, device=None, dtype_hint=None) -> Tensor:
    """``value`` as a Tensor: Tensors pass through, Variables are read, anything
    ``constant`` accepts is converted.

    >>> import gpuad as ad
    >>> ad.convert_to_tensor(1.0, dtype_hint=ad.float64).dtype
    gpuad.float64
    """
    return _convert(value, dtype, device, dtype_hint, "convert_to_tensor")


def constant(value, dtype=None, device=None) -> Tensor:
    """A tensor holding ``value`` (a Python number or nested list, a NumPy
    array, or a tensor).

    An integer that does not fit the dtype raises instead of wrapping around,
    and a list of tensors keeps their dtype (tensors of different dtypes raise:
    there is no implicit promotion).

    >>> import gpuad as ad, numpy as np
    >>> ad.constant(1.0).dtype, ad.constant(1).dtype, ad.constant(np.ones(2)).dtype
    (gpuad.float32, gpuad.int32, gpuad.float64)
    >>> ad.constant(1, dtype=ad.float32)
    <gpuad.Tensor: shape=(), dtype=float32, device=cpu, numpy=1.0>
    >>> ad.constant(2**40).dtype                    # does not fit int32: int64
    gpuad.int64
    >>> ad.constant(2**40, dtype=ad.int32)
    Traceback (most recent call last):
      ...
    TypeError: constant: Cannot convert 1099511627776 to a tensor of dtype int32: it is outside int32's range [-2147483648, 2147483647] and would wrap around; use dtype=gpuad.int64 (or a float dtype).
    """
    return _constant(value, dtype, device, "constant")


def _constant(value, dtype, device, op: str) -> Tensor:
    if isinstance(value, (Tensor, Variable)):
        t = value._read() if isinstance(value, Variable) else value
        if dtype is not None and _dtypes.as_dtype(dtype, op) != t.dtype:
            from .ops.math import cast
            t = cast(t, dtype)
        return t if device is None else t.to(device)
    return _convert(value, dtype, device, None, op)


def is_tensor(x) -> bool:
    """True for Tensors and Variables (as ``tf.is_tensor``)."""
    return isinstance(x, (Tensor, Variable))


# -- Abstract values -----------------------------------------------------------

class Abstract:
    """A value known only by its shape, dtype and device: what the tape keeps
    of an input its VJP does not read, and what a tracer computes with.

    It answers the questions a shape rule or a VJP asks (``shape``, ``dtype``,
    ``ndim``, ``device``, ``_data.shape``, ``_data.dtype``) and nothing else.
    """

    __slots__ = ("_data", "_device", "_id")

    def __init__(self, shape, dtype, device, id_=None):
        self._data = _Shape.of(tuple(shape), dtype)
        self._device = device
        self._id = id_

    @classmethod
    def like(cls, x) -> "Abstract":
        """An abstract value with ``x``'s shape, dtype and device and no id: one
        shared instance per (shape, dtype, device) (immutable; bounded cache)."""
        data = x._data
        key = (data.shape, data.dtype, x._device)
        a = _abstracts.get(key)
        if a is None:
            a = cls(data.shape, data.dtype, x._device)
            if len(_abstracts) < 4096:
                _abstracts[key] = a
        return a

    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: len(self._data.shape))
    size = property(lambda self: self._data.size)
    device = property(lambda self: self._device.name)

    @property
    def dtype(self):
        return _dtypes.from_numpy(self._data.dtype)

    def __repr__(self):
        return f"<abstract shape={self.shape} dtype={self._data.dtype} device={self._device.name}>"


_shapes: dict = {}
_abstracts: dict = {}


class _Shape:
    """Stands in for a buffer: its shape and dtype, no data."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype

    @classmethod
    def of(cls, shape, dtype) -> "_Shape":
        """One shared instance per (shape, dtype): they are immutable (bounded cache)."""
        key = (shape, dtype)
        s = _shapes.get(key)
        if s is None:
            s = cls(shape, dtype)
            if len(_shapes) < 4096:
                _shapes[key] = s
        return s

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n


# -- Variable ----------------------------------------------------------------

class Lease:
    """Held by every Tensor that aliases a Variable's current buffer (a read, or
    a view of one); the Variable keeps only a weak reference. While any such
    Tensor lives, the lease lives, and the Variable never writes into that
    buffer: an update in place first moves the variable to a fresh copy."""

    __slots__ = ("variable", "__weakref__")

    def __init__(self, variable):
        self.variable = variable

    def exported(self):
        """The buffer left gpuad (DLPack): something we cannot track may hold it."""
        v = self.variable
        with v._lock:
            v._shared = True


class Variable:
    """A mutable tensor whose reads are differentiable; trainable ones are
    watched automatically by every active :class:`GradientTape`.

    Shape and dtype are fixed at creation. ``assign``, ``assign_add`` and
    ``assign_sub`` return the variable; a wrong shape or dtype raises and
    leaves the value untouched.

    Ownership and threads: a Tensor read from a Variable never changes
    afterwards. The Variable owns its buffer and knows who else sees it: each
    read hands out a Tensor holding the variable's current *lease* (views of it
    inherit the lease), and the variable keeps a weak reference to that lease.
    An optimizer step writes into the buffer in place only when no lease is
    alive and the buffer is not shared in another way (adopted by ``assign``
    or exported through DLPack); otherwise it moves the variable to a fresh
    copy first. Every read and write of one variable holds the variable's lock,
    and a step over many variables (or ``gpuad.save``) holds all their locks at
    once, taken in creation order, so other threads see each step whole.

    >>> import gpuad as ad
    >>> v = ad.Variable(3.0)
    >>> with ad.GradientTape() as tape:
    ...     y = v * v
    >>> float(tape.gradient(y, v))
    6.0
    """

    __slots__ = ("_data", "_device", "_lock", "_lease", "_shared", "_pinned", "_id",
                 "_trainable", "_name", "__weakref__")
    __array_priority__ = 100

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None, device=None):
        if initial_value is None:
            raise ValueError("The `initial_value` arg to `gpuad.Variable` must be specified.")
        if callable(initial_value):
            initial_value = initial_value()
        value = _constant(initial_value, dtype, device, "Variable")
        if _core._pushed[0]:  # created while gpuad.function traces (see compiler/trace.py)
            from .compiler.trace import variable_created
            variable_created(value, name)
        self._lock = threading.Lock()
        self._adopt(value)
        self._id = _next_id()
        self._trainable = True if trainable is None else bool(trainable)
        self._name = ("Variable" if name is None else str(name)) + ":0"

    # -- ownership (callers hold self._lock, except in __init__) -------------------
    def _adopt(self, value: Tensor) -> None:
        """Take ``value``'s buffer as the new value. The Tensor (or others made
        from the same data) may still see it, so it is shared: never written in
        place. If it is another variable's buffer, hold that variable's lease,
        so that variable does not write into it either."""
        self._data = value._data
        self._device = value._device
        self._lease = None
        self._shared = True
        self._pinned = value._lease

    def _own(self, buffer) -> None:
        """Take ``buffer``, made for this variable and seen by no one else."""
        self._data = buffer
        self._lease = None
        self._shared = False
        self._pinned = None

    def _ownership(self) -> tuple:
        """What a commit changes, so a failed commit can put it back (:meth:`_restore`)."""
        return self._data, self._lease, self._shared, self._pinned

    def _restore(self, ownership: tuple) -> None:
        self._data, self._lease, self._shared, self._pinned = ownership

    def _writable(self) -> bool:
        """Whether an update may write into the current buffer in place."""
        return not self._shared and (self._lease is None or self._lease() is None)

    def _lend(self) -> Tensor:
        """The current value as a Tensor that holds the variable's lease. On a
        device whose updates never write into a variable's buffer (the cpu) there
        is nothing to lease: the one read of the buffer's reference is the value."""
        if not self._device.optim_in_place:
            return Tensor(self._data, self._device)
        with self._lock:
            return self._lend_locked()

    def _lend_locked(self) -> Tensor:
        """:meth:`_lend`, for a caller that holds the lock already."""
        if not self._device.optim_in_place:
            return Tensor(self._data, self._device)
        lease = self._lease() if self._lease is not None else None
        if lease is None:
            lease = Lease(self)
            self._lease = weakref.ref(lease)
        t = Tensor(self._data, self._device)
        t._lease = lease
        return t

    def _host_value(self):
        """A host copy of the current value (a NumPy array), not recorded, no lease."""
        with self._lock:  # no update writes into the buffer while it is copied
            return self._device.to_host(self._data)

    # -- reading ---------------------------------------------------------------
    def _read(self) -> Tensor:
        """The current value as a Tensor; recorded on every active tape that
        watches this variable (and auto-watched where the tape says so)."""
        return _bind(_T.READ_VARIABLE, (), variable=self)

    def read_value(self) -> Tensor:
        return self._read()

    def value(self) -> Tensor:
        return self._read()

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> _dtypes.DType:
        return _dtypes.from_numpy(self._data.dtype)

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    @property
    def size(self) -> int:
        return math.prod(self._data.shape)

    @property
    def device(self) -> str:
        return self._device.name

    @property
    def name(self) -> str:
        return self._name

    @property
    def trainable(self) -> bool:
        return self._trainable

    def numpy(self):
        return self._lend().numpy()

    def __array__(self, dtype=None, copy=None):
        return self._lend().__array__(dtype)

    def __float__(self):
        return float(self._lend())

    def __int__(self):
        return int(self._lend())

    def __bool__(self):
        return bool(self._lend())

    def __index__(self):
        return self._lend().__index__()

    def __iter__(self):
        return iter(self._read())

    def __hash__(self):
        raise TypeError(f"Variable is unhashable. Instead, use variable.ref() as the key. "
                        f"(Variable: {self!r})")

    def ref(self) -> Reference:
        return Reference(self)

    def __repr__(self):
        t = self._lend()
        return (f"<gpuad.Variable '{self._name}' shape={t.shape} dtype={t.dtype.name}, "
                f"device={t.device}, numpy={_numpy_text(t.numpy(), repr)}>")

    __str__ = __repr__

    def __iadd__(self, other):
        raise RuntimeError("`variable += value` with gpuad.Variables is not supported. Use "
                           "`variable.assign_add(value)` to modify the variable, or "
                           "`out = variable + value` if you need a new Tensor.")

    __isub__ = __imul__ = __itruediv__ = __iadd__

    # -- interop: the current value's buffer (see Tensor.__dlpack__) -------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Export the current value through DLPack, without a copy (see
        ``Tensor.__dlpack__``). The variable never writes into an exported
        buffer again: its next update moves it to a new buffer, and an array
        imported before keeps the old value.

        >>> import gpuad as ad, numpy as np
        >>> v = ad.Variable([1.0, 2.0])
        >>> np.from_dlpack(v)
        array([1., 2.], dtype=float32)
        """
        return self._lend().__dlpack__(stream=stream, max_version=max_version,
                                       dl_device=dl_device, copy=copy)

    def __dlpack_device__(self) -> tuple:
        return self._lend().__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        """The current value's CUDA array interface; only on ``cuda`` (else
        ``AttributeError``). Like DLPack, it marks the buffer as exported."""
        t = self._lend()
        iface = t.__cuda_array_interface__
        t._lease.exported()
        return iface

    def to(self, device) -> Tensor:
        return self._read().to(device)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    # -- writing ---------------------------------------------------------------
    def _coerce(self, value) -> Tensor:
        """``value`` as a Tensor; data is converted to this variable's dtype and device."""
        if isinstance(value, Variable):
            return value._read()
        if isinstance(value, Tensor):
            return value
        return _convert(value, self.dtype, self._device, None, f"{self._name[:-2]}.assign")

    def assign(self, value, read_value=True):
        """Set the value; the shape and dtype must match exactly (no broadcasting)."""
        _bind(_T.ASSIGN, (self._coerce(value),), variables=(self,))
        return self if read_value else None

    def assign_add(self, delta, read_value=True):
        """Add ``delta`` (same shape and dtype); not differentiated."""
        _bind(_T.ASSIGN_ADD, (self._coerce(delta),), variable=self)
        return self if read_value else None

    def assign_sub(self, delta, read_value=True):
        """Subtract ``delta`` (same shape and dtype); not differentiated."""
        _bind(_T.ASSIGN_SUB, (self._coerce(delta),), variable=self)
        return self if read_value else None


_creation_order = operator.attrgetter("_id")


class locked:
    """``with locked(variables):`` holds the locks of all ``variables`` (each once,
    in creation order, so two threads locking overlapping sets never deadlock)."""

    __slots__ = ("_locks",)

    def __init__(self, variables):
        if len(variables) == 1:
            self._locks = [variables[0]._lock]
        else:
            ordered = sorted(variables, key=_creation_order)
            self._locks = [v._lock for i, v in enumerate(ordered) if not i or v is not ordered[i - 1]]

    def __enter__(self):
        taken = 0
        try:
            for lock in self._locks:
                lock.acquire()
                taken += 1
        except BaseException:
            for lock in reversed(self._locks[:taken]):
                lock.release()
            raise
        return self

    def __exit__(self, *exc):
        for lock in reversed(self._locks):
            lock.release()
        return False


from .ops.core import bind as _bind  # noqa: E402  (ops build on this module)
from .ops import core as _core  # noqa: E402
from .ops import table as _T  # noqa: E402
