"""Refuse configurations that can change after creation or cannot be recorded.

Everything is checked when the ``Experiment`` is built, before anything is
written, so a refused configuration leaves no half-written record behind.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from drytorch import hookimpl
from drytorch.core import exceptions, snapshot


def check_immutable(config: Any) -> None:
    """Raise ``ConfigNotImmutableError`` if ``config`` can be changed in place."""
    kind = type(config).__name__
    if config is None or isinstance(config, tuple):  # NamedTuple included
        return
    omegaconf = sys.modules.get('omegaconf')  # a DictConfig implies it is imported
    if omegaconf is not None and isinstance(config, omegaconf.Container):
        _check_read_only(omegaconf, config, kind)
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
            'dataclass, a NamedTuple, a frozen pydantic model or a read-only '
            'OmegaConf container.'
        )


def check_recordable(config: Any) -> None:
    """Raise ``ConfigNotRecordableError`` for values the registry cannot record.

    A function or plain object in a configuration is recorded by its ``repr``,
    which holds a memory address: the same configuration would hash
    differently in the next process, and resuming its runs would be refused.
    """
    problems = snapshot.unrecordable(config)  # raises on cycles, keys, surrogates
    if problems:
        listed = '; '.join(problems)
        raise exceptions.ConfigNotRecordableError(
            f'The configuration holds values that cannot be recorded reproducibly: '
            f'{listed}. Store a name or number instead (for example the name of a '
            'function, looked up in your code).'
        )
    import tomli_w  # the registry's writer: what it refuses must be refused now

    try:
        tomli_w.dumps(snapshot.to_toml(config))
    except (TypeError, ValueError, UnicodeError) as error:
        raise exceptions.ConfigNotRecordableError(
            f'The configuration cannot be written as TOML ({error}). Store plain '
            'numbers, strings, lists and mappings with string keys.'
        ) from None


def _check_read_only(omegaconf: Any, config: Any, kind: str) -> None:
    """Refuse an OmegaConf container with a node that can be changed in place.

    Hydra hands ``@hydra.main`` functions a writable ``DictConfig``. It is not
    frozen here behind the user's back: that would change their object, and
    assignments elsewhere in their code would start failing far from the cause.
    A node can be made writable again below a read-only root, so every
    container node is checked.
    """
    place = _writable_node(omegaconf, config, 'config')
    if place is None:
        return
    fix = 'OmegaConf.set_readonly(cfg, True)'
    what = f'Configuration {kind} is not read-only'
    if place != 'config':  # a node's own flag wins over its parents'
        node = 'cfg' + place.removeprefix('config')
        fix = f'{fix} and OmegaConf.set_readonly({node}, True)'
        what = f'Configuration {kind} has a node made writable on its own, {node}'
    raise exceptions.ConfigNotImmutableError(
        f'{what}: it can change under the run, and an experiment is defined by a '
        'configuration that cannot change. Make it read-only before creating the '
        f'experiment: {fix}.'
    )


def _writable_node(omegaconf: Any, node: Any, where: str) -> str | None:
    """Return the path of the first writable container node, or ``None``."""
    if not omegaconf.OmegaConf.is_readonly(node):
        return where
    if node._is_none() or node._is_missing() or node._is_interpolation():
        return None
    is_dict = isinstance(node, omegaconf.DictConfig)
    keys = list(node.keys()) if is_dict else range(len(node))
    for key in keys:
        child = node._get_node(key)
        if isinstance(child, omegaconf.Container):
            path = f'{where}.{key}' if is_dict else f'{where}[{key}]'
            found = _writable_node(omegaconf, child, path)
            if found is not None:
                return found
    return None


@hookimpl
def validate_config(config: Any) -> None:
    """Refuse mutable configurations and values that cannot be recorded."""
    check_immutable(config)
    check_recordable(config)
