"""GradientTape: records the ops run on watched values and plays them back
in reverse to compute gradients.

How it works: each thread has a stack of active tapes. An op asks
:func:`record` to note it only when some active tape tracks one of its
inputs; the node (primitive, inputs, output, attrs) is appended to every such
tape, in execution order, so walking a tape's list backwards is a reverse
topological order. The VJPs are gpuad ops themselves, so a backward pass run
while an outer tape records is recorded too: that is all nested derivatives
need.

>>> import gpuad as ad
>>> x = ad.constant(2.0)
>>> with ad.GradientTape() as outer:
...     outer.watch(x)
...     with ad.GradientTape() as inner:
...         inner.watch(x)
...         y = x ** 3
...     dy = inner.gradient(y, x)
>>> float(dy), float(outer.gradient(dy, x))
(12.0, 12.0)
"""
from __future__ import annotations

import contextlib
import enum
import logging
import threading

from . import nest
from .errors import InvalidArgumentError
from .tensor import Abstract, Tensor, Variable, _abstracts

__all__ = ["GradientTape", "UnconnectedGradients", "stop_recording_all"]

_log = logging.getLogger("gpuad")

_NON_PERSISTENT = ("A non-persistent GradientTape can only be used to compute one set of "
                   "gradients (or jacobians)")


class _TapeState(threading.local):
    def __init__(self):
        self.stack: list[GradientTape] = []  # active, recording tapes, innermost last
        self.variable_reads: list | None = None  # set while a custom_gradient runs


_state = _TapeState()


# One recorded op is a *node*, a plain tuple (cheap to make: every op under a
# tape makes one):
#
#     (prim, inputs, ids, out, out_id, attrs)
#
# Of the inputs and the output it keeps only what the primitive's VJPs read (the
# row's ``keeps``): other inputs become :class:`~gpuad.ops.core.Abstract` values
# (shape, dtype and device, no data; shared between nodes) and an output not
# kept becomes None, so the tape does not hold the memory of, say, an ``add``'s
# inputs. ``ids`` are the inputs' ids (None when every input is kept: then they
# are the inputs' own) and ``out_id`` the output's: they route the gradients. A
# tape drops the node as soon as its VJP has run (non-persistent) or when the
# tape is dropped.

def _node_dropping(prim, inputs, out, attrs) -> tuple:
    """The node of a row that does not keep every input (see above)."""
    # An input's Abstract comes from Abstract.like's cache, looked up inline in the
    # common cases (one and two inputs): this runs for every recorded add or exp.
    kept_out = out if prim.keep_out else None
    keep = prim.keep_inputs
    n = len(inputs)
    if n == 1 and len(keep) == 1:
        (x,) = inputs  # (were it kept, keep_all_inputs would hold)
        d = x._data
        return (prim, (_abstracts.get((d.shape, d.dtype, x._device)) or Abstract.like(x),),
                (x._id,), kept_out, out._id, attrs)
    if n == 2 and len(keep) == 2:
        x, y = inputs
        if not keep[0]:
            d = x._data
            x = _abstracts.get((d.shape, d.dtype, x._device)) or Abstract.like(x)
        if not keep[1]:
            d = y._data
            y = _abstracts.get((d.shape, d.dtype, y._device)) or Abstract.like(y)
        return (prim, (x, y), (inputs[0]._id, inputs[1]._id), kept_out, out._id, attrs)
    return (prim, tuple([x if i < len(keep) and keep[i] else Abstract.like(x)
                         for i, x in enumerate(inputs)]),
            tuple([x._id for x in inputs]), kept_out, out._id, attrs)


def record(prim, inputs, out, attrs, stack=None) -> None:
    """Note ``out = prim(*inputs, **attrs)`` on every active tape (of ``stack``,
    this thread's tapes) that tracks an input."""
    node = None
    for tape in _state.stack if stack is None else stack:
        tracked = tape._tracked
        for x in inputs:
            if x._id in tracked:
                break
        else:
            continue
        if node is None:
            node = ((prim, inputs, None, out if prim.keep_out else None, out._id, attrs)
                    if prim.keep_all_inputs else _node_dropping(prim, inputs, out, attrs))
        tape._nodes.append(node)
        tracked.add(out._id)


