"""An interpreter that runs every op eagerly and checks it against its shape rule.

``tests/conftest.py`` pushes :class:`CheckInfer` for every test, so each
``bind`` in the suite compares the shape and dtype the primitive's rule
(``prim.infer``) predicted with those of the result the kernel produced: a
rule that disagrees with its kernel fails whichever test first runs it.
"""
from __future__ import annotations

import threading

from gpuad.ops import core
from gpuad.tensor import Tensor


class InferMismatch(AssertionError):
    pass


class CheckInfer:
    """Run eagerly; fail when the result's (shape, dtype) is not the rule's."""

    def __init__(self):
        self.checked: set[str] = set()   # names of the primitives checked so far
        self._lock = threading.Lock()

    def apply(self, prim, inputs, attrs, aval):
        out = core.eager(prim, inputs, dict(attrs))
        if aval is not None and isinstance(out, Tensor):
            shape, dtype = aval
            if (tuple(shape), dtype) != (out._data.shape, out._data.dtype):
                raise InferMismatch(
                    f"{prim.name}: the shape rule said {tuple(shape)} {dtype}, the kernel made "
                    f"{out._data.shape} {out._data.dtype} (inputs "
                    f"{[(x._data.shape, str(x._data.dtype)) for x in inputs]}, attrs {attrs})")
        with self._lock:
            self.checked.add(prim.name)
        return out
