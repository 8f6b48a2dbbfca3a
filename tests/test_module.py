"""gpuad.Module (variable collection) and the gpuad.nn layers: Dense,
Sequential, Embedding, LayerNorm, Dropout, masked_softmax, initializers."""
import math

import numpy as np
import pytest

import gpuad as ad
from tests.ops.checks import numerical_vjp_check


def _close(t, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(t), np.asarray(expected), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# Module: collection
# ---------------------------------------------------------------------------

class Leaf(ad.Module):
    def __init__(self, tag, name=None):
        super().__init__(name=name)
        self.w = ad.Variable([1.0], name=f"{tag}_w")
        self.frozen = ad.Variable([0.0], trainable=False, name=f"{tag}_frozen")


def _names(vs):
    return [v.name for v in vs]


def test_module_collects_attributes_lists_tuples_dicts_nested():
    class M(ad.Module):
        def __init__(self):
            super().__init__()
            self.a = ad.Variable(1.0, name="a")
            self.lst = [ad.Variable(2.0, name="l0"), [ad.Variable(3.0, name="l1_0")]]
            self.tup = (ad.Variable(4.0, name="t0"),)
            self.dct = {"y": ad.Variable(5.0, name="dy"), "x": {"z": ad.Variable(6.0, name="dxz")}}
            self.sub = Leaf("sub")
            self.mods = [Leaf("m0"), {"k": Leaf("mk")}]
            self.not_a_var = ad.constant(7.0)  # tensors are not variables
            self.number = 3

    m = M()
    # sorted attribute names; list order; sorted dict keys; depth first
    assert _names(m.variables) == [
        "a:0", "dxz:0", "dy:0", "l0:0", "l1_0:0",
        "m0_frozen:0", "m0_w:0", "mk_frozen:0", "mk_w:0", "sub_frozen:0", "sub_w:0", "t0:0"]
    assert _names(m.trainable_variables) == [
        "a:0", "dxz:0", "dy:0", "l0:0", "l1_0:0", "m0_w:0", "mk_w:0", "sub_w:0", "t0:0"]
    assert _names(m.non_trainable_variables) == ["m0_frozen:0", "mk_frozen:0", "sub_frozen:0"]
    assert [p for p, _ in m.named_variables()] == [
        "a", "dct.x.z", "dct.y", "lst.0", "lst.1.0", "mods.0.frozen", "mods.0.w",
        "mods.1.k.frozen", "mods.1.k.w", "sub.frozen", "sub.w", "tup.0"]
    assert len(m.submodules) == 3
    assert isinstance(m.variables, tuple)


def test_module_order_independent_of_assignment_order():
    class A(ad.Module):
        def __init__(self, first):
            super().__init__()
            if first:
                self.x = ad.Variable(1.0, name="x")
                self.y = ad.Variable(2.0, name="y")
            else:
                self.y = ad.Variable(2.0, name="y")
                self.x = ad.Variable(1.0, name="x")

    assert _names(A(True).variables) == _names(A(False).variables) == ["x:0", "y:0"]


def test_module_no_duplicates_tied_and_cycles():
    class Tied(ad.Module):
        def __init__(self):
            super().__init__()
            self.emb = ad.nn.Embedding(5, 3)
            self.out = self.emb.embeddings          # tied weight: reachable twice
            self.again = [self.emb, {"e": self.emb}]  # the same sub-module again
            self.child = Leaf("c")
            self.child.parent = self                 # a cycle back to the parent

    m = Tied()
    ids = [id(v) for v in m.variables]
    assert len(ids) == len(set(ids)) == 3
    assert [p for p, _ in m.named_variables()] == ["again.0.embeddings", "child.frozen", "child.w"]  # first path wins


def test_module_name_defaults_and_without_super_init():
    class MyFancyModel(ad.Module):
        pass

    class NoInit(ad.Module):
        def __init__(self):
            self.v = ad.Variable(1.0)

    assert MyFancyModel().name == "my_fancy_model"
    assert MyFancyModel(name="custom").name == "custom"
    m = NoInit()
    assert m.name == "no_init" and len(m.trainable_variables) == 1
    with pytest.raises(TypeError):
        MyFancyModel(name=3)


def test_module_sees_variables_added_later():
    m = Leaf("x")
    assert len(m.variables) == 2
    m.extra = {"v": ad.Variable(1.0)}
    assert len(m.variables) == 3


# ---------------------------------------------------------------------------
# Dense and Sequential
# ---------------------------------------------------------------------------

def test_dense_forward_and_gradients_vs_numpy(device, rng):
    layer = ad.nn.Dense(4, 3, activation="tanh")
    assert layer.kernel.shape == (4, 3) and layer.bias.shape == (3,)
    assert layer.kernel.device == ad.devices.get(device).name
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    layer.kernel.assign(w)
    layer.bias.assign(b)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    with ad.GradientTape() as tape:
        y = layer(ad.constant(x))
        loss = ad.reduce_sum(y * y)
    ref = np.tanh(x @ w + b)
    _close(y, ref)
    gk, gb = tape.gradient(loss, [layer.kernel, layer.bias])
    dz = 2 * ref * (1 - ref ** 2)
    _close(gk, x.T @ dz, rtol=1e-4)
    _close(gb, dz.sum(0), rtol=1e-4)


def test_dense_higher_rank_input_and_no_bias(device, rng):
    layer = ad.nn.Dense(4, 2, use_bias=False)
    assert layer.bias is None and len(layer.variables) == 1
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    _close(layer(x), x @ layer.kernel.numpy(), rtol=1e-5)
    with pytest.raises(ad.InvalidArgumentError, match="last axis has size 4"):
        layer(ad.ones((2, 5)))


def test_sequential_mlp_forward_and_gradients(device, rng):
    model = ad.nn.Sequential([ad.nn.Dense(3, 5, activation="relu"), ad.nn.Dense(5, 2)])
    x = rng.standard_normal((4, 3)).astype(np.float32)
    with ad.GradientTape() as tape:
        loss = ad.reduce_mean(ad.square(model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    assert [p for p, _ in model.named_variables()] == [
        "layers.0.bias", "layers.0.kernel", "layers.1.bias", "layers.1.kernel"]
    b1, w1, b2, w2 = (v.numpy() for v in model.trainable_variables)
    h = x @ w1 + b1
    a = np.maximum(h, 0)
    out = a @ w2 + b2
    _close(loss, np.mean(out ** 2), rtol=1e-5)
    d_out = 2 * out / out.size
    d_a = d_out @ w2.T
    d_h = d_a * (h > 0)
    expected = [d_h.sum(0), x.T @ d_h, d_out.sum(0), a.T @ d_out]
    for g, e in zip(grads, expected):
        _close(g, e, rtol=1e-4, atol=1e-6)


def test_sequential_passes_training_and_accepts_functions(device):
    model = ad.nn.Sequential([ad.nn.Dropout(0.5), ad.nn.relu])
    model.add(lambda t: t * 2.0)
    x = ad.ones((200,))
    _close(model(x), np.full(200, 2.0))                     # inference: dropout off
    values = set(model(x, training=True).numpy().tolist())  # training: dropout on
    assert values == {0.0, 4.0}
    assert len(model) == 3 and model[1] is ad.nn.relu
    with pytest.raises(TypeError):
        ad.nn.Sequential([3])


# ---------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------

def test_embedding_forward_and_dense_gradient_with_duplicate_ids(device, rng):
    emb = ad.nn.Embedding(6, 3)
    table = rng.standard_normal((6, 3)).astype(np.float32)
    emb.embeddings.assign(table)
    ids = np.array([[1, 4, 1], [1, 0, 4]], dtype=np.int32)
    up = rng.standard_normal((2, 3, 3)).astype(np.float32)
    with ad.GradientTape() as tape:
        out = emb(ad.constant(ids))
        loss = ad.reduce_sum(out * up)
    _close(out, table[ids])
    g = tape.gradient(loss, emb.embeddings)
    assert isinstance(g, ad.Tensor) and g.shape == (6, 3) and g.device == out.device
    expected = np.zeros((6, 3), np.float32)
    np.add.at(expected, ids.reshape(-1), up.reshape(-1, 3))
    _close(g, expected, rtol=1e-5)
    assert np.all(g.numpy()[[2, 3, 5]] == 0)  # rows never looked up: exact zeros


# ---------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------

def _np_layer_norm(x, gamma, beta, axis, eps):
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layer_norm_vs_numpy(device, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32) * 3 + 1
    ln = ad.nn.LayerNorm(5)
    assert ln.epsilon == 1e-5
    gamma = rng.standard_normal(5).astype(np.float32)
    beta = rng.standard_normal(5).astype(np.float32)
    ln.gamma.assign(gamma)
    ln.beta.assign(beta)
    _close(ln(x), _np_layer_norm(x, gamma, beta, -1, 1e-5), rtol=1e-4, atol=1e-5)
    # functional, several axes, custom epsilon
    _close(ad.nn.layer_norm(x, axis=(1, 2), epsilon=1e-3),
           _np_layer_norm(x, 1.0, 0.0, (1, 2), 1e-3), rtol=1e-4, atol=1e-5)
    with pytest.raises(ad.InvalidArgumentError):
        ln(ad.ones((2, 4)))


def test_layer_norm_gradient_finite_differences(device, rng):
    x = rng.standard_normal((3, 4))
    gamma = rng.standard_normal(4)
    beta = rng.standard_normal(4)
    numerical_vjp_check(lambda x, g, b: ad.nn.layer_norm(x, g, b, epsilon=1e-5),
                        [x, gamma, beta], rng)


def test_layer_norm_module_gradient_reaches_gamma_and_beta(device, rng):
    ln = ad.nn.LayerNorm(4)
    x = ad.constant(rng.standard_normal((2, 4)).astype(np.float32))
    with ad.GradientTape() as tape:
        loss = ad.reduce_sum(ln(x) * ad.constant([1.0, 2.0, 3.0, 4.0]))
    g_beta, g_gamma = tape.gradient(loss, ln.trainable_variables)
    _close(g_beta, [2.0, 4.0, 6.0, 8.0])
    normed = _np_layer_norm(x.numpy(), 1.0, 0.0, -1, 1e-5)
    _close(g_gamma, (normed * [1, 2, 3, 4]).sum(0), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------

def test_dropout_training_flag_and_scaling(device):
    ad.random.set_seed(3)
    drop = ad.nn.Dropout(0.25)
    x = ad.ones((4000,))
    assert drop(x) is x or np.array_equal(drop(x).numpy(), x.numpy())
    assert np.array_equal(drop(x, training=False).numpy(), x.numpy())
    y = drop(x, training=True).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert abs(kept.mean() - 0.75) < 0.03
    assert abs(y.mean() - 1.0) < 0.05  # expectation preserved
    with ad.GradientTape() as tape:
        tape.watch(x)
        z = ad.reduce_sum(drop(x, training=True))
    g = tape.gradient(z, x).numpy()
    assert set(np.unique(g).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
    with pytest.raises(ValueError):
        ad.nn.Dropout(1.0)
    assert ad.nn.Dropout(0.0)(x, training=True).numpy().tolist() == x.numpy().tolist()


# ---------------------------------------------------------------------------
# masked_softmax
# ---------------------------------------------------------------------------

def test_masked_softmax_values_and_fully_masked_rows(device, rng):
    logits = rng.standard_normal((3, 5)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    p = ad.nn.masked_softmax(ad.constant(logits), ad.constant(mask)).numpy()
    e = np.where(mask, np.exp(logits - logits.max(-1, keepdims=True)), 0)
    with np.errstate(invalid="ignore"):
        ref = np.nan_to_num(e / e.sum(-1, keepdims=True))
    _close(p, ref)
    assert np.all(p[~mask] == 0) and np.all(p[1] == 0) and np.all(np.isfinite(p))
    _close(p[[0, 2]].sum(-1), [1.0, 1.0])


def test_masked_softmax_gradient_finite_and_correct(device, rng):
    logits = rng.standard_normal((3, 4))
    mask = ad.constant(np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool))
    x = ad.constant(logits)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.nn.masked_softmax(x, mask)
        loss = ad.reduce_sum(y * ad.constant(rng.standard_normal((3, 4))))
    g = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(g))
    assert np.all(g[1] == 0) and g[0, 1] == 0
    numerical_vjp_check(lambda t: ad.nn.masked_softmax(t, mask), [logits], rng, order=2)


def test_masked_softmax_broadcast_causal_mask(device, rng):
    t = 4
    scores = rng.standard_normal((2, 3, t, t)).astype(np.float32) * 10
    causal = np.tril(np.ones((t, t), dtype=bool))
    p = ad.nn.masked_softmax(scores, causal).numpy()  # a NumPy mask is accepted too
    assert p.shape == scores.shape
    assert np.all(p[..., ~causal] == 0)
    _close(p.sum(-1), np.ones((2, 3, t)))
    # an int mask means "nonzero is kept"
    p2 = ad.nn.masked_softmax(ad.constant(scores), ad.constant(causal.astype(np.int32)))
    _close(p2, p)


# ---------------------------------------------------------------------------
# initializers
# ---------------------------------------------------------------------------

def test_glorot_uniform_statistics(device):
    ad.random.set_seed(11)
    w = ad.nn.initializers.glorot_uniform((300, 200)).numpy()
    limit = math.sqrt(6 / 500)
    assert w.dtype == np.float32 and w.shape == (300, 200)
    assert w.min() >= -limit and w.max() <= limit
    assert abs(w.mean()) < 0.01 * limit
    assert abs(w.std() - limit / math.sqrt(3)) < 0.01 * limit


def test_he_normal_statistics(device):
    ad.random.set_seed(12)
    w = ad.nn.initializers.he_normal((400, 300)).numpy()
    std = math.sqrt(2 / 400)
    assert abs(w.mean()) < 0.01 * std
    assert abs(w.std() - std) < 0.02 * std     # truncated at 2 sigma, rescaled: std as asked
    bound = 2 * std / 0.87962566103423978
    assert np.all(np.abs(w) <= bound * (1 + 1e-6))


def test_zeros_ones_get_and_errors(device):
    init = ad.nn.initializers
    assert init.zeros((2, 2)).numpy().tolist() == [[0, 0], [0, 0]]
    assert init.get("ones")((3,), ad.float64).dtype == ad.float64
    assert isinstance(init.get("glorot_uniform"), init.GlorotUniform)
    custom = init.get(lambda shape, dtype: ad.fill(shape, 0.5))
    assert ad.nn.Dense(2, 2, kernel_initializer=custom).kernel.numpy().tolist() == [[0.5] * 2] * 2
    with pytest.raises(ValueError, match="Unknown initializer"):
        init.get("nope")
    assert init.compute_fans((3, 3, 4, 8)) == (36, 72)


def test_model_init_reproducible_with_set_seed(device):
    def build():
        return ad.nn.Sequential([ad.nn.Dense(5, 7), ad.nn.Embedding(4, 3),
                                 ad.nn.Dense(7, 2, kernel_initializer="he_normal")])

    ad.random.set_seed(42)
    a = [v.numpy() for v in build().variables]
    ad.random.set_seed(42)
    b = [v.numpy() for v in build().variables]
    ad.random.set_seed(43)
    c = [v.numpy() for v in build().variables]
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[1], c[1])


def test_init_matches_across_devices():
    """The same seed gives the same initial weights on every device."""
    values = []
    for dev in ad.devices.available():
        with ad.device(dev):
            ad.random.set_seed(5)
            values.append(ad.nn.Dense(6, 4).kernel.numpy())
    for v in values[1:]:
        np.testing.assert_allclose(v, values[0], rtol=1e-6)
