"""``gpuad.cond`` and ``gpuad.while_loop``: branches and loops on tensor values that
work eagerly, inside ``gpuad.function``, and under ``GradientTape``.

Eagerly they are plain Python: ``cond`` reads the predicate and calls one branch,
``while_loop`` runs the body while ``cond`` holds, and a tape records what ran
(the gradient of a loop replays its iterations in reverse, as TensorFlow's).

Inside ``gpuad.function`` each branch (or the loop's condition and body) is
traced into a graph of its own and the call becomes one node: the replay reads
the predicate when it runs and replays one branch (or the body, as many times as
the condition allows). Values of the function a branch uses are captured as
the node's inputs. Differentiated inside the function, a ``cond`` differentiates
the branch that ran (a ``cond`` of the branches' gradients); a ``while_loop``
keeps each iteration's loop variables and runs the body's gradient over them in
reverse.

>>> import gpuad as ad
>>> @ad.function
... def collatz_steps(n):
...     def body(n, steps):
...         n = ad.cond(ad.equal(n % 2, 0), lambda: n // 2, lambda: 3 * n + 1)
...         return n, steps + 1
...     return ad.while_loop(lambda n, steps: n > 1, body, (n, 0))[1]
>>> int(collatz_steps(ad.constant(27)))
111
"""
from __future__ import annotations

import numpy as np

from . import nest
from . import tape as _tape
from .compiler.graph import Node
from .compiler.plan import compile_graph
from .compiler.trace import Traced, Tracer, TracingError, current as _current_tracer, tracer
from .errors import InvalidArgumentError
from .ops.core import Primitive
from .tensor import Tensor, Variable, convert_to_tensor

__all__ = ["cond", "while_loop"]


def _leaves(result, what: str) -> list:
    """A branch's (or body's) result as a list of Tensors (Variables read, numbers
    converted); a branch returning None (run for its effects) has none."""
    out = []
    for leaf in nest.flatten(result):
        if leaf is None and result is None:
            continue
        if isinstance(leaf, Variable):
            leaf = leaf._read()
        elif not isinstance(leaf, Tensor):
            try:
                leaf = convert_to_tensor(leaf)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{what} returned {leaf!r}, which is not a tensor: {e}") from None
        out.append(leaf)
    return out


def _aval(x) -> tuple:
    return (tuple(x.shape), x._data.dtype, x._device)


def _aval_text(a) -> str:
    return f"{a[1].name}{list(a[0])} on {a[2].name}"


class _Subgraph:
    """A function traced into a graph of its own inside the current trace: its
    parameters are ``params`` (placeholders) followed by the values of enclosing
    traces it used (``captured``); ``replay`` runs it on buffers."""

    def __init__(self, parent: Tracer, name, fn, param_avals, what):
        t = Tracer(f"{parent.name}/{name}", parent)
        placeholders = [t.param(*a) for a in param_avals]
        with tracer(t):
            result = fn(*placeholders)
            leaves = _leaves(result, what)
            t.graph.outputs = [t.output(x) for x in leaves]
        self.structure = result
        self.avals = [_aval(x) for x in leaves]
        self.graph = t.graph
        self.captured = t.captured
        self.reads = t.graph.read_variables()
        self.replay, self.source, _ = compile_graph(self.graph, buffers=True)


def _union(*lists) -> list:
    """The values of several capture lists, each once (by id), in order."""
    seen, out = set(), []
    for values in lists:
        for x in values:
            if x._id not in seen:
                seen.add(x._id)
                out.append(x)
    return out


def _positions(values, union) -> tuple:
    where = {x._id: i for i, x in enumerate(union)}
    return tuple(where[x._id] for x in values)


def _effect(*graphs):
    effects = {g.strongest_effect() for g in graphs}
    for kind in ("write", "random", "read"):
        if kind in effects:
            return kind
    return None


def _host_bool(buffer, device) -> bool:
    return bool(device.to_host(buffer).reshape(()).item())


def _check_pred(pred):
    if isinstance(pred, Variable):
        pred = pred._read()
    if isinstance(pred, Tensor) and pred.shape not in ((), (1,)):
        raise InvalidArgumentError(f"gpuad.cond: the predicate must be a scalar (shape ()), got "
                                   f"shape {pred.shape}; reduce it first (gpuad.reduce_all, "
                                   f"gpuad.reduce_any).", "cond")
    return pred


# ---------------------------------------------------------------------------------------
# cond
# ---------------------------------------------------------------------------------------

