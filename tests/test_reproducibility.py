"""Seeds, deterministic mode and the environment captured beside each run."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import drytorch
from drytorch.core import environment, exceptions, seeding, settings
from tests.conftest import git, run_python

TIMEOUT = 120  # seconds, for a loaded two-core machine


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1


@pytest.fixture(autouse=True)
def quiet(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default trackers: these tests are about seeds and records."""
    monkeypatch.setenv('DRYTORCH_INIT_MODE', 'none')


@pytest.fixture
def torch_flags() -> Iterator[None]:
    """Put torch's determinism flags back however a test leaves them."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get('CUBLAS_WORKSPACE_CONFIG'),
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic = saved[2]
    torch.backends.cudnn.benchmark = saved[3]
    if saved[4] is None:
        os.environ.pop('CUBLAS_WORKSPACE_CONFIG', None)
    else:
        os.environ['CUBLAS_WORKSPACE_CONFIG'] = saved[4]


def make_exp(name: str = 'repro') -> drytorch.Experiment[Config]:
    return drytorch.Experiment(Config(), name=name)


def load(run: drytorch.Run[Any]) -> dict[str, Any]:
    with run.record_path.open('rb') as file:
        return tomllib.load(file)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != 'DRYTORCH_SEED'}
    return {**env, 'PYTHONUNBUFFERED': '1', **extra}


# Each child prints the numbers its code draws once the run has started.
DRAW = """
import json, random, sys
import torch
import drytorch
try:
    import numpy
except ImportError:
    numpy = None

args = json.loads(sys.argv[1])
exp = drytorch.Experiment(None, name='repro')
run = exp.create_run(args.get('id'), resume=args.get('resume', False),
                     seed=args.get('seed'))
with run:
    dataset = torch.utils.data.TensorDataset(torch.arange(12))
    loader = drytorch.DataLoader(dataset, 4)
    order = [[batch[0].tolist() for batch in loader] for _ in range(2)]
    drawn = {
        'seed': run.seed,
        'torch': torch.rand(3).tolist(),
        'random': random.random(),
        'numpy': None if numpy is None else float(numpy.random.rand()),
        'loader': order,
    }
