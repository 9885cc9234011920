"""Settings from ``[tool.drytorch]`` in the nearest pyproject.toml and the environment.

Precedence, highest first: environment variables, the ``[tool.drytorch]`` table
of the nearest ``pyproject.toml`` found from the working directory upwards,
built-in defaults. Relative paths in the file are relative to the file's folder.
Settings are read again whenever the working directory, the file or a
``DRYTORCH_*`` variable changes, so tests and notebooks see changes without a
restart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import tomllib
import warnings
from collections.abc import Mapping
from typing import Any

import platformdirs

from drytorch.core import exceptions, seeding

__all__ = ['ENV_VARS', 'INIT_MODES', 'Settings', 'find_pyproject', 'get_settings']

INIT_MODES = ('standard', 'minimal', 'hydra', 'none')

ENV_VARS = {
    'init_mode': 'DRYTORCH_INIT_MODE',
    'registry_dir': 'DRYTORCH_REGISTRY_DIR',
    'disable_plugins': 'DRYTORCH_DISABLE_PLUGINS',
    'strict_plugins': 'DRYTORCH_STRICT_PLUGINS',
    'par_dir': 'DRYTORCH_PAR_DIR',
    'trackers': 'DRYTORCH_TRACKERS',
    'seed': 'DRYTORCH_SEED',
    'deterministic': 'DRYTORCH_DETERMINISTIC',
    'slow_tracker_seconds': 'DRYTORCH_SLOW_TRACKER_SECONDS',
    'distributed_timeout': 'DRYTORCH_DISTRIBUTED_TIMEOUT',
    'step_metrics_every': 'DRYTORCH_STEP_METRICS_EVERY',
}
_TRUE = {'1', 'true', 'yes', 'on'}
_FALSE = {'0', 'false', 'no', 'off', ''}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved DRYTorch settings.

    Attributes:
        init_mode: the default-tracker mode, one of ``INIT_MODES``.
        registry_dir: the folder of the run registry.
        disable_plugins: names of plugins that must not be loaded.
        strict_plugins: re-raise plugin import errors instead of skipping.
        par_dir: the default output folder of experiments.
        trackers: names of trackers added to the defaults of the init mode
            (offered by plugins through ``tracker_types``).
        seed: the seed of new runs that get none from ``create_run``; None
            draws one per run.
        deterministic: run in deterministic mode unless ``create_run`` says
            otherwise; None when not set (off).
        slow_tracker_seconds: a tracker hook call running longer than this
            gets one ``SlowTrackerWarning`` with its stack; 0 or less: never.
        distributed_timeout: in a distributed run whose process group
            DRYTorch initialises, the seconds a collective waits for the
            other processes before it fails (a rank that hangs then fails the
            run instead of stalling it); None keeps torch's default (10 min).
        step_metrics_every: the trainer reports the means of its metrics
            over the last this many optimizer steps (``on_step_metrics``),
            when a tracker takes them; 0 turns it off.
        plugin_tables: ``[tool.drytorch.<name>]`` tables, owned by plugins.
        source: the pyproject.toml the settings came from, if any.
    """

    init_mode: str = 'standard'
    registry_dir: pathlib.Path = dataclasses.field(
        default_factory=lambda: pathlib.Path(platformdirs.user_data_dir('drytorch'))
    )
    disable_plugins: frozenset[str] = frozenset()
    strict_plugins: bool = False
    par_dir: pathlib.Path = pathlib.Path('.')
    trackers: tuple[str, ...] = ()
    seed: int | None = None
    deterministic: bool | None = None
    slow_tracker_seconds: float = 60.0
    distributed_timeout: float | None = None
    step_metrics_every: int = 50
    plugin_tables: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    source: pathlib.Path | None = None

    def plugin_table(self, name: str) -> Mapping[str, Any]:
        """Return the ``[tool.drytorch.<name>]`` table of a plugin (empty if none)."""
        return self.plugin_tables.get(name, {})


def find_pyproject(start: pathlib.Path) -> pathlib.Path | None:
    """Return the nearest pyproject.toml at or above ``start``."""
    for folder in (start, *start.parents):
        candidate = folder / 'pyproject.toml'
        if candidate.is_file():
            return candidate
    return None


def get_settings() -> Settings:
    """Return the settings for the current working directory and environment."""
    env = tuple(os.environ.get(var) for var in ENV_VARS.values())
    cwd = os.getcwd()
    path = find_pyproject(pathlib.Path(cwd))
    try:
        version = path.stat().st_mtime_ns if path else None
    except OSError:
        version = None
    return _load(cwd, path, version, env)


