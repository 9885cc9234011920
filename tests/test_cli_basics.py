"""What a new user tries first with the ``drytorch`` command: versions, help, RUN."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

from drytorch import Experiment
from tests.test_cli import drytorch


def module_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'drytorch', *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


def test_version_names_drytorch_torch_and_python() -> None:
    done = drytorch('--version')
    assert done.returncode == 0
    expected = importlib.metadata.version('drytorch')
    assert done.stdout.startswith(f'drytorch {expected} (torch ')
    assert f'python {sys.version_info.major}.{sys.version_info.minor}' in done.stdout


def test_python_dash_m_drytorch_is_the_command() -> None:
    with Experiment(None, name='m').create_run(run_id='only'):
        pass
    done = module_command('runs', '--json')
    assert done.returncode == 0, done.stderr
    assert [run['id'] for run in json.loads(done.stdout)] == ['only']


def test_every_command_says_what_run_accepts() -> None:
    done = drytorch('--help')
    assert 'DRYTORCH_REGISTRY_DIR' in done.stdout and 'registry_dir' in done.stdout
    for command in ('show', 'plot', 'verify', 'tag', 'rm', 'compare'):
        text = drytorch(command, '--help').stdout
        assert 'prefix' in text and '"last"' in text and 'last~N' in text, text


def test_the_base_install_depends_on_numpy() -> None:
    requirements = importlib.metadata.requires('drytorch') or []
    assert any(
        r.split(';')[0].strip().startswith('numpy') and 'extra ==' not in r
        for r in requirements
    ), requirements


def test_run_may_be_named_by_prefix_or_last() -> None:
    exp = Experiment(None, name='p')
    for run_id in ('alpha-1', 'alpha-2', 'beta'):
        with exp.create_run(run_id=run_id):
            pass
    assert json.loads(drytorch('show', 'bet', '--json').stdout)['id'] == 'beta'
    assert json.loads(drytorch('show', 'last', '--json').stdout)['id'] == 'beta'
    assert json.loads(drytorch('show', 'last~2', '--json').stdout)['id'] == 'alpha-1'
    too_far = drytorch('show', 'last~3')
    assert too_far.returncode == 1 and '3 run(s) are recorded' in too_far.stderr
    ambiguous = drytorch('show', 'alpha')
    assert ambiguous.returncode == 1
    assert 'alpha-1, alpha-2' in ambiguous.stderr and 'give more' in ambiguous.stderr
    missing = drytorch('show', 'gamma')
    assert missing.returncode == 1 and '"last"' in missing.stderr
    assert 'Traceback' not in ambiguous.stderr + missing.stderr


def test_show_and_compare_tell_the_seed_and_where_it_came_from() -> None:
    exp = Experiment(None, name='s')
    with exp.create_run(run_id='chosen', seed=7):
        pass
    with exp.create_run(run_id='drawn'):
        pass
    shown = drytorch('show', 'chosen').stdout
    assert 'seed      7 (passed to create_run(seed=...))' in shown
    assert 'drawn at random' in drytorch('show', 'drawn').stdout
    report = json.loads(drytorch('show', 'chosen', '--json').stdout)
    assert (report['seed'], report['seed_source']) == (7, 'argument')
    compared = json.loads(drytorch('compare', 'chosen', 'drawn', '--json').stdout)
    assert compared['run']['seed'][0] == 7
    assert compared['run']['seed_source'] == ['argument', 'drawn']
    assert 'RUN' in drytorch('compare', 'chosen', 'drawn').stdout
