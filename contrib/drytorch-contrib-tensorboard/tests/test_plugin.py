"""The plugin as DRYTorch sees it: entry point, CLI, trackers by name, laziness."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest
from drytorch import Experiment, testing

import drytorch_contrib_tensorboard
from drytorch_contrib_tensorboard import TensorBoard

DISTRIBUTION = 'drytorch-contrib-tensorboard'
ENTRY_POINT = 'tensorboard'
ORIGIN = f'{DISTRIBUTION} {drytorch_contrib_tensorboard.__version__}'
INIT_MODES = ('standard', 'minimal', 'hydra', 'none')


def run(args: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run a command with the test's DRYTorch environment (registry, settings)."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_entry_point_is_installed() -> None:
    found = [
        entry_point
        for entry_point in importlib.metadata.entry_points(group='drytorch')
        if entry_point.name == ENTRY_POINT
    ]
    assert len(found) == 1
    assert found[0].value == 'drytorch_contrib_tensorboard.plugin'
    assert found[0].dist is not None
    assert found[0].dist.metadata['Name'] == DISTRIBUTION
    assert found[0].dist.version == drytorch_contrib_tensorboard.__version__


def test_the_host_loads_it_from_its_distribution(host: Any) -> None:
    infos = {info.name: info for info in host.plugins()}
    assert infos[ENTRY_POINT].origin == ORIGIN
    assert infos[ENTRY_POINT].hooks == ('tracker_types',)


def test_drytorch_plugins_lists_it(tmp_path: pathlib.Path) -> None:
    script = shutil.which('drytorch', path=str(pathlib.Path(sys.executable).parent))
    assert script is not None, 'the drytorch console script is not installed'
    rows = json.loads(run([script, 'plugins', '--json'], tmp_path / 'work').stdout)
    by_name = {row['name']: row for row in rows}
    assert by_name[ENTRY_POINT] == {
        'name': ENTRY_POINT,
        'origin': ORIGIN,
        'hooks': ['tracker_types'],
    }


def test_it_offers_the_tracker_by_name(host: Any) -> None:
    assert host.tracker_types()['TensorBoard'] is TensorBoard
    assert ENTRY_POINT in host.implementers('tracker_types')


@pytest.mark.parametrize('mode', INIT_MODES)
def test_installing_it_adds_no_default_tracker(host: Any, mode: str) -> None:
    defaults = host.default_trackers(mode)
    assert not any(isinstance(tracker, TensorBoard) for tracker in defaults)
    assert ENTRY_POINT not in host.implementers('default_trackers')


def test_experiments_do_not_get_it_by_default() -> None:
    assert 'TensorBoard' not in Experiment(None, name='exp').trackers


def test_the_trackers_setting_names_it(tmp_path: pathlib.Path) -> None:
    project = tmp_path / 'project'
    work = project / 'work'  # settings are read per working directory
    work.mkdir(parents=True)
    (work / 'pyproject.toml').write_text(
        '[tool.drytorch]\ninit_mode = "none"\ntrackers = ["TensorBoard"]\n'
    )
    with testing.isolated(project):  # its working directory: project/work
        exp = Experiment(None, name='exp')
        assert exp.trackers.names == ['TensorBoard']
        assert isinstance(exp.trackers.get('TensorBoard'), TensorBoard)


def test_loading_the_plugin_imports_no_tensorboard(tmp_path: pathlib.Path) -> None:
    code = (
        'import json, pathlib, sys\n'
        'from drytorch import testing\n'
        'with testing.isolated(pathlib.Path(sys.argv[1])) as host:\n'
        '    names = sorted(host.tracker_types())\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] == "tensorboard"\n'
        '               or m.startswith("torch.utils.tensorboard"))\n'
        'print(json.dumps({"names": names, "heavy": heavy}))\n'
    )
    args = [sys.executable, '-c', code, str(tmp_path / 'child')]
    result = json.loads(run(args, tmp_path / 'work').stdout)
    assert 'TensorBoard' in result['names']
    assert result['heavy'] == []
