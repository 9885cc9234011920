"""Configuration snapshots: readable data for the record, a hash, a diff.

A snapshot turns a frozen dataclass, NamedTuple, pydantic model, mapping or
plain value into TOML-compatible data. The hash is computed from a canonical
JSON form that keeps ``None`` and types TOML cannot hold, so two configs hash
alike only when their values are alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import math
import pathlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ['config_hash', 'diff', 'flatten', 'to_data', 'to_toml', 'unrecordable']

NONE_MARK = '<None>'
_ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+>')


def to_data(value: Any) -> Any:
    """Return ``value`` as JSON-like data: dicts, lists, and scalars."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, tuple) and hasattr(value, '_asdict'):
        return {k: to_data(v) for k, v in value._asdict().items()}
    model_dump = getattr(value, 'model_dump', None)
    if callable(model_dump) and not isinstance(value, type):
        return to_data(model_dump())
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_data(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, enum.Enum):
        return to_data(value.value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, type):
        return f'{value.__module__}.{value.__qualname__}'
    return repr(value)


def unrecordable(value: Any, path: str = 'config') -> list[str]:
    """Return the paths of values whose snapshot would differ between processes.

    Such values (functions, plain objects) fall back to a ``repr`` holding a
    memory address, so the hash of an equal configuration would change from
    one process to the next and resuming would be refused.
    """
    data = to_data(value)
    found: list[str] = []

    def visit(item: Any, where: str) -> None:
        if isinstance(item, dict):
            for key, child in item.items():
                visit(child, f'{where}.{key}')
        elif isinstance(item, list):
            for index, child in enumerate(item):
                visit(child, f'{where}[{index}]')
        elif isinstance(item, str) and _ADDRESS.search(item) and item.startswith('<'):
            found.append(f'{where} = {item}')

    visit(data, path)
    return found


def to_toml(value: Any) -> dict[str, Any]:
    """Return the snapshot as a TOML table (``None`` becomes ``'<None>'``)."""
    data = _toml_safe(to_data(value))
    return data if isinstance(data, dict) else {'value': data}


def config_hash(value: Any) -> str:
    """Return a stable hash of the configuration's values."""
    canonical = json.dumps(
        to_data(value), sort_keys=True, separators=(',', ':'), default=repr
    )
    return 'sha256:' + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def diff(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return ``path: recorded -> current`` lines for every differing leaf."""
    old, new = flatten(recorded, root='value'), flatten(current, root='value')
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, '<missing>'), new.get(key, '<missing>')
        if a != b and not (_is_nan(a) and _is_nan(b)):
            lines.append(f'{key}: {a!r} -> {b!r}')
    return lines


def _toml_safe(data: Any) -> Any:
    if data is None:
        return NONE_MARK
    if isinstance(data, dict):
        return {k: _toml_safe(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_toml_safe(v) for v in data]
    return data


def flatten(data: Any, prefix: str = '', root: str = '') -> dict[str, Any]:
    """Return nested mappings as ``{'a.b.c': leaf}``; a bare value under ``root``."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key), root))
        return out
    return {prefix or root: data}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
