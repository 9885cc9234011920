"""Gradient accumulation: k batches of size b train as one batch of k * b.

Real training on the CPU: the updates are compared with a larger batch and
with a hand-written loop, checkpoints taken inside and between accumulation
windows resume exactly (after a SIGKILL too), and under DDP only the last
batch of a window synchronises (``tests/test_distributed.py``).
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import torch

from drytorch import DataLoader, LearningSchema, Trainer, hookimpl
from tests import training_kit as kit
from tests.conftest import run_python


def build(
    batch_size: int, accumulate: int, n: int = 64
) -> tuple[Trainer[Any, Any, Any], DataLoader[Any]]:
    loader = DataLoader(kit.regression(n), batch_size, seed=3)
    trainer = Trainer(
        kit.linear(),
        loader=loader,
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(0.1),
        accumulate_grad_batches=accumulate,
    )
    return trainer, loader


def test_k_batches_update_as_one_batch_k_times_larger() -> None:
    with kit.experiment().create_run(run_id='big'):
        big, _ = build(16, 1)
        big.train(3)
        expected = kit.weights(big.model)
        assert big.steps == 12
    with kit.experiment().create_run(run_id='small'):
        small, _ = build(4, 4)
        small.train(3)
        assert small.steps == 12  # optimizer steps, not batches
        for key, value in kit.weights(small.model).items():
            torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
        # the epoch's metrics are still those of every batch
        assert small.computed_metrics['MSE'] == pytest.approx(
            big.computed_metrics['MSE'], rel=1e-4
        )


def test_the_last_window_of_an_epoch_is_shorter_and_complete() -> None:
    # 10 batches of 4, windows of 4: 4 + 4 + 2, each loss divided by its size
    with kit.experiment().create_run(run_id='short'):
        trainer, _ = build(4, 4, n=40)
        start = {k: v.clone() for k, v in kit.weights(trainer.model).items()}
        trainer.train(1)
        assert trainer.steps == 3
        trained = kit.weights(trainer.model)
    module = torch.nn.Linear(3, 1)
    module.load_state_dict(start)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    replay = DataLoader(kit.regression(40), 4, seed=3)
    batches = list(replay)
    for window in (batches[:4], batches[4:8], batches[8:]):
        for x, y in window:
            (kit.mse_fn(module(x), y) / len(window)).backward()
        optimizer.step()
        optimizer.zero_grad()
    for key, value in module.state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_inside_a_window_keeps_its_gradients() -> None:
    with kit.experiment().create_run(run_id='whole'):
        whole, _ = build(4, 4)
        whole.train(2)
        expected = kit.weights(whole.model)

    saver: dict[str, Any] = {}

    class SaveAtBatch:
        name = 'SaveAtBatch'

        @hookimpl
        def on_batch_end(self, event: Any) -> None:
            if event.batch == 6 and not saver:  # the 2nd of the 2nd window
                saver['where'] = saver_trainer.save_checkpoint()

    experiment = kit.experiment()
    experiment.trackers.subscribe(SaveAtBatch())
    with experiment.create_run(run_id='cut'):
        saver_trainer, _ = build(4, 4)
        saver_trainer.train(1)
    assert saver['where'].endswith('epoch_0_batch_6.pt')
    with experiment.create_run(run_id='cut', resume=True):
        resumed, _ = build(4, 4)
        resumed.load_checkpoint(0, 6)
        assert resumed.steps == 1 and resumed._window == 2
        resumed.train_until(2)
        assert resumed.steps == whole.steps == 8
        for key, value in kit.weights(resumed.model).items():
            assert torch.equal(value, expected[key]), key


CHILD = r"""
import json, os, signal, sys
from drytorch import DataLoader, Experiment, LearningSchema, Trainer, hookimpl
from tests import training_kit as kit

KILL_AT = int(sys.argv[1])  # SIGKILL after this batch of the whole training


class Killer:
    name = 'Killer'
    seen = 0

    @hookimpl
    def on_batch_end(self, event):
        Killer.seen += 1
        if Killer.seen == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


experiment = Experiment(None, name='acc', par_dir='.')
if KILL_AT:
    experiment.trackers.subscribe(Killer())
with experiment.create_run(run_id=sys.argv[2], resume=True):
    trainer = Trainer(
        kit.linear(),
        loader=DataLoader(kit.regression(60), 4, seed=3),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(0.1),
        accumulate_grad_batches=4,
    )
    trainer.checkpoint_every(steps=1)
    trainer.resume()
    trainer.train_until(3)
    weights = {k: v.tolist() for k, v in trainer.model.module.state_dict().items()}
    print(json.dumps({'steps': trainer.steps, 'weights': weights}))
"""


def test_sigkill_inside_a_window_resumes_exactly(tmp_path: pathlib.Path) -> None:
    cwd = tmp_path / 'work'
    env = {'PYTHONPATH': str(pathlib.Path(__file__).resolve().parents[1])}
    whole = run_python(
        CHILD.replace('sys.argv[1]', "'0'").replace('sys.argv[2]', "'whole'"), cwd, env
    )
    assert whole.returncode == 0, whole.stderr
    expected = whole.stdout.splitlines()[-1]
    # 15 batches an epoch, windows 4+4+4+3: batch 22 is the 3rd of epoch 2's
    # 2nd window; the last checkpoint (step 5) ends its 1st window
    killed = run_python(
        CHILD.replace('sys.argv[1]', "'22'").replace('sys.argv[2]', "'cut'"), cwd, env
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILL, not an error
    assert 'Checkpoint of Model at epoch 1 batch 4 loaded' not in killed.stderr
    relaunched = run_python(
        CHILD.replace('sys.argv[1]', "'0'").replace('sys.argv[2]', "'cut'"), cwd, env
    )
    assert relaunched.returncode == 0, relaunched.stderr
    assert 'epoch 1 batch 4 loaded' in relaunched.stderr
    assert relaunched.stdout.splitlines()[-1] == expected
    assert '"steps": 12' in expected


def test_accumulate_grad_batches_is_checked() -> None:
    with kit.experiment().create_run(run_id='bad'):
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match='accumulate_grad_batches'):
                build(4, bad)  # type: ignore[arg-type]
