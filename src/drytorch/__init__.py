"""DRYTorch: reproducible, documented and reusable PyTorch experiments.

The names below are imported on first use, so ``import drytorch`` stays cheap
and loads neither torch nor any plugin. Plugin authors import from here, from
``drytorch.log_events``, ``drytorch.exceptions`` and ``drytorch.testing``:
these are the public names that the contract (``docs/hooks.md``) promises.

``INIT_MODE`` is the init mode of the default trackers as the settings give
it (``DRYTORCH_INIT_MODE``, else ``pyproject.toml``, else ``'standard'``),
read on first access; an unknown mode raises ``SettingsError`` then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drytorch.__about__ import __version__
from drytorch.hookspecs._markers import hookimpl

if TYPE_CHECKING:
    from drytorch.core.checkpointing import CheckpointLocation
    from drytorch.core.experiment import Experiment, Run
    from drytorch.core.run_view import RunView
    from drytorch.core.tracking import (
        Tracker,
        extend_default_trackers,
        init_trackers,
        remove_all_default_trackers,
    )
    from drytorch.lib.averaging import AveragedModel, EMAModel, SWAModel
    from drytorch.lib.learning import LearningSchema
    from drytorch.lib.loading import DataLoader
    from drytorch.lib.models import Model
    from drytorch.lib.objectives import Loss, Metric
    from drytorch.lib.runners import Diagnostic, Test, Validation
    from drytorch.lib.train import Trainer
    from drytorch.trackers.base import Dumper, MetricHistory

    INIT_MODE: str

__all__ = [
    'INIT_MODE',
    'AveragedModel',
    'CheckpointLocation',
    'DataLoader',
    'Diagnostic',
    'Dumper',
    'EMAModel',
    'Experiment',
    'LearningSchema',
    'Loss',
    'Metric',
    'MetricHistory',
    'Model',
    'Run',
    'RunView',
    'SWAModel',
    'Test',
    'Tracker',
    'Trainer',
    'Validation',
    '__version__',
    'extend_default_trackers',
    'hookimpl',
    'init_trackers',
    'remove_all_default_trackers',
]

_LAZY = {
    'Experiment': 'drytorch.core.experiment',
    'Run': 'drytorch.core.experiment',
    'RunView': 'drytorch.core.run_view',
    'CheckpointLocation': 'drytorch.core.checkpointing',
    'Dumper': 'drytorch.trackers.base',
    'MetricHistory': 'drytorch.trackers.base',
    'Tracker': 'drytorch.core.tracking',
    'extend_default_trackers': 'drytorch.core.tracking',
    'init_trackers': 'drytorch.core.tracking',
    'remove_all_default_trackers': 'drytorch.core.tracking',
    'Model': 'drytorch.lib.models',
    'AveragedModel': 'drytorch.lib.averaging',
    'EMAModel': 'drytorch.lib.averaging',
    'SWAModel': 'drytorch.lib.averaging',
    'DataLoader': 'drytorch.lib.loading',
    'LearningSchema': 'drytorch.lib.learning',
    'Loss': 'drytorch.lib.objectives',
    'Metric': 'drytorch.lib.objectives',
    'Diagnostic': 'drytorch.lib.runners',
    'Test': 'drytorch.lib.runners',
    'Validation': 'drytorch.lib.runners',
    'Trainer': 'drytorch.lib.train',
}


def __getattr__(name: str) -> Any:
    if name == 'INIT_MODE':
        from drytorch.core import settings

        mode = settings.get_settings().init_mode
        globals()[name] = mode
        return mode
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
