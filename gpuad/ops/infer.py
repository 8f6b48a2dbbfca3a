"""Shape and dtype rules: each returns a primitive's output ``(shape, numpy dtype)``
from its inputs' shapes, dtypes and devices and its attributes, or raises the
op's error. They run before any kernel (``bind`` calls them first), so a
failed op computes and records nothing, and they read no data: they work on
:class:`gpuad.ops.core.Abstract` values as well as on Tensors.

>>> import numpy as np
>>> from gpuad.ops import infer
>>> import gpuad as ad
>>> rule = infer.binary("fiu")
>>> rule(ad.ones((2, 1)), ad.ones((3,)))
((2, 3), dtype('float32'))
>>> infer.matmul(ad.ones((2, 3)), ad.ones((4, 5)), transpose_a=False, transpose_b=False)
Traceback (most recent call last):
...
gpuad.errors.InvalidArgumentError: Matrix size-incompatible: In[0]: [2,3], In[1]: [4,5]; the inner dimensions must agree. [Op:matmul]
"""
from __future__ import annotations

import math

import numpy as np

from ..dtypes import from_numpy
from ..errors import InvalidArgumentError
from .shapes import broadcast_shape, check_dims

_BOOL = np.dtype(np.bool_)
_INT64 = np.dtype(np.int64)
_KIND_NAMES = {"f": "float", "fiu": "float or integer", "b": "bool"}


# -- errors every rule shares ---------------------------------------------------------

def kind_error(op, kinds, x, index):
    allowed = _KIND_NAMES.get(kinds, kinds)
    to = "bool" if kinds == "b" else "float32"
    return InvalidArgumentError(
        f"{op} does not support {from_numpy(x._data.dtype).name} tensors (input #{index}); it "
        f"takes {allowed} tensors. Cast with gpuad.cast(x, gpuad.{to}).", op)


def dtype_error(op, expected, got, index):
    """Two operands that must share a dtype do not (``expected``/``got``: gpuad or NumPy dtypes)."""
    expected, got = from_numpy(np.dtype(getattr(expected, "numpy", expected))), \
        from_numpy(np.dtype(getattr(got, "numpy", got)))
    return InvalidArgumentError(
        f"cannot compute {op} as input #{index}(zero-based) was expected to be a {expected.name} "
        f"tensor but is a {got.name} tensor. gpuad does not promote dtypes implicitly: cast one "
        f"operand with gpuad.cast(x, gpuad.{expected.name}).", op)


def device_error(op, a, b):
    return InvalidArgumentError(
        f"{op} got tensors on different devices: {a.name} and {b.name}. gpuad never copies "
        f"implicitly; move one with .to({a.name!r}) or .to({b.name!r}).", op)


def same_device(op, inputs):
    dev = inputs[0]._device
    for x in inputs[1:]:
        if x._device is not dev:
            raise device_error(op, dev, x._device)
    return dev


def _kinds(op, kinds, *inputs):
    for i, x in enumerate(inputs):
        if x._data.dtype.kind not in kinds:
            raise kind_error(op, kinds, x, i)


# -- element-wise -----------------------------------------------------------------------

def unary(kinds, op=None):
    """x -> same shape and dtype; ``x``'s dtype kind must be in ``kinds``."""
    def rule(x):
        d = x._data
        if d.dtype.kind not in kinds:
            raise kind_error(rule.op, kinds, x, 0)
        return d.shape, d.dtype
    rule.op = op
    return rule


def binary(kinds, to_bool=False, op=None):
    """(x, y) -> their broadcast shape; equal dtypes of a kind in ``kinds``;
    a bool result for comparisons (``to_bool``)."""
    def rule(x, y):
        xd, yd = x._data, y._data
        dtype = xd.dtype
        if dtype is not yd.dtype and dtype != yd.dtype:  # (identity first: it is cheap)
            raise dtype_error(rule.op, dtype, yd.dtype, 1)
        if dtype.kind not in kinds:
            raise kind_error(rule.op, kinds, x, 0)
        if y._device is not x._device:
            raise device_error(rule.op, x._device, y._device)
        shape = xd.shape
        if shape != yd.shape:
            shape = broadcast_shape(rule.op, shape, yd.shape)
        return shape, (_BOOL if to_bool else dtype)
    rule.op = op
    return rule


