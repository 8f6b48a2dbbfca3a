"""One test per bad input named in API.md and TF_REFERENCE.md: each checks
the exception type, that the message names the op and the offending
shapes/dtypes, and (DESIGN.md rule 5) that the failure changed nothing: a
failed op inside an active tape records nothing and the gradients computed
afterwards are what they would have been; a failed assign leaves the value."""
import re

import numpy as np
import pytest

import gpuad as ad

NON_PERSISTENT = ("A non-persistent GradientTape can only be used to compute one set of "
                  "gradients (or jacobians)")


def _shape_in(msg, shape):
    """Whether ``msg`` mentions ``shape`` as a tuple ``(2, 3)`` or a list ``[2,3]``."""
    shape = tuple(shape)
    forms = {str(shape), str(list(shape)), "[" + ",".join(map(str, shape)) + "]",
             str(shape).replace(" ", "")}
    return any(f in msg for f in forms)


def _names_op(msg, *names):
    low = msg.lower()
    return any(f"[op:{n.lower()}]" in low or n.lower() in low for n in names)


def _dtype_in(msg, dtype):
    words = {"float32": ("float32", "float"), "float64": ("float64", "double"),
             "int32": ("int32",), "int64": ("int64",), "bool": ("bool",)}[dtype]
    return any(w in msg for w in words)


def _fails_cleanly(bad, exc, x_value=(1.0, 2.0, 3.0)):
    """Run ``bad(x, tape)`` inside a persistent tape that watches x, between two
    recorded ops; assert it raises ``exc``, records nothing, and leaves the
    gradients untouched. Returns the exception."""
    x_value = np.asarray(x_value, np.float32)
    x = ad.constant(x_value)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        nodes, tracked = len(tape._nodes), set(tape._tracked)
        with pytest.raises(exc) as e:
            bad(x, tape)
        assert len(tape._nodes) == nodes, "a failed op recorded a node"
        assert tape._tracked == tracked, "a failed op marked a tensor as tracked"
        z = ad.reduce_sum(y * 3.0)
    g = tape.gradient(z, x)
    np.testing.assert_allclose(g.numpy(), 6.0 * x_value)
    assert tape.gradient(y, x) is not None
    return e.value


# ---------------------------------------------------------------------------
# op argument errors
# ---------------------------------------------------------------------------

def test_dtype_mismatch_in_binary_op(device):
    def bad(x, tape):
        return x + ad.constant([1, 2, 3])
    err = _fails_cleanly(bad, ad.InvalidArgumentError)
    msg = str(err)
    assert isinstance(err, ValueError)
    assert "[Op:add]" in msg or _names_op(msg, "add", "AddV2")
    assert _dtype_in(msg, "float32") and _dtype_in(msg, "int32")
    assert "#1" in msg


def test_dtype_mismatch_in_where(device):
    def bad(x, tape):
        return ad.where(x > 1.0, x, ad.constant([1, 2, 3]))
    err = _fails_cleanly(bad, ad.InvalidArgumentError)
    msg = str(err)
    assert _names_op(msg, "where", "SelectV2")
    assert _dtype_in(msg, "float32") and _dtype_in(msg, "int32")
    assert "#2" in msg


def test_broadcast_failure(device):
    def bad(x, tape):
        return ad.ones((3, 2)) + x
    err = _fails_cleanly(bad, ad.InvalidArgumentError)
    msg = str(err)
    assert _names_op(msg, "add", "AddV2")
    assert "Incompatible shapes" in msg
    assert _shape_in(msg, (3, 2)) and _shape_in(msg, (3,))


def test_bad_reduction_axis(device):
    x = ad.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.reduce_sum(x, axis=2)
    msg = str(e.value)
    assert _names_op(msg, "reduce_sum", "Sum")
    assert "Invalid reduction dimension" in msg and "2" in msg

    def bad_in_tape(x, tape):
        return ad.reduce_sum(x, axis=1)  # x has rank 1
    msg = str(_fails_cleanly(bad_in_tape, ad.InvalidArgumentError))
    assert "1" in msg and _names_op(msg, "reduce_sum", "Sum")


