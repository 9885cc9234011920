"""Init modes, trackers named in the settings, and missing optional dependencies."""

from __future__ import annotations

import logging
import pathlib
import textwrap

import pytest

import drytorch
from drytorch import Experiment
from drytorch.core import exceptions, plugins, tracking
from drytorch.trackers import logging as builtin_logging
from tests.conftest import run_python


def fresh() -> None:
    plugins.reset_host()
    tracking.reset_default_trackers()


@pytest.mark.parametrize(
    ('mode', 'names'),
    [
        ('standard', ['BuiltinLogger', 'TqdmLogger', 'TomlDumper', 'CSVDumper']),
        ('minimal', ['BuiltinLogger', 'TqdmLogger']),
        ('hydra', ['BuiltinLogger', 'TqdmLogger', 'TomlDumper', 'CSVDumper']),
        ('none', []),
    ],
)
def test_modes_from_the_environment(monkeypatch, mode: str, names: list[str]) -> None:
    monkeypatch.setenv('DRYTORCH_INIT_MODE', mode)
    fresh()
    assert Experiment(None, name=mode).trackers.names == names


def test_minimal_mode_keeps_one_bar_and_no_metadata() -> None:
    drytorch.init_trackers('minimal')
    exp = Experiment(None, name='quiet')
    bar = exp.trackers.get('TqdmLogger')
    assert bar.enable_training_bar and not bar.epoch_bars
    with exp.create_run():
        pass
    assert not (exp.par_dir / 'metadata').exists()


def test_standard_mode_writes_metadata() -> None:
    drytorch.init_trackers('standard')
    exp = Experiment(None, name='meta')
    with exp.create_run() as run:
        pass
    assert (exp.par_dir / 'metadata' / 'meta' / run.id / 'config.toml').is_file()


def test_hydra_mode_logs_through_the_root_logger(tmp_path: pathlib.Path) -> None:
    code = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(stream=sys.stdout, format='HYDRA %(message)s', level=20)
        from drytorch import Experiment
        with Experiment(None, name='hydra-job').create_run():
            pass
        """
    )
    done = run_python(code, tmp_path, {'DRYTORCH_INIT_MODE': 'hydra'})
    assert done.returncode == 0, done.stderr
    assert 'HYDRA Running experiment: hydra-job.' in done.stdout
    assert 'Running experiment' not in done.stderr


def test_hydra_logging_without_a_root_logger_goes_to_stdout(tmp_path) -> None:
    code = 'from drytorch import Experiment\nExperiment(None).create_run().start()\n'
    done = run_python(code, tmp_path, {'DRYTORCH_INIT_MODE': 'hydra'})
    assert 'Running experiment: Experiment.' in done.stdout
    logging.getLogger(builtin_logging.LOGGER_NAME)  # the test process is untouched


def test_trackers_named_in_pyproject_join_the_defaults(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'work' / 'pyproject.toml').write_text(
        '[tool.drytorch]\n'
        'init_mode = "none"\n'
        'trackers = ["CSVDumper", "SQLiteTracker"]\n'
    )
    fresh()
    exp = Experiment(None, name='named')
    assert exp.trackers.names == ['CSVDumper', 'SQLiteTracker']


def test_an_unknown_tracker_name_is_refused(monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_TRACKERS', 'CSVDumper,Nonexistent')
    fresh()
    with pytest.raises(exceptions.SettingsError, match=r'Nonexistent.*CSVDumper'):
        Experiment(None)


def test_a_missing_optional_dependency_gives_one_warning(tmp_path) -> None:
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules['matplotlib'] = None  # not installed
        warnings.simplefilter('always')
        from drytorch import Experiment
        exp = Experiment(None, name='plots')
        with exp.create_run():
            pass
        Experiment(None, name='again')
        print('TRACKERS', exp.trackers.names)
        """
    )
    env = {'DRYTORCH_INIT_MODE': 'none', 'DRYTORCH_TRACKERS': 'PlotTracker,CSVDumper'}
    done = run_python(code, tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "TRACKERS ['CSVDumper']" in done.stdout
    assert done.stderr.count('PlotTracker is unavailable') == 1
    assert 'drytorch[plot]' in done.stderr
