"""Checkpoints: ``gpuad.save`` and ``gpuad.load`` in the safetensors format.

``save(path, obj)`` writes every variable of ``obj`` under a stable key:

* a :class:`gpuad.Module`: its ``variables``, keyed by attribute path
  (``layers.0.kernel``, see ``Module.named_variables``);
* a dict of name -> Variable / Tensor / Module / dict / list: nested keys
  joined with ``.`` (``{"model": m, "optimizer": opt}`` -> ``model.layers.0.kernel``,
  ``optimizer.momentum.0``);
* an object with ``named_variables()`` (a gpuad optimizer: ``iteration``,
  ``learning_rate``, ``<slot kind>.<i>`` by the position of the variable the
  slot belongs to, so the keys survive rebuilding the model);
* any other object with a ``variables`` list: keyed by each variable's
  ``name`` (without TensorFlow's ``:0``), which must be unique.

The file is written atomically: a temporary file in the same directory is
written, flushed and fsynced, then renamed over ``path`` with ``os.replace``;
if anything fails on the way, the previous file is untouched and the
temporary file is removed. A CRC-32 of every tensor is stored in the file's
metadata, so corrupted data bytes are detected too (safetensors itself only
checks the header).

``load(path)`` returns ``{key: Tensor}`` on the current device.
``load(path, into=obj)`` restores ``obj`` (anything ``save`` takes; its leaves
must be Variables) in two phases: it first checks the whole file -- integrity,
every expected key present, no unexpected keys (unless ``strict=False``), each
shape and dtype -- and copies the values to each variable's device; only when
all of that succeeded does it assign. Any problem raises
:class:`CheckpointError` naming the file, the key(s), what was expected and
what was found, and how to fix it, and leaves every variable unchanged.

>>> import os, tempfile
>>> import gpuad as ad
>>> model = ad.nn.Sequential([ad.nn.Dense(3, 2)])
>>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
>>> ad.save(path, model)
>>> sorted(ad.load(path))
['layers.0.bias', 'layers.0.kernel']
>>> fresh = ad.nn.Sequential([ad.nn.Dense(3, 2)])
>>> _ = ad.load(path, into=fresh)
>>> bool(ad.reduce_all(fresh.layers[0].kernel == model.layers[0].kernel))
True
>>> _ = ad.load(path, into=ad.nn.Sequential([ad.nn.Dense(4, 2)]))
Traceback (most recent call last):
...
gpuad.io.CheckpointError: ...shape mismatch...
"""
from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np

from .ops.core import bind
from .ops.state import ASSIGN
from .tensor import Tensor, Variable, convert_to_tensor, locked

__all__ = ["save", "load", "CheckpointError"]