def read_variable(v: Variable, prim) -> Tensor:
    """A read of ``v`` (primitive ``prim``, ``read_variable``): auto-watched by
    tapes that watch accessed variables, and recorded as an identity node
    where a tape tracks ``v``."""
    value = v._lend()
    note_read(v, value, prim)
    return value


def note_read(v: Variable, value, prim) -> None:
    """Note that ``value`` was read from ``v``: for custom_gradient, and on the tapes
    (auto-watch, and an identity node where a tape tracks ``v``; none when ``value``
    is None: a compiled function's call reads it and records its own node)."""
    reads = _state.variable_reads
    if reads is not None:
        reads.append(v)
    stack = _state.stack
    if not stack:
        return
    node = None
    for tape in stack:
        if tape._watch_accessed and v._trainable:
            tape._watch_variable(v)
        if value is not None and v._id in tape._tracked:
            if node is None:
                node = (prim, (v,), None, None, value._id, None)  # keeps the variable
            tape._nodes.append(node)
            tape._tracked.add(value._id)


def record_outputs(prim, inputs, outs, attrs) -> None:
    """Note a call with several results (a compiled function's call, a traced cond
    or while_loop) on this thread's tapes: variables among ``inputs`` are read as
    eagerly (auto-watched, noted for custom_gradient), and each float result that
    depends on an input a tape tracks becomes one node of its own, with ``attrs``
    and ``k`` (the result's index), keeping every input: ``prim.vjp_all`` gives
    all the inputs' gradients of result ``k`` at once."""
    for x in inputs:
        if isinstance(x, Variable):
            note_read(x, None, None)
    stack = _state.stack
    for k, out in enumerate(outs):
        if out._data.dtype.kind != "f":
            continue
        for tape in stack:
            tracked = tape._tracked
            if any(x._id in tracked for x in inputs):
                tape._nodes.append((prim, inputs, None, None, out._id, dict(attrs, k=k)))
                tracked.add(out._id)


@contextlib.contextmanager
def stop_recording_all():
    """Pause every tape of this thread (used by custom_gradient's forward)."""
    saved, _state.stack = _state.stack, []
    try:
        yield
    finally:
        _state.stack = saved


class UnconnectedGradients(enum.Enum):
    """What ``gradient`` returns for a source the target does not depend on."""
    NONE = "none"
    ZERO = "zero"


def _unconnected_mode(value) -> UnconnectedGradients:
    if value is UnconnectedGradients.NONE or value == "none":
        return UnconnectedGradients.NONE
    try:
        return UnconnectedGradients(value.value if isinstance(value, UnconnectedGradients) else value)
    except ValueError:
        raise ValueError(f"Unknown value for unconnected_gradients: {value!r}; use 'none' or "
                         f"'zero' (gpuad.UnconnectedGradients.NONE / .ZERO).") from None


_int_watch_warnings = [0]


def _check_differentiable(x, role: str, index: int):
    if isinstance(x, (Tensor, Variable)):
        return x
    if x is None:
        raise TypeError(f"GradientTape.gradient got None as a {role}; {role}s must be Tensors "
                        f"or Variables (or nests of them).")
    raise AttributeError(f"GradientTape: {role} #{index} is {x!r} of type {type(x).__name__!r}, "
                         f"not a gpuad.Tensor or gpuad.Variable; convert it with "
                         f"gpuad.constant(...) and watch it before computing with it.")


