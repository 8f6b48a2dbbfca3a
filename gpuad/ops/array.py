"""Shape and layout ops, and indexing.

>>> import gpuad as ad
>>> x = ad.reshape(ad.range(6), (2, 3))
>>> x[:, 1:].numpy()
array([[1, 2],
       [4, 5]], dtype=int32)
>>> ad.concat([x, x], axis=0).shape
(4, 3)
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgumentError
from ..tensor import Tensor, Variable
from . import table as T
from . import core as _core
from .core import bind
from .operands import to_tensor
from .shapes import _int_items, all_ints, normalize_axis, shape_arg


def reshape(tensor, shape):
    """The same values in a new shape; one dimension may be -1 (inferred).

    >>> import gpuad as ad
    >>> ad.reshape(ad.range(6), (3, -1)).shape
    (3, 2)
    """
    x = to_tensor(tensor)
    if type(shape) is not tuple or not all_ints(shape, -1):  # else the common case
        shape = tuple(_int_items("reshape", "shape", shape))
        for i, d in enumerate(shape):
            if d < -1:
                raise InvalidArgumentError(f"Size {i} must be non-negative, not {d} (shape "
                                           f"{list(shape)}); only -1 may stand for an inferred "
                                           f"dimension.", "reshape")
    size = x._data.size
    if -1 in shape:
        if shape.count(-1) > 1:
            first = shape.index(-1)
            raise InvalidArgumentError(
                f"Only one input size may be -1, not both {first} and "
                f"{shape.index(-1, first + 1)} (shape {list(shape)}); give all but one "
                f"dimension explicitly.", "reshape")
        known = math.prod(d for d in shape if d != -1)
        if (known == 0 and size) or (known and size % known):
            raise InvalidArgumentError(f"Input to reshape is a tensor with {size} values, but the "
                                       f"requested shape {list(shape)} cannot hold them.", "reshape")
        shape = tuple((size // known if known else 0) if d == -1 else d for d in shape)
    if shape == x._data.shape:
        return x
    return bind(T.RESHAPE, (x,), shape=shape)


def transpose(a, perm=None):
    """Permute the axes (default: reverse them).

    >>> import gpuad as ad
    >>> ad.transpose(ad.ones((2, 3, 4)), (2, 0, 1)).shape
    (4, 2, 3)
    """
    x = to_tensor(a)
    if perm is None:
        perm = tuple(range(x.ndim))[::-1]
    else:
        perm = tuple(_int_items("transpose", "perm", perm))
    perm = tuple(p % max(x.ndim, 1) if -x.ndim <= p < x.ndim else p for p in perm)
    if perm == tuple(range(x.ndim)):
        return x
    return bind(T.TRANSPOSE, (x,), perm=perm)


def matrix_transpose(a):
    """Swap the last two axes."""
    x = to_tensor(a)
    perm = list(range(x.ndim))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return transpose(x, perm)


def expand_dims(input, axis):  # noqa: A002
    """Insert a size-1 axis at ``axis`` (negative counts from the end of the result)."""
    x = to_tensor(input)
    axis = normalize_axis("expand_dims", axis, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(input, axis=None):  # noqa: A002
    """Drop size-1 axes (all of them, or those in ``axis``)."""
    x = to_tensor(input)
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        # a repeated axis squeezes once, as TensorFlow
        axes = [normalize_axis("squeeze", a, x.ndim) for a in _int_items("squeeze", "axis", axis)]
        for a in axes:
            if x.shape[a] != 1:
                raise InvalidArgumentError(f"Can not squeeze dim[{a}], expected a dimension of 1, "
                                           f"got {x.shape[a]} (shape {x.shape}).", "squeeze")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def broadcast_to(input, shape):  # noqa: A002
    """``input`` repeated along broadcast axes to ``shape``."""
    x = to_tensor(input)
    shape = shape_arg("broadcast_to", shape)
    if shape == x.shape:
        return x
    return bind(T.BROADCAST_TO, (x,), shape=shape)


def tile(input, multiples):  # noqa: A002
    """Repeat ``input`` ``multiples[i]`` times along each axis i.

    >>> import gpuad as ad
    >>> ad.tile(ad.constant([[1, 2]]), [2, 2]).numpy()
    array([[1, 2, 1, 2],
           [1, 2, 1, 2]], dtype=int32)
    """
    x = to_tensor(input)
    multiples = tuple(_int_items("tile", "multiples", multiples))
    for m in multiples:
        if m < 0:
            raise InvalidArgumentError(f"Expected multiples argument to be non-negative, but got "
                                       f"{m} (multiples {list(multiples)}).", "tile")
    if len(multiples) != x.ndim:
        raise InvalidArgumentError(f"tile: multiples has length {len(multiples)} but the input "
                                   f"has rank {x.ndim}.", "tile")
    # (a, b) -> (1, a, 1, b) -> broadcast (m0, a, m1, b) -> (m0 a, m1 b)
    spread = reshape(x, tuple(v for d in x.shape for v in (1, d)))
    big = broadcast_to(spread, tuple(v for m, d in zip(multiples, x.shape) for v in (m, d)))
    return reshape(big, tuple(m * d for m, d in zip(multiples, x.shape)))


def concat(values, axis):
    """Join tensors along an existing axis.

    >>> import gpuad as ad
    >>> ad.concat([ad.ones((2, 1)), ad.zeros((2, 2))], axis=1).shape
    (2, 3)
    """
    xs = tuple(to_tensor(v) for v in values)
    if not xs:
        raise InvalidArgumentError("concat needs at least one tensor.", "concat")
    first = xs[0]
    if first.ndim == 0:
        raise InvalidArgumentError("concat of scalars: use gpuad.stack.", "concat")
    axis = normalize_axis("concat", axis, first.ndim)
    if len(xs) == 1:
        T.CONCAT.infer(*xs, axis=axis)
        return first
    return bind(T.CONCAT, xs, axis=axis)


def stack(values, axis=0):
    """Join same-shaped tensors along a new axis.

    >>> import gpuad as ad
    >>> ad.stack([ad.ones(3), ad.zeros(3)]).shape
    (2, 3)
    """
    xs = [to_tensor(v) for v in values]
    if not xs:
        raise InvalidArgumentError("stack needs at least one tensor.", "stack")
    for i, x in enumerate(xs[1:], 1):
        if x.shape != xs[0].shape:
            raise InvalidArgumentError(f"Shapes of all inputs must match: values[0].shape = "
                                       f"{xs[0].shape} != values[{i}].shape = {x.shape}", "stack")
    axis = normalize_axis("stack", axis, xs[0].ndim + 1)
    return concat([expand_dims(x, axis) for x in xs], axis)


def split(value, num_or_size_splits, axis=0):
    """Split along ``axis`` into equal parts (an int) or parts of given sizes
    (a list; one may be -1).

    >>> import gpuad as ad
    >>> [t.shape for t in ad.split(ad.ones((2, 6)), [1, 5], axis=1)]
    [(2, 1), (2, 5)]
    """
    x = to_tensor(value)
    axis = normalize_axis("split", axis, x.ndim)
    n = x.shape[axis]
    items = _int_items("split", "num_or_size_splits", num_or_size_splits)
    scalar = not isinstance(num_or_size_splits, (list, tuple, np.ndarray)) and not (
        hasattr(num_or_size_splits, "shape") and len(num_or_size_splits.shape) == 1)
    if scalar:
        k = items[0]
        if k <= 0 or n % k:
            raise InvalidArgumentError(f"Number of ways to split should evenly divide the split "
                                       f"dimension, but got split_dim {axis} (size = {n}) and "
                                       f"num_split {k}", "split")
        sizes = [n // k] * k
    else:
        sizes = items
        if sizes.count(-1) > 1:
            raise InvalidArgumentError(f"split: only one of the sizes {sizes} may be -1 "
                                       f"(inferred).", "split")
        if sizes.count(-1) == 1:
            sizes[sizes.index(-1)] = n - (sum(sizes) + 1)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise InvalidArgumentError(f"split sizes {list(num_or_size_splits)} do not add up to "
                                       f"the size {n} of axis {axis}.", "split")
    out, start = [], 0
    for s in sizes:
        key = (slice(None),) * axis + (slice(start, start + s, 1),)
        out.append(strided_slice(x, canonical_key(x.shape, key)))
        start += s
    return out


def unstack(value, axis=0):
    """The slices of ``value`` along ``axis``, each without that axis."""
    x = to_tensor(value)
    axis = normalize_axis("unstack", axis, x.ndim)
    return [strided_slice(x, canonical_key(x.shape, (slice(None),) * axis + (i,)))
            for i in range(x.shape[axis])]


def gather(params, indices, axis=0, batch_dims=0):
    """Pick slices of ``params`` along ``axis`` at integer ``indices``; the result
    has shape ``params.shape[:axis] + indices.shape + params.shape[axis+1:]``.
    Its gradient is a dense tensor (TensorFlow returns IndexedSlices). An index outside
    ``[0, params.shape[axis])`` raises InvalidArgumentError on ``cpu``; on ``cuda`` and
    ``emulated`` it reads zeros unless ``GPUAD_CHECK_INDICES=1`` (README, API section).

    >>> import gpuad as ad
    >>> ad.gather(ad.constant([10, 20, 30]), [2, 0]).numpy()
    array([30, 10], dtype=int32)
    """
    if batch_dims:
        raise InvalidArgumentError("gather: batch_dims is not supported yet.", "gather")
    x = to_tensor(params)
    idx = indices if isinstance(indices, Tensor) else to_tensor(indices)
    axis = normalize_axis("gather", axis, x.ndim)
    return bind(T.GATHER, (x, idx), axis=axis)


def scatter_add(updates, indices, shape, axis=0):
    """Zeros of ``shape`` with ``updates`` added at ``indices`` along ``axis``
    (duplicates add up): the gradient of :func:`gather`."""
    upd, idx = to_tensor(updates), to_tensor(indices)
    shape = shape_arg("scatter_add", shape)
    return bind(T.SCATTER_ADD, (upd, idx), axis=normalize_axis("scatter_add", axis, len(shape)),
                shape=shape)


def identity(input):  # noqa: A002
    """A new tensor with the same value; differentiable (unlike stop_gradient)."""
    x = to_tensor(input)
    return bind(T.RESHAPE, (x,), shape=x.shape)


def stop_gradient(input):  # noqa: A002
    """The same value, but no gradient flows through it.

    >>> import gpuad as ad
    >>> x = ad.constant(3.0)
    >>> with ad.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = ad.stop_gradient(x * x) * x
    >>> float(tape.gradient(y, x))
    9.0
    """
    from ..compiler.trace import same_value
    if isinstance(input, Variable):
        if _core._pushed[0]:  # inside gpuad.function: a read the replay makes
            from ..tape import stop_recording_all
            with stop_recording_all():
                return same_value(input._read())
        return same_value(input._lend())
    return same_value(to_tensor(input))


# -- indexing ----------------------------------------------------------------------

def canonical_key(shape, key) -> tuple:
    """A basic index (ints, slices, None, Ellipsis) in canonical form: one
    entry per input axis or None, ints non-negative, slices with explicit
    start/stop/step. Raises for out-of-range ints and too many indices."""
    key = tuple(key) if isinstance(key, tuple) else (key,)
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise InvalidArgumentError("An index can only have a single ellipsis ('...').", "strided_slice")
    if consumed > len(shape):
        raise InvalidArgumentError(f"Index out of range: {consumed} indices for a tensor of rank "
                                   f"{len(shape)} (shape {tuple(shape)}).", "strided_slice")
    out, dim = [], 0
    for k in key:
        if k is Ellipsis:
            for _ in range(len(shape) - consumed):
                out.append(slice(0, shape[dim], 1))
                dim += 1
        elif k is None:
            out.append(None)
        elif isinstance(k, slice):
            start, stop, step = k.indices(shape[dim])
            if not len(range(start, stop, step)):
                out.append(slice(0, 0, 1))  # empty: no -1 start that would read as "last"
            else:
                # a backward slice that runs to the front ends at None, not -1 ("last")
                out.append(slice(start, stop if stop >= 0 else None, step))
            dim += 1
        else:
            i, n = int(k), shape[dim]
            if not -n <= i < n:
                raise InvalidArgumentError(f"slice index {i} of dimension {dim} out of bounds "
                                           f"(size {n}).", "strided_slice")
            out.append(i % n)
            dim += 1
    while dim < len(shape):
        out.append(slice(0, shape[dim], 1))
        dim += 1
    return tuple(out)


def strided_slice(x, key):
    """``x[key]`` for a canonical basic key (see :func:`canonical_key`)."""
    return bind(T.STRIDED_SLICE, (to_tensor(x),), key=key)


def strided_slice_grad(g, shape, key):
    """Zeros of ``shape`` with ``g`` written at ``key``: the gradient of a slice."""
    return bind(T.STRIDED_SLICE_GRAD, (to_tensor(g),), shape=tuple(shape), key=key)


def _is_advanced(k) -> bool:
    return isinstance(k, (Tensor, Variable, list, np.ndarray))


def getitem(x, key):
    """NumPy-style indexing: ints, slices (with steps), None, ``...``, and one
    integer tensor (or list) which gathers."""
    x = to_tensor(x)
    key = key if isinstance(key, tuple) else (key,)
    advanced = [i for i, k in enumerate(key) if _is_advanced(k)]
    for k in key:
        if isinstance(k, (bool, np.bool_)) or (_is_advanced(k) and to_tensor(k).dtype.is_bool):
            raise TypeError("Boolean mask indexing is not supported; use gpuad.where or gather "
                            "with integer indices.")
        if not (_is_advanced(k) or k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))):
            raise TypeError(f"Only integers, slices (`:`), ellipsis (`...`), None and integer "
                            f"tensors are valid indices, got {k!r}.")
    if len(advanced) > 1:
        raise TypeError("Only one integer-tensor index per indexing expression is supported; "
                        "index in two steps or use gpuad.gather.")
    if not advanced:
        canon = canonical_key(x.shape, key)
        if all(isinstance(k, slice) and k == slice(0, d, 1) for k, d in zip(canon, x.shape)) \
                and len(canon) == x.ndim:
            return x
        return strided_slice(x, canon)
    pos = advanced[0]
    index = to_tensor(key[pos])
    basic = key[:pos] + (slice(None),) + key[pos + 1:]
    sliced = getitem(x, basic)
    # where the gathered axis sits in the sliced result: after the kept axes before it
    before = key[:pos]
    if any(k is Ellipsis for k in before):
        ellipsis_span = x.ndim - sum(1 for k in key if k is not None and k is not Ellipsis)
    else:
        ellipsis_span = 0
    axis = sum(1 for k in before if k is None or isinstance(k, slice)) + \
        sum(ellipsis_span for k in before if k is Ellipsis)
    # NumPy treats integers as advanced indices too once an array index is present:
    # separated from it by a slice, None or ..., the indexed axes move to the front.
    out = gather(sliced, index, axis=axis)
    scalars = [i for i, k in enumerate(key) if isinstance(k, (int, np.integer))]
    if scalars and any(not isinstance(key[i], (int, np.integer)) and not _is_advanced(key[i])
                       for i in range(min(scalars + [pos]), max(scalars + [pos]))):
        moved = list(range(axis, axis + index.ndim))
        out = transpose(out, moved + [i for i in range(out.ndim) if i not in moved])
    return out
