"""gpuad.optimizers: Keras 3 parity (TF_REFERENCE.md §15), the fused device
step (one launch, no transfer, on the kernel devices), errors, schedules and
state save/restore."""
import numpy as np
import pytest

import gpuad as ad
from gpuad.devices.launch import KernelDevice

O = ad.optimizers
S = ad.optimizers.schedules
f32 = np.float32


def _run(opt, loss, x, steps):
    out = []
    for _ in range(steps):
        opt.minimize(lambda: loss(x), [x])
        out.append(x.numpy().tolist())
    return out


# -- TF_REFERENCE §15.2 values -----------------------------------------------------------

def test_sgd_reference_sequences(device):
    x = ad.Variable(1.0)
    first, second = _run(O.SGD(learning_rate=0.1), lambda v: v * v, x, 2)
    assert first == 0.800000011920929 and second == float(f32(f32(0.8) - f32(0.1) * f32(1.6)))
    x = ad.Variable(1.0)
    assert _run(O.SGD(learning_rate=0.1, momentum=0.9), lambda v: v * v, x, 3) == [
        0.800000011920929, 0.46000000834465027, 0.062000006437301636]
    x = ad.Variable(1.0)
    assert _run(O.SGD(learning_rate=0.1, momentum=0.9, nesterov=True), lambda v: v * v, x, 3) == [
        0.6200000047683716, 0.2224000096321106, -0.1083519458770752]


def test_adam_reference_values_bit_exact(device):
    x = ad.Variable([1.0, -2.0])
    got = _run(O.Adam(learning_rate=0.1), lambda v: ad.reduce_sum(v ** 3), x, 3)
    assert got == [[0.9000007510185242, -2.09999942779541], [0.8010925650596619, -2.2001335620880127],
                   [0.7041559815406799, -2.3004918098449707]]


def test_clipnorm_and_float64_variable(device):
    v = ad.Variable([3.0, 4.0])
    O.SGD(learning_rate=1.0, clipnorm=1.0).apply_gradients([(ad.constant([3.0, 4.0]), v)])
    assert v.numpy().tolist() == [2.4000000953674316, 3.200000047683716]
    w = ad.Variable(1.0, dtype=ad.float64)
    O.SGD(learning_rate=0.1).apply_gradients([(ad.constant(1.0), w)])  # a float32 grad, cast
    assert float(w) == 0.8999999985098839


def test_defaults_and_config():
    cfg = O.SGD().get_config()
    assert cfg == {'name': 'sgd', 'learning_rate': 0.009999999776482582, 'weight_decay': None,
                   'clipnorm': None, 'global_clipnorm': None, 'clipvalue': None, 'use_ema': False,
                   'ema_momentum': 0.99, 'ema_overwrite_frequency': None, 'loss_scale_factor': None,
                   'gradient_accumulation_steps': None, 'momentum': 0.0, 'nesterov': False}
    a = O.Adam()
    assert (a.beta_1, a.beta_2, a.epsilon, a.amsgrad) == (0.9, 0.999, 1e-7, False)
    assert float(a.learning_rate) == float(f32(0.001))
    r = O.RMSprop()
    assert (r.rho, r.momentum, r.epsilon, r.centered) == (0.9, 0.0, 1e-7, False)
    g = O.Adagrad()
    assert (g.initial_accumulator_value, g.epsilon, float(g.learning_rate)) == (0.1, 1e-7, float(f32(0.001)))
    assert O.AdamW().weight_decay == 0.004
    again = O.Adam.from_config(O.Adam(learning_rate=0.5, amsgrad=True).get_config())
    assert again.amsgrad and float(again.learning_rate) == 0.5
    sched = O.SGD(learning_rate=S.CosineDecay(0.1, 10))
    assert isinstance(O.SGD.from_config(sched.get_config())._learning_rate, S.CosineDecay)


# -- every rule against a float32 NumPy replica of Keras 3's update_step ---------------------