def where(c, x, y):
    if c._data.dtype.kind != "b":
        raise InvalidArgumentError(f"where's condition must be a bool tensor, got "
                                   f"{from_numpy(c._data.dtype).name}; compare first (x > 0).",
                                   "where")
    if x._data.dtype != y._data.dtype:
        raise dtype_error("where", x._data.dtype, y._data.dtype, 2)
    same_device("where", (c, x, y))
    shape = broadcast_shape("where", broadcast_shape("where", c._data.shape, x._data.shape),
                            y._data.shape)
    return shape, x._data.dtype


def cast(x, dtype):
    return x._data.shape, np.dtype(dtype)


# -- reductions ---------------------------------------------------------------------------

_reduced_shapes: dict = {}


def reduced_shape(op, shape, axes, keepdims) -> tuple:
    """``shape`` without ``axes`` (or with them as 1, ``keepdims``); the axes must be
    sorted, distinct and in range (as ``normalize_axes`` makes them). Cached: a
    training loop asks the same few questions on every step."""
    key = (shape, axes, keepdims)
    out = _reduced_shapes.get(key)
    if out is None:
        ndim = len(shape)
        if any(not 0 <= a < max(ndim, 1) for a in axes) or list(axes) != sorted(set(axes)):
            raise InvalidArgumentError(f"{op}: axes {axes} must be sorted, distinct and in "
                                       f"[0, {ndim}) (normalise them with normalize_axes).", op)
        if keepdims:
            out = tuple(1 if i in axes else n for i, n in enumerate(shape))
        else:
            out = tuple(n for i, n in enumerate(shape) if i not in axes)
        if len(_reduced_shapes) < 8192:
            _reduced_shapes[key] = out
    return out


def reduce(kinds, op=None):
    """x -> x's shape without ``axes`` (or with them as 1, ``keepdims``)."""
    def rule(x, axes, keepdims):
        d = x._data
        if d.dtype.kind not in kinds:
            raise InvalidArgumentError(f"{rule.op} does not support "
                                       f"{from_numpy(d.dtype).name} tensors.", rule.op)
        return reduced_shape(rule.op, d.shape, axes, keepdims), d.dtype
    rule.op = op
    return rule


def arg_reduce(op=None):
    """x -> int64 indices along ``axis`` (the axis removed)."""
    def rule(x, axis):
        d = x._data
        name = rule.op
        if d.dtype.kind not in "fiu":
            raise kind_error(name, "fiu", x, 0)
        if not d.shape:
            raise InvalidArgumentError(f"{name} needs a tensor of rank >= 1, got a scalar.", name)
        if not 0 <= axis < len(d.shape):
            raise InvalidArgumentError(f"{name}: axis {axis} is out of range for shape "
                                       f"{d.shape}.", name)
        if d.shape[axis] == 0:
            raise InvalidArgumentError(f"{name} over an empty axis {axis} (shape {d.shape}) has "
                                       f"no answer.", name)
        return d.shape[:axis] + d.shape[axis + 1:], _INT64
    rule.op = op
    return rule


# -- linear algebra --------------------------------------------------------------------------

