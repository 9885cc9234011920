"""HydraLink keeps each run's Hydra output folder: real Hydra apps, real files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from drytorch import Experiment
from drytorch.exceptions import DryTorchWarning

from drytorch_contrib_hydra import HydraLink, HydraNotRunningError

APP = """
import logging
import os
import pathlib

import hydra
from drytorch import Experiment
from drytorch_contrib_hydra import HydraLink

log = logging.getLogger(__name__)


@hydra.main(config_path='conf', config_name='config', version_base=None)
def main(cfg):
    exp = Experiment(None, name='app', par_dir=pathlib.Path(os.environ['APP_OUT']))
    link = HydraLink(copy_hydra=cfg['copy'])
    exp.trackers.subscribe(link)
    with exp.create_run(run_id=f'lr-{cfg.lr}'):
        log.info('training with lr=%s', cfg.lr)
        print('ENTRY', link.entry, flush=True)
    log.info('after the run')


if __name__ == '__main__':
    main()
"""


def run_app(folder: pathlib.Path, out: pathlib.Path, *args: str) -> list[pathlib.Path]:
    """Run the Hydra app with ``args``, writing in ``out``; return each run's entry."""
    (folder / 'conf').mkdir(parents=True, exist_ok=True)
    (folder / 'conf' / 'config.yaml').write_text('lr: 0.1\ncopy: true\n')
    (folder / 'app.py').write_text(textwrap.dedent(APP))
    done = subprocess.run(
        [sys.executable, 'app.py', *args],
        cwd=folder,
        env=dict(os.environ, HYDRA_FULL_ERROR='1', APP_OUT=str(out.resolve())),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [
        pathlib.Path(line.split(' ', 1)[1])
        for line in done.stdout.splitlines()
        if line.startswith('ENTRY ')
    ]


def record(registry: pathlib.Path, run_id: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, '-m', 'drytorch', 'show', run_id, '--experiment', 'app',
         '--json'],
        capture_output=True, text=True, timeout=60, check=True,
        env=dict(os.environ, DRYTORCH_REGISTRY_DIR=str(registry)),
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def test_copies_the_hydra_folder_of_a_real_app(tmp_path: pathlib.Path) -> None:
    out = tmp_path / 'out'
    [entry] = run_app(tmp_path / 'app', out, 'lr=0.5', 'hydra.job.name=main')
    assert entry.parent == out.resolve() / 'hydra' / 'app' / 'lr-0.5'
    assert not entry.is_symlink()
    config = (entry / '.hydra' / 'config.yaml').read_text()
    assert 'lr: 0.5' in config
    assert 'lr=0.5' in (entry / '.hydra' / 'overrides.yaml').read_text()
    log = (entry / 'main.log').read_text()
    assert 'training with lr=0.5' in log  # copied again when the run stopped
    assert 'after the run' not in log
    shown = record(tmp_path / 'registry', 'lr-0.5')
    assert shown['status'] == 'completed'
    assert shown['outputs']['HydraLink'] == str(entry.parent)  # drytorch show
    state = shown['plugins']['hydra']
    assert state['folder'] == str(entry.parent)
    [session] = state['sessions']
    assert session['entry'] == entry.name
    assert (pathlib.Path(session['source']) / '.hydra' / 'config.yaml').is_file()


def test_links_without_copy_hydra(tmp_path: pathlib.Path) -> None:
    out = tmp_path / 'out'
    [entry] = run_app(tmp_path / 'app', out, 'copy=false')
    assert entry.is_symlink()
    assert 'lr: 0.1' in (entry / '.hydra' / 'config.yaml').read_text()
    assert entry.resolve().parent.parent.name == 'outputs'


def test_multirun_keeps_each_job(tmp_path: pathlib.Path) -> None:
    entries = run_app(tmp_path / 'app', tmp_path / 'out', '-m', 'lr=0.1,0.2')
    assert [e.parent.name for e in entries] == ['lr-0.1', 'lr-0.2']
    assert [e.name for e in entries] == ['0', '1']  # Hydra's job folders
    for entry, lr in zip(entries, ('0.1', '0.2'), strict=True):
        assert f'lr: {lr}' in (entry / '.hydra' / 'config.yaml').read_text()


def test_hydra_dir_and_resumed_sessions(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / 'job' / 'a', tmp_path / 'other' / 'a'
    for folder, text in ((first, 'one'), (second, 'two')):
        folder.mkdir(parents=True)
        (folder / 'note.txt').write_text(text)
    exp = Experiment(None, name='app', par_dir=tmp_path / 'out')
    exp.trackers.subscribe(link := HydraLink(hydra_dir=first))
    with exp.create_run(run_id='r') as run:
        assert run.view is not None
        (first / 'note.txt').write_text('one, at the end')
    folder = tmp_path / 'out' / 'hydra' / 'app' / 'r'
    assert (folder / 'a' / 'note.txt').read_text() == 'one, at the end'
    link.hydra_dir = second
    with exp.create_run(run_id='r', resume=True):
        pass
    assert (folder / 'a' / 'note.txt').read_text() == 'one, at the end'
    assert (folder / 'a-1' / 'note.txt').read_text() == 'two'
    [recorded] = exp.list_runs()
    sessions = recorded.data['plugins']['hydra']['sessions']
    assert [s['entry'] for s in sessions] == ['a', 'a-1']


def test_a_folder_inside_the_hydra_folder_is_not_copied_into_itself(
    tmp_path: pathlib.Path,
) -> None:
    job = tmp_path / 'job'
    (job / '.hydra').mkdir(parents=True)
    (job / '.hydra' / 'config.yaml').write_text('lr: 1\n')
    exp = Experiment(None, name='app', par_dir=job)  # par_dir = Hydra's cwd
    exp.trackers.subscribe(HydraLink(hydra_dir=job))
    with exp.create_run(run_id='r'):
        pass
    entry = job / 'hydra' / 'app' / 'r' / 'job'
    assert (entry / '.hydra' / 'config.yaml').read_text() == 'lr: 1\n'
    assert not (entry / 'hydra').exists()


def test_outside_hydra(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HydraNotRunningError, match=r'hydra\.main'):
        HydraLink()
    assert host.tracker_types()['HydraLink'] is HydraLink
    monkeypatch.setenv('DRYTORCH_TRACKERS', 'HydraLink')
    with pytest.warns(DryTorchWarning, match='HydraLink'):
        exp = Experiment(None, name='plain')
    assert not any(isinstance(t, HydraLink) for t in exp.trackers)


def test_plugin_loads_without_importing_hydra(tmp_path: pathlib.Path) -> None:
    code = (
        'import pathlib, sys\n'
        'from drytorch import testing\n'
        'with testing.isolated(pathlib.Path(sys.argv[1])) as host:\n'
        '    assert "HydraLink" in host.tracker_types()\n'
        '    assert any(p.name == "hydra" for p in host.plugins())\n'
        'heavy = [m for m in sys.modules\n'
        '         if m.split(".")[0] in ("hydra", "omegaconf")]\n'
        'assert not heavy, heavy\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, str(tmp_path / 'fresh')], capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
