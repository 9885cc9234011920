"""SQLAlchemy for DRYTorch: a tracker keeping runs and metrics in a SQL database.

``SQLConnection`` and the ORM tables (``Experiment``, ``Run``, ``Source``,
``Log``, ``Tags``) are imported on first use, so importing this package (as
DRYTorch does when it loads the plugin) imports neither SQLAlchemy nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drytorch_contrib_sqlalchemy.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_sqlalchemy.tables import (
        Base,
        Experiment,
        Log,
        Run,
        Source,
        Tags,
    )
    from drytorch_contrib_sqlalchemy.tracker import SQLConnection

__all__ = [
    'Base',
    'Experiment',
    'Log',
    'Run',
    'SQLConnection',
    'Source',
    'Tags',
    '__version__',
]

_WHERE = {
    'SQLConnection': 'tracker',
    **dict.fromkeys(('Base', 'Experiment', 'Log', 'Run', 'Source', 'Tags'), 'tables'),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{module}'), name)
