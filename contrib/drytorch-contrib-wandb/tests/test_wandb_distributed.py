"""A distributed DRYTorch run (torchrun, 2 processes) is ONE W&B run.

The test launches the main suite's job script, ``tests/distributed_job.py``,
under ``torchrun --standalone --nproc_per_node=2`` on CPU, with the tracker
chosen by the settings (``DRYTORCH_TRACKERS=Wandb``), W&B offline (the
session's environment, see conftest) and an empty home. Only rank 0 tracks:
the job's folder must hold one offline W&B run, in the project named as the
experiment (``job``), finished, with one row per epoch and the metrics of the
whole run: those rank 0 wrote in ``result.json`` (reduced over the ranks),
which are also the one-process metrics of the weights on the whole test set.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import tomllib
from types import ModuleType
from typing import Any

import pytest
import torch
from drytorch import testing
from wandb_records import sessions

ROOT = pathlib.Path(__file__).resolve().parents[3]
JOB = ROOT / 'tests' / 'distributed_job.py'
TIMEOUT = 180  # seconds for one launch; a healthy one takes ~10 s on 2 cores
EXPERIMENT = 'job'  # the DRYTorch experiment of the job: the W&B project
TRAINER, VALIDATION, TEST = (
    f'Model/{source}/MSE' for source in ('Trainer', 'Validation', 'Test')
)


def torchrun(cwd: pathlib.Path, env: dict[str, str]) -> str:
    """Run the job on 2 processes (killed past ``TIMEOUT``); return its output."""
    done = testing.torchrun(JOB, cwd=cwd, env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def job_module() -> ModuleType:
    """The job script as a module (by path: the rootdir may not be the repo's)."""
    name = '_drytorch_distributed_job'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, JOB)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def whole_test_set_mse(weights: pathlib.Path) -> float:
    """The MSE of ``weights`` on the whole test set, in this one process."""
    job = job_module()
    module = job.network(0.0)
    module.load_state_dict(torch.load(weights, weights_only=True))
    _, test_set = job.datasets()
    x, y = test_set.tensors
    with torch.no_grad():
        return float(((module(x) - y) ** 2).double().mean())


def test_two_processes_log_one_wandb_run(tmp_path: pathlib.Path) -> None:
    cwd = pathlib.Path.cwd()
    home = tmp_path / 'home'
    home.mkdir()  # an empty home: W&B must write nothing there
    torchrun(cwd, {'DRYTORCH_TRACKERS': 'Wandb', 'HOME': str(home)})
    result: dict[str, Any] = json.loads((cwd / 'result.json').read_text())
    assert result['world_size'] == 2

    # one W&B run, one session of it, anywhere under the job's folder
    found = sorted(p.name for p in cwd.rglob('offline-run-*'))
    assert len(found) == 1, found
    (session,) = sessions(cwd / 'outputs')  # W&B's folder is in par_dir
    assert session.run.project == EXPERIMENT
    assert session.run.display_name == result['id']
    assert not session.run.resume
    assert session.config['drytorch']['run_id'] == result['id']
    assert session.config['drytorch']['experiment'] == EXPERIMENT
    assert session.exit_code == 0  # finished, completed

    trained = session.rows(TRAINER)
    assert [epoch for epoch, _ in trained] == [1, 2, 3]  # once, not per rank
    validated = session.rows(VALIDATION)
    assert [epoch for epoch, _ in validated] == [1, 2, 3]
    # the metrics of the whole run, as rank 0 reduced them
    assert trained[-1] == (3, result['train']['MSE'])
    assert validated[-1] == (3, result['validation']['MSE'])
    assert session.rows(TEST) == [(3, result['test']['MSE'])]
    assert session.rows('Model/Test/MAE') == [(3, result['test']['MAE'])]
    assert session.summary[TEST] == result['test']['MSE']
    assert session.summary[VALIDATION] == result['validation']['MSE']
    # W&B's own step: one row per event, trainer and validation each epoch, test
    assert [row['_step'] for row in session.history] == list(range(7))
    # ...over the whole test set (43 samples, shares of 22 and 21), not a share
    reference = whole_test_set_mse(cwd / 'weights.pt')
    assert result['test']['MSE'] == pytest.approx(reference, rel=1e-6)

    (path,) = (tmp_path / 'registry').glob('*/runs/*.toml')
    data = tomllib.loads(path.read_text())
    assert data['world_size'] == 2
    assert data['plugins']['wandb']['id'] == session.run.run_id
    assert data['plugins']['wandb']['project'] == EXPERIMENT
    assert list(home.iterdir()) == []
