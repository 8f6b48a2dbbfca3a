"""GradientTape as TF_REFERENCE.md §3-§8 observes it: watching, the shape of
gradient() results, the tape lifecycle with TF's exact RuntimeError texts,
nested tapes for higher derivatives, stop_gradient/stop_recording/reset,
jacobian/batch_jacobian, Python control flow, and the per-thread tape stack."""
import collections
import logging
import threading

import numpy as np
import pytest

import gpuad as ad
import gpuad.tape as tape_module

NON_PERSISTENT = ("A non-persistent GradientTape can only be used to compute one set of "
                  "gradients (or jacobians)")


def _val(t):
    assert t is not None, "expected a gradient, got None"
    return np.asarray(t.numpy())


def _eq(t, expected, dtype=ad.float32):
    assert isinstance(t, ad.Tensor), type(t)
    assert t.dtype == dtype, (t.dtype, dtype)
    exp = np.asarray(expected, dtype=ad.as_dtype(dtype).numpy)
    assert t.shape == exp.shape, (t.shape, exp.shape)
    np.testing.assert_allclose(_val(t), exp, rtol=1e-6, atol=1e-6)


@pytest.fixture
def reset_warning_counters(monkeypatch):
    """The int-watch and persistent-in-context warnings are rate limited per
    process; start each test that checks them from a clean count."""
    monkeypatch.setattr(tape_module, "_int_watch_warnings", [0])
    monkeypatch.setattr(tape_module.GradientTape, "_warned_in_context", False)


# ---------------------------------------------------------------------------
# §3 construction and watching
# ---------------------------------------------------------------------------

def test_gradient_tape_binds_itself():
    t = ad.GradientTape()
    with t as bound:
        assert bound is t


def test_auto_watch_trainable_variables_only(device):
    v = ad.Variable(2.0, name="v")
    vn = ad.Variable(3.0, trainable=False, name="vn")
    c = ad.constant(4.0)
    with ad.GradientTape() as t:
        y = v * vn * c
    g = t.gradient(y, [v, vn, c])
    assert isinstance(g, list) and len(g) == 3
    _eq(g[0], 12.0)
    assert g[1] is None
    assert g[2] is None
    w = t.watched_variables()
    assert isinstance(w, tuple) and len(w) == 1 and w[0] is v


def test_explicit_watch_of_non_trainable_variable(device):
    v = ad.Variable(2.0, name="v")
    vn = ad.Variable(3.0, trainable=False, name="vn")
    c = ad.constant(4.0)
    with ad.GradientTape() as t:
        t.watch(vn)
        y = v * vn * c
    g = t.gradient(y, [v, vn])
    _eq(g[0], 12.0)
    _eq(g[1], 8.0)
    assert set(x.name for x in t.watched_variables()) == {"v:0", "vn:0"}


def test_watch_accessed_variables_false(device):
    v = ad.Variable(2.0)
    with ad.GradientTape(watch_accessed_variables=False) as t:
        y = v * 2.0
    assert t.gradient(y, v) is None
    assert t.watched_variables() == ()
    with ad.GradientTape(watch_accessed_variables=False) as t:
        t.watch(v)
        y = v * 2.0
    _eq(t.gradient(y, v), 2.0)


def test_watch_accepts_nests(device):
    a, b, c = ad.constant(1.0), ad.constant(2.0), ad.constant(3.0)
    with ad.GradientTape() as t:
        t.watch([a, b])
        t.watch({"c": (c,)})
        y = a * 1.0 + b * 2.0 + c * 3.0
    g = t.gradient(y, [a, b, c])
    for gi, e in zip(g, [1.0, 2.0, 3.0]):
        _eq(gi, e)


def test_unwatched_constant_gives_none(device):
    a, b = ad.constant(2.0), ad.constant(3.0)
    with ad.GradientTape() as t:
        t.watch(a)
        y = a * b
    g = t.gradient(y, [a, b])
    _eq(g[0], 3.0)
    assert g[1] is None


