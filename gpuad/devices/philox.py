"""Philox-4x32-10, the counter-based generator behind gpuad.random, in NumPy.

Counter-based means the value of element ``k`` depends only on (key, counter
offset, k), never on how the work is split into threads or launches, so the
CPU and the CUDA kernels in ``kernels/`` produce the same numbers.

Layout (shared with the CUDA kernels): an element that needs ``w`` 32-bit words
takes words ``k*w .. k*w+w-1`` of the stream, where word ``j`` is lane ``j % 4``
of the Philox block whose counter is ``(j // 4 + offset)`` split into 64-bit
lo/hi halves as ``(lo32, hi32, 0, 0)``, and the key is ``(seed lo32, seed hi32)``.
"""
import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox_words(count: int, key: int, offset: int) -> np.ndarray:
    """``count`` uint32 words of the stream for 64-bit ``key`` from block ``offset``."""
    blocks = (count + 3) // 4
    j = np.arange(offset, offset + blocks, dtype=np.uint64)
    c0, c1 = j & _MASK, j >> _SHIFT
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT) ^ c1 ^ np.uint64(k0), p1 & _MASK,
                          (p0 >> _SHIFT) ^ c3 ^ np.uint64(k1), p0 & _MASK)
        k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
    return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:count].astype(np.uint32)


def words_per_element(op: str, dtype: np.dtype) -> int:
    """How many stream words one element of ``op`` in ``dtype`` consumes."""
    per_uniform = 1 if dtype == np.float32 else 2
    return per_uniform * (2 if op == "random_normal" else 1)


def _uniforms(words: np.ndarray, dtype) -> np.ndarray:
    """Words -> uniforms in [0, 1): 24 bits for float32, 53 bits (two words) for float64."""
    if dtype == np.float32:
        return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
    hi = (words[0::2] >> np.uint32(5)).astype(np.float64)
    lo = (words[1::2] >> np.uint32(6)).astype(np.float64)
    return (hi * 67108864.0 + lo) * 2.0 ** -53


#: Elements generated per step by :func:`sample_into`: the temporaries of a step (about
#: 13 times its output's bytes) stay a few MiB whatever the request.
CHUNK = 1 << 16


def sample_into(out: np.ndarray, op: str, key: int, offset: int, chunk: int = CHUNK) -> np.ndarray:
    """Fill the contiguous 1-d array ``out`` with ``out.size`` samples of ``op`` in
    ``out.dtype``: the numbers of :func:`sample`, bit for bit, generated ``chunk``
    elements at a time (a multiple of the elements per Philox block, so a chunk
    starts on a block: element ``k`` depends only on (key, offset, k)). Peak memory
    is ``out`` plus one chunk's temporaries."""
    dtype = out.dtype
    n = out.size
    per_block = 4 // words_per_element(op, dtype)
    chunk = max(per_block, chunk - chunk % per_block)
    words = words_per_element(op, dtype)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        out[start:start + m] = sample(op, m, dtype, key, offset + start * words // 4)
    return out


def sample(op: str, n: int, dtype, key: int, offset: int) -> np.ndarray:
    """``n`` samples of ``op`` (``"random_uniform"`` in [0, 1) or standard ``"random_normal"``)
    in ``dtype``, in one step (temporaries about 13 times the result's bytes: see
    :func:`sample_into` for large requests)."""
    dtype = np.dtype(dtype)
    w = words_per_element(op, dtype)
    u = _uniforms(philox_words(n * w, key, offset), dtype)
    if op == "random_uniform":
        return u
    # Box-Muller on consecutive pairs; 1 - u1 lies in (0, 1] so the log is finite.
    u1, u2 = u[0::2], u[1::2]
    one, two_pi = dtype.type(1), dtype.type(2 * np.pi)
    return (np.sqrt(dtype.type(-2) * np.log(one - u1)) * np.cos(two_pi * u2)).astype(dtype)
