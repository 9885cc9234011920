"""A nested, size-limited description of an object, for metadata.

``recursive_repr`` turns an object into plain data (numbers, strings, lists
and dicts) that a YAML or TOML file can hold: containers are described item
by item, other objects by their class and public attributes, and long
containers, deep nesting and cycles are cut so that the description stays
small. The limits are module settings, read at each call.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from drytorch.core.exceptions import RecursionWarning

__all__ = ['INCLUDE_PROPERTIES', 'MAX_DEPTH', 'MAX_REPR_SIZE', 'recursive_repr']

MAX_DEPTH = 10
"""How many levels of nesting are described; deeper objects become their repr."""

MAX_REPR_SIZE = 10
"""How many items of a container are described; the rest are counted."""

INCLUDE_PROPERTIES = False
"""Whether an object's description includes its properties' values."""

_MAX_TEXT = 200  # the longest repr kept whole


def recursive_repr(obj: object, *, depth: int | None = None) -> Any:
    """Return a nested, size-limited description of ``obj`` as plain data.

    Args:
        obj: anything.
        depth: the levels of nesting to describe; ``MAX_DEPTH`` by default.

    Returns:
        ``obj`` itself for numbers, strings and None; a list for sequences
        and sets; a dict for mappings; for other objects with attributes, a
        dict of their class name (under ``'class'``) and public attributes;
        otherwise the object's repr, shortened.

    Warns:
        RecursionWarning: ``obj`` contains itself; the cycle is cut.
    """
    return _describe(obj, MAX_DEPTH if depth is None else depth, set())


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else f'{text[: _MAX_TEXT - 3]}...'


def _describe(obj: object, depth: int, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, str):
        return _short(obj)
    shape = getattr(obj, 'shape', None)
    if shape is not None and hasattr(obj, 'dtype'):  # tensors, arrays
        return f'{type(obj).__name__}(shape={tuple(shape)}, dtype={obj.dtype})'
    if depth <= 0:
        return _short(repr(obj))
    if id(obj) in seen:
        warnings.warn(RecursionWarning(), stacklevel=3)
        return f'<recursion: {type(obj).__name__}>'
    seen.add(id(obj))
    try:
        return _describe_container(obj, depth, seen)
    finally:
        seen.discard(id(obj))


def _describe_container(obj: object, depth: int, seen: set[int]) -> Any:
    if isinstance(obj, Mapping):
        return _limited_dict(obj.items(), len(obj), depth, seen)
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        described = [
            _describe(item, depth - 1, seen) for item in list(items)[:MAX_REPR_SIZE]
        ]
        if len(obj) > MAX_REPR_SIZE:
            described.append(f'... ({len(obj) - MAX_REPR_SIZE} more)')
        return described
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
        return {
            'class': type(obj).__name__,
            **_limited_dict(fields, len(fields), depth, seen),
        }
    attributes = getattr(obj, '__dict__', None)
    if not isinstance(attributes, dict) or isinstance(obj, type):
        return _short(repr(obj))
    public = [
        (key, value) for key, value in attributes.items() if not key.startswith('_')
    ]
    if INCLUDE_PROPERTIES:
        for klass in type(obj).__mro__:
            for key, member in vars(klass).items():
                if isinstance(member, property) and not key.startswith('_'):
                    try:
                        public.append((key, getattr(obj, key)))
                    except Exception:  # a property may fail: left out
                        continue
    if not public:
        return _short(repr(obj))
    return {
        'class': type(obj).__name__,
        **_limited_dict(public, len(public), depth, seen),
    }


def _limited_dict(items: Any, size: int, depth: int, seen: set[int]) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for index, (key, value) in enumerate(items):
        if index == MAX_REPR_SIZE:
            described['...'] = f'{size - MAX_REPR_SIZE} more'
            break
        described[str(key)] = _describe(value, depth - 1, seen)
    return described