@pytest.mark.parametrize("value, dtype", [(1, "int32"), (np.array([1]), "int64"), (True, "bool")])
def test_watch_int_tensor_warns_and_records_nothing(device, caplog, reset_warning_counters,
                                                   value, dtype):
    x = ad.constant(value)
    with caplog.at_level(logging.WARNING, logger="gpuad"):
        with ad.GradientTape() as t:
            t.watch(x)
            if dtype != "bool":
                y = x * x
    msgs = [r.getMessage() for r in caplog.records if r.name == "gpuad"]
    assert len(msgs) == 1, msgs
    assert "floating" in msgs[0] and dtype in msgs[0]
    assert t._nodes == []
    if dtype != "bool":
        assert t.gradient(y, x) is None


def test_int_watch_warning_is_rate_limited(device, caplog, reset_warning_counters):
    x = ad.constant(1)
    with caplog.at_level(logging.WARNING, logger="gpuad"):
        for _ in range(8):
            with ad.GradientTape() as t:
                t.watch(x)
    n = sum(1 for r in caplog.records if r.name == "gpuad")
    assert 1 <= n <= 5


@pytest.mark.parametrize("obj, tname", [(1.0, "float"), (np.ones(2), "ndarray"), (None, "NoneType")])
def test_watch_non_tensor_raises_value_error(device, obj, tname):
    with ad.GradientTape() as t:
        with pytest.raises(ValueError) as e:
            t.watch(obj)
        assert tname in str(e.value)
        assert t._nodes == [] and not t._tracked


def test_watch_after_exit_records_nothing(device):
    a = ad.constant(2.0)
    with ad.GradientTape() as t:
        pass
    t.watch(a)
    y = a * a
    assert t.gradient(y, a) is None


def test_ops_before_watch_are_constants(device):
    a = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as t:
        y = a * 3.0
        t.watch(a)
        z = a * 5.0
        s = y + z
    _eq(t.gradient(s, a), 5.0)
    assert t.gradient(y, a) is None


def test_variable_read_before_tape_is_constant(device):
    v = ad.Variable(2.0)
    r = v * 1.0
    with ad.GradientTape() as t:
        y = r * v
    assert t.gradient(y, v) is not None  # the read of v inside counts ...
    with ad.GradientTape() as t:
        y = r * 3.0
    assert t.gradient(y, v) is None        # ... the one outside does not


@pytest.mark.parametrize("read", [
    lambda v: ad.convert_to_tensor(v),
    lambda v: v.read_value(),
    lambda v: ad.identity(v),
    lambda v: v.value(),
    lambda v: ad.constant(v),
    lambda v: v + 0.0,
    lambda v: v[...],
])
def test_all_read_paths_are_recorded(device, read):
    v = ad.Variable(3.0)
    with ad.GradientTape() as t:
        y = read(v) * 2.0
    _eq(t.gradient(y, v), 2.0)


def test_numpy_round_trip_cuts_the_graph(device):
    v = ad.Variable(3.0)
    with ad.GradientTape() as t:
        y = ad.constant(v.numpy()) * 2.0
    assert t.gradient(y, v) is None


def test_assign_inside_tape(device):
    v = ad.Variable(3.0)
    with ad.GradientTape() as t:
        v.assign(7.0)
        y = v * 2.0
    _eq(t.gradient(y, v), 2.0)
    assert float(v) == 7.0


def test_each_read_uses_value_at_read_time(device):
    v = ad.Variable(8.0)
    with ad.GradientTape() as t:
        y = v * v
        v.assign_add(1.0)
        z = y * v
    _eq(z, 576.0)
    _eq(t.gradient(z, v), 208.0)  # 2*8*9 + 64


def test_int_variable_read_is_listed_but_has_no_gradient(device):
    vi = ad.Variable(3)
    with ad.GradientTape() as t:
        y = vi * 2
    assert t.gradient(y, vi) is None
    assert t.watched_variables() == (vi,)


# ---------------------------------------------------------------------------
# §4 gradient(): structure of sources and targets
# ---------------------------------------------------------------------------

@pytest.fixture
def setup4(device):
    x = ad.constant([1.0, 2.0])
    s = ad.constant(3.0)
    w = ad.Variable([[1.0], [2.0]])
    t = ad.GradientTape(persistent=True)
    with t:
        t.watch([x, s])
        y = ad.reduce_sum(x * s) + ad.reduce_sum(w)
        xs = x * s
    return t, x, s, w, y, xs


