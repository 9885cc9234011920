"""Configuration snapshots: readable data for the record, a hash, a diff.

A snapshot turns a frozen dataclass, NamedTuple, pydantic model, mapping,
OmegaConf container or plain value into TOML-compatible data. The hash is
computed from a canonical JSON form that keeps ``None`` and types TOML cannot
hold, so two configs hash alike only when their values are alike.

Tensors and NumPy arrays are summarised by content (dtype, shape and a hash of
their bytes), never by their ``repr``, which elides elements and rounds them.
What cannot be recorded faithfully (a cycle, keys that collide as text, a lone
surrogate) raises ``ConfigNotRecordableError`` naming where it is. torch, NumPy
and OmegaConf are never imported here: their objects are recognised through
``sys.modules``, since none can exist before its module is imported.
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
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from drytorch.core import exceptions

__all__ = [
    'NONE_MARK',
    'SMALL_ARRAY',
    'config_hash',
    'diff',
    'flatten',
    'to_data',
    'to_toml',
    'unrecordable',
]

NONE_MARK = '<None>'
SMALL_ARRAY = 32
"""Arrays with at most this many elements also list their values in snapshots."""

_ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+>')
_KEY_TYPES = (str, int, float, enum.Enum)  # bool is an int
_NOT_SEQUENCES = (str, bytes, bytearray, memoryview, range)  # exact reprs
_INT64 = range(-(2**63), 2**63)
_SURROGATE_FIX = (
    'Lone surrogates usually come from bytes decoded with '
    "errors='surrogateescape' (os.fsdecode, os.listdir, sys.argv on a "
    'non-UTF-8 system): decode those bytes with their real encoding, or '
    'remove the character.'
)


def to_data(value: Any, path: str = 'config') -> Any:
    """Return ``value`` as JSON-like data: dicts, lists, and scalars.

    Raises:
        ConfigNotRecordableError: ``value`` cannot be recorded faithfully; the
            message names the place, ``path`` being the name of ``value``.
    """
    try:
        return _Walk().data(value, path)
    except RecursionError:
        raise exceptions.ConfigNotRecordableError(
            f'{path} is nested more deeply than Python can follow. Flatten the '
            'configuration.'
        ) from None


def unrecordable(value: Any, path: str = 'config') -> list[str]:
    """Return the paths of values whose snapshot would differ between processes.

    Such values (functions, plain objects) fall back to a ``repr`` holding a
    memory address, so the hash of an equal configuration would change from
    one process to the next and resuming would be refused.

    Raises:
        ConfigNotRecordableError: see ``to_data``.
    """
    found: list[str] = []

    def visit(item: Any, where: str) -> None:
        if isinstance(item, dict):
            for key, child in item.items():
                visit(child, _key_path(where, key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                visit(child, f'{where}[{index}]')
        elif isinstance(item, str) and _ADDRESS.search(item) and item.startswith('<'):
            found.append(f'{where} = {item}')

    visit(to_data(value, path), path)
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
        if not _same(a, b):
            lines.append(f'{key}: {a!r} -> {b!r}')
    return lines


def flatten(data: Any, prefix: str = '', root: str = '') -> dict[str, Any]:
    """Return nested mappings as ``{'a.b.c': leaf}``; a bare value under ``root``."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key), root))
        return out
    return {prefix or root: data}


