"""The original DRYTorch's tracker and contrib paths import, and forward to contrib.

Written from ``shared/spec/original-api.md`` (``Other trackers`` and ``contrib``
rows). The names whose implementation is a ``drytorch-contrib-*`` package are
the contrib package's objects when it is installed; when it is not (simulated
honestly: ``sys.modules[name] = None`` is how Python marks a blocked import),
the import fails with an ``ImportError`` that names the package to install.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from drytorch import DataLoader
from drytorch.core.exceptions import DryTorchError, DryTorchWarning
from drytorch.trackers import base
from drytorch.trackers._contrib import ContribPackageMissingError
from drytorch.trackers.csv import CSVDumper
from drytorch.trackers.plot import PlotError
from tests import training_kit as kit
from tests.conftest import run_python

FORWARDED = [
    ('drytorch.trackers.wandb', 'Wandb', 'drytorch_contrib_wandb', 'wandb'),
    (
        'drytorch.trackers.tensorboard',
        'TensorBoard',
        'drytorch_contrib_tensorboard',
        'tensorboard',
    ),
    ('drytorch.trackers.hydra', 'HydraLink', 'drytorch_contrib_hydra', 'hydra'),
    ('drytorch.contrib.optuna', 'TrialCallback', 'drytorch_contrib_optuna', 'optuna'),
    (
        'drytorch.contrib.optuna',
        'suggest_overrides',
        'drytorch_contrib_optuna',
        'optuna',
    ),
    ('drytorch.contrib.optuna', 'get_final_value', 'drytorch_contrib_optuna', 'optuna'),
    ('drytorch.contrib.optuna', 'OptunaError', 'drytorch_contrib_optuna', 'optuna'),
]


def val_loader() -> DataLoader[Any]:
    return DataLoader(kit.regression(16, seed=1), 8)


def fresh(module: str) -> Any:
    """Import ``module`` anew (forwarders cache what they resolved)."""
    sys.modules.pop(module, None)
    return importlib.import_module(module)


@pytest.fixture
def restore_modules() -> Iterator[None]:
    """Put back every module a test removed or blocked."""
    saved = dict(sys.modules)
    yield
    for name in set(sys.modules) - set(saved):
        del sys.modules[name]
    sys.modules.update(saved)


def block(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` (and its submodules) impossible to import."""
    for name in list(sys.modules):
        if name.startswith(f'{package}.'):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


# --- names forwarded to installed contrib packages -------------------------------


@pytest.mark.parametrize(('module', 'name', 'package', 'label'), FORWARDED)
def test_original_path_is_the_contrib_object(
    module: str, name: str, package: str, label: str, restore_modules: None
) -> None:
    """``from drytorch.<original path> import <name>`` gives the contrib's object."""
    forwarder = fresh(module)
    contrib = importlib.import_module(package)
    value = getattr(forwarder, name)
    if name == 'Wandb':  # a thin subclass taking the original's arguments
        assert issubclass(value, contrib.Wandb)
    else:
        assert value is getattr(contrib, name)
    assert name in forwarder.__all__
    with pytest.raises(AttributeError):
        forwarder.NotAName  # noqa: B018


@pytest.mark.parametrize(('module', 'name', 'package', 'label'), FORWARDED)
def test_missing_contrib_package_is_named(
    module: str,
    name: str,
    package: str,
    label: str,
    monkeypatch: pytest.MonkeyPatch,
    restore_modules: None,
) -> None:
    block(monkeypatch, package)
    forwarder = fresh(module)  # importing the module itself never fails
    distribution = f'drytorch-contrib-{label}'
    with pytest.raises(ContribPackageMissingError) as caught:
        exec(f'from {module} import {name}', {})
    error = caught.value
    assert isinstance(error, ModuleNotFoundError)
    assert isinstance(error, ImportError)
    assert isinstance(error, DryTorchError)
    assert error.name == package
    assert f'pip install {distribution}' in str(error)
    assert f'{module}.{name}' in str(error)
    assert forwarder.__name__ == module


def test_a_missing_dependency_of_a_contrib_package_is_not_masked(
    monkeypatch: pytest.MonkeyPatch, restore_modules: None
) -> None:
    """Only the contrib package itself missing is reported as 'install it'."""
    for name in list(sys.modules):
        if name.startswith('drytorch_contrib_tensorboard'):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, 'tomli_w', None)  # it imports tomli_w
    forwarder = fresh('drytorch.trackers.tensorboard')
    with pytest.raises(ModuleNotFoundError) as caught:
        forwarder.TensorBoard  # noqa: B018
    assert not isinstance(caught.value, ContribPackageMissingError)
    assert caught.value.name == 'tomli_w'