@functools.lru_cache(maxsize=8)
def _load(
    cwd: str,
    path: pathlib.Path | None,
    version: int | None,
    env: tuple[str | None, ...],
) -> Settings:
    """Read the settings; cached by folder, file version and environment."""
    table = _read_table(path) if path else {}
    base = path.parent if path else pathlib.Path(cwd)
    values: dict[str, Any] = {}
    plugin_tables: dict[str, Mapping[str, Any]] = {}
    known = {field.name for field in dataclasses.fields(Settings)} - {
        'plugin_tables',
        'source',
    }
    for key, value in table.items():
        if key in known:  # a table named like a setting is an invalid value
            values[key] = _convert(key, value, base, f'{path} [tool.drytorch]')
        elif isinstance(value, dict):
            plugin_tables[key] = value
        else:
            warnings.warn(
                f'Unknown setting {key!r} in {path} [tool.drytorch]; it is ignored. '
                f'Known settings: {", ".join(sorted(known))}.',
                exceptions.UnknownSettingWarning,
                stacklevel=4,
            )
    for (key, var), raw in zip(ENV_VARS.items(), env, strict=True):
        if raw is not None:
            values[key] = _convert(key, raw, pathlib.Path(cwd), var)
    return Settings(**values, plugin_tables=plugin_tables, source=path)


def _read_table(path: pathlib.Path) -> dict[str, Any]:
    try:
        with path.open('rb') as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise exceptions.SettingsError(f'Cannot read {path}: {err}') from err
    tool = data.get('tool', {})
    table = tool.get('drytorch', {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise exceptions.SettingsError(f'{path}: [tool.drytorch] must be a table.')
    return table


def _convert(key: str, value: Any, base: pathlib.Path, origin: str) -> Any:
    """Check and convert one setting; ``origin`` names where it came from."""
    if key in ('registry_dir', 'par_dir'):
        if not isinstance(value, str) or not value:
            raise exceptions.SettingsError(f'{origin}: {key} must be a non-empty path.')
        path = pathlib.Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if key == 'init_mode':
        if value not in INIT_MODES:
            raise exceptions.SettingsError(
                f'{origin}: init_mode {value!r} is unknown; use one of {INIT_MODES}.'
            )
        return value
    if key in ('disable_plugins', 'trackers'):
        if isinstance(value, str):
            value = [name.strip() for name in value.split(',') if name.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise exceptions.SettingsError(f'{origin}: {key} must be a list of names.')
        return frozenset(value) if key == 'disable_plugins' else tuple(value)
    if key in ('strict_plugins', 'deterministic'):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise exceptions.SettingsError(f'{origin}: {key} must be a boolean.')
    if key == 'seed':
        if isinstance(value, str):
            if not value.strip():
                return None  # an empty variable: no seed, one is drawn per run
            try:
                value = int(value.strip())
            except ValueError:
                raise exceptions.SettingsError(
                    f'{origin}: seed must be an integer, got {value!r}.'
                ) from None
        try:
            return seeding.check_seed(value)
        except (TypeError, ValueError) as err:
            raise exceptions.SettingsError(f'{origin}: {err}') from None
    if key == 'slow_tracker_seconds':
        return _seconds(value, f'{origin}: {key}')
    if key == 'distributed_timeout':
        if isinstance(value, str) and not value.strip():
            return None
        seconds = _seconds(value, f'{origin}: {key}')
        if seconds <= 0:
            raise exceptions.SettingsError(
                f'{origin}: {key} must be a positive number of seconds, got {value!r}.'
            )
        return seconds
    if key == 'step_metrics_every':
        number = value.strip() if isinstance(value, str) else value
        if isinstance(number, str) and number.isdigit():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise exceptions.SettingsError(
                f'{origin}: {key} must be a whole number of steps (0 turns it '
                f'off), got {value!r}.'
            )
        return number
    raise AssertionError(key)  # pragma: no cover - every known key is handled


def _seconds(value: Any, what: str) -> float:
    """Return ``value`` as a finite number of seconds (a bool is not one)."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if (
        not isinstance(number, int | float)
        or isinstance(number, bool)
        or not math.isfinite(number)
    ):
        raise exceptions.SettingsError(
            f'{what} must be a number of seconds (0 or less turns it off), '
            f'got {value!r}.'
        )
    return float(number)
