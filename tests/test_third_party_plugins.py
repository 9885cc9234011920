"""The CLI and the core work for plugins they know nothing about.

Two small distributions under ``tests/third_party/`` are built and installed
with pip (hatchling, no build isolation) into a folder put on ``PYTHONPATH``:
a tracker that stores metrics as JSON lines (``drytorch-test-jsonl``) and a
storage backend with its own checkpoint layout (``drytorch-test-vault``).
Both import public names of ``drytorch`` only. A run trains with them in a
subprocess, then ``drytorch show``, ``plot``, ``compare`` and ``verify`` read
it back through the query and storage hooks alone; no CSV, SQLite or local
checkpoint file exists.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, run_python

PACKAGES = ('drytorch-test-jsonl', 'drytorch-test-vault')
SCRIPT = """
import sys
import torch
from torch import nn
from torch.utils import data
import drytorch
from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Test, Trainer
from drytorch import Validation

run_id, epochs, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'resume'
generator = torch.Generator().manual_seed(0)
x = torch.randn(32, 3, generator=generator)
dataset = data.TensorDataset(x, x.sum(1, keepdim=True))
exp = Experiment(None, name='third', par_dir='.')
with exp.create_run(run_id=run_id, resume=resume) as run:
    model = Model(nn.Linear(3, 1), device='cpu')
    loss = Loss(lambda out, target: ((out - target) ** 2).mean(), 'MSE')
    trainer = Trainer(
        model,
        loader=DataLoader(dataset, 8, seed=0),
        loss=loss,
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(DataLoader(dataset, 16, seed=0))
    trainer.checkpoint_every(1)
    trainer.resume()
    trainer.train_until(epochs)
    Test(model, loader=DataLoader(dataset, 16, seed=0), metric=loss)()
print('done', run.id)
"""


@pytest.fixture(scope='module')
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The folder both distributions are installed in, by pip."""
    target = tmp_path_factory.mktemp('site')
    sources = [str(ROOT / 'tests' / 'third_party' / name) for name in PACKAGES]
    done = subprocess.run(
        [
            *(sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps'),
            *('--no-build-isolation', '--disable-pip-version-check'),
            *('--target', str(target), *sources),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


@pytest.fixture
def env(site: pathlib.Path) -> dict[str, str]:
    return {
        'PYTHONPATH': os.pathsep.join([str(site), str(ROOT)]),
        'DRYTORCH_INIT_MODE': 'none',
        'DRYTORCH_TRACKERS': 'JsonlTracker',
        'DRYTORCH_STRICT_PLUGINS': '1',
    }


def train(env: dict[str, str], run_id: str, epochs: int, resume: bool = False) -> None:
    mode = 'resume' if resume else 'new'
    done = run_python(
        SCRIPT.replace(
            'sys.argv[1], int(sys.argv[2]), sys.argv[3]',
            f'{run_id!r}, {epochs}, {mode!r}',
        ),
        pathlib.Path.cwd(),
        env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'done {run_id}' in done.stdout


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'drytorch.cli', *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, **env),
    )


def record(run_id: str) -> dict:
    (path,) = pathlib.Path(os.environ['DRYTORCH_REGISTRY_DIR']).rglob(f'{run_id}.toml')
    return tomllib.loads(path.read_text())


def test_the_cli_reads_a_run_through_third_party_plugins(env: dict[str, str]) -> None:
    train(env, 'a', 2)
    work = pathlib.Path.cwd()
    assert not (work / 'checkpoints').exists()  # the vault took over
    assert not (work / 'csv_metrics').exists() and not list(work.glob('*.db'))
    assert sorted(p.name for p in (work / 'vault' / 'third').iterdir()) == [
        'a--Model--1-0.ckpt',
        'a--Model--2-0.ckpt',
    ]

    shown = cli(env, 'show', 'a', '--json')
    assert shown.returncode == 0, shown.stderr
    outputs = json.loads(shown.stdout)['outputs']
    assert outputs['JsonlTracker'] == str(work / 'jsonl' / 'third' / 'a.jsonl')
    assert outputs['vault'] == str(work / 'vault' / 'third')

    out = work / 'curves.png'
    plotted = cli(env, 'plot', 'a', '--out', str(out))
    assert plotted.returncode == 0, plotted.stderr
    assert out.is_file() and out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    verified = cli(env, 'verify', 'a', '--json')
    report = json.loads(verified.stdout)
    statuses = {c['name']: c['status'] for c in report['checkpoints']}
    assert statuses == {
        'Model/a--Model--1-0.ckpt': 'ok',
        'Model/a--Model--2-0.ckpt': 'ok',
    }
    paths = [c['path'] for c in report['checkpoints']]
    assert paths == [
        'vault://third/a--Model--1-0.ckpt',
        'vault://third/a--Model--2-0.ckpt',
    ]

    damaged = work / 'vault' / 'third' / 'a--Model--1-0.ckpt'
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (work / 'vault' / 'third' / 'a--Model--2-0.ckpt').unlink()
    verified = cli(env, 'verify', 'a', '--json')
    assert verified.returncode == 1
    statuses = {
        c['name']: c['status'] for c in json.loads(verified.stdout)['checkpoints']
    }
    assert statuses == {
        'Model/a--Model--1-0.ckpt': 'hash differs',
        'Model/a--Model--2-0.ckpt': 'missing',
    }


def test_plugin_state_survives_resume_and_compare_reads_the_summary(
    env: dict[str, str],
) -> None:
    train(env, 'a', 1)
    train(env, 'a', 2, resume=True)
    train(env, 'b', 1)
    assert record('a')['plugins']['jsonl']['sessions'] == 2
    assert record('b')['plugins']['jsonl']['sessions'] == 1
    lines = (
        (pathlib.Path.cwd() / 'jsonl' / 'third' / 'a.jsonl').read_text().splitlines()
    )
    epochs = [(json.loads(line)['source'], json.loads(line)['epoch']) for line in lines]
    assert epochs == [
        ('Trainer', 1),
        ('Validation', 1),
        ('Test', 1),
        ('Trainer', 2),
        ('Validation', 2),
        ('Test', 2),
    ]
    compared = cli(env, 'compare', 'a', 'b', '--json')
    assert compared.returncode == 0, compared.stderr
    differences = json.loads(compared.stdout)['metrics']
    assert 'Model.Trainer.epoch' in differences  # 2 against 1, kept by the core
    assert differences['Model.Trainer.epoch'] == [2, 1]