def cond(pred, true_fn=None, false_fn=None, name=None):
    """``true_fn()`` if ``pred`` else ``false_fn()``, as ``tf.cond``.

    Eagerly one branch runs. Inside ``gpuad.function`` with a traced predicate both
    branches are traced (so both must return the same structure of tensors with
    the same shapes and dtypes) and the replay runs the one the predicate picks.

    >>> import gpuad as ad
    >>> x = ad.constant(2.0)
    >>> float(ad.cond(x > 1.0, lambda: x * 10.0, lambda: x))
    20.0
    """
    if not callable(true_fn) or not callable(false_fn):
        raise TypeError(f"gpuad.cond needs two callables, true_fn and false_fn; got "
                        f"{true_fn!r} and {false_fn!r}")
    pred = _check_pred(pred)
    if type(pred) is not Traced:  # eager (or a constant predicate): run one branch
        return true_fn() if bool(pred) else false_fn()
    t = _current_tracer()
    if pred.shape == (1,):
        from .ops.array import reshape
        pred = reshape(pred, ())
    if pred._data.dtype.kind != "b":
        raise InvalidArgumentError(f"gpuad.cond: the predicate must be a bool tensor, got "
                                   f"{pred.dtype.name}; compare it first (x > 0).", "cond")
    true_g = _Subgraph(t, "true_fn", true_fn, [], "gpuad.cond's true_fn")
    false_g = _Subgraph(t, "false_fn", false_fn, [], "gpuad.cond's false_fn")
    _check_same(true_g, false_g)
    captured = _union(true_g.captured, false_g.captured)
    true_at, false_at = _positions(true_g.captured, captured), _positions(false_g.captured, captured)
    pred_device = pred._device
    true_replay, false_replay = true_g.replay, false_g.replay

    def run_cond(p, *caps):
        if _host_bool(p, pred_device):
            return true_replay(*[caps[i] for i in true_at])
        return false_replay(*[caps[i] for i in false_at])

    reads = _union(true_g.reads, false_g.reads)
    outs = _node(t, _COND, (pred, *captured), true_g.avals, effect=_effect(true_g.graph, false_g.graph),
                 attrs={"run": run_cond, "true_fn": true_g.graph, "false_fn": false_g.graph,
                        "reads": reads})
    if _tape._state.stack:
        _tape.record_outputs(_COND_OUT, (pred, *captured, *reads), outs, {
            "true_fn": true_fn, "false_fn": false_fn, "n_caps": len(captured),
            "effectful": _effect(true_g.graph, false_g.graph) in ("write", "random")})
    if true_g.structure is None:
        return None
    return nest.pack_sequence_as(true_g.structure, outs)


def _same_structure(a, b) -> bool:
    """Whether two results nest the same way (list vs tuple, dict keys, leaves)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return type(a) is type(b) and set(a) == set(b) and all(
            _same_structure(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            _same_structure(x, y) for x, y in zip(a, b))
    return (a is None) == (b is None)


def _check_same(a: _Subgraph, b: _Subgraph):
    if not _same_structure(a.structure, b.structure):
        raise ValueError(f"gpuad.cond: true_fn and false_fn must return the same structure; "
                         f"true_fn returned {a.structure!r}, false_fn {b.structure!r}.")
    for i, (x, y) in enumerate(zip(a.avals, b.avals)):
        if x != y:
            raise ValueError(f"gpuad.cond: output {i} of true_fn is {_aval_text(x)} but false_fn's "
                             f"is {_aval_text(y)}: inside gpuad.function both branches must give "
                             f"the same shapes and dtypes (cast or reshape one of them).")


def _node(t: Tracer, prim, inputs, avals, effect, attrs) -> list:
    """A control-flow node in ``t``'s graph; returns its results as Traced values."""
    slots = tuple(t.slot(x) for x in inputs)
    outs = tuple(t.graph.new_slot(*a) for a in avals)
    t.graph.nodes.append(Node(prim, slots, attrs, outs, effect=effect))
    return [t.traced(s) for s in outs]


def _refuse_effects(what):
    raise NotImplementedError(
        f"{what} inside gpuad.function changes variables or draws random numbers in a "
        f"branch, and a GradientTape differentiates through it: its gradient would run those "
        f"effects again. Move the effects out of the branch (or the loop's body).")


def _cond_vjp(g, out, pred, *inputs, true_fn, false_fn, n_caps, effectful, k):
    """The gradients of a traced cond's output ``k``: a cond of each branch's gradient
    with respect to the captured values and the variables read."""
    if effectful:
        _refuse_effects("gpuad.cond")
    caps, reads = list(inputs[:n_caps]), list(inputs[n_caps:])
    sources = [c for c in caps if c.dtype.is_floating] + reads

    def gradient_of(fn):
        def branch():
            with _tape.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(sources)
                y = _leaves(fn(), "gpuad.cond's branch")[k]
            return tape.gradient(y, sources, output_gradients=g, unconnected_gradients="zero")
        return branch

    grads = iter(cond(pred, gradient_of(true_fn), gradient_of(false_fn)) if sources else [])
    return [None] + [next(grads) if c.dtype.is_floating else None for c in caps] + \
        [next(grads) for _ in reads]


