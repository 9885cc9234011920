"""Hooks through which plugins offer trackers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.tracking import Tracker


@hookspec
def default_trackers(mode: str) -> Sequence[Tracker]:
    """Query: the trackers this plugin adds to new experiments in ``mode``.

    ``mode`` is one of ``drytorch.core.tracking.INIT_MODES``. Results of all
    plugins are concatenated; tracker names must stay unique. Return fresh
    instances: each call builds the defaults once for the whole process.
    """
    raise NotImplementedError


@hookspec
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Query: tracker factories this plugin offers, by tracker name.

    Lets users and ``drytorch plugins`` find trackers by name without
    importing their modules by hand.
    """
    raise NotImplementedError
