"""A notebook written for the original DRYTorch, end to end, in a fresh interpreter.

The script uses only the original's spellings, in the order its tutorials
(getting started, experiments and runs, metrics and losses, trackers) use
them, written here from ``shared/spec/original-api.md``: a dict config,
explicit ``start``/``stop``, positional names, ``base_lr=``, ``val_loader=``,
a ``Loss`` object as the monitored metric, composed losses, a torchmetrics
metric, and a tracker dispatching on the original's events. Under
``DRYTORCH_INIT_MODE=minimal`` it must print no log line.
"""

from __future__ import annotations

import json
import pathlib

from tests.conftest import run_python

SCRIPT = r"""
import functools, json
from typing import Any

import torch
import torchmetrics
from torch.utils.data import TensorDataset

import drytorch
from drytorch import (
    DataLoader, Experiment, LearningSchema, Loss, Metric, Model, Test, Trainer,
)
from drytorch.contrib.torchmetrics import from_torchmetrics
from drytorch.core import log_events
from drytorch.core.tracking import Tracker
from drytorch.lib.hooks import EarlyStoppingCallback
from drytorch.lib.objectives import compute_metrics

assert drytorch.INIT_MODE == 'minimal'


class MyExperiment(Experiment[dict]):
    pass


class Seen(Tracker):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[str] = []
        self.actors: list[str] = []

    @functools.singledispatchmethod
    def notify(self, event: log_events.Event) -> None:
        return super().notify(event)

    @notify.register
    def _(self, event: log_events.ModelRegistrationEvent) -> None:
        self.models.append(event.model_name + ':' + event.architecture_repr[:6])
        return super().notify(event)

    @notify.register
    def _(self, event: log_events.ActorRegistrationEvent) -> None:
        self.actors.append(event.actor_name)
        return super().notify(event)


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


def mae(outputs, targets):
    return (outputs - targets).abs().mean()


torch.manual_seed(0)
x = torch.randn(64, 3)
data = TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]))
config = {'lr': 0.05, 'layers': [3, 1]}
exp = MyExperiment(config, name='tutorial', tags=['demo'])
seen = Seen()
exp.trackers.subscribe(seen)
run = exp.create_run()
run.start()
assert run.is_active() and MyExperiment.get_config()['lr'] == 0.05
assert Experiment.get_current() is exp
config['lr'] = 1.0  # the user's dict changes; the run's config does not
assert MyExperiment.get_config()['lr'] == 0.05

model = Model(torch.nn.Linear(3, 1), 'net')
loss = Loss(mse, 'MSE')
trainer = Trainer(
    model,
    'trainer',
    loader=DataLoader(data, 16),
    loss=loss ** 2 + 0.5 * Loss(mae, 'MAE'),
    learning_schema=LearningSchema.adam(base_lr=0.05),
)
trainer.add_validation(val_loader=DataLoader(data, 16))
trainer.post_epoch_hooks.register(
    EarlyStoppingCallback[Any, Any](metric=loss, patience=2)
)
trainer.train(3)
trainer()  # one more epoch
metrics = Test(model, loader=DataLoader(data, 16), metric=Metric(mae, 'MAE'))()
tm = from_torchmetrics(1 + torchmetrics.MeanSquaredError())
tm.update(model(x).detach(), data.tensors[1])
run.stop()
print(json.dumps({
    'epoch': model.epoch,
    'terminated': trainer.terminated,
    'formula': trainer.objective.formula,
    'test': sorted(metrics),
    'torchmetrics': sorted(compute_metrics(tm)),
    'models': seen.models,
    'actors': seen.actors,
    'status': run.status,
}))
"""


def test_an_original_tutorial_runs_unchanged_and_quietly(
    tmp_path: pathlib.Path,
) -> None:
    done = run_python(
        SCRIPT, tmp_path, env={'DRYTORCH_INIT_MODE': 'minimal'}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['epoch'] == 4 and result['terminated'] is False
    assert result['formula'] == '[MSE]^2 + 0.5 x [MAE]'
    assert result['test'] == ['MAE']
    assert result['torchmetrics'] == ['Combined Loss', 'MeanSquaredError']
    assert result['models'] == ['net:Linear'] and 'trainer' in result['actors']
    assert result['status'] == 'completed'
    assert done.stderr.strip() == ''  # minimal mode: no log line, no warning
