"""``gpuad.Module``: a base class that finds its own variables, as ``tf.Module``.

Every :class:`~gpuad.Variable` reachable from a module's attributes -- directly,
inside lists, tuples and dicts (nested to any depth), or inside sub-modules --
is collected by ``variables``, ``trainable_variables`` and
``non_trainable_variables``. There is nothing to register.

The order is deterministic, as ``tf.Module``'s: attributes in sorted name
order, list and tuple items in order, dict entries in sorted key order
(insertion order when the keys do not sort), depth first. A variable reachable
along two paths (a tied weight) is listed once, at its first path.

>>> import gpuad as ad
>>> class Affine(ad.Module):
...     def __init__(self, name=None):
...         super().__init__(name=name)
...         self.w = ad.Variable([[1.0, 2.0]], name="w")
...         self.b = ad.Variable([0.5], name="b")
...         self.steps = ad.Variable(0, trainable=False, name="steps")
...     def __call__(self, x):
...         return ad.matmul(x, self.w) + self.b
>>> m = Affine()
>>> m.name
'affine'
>>> [v.name for v in m.trainable_variables]
['b:0', 'w:0']
>>> [v.name for v in m.non_trainable_variables]
['steps:0']
>>> class Stack(ad.Module):
...     def __init__(self):
...         super().__init__()
...         self.parts = [Affine(), {"extra": Affine()}]
>>> len(Stack().trainable_variables)
4
"""
from __future__ import annotations

import re

from .tensor import Variable

__all__ = ["Module"]


def _camel_to_snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _sorted_items(d: dict):
    try:
        keys = sorted(d)
    except TypeError:  # keys of mixed types: keep insertion order
        keys = list(d)
    return [(k, d[k]) for k in keys]


class Module:
    """Base class for models and layers: collects their variables automatically.

    Subclasses create variables (and sub-modules) as attributes in
    ``__init__`` and define ``__call__`` as they like. ``name`` defaults to
    the class name in snake case (``MyModel`` -> ``my_model``).
    """

    def __init__(self, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Module name must be a string, got {type(name).__name__}.")
        self._name = name if name is not None else _camel_to_snake(type(self).__name__)

    # -- identity ------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The module's name (a subclass that skipped ``super().__init__()`` gets the default)."""
        return self.__dict__.get("_name") or _camel_to_snake(type(self).__name__)

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} name={self.name!r}>"

    # -- collection ------------------------------------------------------------------
    def _named_members(self):
        """``(path, variable)`` for every variable reachable from this module,
        and ``(path, module)`` for every sub-module, in the deterministic order;
        each object once, at its first path (``layers.0.kernel``)."""
        variables, modules = [], []
        seen = {id(self)}

        def walk(value, path):
            if isinstance(value, Variable):
                if id(value) not in seen:
                    seen.add(id(value))
                    variables.append((path, value))
            elif isinstance(value, Module):
                if id(value) not in seen:
                    seen.add(id(value))
                    modules.append((path, value))
                    walk_module(value, path)
            elif isinstance(value, dict):
                if id(value) in seen:
                    return
                seen.add(id(value))
                for k, v in _sorted_items(value):
                    walk(v, f"{path}.{k}" if path else str(k))
            elif isinstance(value, (list, tuple)):
                if id(value) in seen:
                    return
                seen.add(id(value))
                for i, v in enumerate(value):
                    walk(v, f"{path}.{i}" if path else str(i))

        def walk_module(module, prefix):
            for key, v in _sorted_items(vars(module)):
                if key == "_name":
                    continue
                walk(v, f"{prefix}.{key}" if prefix else key)

        walk_module(self, "")
        return variables, modules

    def named_variables(self) -> list:
        """``[(path, variable), ...]``: every variable with its attribute path
        (``"layers.0.kernel"``), the keys :func:`gpuad.save` writes."""
        return self._named_members()[0]

    @property
    def variables(self) -> tuple:
        """Every Variable reachable from this module (trainable or not)."""
        return tuple(v for _, v in self._named_members()[0])

    @property
    def trainable_variables(self) -> tuple:
        """The trainable Variables reachable from this module."""
        return tuple(v for _, v in self._named_members()[0] if v.trainable)

    @property
    def non_trainable_variables(self) -> tuple:
        """The Variables created with ``trainable=False`` reachable from this module."""
        return tuple(v for _, v in self._named_members()[0] if not v.trainable)

    @property
    def submodules(self) -> tuple:
        """Every Module reachable from this one (not including itself)."""
        return tuple(m for _, m in self._named_members()[1])