def matmul(a, b, transpose_a, transpose_b):
    ad, bd = a._data, b._data
    if ad.dtype != bd.dtype:
        raise dtype_error("matmul", ad.dtype, bd.dtype, 1)
    sa, sb = ad.shape, bd.shape
    if len(sa) < 2 or len(sb) < 2:
        raise InvalidArgumentError(
            f"In[0] and In[1] ndims must be >= 2: got shapes {sa} and {sb}. For a "
            f"vector use gpuad.tensordot(a, b, 1) or reshape it to a matrix.", "matmul")
    ma = sa[-2:][::-1] if transpose_a else sa[-2:]
    mb = sb[-2:][::-1] if transpose_b else sb[-2:]
    if ma[1] != mb[0]:
        raise InvalidArgumentError(
            f"Matrix size-incompatible: In[0]: [{ma[0]},{ma[1]}], In[1]: [{mb[0]},{mb[1]}]; the "
            f"inner dimensions must agree.", "matmul")
    batch = broadcast_shape("matmul", sa[:-2], sb[:-2])
    if ad.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"matmul does not support {from_numpy(ad.dtype).name} "
                                   f"tensors.", "matmul")
    same_device("matmul", (a, b))
    return batch + (ma[0], mb[1]), ad.dtype


# -- layout ------------------------------------------------------------------------------------

def reshape(x, shape):
    size = x._data.size
    check_dims("reshape", shape)
    if math.prod(shape) != size:
        raise InvalidArgumentError(f"Input to reshape is a tensor with {size} values, but the "
                                   f"requested shape {list(shape)} has {math.prod(shape)}.",
                                   "reshape")
    return tuple(shape), x._data.dtype


def transpose(x, perm):
    d = x._data
    if sorted(perm) != list(range(len(d.shape))):
        raise InvalidArgumentError(f"transpose: perm {list(perm)} is not a permutation of the "
                                   f"{len(d.shape)} axes of a tensor of shape {d.shape}.",
                                   "transpose")
    return tuple(d.shape[p] for p in perm), d.dtype


def broadcast_to(x, shape):
    check_dims("broadcast_to", shape)
    if broadcast_shape("broadcast_to", x._data.shape, shape) != tuple(shape):
        raise InvalidArgumentError(f"Unable to broadcast tensor of shape {x._data.shape} to "
                                   f"shape {tuple(shape)}.", "broadcast_to")
    return tuple(shape), x._data.dtype


def sliced_shape(shape, key) -> tuple:
    """The shape of ``x[key]`` for a canonical key (``gpuad.ops.array.canonical_key``)."""
    out, dim = [], 0
    for k in key:
        if k is None:
            out.append(1)
            continue
        if isinstance(k, slice):
            out.append(len(range(*k.indices(shape[dim]))))
        elif not 0 <= k < shape[dim]:
            raise InvalidArgumentError(f"slice index {k} of dimension {dim} out of bounds "
                                       f"(size {shape[dim]}).", "strided_slice")
        dim += 1
    if dim != len(shape):
        raise InvalidArgumentError(f"strided_slice: the key {key} indexes {dim} axes of a "
                                   f"tensor of rank {len(shape)}; canonicalise it first.",
                                   "strided_slice")
    return tuple(out)


def strided_slice(x, key):
    return sliced_shape(x._data.shape, key), x._data.dtype


def strided_slice_grad(g, shape, key):
    expected = sliced_shape(tuple(shape), key)
    if g._data.shape != expected:
        raise InvalidArgumentError(f"strided_slice_grad: the gradient has shape {g._data.shape}, "
                                   f"but slicing {tuple(shape)} with {key} gives {expected}.",
                                   "strided_slice_grad")
    return tuple(shape), g._data.dtype


