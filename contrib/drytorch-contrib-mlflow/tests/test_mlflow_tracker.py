"""Real runs tracked in a real MLflow store (SQLite), read back with MlflowClient."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tomllib
from typing import Any

import mlflow_kit as kit
import pytest
from drytorch import DataLoader, exceptions, testing
from drytorch.log_events import StepMetricsEvent
from mlflow.entities import Run as MlflowRun
from mlflow.tracking import MlflowClient

from drytorch_contrib_mlflow import MLflow, keys
from drytorch_contrib_mlflow.reading import read_metrics

pytestmark = [
    pytest.mark.filterwarnings('error::drytorch.exceptions.TrackerFailureWarning'),
    # MLflow's store with SQLAlchemy 2.1, once per process: not ours to fix
    pytest.mark.filterwarnings('ignore:The ``noload`` loader strategy'),
]
KIT = pathlib.Path(kit.__file__)
TIMEOUT = 120  # seconds, for each process a test starts


def only_run(client: MlflowClient, experiment: str) -> MlflowRun:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f'no MLflow experiment {experiment!r}'
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda p: p.timestamp)
    return [(point.step, point.value) for point in points]


def record(path: pathlib.Path) -> dict[str, Any]:
    return tomllib.loads(pathlib.Path(path).read_text())


def logged(recorder: testing.HookRecorder, source: str) -> list[tuple[int, float]]:
    return [
        (event.epoch, event.metrics['MSE'])
        for event in recorder.events('on_metrics')
        if event.source_name == source
    ]


def sha256(path: str | pathlib.Path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_a_run_is_an_mlflow_run(host: Any, exp_name: str, tracking_uri: str) -> None:
    recorder = testing.HookRecorder()
    host.register(recorder, 'recorder')
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(MLflow())
    with exp.create_run(run_id='first', seed=7) as run:
        trainer, test = kit.build()
        trainer.train(3)
        location = trainer.save_checkpoint()
        test()

    client = MlflowClient(tracking_uri)
    found = only_run(client, exp_name)
    mlflow_id = found.info.run_id
    assert found.info.status == 'FINISHED'
    assert found.info.run_name == 'first'
    data = record(run.record_path)
    tags = found.data.tags
    assert tags['drytorch.run_id'] == 'first'
    assert tags['drytorch.experiment'] == exp_name
    assert tags['drytorch.experiment_class'] == data['experiment_class']
    assert tags['drytorch.tags'] == 'mlflow,small'
    assert tags['drytorch.seed'] == '7'
    assert tags['drytorch.sessions'] == '1'
    assert tags['drytorch.truncated_params'] == 'notes'
    assert 'drytorch.error' not in tags

    assert found.data.params == kit.PARAMS

    assert history(client, mlflow_id, 'net/Trainer/MSE') == logged(recorder, 'Trainer')
    assert [step for step, _ in history(client, mlflow_id, 'net/Trainer/MSE')] == [
        1,
        2,
        3,
    ]
    assert history(client, mlflow_id, 'net/Validation/MSE') == logged(
        recorder, 'Validation'
    )
    assert len(logged(recorder, 'Validation')) == 3
    assert history(client, mlflow_id, 'net/Test/MSE') == logged(recorder, 'Test')
    assert [step for step, _ in logged(recorder, 'Test')] == [3]

    (saved,) = recorder.events('on_checkpoint_save')
    assert saved.digest == sha256(location)
    assert json.loads(tags['drytorch.checkpoint/net/epoch_3']) == {
        'location': location,
        'sha256': sha256(location),
        'epoch': 3,
        'batch': 0,
    }
    assert client.list_artifacts(mlflow_id) == []  # no weights uploaded

    state = data['plugins']['mlflow']
    assert state == {
        'format': 1,
        'tracking_uri': tracking_uri,
        'experiment_id': found.info.experiment_id,
        'run_id': mlflow_id,
    }
    assert data['summary']['outputs']['MLflow'] == (
        f'{tracking_uri} (experiment {found.info.experiment_id}, run {mlflow_id})'
    )


def test_a_failed_run_is_failed(exp_name: str, tracking_uri: str) -> None:
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(MLflow(tracking_uri))
    with pytest.raises(RuntimeError, match='boom'), exp.create_run(run_id='bad'):
        trainer, _ = kit.build()
        trainer.train(1)
        raise RuntimeError('boom')
    client = MlflowClient(tracking_uri)
    found = only_run(client, exp_name)
    assert found.info.status == 'FAILED'
    assert found.data.tags['drytorch.error'] == 'RuntimeError: boom'
    assert [s for s, _ in history(client, found.info.run_id, 'net/Trainer/MSE')] == [1]


def test_each_model_has_its_own_keys(exp_name: str, tracking_uri: str) -> None:
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(MLflow())
    with exp.create_run():
        for name in ('enc', 'dec'):
            trainer, _ = kit.build(name)
            trainer.train(1)
    found = only_run(MlflowClient(tracking_uri), exp_name)
    assert set(found.data.metrics) == {
        f'{model}/{source}/MSE'
        for model in ('enc', 'dec')
        for source in ('Trainer', 'Validation')
    }


@pytest.mark.drytorch_settings(init_mode='none', trackers='MLflow')
def test_a_resumed_run_continues_its_mlflow_run_in_a_new_process(
    exp_name: str, tracking_uri: str
) -> None:
    exp = kit.experiment(exp_name)
    assert exp.trackers.names == ['MLflow']  # by name, through the entry point
    with exp.create_run(run_id='long') as run:
        trainer, _ = kit.build()
        trainer.train(2)
        trainer.save_checkpoint()
    client = MlflowClient(tracking_uri)
    first = only_run(client, exp_name)
    assert first.info.status == 'FINISHED'
    before = history(client, first.info.run_id, 'net/Trainer/MSE')
    saved = json.loads(first.data.tags['drytorch.checkpoint/net/epoch_2'])
    assert saved['sha256'] == sha256(saved['location'])
    state = record(run.record_path)['plugins']['mlflow']

    args = {'experiment': exp_name, 'run_id': 'long', 'epochs': 4, 'keep_last': 1}
    done = subprocess.run(
        [sys.executable, str(KIT), json.dumps(args)],
        cwd=os.getcwd(),
        env=dict(os.environ),  # the registry, DRYTORCH_TRACKERS, MLFLOW_TRACKING_URI
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {'trackers': ['MLflow']}

    after = only_run(client, exp_name)  # the same one, not a second
    mlflow_id = after.info.run_id
    assert mlflow_id == first.info.run_id
    assert after.info.status == 'FINISHED'
    assert after.data.tags['drytorch.sessions'] == '2'
    assert after.data.params == kit.PARAMS
    trained = history(client, mlflow_id, 'net/Trainer/MSE')
    assert trained[:2] == before
    assert [step for step, _ in trained] == [1, 2, 3, 4]
    validated = history(client, mlflow_id, 'net/Validation/MSE')
    assert [step for step, _ in validated] == [1, 2, 3, 4]
    assert [step for step, _ in history(client, mlflow_id, 'net/Test/MSE')] == [4]
    entries = {
        epoch: json.loads(after.data.tags[f'drytorch.checkpoint/net/epoch_{epoch}'])
        for epoch in (2, 3, 4)
    }
    assert entries[4]['sha256'] == sha256(entries[4]['location'])
    assert 'deleted' not in entries[4]
    # epoch 2 was saved by the first session, deleted by the second's retention
    assert entries[2] == {**saved, 'deleted': True}
    assert entries[3]['deleted'] is True
    assert record(run.record_path)['plugins']['mlflow'] == state


def test_resuming_in_the_same_process_logs_no_params_again(
    exp_name: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = kit.experiment(exp_name)
    tracker = MLflow()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='again'):
        trainer, _ = kit.build()
        trainer.train(1)
        trainer.save_checkpoint()
        first_id = tracker.run_id

    sent: list[Any] = []
    original = MlflowClient.log_batch

    def spy(self: MlflowClient, run_id: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((args, kwargs))
        return original(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, 'log_batch', spy)
    with exp.create_run(run_id='again', resume=True):
        assert tracker.run_id == first_id
        trainer, _ = kit.build()
        trainer.resume()
        trainer.train(1)
    assert sent, 'the spy saw nothing'
    assert not any(kwargs.get('params') for _, kwargs in sent)
    client = MlflowClient(tracking_uri)
    assert only_run(client, exp_name).info.status == 'FINISHED'
    trained = history(client, first_id, 'net/Trainer/MSE')
    assert [step for step, _ in trained] == [1, 2]


def test_a_lost_mlflow_run_is_replaced(exp_name: str, tracking_uri: str) -> None:
    exp = kit.experiment(exp_name)
    tracker = MLflow()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='lost') as run:
        kit.build()[0].train(1)
        lost = tracker.run_id
    client = MlflowClient(tracking_uri)
    client.delete_run(lost)
    with (
        pytest.warns(exceptions.DryTorchWarning, match='a new MLflow run starts'),
        exp.create_run(run_id='lost', resume=True),
    ):
        replaced = tracker.run_id
    assert replaced != lost
    found = only_run(client, exp_name)  # search_runs leaves deleted runs out
    assert found.info.run_id == replaced
    assert found.info.status == 'FINISHED'
    assert found.data.params == kit.PARAMS
    assert found.data.tags['drytorch.sessions'] == '1'
    assert record(run.record_path)['plugins']['mlflow']['run_id'] == replaced


def test_checkpoints_uploaded_on_request_and_deletions_marked(
    exp_name: str, tracking_uri: str, tmp_path: pathlib.Path
) -> None:
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(
        MLflow(log_checkpoints=True, artifact_location=str(tmp_path / 'artifacts'))
    )
    with exp.create_run():
        trainer, _ = kit.build()
        trainer.checkpoint_every(epochs=1, keep_last=1)
        trainer.train(3)
    client = MlflowClient(tracking_uri)
    found = only_run(client, exp_name)
    mlflow_id = found.info.run_id
    entries = {
        epoch: json.loads(found.data.tags[f'drytorch.checkpoint/net/epoch_{epoch}'])
        for epoch in (1, 2, 3)
    }
    assert [entries[e].get('deleted', False) for e in (1, 2, 3)] == [True, True, False]
    assert entries[3]['sha256'] == sha256(entries[3]['location'])
    assert not pathlib.Path(entries[1]['location']).exists()
    uploaded = [a.path for a in client.list_artifacts(mlflow_id, 'checkpoints/net')]
    assert uploaded == [f'checkpoints/net/epoch_{e}.pt' for e in (1, 2, 3)]
    copy = client.download_artifacts(
        mlflow_id, entries[3]['artifact'], str(tmp_path / 'down')
    )
    assert sha256(copy) == entries[3]['sha256']


def test_the_default_store_is_recorded_as_an_absolute_uri(
    exp_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv('MLFLOW_TRACKING_URI')  # MLflow's default: ./mlflow.db
    exp = kit.experiment(exp_name)
    tracker = MLflow()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='here') as run:
        kit.build()[0].train(1)
        first_id = tracker.run_id
    uri = record(run.record_path)['plugins']['mlflow']['tracking_uri']
    assert uri == f'sqlite:///{tmp_path / "work" / "mlflow.db"}'
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with exp.create_run(run_id='here', resume=True):
        assert tracker.run_id == first_id
    assert not (elsewhere / 'mlflow.db').exists()
    assert only_run(MlflowClient(uri), exp_name).info.status == 'FINISHED'


# --- curves by optimizer step ----------------------------------------------------


def by_step(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    points = client.get_metric_history(run_id, key)
    return [(p.step, p.value) for p in sorted(points, key=lambda p: p.step)]


def step_metric_requests(sent: list[Any]) -> int:
    """How many ``log_batch`` requests carried step points."""
    return sum(
        any('/step/' in metric.key for metric in kwargs.get('metrics') or ())
        for _, kwargs in sent
    )


def test_step_metrics_are_keys_by_step_sent_in_few_requests(
    exp_name: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    original = MlflowClient.log_batch

    def spy(self: MlflowClient, run_id: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((args, kwargs))
        return original(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, 'log_batch', spy)
    exp = kit.experiment(exp_name)
    tracker = MLflow()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='steps'):
        for step in (2, 4, 6):
            event = StepMetricsEvent('net', 'Trainer', 1, step, {'MSE': step / 10})
            tracker.on_step_metrics(event)
        tracker.on_step_metrics(
            StepMetricsEvent('net', 'Validation', 1, 6, {'MSE': 0.5, 'MAE': 0.25})
        )
        assert step_metric_requests(sent) == 1  # the first point, at once
    assert step_metric_requests(sent) == 2  # the others, at the run's stop
    client = MlflowClient(tracking_uri)
    found = only_run(client, exp_name)
    mlflow_id = found.info.run_id
    assert set(found.data.metrics) == {
        'net/step/Trainer/MSE',
        'net/step/Validation/MSE',
        'net/step/Validation/MAE',
    }
    assert by_step(client, mlflow_id, 'net/step/Trainer/MSE') == [
        (2, 0.2),
        (4, 0.4),
        (6, 0.6),
    ]
    assert by_step(client, mlflow_id, 'net/step/Validation/MAE') == [(6, 0.25)]
    assert keys.step_metric_key('net', 'Trainer', 'MSE') == 'net/step/Trainer/MSE'


def test_training_logs_curves_by_step(
    host: Any, exp_name: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '2')
    recorder = testing.HookRecorder()
    host.register(recorder, 'recorder')
    exp = kit.experiment(exp_name)
    exp.trackers.subscribe(MLflow())
    with exp.create_run(run_id='steps') as run:
        trainer, _ = kit.build()
        trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8), every_steps=3)
        trainer.train(2)  # 4 steps an epoch
    client = MlflowClient(tracking_uri)
    mlflow_id = only_run(client, exp_name).info.run_id
    for source, steps in (('Trainer', [2, 4, 6, 8]), ('Validation', [3, 6])):
        expected = [
            (event.step, event.metrics['MSE'])
            for event in recorder.events('on_step_metrics')
            if event.source_name == source
        ]
        assert [step for step, _ in expected] == steps
        key = f'net/step/{source}/MSE'
        assert by_step(client, mlflow_id, key) == expected
    # by epoch, unchanged; drytorch plot reads the epoch keys only
    assert history(client, mlflow_id, 'net/Trainer/MSE') == logged(recorder, 'Trainer')
    read = read_metrics(record(run.record_path)['plugins']['mlflow'])
    assert read is not None
    assert sorted(read['net']) == ['Trainer', 'Validation']
    assert read['net']['Trainer'].epochs == [1, 2]