_COND = Primitive("cond", infer=None)
_COND_OUT = Primitive("cond", infer=None, vjp_all=_cond_vjp)


# ---------------------------------------------------------------------------------------
# while_loop
# ---------------------------------------------------------------------------------------

def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, maximum_iterations=None, name=None):
    """Repeat ``loop_vars = body(*loop_vars)`` while ``cond(*loop_vars)``, as
    ``tf.while_loop``; returns the loop variables in ``loop_vars``' structure.

    At most ``maximum_iterations`` iterations run when it is given. Inside
    ``gpuad.function`` the loop variables keep their shapes and dtypes.

    >>> import gpuad as ad
    >>> i, total = ad.while_loop(lambda i, total: i < 5, lambda i, total: (i + 1, total + i),
    ...                          (ad.constant(0), ad.constant(0)))
    >>> int(i), int(total)
    (5, 10)
    """
    if not callable(cond) or not callable(body):
        raise TypeError(f"gpuad.while_loop needs callables cond and body; got {cond!r} and {body!r}")
    single = not isinstance(loop_vars, (list, tuple))
    structure = [loop_vars] if single else loop_vars
    if isinstance(maximum_iterations, Tensor):
        if type(maximum_iterations) is Traced:
            raise TracingError("gpuad.while_loop: maximum_iterations must be known while "
                               "tracing (a Python int or a constant), not a traced tensor.")
        maximum_iterations = int(maximum_iterations)
    if maximum_iterations is not None and int(maximum_iterations) < 0:
        raise ValueError(f"gpuad.while_loop: maximum_iterations must be >= 0, got {maximum_iterations}")

    def call(fn, values):
        packed = nest.pack_sequence_as(structure, values)
        return fn(packed[0]) if single else fn(*packed)

    values = _leaves(structure, "gpuad.while_loop's loop_vars")
    t = _current_tracer()
    if t is None:
        return _eager_loop(cond, body, call, values, structure, single, maximum_iterations)
    # Inside a trace the loop is always a node (the condition may read traced
    # values the loop variables do not show).
    return _traced_loop(t, cond, body, call, values, structure, single, maximum_iterations)


def _eager_loop(cond, body, call, values, structure, single, maximum_iterations):
    i = 0
    while maximum_iterations is None or i < maximum_iterations:
        c = call(cond, values)
        if not bool(c):
            break
        new = _leaves(call(body, values), "gpuad.while_loop's body")
        _check_body(values, new, structure, eager=True)
        values = new
        i += 1
    packed = nest.pack_sequence_as(structure, values)
    return packed[0] if single else packed


def _check_body(old, new, structure, eager):
    if len(old) != len(new):
        raise ValueError(f"gpuad.while_loop: the body must return the loop variables' structure "
                         f"({len(old)} tensors, like {structure!r}); it returned {len(new)}.")
    for i, (a, b) in enumerate(zip(old, new)):
        if a._data.dtype != b._data.dtype or (not eager and a.shape != b.shape):
            raise ValueError(f"gpuad.while_loop: loop variable {i} enters the body as "
                             f"{_aval_text(_aval(a))} and leaves it as {_aval_text(_aval(b))}; "
                             f"a loop variable keeps its dtype" +
                             ("" if eager else " and, inside gpuad.function, its shape") + ".")


def _traced_loop(t, cond, body, call, values, structure, single, maximum_iterations):
    avals = [_aval(x) for x in values]
    cond_g = _Subgraph(t, "cond", lambda *vs: call(cond, list(vs)), avals, "gpuad.while_loop's cond")
    if len(cond_g.avals) != 1 or cond_g.avals[0][0] not in ((), (1,)) or cond_g.avals[0][1].kind != "b":
        raise InvalidArgumentError(f"gpuad.while_loop: cond must return one bool scalar, got "
                                   f"{[_aval_text(a) for a in cond_g.avals]}.", "while_loop")
    body_g = _Subgraph(t, "body", lambda *vs: call(body, list(vs)), avals, "gpuad.while_loop's body")
    _check_body(values, [_Like(a) for a in body_g.avals], structure, eager=False)
    n = len(values)
    captured = _union(cond_g.captured, body_g.captured)
    cond_at, body_at = _positions(cond_g.captured, captured), _positions(body_g.captured, captured)
    reads = _union(cond_g.reads, body_g.reads)
    stack = _tape._state.stack
    tracked_inputs = [*values, *captured, *reads]
    keep = any(x._id in tape._tracked for tape in stack for x in tracked_inputs)
    cond_replay, body_replay = cond_g.replay, body_g.replay
    cond_device = cond_g.avals[0][2]

    def run_while(*bufs):
        vs, caps = bufs[:n], bufs[n:]
        ccaps, bcaps = [caps[i] for i in cond_at], [caps[i] for i in body_at]
        history = [] if keep else None
        i = 0
        while (maximum_iterations is None or i < maximum_iterations) and \
                _host_bool(cond_replay(*vs, *ccaps)[0], cond_device):
            if keep:
                history.append(vs)
            vs = body_replay(*vs, *bcaps)
            i += 1
        return (*vs, history) if keep else tuple(vs)

    out_avals = avals + ([((), _HISTORY, cond_device)] if keep else [])
    outs = _node(t, _WHILE, (*values, *captured), out_avals,
                 effect=_effect(cond_g.graph, body_g.graph),
                 attrs={"run": run_while, "cond": cond_g.graph, "body": body_g.graph, "reads": reads,
                        "maximum_iterations": maximum_iterations})
    if keep:
        history = outs.pop()
        _tape.record_outputs(_WHILE_OUT, (*values, *captured, *reads, history), outs, {
            "body": lambda *vs: call(body, list(vs)), "n_vars": n, "n_caps": len(captured),
            "effectful": _effect(body_g.graph) in ("write", "random")})
    packed = nest.pack_sequence_as(structure, outs)
    return packed[0] if single else packed


