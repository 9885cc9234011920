"""The public names users of the original DRYTorch expect are where they expect them."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

PUBLIC = {
    'drytorch': [
        'Experiment', 'Run', 'Model', 'DataLoader', 'LearningSchema', 'Loss', 'Metric',
        'Trainer', 'Validation', 'Test', 'Diagnostic', 'Tracker', 'hookimpl',
        'init_trackers', 'extend_default_trackers', 'remove_all_default_trackers',
        'AveragedModel', 'EMAModel', 'SWAModel',
    ],
    'drytorch.lib.models': ['AveragedModel', 'EMAModel', 'Model', 'SWAModel'],
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
    from drytorch.lib import loading, models, objectives, runners, train

    assert drytorch.Loss is objectives.Loss
    assert drytorch.EMAModel is models.EMAModel
    assert drytorch.DataLoader is loading.DataLoader
    assert drytorch.Test is runners.Test
    assert drytorch.Trainer is train.Trainer
    assert set(drytorch.__all__) <= set(dir(drytorch))


PLUGIN_MODULES = (
    'drytorch',
    'drytorch.log_events',
    'drytorch.exceptions',
    'drytorch.testing',
    'drytorch.trackers.base_classes',
)
"""What a plugin may import: the contract's public names (``docs/hooks.md``)."""


def _plugin_sources() -> list[pathlib.Path]:
    root = pathlib.Path(__file__).resolve().parents[1]
    places = [*root.glob('contrib/*/src'), *root.glob('tests/third_party/*/src')]
    return sorted(path for place in places for path in place.rglob('*.py'))


def _drytorch_imports(path: pathlib.Path) -> list[tuple[str, str | None]]:
    """Return ``(module, name)`` for each import of drytorch in a file."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            found.extend(
                (a.name, None) for a in node.names if a.name.split('.')[0] == 'drytorch'
            )
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split('.')[0] == 'drytorch'
        ):
            found.extend((node.module, a.name) for a in node.names)
    return found


def test_plugin_packages_import_only_public_names() -> None:
    sources = _plugin_sources()
    assert len({p.parts[p.parts.index('src') - 1] for p in sources}) >= 3, sources
    problems = []
    for path in sources:
        for module, name in _drytorch_imports(path):
            if module not in PLUGIN_MODULES:
                problems.append(f'{path}: imports {module}')
                continue
            public = getattr(importlib.import_module(module), '__all__', ())
            if name is not None and f'{module}.{name}' in PLUGIN_MODULES:
                continue  # `from drytorch import log_events`
            if name is not None and name not in public:
                problems.append(f'{path}: {module}.{name} is not public')
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('module_name', PLUGIN_MODULES)
def test_plugin_modules_export_what_they_list(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