_CRC_KEY = "gpuad.crc32"
_CHUNK = 1 << 24  # bytes per write() call


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit its target: a truncated or
    corrupted file, a missing or unexpected key, a shape or dtype mismatch.
    ``path`` is the file; ``problems`` lists each problem found. A ``ValueError``."""

    def __init__(self, message: str, path=None, problems=()):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.problems = list(problems)


# -- flattening: object -> {key: Variable or Tensor} -----------------------------------

def _strip_tf_suffix(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _flatten(obj, prefix: str, out: dict, what: str, seen: set) -> None:
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    if isinstance(obj, (Variable, Tensor, np.ndarray, np.generic)):
        if not prefix:
            raise TypeError(f"gpuad.{what}: a single tensor needs a name; pass "
                            f"{{'name': tensor}} instead.")
        _put(out, prefix, obj, what)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"gpuad.{what}: dict keys must be strings, got {k!r}.")
            _flatten(v, join(k), out, what, seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, join(i), out, what, seen)
    elif callable(getattr(obj, "named_variables", None)) or hasattr(obj, "variables"):
        for key, var in _keyed_variables(obj, what):
            if id(var) not in seen:  # a variable shared by two parts is saved once
                seen.add(id(var))
                _put(out, join(key), var, what)
    else:
        raise TypeError(f"gpuad.{what} takes a Module, a dict of name -> Variable/Tensor (nested "
                        f"dicts, lists and Modules allowed) or an object with a `variables` "
                        f"list; got {type(obj).__name__} at {prefix or 'the top level'!r}.")


def _keyed_variables(obj, what: str) -> list:
    """``(key, Variable)`` pairs of a Module or optimizer (its ``named_variables()``:
    attribute paths, or roles and positions) or of any object with ``variables``
    (keyed by each variable's unique name)."""
    if callable(getattr(obj, "named_variables", None)):
        pairs, source = list(obj.named_variables()), "named_variables()"
    else:
        variables = obj.variables() if callable(obj.variables) else obj.variables
        pairs, source = [(None, v) for v in variables], "variables"
    names = {}
    for i, (key, var) in enumerate(pairs):
        if not isinstance(var, Variable):
            raise TypeError(f"gpuad.{what}: {type(obj).__name__}.{source} holds "
                            f"{type(var).__name__}, not gpuad.Variable.")
        if key is None:
            key = _strip_tf_suffix(var.name)
            if key in names and names[key] is not var:
                raise ValueError(f"gpuad.{what}: two variables of {type(obj).__name__} share the "
                                 f"name {var.name!r}; checkpoint keys come from variable names, "
                                 f"so give them unique names.")
            names[key] = var
            pairs[i] = (key, var)
    return pairs


def _put(out: dict, key: str, value, what: str) -> None:
    if key in out:
        raise ValueError(f"gpuad.{what}: the key {key!r} occurs twice; rename one of the entries.")
    out[key] = value


def flatten(obj, what="save") -> dict:
    """``{key: Variable/Tensor}`` for ``obj``, with the keys :func:`save` writes."""
    out: dict = {}
    _flatten(obj, "", out, what, set())
    return out


# -- save ------------------------------------------------------------------------------

def _host(value) -> np.ndarray:
    arr = np.asarray(value)  # Tensors through __array__, keeping 0-d shapes
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _snapshot(entries: dict) -> dict:
    """The values of ``{key: Variable or Tensor}`` all from one moment: every
    variable is read while all of them are locked, so no optimizer step (which
    holds the locks of all it updates) is seen half done. The reads are Tensors
    (no copies); the transfers to the host happen after the locks are let go."""
    variables = [v for v in entries.values() if isinstance(v, Variable)]
    with locked(variables):
        return {key: v._lend_locked() if isinstance(v, Variable) else v
                for key, v in entries.items()}


def _crc(a: np.ndarray) -> str:
    """The CRC-32 of an array's bytes, as 8 hex digits."""
    return format(zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8)), "08x")