def test_forwarders_import_nothing_heavy(tmp_path: pathlib.Path) -> None:
    """The forwarding modules cost nothing until a name is used."""
    done = run_python(
        'import sys\n'
        'import drytorch.trackers.wandb, drytorch.trackers.tensorboard\n'
        'import drytorch.trackers.hydra, drytorch.contrib.optuna\n'
        'import drytorch.trackers.sqlalchemy, drytorch.trackers.plotly\n'
        'import drytorch.trackers.yaml, drytorch.trackers.base_classes\n'
        'import drytorch.trackers.matplotlib\n'
        'heavy = {"torch", "wandb", "tensorboard", "hydra", "omegaconf", "optuna",\n'
        '         "yaml", "matplotlib", "sqlalchemy", "plotly"}\n'
        'found = sorted(m for m in sys.modules if m.split(".")[0] in heavy)\n'
        'found += sorted(m for m in sys.modules if m.startswith("drytorch_contrib"))\n'
        'assert not found, found\n',
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_wandb_takes_the_original_arguments(tmp_path: pathlib.Path) -> None:
    """``Wandb(par_dir=None, settings=...)``, ``WandbWarning``."""
    wandb = pytest.importorskip('wandb')
    from drytorch.trackers.wandb import Wandb, WandbWarning

    settings = wandb.Settings(project='from-settings', mode='offline')
    tracker = Wandb(tmp_path, settings)
    assert tracker.dir == tmp_path
    assert tracker.project == 'from-settings'
    assert tracker.init_kwargs == {'settings': settings}
    assert Wandb(settings=settings, project='mine').project == 'mine'
    assert Wandb(dir=tmp_path).dir == tmp_path  # ours still works
    assert Wandb.__module__ == 'drytorch.trackers.wandb'
    assert type(tracker).__name__ == tracker.name == 'Wandb'
    with pytest.raises(TypeError, match='not both'):
        Wandb(tmp_path, dir=tmp_path)
    assert issubclass(WandbWarning, DryTorchWarning)


# --- trackers.sqlalchemy and trackers.plotly: drytorch-contrib-sqlalchemy/-plotly --

SQL_AND_PLOTLY = [
    ('drytorch.trackers.sqlalchemy', 'SQLConnection', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.sqlalchemy', 'Experiment', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.sqlalchemy', 'Run', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.sqlalchemy', 'Source', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.sqlalchemy', 'Log', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.sqlalchemy', 'Tags', 'drytorch_contrib_sqlalchemy'),
    ('drytorch.trackers.plotly', 'PlotlyPlotter', 'drytorch_contrib_plotly'),
]


def reimport(monkeypatch: pytest.MonkeyPatch, module: str) -> Any:
    """Import ``module`` anew; the old one is put back after the test.

    Unlike ``restore_modules``, what the test imported stays imported:
    SQLAlchemy imports some of its modules on first use, and removing those
    would leave two copies of them in the process.
    """
    monkeypatch.delitem(sys.modules, module, raising=False)
    return importlib.import_module(module)


@pytest.mark.parametrize(('module', 'name', 'package'), SQL_AND_PLOTLY)
def test_sqlalchemy_and_plotly_names_are_the_contrib_objects(
    module: str, name: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trackers.sqlalchemy.SQLConnection`` (+ ORM tables), ``trackers.plotly``."""
    pytest.importorskip(package)
    forwarder = reimport(monkeypatch, module)
    assert getattr(forwarder, name) is getattr(importlib.import_module(package), name)
    assert name in forwarder.__all__
    with pytest.raises(AttributeError):
        forwarder.NotAName  # noqa: B018


@pytest.mark.parametrize(('module', 'name', 'package'), SQL_AND_PLOTLY)
def test_missing_sqlalchemy_or_plotly_package_is_named(
    module: str,
    name: str,
    package: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block(monkeypatch, package)
    forwarder = reimport(monkeypatch, module)  # importing it never fails
    with pytest.raises(ContribPackageMissingError) as caught:
        exec(f'from {module} import {name}', {})
    distribution = package.replace('_', '-')
    assert caught.value.name == package
    assert f'pip install {distribution}' in str(caught.value)
    assert f'{module}.{name}' in str(caught.value)
    assert isinstance(caught.value, ImportError)
    assert distribution == forwarder.DISTRIBUTION


def test_a_missing_sqlalchemy_is_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contrib package is there, SQLAlchemy is not: that is what is said."""
    pytest.importorskip('drytorch_contrib_sqlalchemy')
    for name in list(sys.modules):
        if name.startswith('drytorch_contrib_sqlalchemy.'):
            monkeypatch.delitem(sys.modules, name)
    block(monkeypatch, 'sqlalchemy')
    forwarder = reimport(monkeypatch, 'drytorch.trackers.sqlalchemy')
    with pytest.raises(ModuleNotFoundError) as caught:
        forwarder.SQLConnection  # noqa: B018
    assert not isinstance(caught.value, ContribPackageMissingError)
    assert caught.value.name == 'sqlalchemy'


def test_sqlconnection_at_the_original_path_stores_and_loads_metrics() -> None:
    """``SQLConnection(engine=None)``: ``sqlite:///metrics.db``, loaded back."""
    pytest.importorskip('drytorch_contrib_sqlalchemy')
    import sqlalchemy as sa

    from drytorch.trackers.sqlalchemy import Log, SQLConnection

    tracker = SQLConnection()
    exp = kit.experiment()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(val_loader())
        trainer.train(2)
    loaded = tracker.load_metrics('exp', 'r')
    (model,) = loaded
    assert sorted(loaded[model]) == ['Trainer', 'Validation']
    assert loaded[model]['Trainer'].epochs == [1, 2]
    engine = sa.create_engine(f'sqlite:///{pathlib.Path("metrics.db").resolve()}')
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(Log))
        assert count.scalar() == 4  # one loss, two sources, two epochs
    engine.dispose()


def test_plotly_plotter_at_the_original_path_draws_a_resumed_run() -> None:
    """``PlotlyPlotter(metric_loader=SQLConnection())``: earlier curves first."""
    pytest.importorskip('drytorch_contrib_plotly')
    pytest.importorskip('drytorch_contrib_sqlalchemy')
    from drytorch.trackers.plotly import PlotlyPlotter
    from drytorch.trackers.sqlalchemy import SQLConnection

    exp = kit.experiment()
    exp.trackers.subscribe(SQLConnection())
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.train(2)
    model = trainer.model.name
    plotter = PlotlyPlotter(metric_loader=SQLConnection(), start=1)
    exp = kit.experiment()
    exp.trackers.subscribe(plotter)
    with exp.create_run(run_id='r', resume=True):
        drawn = plotter.plot(model)
    assert drawn == list(plotter.model_dict[model]['Trainer'].values)
    (trace,) = plotter.figures[model, drawn[0]].data
    assert trace.name == 'Trainer'
    assert list(trace.x) == [1, 2]
    assert list(trace.y) == plotter.model_dict[model]['Trainer'].values[drawn[0]]


# --- trackers.yaml ---------------------------------------------------------------


def _tree(folder: pathlib.Path, suffix: str) -> dict[str, Any]:
    import yaml

    found = {}
    for path in sorted(folder.rglob(f'*{suffix}')):
        text = path.read_text()
        key = str(path.relative_to(folder).with_suffix(''))
        found[key] = tomllib.loads(text) if suffix == '.toml' else yaml.safe_load(text)
    return found


def test_yaml_dumper_writes_toml_dumper_content_as_yaml() -> None:
    """``trackers.yaml.YamlDumper(par_dir=None)``: YAML under ``metadata/``."""
    from drytorch.trackers.yaml import YamlDumper, dumps

    exp = kit.experiment()
    exp.trackers.subscribe(YamlDumper())
    assert 'TomlDumper' in exp.trackers.names  # the standard mode's
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(val_loader())
        trainer.train(1)
    folder = pathlib.Path('metadata', 'exp', 'r')
    yaml_files, toml_files = _tree(folder, '.yaml'), _tree(folder, '.toml')
    assert set(yaml_files) == {'config', 'Model/architecture', 'Model/Trainer',
                               'Model/Validation'}  # fmt: skip
    assert yaml_files == toml_files
    assert yaml_files['Model/architecture']['n_parameters'] == 4
    assert dumps({'text': 'a\nb', 'short': [1, 2], 'long': list(range(11))}) == (
        'text: |-\n  a\n  b\nshort: [1, 2]\nlong:\n'
        + ''.join(f'- {n}\n' for n in range(11))
    )  # blocks for text with line breaks, one line for short lists


def test_yaml_dumper_keeps_a_differing_file(tmp_path: pathlib.Path) -> None:
    from drytorch.trackers.yaml import YamlDumper

    exp = kit.experiment()
    exp.trackers.subscribe(YamlDumper(par_dir=tmp_path))
    config = tmp_path / 'metadata' / 'exp' / 'r' / 'config.yaml'
    config.parent.mkdir(parents=True)
    config.write_text('value: something else\n')
    with exp.create_run(run_id='r'):
        pass
    assert config.with_name('config.1.yaml').read_text() == 'value: something else\n'
    assert config.read_text() == 'value: <None>\n'


def test_yaml_constants_and_missing_pyyaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from drytorch.trackers import yaml as yaml_tracker

    assert yaml_tracker.MAX_LENGTH_PLAIN_REPR == 30
    assert yaml_tracker.MAX_LENGTH_SHORT_REPR == 10
    assert yaml_tracker.TS_FMT == '%Y-%m-%d@%Hh%Mm%Ss'
    monkeypatch.setitem(sys.modules, 'yaml', None)
    with pytest.raises(ImportError, match='pip install pyyaml'):
        yaml_tracker.YamlDumper()


# --- trackers.base_classes -------------------------------------------------------


def test_base_classes_dumper_and_metric_loader_are_ours() -> None:
    """``trackers.base_classes.Dumper``, ``MetricLoader``."""
    from drytorch.trackers import base_classes

    assert base_classes.Dumper is base.Dumper
    assert base_classes.MetricLoader is base.MetricLoader


def test_memory_metrics_keeps_every_metric() -> None:
    """``trackers.base_classes.MemoryMetrics(metric_loader=None)``; ``model_dict``."""
    from drytorch.trackers.base_classes import MemoryMetrics

    exp = kit.experiment()
    memory, csv = MemoryMetrics(), CSVDumper()
    exp.trackers.remove('CSVDumper')
    exp.trackers.subscribe(memory, csv)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(val_loader())
        trainer.train(2)
    history = memory.model_dict['Model']
    assert set(history) == {'Trainer', 'Validation'}
    assert history['Trainer'].epochs == [1, 2]
    assert len(history['Validation'].values['MSE']) == 2
    assert (
        history['Validation'].values['MSE'][-1]
        == (trainer.validation.computed_metrics['MSE'])
    )
    exp.trackers.remove('MemoryMetrics')
    resumed = MemoryMetrics(metric_loader=csv)
    exp.trackers.subscribe(resumed)
    with exp.create_run(run_id='r', resume=True):
        assert resumed.model_dict['Model']['Trainer'].epochs == [1, 2]
        assert resumed.model_dict == memory.model_dict


def test_base_plotter_draws_through_plot_metric() -> None:
    """``trackers.base_classes.BasePlotter(model_names, source_names, metric_names,
    start, metric_loader)`` and ``plot(model_name, source_names, metric_names,
    start_epoch)``."""
    from drytorch.trackers.base_classes import BasePlotter

    drawn: list[tuple[str, str, dict[str, Any]]] = []

    class Plotter(BasePlotter):
        def plot_metric(self, model_name: str, metric_name: str, curves: Any) -> None:
            drawn.append((model_name, metric_name, dict(curves)))

    exp = kit.experiment()
    plotter = Plotter(source_names=['Validation'], start=2)
    exp.trackers.subscribe(plotter)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(val_loader())
        trainer.train(3)
        assert [(m, name) for m, name, _ in drawn] == [('Model', 'MSE')] * 2
        assert [curves['Validation'][0] for _, _, curves in drawn] == [[2], [2, 3]]
        drawn.clear()
        assert plotter.plot('Model', source_names=['Trainer'], start_epoch=1) == ['MSE']
        [(_, _, curves)] = drawn
        assert curves['Trainer'][0] == [1, 2, 3]
        with pytest.raises(PlotError, match='No metrics of model'):
            plotter.plot('Other')
    with pytest.raises(PlotError, match='start'):
        Plotter(start=-1)


def test_matplotter_draws_live_figures() -> None:
    """``trackers.matplotlib.MatPlotter(...)``; ``close_all()``."""
    pytest.importorskip('matplotlib')
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from drytorch.trackers.matplotlib import MatPlotter

    exp = kit.experiment()
    plotter = MatPlotter(metric_names=['MSE'])
    exp.trackers.subscribe(plotter)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(val_loader())
        trainer.train(2)
    figure = plotter.figures['Model', 'MSE']
    assert plt.fignum_exists(figure.number)
    assert figure.get_label() == 'Model: MSE'
    lines = {line.get_label(): list(line.get_xdata()) for line in figure.axes[0].lines}
    assert lines == {'Trainer': [1, 2], 'Validation': [1, 2]}
    plotter.close_all()
    assert not plt.fignum_exists(figure.number)
    assert plotter.figures == {}