class GradientTape:
    """Records operations for automatic differentiation, as ``tf.GradientTape``.

    Trainable Variables read inside the context are watched automatically
    (unless ``watch_accessed_variables=False``); tensors must be watched with
    :meth:`watch`. A non-persistent tape computes one set of gradients and then
    releases everything it holds.

    >>> import gpuad as ad
    >>> x = ad.constant([1.0, 2.0])
    >>> with ad.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = ad.reduce_sum(x * x)
    >>> tape.gradient(y, x).numpy()
    array([2., 4.], dtype=float32)
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        self._tracked: set[int] = set()  # watched ids and the ids of recorded outputs
        self._watched: set[int] = set()  # the watched tensors' and variables' ids
        self._nodes: list[tuple] = []  # the nodes, in recording order
        self._watched_vars: dict[int, Variable] = {}
        self._active = False     # on this thread's stack now
        self._paused = False     # inside stop_recording()
        self._entered = False
        self._used = False       # a non-persistent tape that computed its gradient

    # -- context ---------------------------------------------------------------
    def __enter__(self):
        if self._active:
            raise ValueError("Tape is still recording, This can happen if you try to "
                             "re-enter an already-active tape.")
        _state.stack.append(self)
        self._active = self._entered = True
        return self

    def __exit__(self, *exc):
        self._pop()
        return False

    def _pop(self):
        if self._active:
            _state.stack.remove(self)
            self._active = False

    # -- watching --------------------------------------------------------------
    def watch(self, tensor):
        """Track a tensor, a variable, or any nest of them.

        As in TensorFlow, every member's type is checked first (a ValueError
        naming the type; nothing is watched then), and watching works outside
        the context too: the watch is registered on the tape, but only ops run
        while the tape is recording (inside ``with``) are recorded, so nothing
        is recorded retroactively.

        >>> import gpuad as ad
        >>> x = ad.constant(3.0)
        >>> tape = ad.GradientTape()
        >>> tape.watch(x)           # before entering: takes effect once entered
        >>> with tape:
        ...     y = x * x
        >>> float(tape.gradient(y, x))
        6.0
        """
        xs = (tensor,) if type(tensor) is Tensor else nest.flatten(tensor)
        for x in xs:
            if not isinstance(x, (Tensor, Variable)):
                raise ValueError(f"Passed in object {x!r} of type {type(x).__name__!r}, not "
                                 f"gpuad.Tensor or gpuad.Variable.")
        for x in xs:
            if x._data.dtype.kind != "f":
                if _int_watch_warnings[0] < 5:
                    _int_watch_warnings[0] += 1
                    _log.warning("The dtype of the watched tensor must be floating (e.g. "
                                 "gpuad.float32), got %s", x.dtype.name)
                if isinstance(x, Tensor):
                    continue
            if isinstance(x, Variable):
                self._watch_variable(x)
            else:
                self._tracked.add(x._id)
                self._watched.add(x._id)

    def _watch_variable(self, v: Variable):
        if v._id not in self._watched_vars:
            self._watched_vars[v._id] = v
            self._tracked.add(v._id)
            self._watched.add(v._id)

    def watched_variables(self) -> tuple:
        """The watched variables, in creation order."""
        return tuple(v for _, v in sorted(self._watched_vars.items()))

    @contextlib.contextmanager
    def stop_recording(self):
        """Ops inside this block are not recorded on this tape."""
        if self._paused:
            raise ValueError("Tape is not recording.")
        if not self._active:
            raise RuntimeError("Trying to stop recording a tape which is not recording.")
        self._pop()
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
            _state.stack.append(self)
            self._active = True

    def reset(self):
        """Forget everything recorded and watched so far (inside the context only)."""
        if not (self._active or self._paused):
            raise ValueError("Tape is not recording.")
        self._tracked = set()
        self._watched = set()
        self._nodes = []
        self._watched_vars = {}

    # -- gradients -------------------------------------------------------------
    def _begin_backward(self, message=_NON_PERSISTENT):
        if self._used or not self._entered:
            raise RuntimeError(message)
        if self._active:
            if not self._persistent:
                self._pop()  # as TF: the tape stops recording, outer tapes go on
            elif not GradientTape._warned_in_context:
                GradientTape._warned_in_context = True
                _log.warning("Calling GradientTape.gradient on a persistent tape inside its "
                             "context is significantly less efficient than calling it outside "
                             "the context (the gradient ops are recorded on the tape). Only "
                             "do it to compute higher-order derivatives.")

    _warned_in_context = False

    def _take_nodes(self) -> list:
        """The nodes to walk: a snapshot (persistent) or the list itself, which
        the backward pass empties as it goes so residuals die early."""
        if self._persistent:
            return list(self._nodes)
        self._used = True
        nodes, self._nodes = self._nodes, []
        self._tracked = set()
        return nodes

    def gradient(self, target, sources, output_gradients=None,
                 unconnected_gradients=UnconnectedGradients.NONE):
        """Gradients of ``target`` (summed over its elements and members) with
        respect to ``sources``, packed in the structure of ``sources``."""
        if self._used or not self._entered:
            raise RuntimeError(_NON_PERSISTENT)
        mode = _unconnected_mode(unconnected_gradients)
        if target is None:
            raise TypeError("Argument `target` should be a Tensor, a Variable or a nest of them "
                            "to be differentiated, but received None.")
        if sources is None:
            raise TypeError("GradientTape.gradient got sources=None; pass a Tensor, a Variable "
                            "or a nest of them.")
        if type(target) is Tensor and type(sources) is Tensor and output_gradients is None:
            # the common case, without the nest machinery
            self._begin_backward()
            tracked, watched = self._tracked, self._watched
            grads = backward(self._take_nodes(), [target], [None], [sources],
                             consume=not self._persistent, tracked=tracked, watched=watched)
            return _finish(grads.get(sources._id), sources, mode)
        targets = [_check_differentiable(t, "target", i) for i, t in enumerate(nest.flatten(target))]
        flat_sources = [_check_differentiable(s, "source", i) for i, s in enumerate(nest.flatten(sources))]
        seeds = _seeds(targets, output_gradients)
        self._begin_backward()
        tracked, watched = self._tracked, self._watched
        grads = backward(self._take_nodes(), targets, seeds, flat_sources,
                         consume=not self._persistent, tracked=tracked, watched=watched)
        return nest.pack_sequence_as(sources, [_finish(grads.get(s._id), s, mode) for s in flat_sources])

    def jacobian(self, target, sources, unconnected_gradients=UnconnectedGradients.NONE,
                 parallel_iterations=None, experimental_use_pfor=True):
        """d target / d source for each source, shaped ``target.shape + source.shape``."""
        if self._used or not self._entered:
            raise RuntimeError(_NON_PERSISTENT)
        mode = _unconnected_mode(unconnected_gradients)
        target = _single_tensor(target, "jacobian", "target")
        flat_sources = [_check_differentiable(s, "source", i) for i, s in enumerate(nest.flatten(sources))]
        if not experimental_use_pfor and not self._persistent:
            raise RuntimeError("GradientTape must be created with persistent=True to compute the "
                               "jacobian with experimental_use_pfor set to False.")
        self._begin_backward()
        tracked = self._tracked
        nodes = self._take_nodes()
        rows = _jacobian_rows(nodes, target, target.shape, flat_sources, batch=False,
                              tracked=tracked)
        results = []
        for s, srows in zip(flat_sources, rows):
            results.append(_assemble(srows, target.shape, s, s.shape, mode))
        return nest.pack_sequence_as(sources, results)

    def batch_jacobian(self, target, source, unconnected_gradients=UnconnectedGradients.NONE,
                       parallel_iterations=None, experimental_use_pfor=True):
        """Per-example jacobians: shape ``target.shape + source.shape[1:]``, where
        example ``b`` of the target depends only on example ``b`` of the source."""
        if self._used or not self._entered:
            raise RuntimeError(_NON_PERSISTENT)
        target = _single_tensor(target, "batch_jacobian", "target")
        if not isinstance(source, Variable):  # a Variable stays itself: its reads lead to it
            source = _single_tensor(source, "batch_jacobian", "source")
        if not experimental_use_pfor and not self._persistent:
            raise RuntimeError("GradientTape must be created with persistent=True to compute the "
                               "batch_jacobian with experimental_use_pfor set to False.")
        # As TF: both the target and the source are (batch, ...) shaped.
        for role, x in (("target", target), ("source", source)):
            if x.ndim < 2:
                raise ValueError(f"Shape {x.shape} must have rank at least 2: batch_jacobian's "
                                 f"{role} must be (batch, features...) shaped; for a {role} of "
                                 f"rank {x.ndim} use GradientTape.jacobian (or reshape it to "
                                 f"(batch, 1)).")
        if target.shape[0] != source.shape[0]:
            raise ValueError(f"Need first dimension of target shape ({target.shape}) and source "
                             f"shape ({source.shape}) to match.")
        self._begin_backward()
        tracked = self._tracked
        nodes = self._take_nodes()
        (rows,) = _jacobian_rows(nodes, target, target.shape[1:], [source], batch=True,
                                 tracked=tracked)
        from .ops import array as A, creation as C
        inner = target.shape[1:]
        b = target.shape[0]
        rows = [C.zeros(source.shape, source.dtype, source._device) if r is None else r
                for r in rows]
        if not rows:
            return C.zeros(target.shape + source.shape[1:], source.dtype)
        stacked = A.stack(rows, axis=1)  # (B, inner..., source[1:]...)
        return A.reshape(stacked, (b,) + inner + source.shape[1:])


def _single_tensor(x, op, role):
    if isinstance(x, Variable):
        return x._read()
    if not isinstance(x, Tensor):
        raise AttributeError(f"{op}: the {role} must be a single Tensor, got "
                             f"{type(x).__name__!r} (it has no attribute 'shape').")
    return x


def _seeds(targets, output_gradients) -> list:
    """One seed per target: the given output gradient, or None (= ones)."""
    if output_gradients is None:
        return [None] * len(targets)
    given = nest.flatten(output_gradients) if isinstance(output_gradients, (list, tuple)) \
        else [output_gradients]
    from .tensor import convert_to_tensor
    seeds = []
    for i, t in enumerate(targets):
        if i >= len(given):
            seeds.append(None)
            continue
        g = given[i]
        if g is None:
            raise ValueError("Attempt to convert a value (None) with an unsupported type "
                             "(<class 'NoneType'>) to a Tensor.")
        if isinstance(g, (Tensor, Variable)):
            g = g._read() if isinstance(g, Variable) else g
            if g.dtype != t.dtype:
                raise InvalidArgumentError(
                    f"output_gradients[{i}] has dtype {g.dtype.name} but target {i} has dtype "
                    f"{t.dtype.name}; cast the seed with gpuad.cast.", "gradient")
        else:
            g = convert_to_tensor(g, dtype=t.dtype)
        if g.shape != t.shape:
            raise InvalidArgumentError(
                f"output_gradients[{i}] has shape {g.shape} but target {i} has shape {t.shape}: "
                f"Incompatible shapes; the seed must match its target's shape exactly "
                f"(it is not broadcast).", "gradient")
        seeds.append(g)
    return seeds


def backward(nodes: list, targets: list, seeds: list, sources: list, consume: bool,
             tracked=None, watched=None) -> dict:
    """Reverse-mode accumulation over ``nodes`` (in recording order).

    Returns {source id: gradient}. With ``consume`` the list is emptied as the
    walk goes, so each node (and the residuals it holds) is freed right after
    its VJP ran. With ``tracked`` (the tape's watched/recorded ids), a source
    the tape never tracked gets no gradient (unless it is a target itself).
    ``watched`` (the tape's watched ids) lets it skip the search for the nodes
    that lead to a source when every watched value is a source.
    """
    cot: dict[int, Tensor] = {}
    for t, seed in zip(targets, seeds):
        if not t.dtype.is_floating:
            continue  # integer and bool targets have no gradient
        if seed is None:
            seed = _ones(t)
        prev = cot.get(t._id)
        cot[t._id] = seed if prev is None else _add(prev, seed)

    # Only differentiate toward inputs that lead to a source. Sources are float
    # and recorded outputs are float, so integer inputs never enter this set.
    source_ids = {s._id for s in sources if s.dtype.is_floating}
    if watched is not None and watched <= source_ids:
        # Every tracked value was computed from a watched one, so from a source:
        # the tracked ids are exactly the relevant ones.
        relevant = tracked
    else:
        relevant = {i for i in source_ids if tracked is None or i in tracked}
        for _, inputs, ids, _, out_id, _ in nodes:
            for i, x in enumerate(inputs):
                if (x._id if ids is None else ids[i]) in relevant:
                    relevant.add(out_id)
                    break

    n = len(nodes)
    while n:
        n -= 1
        prim, inputs, ids, out, out_id, attrs = nodes.pop() if consume else nodes[n]
        g = cot.get(out_id) if out_id in source_ids else cot.pop(out_id, None)
        if g is None:
            continue
        vjp_of = prim.vjp_of
        if vjp_of is None:  # one VJP for every input at once (a compiled function's call)
            gxs = prim.vjp_all(g, out, *inputs, **attrs)
            for i, x in enumerate(inputs):
                gx = gxs[i]
                xid = x._id if ids is None else ids[i]
                if gx is None or xid not in relevant:
                    continue
                prev = cot.get(xid)
                cot[xid] = gx if prev is None else _add(prev, gx)
            continue
        for i, x in enumerate(inputs):
            xid = x._id if ids is None else ids[i]
            if xid not in relevant:
                continue
            vjp = vjp_of[i]
            if vjp is None:
                continue
            gx = vjp(g, out, *inputs) if attrs is None else vjp(g, out, *inputs, **attrs)
            if gx is None:
                continue
            prev = cot.get(xid)
            cot[xid] = gx if prev is None else _add(prev, gx)
    return {sid: cot[sid] for sid in source_ids if sid in cot}


_ones_cache: dict = {}


def _ones(t) -> Tensor:
    """Ones like ``t`` (a Tensor or Variable): the default seed. Tensors are
    immutable, so one per small (shape, dtype, device) serves every gradient call;
    each use gets its own Tensor (its own id), sharing the buffer."""
    key = (t.shape, t._data.dtype, t._device)
    ones = _ones_cache.get(key)
    if ones is None:
        from .ops import table as T
        from .ops.core import bind
        ones = bind(T.FILL, (), shape=t.shape, value=1, dtype=t._data.dtype, device=t._device)
        if ones._data.size <= 4096 and len(_ones_cache) < 1024:
            _ones_cache[key] = ones
    return Tensor(ones._data, ones._device)


def _finish(grad, source, mode):
    if grad is None and mode is UnconnectedGradients.ZERO:
        from .ops.creation import zeros_like
        return zeros_like(source)
    return grad


def _jacobian_rows(nodes, target, inner_shape, sources, batch: bool, tracked=None) -> list:
    """For each source, the list of gradients of each element of ``target``
    (each element of its per-example part when ``batch``)."""
    from .ops import array as A, creation as C
    n = 1
    for d in inner_shape:
        n *= d
    rows = [[] for _ in sources]
    if n == 0:
        return rows
    eye = C.eye(n, dtype=target.dtype, device=target._device)
    for i in range(n):
        seed = eye[i]
        if batch:
            seed = A.broadcast_to(A.reshape(seed, (1,) + tuple(inner_shape)), target.shape)
        else:
            seed = A.reshape(seed, target.shape)
        grads = backward(nodes, [target], [seed], sources, consume=False, tracked=tracked)
        for k, s in enumerate(sources):
            rows[k].append(grads.get(s._id))
    return rows


def _assemble(rows, target_shape, source, source_shape, mode):
    from .ops import array as A, creation as C
    dev = source._device
    if all(r is None for r in rows):
        if mode is UnconnectedGradients.ZERO or not rows:
            return C.zeros(tuple(target_shape) + tuple(source_shape), source.dtype, dev)
        return None
    rows = [C.zeros(source_shape, source.dtype, dev) if r is None else r for r in rows]
    return A.reshape(A.stack(rows, axis=0), tuple(target_shape) + tuple(source_shape))


def _add(x, y):
    """gpuad.add. The ops import this module, so the first call looks it up and
    puts it in this function's place (no import statement on every call)."""
    global _add
    from .ops.math import add
    _add = add
    return add(x, y)