class _Walk:
    """One conversion: remembers the containers on the way, to refuse cycles."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}  # id of a value being converted -> its path

    def data(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return _text(value, where)
        if isinstance(value, type):
            return _text(f'{value.__module__}.{value.__qualname__}', where)
        ident = id(value)
        if ident in self.open:
            raise exceptions.ConfigNotRecordableError(
                f'The configuration contains itself: {where} is {self.open[ident]} '
                'again (a cycle). A configuration is recorded as a tree of values; '
                'replace the back-reference by a name or an index.'
            )
        self.open[ident] = where
        try:
            return self._compound(value, where)
        finally:
            del self.open[ident]

    def _compound(self, value: Any, where: str) -> Any:
        omegaconf = sys.modules.get('omegaconf')
        if omegaconf is not None and isinstance(value, omegaconf.Container):
            return self.data(_omegaconf_container(omegaconf, value, where), where)
        torch = sys.modules.get('torch')
        if torch is not None and isinstance(value, torch.Tensor):
            return _tensor_summary(torch, value, where)
        numpy = sys.modules.get('numpy')
        if numpy is not None and isinstance(value, numpy.ndarray):
            return self._ndarray_summary(numpy, value, where)
        if dataclasses.is_dataclass(value):
            fields = dataclasses.fields(value)
            return self._mapping(
                ((f.name, getattr(value, f.name)) for f in fields), where
            )
        if isinstance(value, tuple) and hasattr(value, '_asdict'):
            return self._mapping(value._asdict().items(), where)
        model_dump = getattr(value, 'model_dump', None)
        if callable(model_dump):
            return self.data(model_dump(), where)  # pydantic keeps cycles: refused here
        if isinstance(value, Mapping):
            return self._mapping(value.items(), where)
        if isinstance(value, set | frozenset):
            items = [self.data(v, f'{where}[{i}]') for i, v in enumerate(value)]
            return sorted(items, key=repr)
        if isinstance(value, Sequence) and not isinstance(value, _NOT_SEQUENCES):
            return [self.data(v, f'{where}[{i}]') for i, v in enumerate(value)]
        if isinstance(value, enum.Enum):
            return self.data(value.value, where)
        if isinstance(value, pathlib.PurePath):
            return _text(str(value), where)
        if isinstance(value, datetime.datetime | datetime.date | datetime.time):
            return value.isoformat()
        if _is_foreign_array(value, numpy):
            raise exceptions.ConfigNotRecordableError(
                f'{where} is a {type(value).__qualname__}, an array type that can '
                'only be recorded by its repr, which rounds and elides values. '
                'Convert it with numpy.asarray or torch.as_tensor, or store the '
                'path of the data instead.'
            )
        return _text(repr(value), where)

    def _mapping(self, items: Iterable[tuple[Any, Any]], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        keys: dict[str, Any] = {}
        for key, child in items:
            text = _key_text(key, where)
            if text in keys:
                raise exceptions.ConfigNotRecordableError(
                    f'{where} has the keys {keys[text]!r} and {key!r}, which are '
                    f'both written as the key {text!r}: the record would keep only '
                    'one of them. Use keys that stay distinct as text (for example '
                    'all strings).'
                )
            keys[text] = key
            out[text] = self.data(child, _key_path(where, text))
        return out

    def _ndarray_summary(self, numpy: Any, array: Any, where: str) -> dict[str, Any]:
        masked = bool(numpy.ma.isMaskedArray(array))
        label = 'numpy.ma.MaskedArray' if masked else 'numpy.ndarray'
        if array.dtype.hasobject:  # raw bytes would be pointers: record the values
            return {
                'array': label,
                'dtype': str(array.dtype),
                'shape': list(array.shape),
                'values': self.data(array.tolist(), where),
            }
        data = numpy.ascontiguousarray(numpy.ma.getdata(array))
        data = data.astype(data.dtype.newbyteorder('<'), copy=False)
        chunks = [memoryview(data.reshape(-1).view(numpy.uint8))]
        if masked:  # the mask is data: it says which values count
            mask = numpy.ascontiguousarray(numpy.ma.getmaskarray(array))
            chunks.append(memoryview(mask.reshape(-1).view(numpy.uint8)))
        values = array.tolist() if array.size <= SMALL_ARRAY else None
        return _summary(label, str(data.dtype), array.shape, chunks, values)


def _tensor_summary(torch: Any, tensor: Any, where: str) -> dict[str, Any]:
    """Return the summary of a tensor; its device and autograd state are not data."""
    dtype = str(tensor.dtype).removeprefix('torch.')
    if tensor.is_meta:
        raise exceptions.ConfigNotRecordableError(
            f'{where} is a tensor on the meta device: it has no values to record. '
            'Store its shape and dtype instead.'
        )
    if tensor.is_quantized:
        raise exceptions.ConfigNotRecordableError(
            f'{where} is a quantized tensor. Record tensor.dequantize() and the '
            'quantization parameters instead.'
        )
    try:
        plain = tensor.detach()
        if plain.layout != torch.strided:
            plain = plain.to_dense()
        plain = plain.resolve_conj().resolve_neg().cpu().contiguous()
        flat = plain.reshape(-1).view(torch.uint8)
        chunks = [_tensor_bytes(flat)]
        values = plain.tolist() if plain.numel() <= SMALL_ARRAY else None
    except (RuntimeError, TypeError, ValueError) as error:
        raise exceptions.ConfigNotRecordableError(
            f'The values of tensor {where} ({dtype}, {tensor.layout}) cannot be '
            f'read ({error}). Store a plain dense tensor.'
        ) from None
    return _summary('torch.Tensor', dtype, tensor.shape, chunks, values)


def _tensor_bytes(flat: Any) -> memoryview | bytes:
    """Return a 1-D uint8 CPU tensor's bytes, without copying through Python."""
    if 'numpy' in sys.modules:  # torch imports NumPy itself when it is installed
        try:
            return memoryview(flat.numpy())
        except RuntimeError:  # torch built without NumPy support
            pass
    step = 1 << 20
    return b''.join(
        bytes(flat[i : i + step].tolist()) for i in range(0, flat.numel(), step)
    )


