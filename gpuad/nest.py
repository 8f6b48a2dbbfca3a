"""Flatten and rebuild nests of lists, tuples, namedtuples and dicts.

Leaves are anything else (tensors, variables, numbers). Dict values are visited
in sorted key order, as TensorFlow's ``tf.nest`` does.

>>> from gpuad import nest
>>> nest.flatten({"b": [1, 2], "a": 3})
[3, 1, 2]
>>> nest.pack_sequence_as({"b": [0, 0], "a": 0}, [30, 10, 20])
{'b': [10, 20], 'a': 30}
"""


def _is_sequence(x) -> bool:
    return isinstance(x, (list, tuple, dict))


def flatten(structure) -> list:
    out = []
    _flatten_into(structure, out)
    return out


def _flatten_into(x, out):
    if isinstance(x, dict):
        for k in sorted(x):
            _flatten_into(x[k], out)
    elif isinstance(x, (list, tuple)):
        for item in x:
            _flatten_into(item, out)
    else:
        out.append(x)


def pack_sequence_as(structure, flat):
    """Rebuild ``structure`` with the leaves of ``flat``, in flatten order."""
    it = iter(flat)
    result = _pack(structure, it)
    return result


def _pack(x, it):
    if isinstance(x, dict):
        packed = {k: _pack(x[k], it) for k in sorted(x)}
        return type(x)((k, packed[k]) for k in x) if type(x) is not dict else {k: packed[k] for k in x}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # namedtuple
        return type(x)(*[_pack(v, it) for v in x])
    if isinstance(x, (list, tuple)):
        return type(x)(_pack(v, it) for v in x)
    return next(it)
