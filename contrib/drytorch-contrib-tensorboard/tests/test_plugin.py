"""The plugin as DRYTorch sees it: entry point, CLI, trackers by name, laziness."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from drytorch import Experiment
from drytorch.core import plugins, tracking

import drytorch_contrib_tensorboard
from drytorch_contrib_tensorboard import TensorBoard

DISTRIBUTION = 'drytorch-contrib-tensorboard'
ENTRY_POINT = 'tensorboard'
ORIGIN = f'{DISTRIBUTION} {drytorch_contrib_tensorboard.__version__}'


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


def test_the_host_loads_it_from_its_distribution(host: plugins.PluginHost) -> None:
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


def test_it_offers_the_tracker_by_name(host: plugins.PluginHost) -> None:
    offered: dict[str, object] = {}
    for types in host.hook.tracker_types():
        offered.update(types)
    assert offered['TensorBoard'] is TensorBoard


@pytest.mark.parametrize('mode', tracking.INIT_MODES)
def test_installing_it_adds_no_default_tracker(
    host: plugins.PluginHost, mode: str
) -> None:
    defaults = [t for result in host.hook.default_trackers(mode=mode) for t in result]
    assert not any(isinstance(tracker, TensorBoard) for tracker in defaults)


def test_experiments_do_not_get_it_by_default() -> None:
    assert 'TensorBoard' not in Experiment(None, name='exp').trackers


def test_the_trackers_setting_names_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / 'project'  # settings are read per working directory
    project.mkdir()
    (project / 'pyproject.toml').write_text(
        '[tool.drytorch]\ninit_mode = "none"\ntrackers = ["TensorBoard"]\n'
    )
    monkeypatch.chdir(project)
    tracking.reset_default_trackers()
    exp = Experiment(None, name='exp')
    assert exp.trackers.names == ['TensorBoard']
    assert isinstance(exp.trackers.get('TensorBoard'), TensorBoard)


def test_loading_the_plugin_imports_no_tensorboard(tmp_path: pathlib.Path) -> None:
    code = (
        'import json, sys\n'
        'from drytorch.core import plugins\n'
        'host = plugins.get_host()\n'
        'names = sorted(n for types in host.hook.tracker_types() for n in types)\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] == "tensorboard"\n'
        '               or m.startswith("torch.utils.tensorboard"))\n'
        'print(json.dumps({"names": names, "heavy": heavy}))\n'
    )
    result = json.loads(run([sys.executable, '-c', code], tmp_path / 'work').stdout)
    assert 'TensorBoard' in result['names']
    assert result['heavy'] == []
