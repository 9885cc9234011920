"""How DRYTorch names and values become MLflow keys, params and tags.

Pure functions, without MLflow: the plugin module uses them to describe a run
(``run_outputs``) and to read metrics back, and they are easy to test alone.

MLflow accepts keys of at most 250 characters made of letters, digits and
``_ - . /`` and spaces (colons too, except on Windows), that do not look like
a relative path (``.``, ``..``, ``a//b``); params hold at most 6,000
characters and tags 8,000. Everything DRYTorch sends is made to fit here, so
a run never loses its tracking over a name.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import pathlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = [
    'MAX_KEY_LENGTH',
    'MAX_PARAM_LENGTH',
    'MAX_TAG_LENGTH',
    'STATE_NAME',
    'TAG',
    'TRUNCATED',
    'absolute_uri',
    'checkpoint_tag',
    'flatten',
    'is_database',
    'key_part',
    'local_store',
    'metric_key',
    'param_key',
    'param_value',
    'params',
    'parse_metric_key',
    'run_location',
    'step_metric_key',
    'tag_value',
]

MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
STATE_NAME = 'mlflow'  # the run record's [plugins.mlflow] table
TRUNCATED = '...[truncated]'


class TAG:
    """The MLflow tags this tracker writes (``mlflow.runName`` is the run id)."""

    RUN_ID = 'drytorch.run_id'
    EXPERIMENT = 'drytorch.experiment'
    EXPERIMENT_CLASS = 'drytorch.experiment_class'
    TAGS = 'drytorch.tags'
    SEED = 'drytorch.seed'
    RECORD = 'drytorch.record'
    SESSIONS = 'drytorch.sessions'
    ERROR = 'drytorch.error'
    TRUNCATED_PARAMS = 'drytorch.truncated_params'
    CHECKPOINT_PREFIX = 'drytorch.checkpoint'


_NOT_IN_A_KEY = re.compile(r'[^\w.\- ]')


def key_part(name: str) -> str:
    """Return ``name`` as one safe part of a key: no slash, no path-like dots."""
    safe = _NOT_IN_A_KEY.sub('_', str(name))
    if not safe:
        return '_'
    if safe.startswith('.'):  # '.', '..' and '..x' read as relative paths
        return '_' + safe
    return safe


def _fit(key: str) -> str:
    """Shorten a key over MLflow's limit, keeping it unique with a hash."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f'{key[: MAX_KEY_LENGTH - 9]}-{digest}'


def metric_key(model_name: str, source_name: str, metric_name: str) -> str:
    """Return the MLflow key of a metric: ``<model>/<source>/<metric>``.

    Each part has the characters MLflow refuses (and ``/``) replaced by ``_``.
    """
    parts = (key_part(model_name), key_part(source_name), key_part(metric_name))
    return _fit('/'.join(parts))


def step_metric_key(model_name: str, source_name: str, metric_name: str) -> str:
    """Return the MLflow key of a metric by optimizer step.

    ``<model>/step/<source>/<metric>``: four parts, so never an epoch key
    (``parse_metric_key`` leaves it out of the epoch history).
    """
    parts = (key_part(model_name), key_part(source_name), key_part(metric_name))
    return _fit(f'{parts[0]}/step/{parts[1]}/{parts[2]}')


def parse_metric_key(key: str) -> tuple[str, str, str] | None:
    """Return ``(model, source, metric)`` of a ``metric_key``; None for others."""
    parts = key.split('/')
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def checkpoint_tag(model_name: str, epoch: int, batch: int = 0) -> str:
    """Return the tag key of a checkpoint, named like the local checkpoint file.

    ``drytorch.checkpoint/<model>/epoch_<n>`` at the end of epoch ``n``, and
    ``drytorch.checkpoint/<model>/epoch_<n>_batch_<k>`` after batch ``k`` of the
    next epoch.
    """
    name = f'epoch_{epoch}' if batch == 0 else f'epoch_{epoch}_batch_{batch}'
    return _fit(f'{TAG.CHECKPOINT_PREFIX}/{key_part(model_name)}/{name}')


def flatten(table: Any, prefix: str = '') -> dict[str, Any]:
    """Return nested tables as ``{'a.b.c': leaf}``.

    Lists stay whole (a list is one value); an empty table is kept as a leaf
    (``{}``) so that its key still shows; a bare value is under ``config``.
    """
    if not isinstance(table, Mapping):
        return {prefix or 'config': table}
    if not table and prefix:
        return {prefix: {}}
    out: dict[str, Any] = {}
    for key, value in table.items():
        out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key)))
    return out


