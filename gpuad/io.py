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
temporary file is removed. The target's permissions are respected, for every
user alike (root too): a read-only file (no write bit, or not writable by this
user), a path that is a directory, or a read-only directory is an error naming
the path and the fix, before anything is written; a symbolic link is followed.
Every error names the user's path, never the temporary file. Only the dtypes
gpuad holds are saved (float32, float64, int32, int64, bool). A CRC-32 of every tensor is stored in the file's
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

import errno
import json
import os
import stat
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
    corrupted file, a tensor of a dtype gpuad does not hold, a missing or
    unexpected key, a shape or dtype mismatch, optimizer state the target
    optimizer cannot take (not built, or configured differently).
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


def _read_only(st) -> bool:
    """Whether a file or directory's permission bits deny writing: no write bit
    at all (``chmod a-w``). Checked for every user alike -- root too, whom the
    operating system would let write -- so a read-only file is never replaced."""
    return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _check_writable(path: str, directory: str) -> None:
    """Refuse, before anything is written, a save the target's permissions do not allow:
    ``path`` a directory, a read-only file, or a directory that cannot take new files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OSError(e.errno, f"gpuad.save: cannot inspect the checkpoint path {path!r} "
                               f"({e.strerror}); nothing was written. Check the path.") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR,
                f"gpuad.save: {path!r} is a directory, not a file; nothing was written. Give a "
                f"file path, e.g. {os.path.join(path, 'model.safetensors')!r}.", path)
        if _read_only(st) or not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES,
                f"gpuad.save: {path!r} is read-only (mode {stat.filemode(st.st_mode)}); it was not "
                f"overwritten and is unchanged. Make it writable (os.chmod(path, 0o644) or "
                f"`chmod u+w`) or save to another path.", path)
    dst = os.stat(directory)
    if _read_only(dst) or not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES,
            f"gpuad.save: cannot write {path!r}: its directory {directory!r} is read-only (mode "
            f"{stat.filemode(dst.st_mode)}); nothing was written. Make the directory writable "
            f"(`chmod u+w`) or save to another directory.", path)


def _failed(path: str, e: OSError) -> OSError:
    """``e`` (an OSError about the temporary file) retold about the user's ``path``."""
    msg = (f"gpuad.save: writing {path!r} failed: {e.strerror or e}; the previous file (if any) "
           f"is unchanged and no temporary file is left. Check the path, its permissions and the "
           f"free disk space.")
    # OSError(errno, ...) makes the subclass of that errno (PermissionError, ...)
    return OSError(e.errno, msg, path) if e.errno is not None else OSError(msg)


def _atomic_write(path: str, data) -> None:
    # a symbolic link: write the file it points to (as open(path, "wb") would),
    # rather than replacing the link with a file and leaving its target stale
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"gpuad.save: the directory {directory!r} for {path!r} does not "
                                f"exist; create it first (os.makedirs).")
    _check_writable(path, directory)
    base = os.path.basename(target)
    tmp = None
    for attempt in range(100):
        candidate = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            # O_EXCL: never clobber another writer's file; 0o666 honours the umask
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise _failed(path, e) from None
        tmp = candidate
        break
    if tmp is None:
        raise OSError(f"gpuad.save: could not create a temporary file in {directory!r} to write "
                      f"{path!r}; nothing was written. Remove stale .{base}.*.tmp files there.")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(target):
            try:
                os.chmod(tmp, os.stat(target).st_mode & 0o7777)  # keep the old file's mode
            except OSError:
                pass
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):  # it may name the temporary file, never the user's path
            raise _failed(path, e) from None
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
    bad = sorted((k, a.dtype) for k, a in arrays.items() if a.dtype not in _HELD_NUMPY)
    if bad:  # a file gpuad.load would refuse: refuse it now, before anything is written
        listed = ", ".join(f"{k!r} ({d})" for k, d in bad[:20]) + (
            f", ... ({len(bad)} in all)" if len(bad) > 20 else "")
        raise TypeError(f"gpuad.save: cannot save {listed} to {path!r}: gpuad checkpoints hold "
                        f"float32, float64, int32, int64 and bool tensors only (float16, uint8, "
                        f"int8 and int16 are not supported yet); nothing was written. Cast them "
                        f"first, e.g. gpuad.cast(t, gpuad.float32).")
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


# the safetensors dtype codes of the dtypes gpuad holds, and the gpuad names
_HELD = {"F32": "float32", "F64": "float64", "I32": "int32", "I64": "int64", "BOOL": "bool"}
_HELD_NUMPY = {np.dtype(name) for name in _HELD.values()}
# safetensors' other dtype codes: a well-formed file gpuad cannot hold (any other
# code is a corrupted header, reported as such)
_NOT_HELD = {"F16", "BF16", "U8", "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
             "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"}