def test_matmul_rank_1(device):
    def bad(x, tape):
        return x @ ad.ones(3)
    err = _fails_cleanly(bad, ad.InvalidArgumentError)
    msg = str(err)
    assert _names_op(msg, "matmul", "MatMul")
    assert "ndims" in msg or "rank" in msg
    assert _shape_in(msg, (3,))


def test_matmul_size_mismatch(device):
    a = ad.ones((2, 3))
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.matmul(a, a)
    msg = str(e.value)
    assert _names_op(msg, "matmul", "MatMul")
    assert "Matrix size-incompatible" in msg
    assert msg.count("[2,3]") == 2 or msg.count("(2, 3)") == 2

    def bad_in_tape(x, tape):
        return ad.matmul(x, x)
    msg = str(_fails_cleanly(bad_in_tape, ad.InvalidArgumentError, np.ones((2, 3))))
    assert "Matrix size-incompatible" in msg


def test_reshape_size_mismatch(device):
    def bad(x, tape):
        return ad.reshape(x, (2, 2))
    err = _fails_cleanly(bad, ad.InvalidArgumentError)
    msg = str(err)
    assert _names_op(msg, "reshape", "Reshape")
    assert "3 values" in msg and ("[2, 2]" in msg or "(2, 2)" in msg or "[2,2]" in msg)


def test_bool_arithmetic(device):
    def bad(x, tape):
        return ad.constant([True, False, True]) + ad.constant([False, False, True])
    msg = str(_fails_cleanly(bad, ad.InvalidArgumentError))
    assert _names_op(msg, "add") and "bool" in msg


def test_integer_negative_power(device):
    with pytest.raises(ad.InvalidArgumentError) as e:
        ad.constant(2) ** -1
    assert _names_op(str(e.value), "pow", "Pow") and "negative" in str(e.value).lower()


def test_python_float_for_int_tensor(device):
    with pytest.raises(TypeError) as e:
        ad.constant(3) * 2.5
    assert "2.5" in str(e.value) and "int32" in str(e.value)


def test_none_operand(device):
    def bad(x, tape):
        return x + None
    msg = str(_fails_cleanly(bad, ValueError))
    assert "None" in msg


def test_equal_incompatible_shapes(device):
    def bad(x, tape):
        return ad.equal(x, ad.constant([1.0, 2.0]))
    msg = str(_fails_cleanly(bad, ad.InvalidArgumentError))
    assert _names_op(msg, "equal", "Equal") and _shape_in(msg, (3,)) and _shape_in(msg, (2,))


@pytest.mark.parametrize("bad, op", [
    (lambda x: ad.clip_by_value(x, 0.0, ad.constant([1.0, 2.0])), "clip_by_value"),
    (lambda x: ad.norm(x, axis=3), "norm"),
    (lambda x: ad.squared_difference(x, ad.constant([1.0, 2.0])), "squared_difference"),
    (lambda x: ad.stack([x, ad.ones(2)]), "stack"),
    (lambda x: ad.concat([x, ad.ones(2, ad.float64)], 0), "concat"),
    (lambda x: ad.tensordot(x, ad.ones((2, 2)), 1), "tensordot"),
    (lambda x: ad.reduce_mean(x, axis=4), "reduce_mean"),
    (lambda x: ad.transpose(x, [0, 0]), "transpose"),
    (lambda x: ad.nn.softmax(x, axis=2), "softmax"),
    (lambda x: ad.nn.sigmoid_cross_entropy_with_logits(labels=ad.ones(2), logits=x),
     "sigmoid_cross_entropy"),
    (lambda x: x[5], "slice"),
])
def test_failed_composite_op_records_nothing(device, bad, op):
    """Ops built from several primitives must validate before computing, so a
    bad argument leaves no half-recorded nodes on the tape."""
    err = _fails_cleanly(lambda x, tape: bad(x), ad.InvalidArgumentError)
    assert isinstance(err, ValueError)


# ---------------------------------------------------------------------------
# tape errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("obj, tname", [(1.0, "float"), (np.ones(2), "ndarray"), (None, "NoneType"),
                                        ("x", "str")])