def test_sources_single(setup4):
    t, x, s, w, y, _ = setup4
    _eq(t.gradient(y, x), [3.0, 3.0])
    _eq(t.gradient(y, w), [[1.0], [1.0]])
    _eq(t.gradient(y, s), 3.0)


def test_sources_structure_is_mirrored(setup4):
    t, x, s, w, y, _ = setup4
    g = t.gradient(y, [x, s])
    assert type(g) is list and len(g) == 2
    g = t.gradient(y, (x, s))
    assert type(g) is tuple and len(g) == 2
    _eq(g[0], [3.0, 3.0])
    _eq(g[1], 3.0)  # sum(x)
    g = t.gradient(y, {"x": x, "s": s})
    assert type(g) is dict and set(g) == {"x", "s"}
    _eq(g["x"], [3.0, 3.0])
    g = t.gradient(y, {"a": [x, (s, w)], "b": {"c": x}})
    assert set(g) == {"a", "b"} and type(g["a"]) is list and type(g["a"][1]) is tuple
    _eq(g["a"][0], [3.0, 3.0])
    _eq(g["a"][1][0], 3.0)
    _eq(g["a"][1][1], [[1.0], [1.0]])
    _eq(g["b"]["c"], [3.0, 3.0])
    P = collections.namedtuple("P", "x s")
    g = t.gradient(y, P(x, s))
    assert type(g) is P
    _eq(g.x, [3.0, 3.0])
    _eq(g.s, 3.0)
    g = t.gradient(y, [x])
    assert type(g) is list and len(g) == 1
    assert t.gradient(y, []) == []
    g = t.gradient(y, [x, x])
    _eq(g[0], [3.0, 3.0])
    _eq(g[1], [3.0, 3.0])


def test_sources_none_is_type_error(setup4):
    t, x, s, w, y, _ = setup4
    with pytest.raises(TypeError):
        t.gradient(y, None)


def test_target_none_is_type_error(setup4):
    t, x, s, w, y, _ = setup4
    with pytest.raises(TypeError, match="target"):
        t.gradient(None, x)
    with pytest.raises(TypeError):
        t.gradient([y, None], x)


def test_non_scalar_target_is_summed(setup4):
    t, x, s, w, y, xs = setup4
    _eq(t.gradient(xs, x), [3.0, 3.0])
    _eq(t.gradient(xs, s), 3.0)


