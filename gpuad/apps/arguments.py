"""The command line's rules for its flags, shared by every subcommand
(``train`` and its tasks, ``demo``, ``bench``).

Bad input is refused before anything happens, with argparse's conventions: a
usage message naming the flag, the value and what is allowed, on stderr, and
exit status 2. Two layers, one set of rules:

* **Types** (``type=`` of ``add_argument``): :func:`positive_int`,
  :func:`nonnegative_int`, :func:`finite_positive_float`, :func:`device_name`,
  ... Each takes the flag's text (or, for a caller that builds an
  ``argparse.Namespace`` itself, the value) and returns the value, or raises
  ``argparse.ArgumentTypeError`` saying what is allowed.
* **Checks across flags or against the machine** (a flag the task does not use,
  ``--out`` that cannot be written): a subcommand's ``check_arguments(args)``
  raises :class:`UsageError`; ``python -m gpuad`` turns it into
  ``parser.error``. Each ``run(args)`` calls the same check first (and returns
  2), so a Namespace built in code gets the same refusals.

>>> from gpuad.apps.arguments import positive_int, finite_positive_float
>>> positive_int("3"), finite_positive_float("1e-3")
(3, 0.001)
>>> finite_positive_float("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a finite number greater than 0, got 'nan'
"""
from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
import tempfile


class UsageError(Exception):
    """A flag's value that is not allowed; the message starts ``argument --flag:``."""


def _whole(value, least: int, what: str, most: int | None = None) -> int:
    if isinstance(value, str):
        try:
            n = int(value.strip())
        except ValueError:
            n = None
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = int(value)
    else:
        n = None
    if n is None or n < least or (most is not None and n > most):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}")
    return n


def positive_int(value) -> int:
    """A whole number >= 1 (``"0"``, ``"-3"``, ``"2.5"`` are refused)."""
    return _whole(value, 1, "a whole number >= 1")


def nonnegative_int(value) -> int:
    """A whole number >= 0."""
    return _whole(value, 0, "a whole number >= 0")


def seed_int(value) -> int:
    """A seed: a whole number in [0, 2**32 - 1] (NumPy's generators refuse negative seeds)."""
    return _whole(value, 0, "a whole number from 0 to 4294967295", 2**32 - 1)


def bounded_int(least: int, most: int):
    """A type function for a whole number in ``[least, most]``."""
    def whole_in_range(value) -> int:
        return _whole(value, least, f"a whole number from {least} to {most}", most)
    return whole_in_range


def finite_positive_float(value) -> float:
    """A finite number > 0 (``nan``, ``inf``, ``0``, ``-1`` are refused)."""
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {value!r}")
    return x


def device_name(value) -> str:
    """A gpuad device usable here, canonical (``"cuda"`` -> ``"cuda:0"``)."""
    import gpuad as ad
    try:
        return ad.devices.get(str(value).strip()).name
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown device {value!r}; usable here: {', '.join(ad.devices.available())}") from None
    except Exception as e:  # noqa: BLE001 -- a known kind that cannot run here: say why
        raise argparse.ArgumentTypeError(
            f"device {value!r} cannot be used here ({e}); usable here: "
            f"{', '.join(ad.devices.available())}") from None


def name_list(known, what: str):
    """A type function for a comma-separated, non-empty list of names from ``known``
    (a collection read at each call, so a registry may grow), each at most once;
    returns the list."""
    registry = known

    def names(value) -> list:
        known = list(registry)
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        items = [str(n).strip() for n in items]
        if not items or any(not n for n in items):
            raise argparse.ArgumentTypeError(
                f"must be a comma-separated list of {what} (no empty names), got {value!r}; "
                f"known: {', '.join(known)}")
        unknown = [n for n in items if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        twice = sorted({n for n in items if items.count(n) > 1})
        if twice:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, twice))} listed twice in {value!r}")
        return items
    return names


def flag(name: str) -> str:
    """``"batch_size"`` -> ``"--batch-size"``."""
    return "--" + name.replace("_", "-")


def check_values(args, types: dict) -> None:
    """Apply each ``{attribute: type function}`` of ``types`` to ``args``' value
    when it is given (not ``None``); raises :class:`UsageError` naming the flag."""
    for name, kind in types.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        try:
            kind(value)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"argument {flag(name)}: {e}") from None


def check_output_dir(path, name: str = "out", files=()) -> None:
    """Raise :class:`UsageError` unless ``path`` is a directory this process can
    write in, or can be created as one, and none of ``files`` (names inside it
    that the command will write) exists without write permission. Leaves
    nothing behind: the test is a temporary file, created and removed, in
    ``path`` or its nearest existing parent (so it holds for root and for
    read-only file systems too)."""
    where = os.path.abspath(os.fspath(path))
    prefix = f"argument {flag(name)}: {os.fspath(path)!r}"
    if os.path.exists(where):
        if not os.path.isdir(where):
            raise UsageError(f"{prefix} exists and is not a directory; give a directory "
                             f"(it is created if missing)")
        probe = where
    else:
        probe = where
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise UsageError(f"{prefix} cannot be created: {probe!r} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".gpuad-write-test-"):
            pass
    except OSError as e:
        detail = "" if probe == where else f" cannot be created: {probe!r}"
        raise UsageError(f"{prefix}{detail} is not writable ({e.strerror or e}); "
                         f"give a directory you can write in") from None
    for f in files:
        target = os.path.join(where, f)
        if os.path.exists(target) and not os.access(target, os.W_OK):
            raise UsageError(f"{prefix} holds {f}, which is read-only; the run would write it")


def refuse(error: UsageError, prog: str = "python -m gpuad") -> int:
    """For ``run(args)`` called without the parser: print the usage error as
    argparse would and return exit status 2."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


__all__ = ["UsageError", "positive_int", "nonnegative_int", "seed_int", "bounded_int",
           "finite_positive_float", "device_name", "name_list", "flag", "check_values",
           "check_output_dir", "refuse"]
