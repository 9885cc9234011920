"""``suggest_overrides``: a Hydra tuning configuration made overrides by a trial.

A tuning configuration maps configuration keys to search spaces::

    # tune.yaml
    train.lr: tag(log, interval(1e-4, 1e-1))    # Hydra's sweep grammar
    model.layers: range(1, 4)
    model.act: choice(relu, gelu)
    train.batch_size: {suggest: int, low: 16, high: 128, log: true}
    model.width: [32, 64]                         # a list: a choice
    train.epochs: 10                              # a plain value: kept as it is
    optimizer:                                    # nested keys join with dots
      momentum: interval(0.8, 0.99)

``suggest_overrides(tune_cfg, trial)`` asks the trial for a value of each and
returns Hydra overrides (``['train.lr=0.0031', 'model.layers=2', ...]``), to
compose the configuration with (``hydra.compose(overrides=...)``) or to pass
on a command line.

Search spaces, as the Hydra Optuna sweeper reads them:

- ``choice(a, b, ...)`` and ``range(start, stop[, step])`` (stop excluded):
  ``trial.suggest_categorical`` over the values;
- ``interval(low, high)``: ``trial.suggest_float``; tagged ``log``,
  logarithmic; tagged ``int``, ``trial.suggest_int``;
- a mapping with ``suggest`` (``float``, ``int``, ``categorical``, or the
  method's full name): that ``trial.suggest_*`` method, with the other keys
  as its arguments;
- a list: ``trial.suggest_categorical`` over it.

The grammar strings need ``hydra-core``, imported only for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from drytorch_contrib_optuna.errors import OptunaError

__all__ = ['override_value', 'suggest_overrides']

_KINDS = ('float', 'int', 'categorical', 'discrete_uniform', 'loguniform', 'uniform')
_SWEEPS = ('choice(', 'range(', 'interval(', 'tag(', 'glob(')


def suggest_overrides(
    tune_cfg: Any, trial: Any, use_full_name: bool = False
) -> list[str]:
    """Return Hydra overrides with the values ``trial`` suggests for ``tune_cfg``.

    Args:
        tune_cfg: the tuning configuration: a mapping (a dict, an omegaconf
            ``DictConfig``) from keys to search spaces, nested or with dotted
            keys; or a list of Hydra overrides (``'train.lr=interval(0, 1)'``).
        trial: the ``optuna.Trial`` to ask.
        use_full_name: name each Optuna parameter by its whole key
            (``train.lr``) rather than its last part (``lr``).

    Returns:
        ``'<key>=<value>'`` strings, in the configuration's order.

    Raises:
        OptunaError: a search space is not valid, or two keys would share a
            parameter name (pass ``use_full_name=True``).
    """
    overrides: list[str] = []
    names: dict[str, str] = {}
    for key, space in _flatten(_plain(tune_cfg)):
        name = key if use_full_name else key.rsplit('.', 1)[-1].lstrip('+~')
        if name in names:
            raise OptunaError(
                f'Keys {names[name]!r} and {key!r} would both be the Optuna '
                f'parameter {name!r}: pass use_full_name=True.'
            )
        names[name] = key
        value = _suggest(trial, name, key, space)
        overrides.append(f'{key}={override_value(value)}')
    return overrides


def override_value(value: Any) -> str:
    """Return ``value`` written in Hydra's override grammar.

    Strings are quoted, so that ``'3'`` stays a string and text with commas
    or brackets stays one value.
    """
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'nan'
        if math.isinf(value):
            return 'inf' if value > 0 else '-inf'
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace('\\', '\\\\').replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, Sequence):
        return '[' + ','.join(override_value(item) for item in value) + ']'
    if isinstance(value, Mapping):
        items = (f'{key}:{override_value(item)}' for key, item in value.items())
        return '{' + ','.join(items) + '}'
    raise OptunaError(f'Cannot write {value!r} as a Hydra override value.')


def _plain(tune_cfg: Any) -> Any:
    """Return ``tune_cfg`` as plain data (an omegaconf container resolved)."""
    if type(tune_cfg).__module__.split('.')[0] == 'omegaconf':
        from omegaconf import OmegaConf

        return OmegaConf.to_container(tune_cfg, resolve=True)
    return tune_cfg


def _flatten(tune_cfg: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted key, search space)``; a list of overrides is parsed."""
    if isinstance(tune_cfg, Mapping):
        for key, space in tune_cfg.items():
            full = f'{prefix}{key}'
            if isinstance(space, Mapping) and 'suggest' not in space:
                yield from _flatten(space, f'{full}.')
            else:
                yield full, space
        return
    if isinstance(tune_cfg, Sequence) and not isinstance(tune_cfg, str):
        for item in tune_cfg:
            if not isinstance(item, str) or '=' not in item:
                raise OptunaError(
                    f'A tuning configuration given as a list holds overrides '
                    f"like 'train.lr=interval(0.001, 0.1)', not {item!r}."
                )
            key, space = item.split('=', 1)
            yield f'{prefix}{key.strip()}', space.strip()
        return
    raise OptunaError(
        'The tuning configuration must be a mapping from keys to search spaces '
        f'(a dict or a DictConfig) or a list of overrides, not {tune_cfg!r}.'
    )


def _suggest(trial: Any, name: str, key: str, space: Any) -> Any:
    """Ask ``trial`` for a value of ``space``; a plain value is returned as is."""
    if isinstance(space, Mapping):
        options = dict(space)
        kind = str(options.pop('suggest'))
        method = kind if kind.startswith('suggest_') else f'suggest_{kind}'
        if method.removeprefix('suggest_') not in _KINDS:
            raise OptunaError(
                f'{key}: unknown suggest {kind!r}; use one of '
                f'{", ".join(_KINDS[:3])} (trial.suggest_<kind>).'
            )
        try:
            return getattr(trial, method)(name, **options)
        except TypeError as error:
            raise OptunaError(f'{key}: trial.{method}: {error}') from error
    if isinstance(space, list | tuple):
        return trial.suggest_categorical(name, list(space))
    if isinstance(space, str) and space.replace(' ', '').startswith(_SWEEPS):
        return _suggest_sweep(trial, name, key, _parse_sweep(key, space))
    return space


def _parse_sweep(key: str, space: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f'{key}={space}')
    except HydraException as error:  # OverrideParseException among others
        raise OptunaError(f'{key}: {space!r} is not a Hydra sweep: {error}') from error
    return override


def _suggest_sweep(trial: Any, name: str, key: str, override: Any) -> Any:
    from hydra.core.override_parser.types import IntervalSweep

    if not override.is_sweep_override():
        return override.value()
    if override.is_discrete_sweep():  # choice, range
        return trial.suggest_categorical(name, list(override.sweep_iterator()))
    sweep = override.value()
    if isinstance(sweep, IntervalSweep):
        low, high, log = sweep.start, sweep.end, 'log' in sweep.tags
        if low is None or high is None:
            raise OptunaError(f'{key}: an interval needs both ends.')
        if 'int' in sweep.tags:
            return trial.suggest_int(name, int(low), int(high), log=log)
        return trial.suggest_float(name, low, high, log=log)
    raise OptunaError(
        f'{key}: {type(sweep).__name__} is no search space Optuna can sample; '
        'use choice(...), range(...) or interval(...).'
    )