def test_list_and_dict_targets_are_summed(device):
    x = ad.constant([1.0, 2.0])
    s = ad.constant(3.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        a = ad.reduce_sum(x * s)
        b = x * 2.0
        c = x * 3.0
    _eq(t.gradient([a, b], x), [5.0, 5.0])
    _eq(t.gradient((a, b), x), [5.0, 5.0])
    _eq(t.gradient({"a": b, "b": c}, x), [5.0, 5.0])
    _eq(t.gradient([a, ad.constant(5.0)], x), [3.0, 3.0])  # unconnected parts add nothing


def test_target_is_source_gives_ones_even_unwatched(device):
    x = ad.constant([5.0, 6.0])
    with ad.GradientTape() as t:
        pass
    _eq(t.gradient(x, x), [1.0, 1.0])
    v = ad.Variable(2.0)
    with ad.GradientTape() as t:
        pass
    _eq(t.gradient(v, v), 1.0)
    s = ad.constant(1.0)
    with ad.GradientTape() as t:
        pass
    g = t.gradient(x, [x, s])
    _eq(g[0], [1.0, 1.0])
    assert g[1] is None


def test_target_computed_after_exit_is_none(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        t.watch(x)
    y = x * x
    assert t.gradient(y, x) is None


def test_gradient_wrt_intermediates(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
        z = ad.reduce_sum(3.0 * y)
    _eq(t.gradient(z, y), [3.0, 3.0])
    g = t.gradient(z, [x, y])
    _eq(g[0], [6.0, 12.0])
    _eq(g[1], [3.0, 3.0])
    assert t.gradient(y, z) is None  # the reverse direction


def test_gradient_has_source_dtype_through_casts(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = ad.cast(x, ad.float64) * 2.0
        z = ad.cast(ad.cast(x, ad.float64) * 3.0, ad.float32)
    _eq(t.gradient(y, x), [2.0, 2.0], ad.float32)
    _eq(t.gradient(z, x), [3.0, 3.0], ad.float32)
    x64 = ad.constant([1.0], ad.float64)
    with ad.GradientTape() as t:
        t.watch(x64)
        y = ad.cast(x64, ad.float32) * x64.numpy().astype(np.float32)
    _eq(t.gradient(y, x64), [1.0], ad.float64)


def test_output_gradients_multiply_the_seed(device):
    x = ad.constant([1.0, 2.0])
    s = ad.constant(3.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * s
        y2 = x * 2.0
    _eq(t.gradient(y, x, output_gradients=ad.constant([10.0, 100.0])), [30.0, 300.0])
    _eq(t.gradient([y], x, output_gradients=[ad.constant([10.0, 100.0])]), [30.0, 300.0])
    _eq(t.gradient(y, x, output_gradients=np.array([10.0, 100.0], np.float32)), [30.0, 300.0])
    # fewer seeds than targets: the missing ones are ones
    _eq(t.gradient([y, y2], x, output_gradients=[ad.constant([1.0, 1.0])]), [5.0, 5.0])
    _eq(t.gradient([y, y2], x, output_gradients=[ad.constant([1.0, 1.0]), ad.constant([0.0, 1.0])]),
        [3.0, 5.0])


@pytest.mark.parametrize("seed", [
    lambda: ad.constant([10.0, 100.0, 3.0]),
    lambda: 2.0,
    lambda: ad.constant(2.0),
    lambda: [2.0, 3.0],   # a list is one seed per target, so a scalar for y: wrong shape
])
def test_output_gradients_wrong_shape(device, seed):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * 3.0
    with pytest.raises(ad.InvalidArgumentError):
        t.gradient(y, x, output_gradients=seed())
    _eq(t.gradient(y, x), [3.0, 3.0])  # the tape is still usable


def test_output_gradients_wrong_dtype(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * 3.0
    with pytest.raises(ad.InvalidArgumentError) as e:
        t.gradient(y, x, output_gradients=ad.constant([1.0, 1.0], ad.float64))
    assert "float64" in str(e.value) and "float32" in str(e.value)


def test_output_gradients_none_in_list(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y1 = x * 3.0
        y2 = x * 2.0
    with pytest.raises(ValueError, match="None"):
        t.gradient([y1, y2], x, output_gradients=[None, ad.ones(2)])


@pytest.mark.parametrize("mode", ["zero", ad.UnconnectedGradients.ZERO])
def test_unconnected_zero(device, mode):
    x = ad.constant([1.0, 2.0])
    w = ad.Variable([[1.0], [2.0]])
    vi = ad.Variable(3)
    u = ad.constant(1.0, ad.float64)
    with ad.GradientTape(persistent=True) as t:
        t.watch([x, u])
        y = ad.reduce_sum(x * 2.0)
    g = t.gradient(y, [x, w, vi, u], unconnected_gradients=mode)
    _eq(g[0], [2.0, 2.0])
    _eq(g[1], [[0.0], [0.0]])
    _eq(g[2], 0, ad.int32)
    _eq(g[3], 0.0, ad.float64)
    assert t.gradient(y, w, unconnected_gradients="none") is None
    assert t.gradient(y, w, unconnected_gradients=ad.UnconnectedGradients.NONE) is None
    assert t.gradient(y, w) is None


def test_unconnected_gradients_enum():
    assert [m.value for m in ad.UnconnectedGradients] == ["none", "zero"]


def test_unconnected_bad_value(device):
    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    with pytest.raises(ValueError, match="bad"):
        t.gradient(y, x, unconnected_gradients="bad")


def test_non_differentiable_path_is_unconnected(device):
    x = ad.constant([1.0, 3.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        am = ad.cast(ad.argmax(x), ad.float32)
        eq = ad.cast(ad.equal(x, 1.0), ad.float32)
        ci = ad.cast(ad.cast(x, ad.int32), ad.float32)
    for y in (am, eq, ci):
        assert t.gradient(y, x) is None
        _eq(t.gradient(y, x, unconnected_gradients="zero"), [0.0, 0.0])


# ---------------------------------------------------------------------------
# §5 lifecycle
# ---------------------------------------------------------------------------

def _used_tape(device):
    x = ad.constant(3.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    _eq(t.gradient(y, x), 6.0)
    return t, x, y


def test_non_persistent_second_gradient_raises(device):
    t, x, y = _used_tape(device)
    with pytest.raises(RuntimeError) as e:
        t.gradient(y, x)
    assert str(e.value) == NON_PERSISTENT
    with pytest.raises(RuntimeError) as e:
        t.gradient([y], [x])
    assert str(e.value) == NON_PERSISTENT


def test_non_persistent_jacobian_after_use_raises(device):
    t, x, y = _used_tape(device)
    with pytest.raises(RuntimeError) as e:
        t.jacobian(y, x)
    assert str(e.value) == NON_PERSISTENT


def test_non_persistent_batch_jacobian_after_use_raises(device):
    # TF's batch_jacobian text has a typo ("tocompute"); gpuad uses one text for all three
    t, x, y = _used_tape(device)
    with pytest.raises(RuntimeError) as e:
        t.batch_jacobian(y, x)
    assert str(e.value) == NON_PERSISTENT


def test_jacobian_then_gradient_on_non_persistent_raises(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    _eq(t.jacobian(y, x), [[2.0, 0.0], [0.0, 4.0]])
    with pytest.raises(RuntimeError) as e:
        t.gradient(y, x)
    assert str(e.value) == NON_PERSISTENT


def test_never_entered_tape_raises_same_text(device):
    x = ad.constant(1.0)
    with pytest.raises(RuntimeError) as e:
        ad.GradientTape().gradient(x, x)
    assert str(e.value) == NON_PERSISTENT


def test_empty_tape_target_is_source(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        pass
    _eq(t.gradient(x, x), 1.0)


def test_in_context_non_persistent_gradient_pops_the_tape(device, caplog, reset_warning_counters):
    x = ad.constant(2.0)
    with caplog.at_level(logging.WARNING, logger="gpuad"):
        with ad.GradientTape() as t:
            t.watch(x)
            y = x * x
            _eq(t.gradient(y, x), 4.0)
            n = len(t._nodes)
            z = x * x * x  # not recorded: the tape stopped recording
            assert len(t._nodes) == n
            with pytest.raises(RuntimeError, match="not recording"):
                with t.stop_recording():
                    pass
            with pytest.raises(RuntimeError) as e:
                t.gradient(z, x)
            assert str(e.value) == NON_PERSISTENT
    assert not [r for r in caplog.records if r.name == "gpuad"]  # no warning


def test_in_context_inner_gradient_still_recorded_by_outer(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = x ** 3
            dy = inner.gradient(y, x)  # inside its own context
        _eq(dy, 12.0)
    _eq(outer.gradient(dy, x), 12.0)


def test_persistent_in_context_warns_once_and_keeps_recording(device, caplog,
                                                              reset_warning_counters):
    x = ad.constant(1.0)
    with caplog.at_level(logging.WARNING, logger="gpuad"):
        with ad.GradientTape(persistent=True) as t:
            t.watch(x)
            y = x * x
            _eq(t.gradient(y, x), 2.0)
            _eq(t.gradient(y, x), 2.0)
            z = y * 3.0
        with ad.GradientTape(persistent=True) as t2:
            t2.watch(x)
            y2 = x * x
            t2.gradient(y2, x)
    msgs = [r.getMessage() for r in caplog.records if r.name == "gpuad"]
    assert len(msgs) == 1, msgs
    assert "persistent" in msgs[0] and "context" in msgs[0]
    _eq(t.gradient(z, x), 6.0)


def test_persistent_allows_repeated_calls(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
    first = _val(t.gradient(y, x))
    for _ in range(3):
        np.testing.assert_array_equal(_val(t.gradient(y, x)), first)
        _eq(t.jacobian(y, x), [[2.0, 0.0], [0.0, 4.0]])


def test_reentering_active_tape_raises(device):
    with ad.GradientTape() as t:
        with pytest.raises(ValueError, match="re-enter"):
            t.__enter__()
        x = ad.constant(1.0)
        t.watch(x)
        y = x * 2.0
    _eq(t.gradient(y, x), 2.0)  # the tape still works


def test_reentering_exited_tape_appends(device):
    x = ad.constant(1.0)
    t = ad.GradientTape()
    with t:
        t.watch(x)
        y = x * x
    with t:
        z = y * x
    _eq(t.gradient(z, x), 3.0)


# ---------------------------------------------------------------------------
# §6 nested tapes
# ---------------------------------------------------------------------------

def test_second_derivative_x3(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = x ** 3
        dy = inner.gradient(y, x)
    _eq(dy, 12.0)
    _eq(outer.gradient(dy, x), 12.0)


def test_third_derivative_x4(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as t3:
        t3.watch(x)
        with ad.GradientTape() as t2:
            t2.watch(x)
            with ad.GradientTape() as t1:
                t1.watch(x)
                y = x ** 4
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    _eq(d1, 32.0)
    _eq(d2, 48.0)
    _eq(d3, 48.0)


def test_nested_sin(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = ad.sin(x)
        dy = inner.gradient(y, x)
    d2 = outer.gradient(dy, x)
    np.testing.assert_allclose(float(dy), -0.416146844625473, rtol=1e-6)
    np.testing.assert_allclose(float(d2), -0.9092974066734314, rtol=1e-6)


def test_hessian_via_jacobian_of_gradient(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = ad.reduce_sum(x ** 3)
        g = inner.gradient(y, x)
    _eq(outer.jacobian(g, x), [[6.0, 0.0], [0.0, 12.0]])


@pytest.mark.parametrize("f, first, second", [
    (lambda x: 3.0 * x, 3.0, None),
    (lambda x: x + x, 2.0, None),
    (lambda x: x * x, 4.0, 2.0),
])
def test_second_derivative_none_for_linear(device, f, first, second):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = f(x)
        dy = inner.gradient(y, x)
    _eq(dy, first)
    d2 = outer.gradient(dy, x)
    if second is None:
        assert d2 is None
    else:
        _eq(d2, second)


def test_outer_not_watching_gives_none(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = x ** 3
        dy = inner.gradient(y, x)
    _eq(dy, 12.0)
    assert outer.gradient(dy, x) is None


def test_inner_not_watching_gives_none(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            y = x ** 3
        assert inner.gradient(y, x) is None
    _eq(outer.gradient(y, x), 12.0)


def test_inner_gradient_after_leaving_outer(device):
    x = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = x ** 3
    dy = inner.gradient(y, x)
    _eq(dy, 12.0)
    assert outer.gradient(dy, x) is None
    _eq(outer.gradient(y, x), 12.0)


def test_variables_auto_watched_by_both_tapes(device):
    v = ad.Variable(3.0)
    with ad.GradientTape() as outer:
        with ad.GradientTape() as inner:
            y = v ** 3
        dy = inner.gradient(y, v)
    _eq(dy, 27.0)
    _eq(outer.gradient(dy, v), 18.0)


def test_watches_are_per_tape(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as t:
        with ad.GradientTape() as t2:
            t2.watch(x)
            y = x * x
    assert t.gradient(y, x) is None
    _eq(t2.gradient(y, x), 4.0)


# ---------------------------------------------------------------------------
# §7 stop_gradient, stop_recording, reset, watched_variables
# ---------------------------------------------------------------------------

def test_stop_gradient(device):
    x = ad.constant(3.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
        u = ad.stop_gradient(y)
        z = u * x
    _eq(u, 9.0)
    _eq(t.gradient(z, x), 9.0)
    assert t.gradient(z, u) is None
    assert t.gradient(u, x) is None
    v = ad.Variable(1.0)
    sv = ad.stop_gradient(v)
    assert type(sv) is ad.Tensor and float(sv) == 1.0


def test_stop_recording(device):
    x = ad.constant(1.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x * 3.0
        n = len(t._nodes)
        with t.stop_recording():
            z = x * x * x
            with pytest.raises(ValueError, match="not recording"):
                with t.stop_recording():
                    pass
        assert len(t._nodes) == n
        w = y + z
    _eq(t.gradient(w, x), 6.0)
    assert t.gradient(z, x) is None


def test_stop_recording_outside_context_raises(device):
    t = ad.GradientTape()
    with t:
        pass
    with pytest.raises(RuntimeError, match="not recording"):
        with t.stop_recording():
            pass
    with pytest.raises(RuntimeError, match="not recording"):
        with ad.GradientTape().stop_recording():
            pass


def test_stop_recording_pauses_only_that_tape(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            with inner.stop_recording():
                y = x * x
    assert inner.gradient(y, x) is None
    _eq(outer.gradient(y, x), 4.0)


def test_reset(device):
    x = ad.constant(1.0)
    v = ad.Variable(2.0)
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y0 = x * v
        t.reset()
        assert t.watched_variables() == ()
        y = x * 3.0 + v ** 3
    assert t.gradient(y0, x) is None
    g = t.gradient(y, [x, v])
    assert g[0] is None
    _eq(g[1], 12.0)
    assert t.watched_variables() == (v,)


def test_reset_outside_context_raises(device):
    x = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * 2.0
    with pytest.raises(ValueError, match="not recording"):
        t.reset()
    _eq(t.gradient(y, x), 2.0)  # a gradient can still be computed afterwards
    with pytest.raises(ValueError, match="not recording"):
        ad.GradientTape().reset()


def test_watched_variables_creation_order(device):
    b = ad.Variable(1.0, name="b")
    a = ad.Variable(2.0, name="a")
    vn = ad.Variable(3.0, trainable=False, name="vn")
    c = ad.constant(1.0)
    with ad.GradientTape() as t:
        t.watch(c)
        y = a * b
        t.watch(vn)
    w = t.watched_variables()
    assert isinstance(w, tuple)
    assert [v.name for v in w] == ["b:0", "a:0", "vn:0"]


# ---------------------------------------------------------------------------
# §8 jacobian / batch_jacobian
# ---------------------------------------------------------------------------

def test_jacobian_values_and_shapes(device):
    x = ad.constant([1.0, 2.0, 3.0])
    m = ad.constant([[1.0, 2.0], [3.0, 4.0]])
    with ad.GradientTape(persistent=True) as t:
        t.watch([x, m])
        y = x * x
        s = ad.reduce_sum(y)
        y32 = ad.stack([x, 2.0 * x], axis=1)
        mm = ad.matmul(m, m)
    _eq(t.jacobian(y, x), np.diag([2.0, 4.0, 6.0]))
    _eq(t.jacobian(s, x), [2.0, 4.0, 6.0])
    j = t.jacobian(y32, x)
    assert j.shape == (3, 2, 3)
    expected = np.zeros((3, 2, 3), np.float32)
    for i in range(3):
        expected[i, 0, i], expected[i, 1, i] = 1.0, 2.0
    _eq(j, expected)
    jm = t.jacobian(mm, m)
    assert jm.shape == (2, 2, 2, 2)
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    num = np.zeros((2, 2, 2, 2))
    for k in range(2):
        for l in range(2):
            e = np.zeros((2, 2)); e[k, l] = 1.0
            num[:, :, k, l] = e @ a + a @ e
    _eq(jm, num)


def test_jacobian_sources_structure(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
    j = t.jacobian(y, [x])
    assert type(j) is list and len(j) == 1
    j = t.jacobian(y, {"a": x})
    assert type(j) is dict
    _eq(j["a"], [[2.0, 0.0], [0.0, 4.0]])


def test_jacobian_list_target_raises(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
    with pytest.raises(AttributeError):
        t.jacobian([y], x)


def test_jacobian_unconnected(device):
    x = ad.constant([1.0, 2.0, 3.0])
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        u = ad.constant([2.0]) * 3.0
    assert t.jacobian(u, x) is None
    z = t.jacobian(u, x, unconnected_gradients="zero")
    _eq(z, np.zeros((1, 3)))


def test_jacobian_non_persistent_without_pfor(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    with pytest.raises(RuntimeError, match="persistent=True"):
        t.jacobian(y, x, experimental_use_pfor=False)


def test_batch_jacobian_shapes_and_values(device):
    x = ad.reshape(ad.range(12.0), (4, 3))
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        y = ad.concat([2.0 * x, x[:, :1]], axis=1)   # (4, 4)
        y44 = ad.matmul(x, ad.ones((3, 4)))
        y423 = ad.stack([x, x * x], axis=1)            # (4, 2, 3)
    bj = t.batch_jacobian(y, x)
    assert bj.shape == (4, 4, 3)
    row0 = [[2, 0, 0], [0, 2, 0], [0, 0, 2], [1, 0, 0]]
    for b in range(4):
        _eq(bj[b], row0)
    _eq(t.batch_jacobian(y44, x), np.ones((4, 4, 3)))
    b3 = t.batch_jacobian(y423, x)
    assert b3.shape == (4, 2, 3, 3)
    xs = np.arange(12.0).reshape(4, 3)
    for b in range(4):
        _eq(b3[b, 0], np.eye(3))
        _eq(b3[b, 1], np.diag(2 * xs[b]))


def test_jacobians_wrt_variable(device):
    v = ad.Variable([[1.0, 2.0], [3.0, 4.0]])
    with ad.GradientTape(persistent=True) as t:
        y = v * v
    _eq(t.batch_jacobian(y, v), [[[2.0, 0.0], [0.0, 4.0]], [[6.0, 0.0], [0.0, 8.0]]])
    j = t.jacobian(y, v)
    assert j.shape == (2, 2, 2, 2)
    _eq(j[1, 0], [[0.0, 0.0], [6.0, 0.0]])


def test_batch_jacobian_errors(device):
    x = ad.reshape(ad.range(12.0), (4, 3))
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        r1 = ad.reduce_sum(x, axis=1)
        y = x * 2.0
    with pytest.raises(ValueError, match="rank at least 2"):
        t.batch_jacobian(r1, x)
    with pytest.raises(ValueError) as e:
        t.batch_jacobian(ad.ones((2, 4)), x)
    assert "(2, 4)" in str(e.value) and "(4, 3)" in str(e.value)
    with pytest.raises(AttributeError):
        t.batch_jacobian(y, [x])
    with pytest.raises(AttributeError):
        t.batch_jacobian([y], x)


def test_batch_jacobian_unconnected_is_zeros(device):
    x = ad.reshape(ad.range(12.0), (4, 3))
    with ad.GradientTape(persistent=True) as t:
        t.watch(x)
        u = ad.ones((4, 2)) * 2.0
    for mode in ("none", "zero"):
        z = t.batch_jacobian(u, x, unconnected_gradients=mode)
        _eq(z, np.zeros((4, 2, 3)))


# ---------------------------------------------------------------------------
# control flow and threads
# ---------------------------------------------------------------------------

def test_python_control_flow_records_what_ran(device):
    def f(x):
        y = x
        while y < 50.0:
            y = y * x
        if ad.reduce_sum(y) > 100.0:
            return y * 2.0
        return y * 3.0
    for x0, value, grad in [(3.0, 243.0, 324.0),    # y = x**4 = 81 <= 100: 3 x**4
                            (11.0, 242.0, 44.0)]:   # y = x**2 = 121 > 100: 2 x**2
        x = ad.constant(x0)
        with ad.GradientTape() as t:
            t.watch(x)
            y = f(x)
        _eq(y, value)
        _eq(t.gradient(y, x), grad)


def test_for_loop_over_tensor(device):
    x = ad.constant([1.0, 2.0, 3.0])
    with ad.GradientTape() as t:
        t.watch(x)
        total = ad.constant(0.0)
        for i, xi in enumerate(x):
            if i % 2 == 0:
                total = total + xi * xi
    _eq(t.gradient(total, x), [2.0, 0.0, 6.0])


def test_tape_stack_is_per_thread(device):
    x = ad.constant(2.0)
    result = {}

    def other_thread():
        with ad.device(device):
            result["y"] = x * x          # main thread's tape must not record this
            with ad.GradientTape() as t2:
                t2.watch(x)
                z = x * 3.0
            result["g"] = t2.gradient(z, x)

    with ad.GradientTape() as t:
        t.watch(x)
        n = len(t._nodes)
        th = threading.Thread(target=other_thread)
        th.start()
        th.join()
        assert len(t._nodes) == n
        w = x * 5.0
    _eq(result["g"], 3.0)
    g = t.gradient([w, result["y"]], x)
    _eq(g, 5.0)


def test_concurrent_tapes_in_threads(device):
    errors, results = [], {}

    def worker(k):
        try:
            with ad.device(device):
                x = ad.constant(float(k))
                for _ in range(20):
                    with ad.GradientTape() as t:
                        t.watch(x)
                        y = x ** 3
                    g = t.gradient(y, x)
                results[k] = float(g)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert results == {k: 3.0 * k * k for k in range(1, 5)}