def _plain(value: Any) -> Any:
    """Return TOML data as JSON data: dates as ISO text, non-finite floats as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'inf', '-inf', 'nan'
    return value


def param_value(value: Any) -> str:
    """Return a config value as MLflow param text, not yet truncated.

    Strings as they are; numbers and booleans as JSON writes them (``0.001``,
    ``true``); dates and times in ISO format; lists and tables as JSON
    (``[64, 32]``, ``{"a": 1}``).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(_plain(value), ensure_ascii=False, default=str)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def tag_value(value: Any) -> str:
    """Return ``value`` as tag text within MLflow's limit."""
    return _truncate(value if isinstance(value, str) else str(value), MAX_TAG_LENGTH)


def param_key(key: str) -> str:
    """Return a flattened config key as a param key MLflow accepts."""
    return _fit('.'.join(key_part(part) for part in key.split('.')))


def params(table: Any) -> tuple[dict[str, str], list[str]]:
    """Return the config's params and the keys whose values were truncated.

    Args:
        table: the config as TOML data (``RunView.config_table()``).

    Returns:
        ``{key: text}``, with keys in the config's order, made safe for MLflow
        (``param_key``), and the keys of values over 6,000 characters, cut to
        that length and ending with ``...[truncated]``.
    """
    out: dict[str, str] = {}
    truncated: list[str] = []
    for raw_key, value in flatten(table).items():
        key = param_key(raw_key)
        if key in out:  # two keys that differ in refused characters only
            key = _fit(f'{key}-{hashlib.sha256(raw_key.encode()).hexdigest()[:8]}')
        text = param_value(value)
        if len(text) > MAX_PARAM_LENGTH:
            truncated.append(key)
            text = _truncate(text, MAX_PARAM_LENGTH)
        out[key] = text
    return out, truncated


_DATABASES = ('sqlite', 'postgresql', 'mysql', 'mssql')


def is_database(uri: str) -> bool:
    """Return whether MLflow keeps ``uri``'s runs in a database (SQLAlchemy)."""
    scheme = uri.partition(':')[0].partition('+')[0].lower()
    return scheme in _DATABASES


def absolute_uri(uri: str) -> str:
    """Return a tracking URI that names the same store from any folder.

    A relative SQLite file (``sqlite:///mlflow.db``) or a bare relative path
    (a file store folder) is made absolute from the working directory; other
    URIs are returned unchanged.
    """
    if uri.startswith('sqlite:///'):
        path = uri[len('sqlite:///') :]
        if path and not path.startswith('/') and not path.startswith(':memory:'):
            return 'sqlite:///' + os.path.abspath(path)
        return uri
    if uri == 'databricks':  # the one bare word MLflow reads as a service
        return uri
    scheme = urllib.parse.urlsplit(uri).scheme
    if not scheme or (len(scheme) == 1 and os.name == 'nt'):  # C:\... on Windows
        return pathlib.Path(uri).resolve().as_uri()
    return uri


def local_store(uri: str) -> pathlib.Path | None:
    """Return the file or folder of a local store URI; None for a remote one."""
    if uri.startswith('sqlite:///'):
        path = uri[len('sqlite:///') :].partition('?')[0]
        return None if path.startswith(':memory:') else pathlib.Path(path)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == 'file':
        return pathlib.Path(urllib.parse.unquote(parts.path))
    if not parts.scheme and uri != 'databricks':
        return pathlib.Path(uri)
    return None


def run_location(state: Mapping[str, Any]) -> str | None:
    """Return where the MLflow run of a plugin state is, for ``drytorch show``.

    A server's (``http(s)://``) run page, else
    ``<tracking uri> (experiment <id>, run <id>)``; None without a run.
    """
    run_id = state.get('run_id')
    uri = state.get('tracking_uri')
    if not isinstance(run_id, str) or not isinstance(uri, str):
        return None
    experiment_id = state.get('experiment_id', '?')
    if uri.startswith(('http://', 'https://')):
        return f'{uri.rstrip("/")}/#/experiments/{experiment_id}/runs/{run_id}'
    return f'{uri} (experiment {experiment_id}, run {run_id})'
