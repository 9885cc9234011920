"""The plugin as DRYTorch sees it: entry point, laziness, CLI, reading metrics back."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

import drytorch
import mlflow_kit as kit
import pytest
from drytorch import Experiment, MetricHistory, exceptions
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

import drytorch_contrib_mlflow
from drytorch_contrib_mlflow import MLflow, plugin

pytestmark = [
    pytest.mark.filterwarnings('error::drytorch.exceptions.TrackerFailureWarning'),
    # MLflow's store with SQLAlchemy 2.1, once per process: not ours to fix
    pytest.mark.filterwarnings('ignore:The ``noload`` loader strategy'),
]
DISTRIBUTION = 'drytorch-contrib-mlflow'
ENTRY_POINT = 'mlflow'
HOOKS = ['load_metrics', 'run_outputs', 'tracker_types']
TIMEOUT = 120  # seconds, for each process a test starts


def drytorch_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``drytorch`` command with the test's environment (registry...)."""
    script = shutil.which('drytorch', path=str(pathlib.Path(sys.executable).parent))
    assert script is not None, 'the drytorch console script is not installed'
    done = subprocess.run(
        [script, *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


class _View:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def plugin_state(self, name: str) -> dict[str, Any]:
        return dict(self.state) if name == 'mlflow' else {}


def recorded(state: dict[str, Any]) -> Any:
    """The part of a recorded ``RunView`` that the plugin reads."""
    return _View(state)


def test_the_entry_point_is_installed() -> None:
    (found,) = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group='drytorch')
        if entry_point.name == ENTRY_POINT
    ]
    assert found.value == 'drytorch_contrib_mlflow.plugin'
    assert found.dist is not None
    assert found.dist.metadata['Name'] == DISTRIBUTION
    assert found.dist.version == drytorch_contrib_mlflow.__version__


def test_drytorch_plugins_lists_it() -> None:
    rows = json.loads(drytorch_cli('plugins', '--json').stdout)
    (row,) = [row for row in rows if row['name'] == ENTRY_POINT]
    assert row['origin'] == f'{DISTRIBUTION} {drytorch_contrib_mlflow.__version__}'
    assert row['hooks'] == HOOKS


def test_offered_by_name_without_importing_mlflow(tmp_path: pathlib.Path) -> None:
    """A fresh process, trackers named in pyproject.toml: the plugin builds it.

    Loading the plugin and building the tracker import no MLflow.
    """
    project = tmp_path / 'project'
    project.mkdir()
    (project / 'pyproject.toml').write_text('[tool.drytorch]\ntrackers = ["MLflow"]\n')
    code = (
        'import json, sys\n'
        'from drytorch import Experiment\n'
        'exp = Experiment(None, name="lazy", par_dir=".")\n'
        'print(json.dumps([exp.trackers.names, "mlflow" in sys.modules]))\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code],
        cwd=project,
        env=dict(os.environ),  # DRYTORCH_INIT_MODE=none, no DRYTORCH_TRACKERS
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names, imported = json.loads(done.stdout.splitlines()[-1])
    assert names == ['MLflow']
    assert not imported, 'loading the plugin or building the tracker imported MLflow'


@pytest.mark.parametrize('mode', ['standard', 'minimal', 'hydra', 'none'])
def test_never_a_default_tracker(mode: str) -> None:
    drytorch.init_trackers(mode)
    assert 'MLflow' not in Experiment(None, name='plain', par_dir='.').trackers.names


def test_without_mlflow_the_factory_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, 'mlflow', None)  # as if not installed
    with pytest.raises(ImportError, match='pip install drytorch-contrib-mlflow'):
        MLflow()


def test_a_database_store_needs_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'sqlalchemy', None)
    with pytest.raises(ImportError, match='sqlalchemy'):
        MLflow('sqlite:///elsewhere.db')
    MLflow('http://localhost:5000')  # a server needs neither


@pytest.mark.drytorch_settings(init_mode='none', trackers='MLflow')
def test_without_mlflow_the_setting_skips_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'mlflow', None)
    with pytest.warns(exceptions.DryTorchWarning, match='MLflow'):
        exp = Experiment(None, name='skipped', par_dir='.')
    assert 'MLflow' not in exp.trackers.names


def test_show_and_plot_read_an_mlflow_only_run(
    exp_name: str, tracking_uri: str, tmp_path: pathlib.Path
) -> None:
    pytest.importorskip('matplotlib')
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(MLflow())  # the only tracker: no CSV, no SQLite files
    with exp.create_run(run_id='shown'):
        trainer, test = kit.build()
        trainer.train(3)
        test()
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(exp_name)
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    ids = f'experiment {found.info.experiment_id}, run {found.info.run_id}'
    where = f'{tracking_uri} ({ids})'

    shown = drytorch_cli('show', 'shown', '--experiment', exp_name, '--json').stdout
    assert where in shown
    assert json.loads(shown)['outputs']['MLflow'] == where
    out = tmp_path / 'curves.png'
    drytorch_cli('plot', 'shown', '--experiment', exp_name, '--out', str(out))
    assert out.read_bytes().startswith(b'\x89PNG')


def test_load_metrics_keeps_the_latest_point_of_an_epoch(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f'read-{time.time_ns()}')
    run_id = client.create_run(experiment_id).info.run_id
    points = [
        ('net/Trainer/MSE', 1.0, 1000, 1),
        ('net/Trainer/MSE', 0.8, 2000, 2),
        ('net/Trainer/MSE', 0.5, 3000, 3),
        ('net/Trainer/MSE', 0.7, 4000, 2),  # epoch 2 again, after a resume
        ('net/Validation/MSE', 0.9, 2000, 2),
        ('net/Validation/Accuracy', 0.6, 2000, 2),
        ('loss', 1.0, 1000, 1),  # not logged by the tracker: left out
    ]
    client.log_batch(run_id, metrics=[Metric(*point) for point in points])
    state = {'tracking_uri': tracking_uri, 'experiment_id': experiment_id}
    state['run_id'] = run_id
    assert plugin.load_metrics(recorded(state)) == {
        'net': {
            'Trainer': MetricHistory(epochs=[1, 2], values={'MSE': [1.0, 0.7]}),
            'Validation': MetricHistory(
                epochs=[2], values={'Accuracy': [0.6], 'MSE': [0.9]}
            ),
        }
    }


def test_load_metrics_answers_none_without_creating_anything(
    tmp_path: pathlib.Path,
) -> None:
    assert plugin.load_metrics(recorded({})) is None
    assert plugin.run_outputs(recorded({})) is None
    gone = tmp_path / 'gone.db'
    state = {'tracking_uri': f'sqlite:///{gone}', 'experiment_id': '1', 'run_id': 'x'}
    assert plugin.load_metrics(recorded(state)) is None
    assert not gone.exists()
    assert plugin.run_outputs(recorded(state)) == {
        'MLflow': f'sqlite:///{gone} (experiment 1, run x)'
    }
