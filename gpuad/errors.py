"""The exception types gpuad raises beyond Python's own."""

__all__ = ["InvalidArgumentError", "OutOfMemoryError", "KernelCompileError", "KernelLaunchError",
           "GraphCaptureError"]


class InvalidArgumentError(ValueError):
    """An op got arguments it cannot compute with: mismatched dtypes, shapes,
    devices, or a bad axis. Like TensorFlow's error of the same name; a
    ``ValueError`` so ``except ValueError`` catches it too.

    The message names the op as ``[Op:name]`` at its end.
    """

    def __init__(self, message: str, op: str | None = None):
        self.op = op
        super().__init__(f"{message} [Op:{op}]" if op else message)


class OutOfMemoryError(MemoryError):
    """A device ran out of memory, even after gpuad released the memory pool's
    cached (unused) blocks and tried again. A ``MemoryError``, so ``except
    MemoryError`` catches it too; tensors that existed before stay intact.

    ``requested`` is the number of bytes asked for, ``pool_used`` and
    ``pool_total`` the memory pool's bytes in use and reserved when it failed,
    ``device`` the device's name.

    >>> import gpuad as ad
    >>> e = ad.OutOfMemoryError("out of memory on cuda:0", requested=1 << 30, device="cuda:0")
    >>> isinstance(e, MemoryError), e.requested
    (True, 1073741824)
    """

    def __init__(self, message: str, requested: int | None = None, pool_used: int | None = None,
                 pool_total: int | None = None, device: str | None = None):
        super().__init__(message)
        self.requested = requested
        self.pool_used = pool_used
        self.pool_total = pool_total
        self.device = device


class KernelCompileError(RuntimeError):
    """The CUDA kernel sources (``kernels/*.cu``) did not compile for a device.
    The message shows the kernel that was being launched, the source file(s)
    and the compiler's log; ``kernel``, ``files`` and ``log`` hold them.

    >>> from gpuad.errors import KernelCompileError
    >>> e = KernelCompileError("kernels did not compile", kernel="binary_add_f32_contig",
    ...                        files=["binary.cu"], log="error: ...")
    >>> e.kernel, e.files
    ('binary_add_f32_contig', ['binary.cu'])
    """

    def __init__(self, message: str, kernel: str | None = None, files=None, log: str | None = None):
        super().__init__(message)
        self.kernel = kernel
        self.files = list(files) if files is not None else []
        self.log = log


class KernelLaunchError(RuntimeError):
    """A kernel could not be launched or failed while it ran: an unknown kernel
    name, a bad launch configuration, or a fault that the device reported. The
    message names the kernel and, where known, the op that launched it
    (``kernel``, ``op``). On ``cuda``, kernels run asynchronously: set
    ``GPUAD_SYNC=1`` so that a fault is reported by the launch that caused it.

    >>> from gpuad.errors import KernelLaunchError
    >>> str(KernelLaunchError("kernel binary_add_f32_contig (op add) failed: ...",
    ...                       kernel="binary_add_f32_contig", op="add"))
    'kernel binary_add_f32_contig (op add) failed: ...'
    """

    def __init__(self, message: str, kernel: str | None = None, op: str | None = None):
        super().__init__(message)
        self.kernel = kernel
        self.op = op


class GraphCaptureError(RuntimeError):
    """Work queued while a device graph was being recorded needed the host (a
    transfer or a wait), which a graph cannot replay. ``gpuad.function`` catches
    it and runs that part of its plan without a graph."""


#: The environment variable that turns on index checks on kernel devices (read when
#: the device is created): see :func:`index_checks_enabled`.
CHECK_INDICES_ENV = "GPUAD_CHECK_INDICES"


def index_checks_enabled(environ=None) -> bool:
    """Whether ``GPUAD_CHECK_INDICES`` asks kernel devices (``cuda``, ``emulated``) to
    check gather / Embedding indices and sparse labels (``1``, ``true``, ``yes``, ``on``)."""
    import os
    value = (os.environ if environ is None else environ).get(CHECK_INDICES_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def index_error(op: str, indices, n: int, *, axis=None, shape=None) -> InvalidArgumentError:
    """The error for ``indices`` (a NumPy array holding at least one value outside
    ``[0, n)``) of ``op``: ``gather`` (and Embedding lookups) names the first bad
    position and value as TensorFlow's CPU kernel does (``indices[1] = 5 is not in
    [0, 3)``); ``sparse_softmax_cross_entropy_with_logits`` the label value and the
    labels (``Received a label value of 5 which is outside the valid range of [0, 3).``)."""
    import numpy as np
    indices = np.asarray(indices)
    bad_mask = (indices < 0) | (indices >= n)
    pos = tuple(int(i) for i in np.argwhere(bad_mask)[0])
    bad = int(indices[pos])
    where = ",".join(str(i) for i in pos)
    nbad = int(np.count_nonzero(bad_mask))
    more = f" ({nbad} of the {indices.size} values are out of range)" if nbad > 1 else ""
    if op == "sparse_softmax_cross_entropy_with_logits":
        shown = " ".join(str(int(v)) for v in indices.reshape(-1)[:20])
        if indices.size > 20:
            shown += " ..."
        return InvalidArgumentError(
            f"Received a label value of {bad} which is outside the valid range of [0, {n}). "
            f"Label values: {shown}{more}. Labels must be class indices in [0, num_classes) "
            f"with num_classes = logits.shape[-1] = {n}: fix the labels (or give the logits "
            f"one column per class).", op)
    what = f" along axis {axis} of a tensor of shape {tuple(shape)}" if shape is not None else ""
    return InvalidArgumentError(
        f"indices[{where}] = {bad} is not in [0, {n}){more}: {op}{what} needs every index in "
        f"[0, {n}). Fix the indices (an Embedding needs input_dim > the largest id).", op)
