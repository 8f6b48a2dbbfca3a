"""The fusion IR: a :class:`Group` of element-wise ops over one shape, as the tracer
hands it to the code generator.

Every op of a group is a row of ``gpuad.ops.table`` with a scalar functor (the
unary, binary, unary_grad, where, cast and fill families). Its arguments are the
group's external inputs (``("in", k)``, broadcast to the group's shape) or
earlier ops' results (``("op", j)``). A group is checked when it is made: each
op's dtype is what its row's rule gives for its arguments, so a group that
constructs is one the generator can compile.

>>> import numpy as np
>>> f32 = np.dtype(np.float32)
>>> g = Group(shape=(2, 3), inputs=(Operand((2, 3), f32), Operand((), f32)),
...           ops=(Op("multiply", (("in", 0), ("in", 1)), f32), Op("exp", (("op", 0),), f32)),
...           outputs=(1,))
>>> len(g.key()), g.size
(32, 6)
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Operand", "Op", "Group", "DTYPES", "FAMILIES", "CHECKED", "np_dtype"]

#: The dtypes generated kernels compute with (gpuad's own).
DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))
#: The kernel families whose rows have a scalar functor a group may hold.
FAMILIES = frozenset({"unary", "binary", "unary_grad", "where", "cast", "fill"})
#: Integer ops whose bad operands raise, with the cpu device's messages
#: (gpuad/devices/cpu.py; tests/compiler check the fused error equals the eager one).
CHECKED = {
    "floordiv": "Integer division by zero.",
    "floormod": "Integer division by zero.",
    "pow": "Integers to negative integer powers are not allowed; cast the base to a float dtype first "
           "(gpuad.cast(x, gpuad.float32)).",
}


def _primitive(name):
    from ..ops.table import PRIMITIVES
    return PRIMITIVES.get(name)


@dataclass(frozen=True)
class Operand:
    """An external input of a group: a device buffer of ``shape`` and ``dtype`` at
    run time, broadcastable to the group's shape (NumPy rules)."""
    shape: tuple
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


@dataclass(frozen=True)
class Op:
    """One element-wise op: primitive ``prim`` applied to ``args`` (each ``("in", k)``
    or ``("op", j)``), giving ``dtype``; ``attrs`` are sorted ``(name, value)`` pairs
    (cast: ``dtype``; fill: ``value``, ``dtype``, ``shape``)."""
    prim: str
    args: tuple
    dtype: np.dtype
    attrs: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "args", tuple((str(kind), int(i)) for kind, i in self.args))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "attrs", tuple(sorted((str(k), v) for k, v in self.attrs)))

    def attr(self, name, default=None):
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    @property
    def checked(self) -> bool:
        """Whether this op raises for some operands (integer floordiv/floormod/pow)."""
        return self.prim in CHECKED and self.dtype.kind == "i"


@dataclass(frozen=True)
class Group:
    """Element-wise ops computed together over ``shape``: external ``inputs``
    (:class:`Operand`), ``ops`` (:class:`Op`, in dependency order) and ``outputs``
    (indices into ``ops`` of the results the group returns, in that order)."""
    shape: tuple
    inputs: tuple
    ops: tuple
    outputs: tuple

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "outputs", tuple(int(j) for j in self.outputs))
        _check(self)

    @property
    def size(self) -> int:
        """The number of elements of every result."""
        return math.prod(self.shape)

    def key(self) -> str:
        """A stable hash of everything that affects the generated code and its
        run-time arguments (shapes, dtypes, ops, attributes, outputs): equal for
        equal groups, across processes."""
        key = self.__dict__.get("_key")
        if key is None:
            key = _key(self)
            object.__setattr__(self, "_key", key)
        return key