def test_watch_unwatchable_object(device, obj, tname):
    def bad(x, tape):
        tape.watch(obj)
    msg = str(_fails_cleanly(bad, ValueError))
    assert tname in msg


def test_watch_nest_with_bad_leaf_watches_nothing_new(device):
    a = ad.constant(1.0)
    with ad.GradientTape() as tape:
        with pytest.raises(ValueError):
            tape.watch([1.0, a])
        y = a * 2.0
    # TF validates leaf by leaf; either way the tape must still work
    g = tape.gradient(y, a)
    assert g is None or float(g) == 2.0


def test_tape_reuse(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    assert float(tape.gradient(y, x)) == 4.0
    with pytest.raises(RuntimeError) as e:
        tape.gradient(y, x)
    assert str(e.value) == NON_PERSISTENT


def test_reenter_active_tape(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        with pytest.raises(ValueError, match="re-enter"):
            tape.__enter__()
        y = x * x
    assert float(tape.gradient(y, x)) == 4.0


def test_gradient_of_none(device):
    x = ad.constant(2.0)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(TypeError) as e:
        tape.gradient(None, x)
    assert "target" in str(e.value) and "None" in str(e.value)
    assert float(tape.gradient(y, x)) == 4.0  # nothing was consumed


def test_gradient_of_none_non_persistent_is_still_usable(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(TypeError):
        tape.gradient(None, x)
    with pytest.raises(TypeError):
        tape.gradient(y, None)
    assert float(tape.gradient(y, x)) == 4.0  # argument errors do not use up the tape


def test_bad_unconnected_gradients(device):
    x = ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(ValueError) as e:
        tape.gradient(y, x, unconnected_gradients="bad")
    assert "bad" in str(e.value) and "unconnected_gradients" in str(e.value)
    assert float(tape.gradient(y, x)) == 4.0


def test_output_gradients_wrong_shape(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * 3.0
    with pytest.raises(ad.InvalidArgumentError) as e:
        tape.gradient(y, x, output_gradients=ad.constant([10.0, 100.0, 3.0]))
    msg = str(e.value)
    assert _shape_in(msg, (2,)) and _shape_in(msg, (3,))
    assert "Incompatible shapes" in msg or "shape" in msg
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [3.0, 3.0])


def test_output_gradients_wrong_dtype(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * 3.0
    with pytest.raises(ad.InvalidArgumentError) as e:
        tape.gradient(y, x, output_gradients=ad.constant([1.0, 1.0], ad.float64))
    msg = str(e.value)
    assert _dtype_in(msg, "float64") and _dtype_in(msg, "float32")
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [3.0, 3.0])


def test_stop_recording_not_recording(device):
    tape = ad.GradientTape()
    with pytest.raises(RuntimeError) as e:
        with tape.stop_recording():
            pass
    assert str(e.value) == "Trying to stop recording a tape which is not recording."


def test_reset_not_recording(device):
    with pytest.raises(ValueError, match="Tape is not recording"):
        ad.GradientTape().reset()


def test_batch_jacobian_bad_shapes(device):
    x = ad.ones((4, 3))
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * 2.0
        r = ad.reduce_sum(x, axis=1)
    with pytest.raises(ValueError) as e:
        tape.batch_jacobian(r, x)
    assert "rank at least 2" in str(e.value) and _shape_in(str(e.value), (4,))
    with pytest.raises(ValueError) as e:
        tape.batch_jacobian(ad.ones((2, 4)), x)
    assert _shape_in(str(e.value), (2, 4)) and _shape_in(str(e.value), (4, 3))
    assert tape.batch_jacobian(y, x).shape == (4, 3, 3)


def test_jacobian_list_target(device):
    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(AttributeError):
        tape.jacobian([y], x)
    assert tape.jacobian(y, x).shape == (2, 2)  # the non-persistent tape was not used up


def test_custom_gradient_wrong_count(device):
    @ad.custom_gradient
    def f(a, b):
        return a * b, lambda dy: dy
    a, b = ad.constant(1.0), ad.constant(2.0)
    with ad.GradientTape() as tape:
        tape.watch([a, b])
        y = f(a, b)
    with pytest.raises(ValueError) as e:
        tape.gradient(y, [a, b])
    assert "expected to return 2" in str(e.value) and "returned 1" in str(e.value)


# ---------------------------------------------------------------------------
# Variables: every failed assign leaves the value
# ---------------------------------------------------------------------------

def test_assign_wrong_shape(device):
    v = ad.Variable([1.0, 2.0], name="v")
    with pytest.raises(ValueError) as e:
        v.assign(5.0)
    msg = str(e.value)
    assert "v:0" in msg and _shape_in(msg, (2,)) and _shape_in(msg, ())
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_assign_add_wrong_shape(device):
    v = ad.Variable([1.0, 2.0], name="v")
    with pytest.raises(ad.InvalidArgumentError) as e:
        v.assign_add([1.0])
    msg = str(e.value)
    assert _shape_in(msg, (2,)) and _shape_in(msg, (1,)) and _names_op(msg, "assign_add",
                                                                       "AssignAddVariableOp")
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    with pytest.raises(ad.InvalidArgumentError):
        v.assign_sub(1.0)
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_assign_wrong_dtype(device):
    v = ad.Variable([1.0, 2.0], name="v")
    with pytest.raises(ValueError) as e:
        v.assign(ad.constant([1.0, 2.0], ad.float64))
    msg = str(e.value)
    assert "float32" in msg and "float64" in msg
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError):
        v.assign_add(ad.constant([1, 2]))
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    vi = ad.Variable(1)
    with pytest.raises(TypeError) as e:
        vi.assign(1.5)
    assert "1.5" in str(e.value) and "int32" in str(e.value)
    assert int(vi) == 1


def test_failed_assign_inside_tape_changes_nothing(device):
    v = ad.Variable(3.0)
    with ad.GradientTape() as tape:
        y = v * v
        nodes = len(tape._nodes)
        with pytest.raises(ValueError):
            v.assign([1.0, 2.0])
        with pytest.raises(ValueError):
            v.assign_add(ad.constant(1.0, ad.float64))
        assert len(tape._nodes) == nodes
        z = y * v
    assert float(v) == 3.0
    assert float(tape.gradient(z, v)) == 27.0  # 3 v**2


def test_variable_without_initial_value():
    with pytest.raises(ValueError, match="initial_value"):
        ad.Variable(None)


def test_variable_inplace_add(device):
    v = ad.Variable(1.0)
    with pytest.raises(RuntimeError, match="assign_add"):
        v += 1.0
    assert float(v) == 1.0


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------

def test_bad_device_name():
    with pytest.raises(ValueError) as e:
        with ad.device("tpu:3"):
            pass
    msg = str(e.value)
    assert "tpu" in msg and "cpu" in msg
    with pytest.raises(ValueError) as e:
        ad.constant(1.0, device="nonsense")
    assert "nonsense" in str(e.value)


def test_cuda_where_there_is_none_says_why():
    if any(d.startswith("cuda") for d in ad.devices.available()):
        pytest.skip("a CUDA device is available here: nothing to refuse")
    with pytest.raises(Exception) as e:
        ad.constant(1.0, device="cuda")
    msg = str(e.value)
    assert re.search(r"cupy|driver|no (cuda |gpu )?device|not available|unavailable", msg, re.I), msg
    assert "cpu" in msg  # how to fall back


def test_mixed_devices():
    names = ad.devices.available()
    if len(names) < 2:
        pytest.skip(f"only one device is available ({names}); mixing needs two")
    a = ad.constant([1.0, 2.0], device=names[0])
    b = ad.constant([1.0, 2.0], device=names[1])
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(a)
        y = a * a
        nodes = len(tape._nodes)
        with pytest.raises(ad.InvalidArgumentError) as e:
            a + b
        assert len(tape._nodes) == nodes
    msg = str(e.value)
    assert ad.devices.get(names[0]).name in msg and ad.devices.get(names[1]).name in msg
    assert _names_op(msg, "add")
    np.testing.assert_array_equal(tape.gradient(y, a).numpy(), [2.0, 4.0])