def _summary(
    label: str,
    dtype: str,
    shape: Iterable[int],
    chunks: Sequence[memoryview | bytes],
    values: Any,
) -> dict[str, Any]:
    """Return the record of an array: what it is and a hash of what it holds."""
    dims = [int(n) for n in shape]
    digest = hashlib.sha256(f'{dtype}\0{dims}\0'.encode())
    for chunk in chunks:
        digest.update(chunk)
    summary: dict[str, Any] = {
        'array': label,
        'dtype': dtype,
        'shape': dims,
        'sha256': digest.hexdigest()[:16],
    }
    if values is not None and _plain_numbers(values):
        summary['values'] = values
    return summary


def _plain_numbers(values: Any) -> bool:
    """Whether ``values`` (nested lists) hold only numbers TOML can store."""
    if isinstance(values, list):
        return all(_plain_numbers(v) for v in values)
    if isinstance(values, bool | float):
        return True
    return isinstance(values, int) and values in _INT64


def _omegaconf_container(omegaconf: Any, value: Any, where: str) -> Any:
    """Return an OmegaConf container as plain data, interpolations resolved.

    The record keeps the values the run uses; a missing (``???``) or broken
    interpolation is refused here rather than surfacing in the middle of a run.
    """
    try:
        return omegaconf.OmegaConf.to_container(
            value, resolve=True, throw_on_missing=True
        )
    except omegaconf.errors.OmegaConfBaseException as error:
        key = getattr(error, 'full_key', None)  # like 'model.layers[0]'
        place = f'{where}{"" if key.startswith("[") else "."}{key}' if key else where
        message = str(error).splitlines()[0] if str(error) else ''
        raise exceptions.ConfigNotRecordableError(
            f'{place} cannot be resolved ({type(error).__name__}: {message}). Set '
            "every mandatory ('???') value and fix the interpolation before "
            'creating the experiment.'
        ) from None


def _key_text(key: Any, where: str) -> str:
    """Return a mapping key as TOML text; refuse keys with no faithful text."""
    if not isinstance(key, _KEY_TYPES):
        raise exceptions.ConfigNotRecordableError(
            f'{where} has the key {key!r} of type {type(key).__name__}: TOML keys '
            'are text, and only str, int, float, bool and enum keys convert to it '
            'faithfully. Use one of those.'
        )
    return _text(str(key), f'a key of {where}')


def _text(text: str, where: str) -> str:
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as error:
        raise exceptions.ConfigNotRecordableError(
            f'{where} holds the lone surrogate {text[error.start]!r} at position '
            f'{error.start}, which no TOML file can store. {_SURROGATE_FIX}'
        ) from None
    return text


def _key_path(where: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f'{where}.{key}'
    return f'{where}[{key!r}]'


def _is_foreign_array(value: Any, numpy: Any) -> bool:
    """Whether ``value`` is an array of another library (jax, cupy, pandas)."""
    if numpy is not None and isinstance(value, numpy.generic):
        return False  # NumPy scalars: their repr is exact
    kind = type(value)
    return any(hasattr(kind, name) for name in ('__array__', '__dlpack__'))


def _toml_safe(data: Any) -> Any:
    if data is None:
        return NONE_MARK
    if isinstance(data, dict):
        return {k: _toml_safe(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_toml_safe(v) for v in data]
    return data


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN, also inside lists (array values)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)
