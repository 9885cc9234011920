"""A distributed DRYTorch run (torchrun, 2 processes) is ONE MLflow run.

Each test launches the main suite's job script, ``tests/distributed_job.py``,
under ``torchrun --standalone --nproc_per_node=2`` on CPU, with the tracker
chosen by the settings (``DRYTORCH_TRACKERS=MLflow``) and an MLflow store of
the test's own (``MLFLOW_TRACKING_URI``: the job's experiment is always
``job``). Only rank 0 tracks: the store must hold one run, with one point per
epoch, and the metrics of the whole run, those rank 0 wrote in
``result.json`` (reduced over the ranks), which are also the one-process
metrics of the trained weights on the whole test set.
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
from mlflow.entities import Run as MlflowRun
from mlflow.tracking import MlflowClient

from drytorch_contrib_mlflow import reading

pytestmark = [
    # MLflow's store with SQLAlchemy 2.1, once per process: not ours to fix
    pytest.mark.filterwarnings('ignore:The ``noload`` loader strategy'),
]

ROOT = pathlib.Path(__file__).resolve().parents[3]
JOB = ROOT / 'tests' / 'distributed_job.py'
TIMEOUT = 180  # seconds for one launch; a healthy one takes ~10 s on 2 cores
EXPERIMENT = 'job'  # the DRYTorch experiment of the job: the MLflow experiment
TRAINER, VALIDATION, TEST = (
    f'Model/{source}/MSE' for source in ('Trainer', 'Validation', 'Test')
)


def torchrun(cwd: pathlib.Path, env: dict[str, str]) -> str:
    """Run the job on 2 processes (killed past ``TIMEOUT``); return its output."""
    done = testing.torchrun(JOB, cwd=cwd, env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


@pytest.fixture
def store(tmp_path: pathlib.Path) -> str:
    """An MLflow store of this test alone: the job's experiment is always 'job'."""
    return f'sqlite:///{tmp_path / "mlflow.db"}'


def launch(store: str, **env: str) -> dict[str, Any]:
    """Run the job with the MLflow tracker in the cwd; return its result.json."""
    cwd = pathlib.Path.cwd()
    torchrun(cwd, {'DRYTORCH_TRACKERS': 'MLflow', 'MLFLOW_TRACKING_URI': store, **env})
    result: dict[str, Any] = json.loads((cwd / 'result.json').read_text())
    assert result['world_size'] == 2
    return result


def only_run(client: MlflowClient) -> MlflowRun:
    """The one MLflow run of the store, in the experiment named as the job's."""
    experiments = client.search_experiments()
    assert sorted(e.name for e in experiments) == ['Default', EXPERIMENT]
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert len(runs) == 1, [(run.info.run_name, run.info.run_id) for run in runs]
    (found,) = runs
    assert client.get_experiment(found.info.experiment_id).name == EXPERIMENT
    return found


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    points = client.get_metric_history(run_id, key)
    return [(p.step, p.value) for p in sorted(points, key=lambda p: p.timestamp)]


def record(registry: pathlib.Path) -> dict[str, Any]:
    """The one DRYTorch run record of the registry."""
    (path,) = registry.glob('*/runs/*.toml')
    return tomllib.loads(path.read_text())


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


def test_two_processes_log_one_mlflow_run(store: str, tmp_path: pathlib.Path) -> None:
    result = launch(store)
    client = MlflowClient(store)
    found = only_run(client)
    mlflow_id = found.info.run_id
    assert found.info.status == 'FINISHED'
    assert found.info.run_name == result['id']
    assert found.data.tags['drytorch.run_id'] == result['id']
    assert found.data.tags['drytorch.sessions'] == '1'
    assert 'drytorch.error' not in found.data.tags

    trained = history(client, mlflow_id, TRAINER)
    assert [step for step, _ in trained] == [1, 2, 3]  # once per epoch, not per rank
    validated = history(client, mlflow_id, VALIDATION)
    assert [step for step, _ in validated] == [1, 2, 3]
    # the metrics of the whole run, as rank 0 reduced them
    assert trained[-1] == (3, result['train']['MSE'])
    assert validated[-1] == (3, result['validation']['MSE'])
    assert history(client, mlflow_id, TEST) == [(3, result['test']['MSE'])]
    assert found.data.metrics['Model/Test/MAE'] == result['test']['MAE']
    assert found.data.metrics['Model/Validation/MAE'] == result['validation']['MAE']
    # ...over the whole test set (43 samples, shares of 22 and 21), not a share
    reference = whole_test_set_mse(pathlib.Path.cwd() / 'weights.pt')
    assert result['test']['MSE'] == pytest.approx(reference, rel=1e-6)

    data = record(tmp_path / 'registry')
    assert data['world_size'] == 2
    assert data['plugins']['mlflow']['run_id'] == mlflow_id


def test_a_relaunched_distributed_run_continues_its_mlflow_run(
    store: str, tmp_path: pathlib.Path
) -> None:
    first = launch(store, JOB_RUN_ID='fixed', JOB_EPOCHS='1')
    client = MlflowClient(store)
    before = only_run(client)
    assert before.info.status == 'FINISHED'
    assert [s for s, _ in history(client, before.info.run_id, TRAINER)] == [1]

    second = launch(store, JOB_RUN_ID='fixed', JOB_EPOCHS='2')
    assert first['id'] == second['id'] == 'fixed'
    after = only_run(client)  # the same run, not a second one
    mlflow_id = after.info.run_id
    assert mlflow_id == before.info.run_id
    assert after.info.status == 'FINISHED'
    assert after.info.run_name == 'fixed'
    assert after.data.tags['drytorch.sessions'] == '2'
    # the first session's last checkpoint is mid-epoch 1 (one every 3 steps,
    # 10 steps an epoch): the second trains the end of epoch 1 again and logs
    # it again, with the same values (exact resume). MLflow keeps both points
    # (a documented limitation); the plugin's reading keeps one per epoch.
    trained = history(client, mlflow_id, TRAINER)
    assert [step for step, _ in trained][-2:] == [1, 2]  # epoch 2 once, last
    assert sorted(set(trained)) == [trained[0], (2, second['train']['MSE'])]
    validated = history(client, mlflow_id, VALIDATION)
    assert [step for step, _ in validated][-2:] == [1, 2]
    assert sorted(set(validated)) == [validated[0], (2, second['validation']['MSE'])]
    tested = history(client, mlflow_id, TEST)  # each session tests at its end
    assert tested == [(1, first['test']['MSE']), (2, second['test']['MSE'])]

    data = record(tmp_path / 'registry')
    assert data['id'] == 'fixed' and data['world_size'] == 2
    assert len(data['sessions']) == 2
    state = data['plugins']['mlflow']
    assert state['run_id'] == mlflow_id
    read = reading.read_metrics(state)  # what `drytorch plot` shows
    assert read is not None
    assert read['Model']['Trainer'].epochs == [1, 2]
    assert read['Model']['Trainer'].values['MSE'] == [v for _, v in trained[-2:]]
    assert read['Model']['Validation'].epochs == [1, 2]
    assert read['Model']['Test'].epochs == [1, 2]