def concat(*xs, axis):
    first = xs[0]._data
    if not first.shape:
        raise InvalidArgumentError("concat of scalars: use gpuad.stack.", "concat")
    if not 0 <= axis < len(first.shape):
        raise InvalidArgumentError(f"concat: axis {axis} is out of range for rank "
                                   f"{len(first.shape)}.", "concat")
    total = 0
    for i, x in enumerate(xs):
        d = x._data
        if d.dtype != first.dtype:
            raise dtype_error("concat", first.dtype, d.dtype, i)
        if len(d.shape) != len(first.shape) or any(
                a != b for k, (a, b) in enumerate(zip(d.shape, first.shape)) if k != axis):
            raise InvalidArgumentError(
                f"ConcatOp : Dimension mismatch: input #0 has shape {first.shape} and input #{i} "
                f"has shape {d.shape}; they must agree except on axis {axis}.", "concat")
        total += d.shape[axis]
    same_device("concat", xs)
    return first.shape[:axis] + (total,) + first.shape[axis + 1:], first.dtype


def _int_indices(op, idx):
    if idx._data.dtype.kind not in "iu":
        raise InvalidArgumentError(f"{op}: indices must be an integer tensor, got "
                                   f"{from_numpy(idx._data.dtype).name}.", op)


def gather(x, indices, axis):
    _int_indices("gather", indices)
    if indices._device is not x._device:
        raise InvalidArgumentError(f"gather: params on {x._device.name} and indices on "
                                   f"{indices._device.name}; move one with .to(...).", "gather")
    s = x._data.shape
    if not 0 <= axis < len(s):
        raise InvalidArgumentError(f"gather: axis {axis} is out of range for params of shape "
                                   f"{s}.", "gather")
    return s[:axis] + indices._data.shape + s[axis + 1:], x._data.dtype


def scatter_add(updates, indices, axis, shape):
    _int_indices("scatter_add", indices)
    same_device("scatter_add", (updates, indices))
    shape = tuple(shape)
    check_dims("scatter_add", shape)
    if not 0 <= axis < len(shape):
        raise InvalidArgumentError(f"scatter_add: axis {axis} is out of range for shape "
                                   f"{shape}.", "scatter_add")
    expected = shape[:axis] + indices._data.shape + shape[axis + 1:]
    if updates._data.shape != expected:
        raise InvalidArgumentError(f"scatter_add: updates of shape {updates._data.shape} do not "
                                   f"fit indices of shape {indices._data.shape} into {shape} "
                                   f"along axis {axis} (expected {expected}).", "scatter_add")
    return shape, updates._data.dtype


def one_hot(indices, depth, on_value, off_value, dtype):
    _int_indices("one_hot", indices)
    if type(depth) is not int and not isinstance(depth, np.integer) or isinstance(depth, bool):
        raise TypeError(f"one_hot: depth must be an integer, got {depth!r} "
                        f"({type(depth).__name__}).")
    if depth < 0:
        raise InvalidArgumentError(f"depth must be non-negative, got: {depth}; one_hot needs "
                                   f"the number of classes (>= 0).", "one_hot")
    return indices._data.shape + (depth,), np.dtype(dtype)


# -- nn ---------------------------------------------------------------------------------------

def softmax(op=None):
    def rule(x, axis):
        d = x._data
        if d.dtype.kind != "f":
            raise InvalidArgumentError(f"{rule.op} takes float tensors, got "
                                       f"{from_numpy(d.dtype).name}.", rule.op)
        if not 0 <= axis < max(len(d.shape), 1):
            raise InvalidArgumentError(f"{rule.op}: axis {axis} is out of range for shape "
                                       f"{d.shape}.", rule.op)
        return d.shape, d.dtype
    rule.op = op
    return rule


def softmax_cross_entropy(labels, logits, axis):
    ld, xd = labels._data, logits._data
    op = "softmax_cross_entropy"
    if ld.dtype != xd.dtype:
        raise InvalidArgumentError(f"labels ({from_numpy(ld.dtype).name}) and logits "
                                   f"({from_numpy(xd.dtype).name}) must have the same dtype.", op)
    if ld.shape != xd.shape:
        raise InvalidArgumentError(f"logits and labels must have the same shape: logits "
                                   f"{xd.shape} vs labels {ld.shape}.", op)
    if not xd.shape or xd.dtype.kind != "f":
        raise InvalidArgumentError("softmax_cross_entropy takes float logits of rank >= 1.", op)
    same_device("softmax_cross_entropy", (labels, logits))
    return xd.shape[:axis] + xd.shape[axis + 1:], xd.dtype