def _write_all(f, data) -> None:
    """Write ``data`` to the open file ``f`` (in chunks)."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        f.write(view[start:start + _CHUNK])


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows): best effort
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, data) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"gpuad.save: the directory {directory!r} for {path!r} does not "
                                f"exist; create it first (os.makedirs).")
    base = os.path.basename(path)
    tmp = None
    for attempt in range(100):
        candidate = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            # O_EXCL: never clobber another writer's file; 0o666 honours the umask
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        tmp = candidate
        break
    if tmp is None:
        raise OSError(f"gpuad.save: could not create a temporary file in {directory!r}.")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)  # keep the old file's mode
            except OSError:
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def save(path, obj) -> None:
    """Write the variables of ``obj`` (a Module, a dict of name -> Variable/Tensor,
    or an object with ``variables``) to ``path`` as a safetensors file,
    atomically. See the module docstring for the keys.

    >>> import os, tempfile
    >>> import gpuad as ad
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> ad.save(path, {"w": ad.Variable([1.0, 2.0]), "opt": {"step": ad.constant(3)}})
    >>> {k: v.numpy().tolist() for k, v in ad.load(path).items()}
    {'opt.step': 3, 'w': [1.0, 2.0]}
    """
    import safetensors.numpy

    path = os.fspath(path)
    arrays = {key: _host(value) for key, value in _snapshot(flatten(obj, "save")).items()}
    crcs = {key: _crc(a) for key, a in arrays.items()}
    from . import __version__
    metadata = {"format": "gpuad", "gpuad.version": __version__,
                _CRC_KEY: json.dumps(crcs, sort_keys=True)}
    data = safetensors.numpy.save(arrays, metadata=metadata)
    _atomic_write(path, data)


# -- load ------------------------------------------------------------------------------

def _corrupt(path, detail) -> CheckpointError:
    return CheckpointError(
        f"gpuad.load: {path!r} is not a valid safetensors checkpoint (truncated or corrupted): "
        f"{detail}. Nothing was loaded. Re-save the checkpoint, or restore the file from a "
        f"backup (gpuad.save writes atomically, so an interrupted save never leaves a partial "
        f"file behind).", path, [detail])


def _read(path):
    """``(arrays, metadata)`` from the file, with every integrity check done."""
    import safetensors.numpy

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"gpuad.load: no checkpoint at {path!r}; check the path "
                                f"(gpuad.save(path, obj) writes one).") from None
    if len(data) < 8:
        raise _corrupt(path, f"the file has {len(data)} bytes, fewer than the 8-byte header "
                             f"length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise _corrupt(path, f"the header says it is {n} bytes long but only {len(data) - 8} "
                             f"bytes follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise _corrupt(path, f"the header is not valid JSON ({e})") from None
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # safetensors' SafetensorError, or NumPy's on an unknown dtype
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    # safetensors checks that the offsets tile the data region; check it ends there too
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if 8 + n + max(ends, default=0) != len(data):
        raise _corrupt(path, f"the file is {len(data)} bytes, but its header describes "
                             f"{8 + n + max(ends, default=0)}")
    metadata = header.get("__metadata__") or {}
    if _CRC_KEY in metadata:
        try:
            crcs = json.loads(metadata[_CRC_KEY])
        except ValueError as e:
            raise _corrupt(path, f"the checksum table in the metadata is not valid JSON ({e})") \
                from None
        if set(crcs) != set(arrays):
            raise _corrupt(path, "the checksum table does not list the same tensors as the header")
        for key, a in arrays.items():
            found = _crc(a)
            if found != crcs[key]:
                raise _corrupt(path, f"the data of tensor {key!r} fails its CRC-32 check "
                                     f"(stored {crcs[key]}, computed {found})")
    return arrays, metadata


def load(path, into=None, strict=True):
    """Read a checkpoint written by :func:`save`.

    Without ``into``: a dict ``{key: Tensor}`` on the current device, in sorted key order.
    With ``into`` (a Module, a dict of name -> Variable, or an object with
    ``variables``): validate everything, then assign every value into its
    Variable (on that variable's device) and return ``into``. Keys in the file
    that ``into`` lacks are an error unless ``strict=False``; a key ``into``
    expects but the file lacks is always an error. On any error nothing is
    assigned.

    >>> import os, tempfile
    >>> import gpuad as ad
    >>> path = os.path.join(tempfile.mkdtemp(), "v.safetensors")
    >>> ad.save(path, {"v": ad.Variable([1.0, 2.0])})
    >>> target = {"v": ad.Variable([0.0, 0.0])}
    >>> ad.load(path, into=target)["v"].numpy()
    array([1., 2.], dtype=float32)
    """
    path = os.fspath(path)
    arrays, _ = _read(path)
    if into is None:
        from . import devices as _devices
        dev = _devices.current()
        return {key: convert_to_tensor(arrays[key], device=dev) for key in sorted(arrays)}

    targets = flatten(into, "load")
    problems = []
    for key, target in targets.items():
        if not isinstance(target, Variable):
            problems.append(f"{key!r}: the target is a {type(target).__name__}, which cannot be "
                            f"assigned; pass gpuad.Variables in `into`")
            continue
        if key not in arrays:
            problems.append(f"missing key {key!r}: expected a {target.dtype.name} tensor of shape "
                            f"{target.shape}, but the file has no such key")
            continue
        a = arrays[key]
        if tuple(a.shape) != tuple(target.shape):
            problems.append(f"shape mismatch for {key!r}: the variable has shape "
                            f"{tuple(target.shape)}, the file has {tuple(a.shape)}")
        if a.dtype != target.dtype.numpy:
            problems.append(f"dtype mismatch for {key!r}: the variable is "
                            f"{target.dtype.name}, the file has {a.dtype.name}")
    unexpected = sorted(k for k in arrays if k not in targets)
    if strict and unexpected:
        problems.extend(f"unexpected key {k!r} ({arrays[k].dtype.name}, shape "
                        f"{tuple(arrays[k].shape)}): the target has no variable for it"
                        for k in unexpected)
    if problems:
        fixes = []
        if any(p.startswith("missing") or p.startswith("unexpected") for p in problems):
            fixes.append("build the target with the same structure as the saved object (same "
                         "layers, same attribute names, dict keys and prefixes)")
        if unexpected and strict:
            fixes.append("pass strict=False to ignore keys the target does not have")
        if any("mismatch" in p for p in problems):
            fixes.append("build the target with the same sizes and dtypes as the saved model")
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CheckpointError(
            f"gpuad.load: the checkpoint {path!r} does not fit the target "
            f"({type(into).__name__}); nothing was assigned. {len(problems)} problem(s):\n  "
            + "\n  ".join(shown) + "\nFix: " + "; ".join(fixes) + ".", path, problems)

    # Phase 2: every value onto its variable's device (may run out of memory: still
    # nothing assigned), then one assignment of all of them, which cannot fail
    # half way (Ctrl-C is held back until it is over).
    variables = list(targets.values())
    values = [convert_to_tensor(arrays[key], device=var._device) for key, var in targets.items()]
    bind(ASSIGN, tuple(values), variables=tuple(variables))
    return into
