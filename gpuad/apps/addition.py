"""Task ``addition`` of ``python -m gpuad train``: a small causal transformer
learns multi-digit addition.

A synthetic, character-level task generated in code (nothing to download):
each example is a string such as ``"07+45=250$"`` -- two operands of up to
``digits`` digits, zero padded to ``digits`` characters, then ``=``, the sum
written **reversed** (least significant digit first, ``digits + 1``
characters, so the carry comes out in the order it is computed) and an end
token ``$``. Every example of one ``digits`` has the same length,
``3 * digits + 4`` tokens, so a batch is a plain ``(B, T)`` array of token ids.
The model reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``; the loss is
averaged over the answer positions only (the sum's digits and ``$``).

The model, :class:`AdditionTransformer`, is a GPT-style decoder built from
gpuad ops: token + learned position embeddings, ``n_layers`` blocks of
(LayerNorm -> masked multi-head self-attention with batched ``(B, H, T, T)``
matmuls and a causal mask through :func:`gpuad.nn.masked_softmax` ->
residual; LayerNorm -> GELU MLP -> residual), a final LayerNorm and output
logits tied to the token embedding (``h @ E^T``).

:func:`train_addition` trains it with Adam (AdamW when ``weight_decay`` is
set) and reports the per-step loss and the exact-match accuracy of greedy
decoding on held-out problems.

>>> import gpuad as ad
>>> from gpuad.apps.addition import train_addition
>>> result = train_addition(steps=2, batch_size=8, d_model=16, n_heads=2, digits=1,
...                         eval_size=8, log=None)
>>> len(result["losses"]), 0.0 <= result["accuracy"] <= 1.0
(2, True)
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

import gpuad as ad
from gpuad import nn
from gpuad.nn.initializers import RandomNormal

from .arguments import (UsageError, bounded_int, check_values, device_name,
                        finite_positive_float, positive_int, refuse, seed_int)
from .common import pick_device

__all__ = ["VOCAB", "PLUS", "EQUALS", "END", "PAD", "encode", "decode", "sequence_length",
           "make_batch", "AdditionTransformer", "CausalSelfAttention", "Block",
           "loss_mask", "masked_loss", "greedy_decode", "exact_match_accuracy", "train_addition",
           "train_from_args", "FLAGS", "check_arguments", "run"]

#: the ``train`` flags this task uses, and what each allows (``--digits`` stops at
#: 18: operands are drawn as int64)
FLAGS = {"device": device_name, "steps": positive_int, "batch_size": positive_int,
         "lr": finite_positive_float, "seed": seed_int, "digits": bounded_int(1, 18)}

# -- the vocabulary -----------------------------------------------------------------
VOCAB = "0123456789+=$_"   #: token id i is the character VOCAB[i]
PLUS, EQUALS, END, PAD = 10, 11, 12, 13
_CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)}


def sequence_length(digits: int) -> int:
    """Tokens in one example: ``digits`` + ``+`` + ``digits`` + ``=`` + ``digits + 1`` + ``$``."""
    return 3 * int(digits) + 4


def _prompt_length(digits: int) -> int:
    return 2 * int(digits) + 2


def encode(a: int, b: int, digits: int) -> list:
    """Token ids of the example ``a + b`` (operands zero padded, sum reversed).

    >>> from gpuad.apps.addition import encode, decode
    >>> decode(encode(7, 45, 2))
    '07+45=250$'
    """
    if not (0 <= a < 10 ** digits and 0 <= b < 10 ** digits):
        raise ValueError(f"operands must be in [0, {10 ** digits}), got {a} and {b}")
    s = f"{a:0{digits}d}+{b:0{digits}d}=" + f"{a + b:0{digits + 1}d}"[::-1] + "$"
    return [_CHAR_TO_ID[c] for c in s]


def decode(ids) -> str:
    """The string of a sequence of token ids."""
    return "".join(VOCAB[int(i)] for i in ids)


def make_batch(rng: np.random.Generator, batch_size: int, digits: int):
    """``(tokens, operands)``: an int32 ``(batch_size, sequence_length(digits))``
    array of examples with operands drawn uniformly from ``[0, 10**digits)``
    (so 1-digit numbers appear as often as their share), and the ``(batch_size, 2)``
    operands."""
    ab = rng.integers(0, 10 ** digits, size=(batch_size, 2))
    tokens = np.array([encode(int(a), int(b), digits) for a, b in ab], dtype=np.int32)
    return tokens, ab


def loss_mask(digits: int) -> np.ndarray:
    """float mask over the ``T - 1`` target positions: 1 where the target is an answer token."""
    t = sequence_length(digits)
    m = np.zeros(t - 1, dtype=np.float32)
    m[_prompt_length(digits) - 1:] = 1.0  # targets tokens[P:], i.e. positions P-1 .. T-2
    return m


# -- the model ----------------------------------------------------------------------

class CausalSelfAttention(ad.Module):
    """Multi-head self-attention over ``(B, T, d_model)`` with a causal mask:
    position ``t`` attends to positions ``<= t`` only. Scores are one batched
    matmul ``(B, H, T, Dh) @ (B, H, Dh, T)`` and the weighted sum another."""

    def __init__(self, d_model, n_heads, dtype=ad.float32, name=None):
        super().__init__(name=name)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.d_model, self.n_heads = int(d_model), int(n_heads)
        self.head_dim = self.d_model // self.n_heads
        self.query = nn.Dense(d_model, d_model, dtype=dtype)
        self.key = nn.Dense(d_model, d_model, dtype=dtype)
        self.value = nn.Dense(d_model, d_model, dtype=dtype)
        self.out = nn.Dense(d_model, d_model, dtype=dtype)

    def _heads(self, x, b, t):  # (B, T, D) -> (B, H, T, Dh)
        return ad.transpose(ad.reshape(x, (b, t, self.n_heads, self.head_dim)), (0, 2, 1, 3))

    def __call__(self, x):
        b, t, _ = x.shape
        q = self._heads(self.query(x), b, t)
        k = self._heads(self.key(x), b, t)
        v = self._heads(self.value(x), b, t)
        scores = ad.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_dim))
        probs = nn.masked_softmax(scores, np.tril(np.ones((t, t), dtype=bool)))  # (B,H,T,T)
        y = ad.matmul(probs, v)                                                  # (B,H,T,Dh)
        y = ad.reshape(ad.transpose(y, (0, 2, 1, 3)), (b, t, self.d_model))
        return self.out(y)


class Block(ad.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``
    with a GELU MLP of width ``mlp_ratio * d_model``."""

    def __init__(self, d_model, n_heads, mlp_ratio=4, dtype=ad.float32, name=None):
        super().__init__(name=name)
        self.ln1 = nn.LayerNorm(d_model, dtype=dtype)
        self.attn = CausalSelfAttention(d_model, n_heads, dtype=dtype)
        self.ln2 = nn.LayerNorm(d_model, dtype=dtype)
        self.mlp = nn.Sequential([nn.Dense(d_model, mlp_ratio * d_model, activation="gelu",
                                           dtype=dtype),
                                  nn.Dense(mlp_ratio * d_model, d_model, dtype=dtype)])

    def __call__(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class AdditionTransformer(ad.Module):
    """A small causal (GPT-style) transformer over token ids ``(B, T)`` with
    ``T <= max_len``; returns logits ``(B, T, vocab_size)``. The output layer is
    tied to the token embedding: ``logits = h @ E^T``.

    >>> import gpuad as ad
    >>> from gpuad.apps.addition import AdditionTransformer
    >>> model = AdditionTransformer(d_model=16, n_heads=2, max_len=10)
    >>> model(ad.constant([[1, 10, 2, 11]])).shape
    (1, 4, 14)
    """

    def __init__(self, vocab_size=len(VOCAB), d_model=32, n_heads=2, n_layers=2, max_len=16,
                 mlp_ratio=4, dtype=ad.float32, name=None):
        super().__init__(name=name)
        dtype = ad.as_dtype(dtype)
        self.vocab_size, self.d_model, self.max_len = int(vocab_size), int(d_model), int(max_len)
        init = RandomNormal(stddev=0.02)
        self.token_embedding = nn.Embedding(vocab_size, d_model, embeddings_initializer=init,
                                            dtype=dtype)
        self.position_embedding = ad.Variable(init((max_len, d_model), dtype),
                                           name=f"{self.name}/position_embedding")
        self.blocks = [Block(d_model, n_heads, mlp_ratio, dtype=dtype) for _ in range(n_layers)]
        self.ln_f = nn.LayerNorm(d_model, dtype=dtype)

    def __call__(self, ids):
        ids = ids if ad.is_tensor(ids) else ad.constant(np.asarray(ids, dtype=np.int32))
        if ids.ndim != 2:
            raise ValueError(f"token ids must have shape (batch, time), got {ids.shape}")
        t = ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than max_len={self.max_len}")
        h = self.token_embedding(ids) + self.position_embedding[:t]
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        return ad.matmul(h, self.token_embedding.embeddings, transpose_b=True)  # tied output


# -- loss and evaluation ------------------------------------------------------------

def masked_loss(model, tokens, mask):
    """Mean cross entropy of predicting ``tokens[:, 1:]`` from ``tokens[:, :-1]``
    over the positions where ``mask`` (``(T - 1,)`` floats) is 1."""
    logits = model(tokens[:, :-1])
    per_token = nn.sparse_softmax_cross_entropy_with_logits(tokens[:, 1:], logits)  # (B, T-1)
    m = ad.cast(mask if ad.is_tensor(mask) else ad.constant(np.asarray(mask)), per_token.dtype)
    return ad.reduce_sum(per_token * m) / (ad.reduce_sum(m) * float(tokens.shape[0]))


def greedy_decode(model, prompts: np.ndarray, n_tokens: int) -> np.ndarray:
    """Extend int ``prompts`` ``(B, P)`` by ``n_tokens`` argmax tokens, one
    forward pass per token (no cache); returns the ``(B, n_tokens)`` new ids."""
    seq = np.asarray(prompts, dtype=np.int32)
    for _ in range(n_tokens):
        logits = model(ad.constant(seq))
        nxt = ad.argmax(logits[:, -1, :], axis=-1).numpy().astype(np.int32)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    return seq[:, np.asarray(prompts).shape[1]:]


def exact_match_accuracy(model, tokens: np.ndarray, digits: int) -> float:
    """Fraction of ``tokens``' examples whose whole answer (sum digits and
    ``$``) greedy decoding gets right from the prompt ``"aa+bb="``."""
    p = _prompt_length(digits)
    pred = greedy_decode(model, tokens[:, :p], tokens.shape[1] - p)
    return float(np.mean(np.all(pred == tokens[:, p:], axis=1)))


# -- training -----------------------------------------------------------------------

def train_addition(steps=1000, batch_size=64, lr=3e-3, digits=2, seed=0, device=None,
                   d_model=32, n_heads=2, n_layers=2, weight_decay=None, eval_size=512,
                   log_every=100, log=print) -> dict:
    """Train an :class:`AdditionTransformer` on ``digits``-digit addition.

    Each step draws a fresh batch of ``batch_size`` problems (NumPy generator
    seeded with ``seed``; weights from ``gpuad.random.set_seed(seed)``) and
    takes one Adam step (AdamW when ``weight_decay`` is given). Afterwards,
    ``eval_size`` held-out problems (a separate generator; when the problem
    space is small some may also have appeared in training) are decoded
    greedily. ``device`` is a gpuad device name (None: the current device).
    ``log`` (None: silent) gets a line every ``log_every`` steps and at the end.

    Returns a dict: ``losses`` (one float per step), ``accuracy`` (exact match
    of greedy decoding on the held-out set), ``eval_loss`` (masked loss on it),
    ``steps``, ``seconds`` (training time), ``examples_per_second``,
    ``num_parameters``, ``device``, ``model`` and ``optimizer``.

    >>> from gpuad.apps.addition import train_addition
    >>> r = train_addition(steps=2, batch_size=4, d_model=8, n_heads=2, digits=1,
    ...                    eval_size=4, log=None)
    >>> sorted(r)[:4], len(r["losses"])
    (['accuracy', 'device', 'eval_loss', 'examples_per_second'], 2)
    """
    digits, steps, batch_size = int(digits), int(steps), int(batch_size)
    if digits < 1 or steps < 0 or batch_size < 1:
        raise ValueError("digits and batch_size must be >= 1 and steps >= 0")
    log = log or (lambda *a, **k: None)
    if device is None:
        device = ad.devices.current().name
    with ad.device(device) as dev:
        ad.random.set_seed(seed)
        rng = np.random.default_rng(seed)
        eval_rng = np.random.default_rng(seed + 1_000_003)
        t = sequence_length(digits)
        model = AdditionTransformer(d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                                    max_len=t - 1)
        opt = (ad.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
               if weight_decay else ad.optimizers.Adam(learning_rate=lr))
        params = model.trainable_variables
        n_params = int(sum(int(np.prod(v.shape)) for v in params))
        mask = ad.constant(loss_mask(digits))
        log(f"addition: {digits}-digit operands, {n_params} parameters, device {dev.name}")

        losses = []
        start = time.perf_counter()
        for step in range(1, steps + 1):
            tokens, _ = make_batch(rng, batch_size, digits)
            x = ad.constant(tokens)
            with ad.GradientTape() as tape:
                loss = masked_loss(model, x, mask)
            grads = tape.gradient(loss, params)
            opt.apply_gradients(zip(grads, params))
            losses.append(float(loss))
            if log_every and (step % log_every == 0 or step == steps):
                recent = losses[-log_every:]
                log(f"step {step}/{steps}  loss {sum(recent) / len(recent):.4f}")
        seconds = time.perf_counter() - start

        eval_tokens, _ = make_batch(eval_rng, int(eval_size), digits)
        eval_loss = float(masked_loss(model, ad.constant(eval_tokens), mask))
        accuracy = exact_match_accuracy(model, eval_tokens, digits)
        log(f"held-out: loss {eval_loss:.4f}  exact match {accuracy:.3f} "
            f"({len(eval_tokens)} problems)")
    return {"losses": losses, "accuracy": accuracy, "eval_loss": eval_loss, "steps": steps,
            "seconds": seconds,
            "examples_per_second": steps * batch_size / seconds if seconds > 0 else float("nan"),
            "num_parameters": n_params, "device": dev.name, "model": model, "optimizer": opt}


def train_from_args(args) -> dict:
    """:func:`train_addition` from an ``argparse.Namespace``: uses ``args.steps``,
    ``args.batch_size``, ``args.lr``, ``args.digits``, ``args.seed``, ``args.device``
    (and the model's sizes, ``eval_size``, ``log_every``) where present and not
    ``None``, the defaults otherwise. Returns :func:`train_addition`'s dict."""
    kwargs = {}
    for name in ("steps", "batch_size", "lr", "digits", "seed", "device", "d_model", "n_heads",
                 "n_layers", "weight_decay", "eval_size", "log_every"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    if "device" in kwargs:
        kwargs["device"] = pick_device(kwargs["device"])
    return train_addition(**kwargs)


def check_arguments(args) -> None:
    """Raise :class:`~gpuad.apps.arguments.UsageError` for a value :data:`FLAGS`
    does not allow."""
    check_values(args, FLAGS)


def run(args) -> int:
    """``python -m gpuad train --task addition``: train, then report the final
    loss and the exact-match accuracy on held-out problems. Exit status: 0; 1 when
    the loss stopped being finite; 2, before anything runs, for a value
    :data:`FLAGS` does not allow."""
    try:
        check_arguments(args)
    except UsageError as e:
        return refuse(e, "python -m gpuad train")
    result = train_from_args(args)
    losses = result["losses"]
    tail = losses[-20:]
    bad = next((i for i, x in enumerate(losses, 1) if not math.isfinite(x)), None)
    if bad is not None or not math.isfinite(result["eval_loss"]):
        where = f"at step {bad}/{result['steps']}" if bad is not None else "on the held-out problems"
        print(f"error: training diverged: the loss is not finite {where} "
              f"(try a smaller --lr)", file=sys.stderr)
        return 1
    print(f"loss {losses[0]:.4f} -> {sum(tail) / len(tail):.4f} (mean of the last {len(tail)} "
          f"steps); exact-match accuracy {result['accuracy']:.3f} on held-out problems "
          f"({result['steps']} steps, {result['seconds']:.1f} s on {result['device']})")
    return 0