def _replica(name, kw, w, grads):
    """Keras 3's update rules, one float32 operation at a time."""
    lr = f32(kw.get("learning_rate", 0.001))
    w = w.copy()
    st = {}
    wd = kw.get("weight_decay", 0.004 if name == "AdamW" else None)
    for t, g in enumerate(grads, start=1):
        if wd is not None:
            w = w - (w * f32(wd)) * lr
        if name == "SGD":
            mu = f32(kw.get("momentum", 0.0))
            if mu != 0:
                m = st.get("m", np.zeros_like(w))
                m = m * mu - g * lr
                st["m"] = m
                w = w + (m * mu - g * lr) if kw.get("nesterov") else w + m
            else:
                w = w - g * lr
        elif name in ("Adam", "AdamW"):
            b1, b2 = kw.get("beta_1", 0.9), kw.get("beta_2", 0.999)
            b1p = f32(float(f32(b1)) ** t)  # the correctly rounded power (powf) for these t
            b2p = f32(float(f32(b2)) ** t)
            alpha = lr * np.sqrt(f32(1) - b2p) / (f32(1) - b1p)
            m = st.get("m", np.zeros_like(w))
            v = st.get("v", np.zeros_like(w))
            m = m + (g - m) * f32(1 - b1)
            v = v + (g * g - v) * f32(1 - b2)
            st["m"], st["v"] = m, v
            if kw.get("amsgrad"):
                v = st["vh"] = np.maximum(st.get("vh", np.zeros_like(w)), v)
            w = w - (m * alpha) / (np.sqrt(v) + f32(1e-7))
        elif name == "RMSprop":
            rho, mu = kw.get("rho", 0.9), kw.get("momentum", 0.0)
            v = f32(rho) * st.get("v", np.zeros_like(w)) + f32(1 - rho) * (g * g)
            st["v"] = v
            if kw.get("centered"):
                a = f32(rho) * st.get("a", np.zeros_like(w)) + f32(1 - rho) * g
                st["a"] = a
                d = (v - a * a) + f32(1e-7)
            else:
                d = v + f32(1e-7)
            inc = (lr * g) / np.sqrt(d)
            if mu > 0:
                m = st["m"] = f32(mu) * st.get("m", np.zeros_like(w)) + inc
                w = w - m
            else:
                w = w - inc
        elif name == "Adagrad":
            acc = st.get("acc", np.full_like(w, f32(kw.get("initial_accumulator_value", 0.1))))
            acc = acc + g * g
            st["acc"] = acc
            w = w - (lr * g) / np.sqrt(acc + f32(1e-7))
    return w


