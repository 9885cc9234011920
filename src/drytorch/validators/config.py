"""Refuse experiment configurations that can change after creation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from drytorch.core import exceptions, snapshot
from drytorch.hookspecs._markers import hookimpl


def check_immutable(config: Any) -> None:
    """Raise ``ConfigNotImmutableError`` if ``config`` can be changed in place."""
    kind = type(config).__name__
    if config is None or isinstance(config, tuple):  # NamedTuple included
        return
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        params = getattr(type(config), '__dataclass_params__', None)
        if params is not None and not params.frozen:
            raise exceptions.ConfigNotImmutableError(
                f'Configuration {kind} is a mutable dataclass: an experiment is '
                'defined by a configuration that cannot change. Declare it with '
                '@dataclasses.dataclass(frozen=True).'
            )
        return
    model_config = getattr(type(config), 'model_config', None)
    if isinstance(model_config, Mapping) and hasattr(config, 'model_dump'):
        if not model_config.get('frozen', False):
            raise exceptions.ConfigNotImmutableError(
                f'Configuration {kind} is a pydantic model that is not frozen. '
                'Set model_config = ConfigDict(frozen=True) on it.'
            )
        return
    if isinstance(config, dict | list | set):
        raise exceptions.ConfigNotImmutableError(
            f'Configuration of type {kind} can be changed in place. Use a frozen '
            'dataclass, a NamedTuple or a frozen pydantic model.'
        )


def check_recordable(config: Any) -> None:
    """Raise ``ConfigNotRecordableError`` for values the registry cannot record.

    A function or plain object in a configuration is recorded by its ``repr``,
    which holds a memory address: the same configuration would hash
    differently in the next process, and resuming its runs would be refused.
    """
    problems = snapshot.unrecordable(config)
    if problems:
        listed = '; '.join(problems)
        raise exceptions.ConfigNotRecordableError(
            f'The configuration holds values that cannot be recorded reproducibly: '
            f'{listed}. Store a name or number instead (for example the name of a '
            'function, looked up in your code).'
        )


@hookimpl
def validate_config(config: Any) -> None:
    """Refuse mutable configurations and values that cannot be recorded."""
    check_immutable(config)
    check_recordable(config)
