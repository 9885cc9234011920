"""Freeze plain mutable configurations; refuse what can change or cannot be recorded.

Everything is checked when the ``Experiment`` is built, before anything is
written, so a refused configuration leaves no half-written record behind.
A dict, list, set, mutable dataclass or writable OmegaConf container (what
the original DRYTorch accepts) is first replaced by a frozen deep copy
(``freeze_config``): the user's object stays theirs to change, and the
configuration the run records is the one it uses.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from drytorch import hookimpl
from drytorch.core import exceptions, snapshot


class FrozenDict(dict[Any, Any]):
    """A dict that cannot be changed: the frozen copy of a dict configuration.

    It is a ``dict`` (``isinstance``, ``json.dumps`` and code written for the
    original's dict configs keep working), but every method that would change
    it raises ``TypeError``. It equals the dict it was copied from (lists
    inside compare equal to the tuples they became), pickles and copies.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            'the configuration of an experiment is a frozen copy and cannot be '
            'changed; change the original and create a new Experiment.'
        )

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return _thawed_equal(self, other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple((key, _hashable(item)) for key, item in self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f'FrozenDict({dict.__repr__(self)})'


def needs_freezing(config: Any) -> bool:
    """Whether ``config`` is a mutable container that ``freeze_config`` copies."""
    if isinstance(config, FrozenDict):
        return False
    if isinstance(config, dict | list | set):
        return True
    omegaconf = _omegaconf_of(config)
    if omegaconf is not None:
        return _writable_node(omegaconf, config, 'config') is not None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return not _is_frozen_dataclass(type(config))
    return False


def _is_frozen_dataclass(cls: type) -> bool:
    """Whether instances of the dataclass ``cls`` refuse assignment."""
    if cls.__dict__.get(_VIEW_MARK, False):
        return True
    params = getattr(cls, '__dataclass_params__', None)
    return params is None or bool(params.frozen)


def freeze_config(config: Any) -> Any:
    """Return ``config``, or a frozen deep copy of it if it can change in place.

    Dicts become ``FrozenDict`` objects, lists tuples, sets frozensets, all
    the way down; a mutable dataclass becomes an
    instance of a frozen view of its class (same name, fields, ``isinstance``
    and equality; assignment raises ``dataclasses.FrozenInstanceError``); a
    writable OmegaConf container becomes a read-only copy. The snapshot of
    the copy is the snapshot of the original, so it records and resumes by
    value exactly like it. Anything else is returned unchanged, for the
    validators to judge.

    Raises:
        ConfigNotRecordableError: the configuration holds values that cannot
            be recorded (checked before copying, with the usual message).
        ConfigNotImmutableError: it cannot be copied.
    """
    if not needs_freezing(config):
        return config
    check_recordable(config)  # cycles and unrecordable values, named clearly
    try:
        duplicate = copy.deepcopy(config)
    except Exception as error:
        raise exceptions.ConfigNotImmutableError(
            f'Configuration {type(config).__name__} can be changed in place and '
            f'could not be copied to freeze it ({type(error).__name__}: {error}). '
            'Use a frozen dataclass, a NamedTuple, a frozen pydantic model or a '
            'read-only OmegaConf container.'
        ) from error
    return _freeze(duplicate)


def _omegaconf_of(config: Any) -> Any:
    """Return the omegaconf module if ``config`` is one of its containers."""
    if not type(config).__module__.startswith('omegaconf'):
        return None
    omegaconf = sys.modules.get('omegaconf')  # a DictConfig implies it is imported
    if omegaconf is not None and isinstance(config, omegaconf.Container):
        return omegaconf
    return None


def _freeze(value: Any) -> Any:
    """Freeze ``value``, a deep copy that nothing else refers to, in place or anew."""
    omegaconf = _omegaconf_of(value)
    if omegaconf is not None:
        _set_read_only(omegaconf, value)
        return value
    if isinstance(value, Mapping) and not isinstance(value, FrozenDict):
        if isinstance(value, dict) or hasattr(value, '__setitem__'):
            return FrozenDict({k: _freeze(v) for k, v in value.items()})
        return value
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, set):
        return frozenset(value)  # set members are hashable, hence immutable
    if isinstance(value, tuple):
        items = [_freeze(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        if hasattr(value, '_asdict'):  # a NamedTuple
            return type(value)._make(items)  # type: ignore[attr-defined]
        return tuple(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _freeze_dataclass(value)
    return value


def _set_read_only(omegaconf: Any, node: Any) -> None:
    """Make every container node of an OmegaConf tree read-only."""
    omegaconf.OmegaConf.set_readonly(node, True)
    if node._is_none() or node._is_missing() or node._is_interpolation():
        return
    is_dict = isinstance(node, omegaconf.DictConfig)
    for key in list(node.keys()) if is_dict else range(len(node)):
        child = node._get_node(key)
        if isinstance(child, omegaconf.Container):
            _set_read_only(omegaconf, child)


_FROZEN_VIEWS: dict[type, type] = {}
_BUILDING = '_drytorch_building'
_VIEW_MARK = '__drytorch_frozen_view__'


def _freeze_dataclass(value: Any) -> Any:
    """Return a frozen view of a dataclass instance, fields frozen too."""
    cls = type(value)
    if _is_frozen_dataclass(cls):
        for field in dataclasses.fields(value):  # our own copy: safe to replace
            object.__setattr__(value, field.name, _freeze(getattr(value, field.name)))
        return value
    view = _frozen_view(cls)
    frozen: Any = object.__new__(view)
    extra = getattr(value, '__dict__', {})
    for name, item in extra.items():
        object.__setattr__(frozen, name, item)
    for field in dataclasses.fields(value):
        object.__setattr__(frozen, field.name, _freeze(getattr(value, field.name)))
    return frozen


def _frozen_view(cls: type) -> type:
    """Return the frozen view of a mutable dataclass ``cls`` (one per class).

    A subclass that refuses assignment once built: ``isinstance`` and the
    recorded class name (``module.qualname``) stay those of ``cls``.
    """
    view = _FROZEN_VIEWS.get(cls)
    if view is not None:
        return view
    fields = [field.name for field in dataclasses.fields(cls)]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, _BUILDING, True)
        try:
            cls.__init__(self, *args, **kwargs)  # type: ignore[misc]
        finally:
            object.__delattr__(self, _BUILDING)
        for name in fields:
            object.__setattr__(self, name, _freeze(copy.deepcopy(getattr(self, name))))

    def __setattr__(self: Any, name: str, item: Any) -> None:
        if self.__dict__.get(_BUILDING):
            object.__setattr__(self, name, item)
            return
        raise dataclasses.FrozenInstanceError(
            f'cannot assign to field {name!r}: the configuration of an experiment '
            'is a frozen copy; change the original and create a new Experiment.'
        )

    def __delattr__(self: Any, name: str) -> None:
        raise dataclasses.FrozenInstanceError(
            f'cannot delete field {name!r}: the configuration is a frozen copy.'
        )

    def __eq__(self: Any, other: object) -> bool:
        if not isinstance(other, cls):
            return NotImplemented
        return all(
            _thawed_equal(getattr(self, name), getattr(other, name)) for name in fields
        )

    def __hash__(self: Any) -> int:
        return hash(tuple(_hashable(getattr(self, name)) for name in fields))

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return (_rebuild, (cls, {name: getattr(self, name) for name in fields}))

    namespace = {
        '__init__': __init__,
        '__setattr__': __setattr__,
        '__delattr__': __delattr__,
        '__eq__': __eq__,
        '__hash__': __hash__,
        '__reduce__': __reduce__,
        '__module__': cls.__module__,
        '__qualname__': cls.__qualname__,
        '__doc__': cls.__doc__,
        _VIEW_MARK: True,
    }
    view = type(cls.__name__, (cls,), namespace)
    _FROZEN_VIEWS[cls] = view
    return view


def _rebuild(cls: type, state: Mapping[str, Any]) -> Any:
    """Unpickle a frozen view: rebuild it from ``cls`` and its field values."""
    original: Any = object.__new__(cls)
    for name, item in state.items():
        object.__setattr__(original, name, item)
    return _freeze_dataclass(original)


def _thawed_equal(frozen: Any, other: Any) -> bool:
    """Equality of a frozen field value with a possibly mutable one."""
    if isinstance(frozen, Mapping) and isinstance(other, Mapping):
        return frozen.keys() == other.keys() and all(
            _thawed_equal(frozen[key], other[key]) for key in frozen
        )
    if isinstance(frozen, tuple) and isinstance(other, list | tuple):
        return len(frozen) == len(other) and all(
            _thawed_equal(a, b) for a, b in zip(frozen, other, strict=True)
        )
    if isinstance(frozen, frozenset) and isinstance(other, set):
        return frozen == other
    return bool(frozen == other)


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple((key, _hashable(item)) for key, item in value.items())
    return value


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
        if not _is_frozen_dataclass(type(config)):
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
    if isinstance(config, dict | list | set) and not isinstance(config, FrozenDict):
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