def _check_dtypes(path, header: dict) -> None:
    """Refuse a file holding a tensor of a dtype gpuad does not hold (F16, BF16,
    U8, I8, I16, F8_*, ...): it would load, and then every op on it would fail."""
    bad = [(k, v.get("dtype")) for k, v in sorted(header.items())
           if k != "__metadata__" and isinstance(v, dict) and v.get("dtype") in _NOT_HELD]
    if not bad:
        return
    problems = [f"tensor {k!r} has dtype {d!r}" for k, d in bad]
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    held = ", ".join(f"{code} ({name})" for code, name in _HELD.items())
    raise CheckpointError(
        f"gpuad.load: the checkpoint {path!r} holds tensors of dtypes gpuad does not support; "
        f"nothing was loaded or assigned:\n  " + "\n  ".join(shown) +
        f"\ngpuad holds {held} only (float16, bfloat16, uint8, int8, int16 and float8 are not "
        f"supported yet). Fix: convert those tensors to a supported dtype before saving, e.g. "
        f"tensor.float() in PyTorch or array.astype(numpy.float32) with safetensors.numpy.",
        path, problems)


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
    _check_dtypes(path, header)
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


def _find_optimizers(obj, prefix: str, out: list) -> None:
    from .optimizers import Optimizer
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    if isinstance(obj, Optimizer):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _find_optimizers(v, join(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _find_optimizers(v, join(i), out)


def _summarize(keys: list) -> str:
    """``'opt.momentum.0'..'opt.momentum.5' (6 keys), 'opt.iteration'``: keys that
    differ only in a final index, as a range."""
    groups: dict = {}
    for k in keys:
        stem, _, last = k.rpartition(".")
        if stem and last.isdigit():
            groups.setdefault(stem, []).append(int(last))
        else:
            groups.setdefault(k, None)
    parts = []
    for stem, idx in groups.items():
        if idx is None:
            parts.append(repr(stem))
        elif len(idx) == 1:
            parts.append(repr(f"{stem}.{idx[0]}"))
        else:
            parts.append(f"{stem + '.' + str(min(idx))!r}..{stem + '.' + str(max(idx))!r} "
                         f"({len(idx)} keys)")
    return ", ".join(parts)


def _optimizer_problems(into, arrays: dict, targets: dict):
    """``(problems, keys)``: what keeps each gpuad optimizer in ``into`` from taking
    the state the file holds for it, and the file keys that state comprises.

    A file key under an optimizer's prefix that the optimizer has no variable for
    is always a problem, ``strict=False`` or not: dropping it would leave the
    optimizer half restored (its step count and learning rate loaded, its moments
    zero), silently training differently. An optimizer not yet built has no slot
    variables at all: the fix is ``opt.build(variables)`` before loading. The
    step count and learning rate must be valid (a count >= 0, a finite rate >= 0)."""
    found: list = []
    _find_optimizers(into, "", found)
    problems, owned = [], set()
    for prefix, opt in found:
        pre = f"{prefix}." if prefix else ""
        where = f"the optimizer {prefix!r}" if prefix else "the optimizer"
        mine = {k for k in arrays if k.startswith(pre)}
        owned |= mine
        extra = sorted(mine - {pre + k for k, _ in opt.named_variables()})
        if extra:
            listed = _summarize(extra)
            if not opt.built:
                problems.append(
                    f"{where} ({type(opt).__name__}) is not built, so it has no variables yet for "
                    f"its saved state {listed}; call opt.build(model.trainable_variables) first "
                    f"(strict=False would drop that state)")
            else:
                problems.append(
                    f"{where} ({type(opt).__name__}) has no variable for its saved state "
                    f"{listed}: it was built on other variables or configured differently "
                    f"(momentum, amsgrad, centered, a schedule instead of a float learning rate)")
        for key, ok, what in ((pre + "iteration", lambda a: a >= 0, "a step count >= 0"),
                              (pre + "learning_rate", lambda a: np.isfinite(a) and a >= 0,
                               "a finite learning rate >= 0")):
            a = arrays.get(key)
            if key in targets and a is not None and a.shape == () and a.dtype.kind in "fiu" \
                    and not ok(a):
                problems.append(f"invalid value for {key!r}: the file has {a.item()!r}, but "
                                f"{where} needs {what}")
    return problems, owned


def load(path, into=None, strict=True):
    """Read a checkpoint written by :func:`save`.

    Without ``into``: a dict ``{key: Tensor}`` on the current device, in sorted key order.
    With ``into`` (a Module, a dict of name -> Variable, or an object with
    ``variables``): validate everything, then assign every value into its
    Variable (on that variable's device) and return ``into``. Keys in the file
    that ``into`` lacks are an error unless ``strict=False``; a key ``into``
    expects but the file lacks is always an error. A gpuad optimizer in ``into``
    takes all of its saved state or none: a key under its prefix it has no
    variable for is an error even with ``strict=False`` (build it first with
    ``opt.build(variables)``), and a saved learning rate that is not finite and
    >= 0 is refused. A tensor of a dtype gpuad does not hold (F16, BF16, U8, ...)
    is an error, with or without ``into``. On any error nothing is assigned.

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
    opt_problems, owned = _optimizer_problems(into, arrays, targets)
    problems.extend(opt_problems)
    unexpected = sorted(k for k in arrays if k not in targets and k not in owned)
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
        if any("is not built" in p for p in problems):
            fixes.append("call opt.build(model.trainable_variables) on the optimizer first (the "
                         "same variables, in the same order, as the saved optimizer), then load")
        elif opt_problems:
            fixes.append("configure and build the optimizer as the saved one was (same class and "
                         "options, same variables in the same order); strict=False does not "
                         "drop an optimizer's saved state")
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
