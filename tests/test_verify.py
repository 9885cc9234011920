"""``drytorch verify``: checkpoints against their recorded hashes, the environment."""

from __future__ import annotations

import json
import pathlib
import tomllib

import tomli_w

from drytorch import Experiment
from tests import training_kit as kit
from tests.test_cli import drytorch


def trained(run_id: str = 'r', **every: int) -> Experiment[None]:
    experiment = kit.experiment('verified')
    with experiment.create_run(run_id=run_id):
        trainer = kit.trainer()
        if every:
            trainer.checkpoint_every(**every)
            trainer.train(3)
        else:
            trainer.train(1)
            trainer.save_checkpoint()
            trainer.train(1)
            trainer.save_checkpoint()
    return experiment


def checkpoints(experiment: Experiment[None], run_id: str = 'r') -> dict[str, dict]:
    (record,) = [r for r in experiment.list_runs() if r.id == run_id]
    return dict(record.data['summary']['checkpoints'])


def test_a_healthy_run_verifies() -> None:
    experiment = trained()
    saved = checkpoints(experiment)
    assert sorted(saved) == ['Model/epoch_1.pt', 'Model/epoch_2.pt']
    done = drytorch('verify', 'r')
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(' ok ') == 2
    assert 'Environment: as recorded.' in done.stdout
    report = json.loads(drytorch('verify', 'r', '--json').stdout)
    assert report['ok'] and [c['status'] for c in report['checkpoints']] == ['ok'] * 2


def test_changed_and_missing_checkpoints_fail() -> None:
    saved = checkpoints(trained())
    first = pathlib.Path(saved['Model/epoch_1.pt']['path'])
    second = pathlib.Path(saved['Model/epoch_2.pt']['path'])
    data = bytearray(first.read_bytes())
    data[-20] ^= 0xFF
    first.write_bytes(bytes(data))
    second.unlink()
    done = drytorch('verify', 'r', '--json')
    assert done.returncode == 1
    statuses = {c['name']: c['status'] for c in json.loads(done.stdout)['checkpoints']}
    assert statuses == {
        'Model/epoch_1.pt': 'hash differs',
        'Model/epoch_2.pt': 'missing',
    }


def test_pruned_checkpoints_are_forgotten() -> None:
    experiment = trained(epochs=1, keep_last=1)
    assert list(checkpoints(experiment)) == ['Model/epoch_3.pt']
    assert drytorch('verify', 'r').returncode == 0


def test_environment_differences_are_listed() -> None:
    experiment = trained()
    (record,) = experiment.list_runs()
    data = tomllib.loads(record.path.read_text())
    data['environment']['torch'] = '0.0.1'
    record.path.write_text(tomli_w.dumps(data))
    done = drytorch('verify', 'r')
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith('torch'))
    assert row.split()[:2] == ['torch', '0.0.1']
