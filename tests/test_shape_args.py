"""Shapes, axes, counts and sizes given as arguments are validated, never
truncated or silently accepted (issue 12).

- every creation op (zeros, ones, fill, random.normal/uniform, broadcast_to,
  reshape) refuses a negative dimension (``InvalidArgumentError``) and a
  non-integer one (``TypeError``: floats, even integral ones, bools, strings),
  and builds exactly the shape asked for from any valid one;
- counts (eye, linspace, one_hot depth, tile multiples, split) likewise;
- axes are integers, in range and given once (reduce_* with ``[0, 0]`` raises
  as TensorFlow does); non-integer axes raise ``TypeError`` on every op that
  takes one;
- layer sizes are positive integers, a dropout rate lies in [0, 1);
- every message names the op and the offending value, is the same on every
  device, and a failed op runs no kernel and records nothing on a tape.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import gpuad as ad
from gpuad.errors import InvalidArgumentError
from gpuad.ops import core

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# op name (as the message names it) -> a function that builds a tensor of ``shape``
CREATORS = {
    "zeros": lambda shape: ad.zeros(shape),
    "ones": lambda shape: ad.ones(shape, dtype=ad.int32),
    "fill": lambda shape: ad.fill(shape, 2.5),
    "random.normal": lambda shape: ad.random.normal(shape, seed=1),
    "random.uniform": lambda shape: ad.random.uniform(shape, seed=1),
    "broadcast_to": lambda shape: ad.broadcast_to(ad.constant(1.0), shape),
}

dims = st.integers(0, 4)
shapes = st.lists(dims, max_size=4).map(tuple)


def _raises(exc, fn, *fragments):
    """``fn()`` raises ``exc`` (and not a subclass leaked from NumPy) whose
    message holds every fragment; returns the message."""
    with pytest.raises(exc) as info:
        fn()
    assert type(info.value).__module__ in ("builtins", "gpuad.errors"), info.value
    msg = str(info.value)
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# -- shapes of creation ops --------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(CREATORS))
@SETTINGS
@given(shape=shapes)
def test_any_valid_shape_builds_exactly_that_shape(device, op, shape):
    make = CREATORS[op]
    for given_as in (shape, list(shape), np.array(shape, dtype=np.int64),
                     tuple(np.int32(d) for d in shape)):
        t = make(given_as)
        assert t.shape == shape and t.numpy().shape == shape
    if len(shape) == 1:
        assert make(shape[0]).shape == shape  # a bare int is a 1-d shape
        assert make(ad.constant(shape[0])).shape == shape  # so is a 0-d integer tensor
    assert make(ad.constant(np.array(shape, dtype=np.int32))).shape == shape


@pytest.mark.parametrize("op", sorted(CREATORS))
@SETTINGS
@given(shape=shapes, bad=st.integers(-2**40, -1), data=st.data())
def test_any_negative_dimension_raises_naming_op_and_value(device, op, shape, bad, data):
    at = data.draw(st.integers(0, len(shape)))
    shape = shape[:at] + (bad,) + shape[at:]
    _raises(InvalidArgumentError, lambda: CREATORS[op](shape), f"[Op:{op}]", str(bad),
            "negative")


@pytest.mark.parametrize("op", sorted(CREATORS))
@SETTINGS
@given(shape=shapes, bad=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3),
    st.none(), st.just(np.float32(2.0)), st.just(np.bool_(True)), st.just(1j)), data=st.data())
def test_any_non_integer_dimension_raises_type_error_never_truncates(device, op, shape, bad, data):
    at = data.draw(st.integers(0, len(shape)))
    bad_shape = shape[:at] + (bad,) + shape[at:]
    _raises(TypeError, lambda: CREATORS[op](bad_shape), op, repr(bad))


@pytest.mark.parametrize("op", sorted(CREATORS))
@pytest.mark.parametrize("shape", [2.5, 3.7, 2.0, True, "3", None, object(), {2: 3},
                                   [[2, 3]], np.array([2.0, 3.0]), np.ones((2, 2), np.int32)])
def test_a_non_integer_shape_argument_raises_type_error(device, op, shape):
    msg = _raises(TypeError, lambda: CREATORS[op](shape), op)
    assert "iterable" not in msg and "interpreted" not in msg  # no Python internals


def test_issue_examples_for_creation_shapes(device):
    # zeros((2.5,)) was (2,); ones(3.7) leaked "'float' object is not iterable"
    _raises(TypeError, lambda: ad.zeros((2.5,)), "zeros", "2.5", "integer")
    _raises(TypeError, lambda: ad.ones(3.7), "ones", "3.7")
    # random.normal((-1,)) was shape (0,)
    _raises(InvalidArgumentError, lambda: ad.random.normal((-1,)), "random.normal", "-1")
    _raises(InvalidArgumentError, lambda: ad.random.uniform((2, -3)), "random.uniform", "-3")
    _raises(InvalidArgumentError, lambda: ad.fill((-1,), 1.0), "fill", "-1")
    _raises(TypeError, lambda: ad.fill((2.0,), 1.0), "fill", "2.0")
    # a float tensor is not a shape
    _raises(TypeError, lambda: ad.zeros(ad.constant([2.0, 3.0])), "zeros", "float32")


def test_like_ops_keep_the_shape(device):
    x = ad.ones((2, 0, 3))
    assert ad.zeros_like(x).shape == (2, 0, 3) and ad.ones_like(x, ad.int32).shape == (2, 0, 3)
    assert ad.zeros_like([[1, 2]]).shape == (1, 2)


# -- counts ------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(0, 5), m=st.integers(0, 5))
def test_eye_and_linspace_take_any_non_negative_count(device, n, m):
    assert ad.eye(n).shape == (n, n)
    assert ad.eye(n, m).shape == (n, m)
    assert ad.eye(np.int64(n), ad.constant(m)).shape == (n, m)
    np.testing.assert_allclose(ad.linspace(0.0, 1.0, n).numpy(), np.linspace(0.0, 1.0, n),
                               rtol=1e-6)


@pytest.mark.parametrize("make, op, arg", [
    (lambda v: ad.eye(v), "eye", "num_rows"),
    (lambda v: ad.eye(2, v), "eye", "num_columns"),
    (lambda v: ad.linspace(0.0, 1.0, v), "linspace", "num"),
    (lambda v: ad.one_hot([0, 1], v), "one_hot", "depth"),
])
@SETTINGS
@given(bad=st.integers(-2**40, -1))
def test_a_negative_count_raises(device, make, op, arg, bad):
    _raises(InvalidArgumentError, lambda: make(bad), f"[Op:{op}]", str(bad))


@pytest.mark.parametrize("make, op", [
    (lambda v: ad.eye(v), "eye"),
    (lambda v: ad.eye(2, v), "eye"),  # None: square, tested below
    (lambda v: ad.linspace(0.0, 1.0, v), "linspace"),
    (lambda v: ad.one_hot([0, 1], v), "one_hot"),
    (lambda v: ad.one_hot([0, 1], 3, axis=v), "one_hot"),  # None: -1 (as TF), tested below
    (lambda v: ad.split(ad.ones(4), v), "split"),
    (lambda v: ad.split(ad.ones(4), [v, 2]), "split"),
    (lambda v: ad.tile(ad.ones(2), [v]), "tile"),
    (lambda v: ad.reshape(ad.ones(4), (v, 2)), "reshape"),
])
@pytest.mark.parametrize("bad", [2.5, 2.0, -1.5, float("nan"), True, "2", None, np.float64(2.0)])
def test_a_non_integer_count_raises_type_error(device, make, op, bad):
    if bad is None and op in ("eye", "one_hot"):
        try:
            make(None)
            return  # None means the default here
        except TypeError:
            pass
    _raises(TypeError, lambda: make(bad), op, repr(bad))


def test_issue_examples_for_counts(device):
    _raises(InvalidArgumentError, lambda: ad.eye(-1), "eye", "-1")
    _raises(InvalidArgumentError, lambda: ad.linspace(0, 1, -1), "linspace", "-1")
    # one_hot(x, -2) had depth 0
    _raises(InvalidArgumentError, lambda: ad.one_hot([0, 1], -2), "one_hot", "-2")
    assert ad.one_hot([0, 1], 0).shape == (2, 0)
    # an axis past the end transposed silently
    _raises(InvalidArgumentError, lambda: ad.one_hot([0, 1], 3, axis=2), "one_hot", "2")
    _raises(InvalidArgumentError, lambda: ad.one_hot([0, 1], 3, axis=-2), "one_hot", "-2")
    assert ad.one_hot([0, 1], 3, axis=0).shape == (3, 2)
    assert ad.one_hot([0, 1], 3, axis=None).shape == (2, 3)
    assert ad.eye(2, None).shape == (2, 2)


@SETTINGS
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
       data=st.data())
def test_tile_any_multiples(device, shape, data):
    mult = tuple(data.draw(st.lists(st.integers(0, 3), min_size=len(shape),
                                    max_size=len(shape))))
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(ad.tile(x, mult).numpy(), np.tile(x, mult))
    at = data.draw(st.integers(0, len(shape) - 1))
    bad = mult[:at] + (data.draw(st.integers(-100, -1)),) + mult[at + 1:]
    msg = _raises(InvalidArgumentError, lambda: ad.tile(x, bad), "[Op:tile]", "non-negative",
                  str(bad[at]))
    assert "broadcast" not in msg


def test_split_sizes(device):
    x = ad.ones((2, 6))
    assert [t.shape for t in ad.split(x, np.int64(3), axis=1)] == [(2, 2)] * 3
    assert [t.shape for t in ad.split(x, ad.constant([1, -1]), axis=1)] == [(2, 1), (2, 5)]
    _raises(InvalidArgumentError, lambda: ad.split(x, [-1, -1], axis=1), "split", "-1")
    _raises(InvalidArgumentError, lambda: ad.split(x, [7, -1], axis=1), "split")
    _raises(InvalidArgumentError, lambda: ad.split(x, 0, axis=1), "split")


# -- reshape -----------------------------------------------------------------------------

def test_reshape_refuses_two_inferred_or_negative_sizes(device):
    x = ad.ones(4)
    _raises(InvalidArgumentError, lambda: ad.reshape(x, (-1, -1)), "[Op:reshape]",
            "Only one input size may be -1", "0 and 1")
    _raises(InvalidArgumentError, lambda: ad.reshape(x, (2, -2)), "[Op:reshape]", "-2")
    _raises(TypeError, lambda: ad.reshape(x, (2.0, 2)), "reshape", "2.0")
    _raises(TypeError, lambda: ad.reshape(x, 4.0), "reshape", "4.0")
    assert ad.reshape(x, ad.constant([2, -1])).shape == (2, 2)
    assert ad.reshape(x, np.array([-1, 4])).shape == (1, 4)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_reshape_with_one_inferred_size_matches_numpy(device, shape, data):
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    target = list(shape[::-1])
    target[data.draw(st.integers(0, len(target) - 1))] = -1
    np.testing.assert_array_equal(ad.reshape(x, target).numpy(), x.reshape(target))
    bad = target + [-1]
    _raises(InvalidArgumentError, lambda: ad.reshape(x, bad), "Only one input size may be -1")


# -- axes --------------------------------------------------------------------------------

REDUCTIONS = {
    "reduce_sum": ad.reduce_sum, "reduce_mean": ad.reduce_mean, "reduce_max": ad.reduce_max,
    "reduce_min": ad.reduce_min, "reduce_prod": ad.reduce_prod,
    "reduce_logsumexp": ad.reduce_logsumexp, "norm": lambda x, axis: ad.norm(x, axis=axis),
    "reduce_any": lambda x, axis: ad.reduce_any(x > 0, axis),
    "reduce_all": lambda x, axis: ad.reduce_all(x > 0, axis),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@SETTINGS
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), data=st.data())
def test_a_reduction_refuses_an_axis_given_twice(device, name, shape, data):
    ndim = len(shape)
    a = data.draw(st.integers(0, ndim - 1))
    twin = data.draw(st.sampled_from([a, a - ndim]))  # the same axis, maybe spelled negatively
    axes = data.draw(st.permutations([a, twin]))
    x = ad.ones(shape)
    _raises(InvalidArgumentError, lambda: REDUCTIONS[name](x, axes), "duplicate", str(a))
    # distinct axes reduce as NumPy does
    ok = sorted(set(data.draw(st.lists(st.integers(0, ndim - 1), max_size=2))))
    if name in ("reduce_sum", "reduce_max"):
        np.testing.assert_allclose(REDUCTIONS[name](x, ok).numpy(),
                                   np.ones(shape, np.float32).sum(axis=tuple(ok))
                                   if name == "reduce_sum" else 1.0)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("axis", [1.0, 0.5, "x", True, np.float32(1), [0, 1.0], [[0]],
                                  np.array([0.0])])
def test_a_reduction_refuses_a_non_integer_axis(device, name, axis):
    msg = _raises(TypeError, lambda: REDUCTIONS[name](ad.ones((2, 3)), axis), "axis")
    assert "iterable" not in msg and "literal" not in msg


def test_issue_examples_for_axes(device):
    x = ad.ones((2, 3))
    _raises(InvalidArgumentError, lambda: ad.reduce_sum(x, axis=[0, 0]), "reduce_sum",
            "duplicate dimension: 0")
    _raises(TypeError, lambda: ad.reduce_sum(x, axis=1.0), "reduce_sum", "1.0")
    _raises(TypeError, lambda: ad.reduce_sum(x, axis="x"), "reduce_sum", "'x'")
    # the ways of giving an axis that stay valid
    for axis in (1, -1, np.int64(1), [1], (-1,), np.array([1]), ad.constant(1), ad.constant([1])):
        assert ad.reduce_sum(x, axis=axis).numpy().tolist() == [3.0, 3.0]


AXIS_OPS = {
    "concat": lambda x, a: ad.concat([x, x], axis=a),
    "stack": lambda x, a: ad.stack([x, x], axis=a),
    "split": lambda x, a: ad.split(x, 1, axis=a),
    "unstack": lambda x, a: ad.unstack(x, axis=a),
    "gather": lambda x, a: ad.gather(x, [0], axis=a),
    "expand_dims": lambda x, a: ad.expand_dims(x, a),
    "squeeze": lambda x, a: ad.squeeze(ad.ones((1, 1)), a),
    "transpose": lambda x, a: ad.transpose(x, [a, 0]),
    "argmax": lambda x, a: ad.argmax(x, a),
    "argmin": lambda x, a: ad.argmin(x, a),
    "softmax": lambda x, a: ad.nn.softmax(x, a),
    "log_softmax": lambda x, a: ad.nn.log_softmax(x, a),
    "tensordot": lambda x, a: ad.tensordot(x, x, [[a], [0]]),
}


@pytest.mark.parametrize("name", sorted(AXIS_OPS))
@pytest.mark.parametrize("axis", [1.0, 0.5, "1", True, np.float64(1.0)])
def test_every_op_taking_an_axis_refuses_a_non_integer(device, name, axis):
    _raises(TypeError, lambda: AXIS_OPS[name](ad.ones((2, 2)), axis), repr(axis))


@pytest.mark.parametrize("name", sorted(AXIS_OPS))
def test_every_op_taking_an_axis_accepts_integer_kinds(device, name):
    x = ad.ones((2, 2))
    want = AXIS_OPS[name](x, 1)
    for axis in (np.int64(1), np.int32(1), ad.constant(1)):
        got = AXIS_OPS[name](x, axis)
        got = got if isinstance(got, list) else [got]
        for g, w in zip(got, want if isinstance(want, list) else [want]):
            assert g.shape == w.shape


def test_argmax_takes_one_axis_and_tensordot_each_axis_once(device):
    x = ad.ones((2, 2))
    _raises(TypeError, lambda: ad.argmax(x, [0, 1]), "argmax")
    _raises(InvalidArgumentError, lambda: ad.tensordot(x, x, [[0, 0], [0, 1]]), "tensordot",
            "twice")
    _raises(InvalidArgumentError, lambda: ad.tensordot(x, x, [[0, 1], [0]]), "tensordot")
    _raises(TypeError, lambda: ad.tensordot(x, x, 1.0), "tensordot", "1.0")
    _raises(InvalidArgumentError, lambda: ad.transpose(x, [0, 0]), "transpose")


# -- one message on every device; a refused op runs and records nothing ------------------

BAD_CALLS = [  # each takes a tensor x of shape (2, 2) and index tensor i, made beforehand
    lambda x, i: ad.zeros((2, -1)), lambda x, i: ad.random.normal((-1,)),
    lambda x, i: ad.eye(-1), lambda x, i: ad.linspace(0.0, 1.0, -1),
    lambda x, i: ad.one_hot(i, -2), lambda x, i: ad.tile(x, [-1, 1]),
    lambda x, i: ad.reshape(x, (-1, -1)), lambda x, i: ad.reduce_sum(x, [0, 0]),
    lambda x, i: ad.reduce_mean(x, 1.0), lambda x, i: ad.broadcast_to(x, (-1, 2)),
    lambda x, i: ad.zeros((2.5,)), lambda x, i: ad.concat([x, x], axis=0.5),
    lambda x, i: ad.transpose(x, [0, 0]), lambda x, i: ad.split(x, [3, -1]),
]


@pytest.mark.parametrize("case", range(len(BAD_CALLS)))
def test_the_same_message_on_every_device(case):
    seen = {}
    for name in ad.devices.available():
        with ad.device(name):
            x, i = ad.ones((2, 2)), ad.constant([0])
            with pytest.raises((TypeError, ValueError)) as info:
                BAD_CALLS[case](x, i)
        seen[name] = (type(info.value), str(info.value))
    assert len(set(seen.values())) == 1, seen


@pytest.mark.parametrize("case", range(len(BAD_CALLS)))
def test_a_refused_call_runs_no_kernel_and_records_nothing(device, kernel_calls, case):
    v = ad.Variable([[1.0, 2.0], [3.0, 4.0]])
    i = ad.constant([0])
    with ad.GradientTape() as tape:
        x = v * 1.0
        del kernel_calls[:]
        with pytest.raises((TypeError, ValueError)):
            BAD_CALLS[case](x, i)
        assert kernel_calls == []
        y = ad.reduce_sum(x)
    assert tape.gradient(y, v).numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_bind_checks_shape_attributes_itself(device):
    """A primitive called directly (as the gradient rules do) checks its shape
    attribute in its own rule."""
    from gpuad.ops import table as T
    dev = ad.devices.current()
    _raises(InvalidArgumentError, lambda: core.bind(T.FILL, (), shape=(2, -1), value=0,
                                                    dtype=np.dtype(np.float32), device=dev),
            "[Op:fill]", "-1")
    _raises(TypeError, lambda: core.bind(T.FILL, (), shape=(2.5,), value=0,
                                         dtype=np.dtype(np.float32), device=dev), "fill", "2.5")
    _raises(InvalidArgumentError, lambda: core.bind(T.RESHAPE, (ad.ones(4),), shape=(-2, -2)),
            "[Op:reshape]")
    _raises(InvalidArgumentError, lambda: core.bind(T.BROADCAST_TO, (ad.ones(1),), shape=(-1,)),
            "[Op:broadcast_to]", "-1")
    _raises(InvalidArgumentError, lambda: core.bind(T.REDUCE_SUM, (ad.ones((2, 2)),),
                                                    axes=(0, 0), keepdims=False), "reduce_sum")


# -- layer sizes -------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda v: ad.nn.Dense(v, 2), lambda v: ad.nn.Dense(2, v), lambda v: ad.nn.Embedding(v, 2),
    lambda v: ad.nn.Embedding(2, v), lambda v: ad.nn.LayerNorm(v),
    lambda v: ad.nn.LayerNorm((2, v)),
])
def test_layer_sizes_must_be_positive_integers(device, make):
    for bad in (-1, 0, -(2**40)):
        _raises(ValueError, lambda: make(bad), "positive integer", str(bad))
    for bad in (2.5, 2.0, True, "2", None):
        _raises(TypeError, lambda: make(bad), "positive integer", repr(bad))
    make(np.int64(3))
    make(3)


def test_issue_example_dense_minus_one(device):
    msg = _raises(ValueError, lambda: ad.nn.Dense(-1, 2), "Dense", "in_features", "-1")
    assert "random" not in msg  # not the initializer's error


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_rate_out_of_range(device, rate):
    _raises(ValueError, lambda: ad.nn.Dropout(rate), "rate", "Dropout", str(rate))


@pytest.mark.parametrize("rate", ["0.5", None, [0.5]])
def test_dropout_rate_not_a_number(device, rate):
    _raises(TypeError, lambda: ad.nn.Dropout(rate), "rate", "Dropout")


def test_layernorm_epsilon(device):
    for bad in (-1e-3, float("nan")):
        _raises(ValueError, lambda: ad.nn.LayerNorm(2, epsilon=bad), "epsilon")
    assert ad.nn.LayerNorm(2, epsilon=0).epsilon == 0.0


# -- seeds ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["x", 2.5, 1.0, True, [1], b"1"])
def test_a_seed_that_is_not_an_integer_is_refused(seed):
    with pytest.raises(TypeError, match=r"random.set_seed: seed must be an integer"):
        ad.random.set_seed(seed)
    for draw, name in ((ad.random.normal, "normal"), (ad.random.uniform, "uniform")):
        with pytest.raises(TypeError, match=rf"random.{name}: seed must be an integer"):
            draw((2,), seed=seed)


def test_integer_seeds_of_every_kind_reproduce_their_draws():
    for seed in (0, 7, np.int64(7), np.int32(-3), 2 ** 40 + 5):
        ad.random.set_seed(seed)
        a = ad.random.uniform((3,), seed=seed).numpy()
        ad.random.set_seed(seed)
        np.testing.assert_array_equal(ad.random.uniform((3,), seed=seed).numpy(), a)
    ad.random.set_seed(None)  # unpredictable again, and no error