print(json.dumps(drawn))
"""


def draw_in_children(*calls: tuple[dict[str, Any], dict[str, str]]) -> list[Any]:
    """Run ``DRAW`` once per call, concurrently; return what each printed."""
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', DRAW, json.dumps(args)],
            cwd=pathlib.Path.cwd(),
            env=child_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in calls
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# Seeds


def test_same_seed_same_draws_and_batches_in_other_processes() -> None:
    first, again, other, from_setting = draw_in_children(
        ({'id': 'a', 'seed': 123}, {}),
        ({'id': 'b', 'seed': 123}, {}),
        ({'id': 'c', 'seed': 124}, {}),
        ({'id': 'd'}, {'DRYTORCH_SEED': '123'}),
    )
    assert first['seed'] == 123
    assert again == first
    assert from_setting == first
    for key in ('torch', 'random', 'numpy', 'loader'):
        if first[key] is not None:
            assert other[key] != first[key], key
    assert first['loader'][0] != first['loader'][1]  # a new order each epoch
    assert sorted(n for batch in first['loader'][0] for n in batch) == list(range(12))
    records = {r.id: r.data for r in make_exp().list_runs()}
    assert records['a']['seed_source'] == 'argument'
    assert records['d']['seed_source'] == 'setting'
    assert records['d']['seed'] == 123


def test_a_resumed_run_reuses_its_seed_in_a_new_process() -> None:
    (created,) = draw_in_children(({'id': 'r'}, {}))
    (resumed,) = draw_in_children(({'id': 'r', 'resume': True}, {}))
    assert resumed == created
    data = make_exp().list_runs()[0].data
    assert data['seed'] == created['seed']
    assert data['seed_source'] == 'drawn'
    assert [s['seed'] for s in data['sessions']] == [created['seed']] * 2


def test_start_seeds_random_numpy_and_torch() -> None:
    numpy = pytest.importorskip('numpy')
    torch.manual_seed(7)
    expected_torch = torch.rand(4)
    numpy.random.seed(7)
    expected_numpy = numpy.random.rand(2)
    expected_random = random.Random(7).random()
    torch.manual_seed(0)  # whatever came before the run does not matter
    random.seed(0)
    exp = make_exp()
    with exp.create_run('r', seed=7) as run:
        assert torch.equal(torch.rand(4), expected_torch)
        assert (numpy.random.rand(2) == expected_numpy).all()
        assert random.random() == expected_random
    assert run.seed == 7
    with exp.create_run('r', resume=True) as again:  # every start seeds again
        assert again is run
        assert torch.equal(torch.rand(4), expected_torch)


def test_drawn_seeds_are_recorded_and_differ() -> None:
    exp = make_exp()
    runs = []
    for _ in range(3):
        with exp.create_run() as run:
            pass
        runs.append(run)
    seeds = [run.seed for run in runs]
    assert len(set(seeds)) == 3
    for run in runs:
        data = load(run)
        assert data['seed'] == run.seed
        assert data['seed_source'] == 'drawn'
        assert 0 <= data['seed'] <= seeding.SEED_MAX
        assert data['sessions'][0]['seed'] == run.seed


def test_resuming_with_another_seed_is_refused() -> None:
    with make_exp().create_run('r', seed=5):
        pass
    with pytest.raises(exceptions.SeedMismatchError, match='created with seed 5'):
        make_exp().create_run('r', resume=True, seed=6)
    exp = make_exp()
    with exp.create_run('r', resume=True, seed=5) as run:  # the same is fine
        pass
    with pytest.raises(exceptions.SeedMismatchError):  # the same object too
        exp.create_run('r', resume=True, seed=6)
    assert run.seed == 5
    assert [s['seed'] for s in load(run)['sessions']] == [5, 5]


def test_resuming_under_another_seed_setting_keeps_the_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with make_exp().create_run('r', seed=5):
        pass
    monkeypatch.setenv('DRYTORCH_SEED', '9')
    with pytest.warns(exceptions.DryTorchWarning, match='keeps 5'):
        run = make_exp().create_run('r', resume=True)
    assert run.seed == 5
    with make_exp().create_run() as new:
        assert new.seed == 9


def test_a_record_without_seed_gets_one_on_resume() -> None:
    exp = make_exp()
    with exp.create_run('old') as run:
        pass
    data = load(run)
    del data['seed'], data['seed_source']
    exp.registry.write(exp.key, data)
    with make_exp().create_run('old', resume=True, seed=11) as again:
        pass
    assert again.seed == 11
    assert load(again)['seed'] == 11


@pytest.mark.parametrize(
    ('seed', 'error'),
    [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_invalid_seeds_are_refused(seed: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match='seed'):
        make_exp().create_run(seed=seed)
    assert make_exp().list_runs() == []


# Deterministic mode


def test_deterministic_mode_is_on_during_the_run_and_restored(
    torch_flags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = True
    run = make_exp().create_run(deterministic=True)
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'  # set at creation
    with run:
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.benchmark
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'  # read once: kept
    data = load(run)
    assert data['deterministic'] is True
    assert data['sessions'][0]['deterministic'] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA')
def test_deterministic_mode_refuses_nondeterministic_cuda_operations(
    torch_flags: None,
) -> None:
    values = torch.rand(100, device='cuda')
    refused = pytest.raises(RuntimeError, match='deterministic')
    with make_exp().create_run(deterministic=True), refused:
        torch.histc(values)  # no deterministic CUDA implementation
    torch.histc(values)  # off again
    torch.cuda.synchronize()


def test_deterministic_mode_keeps_a_set_cublas_config(
    torch_flags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':16:8')
    with make_exp().create_run(deterministic=True):
        assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'


def test_setting_cublas_config_after_cuda_started_warns(
    torch_flags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    with pytest.warns(exceptions.DryTorchWarning, match='CUBLAS_WORKSPACE_CONFIG'):
        run = make_exp().create_run(deterministic=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # set already: no second warning
        with run:
            pass
        with make_exp().create_run('other', deterministic=True):
            pass


def test_deterministic_off_leaves_torch_alone(torch_flags: None) -> None:
    torch.backends.cudnn.benchmark = True
    with make_exp().create_run() as run:
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark
    assert run.deterministic is False
    assert load(run)['deterministic'] is False


def test_deterministic_from_settings_and_overrides(
    torch_flags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('DRYTORCH_DETERMINISTIC', '1')
    with make_exp().create_run('on') as run:
        assert torch.are_deterministic_algorithms_enabled()
    assert run.deterministic is True
    with make_exp().create_run('off', deterministic=False) as run:
        assert not torch.are_deterministic_algorithms_enabled()
    assert load(run)['deterministic'] is False
    monkeypatch.delenv('DRYTORCH_DETERMINISTIC')
    with make_exp().create_run('on', resume=True) as run:  # its recorded mode
        assert torch.are_deterministic_algorithms_enabled()
    with make_exp().create_run('on', resume=True, deterministic=False) as run:
        assert not torch.are_deterministic_algorithms_enabled()
    sessions = load(run)['sessions']
    assert [s['deterministic'] for s in sessions] == [True, True, False]
    assert load(run)['deterministic'] is False


# Settings


def test_seed_and_deterministic_settings(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.get_settings().seed is None
    assert settings.get_settings().deterministic is None
    (tmp_path / 'work' / 'pyproject.toml').write_text(
        '[tool.drytorch]\nseed = 7\ndeterministic = true\n'
    )
    config = settings.get_settings()
    assert (config.seed, config.deterministic) == (7, True)
    monkeypatch.setenv('DRYTORCH_SEED', '8')
    monkeypatch.setenv('DRYTORCH_DETERMINISTIC', 'false')
    config = settings.get_settings()
    assert (config.seed, config.deterministic) == (8, False)
    monkeypatch.setenv('DRYTORCH_SEED', '')  # empty: a seed drawn per run
    assert settings.get_settings().seed is None


@pytest.mark.parametrize(
    'line',
    [
        'seed = "x"',
        'seed = -1',
        'seed = 4294967296',
        'seed = true',
        'seed = 1.0',
        'deterministic = "maybe"',
        'deterministic = 1',
    ],
)
def test_invalid_seed_settings_name_the_file(tmp_path: pathlib.Path, line: str) -> None:
    path = tmp_path / 'work' / 'pyproject.toml'
    path.write_text(f'[tool.drytorch]\n{line}\n')
    with pytest.raises(exceptions.SettingsError, match=line.split()[0]) as caught:
        settings.get_settings()
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ('var', 'value'), [('DRYTORCH_SEED', 'abc'), ('DRYTORCH_DETERMINISTIC', 'maybe')]
)
def test_invalid_seed_variables_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(exceptions.SettingsError, match=var):
        settings.get_settings()


# Environment


def test_record_environment_fields_and_packages_file() -> None:
    with make_exp().create_run('r') as run:
        pass
    data = load(run)
    env = data['environment']
    assert env['hostname'] == socket.gethostname()
    if torch.cuda.is_available():
        assert env['accelerator']['type'] == 'cuda'
        assert env['accelerator']['count'] == torch.cuda.device_count()
        assert env['accelerator']['names'][0] == torch.cuda.get_device_name(0)
    elif torch.backends.mps.is_available():
        assert env['accelerator']['type'] == 'mps'
    else:
        assert env['accelerator'] == {'type': 'cpu', 'count': 0}
    text = run.packages_path.read_text()
    assert run.packages_path.name == 'r.packages.txt'
    assert run.packages_path.parent == run.record_path.parent
    lines = text.splitlines()
    assert f'torch=={importlib.metadata.version("torch")}' in lines
    assert lines == sorted(lines)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert env['packages_hash'] == f'sha256:{digest}'
    assert data['sessions'][0]['packages_hash'] == env['packages_hash']


def test_packages_file_is_rewritten_only_when_packages_change() -> None:
    exp = make_exp()
    with exp.create_run('r') as run:
        pass
    run.packages_path.write_text('kept\n')  # same hash recorded: not rewritten
    with make_exp().create_run('r', resume=True):
        pass
    assert run.packages_path.read_text() == 'kept\n'
    data = load(run)
    data['sessions'][-1]['packages_hash'] = 'sha256:0000000000000000'
    exp.registry.write(exp.key, data)
    with make_exp().create_run('r', resume=True):
        pass
    assert run.packages_path.read_text() == environment.packages().text


def test_git_is_asked_once_per_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which('git') is None:
        pytest.skip('git is not installed')
    repo = make_repo(tmp_path / 'repo')
    (repo / 'train.py').write_text('edited\n')
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, 'argv', [''])  # an interactive session: the cwd
    calls: list[list[str]] = []
    real_popen = subprocess.Popen

    def counting_popen(args: list[str], **kwargs: Any) -> Any:
        if args[0] == 'git':
            calls.append(args)
        return real_popen(args, **kwargs)

    monkeypatch.setattr(subprocess, 'Popen', counting_popen)  # under run() too
    exp = make_exp()
    runs = [exp.create_run() for _ in range(3)]
    assert len(calls) == 2, calls  # the state, then the diff: the tree is dirty
    for run in runs:
        assert b'+edited' in run.diff_path.read_bytes()


# Git state and diff, in real processes


SCRIPT = """
import sys
from drytorch import Experiment
from drytorch.core import environment
if len(sys.argv) > 2:
    environment.DIFF_LIMIT = int(sys.argv[2])