# -- creation, copies, state ---------------------------------------------------------------------

def fill(shape, value, dtype, device):
    check_dims("fill", shape)
    return tuple(shape), np.dtype(dtype)


def constant(value, device):
    return value.shape, value.dtype


def random(op=None):
    def rule(shape, dtype, stream, device):
        check_dims(rule.op, shape)
        if np.dtype(dtype).kind != "f":
            raise InvalidArgumentError(f"random.{rule.op.removeprefix('random_')} makes float "
                                       f"tensors; got dtype {np.dtype(dtype).name}.", rule.op)
        return tuple(shape), np.dtype(dtype)
    rule.op = op
    return rule


def copy(x, device):
    return x._data.shape, x._data.dtype


def read_variable(variable):
    return variable._data.shape, variable._data.dtype


def same_as_variable(op):
    """A write into a Variable: the value must have the variable's shape, dtype
    and device exactly (no broadcasting)."""
    def rule(value, variable):
        v, d = variable, value._data
        if d.dtype != v.dtype.numpy:
            raise ValueError(f"Tensor conversion requested dtype {v.dtype.name} for Tensor with "
                             f"dtype {from_numpy(d.dtype).name}. Cast it first with "
                             f"gpuad.cast(value, gpuad.{v.dtype.name}).")
        if value._device is not v._device:
            raise InvalidArgumentError(
                f"Cannot {op} a tensor on {value._device.name} to variable '{v.name}' on "
                f"{v._device.name}; move it with .to({v._device.name!r}).", op)
        if d.shape != v.shape:
            if op == "assign":
                raise ValueError(f"Cannot assign value to variable '{v.name}': Shape mismatch. "
                                 f"The variable shape {v.shape}, and the assigned value shape "
                                 f"{d.shape} are incompatible.")
            raise InvalidArgumentError(
                f"Cannot update variable '{v.name}' with shape {list(v.shape)} using a Tensor "
                f"with shape {list(d.shape)}, shapes must be equal.", op)
        return d.shape, d.dtype
    return rule


def assign(*values, variables):
    """Values for variables, one each; each must fit its variable exactly."""
    if len(values) != len(variables):
        raise InvalidArgumentError(f"assign: {len(values)} values for {len(variables)} "
                                   f"variables.", "assign")
    rule = same_as_variable("assign")
    for value, variable in zip(values, variables):
        rule(value, variable)
    return None


def apply_update(*grads, rule, variables, slots, hyper, iterations, caches):
    """A fused optimizer step: one gradient per variable, same shape, dtype and device."""
    if len(grads) != len(variables):
        raise InvalidArgumentError(f"{rule}: {len(grads)} gradients for {len(variables)} "
                                   f"variables.", rule)
    for g, v in zip(grads, variables):
        if g._device is not v._device:
            raise InvalidArgumentError(
                f"The gradient for variable '{v.name}' is on {g._device.name} but the variable "
                f"is on {v._device.name}; move it with .to({v._device.name!r}).", rule)
        gd, vd = g._data, v._data
        if gd.shape != vd.shape:  # (TensorFlow's words)
            raise InvalidArgumentError(
                f"Cannot update variable '{v.name}' with shape {list(vd.shape)} using a Tensor "
                f"with shape {list(gd.shape)}, shapes must be equal.", rule)
        if gd.dtype is not vd.dtype and gd.dtype != vd.dtype:
            raise InvalidArgumentError(
                f"Cannot update variable '{v.name}' ({v.dtype.name}) with a gradient of "
                f"{from_numpy(gd.dtype).name}; cast the gradient with gpuad.cast(g, "
                f"gpuad.{v.dtype.name}).", rule)
    return None
