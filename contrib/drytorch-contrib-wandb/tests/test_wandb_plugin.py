"""The plugin as DRYTorch sees it: entry point, CLI, the tracker by name, laziness."""

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
from drytorch import Experiment

import drytorch_contrib_wandb
from drytorch_contrib_wandb import Wandb
from drytorch_contrib_wandb.plugin import outputs_of

DISTRIBUTION = 'drytorch-contrib-wandb'
ENTRY_POINT = 'wandb'
ORIGIN = f'{DISTRIBUTION} {drytorch_contrib_wandb.__version__}'
HOOKS = ['run_outputs', 'tracker_types']
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
    assert found[0].value == 'drytorch_contrib_wandb.plugin'
    assert found[0].dist is not None
    assert found[0].dist.metadata['Name'] == DISTRIBUTION
    assert found[0].dist.version == drytorch_contrib_wandb.__version__


def test_the_host_loads_it_from_its_distribution(host: Any) -> None:
    infos = {info.name: info for info in host.plugins()}
    assert infos[ENTRY_POINT].origin == ORIGIN
    assert sorted(infos[ENTRY_POINT].hooks) == HOOKS


def test_drytorch_plugins_lists_it(tmp_path: pathlib.Path) -> None:
    script = shutil.which('drytorch', path=str(pathlib.Path(sys.executable).parent))
    assert script is not None, 'the drytorch console script is not installed'
    rows = json.loads(run([script, 'plugins', '--json'], tmp_path / 'work').stdout)
    by_name = {row['name']: row for row in rows}
    assert by_name[ENTRY_POINT]['origin'] == ORIGIN
    assert sorted(by_name[ENTRY_POINT]['hooks']) == HOOKS


def test_it_offers_the_tracker_by_name(host: Any) -> None:
    assert host.tracker_types()['Wandb'] is Wandb


@pytest.mark.parametrize('mode', INIT_MODES)
def test_installing_it_adds_no_default_tracker(host: Any, mode: str) -> None:
    defaults = host.default_trackers(mode)
    assert not any(isinstance(tracker, Wandb) for tracker in defaults)


def test_experiments_do_not_get_it_by_default() -> None:
    assert 'Wandb' not in Experiment(None, name='exp').trackers


def test_the_pyproject_setting_names_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / 'project'  # settings are read per working directory
    project.mkdir()
    (project / 'pyproject.toml').write_text(
        '[tool.drytorch]\ninit_mode = "none"\ntrackers = ["Wandb"]\n'
    )
    monkeypatch.chdir(project)
    exp = Experiment(None, name='exp')
    assert exp.trackers.names == ['Wandb']
    assert isinstance(exp.trackers.get('Wandb'), Wandb)


def test_outputs_prefer_the_url() -> None:
    assert outputs_of({}) is None
    assert outputs_of({'run_dir': '/x/wandb/offline-run-1-a'}) == {
        'Wandb': '/x/wandb/offline-run-1-a'
    }
    assert outputs_of({'run_dir': '/x', 'url': 'https://wandb.ai/e/p/runs/a'}) == {
        'Wandb': 'https://wandb.ai/e/p/runs/a'
    }


def test_loading_the_plugin_imports_no_wandb(tmp_path: pathlib.Path) -> None:
    code = (
        'import json, pathlib, sys\n'
        'from drytorch import testing\n'
        'with testing.isolated(pathlib.Path(sys.argv[1])) as host:\n'
        '    names = sorted(host.tracker_types())\n'
        '    from drytorch_contrib_wandb import Wandb\n'
        '    Wandb()\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] == "wandb")\n'
        'print(json.dumps({"names": names, "heavy": heavy}))\n'
    )
    args = [sys.executable, '-c', code, str(tmp_path / 'child')]
    result = json.loads(run(args, tmp_path / 'work').stdout)
    assert 'Wandb' in result['names']
    assert result['heavy'] == []
