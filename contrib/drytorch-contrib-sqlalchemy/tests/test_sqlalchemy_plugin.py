"""The plugin as DRYTorch sees it: entry point, trackers by name, laziness, reads."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

from drytorch import Experiment, testing

import drytorch_contrib_sqlalchemy
from drytorch_contrib_sqlalchemy import SQLConnection
from drytorch_contrib_sqlalchemy.tracker import DEFAULT_NAME

DISTRIBUTION = 'drytorch-contrib-sqlalchemy'
ENTRY_POINT = 'sqlalchemy'
ORIGIN = f'{DISTRIBUTION} {drytorch_contrib_sqlalchemy.__version__}'


def test_the_entry_point_is_installed() -> None:
    found = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group='drytorch')
        if entry_point.name == ENTRY_POINT
    ]
    assert len(found) == 1
    assert found[0].value == 'drytorch_contrib_sqlalchemy.plugin'
    assert found[0].dist is not None
    assert found[0].dist.metadata['Name'] == DISTRIBUTION


def test_the_host_loads_it_with_its_hooks(host: Any) -> None:
    infos = {info.name: info for info in host.plugins()}
    assert infos[ENTRY_POINT].origin == ORIGIN
    assert set(infos[ENTRY_POINT].hooks) == {
        'load_metrics',
        'run_outputs',
        'tracker_types',
    }
    assert ENTRY_POINT not in host.implementers('default_trackers')


def test_the_trackers_setting_names_it(tmp_path: pathlib.Path) -> None:
    project = tmp_path / 'project'
    work = project / 'work'  # settings are read per working directory
    work.mkdir(parents=True)
    (work / 'pyproject.toml').write_text(
        '[tool.drytorch]\ninit_mode = "none"\ntrackers = ["SQLConnection"]\n'
    )
    with testing.isolated(project):
        exp = Experiment(None, name='exp', par_dir='.')
        assert exp.trackers.names == ['SQLConnection']
        assert isinstance(exp.trackers.get('SQLConnection'), SQLConnection)
        with exp.create_run('r1'):
            pass
        assert (work / DEFAULT_NAME).is_file()


def test_experiments_do_not_get_it_by_default() -> None:
    assert 'SQLConnection' not in Experiment(None, name='exp').trackers


def test_loading_the_plugin_imports_no_sqlalchemy(tmp_path: pathlib.Path) -> None:
    code = (
        'import json, pathlib, sys\n'
        'from drytorch import testing\n'
        'with testing.isolated(pathlib.Path(sys.argv[1])) as host:\n'
        '    names = sorted(host.tracker_types())\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy")\n'
        'print(json.dumps({"names": names, "heavy": heavy}))\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, str(tmp_path / 'child')],
        cwd=tmp_path / 'work',
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert 'SQLConnection' in result['names']
    assert result['heavy'] == []


def test_run_outputs_names_the_database(
    tmp_path: pathlib.Path, host: Any, recorder: testing.HookRecorder
) -> None:
    with Experiment(None, name='exp', par_dir='.').create_run('r1'):
        pass  # a run it did not track
    exp = Experiment(None, name='exp2', par_dir='.')
    exp.trackers.subscribe(SQLConnection())
    with exp.create_run('r1'):
        pass
    database = (tmp_path / 'work' / DEFAULT_NAME).resolve()
    runs = [run for run in recorder.runs if run.experiment == 'exp2']
    assert runs, recorder.runs
    assert host.run_outputs(runs[-1], ENTRY_POINT) == {
        'SQLConnection': f'sqlite:///{database}'
    }
    first = [run for run in recorder.runs if run.experiment == 'exp'][-1]
    assert host.run_outputs(first, ENTRY_POINT) == {}