class _Like:
    """Stands in for a tensor of a given aval (for the body's shape check)."""
    def __init__(self, aval):
        from .tensor import _Shape
        self._data = _Shape.of(aval[0], aval[1])
        self._device = aval[2]
        self.shape = aval[0]


_HISTORY = np.dtype(object)  # a slot holding the loop variables of every iteration (a list)


def _while_vjp(g, out, *inputs, body, n_vars, n_caps, effectful, k):
    """The gradients of a traced loop's output ``k`` with respect to the initial
    loop variables, the captured values and the variables read: the body's
    gradient run over the recorded iterations in reverse."""
    if effectful:
        _refuse_effects("gpuad.while_loop")
    t = _current_tracer()
    values, caps = list(inputs[:n_vars]), list(inputs[n_vars:n_vars + n_caps])
    reads, history = list(inputs[n_vars + n_caps:-1]), inputs[-1]
    fvars = [i for i, x in enumerate(values) if x.dtype.is_floating]
    fcaps = [c for c in caps if c.dtype.is_floating]
    sources = fcaps + reads
    nf = len(fvars)

    def body_gradient(*p):
        vs, gv, acc = list(p[:n_vars]), list(p[n_vars:n_vars + nf]), list(p[n_vars + nf:])
        with _tape.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([vs[i] for i in fvars])
            tape.watch(sources)
            new = _leaves(body(*vs), "gpuad.while_loop's body")
        grads = tape.gradient([new[i] for i in fvars], [vs[i] for i in fvars] + sources,
                              output_gradients=gv, unconnected_gradients="zero")
        return grads[:nf] + [a + b for a, b in zip(acc, grads[nf:])]

    from .ops.creation import zeros_like
    avals = [_aval(x) for x in values]
    gv0 = [g if i == k else zeros_like(values[i]) for i in fvars]
    acc0 = [zeros_like(s._read() if isinstance(s, Variable) else s) for s in sources]
    step = _Subgraph(t, "body_grad", body_gradient,
                     avals + [_aval(x) for x in gv0] + [_aval(x) for x in acc0],
                     "gpuad.while_loop's body gradient")
    replay = step.replay
    m = len(gv0)

    def run_reverse(hist, *rest):
        gv, acc, caps_ = rest[:m], rest[m:m + len(acc0)], rest[m + len(acc0):]
        for vs in reversed(hist):
            new = replay(*vs, *gv, *acc, *caps_)
            gv, acc = new[:m], new[m:]
        return (*gv, *acc)

    ins = (history, *gv0, *acc0, *step.captured)
    stack = _tape._state.stack
    if any(x._id in tape._tracked for tape in stack for x in ins[1:]):
        raise NotImplementedError("gpuad.while_loop inside gpuad.function: a second derivative "
                                  "through the loop is not supported yet; compute it eagerly (call "
                                  "the function's python_function) or unroll the loop in Python.")
    grads = _node(t, _WHILE_GRAD, ins, [_aval(x) for x in gv0 + acc0], effect=None,
                  attrs={"run": run_reverse, "body_grad": step.graph})
    var_grads = dict(zip(fvars, grads[:nf]))
    rest = iter(grads[nf:])
    return [var_grads.get(i) for i in range(n_vars)] + \
        [next(rest) if c.dtype.is_floating else None for c in caps] + [next(rest) for _ in reads] + [None]


_WHILE = Primitive("while_loop", infer=None)
_WHILE_OUT = Primitive("while_loop", infer=None, vjp_all=_while_vjp)
_WHILE_GRAD = Primitive("while_loop_grad", infer=None)
