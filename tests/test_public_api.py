"""The public names users of the original DRYTorch expect are where they expect them."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    'drytorch': [
        'Experiment', 'Run', 'Model', 'DataLoader', 'LearningSchema', 'Loss', 'Metric',
        'Trainer', 'Validation', 'Test', 'Diagnostic', 'Tracker', 'hookimpl',
        'init_trackers', 'extend_default_trackers', 'remove_all_default_trackers',
    ],
    'drytorch.lib.objectives': [
        'Objective', 'Metric', 'MetricCollection', 'Loss', 'LossBase',
        'CompositionalLoss',
    ],
    'drytorch.lib.loading': ['DataLoader'],
    'drytorch.lib.runners': ['ModelRunner'],
    'drytorch.lib.hooks': [
        'EarlyStoppingCallback', 'ReduceLROnPlateau', 'saving_hook', 'call_every',
    ],
    'drytorch.lib.schedulers': [
        'ConstantScheduler', 'ExponentialScheduler', 'CosineScheduler',
        'StepScheduler', 'PolynomialScheduler', 'warmup', 'restart',
    ],
    'drytorch.lib.gradient_ops': ['GradNormClipper', 'GradValueClipper'],
    'drytorch.core.exceptions': [
        'NoActiveExperimentError', 'AccessOutsideScopeError',
        'ModuleAlreadyRegisteredError', 'ModuleNotRegisteredError',
    ],
    'drytorch.core.registering': ['unregister_model'],
}  # fmt: skip


@pytest.mark.parametrize('module_name', sorted(PUBLIC))
def test_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in PUBLIC[module_name] if not hasattr(module, name)]
    assert missing == []


def test_root_names_are_the_library_objects() -> None:
    import drytorch
    from drytorch.lib import loading, objectives, runners, train

    assert drytorch.Loss is objectives.Loss
    assert drytorch.DataLoader is loading.DataLoader
    assert drytorch.Test is runners.Test
    assert drytorch.Trainer is train.Trainer
    assert set(drytorch.__all__) <= set(dir(drytorch))