def _key(group: Group) -> str:
    parts = [repr(group.shape), repr(group.outputs)]
    parts += [f"in {x.shape} {x.dtype.str}" for x in group.inputs]
    parts += [f"op {op.prim} {op.args} {op.dtype.str} {_canonical(op.attrs)}" for op in group.ops]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _canonical(value) -> str:
    """Text that tells apart every value an attribute can hold (0.0 from -0.0, NaN
    payloads, 1 from 1.0 from True)."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_canonical(v) for v in value) + ")"
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return f"dtype:{np.dtype(value).str}"
    if isinstance(value, np.generic):
        return f"{value.dtype.str}:{value.tobytes().hex()}"
    if isinstance(value, float):
        return f"float:{value.hex()}"
    if hasattr(value, "numpy") and hasattr(value, "name"):  # a gpuad DType
        return f"dtype:{np.dtype(value.numpy).str}"
    return f"{type(value).__name__}:{value!r}"


# -- checks ------------------------------------------------------------------------

def _check(group: Group) -> None:
    """Raise ValueError (TypeError for a wrong kind of object) where ``group`` is not
    one the generator can compile; the rows' own rules raise their errors for
    operands of the wrong kind or dtype."""
    from ..tensor import Abstract
    shape = group.shape
    if any(d < 0 for d in shape):
        raise ValueError(f"fused group: negative dimension in shape {shape}")
    avals = []
    for k, x in enumerate(group.inputs):
        if not isinstance(x, Operand):
            raise TypeError(f"fused group: input {k} is a {type(x).__name__}, not an Operand")
        _dtype_ok(x.dtype, f"input {k}")
        if not _broadcasts_to(x.shape, shape):
            raise ValueError(f"fused group: input {k} of shape {x.shape} does not broadcast to the group's "
                             f"shape {shape}")
        avals.append(Abstract(x.shape, x.dtype, None))
    results = []
    for j, op in enumerate(group.ops):
        if not isinstance(op, Op):
            raise TypeError(f"fused group: op {j} is a {type(op).__name__}, not an Op")
        prim = _primitive(op.prim)
        if prim is None or prim.functor is None or prim.family not in FAMILIES:
            raise ValueError(f"fused group: op {j} ({op.prim}) is not an element-wise primitive with a scalar "
                             f"functor (families {', '.join(sorted(FAMILIES))})")
        _dtype_ok(op.dtype, f"op {j} ({op.prim})")
        args = []
        for kind, i in op.args:
            if kind == "in" and 0 <= i < len(avals):
                args.append(avals[i])
            elif kind == "op" and 0 <= i < j:
                args.append(results[i])
            else:
                raise ValueError(f"fused group: op {j} ({op.prim}) takes ({kind!r}, {i}), which is neither an "
                                 f"input ('in', 0..{len(avals) - 1}) nor an earlier op ('op', 0..{j - 1})")
        out_shape, out_dtype = _infer(prim, op, args, shape)
        if np.dtype(out_dtype) != op.dtype:
            raise ValueError(f"fused group: op {j} ({op.prim}) says dtype {op.dtype}, but its rule gives "
                             f"{np.dtype(out_dtype)} for these arguments")
        if not _broadcasts_to(tuple(out_shape), shape):
            raise ValueError(f"fused group: op {j} ({op.prim}) has shape {tuple(out_shape)}, which does not "
                             f"broadcast to the group's shape {shape}")
        results.append(Abstract(shape, op.dtype, None))
    if not group.outputs:
        raise ValueError("fused group: no outputs")
    for j in group.outputs:
        if not 0 <= j < len(group.ops):
            raise ValueError(f"fused group: output {j} is not an op index (0..{len(group.ops) - 1})")


def _infer(prim, op, args, shape):
    if prim.family == "fill":
        return prim.infer(shape=tuple(op.attr("shape", shape)), value=op.attr("value"), dtype=op.dtype,
                          device=None)
    if prim.family == "cast":
        return prim.infer(*args, dtype=np_dtype(op.attr("dtype", op.dtype)))
    return prim.infer(*args)


def np_dtype(value) -> np.dtype:
    """A NumPy dtype from a NumPy dtype, a scalar type or a gpuad DType."""
    return np.dtype(getattr(value, "numpy", value))


def _dtype_ok(dtype, what):
    if dtype not in DTYPES:
        raise ValueError(f"fused group: {what} has dtype {dtype}; generated kernels compute with "
                         f"float32, float64, int32, int64 and bool")


def _broadcasts_to(shape, target) -> bool:
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(shape[::-1], target[::-1]))