CONFIGS = [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.7, "nesterov": True}),
    ("SGD", {"learning_rate": 0.3, "weight_decay": 0.01}),
    ("Adam", {"learning_rate": 0.1}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "amsgrad": True}),
    ("AdamW", {"learning_rate": 0.1}),
    ("AdamW", {"learning_rate": 0.02, "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {"learning_rate": 0.1}),
    ("RMSprop", {"learning_rate": 0.1, "momentum": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9, "centered": True}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adagrad", {"learning_rate": 0.5, "initial_accumulator_value": 0.3}),
]


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_rule_matches_float32_replica(device, name, kw, rng):
    shapes = [(3,), (2, 5), (), (7, 1)]
    init = [rng.standard_normal(s).astype(f32) for s in shapes]
    grads = [[(2 * rng.standard_normal(s)).astype(f32) for s in shapes] for _ in range(5)]
    vs = [ad.Variable(x) for x in init]
    opt = getattr(O, name)(**kw)
    for step in grads:
        opt.apply_gradients(zip([ad.constant(g) for g in step], vs))
    assert int(opt.iterations) == 5
    for j, v in enumerate(vs):
        want = _replica(name, kw, init[j], [step[j] for step in grads])
        np.testing.assert_array_equal(v.numpy(), want, err_msg=f"{name} {kw} variable {j}")


@pytest.mark.parametrize("name,kw", CONFIGS[::2], ids=[n for n, _ in CONFIGS[::2]])
def test_float64_variables_match_between_devices(name, kw, rng):
    """float64 parameters (and the float64 hyperparameters) agree on every device."""
    init = [rng.standard_normal(s) for s in [(4,), (3, 3)]]
    grads = [[rng.standard_normal(x.shape) for x in init] for _ in range(4)]
    results = {}
    for dev in [d for d in ("cpu", "emulated") if d in ad.devices.available()]:
        with ad.device(dev):
            vs = [ad.Variable(x) for x in init]
            opt = getattr(O, name)(**kw)
            for step in grads:
                opt.apply_gradients(zip([ad.constant(g) for g in step], vs))
            results[dev] = [v.numpy() for v in vs]
    for got in results.values():
        for a, b in zip(got, results["cpu"]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_matches_keras_bit_for_bit_when_tensorflow_is_installed(rng):
    """The real thing, where TensorFlow is at hand (skipped otherwise)."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    import tensorflow as tf
    shapes = [(3,), (2, 5), ()]
    init = [rng.standard_normal(s).astype(f32) for s in shapes]
    grads = [[(2 * rng.standard_normal(s)).astype(f32) for s in shapes] for _ in range(12)]
    for name, kw in CONFIGS + [("SGD", {"learning_rate": 1.0, "clipnorm": 0.5}),
                               ("Adam", {"learning_rate": S.ExponentialDecay(0.1, 3, 0.5)})]:
        kkw = dict(kw)
        if isinstance(kw["learning_rate"], S.ExponentialDecay):
            kkw["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5)
        kv = [tf.Variable(x) for x in init]
        kopt = getattr(keras.optimizers, name)(**kkw)
        with ad.device("cpu"):
            vs = [ad.Variable(x) for x in init]
            opt = getattr(O, name)(**kw)
            for step in grads:
                kopt.apply_gradients(zip([tf.constant(g) for g in step], kv))
                opt.apply_gradients(zip([ad.constant(g) for g in step], vs))
        for a, b in zip(vs, kv):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{name} {kw}")
        assert len(opt.variables) == len(kopt.variables)
        for a, b in zip(opt.variables, kopt.variables):
            np.testing.assert_array_equal(np.asarray(a.numpy(), b.numpy().dtype), b.numpy())


# -- apply_gradients: errors, warnings, iterations ------------------------------------------

def test_none_gradients_warn_and_all_none_is_an_error(device):
    p, q = ad.Variable(1.0, name="p"), ad.Variable(2.0, name="q")
    opt = O.SGD(learning_rate=0.5)
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['p:0'\] when minimizing"):
        it = opt.apply_gradients(zip([None, ad.constant(1.0)], [p, q]))
    assert it is opt.iterations and int(it) == 1
    assert float(p) == 1.0 and float(q) == 1.5
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.apply_gradients([(None, p), (None, q)])
    assert int(opt.iterations) == 1


def test_unknown_variable_shape_mismatch_and_bad_targets(device):
    a, b = ad.Variable([1.0, 2.0]), ad.Variable(3.0)
    opt = O.Adam()
    opt.apply_gradients([(ad.constant([1.0, 1.0]), a)])
    with pytest.raises(ValueError, match="Unknown variable: .*originally built with"):
        opt.apply_gradients([(ad.constant(1.0), b)])
    before = opt.variables
    snapshot = [v.numpy() for v in before]
    with pytest.raises(ad.InvalidArgumentError, match=r"shape \[2\] using a Tensor with shape \[3\], shapes must be equal"):
        opt.apply_gradients([(ad.constant([1.0, 1.0, 1.0]), a)])
    assert [v.numpy().tolist() for v in opt.variables] == [s.tolist() for s in snapshot]
    assert a.numpy().tolist() == pytest.approx([0.999, 1.999])
    with pytest.raises(TypeError, match="gpuad.Variable"):
        O.SGD().apply_gradients([(ad.constant(1.0), ad.constant(2.0))])


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"`momentum` must be a float between \[0, 1\]"):
        O.SGD(momentum=1.5)
    with pytest.raises(ValueError, match=r"Argument\(s\) not recognized: \{'lr': 0.1\}"):
        O.SGD(lr=0.1)
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        O.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="learning_rate"):
        O.Adam(learning_rate="fast")
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        O.Adagrad(initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="decay_steps"):
        S.ExponentialDecay(0.1, 0, 0.5)


def test_one_shot_zip_iterations_and_minimize(device):
    x = ad.Variable([1.0, 2.0])
    opt = O.SGD(learning_rate=0.25)
    for _ in range(3):
        with ad.GradientTape() as tape:
            loss = ad.reduce_sum(x * x)
        grads = tape.gradient(loss, [x])
        opt.apply_gradients(zip(grads, [x]))  # a one-shot iterator
    assert int(opt.iterations) == 3
    np.testing.assert_allclose(x.numpy(), [0.125, 0.25])
    with ad.GradientTape() as tape:
        loss = ad.reduce_sum(x)
    with pytest.raises(ValueError, match="`tape` is required when a `Tensor` loss is passed"):
        opt.minimize(loss, [x])
    assert opt.minimize(loss, [x], tape=tape) is None
    opt.minimize(lambda: ad.reduce_sum(x), lambda: [x])
    assert int(opt.iterations) == 5
    np.testing.assert_allclose(x.numpy(), [-0.375, -0.25])


def test_a_float64_gradient_is_cast(device):
    v = ad.Variable([1.0])
    O.SGD(learning_rate=0.5).apply_gradients([(ad.constant(np.array([1.0])), v)])
    assert v.dtype == ad.float32 and v.numpy().tolist() == [0.5]


def test_global_clipnorm(device):
    a, b = ad.Variable([0.0, 0.0]), ad.Variable(0.0)
    O.SGD(learning_rate=1.0, global_clipnorm=1.0).apply_gradients(
        [(ad.constant([3.0, 0.0]), a), (ad.constant(4.0), b)])
    np.testing.assert_allclose(a.numpy(), [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(float(b), -0.8, rtol=1e-6)


# -- learning rates and schedules -----------------------------------------------------------

def test_schedules_values():
    e = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert float(e(0)) == float(f32(0.1)) and float(e(10)) == float(f32(0.05))
    assert float(S.ExponentialDecay(1.0, 2, 0.5, staircase=True)(3)) == 0.5
    c = S.CosineDecay(1.0, decay_steps=4, alpha=0.1)
    assert [float(c(k)) for k in (0, 4, 100)] == [1.0, float(f32(0.1)), float(f32(0.1))]
    assert float(c(2)) == pytest.approx(0.55)
    w = S.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=5)
    assert float(w(0)) == 0.0 and float(w(5)) == 1.0 and float(w(15)) == 0.0
    assert S.deserialize(S.serialize(e)).get_config() == e.get_config()


def test_schedule_drives_the_step_and_learning_rate_is_settable(device):
    x = ad.Variable(0.0)
    opt = O.SGD(learning_rate=S.ExponentialDecay(1.0, 1, 0.5))
    for _ in range(3):
        opt.apply_gradients([(ad.constant(-1.0), x)])
    assert float(x) == 1.75  # 1 + 0.5 + 0.25: the rate at iterations 0, 1, 2
    assert float(opt.learning_rate) == 0.125
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    y = ad.Variable(0.0)
    opt = O.SGD(learning_rate=0.1)
    opt.learning_rate = 0.5
    assert float(opt.learning_rate) == 0.5
    opt.apply_gradients([(ad.constant(-1.0), y)])
    assert float(y) == 0.5
    with pytest.raises(AttributeError):
        opt.lr  # noqa: B018  (Keras 3 has no `lr`)
    opt.learning_rate = lambda: 0.25  # a callable: evaluated at every step
    assert [v.name for v in opt.variables] == ["sgd/iteration:0"]
    opt.apply_gradients([(ad.constant(-1.0), y)])
    assert float(y) == 0.75


# -- state: variables, names, save and restore -----------------------------------------------

def test_variables_and_names():
    w, b = ad.Variable([1.0, 2.0], name="w"), ad.Variable(0.0)
    opt = O.Adam(amsgrad=True)
    assert [v.name for v in opt.variables] == ["adam/iteration:0", "adam/learning_rate:0"]
    opt.build([w, b])
    assert [v.name for v in opt.variables] == [
        "adam/iteration:0", "adam/learning_rate:0", "adam/w_0_momentum:0", "adam/w_0_velocity:0",
        "adam/Variable_0_momentum:0", "adam/Variable_0_velocity:0", "adam/w_0_velocity_hat:0",
        "adam/Variable_0_velocity_hat:0"]
    assert all(isinstance(v, ad.Variable) and not v.trainable for v in opt.variables)
    assert opt.variables[2].shape == (2,) and opt.variables[1].dtype == ad.float32
    opt.build([w])  # a second build does nothing
    assert len(opt.variables) == 8
    names = [v.name for v in O.SGD(momentum=0.5, name="s").variables]
    assert names == ["s/iteration:0", "s/learning_rate:0"]
    twins = O.Adagrad()
    twins.build([ad.Variable(1.0), ad.Variable(2.0)])
    assert len({v.name for v in twins.variables}) == len(twins.variables)  # unique names


@pytest.mark.parametrize("make", [lambda: O.Adam(0.05, amsgrad=True),
                                  lambda: O.RMSprop(0.01, momentum=0.5, centered=True),
                                  lambda: O.SGD(0.1, momentum=0.9), lambda: O.Adagrad(0.1)],
                         ids=["adam", "rmsprop", "sgd", "adagrad"])
def test_restore_into_a_fresh_optimizer_continues_identically(device, make, rng):
    init = [rng.standard_normal(s).astype(f32) for s in [(4,), (2, 3)]]
    grads = [[rng.standard_normal(x.shape).astype(f32) for x in init] for _ in range(6)]

    def steps(opt, vs, gs):
        for step in gs:
            opt.apply_gradients(zip([ad.constant(g) for g in step], vs))

    vs = [ad.Variable(x) for x in init]
    opt = make()
    steps(opt, vs, grads[:3])
    saved_state = [v.numpy() for v in opt.variables]
    saved_vars = [v.numpy() for v in vs]
    steps(opt, vs, grads[3:])

    vs2 = [ad.Variable(x) for x in saved_vars]
    opt2 = make()
    opt2.build(vs2)
    assert [v.name for v in opt2.variables] == [v.name for v in opt.variables]
    for v, value in zip(opt2.variables, saved_state):
        v.assign(value)
    assert int(opt2.iterations) == 3
    steps(opt2, vs2, grads[3:])
    for a, b in zip(vs, vs2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(opt.variables, opt2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- in-place updates never show through other references -------------------------------------

def test_values_read_before_a_step_keep_their_contents(device):
    v = ad.Variable([1.0, 2.0])
    opt = O.SGD(learning_rate=1.0)
    opt.apply_gradients([(ad.constant([1.0, 1.0]), v)])
    held = v.read_value()
    opt.apply_gradients([(ad.constant([1.0, 1.0]), v)])
    assert held.numpy().tolist() == [0.0, 1.0] and v.numpy().tolist() == [-1.0, 0.0]
    src = ad.constant([5.0, 5.0])
    v.assign(src)  # the variable now shares src's buffer
    opt.apply_gradients([(ad.constant([1.0, 1.0]), v)])
    assert src.numpy().tolist() == [5.0, 5.0] and v.numpy().tolist() == [4.0, 4.0]
    opt.apply_gradients([(v.read_value(), v)])  # the gradient is the variable's own value
    assert v.numpy().tolist() == [0.0, 0.0]


# -- the fused step on the kernel devices -----------------------------------------------------

@pytest.fixture
def launches(monkeypatch):
    calls = []
    orig = KernelDevice.launch

    def counting(self, kernel, *args, **kwargs):
        calls.append(kernel)
        return orig(self, kernel, *args, **kwargs)
    monkeypatch.setattr(KernelDevice, "launch", counting)
    return calls


needs_emulated = pytest.mark.skipif("emulated" not in ad.devices.available(),
                                    reason="the emulated device needs a host C++ compiler (g++)")


@needs_emulated
@pytest.mark.parametrize("make", [lambda: O.Adam(0.01), lambda: O.AdamW(0.01, amsgrad=True),
                                  lambda: O.SGD(0.1, momentum=0.9, nesterov=True),
                                  lambda: O.RMSprop(centered=True, momentum=0.5), lambda: O.Adagrad()],
                         ids=["adam", "adamw", "sgd", "rmsprop", "adagrad"])
def test_one_launch_and_no_transfer_per_step_for_100_tensors(launches, make, rng):
    dev = ad.devices.get("emulated")
    with ad.device("emulated"):
        vs = [ad.Variable(rng.standard_normal((i % 7 + 1, 3)).astype(f32)) for i in range(100)]
        gs = [ad.constant(rng.standard_normal(v.shape).astype(f32)) for v in vs]
        opt = make()
        opt.apply_gradients(zip(gs, vs))  # builds, takes ownership, uploads the tables
        for _ in range(2):
            launches.clear()
            transfers = dev.transfers
            opt.apply_gradients(zip(gs, vs))
            assert launches == [f"optim_{opt._rule}_f32"]
            assert dev.transfers == transfers


@needs_emulated
def test_many_tensors_and_mixed_dtypes_take_a_few_launches(launches, rng):
    with ad.device("emulated"):
        init = [rng.standard_normal(2).astype(f32) for _ in range(300)]
        init += [rng.standard_normal(3), np.zeros((0, 2), f32)]
        vs = [ad.Variable(x) for x in init]
        gs = [ad.constant(rng.standard_normal(v.shape).astype(v.dtype.name)) for v in vs]
        opt = O.Adam(0.1)
        opt.apply_gradients(zip(gs, vs))
        launches.clear()
        opt.apply_gradients(zip(gs, vs))
        # Two groups (float32, float64): the smaller one is updated in copies of its
        # parameter and two slots (device-to-device copies, not launches: so a failure
        # in the other group leaves it unchanged), the larger one in two launches of
        # at most 256 tensors, the first in copies and the last in place.
        assert sorted(launches) == ["optim_adam_f32", "optim_adam_f32", "optim_adam_f64"]
    with ad.device("cpu"):
        ref = [ad.Variable(x) for x in init]
        opt = O.Adam(0.1)
        for _ in range(2):
            opt.apply_gradients(zip([ad.constant(g.numpy()) for g in gs], ref))
    for v, r in zip(vs, ref):
        np.testing.assert_array_equal(v.numpy(), r.numpy())


@needs_emulated
def test_emulated_equals_cpu_with_strided_gradients(rng):
    """A transposed (non-contiguous) gradient buffer is read correctly."""
    out = {}
    for dev in ("cpu", "emulated"):
        with ad.device(dev):
            v = ad.Variable(np.arange(6, dtype=f32).reshape(2, 3))
            g = ad.transpose(ad.constant(np.arange(6, dtype=f32).reshape(3, 2) / 7))
            opt = O.RMSprop(0.1, centered=True)
            for _ in range(3):
                opt.apply_gradients([(g, v)])
            out[dev] = v.numpy()
    np.testing.assert_array_equal(out["cpu"], out["emulated"])


def test_kernel_family_is_declared():
    assert ad.devices.KERNEL_SET["optim"] == frozenset({"sgd", "adam", "rmsprop", "adagrad"})
    for name in ad.devices.available():
        if not name.startswith("cuda"):
            dev = ad.devices.get(name)
            assert all(dev.supports("optim", op) for op in ("sgd", "adam", "rmsprop", "adagrad"))


# -- hyperparameter validation: every optimizer x every hyperparameter ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAN, _INF = float("nan"), float("inf")
_NOT_NUMBERS = st.sampled_from(["0.5", None, True, False, [0.5], 1j])
_NON_FINITE = st.sampled_from([_NAN, _INF, -_INF, np.float32(_NAN), np.float64(_INF)])

# kind -> (invalid values, valid values)
_KINDS = {
    "unit": (st.one_of(_NON_FINITE, _NOT_NUMBERS, st.floats(max_value=-1e-12),
                       st.floats(min_value=1 + 1e-9, allow_infinity=False)),
             st.one_of(st.floats(0, 1), st.sampled_from([0, 1, np.float32(0.5)]))),
    "beta": (st.one_of(_NON_FINITE, _NOT_NUMBERS, st.floats(max_value=-1e-12),
                       st.floats(min_value=1, allow_infinity=False), st.just(1)),
             st.one_of(st.floats(0, 0.9999999), st.sampled_from([0, np.float64(0.9)]))),
    "positive": (st.one_of(_NON_FINITE, _NOT_NUMBERS, st.floats(max_value=0, allow_infinity=False),
                           st.just(0)),
                 st.one_of(st.floats(1e-12, 1e6), st.just(3))),
    "positive?": (st.one_of(_NON_FINITE, st.sampled_from(["1", True, [1.0]]),
                            st.floats(max_value=0, allow_infinity=False), st.just(0)),
                  st.one_of(st.none(), st.floats(1e-12, 1e6), st.just(2))),
    "nonnegative": (st.one_of(_NON_FINITE, _NOT_NUMBERS, st.floats(max_value=-1e-300,
                                                                   allow_infinity=False)),
                    st.one_of(st.floats(1e-12, 1e3), st.just(0.5))),
    "nonnegative?": (st.one_of(_NON_FINITE, st.sampled_from(["1", True]),
                               st.floats(max_value=-1e-300, allow_infinity=False)),
                     st.one_of(st.none(), st.floats(0, 1e3))),
    "flag": (st.sampled_from([0, 1, "yes", "no", None, 1.0]), st.sampled_from([True, False,
                                                                               np.True_])),
    "count?": (st.one_of(st.sampled_from([0, -1, 1.5, _NAN, "2", True]), st.integers(max_value=0)),
               st.one_of(st.none(), st.integers(1, 10**6))),
    "learning_rate": (st.one_of(_NON_FINITE, st.floats(max_value=-1e-300, allow_infinity=False),
                                st.just(1e39), st.just(10**400), st.just(-1)),
                      st.one_of(st.floats(0, 10), st.just(0), st.just(np.float32(0.1)))),
}
_COMMON = {"learning_rate": "learning_rate", "weight_decay": "nonnegative?",
           "clipnorm": "positive?", "clipvalue": "positive?", "global_clipnorm": "positive?",
           "loss_scale_factor": "positive?", "ema_momentum": "unit",
           "ema_overwrite_frequency": "count?"}
_HYPER = {
    O.SGD: {"momentum": "unit", "nesterov": "flag"},
    O.Adam: {"beta_1": "beta", "beta_2": "beta", "epsilon": "positive", "amsgrad": "flag"},
    O.AdamW: {"beta_1": "beta", "beta_2": "beta", "epsilon": "positive", "amsgrad": "flag",
              "weight_decay": "nonnegative"},
    O.RMSprop: {"rho": "beta", "momentum": "unit", "epsilon": "positive", "centered": "flag"},
    O.Adagrad: {"initial_accumulator_value": "nonnegative", "epsilon": "nonnegative"},
}
_CASES = [(cls, arg, kind) for cls, own in _HYPER.items() for arg, kind in {**_COMMON, **own}.items()]


@st.composite
def _case(draw, valid):
    cls, arg, kind = draw(st.sampled_from(_CASES))
    return cls, arg, draw(_KINDS[kind][1 if valid else 0])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case(valid=False))
def test_every_invalid_hyperparameter_raises_naming_optimizer_argument_and_value(case):
    cls, arg, value = case
    with pytest.raises(ValueError) as info:
        cls(**{arg: value})
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}") and f"`{arg}`" in msg and f"{arg}={value!r}" in msg
    assert "must be" in msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case(valid=True))
def test_every_valid_hyperparameter_is_accepted(case):
    cls, arg, value = case
    opt = cls(**{arg: value})
    if arg != "learning_rate":
        assert getattr(opt, arg) is value
    else:
        assert float(opt.learning_rate) == float(np.float32(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case(valid=False), st.data())
def test_setting_an_invalid_hyperparameter_later_raises_and_keeps_the_old_value(case, data):
    cls, arg, value = case
    opt = cls()
    before = float(opt.learning_rate) if arg == "learning_rate" else getattr(opt, arg)
    with pytest.raises(ValueError, match=f"`{arg}`"):
        setattr(opt, arg, value)
    after = float(opt.learning_rate) if arg == "learning_rate" else getattr(opt, arg)
    assert after == before or (after is None and before is None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case(valid=True))
def test_valid_hyperparameters_take_finite_steps(case):
    # the valid ranges are the ones where a step stays finite, zero gradients included
    cls, arg, value = case
    if arg in ("ema_momentum", "ema_overwrite_frequency"):
        return  # stored only (use_ema is not implemented)
    kwargs = {arg: value}
    if arg == "learning_rate" or arg == "weight_decay":
        kwargs[arg] = value if value is None or float(value) <= 1 else 1.0
    w = ad.Variable([1.0, -2.0, 0.5])
    opt = cls(**kwargs)
    for g in ([0.0, 0.0, 0.0], [0.5, 0.0, -3.0], [0.0, 1e-3, 0.0]):
        opt.apply_gradients([(ad.constant(g), w)])
    assert np.all(np.isfinite(w.numpy())), (cls.__name__, kwargs, w.numpy())
    assert all(np.all(np.isfinite(v.numpy())) for v in opt.variables)


@pytest.mark.parametrize("beta_1,beta_2", [(1.0, 0.999), (0.9, 1.0), (1, 1), (1.5, 0.999),
                                           (-0.1, 0.999), (0.9, _NAN)])
def test_adam_beta_one_is_refused_not_nan_weights(beta_1, beta_2):
    for cls in (O.Adam, O.AdamW):
        with pytest.raises(ValueError, match=r"must be a finite float in \[0, 1\)"):
            cls(beta_1=beta_1, beta_2=beta_2)


@pytest.mark.parametrize("iav,eps", [(0, 0), (0.0, 0.0), (np.float32(0), 0)])
def test_adagrad_needs_an_accumulator_or_an_epsilon(iav, eps):
    with pytest.raises(ValueError, match="cannot both be 0"):
        O.Adagrad(initial_accumulator_value=iav, epsilon=eps)
    O.Adagrad(initial_accumulator_value=iav, epsilon=1e-7)
    opt = O.Adagrad(initial_accumulator_value=0.1, epsilon=eps)
    with pytest.raises(ValueError, match="cannot both be 0"):
        opt.initial_accumulator_value = 0
    assert opt.initial_accumulator_value == 0.1


def _step_state(w, opt):
    return [w.numpy().copy()] + [v.numpy().copy() for v in opt.variables]


@pytest.mark.parametrize("bad", [_NAN, _INF, -_INF, -0.5])
@pytest.mark.parametrize("how", ["assign", "callable", "schedule"])
def test_a_step_with_an_invalid_learning_rate_raises_and_changes_nothing(device, bad, how):
    w = ad.Variable([1.0, 2.0])

    class Bad(S.LearningRateSchedule):
        def value(self, step):
            return np.float32(0.1 if step == 0 else bad)

        def get_config(self):
            return {}

    lr = {"assign": 0.1, "callable": lambda: bad, "schedule": Bad()}[how]
    opt = O.Adam(learning_rate=lr)
    if how == "schedule":
        opt.apply_gradients([(ad.constant([1.0, 1.0]), w)])  # step 0 is fine
    else:
        opt.build([w])
    if how == "assign":  # past the setter's check: the Variable itself
        opt.learning_rate.assign(np.float32(bad))
    before = _step_state(w, opt)
    with pytest.raises(ValueError, match="learning rate") as info:
        opt.apply_gradients([(ad.constant([1.0, 1.0]), w)])
    assert "Nothing was updated" in str(info.value) and "Adam" in str(info.value)
    after = _step_state(w, opt)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after))


@pytest.mark.parametrize("make", [
    lambda: S.ExponentialDecay(0.1, _NAN, 0.5), lambda: S.ExponentialDecay(0.1, _INF, 0.5),
    lambda: S.ExponentialDecay(0.1, -3, 0.5), lambda: S.ExponentialDecay(_NAN, 10, 0.5),
    lambda: S.ExponentialDecay(-0.1, 10, 0.5), lambda: S.ExponentialDecay(0.1, 10, -0.5),
    lambda: S.ExponentialDecay(0.1, 10, _INF), lambda: S.ExponentialDecay(0.1, 10, 0.5, staircase="y"),
    lambda: S.ExponentialDecay("0.1", 10, 0.5),
    lambda: S.CosineDecay(0.1, 0), lambda: S.CosineDecay(_INF, 10),
    lambda: S.CosineDecay(0.1, 10, alpha=-0.1),
    lambda: S.CosineDecay(0.1, 10, alpha=1.5), lambda: S.CosineDecay(0.1, 10, alpha=_NAN),
    lambda: S.CosineDecay(0.1, 10, warmup_target=_NAN, warmup_steps=5),
    lambda: S.CosineDecay(0.1, 10, warmup_target=-1.0, warmup_steps=5),
    lambda: S.CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-5),
    lambda: S.CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=_INF),
])
def test_schedule_arguments_are_validated(make):
    with pytest.raises(ValueError, match=r"(ExponentialDecay|CosineDecay): argument `\w+` must be"):
        make()


def test_valid_schedules_still_build():
    S.ExponentialDecay(0.0, 1, 0.0)(3)
    S.CosineDecay(1.0, 10, alpha=1.0, warmup_target=2.0, warmup_steps=0)(3)
    S.CosineDecay(np.float32(0.5), np.int64(4), alpha=np.float64(0.25))(2)