with Experiment(None, name='repro').create_run(sys.argv[1]):
    pass
"""


def make_repo(repo: pathlib.Path) -> pathlib.Path:
    repo.mkdir()
    (repo / 'train.py').write_text(SCRIPT)
    git(repo, 'init', '-q')
    git(repo, 'add', 'train.py')
    git(repo, 'commit', '-q', '-m', 'first')
    return repo


@pytest.mark.skipif(shutil.which('git') is None, reason='git is not installed')
def test_uncommitted_changes_are_saved_beside_the_run(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / 'repo')
    commit = git(repo, 'rev-parse', 'HEAD')
    runs = make_exp().registry.root / make_exp().key / 'runs'

    def launch(run_id: str, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(repo / 'train.py'), run_id, *args],
            cwd=pathlib.Path.cwd(),  # not the repo: the script's folder counts
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        with (runs / f'{run_id}.toml').open('rb') as file:
            git_table: dict[str, Any] = tomllib.load(file)['environment']['git']
        return git_table

    clean = launch('clean')
    assert clean['commit'] == commit
    assert clean['dirty'] is False
    assert not (runs / 'clean.diff').exists()
    assert (runs / 'clean.packages.txt').is_file()

    (repo / 'untracked.py').write_text('x = 1\n')  # untracked: still clean
    assert launch('untracked')['dirty'] is False
    assert not (runs / 'untracked.diff').exists()

    with (repo / 'train.py').open('a') as file:
        file.write('# tuned the learning rate\n' * 20)
    dirty = launch('dirty')
    assert dirty['dirty'] is True
    assert 'diff_truncated' not in dirty
    diff = (runs / 'dirty.diff').read_text()
    assert diff.startswith('diff --git a/train.py b/train.py')
    assert '+# tuned the learning rate' in diff

    cut = launch('cut', '100')
    assert cut['diff_truncated'] is True
    assert (runs / 'cut.diff').read_bytes() == (runs / 'dirty.diff').read_bytes()[:100]


def test_environment_and_seeding_modules_do_not_import_torch(
    tmp_path: pathlib.Path,
) -> None:
    code = (
        'import sys\n'
        'import drytorch\n'
        'from drytorch.core import environment, experiment, seeding, settings\n'
        'print(sorted({"torch", "numpy"} & set(sys.modules)))\n'
    )
    done = run_python(code, tmp_path / 'work')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '[]'


def test_the_run_api_and_record_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with make_exp().create_run('quiet', seed=1, deterministic=False) as run:
            pass
    data = load(run)
    assert (data['seed'], data['seed_source'], data['deterministic']) == (
        1,
        'argument',
        False,
    )
    assert {'hostname', 'accelerator', 'packages_hash'} <= set(data['environment'])
