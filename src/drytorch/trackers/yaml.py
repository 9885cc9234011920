"""``YamlDumper``: the original DRYTorch's YAML metadata, with ours' content.

The original wrote a run's configuration and each model's and runner's
metadata as YAML files under ``metadata/``. Ours writes them as TOML
(``drytorch.trackers.toml.TomlDumper``, no extra dependency). ``YamlDumper``
writes the same data as ``TomlDumper``, in the same layout, as YAML:

    <par_dir>/metadata/<experiment>/<run id>/config.yaml
    <par_dir>/metadata/<experiment>/<run id>/<model>/architecture.yaml
    <par_dir>/metadata/<experiment>/<run id>/<model>/<runner>.yaml

It needs PyYAML (``pip install pyyaml``), imported when a file is written.
Both dumpers may be subscribed together: they share the folder, not the files.
Files are replaced atomically, and a description that differs from the one on
disk keeps the old one as ``<name>.<n>.yaml``, as ``TomlDumper`` does.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import importlib.util
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drytorch.core import exceptions
from drytorch.trackers import toml

if TYPE_CHECKING:
    pass

__all__ = [
    'MAX_LENGTH_PLAIN_REPR',
    'MAX_LENGTH_SHORT_REPR',
    'TS_FMT',
    'MissingYamlDependencyError',
    'YamlDumper',
]

MAX_LENGTH_PLAIN_REPR = 30
"""The original's limit on plain representations; kept for imports, unused."""

MAX_LENGTH_SHORT_REPR = 10
"""Lists of at most this many plain values are written on one line (``[1, 2]``)."""

TS_FMT = '%Y-%m-%d@%Hh%Mm%Ss'
"""The original's timestamp format; kept for imports (our files carry none)."""


class MissingYamlDependencyError(exceptions.TrackerError, ImportError):
    """``YamlDumper`` needs PyYAML, which is not installed."""

    def __init__(self) -> None:
        super().__init__(
            'YamlDumper writes YAML with PyYAML, which is not installed: '
            '`pip install pyyaml`, or use drytorch.trackers.toml.TomlDumper '
            '(the same content as TOML, no extra dependency).'
        )


class YamlDumper(toml.TomlDumper):
    """Writes the metadata of each run as YAML: configuration, models and runners.

    The content is ``TomlDumper``'s; only the format differs.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.

    Raises:
        MissingYamlDependencyError: PyYAML is not installed.
    """

    suffix = '.yaml'

    def __init__(self, par_dir: str | os.PathLike[str] | None = None) -> None:
        if importlib.util.find_spec('yaml') is None:
            raise MissingYamlDependencyError()
        super().__init__(par_dir)

    def dump(self, path: pathlib.Path, data: Mapping[str, Any]) -> None:
        """Write ``data`` as YAML to ``path``, keeping a differing old file."""
        toml.write_kept(path, dumps(data).encode(), _same_yaml)


def dumps(data: Mapping[str, Any]) -> str:
    """Return ``data`` (plain TOML data) as YAML text, in the dumper's style.

    Keys keep their order, text with line breaks is a literal block (``|``),
    and short lists of plain values stay on one line.
    """
    yaml = importlib.import_module('yaml')
    dumped: str = yaml.dump(
        _yaml_ready(data),
        Dumper=_dumper(),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=88,
    )
    return dumped


@functools.cache
def _dumper() -> Any:
    """Return PyYAML's safe dumper with the representers of the dumper's style."""
    yaml = importlib.import_module('yaml')

    def text(dumper: Any, value: str) -> Any:
        style = '|' if '\n' in value else None
        return dumper.represent_scalar('tag:yaml.org,2002:str', value, style=style)

    def sequence(dumper: Any, value: list[Any]) -> Any:
        flow = len(value) <= MAX_LENGTH_SHORT_REPR and not any(
            isinstance(item, Mapping | list | tuple) for item in value
        )
        return dumper.represent_sequence(
            'tag:yaml.org,2002:seq', value, flow_style=flow
        )

    dumper: Any = type('DryTorchYamlDumper', (yaml.SafeDumper,), {})
    dumper.add_representer(str, text)
    dumper.add_representer(list, sequence)
    return dumper


def _yaml_ready(value: Any) -> Any:
    """Return TOML data with what YAML's safe dumper lacks (times) made text."""
    if isinstance(value, Mapping):
        return {str(key): _yaml_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_ready(item) for item in value]
    if isinstance(value, datetime.time):
        return value.isoformat()
    return value


def _same_yaml(old: bytes, new: bytes) -> bool:
    """Whether two files hold the same data (one may be formatted otherwise)."""
    yaml = importlib.import_module('yaml')
    try:
        return bool(yaml.safe_load(old) == yaml.safe_load(new))
    except (yaml.YAMLError, UnicodeDecodeError):
        return False
