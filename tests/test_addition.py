"""The addition task (gpuad/apps/addition.py): data, the causal transformer,
its gradients, and that training lowers the loss."""
import numpy as np
import pytest

import gpuad as ad
from gpuad.apps import addition as ta


def test_encoding_and_loss_mask_cover_the_answer_only():
    assert ta.decode(ta.encode(7, 45, 2)) == "07+45=250$"
    assert ta.decode(ta.encode(99, 99, 2)) == "99+99=891$"
    assert len(ta.encode(0, 0, 3)) == ta.sequence_length(3)
    tokens, ab = ta.make_batch(np.random.default_rng(0), 16, 2)
    assert tokens.shape == (16, ta.sequence_length(2)) and tokens.dtype == np.int32
    mask = ta.loss_mask(2)
    for row, (a, b) in zip(tokens, ab):
        targets = ta.decode(row[1:][mask == 1])
        assert targets == f"{a + b:03d}"[::-1] + "$"
        assert int(targets[:-1][::-1]) == a + b
    with pytest.raises(ValueError):
        ta.encode(100, 1, 2)


def test_forward_shapes_and_tied_output(device):
    ad.random.set_seed(0)
    model = ta.AdditionTransformer(d_model=16, n_heads=2, n_layers=2, max_len=9)
    ids = ad.constant(ta.make_batch(np.random.default_rng(1), 3, 2)[0][:, :-1])
    logits = model(ids)
    assert logits.shape == (3, 9, len(ta.VOCAB))
    assert logits.device == ad.devices.current().name
    names = [p for p, _ in model.named_variables()]
    # the output layer is the token embedding: no separate output weight
    assert "token_embedding.embeddings" in names and "position_embedding" in names
    assert not any("head" in n or "output" in n for n in names)
    assert sum(n.startswith("blocks.0.") for n in names) == 16  # 2 LN x 2 + 6 Dense x 2
    with ad.GradientTape() as tape:
        loss = ta.masked_loss(model, ad.constant(ta.make_batch(np.random.default_rng(2), 4, 2)[0]),
                              ad.constant(ta.loss_mask(2)))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and g.shape == v.shape
               for g, v in zip(grads, model.trainable_variables))
    assert np.isfinite(float(loss)) and abs(float(loss) - np.log(len(ta.VOCAB))) < 0.5
    with pytest.raises(ValueError, match="max_len"):
        model(ad.zeros((1, 10), dtype=ad.int32))


def test_causal_mask_future_tokens_do_not_change_earlier_logits(device):
    ad.random.set_seed(3)
    model = ta.AdditionTransformer(d_model=16, n_heads=2, max_len=12)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(ta.VOCAB), size=(2, 12)).astype(np.int32)
    base = model(ad.constant(ids)).numpy()
    for k in (0, 5, 11):
        changed = ids.copy()
        changed[:, k] = (changed[:, k] + 1 + rng.integers(0, 5)) % len(ta.VOCAB)
        out = model(ad.constant(changed)).numpy()
        np.testing.assert_allclose(out[:, :k], base[:, :k], rtol=1e-5, atol=1e-6)
        assert np.abs(out[:, k:] - base[:, k:]).max() > 1e-4  # the change does reach position k


def _loss_fn(block, x, w):
    return ad.reduce_sum(block(x) * w)


def test_attention_block_gradients_match_finite_differences():
    with ad.device("cpu"):
        ad.random.set_seed(4)
        block = ta.Block(8, n_heads=2, mlp_ratio=2, dtype=ad.float64)
        rng = np.random.default_rng(0)
        x_np = rng.normal(size=(2, 5, 8))
        w = ad.constant(rng.normal(size=(2, 5, 8)))
        for v in block.trainable_variables:  # break the symmetry of zero biases / unit gammas
            v.assign(v.numpy() + 0.1 * rng.normal(size=v.shape))
        x = ad.constant(x_np)
        targets = [block.attn.query.kernel, block.attn.key.kernel, block.attn.value.bias,
                   block.ln1.gamma, block.mlp.layers[0].kernel]
        with ad.GradientTape() as tape:
            tape.watch(x)
            loss = _loss_fn(block, x, w)
        grads = tape.gradient(loss, [x] + targets)

        eps = 1e-6

        def numeric(get, put, idx):
            orig = get()
            plus, minus = orig.copy(), orig.copy()
            plus[idx] += eps
            minus[idx] -= eps
            put(plus)
            fp = float(_loss_fn(block, ad.constant(xs[0]), w))
            put(minus)
            fm = float(_loss_fn(block, ad.constant(xs[0]), w))
            put(orig)
            return (fp - fm) / (2 * eps)

        xs = [x_np.copy()]

        def put_x(a):
            xs[0] = a

        for idx in [(0, 0, 0), (1, 4, 7), (0, 2, 3), (1, 0, 5)]:
            num = numeric(lambda: xs[0].copy(), put_x, idx)
            assert abs(grads[0].numpy()[idx] - num) < 1e-6 * max(1.0, abs(num)), idx
        for var, g in zip(targets, grads[1:]):
            flat = rng.choice(int(np.prod(var.shape)), size=4, replace=False)
            for f in flat:
                idx = np.unravel_index(f, var.shape)
                num = numeric(lambda: var.numpy().copy(), var.assign, idx)
                assert abs(g.numpy()[idx] - num) < 1e-6 * max(1.0, abs(num)), (var.name, idx)


@pytest.mark.slow
def test_training_loss_falls_on_cpu():
    r = ta.train_addition(steps=200, batch_size=32, lr=3e-3, digits=2, d_model=32, n_heads=2,
                          seed=0, device="cpu", eval_size=64, log=None)
    losses = r["losses"]
    assert len(losses) == 200 and all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20]), (losses[:20], losses[-20:])
    assert r["device"] == "cpu" and 0.0 <= r["accuracy"] <= 1.0
    assert r["eval_loss"] < np.mean(losses[:20])


def test_train_from_args_reads_an_argparse_namespace():
    import argparse
    args = argparse.Namespace(steps=1, batch_size=4, lr=1e-3, digits=1, seed=1, device="cpu",
                              eval_size=4, log_every=0)
    r = ta.train_from_args(args)
    assert r["steps"] == 1 and len(r["losses"]) == 1


def test_cli_trains_the_addition_task():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "gpuad", "train", "--task", "addition",
                           "--steps", "40", "--batch-size", "16", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "exact-match accuracy" in proc.stdout
