"""Crash safety: kill a training process anywhere, relaunch it, get the same model.

A reference process trains a small MLP uninterrupted, with checkpoints every
few steps and every epoch, retention, hooks with state, dropout, a noisy
dataset and a CSV tracker. Each scenario runs the same script in its own run
and SIGKILLs it at a chosen or random moment (inside an epoch, right after a
step checkpoint, halfway through writing a checkpoint, after an epoch's
metrics were logged but before its checkpoint, at random times), then
relaunches it until it completes. The final weights must be equal to the
reference's tensor for tensor, the CSV files row for row, and the checkpoints
left by retention file for file.

The kill moments are drawn from a seed printed in every failure message; set
``DRYTORCH_KILL_SEED`` to replay one.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from drytorch import Experiment
from tests.conftest import ROOT

EPOCHS = 6
BATCHES = 8  # 64 samples, batch 8
EVERY_STEPS = 5
TIMEOUT = 60

CHILD = r"""
import io
import json
import random
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader, Experiment, LearningSchema, Loss, Metric, Model, Trainer, hookimpl,
)
from drytorch.core.plugins import get_host
from drytorch.lib import hooks, schedulers
from drytorch.trackers.csv import CSVDumper

args = json.loads(sys.argv[1])
mark = args['mark']
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def hold(what):
    print('MARK', what, flush=True)
    time.sleep(600)  # the parent kills the process here


class Noisy(data.Dataset):
    # Draws from random and NumPy while loading: their states matter.
    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = 0.01 * random.random() + 0.01 * float(np.random.rand())
        return self.x[i] + noise, self.y[i]


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


def mae(outputs, targets):
    return (outputs - targets).abs().mean()


def worst(outputs, targets):
    return (outputs - targets).abs().amax(1)  # per sample


class Marker:
    def __init__(self, trainer):
        self.trainer = trainer

    @hookimpl
    def on_batch_end(self, event):
        if event.source_name != 'Trainer':
            return
        if args['pace']:
            time.sleep(args['pace'])
        if mark and mark[0] == 'step' and self.trainer.steps == mark[1]:
            hold('step')

    @hookimpl(trylast=True)  # after the CSV tracker wrote the row
    def on_metrics(self, event):
        if mark and mark[0] == 'metrics' and event.source_name == 'Validation':
            if event.epoch == mark[1]:
                hold('metrics')


if mark and mark[0] == 'save':
    original_save = torch.save

    def half_written_save(obj, file, *rest, **options):
        position = [obj.get('epoch'), obj.get('batch')] if isinstance(obj, dict) else []
        if position != mark[1:]:
            return original_save(obj, file, *rest, **options)
        buffer = io.BytesIO()
        original_save(obj, buffer)
        content = buffer.getvalue()
        file.write(content[: len(content) // 2])
        file.flush()
        hold('save')

    torch.save = half_written_save

experiment = Experiment(None, name=args['name'], par_dir='.')
experiment.trackers.subscribe(CSVDumper())
with experiment.create_run(run_id='r', resume=True):
    # After the run start, which may seed the generators itself.
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    module = nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1)
    )
    model = Model(module, device='cpu')
    loss = (Loss(mse, 'MSE') + 0.1 * Loss(mae, 'MAE')) | Metric(worst, 'Worst')
    trainer = Trainer(
        model,
        loader=DataLoader(Noisy(64, 0), 8),
        loss=loss,
        learning_schema=LearningSchema.adam(
            lr=1e-2, scheduler=schedulers.ExponentialScheduler(0.9)
        ),
    )
    trainer.add_validation(DataLoader(Noisy(16, 1), 8))
    trainer.post_epoch_hooks.register(hooks.ReduceLROnPlateau(factor=0.5, patience=0))
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=50))
    trainer.checkpoint_every(
        epochs=1, steps=args['every_steps'], keep_last=3, keep_best=(None, 1)
    )
    get_host().register(Marker(trainer), 'marker')
    trainer.resume()
    print('READY', model.epoch, trainer.steps, flush=True)
    trainer.train_until(args['epochs'])
    if args['out']:
        torch.save(model.module.state_dict(), args['out'])
print('DONE', flush=True)
"""


def _spawn(name: str, mark: Sequence[Any] | None = None, **options: Any) -> Any:
    args = {
        'name': name,
        'mark': list(mark) if mark else None,
        'pace': options.get('pace', 0.0),
        'out': options.get('out', ''),
        'epochs': EPOCHS,
        'every_steps': EVERY_STEPS,
    }
    env = dict(
        os.environ,
        DRYTORCH_INIT_MODE='none',
        PYTHONPATH=str(ROOT / 'src'),
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
    )
    return subprocess.Popen(
        [sys.executable, '-c', CHILD, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(process: Any, prefix: str) -> list[str]:
    """Return the output lines up to the one starting with ``prefix``."""
    watchdog = threading.Timer(TIMEOUT, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(prefix):
                return lines
    finally:
        watchdog.cancel()
    process.wait()
    raise AssertionError(
        f'the process ended (rc {process.returncode}) before printing {prefix}:\n'
        + ''.join(lines)
    )


def _kill(process: Any) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL


def _complete(name: str, out: str = '') -> tuple[int, int]:
    """Run the script to its end; return the (epoch, steps) it resumed from."""
    process = _spawn(name, out=out)
    ready = _read_until(process, 'READY')[-1].split()
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    assert 'DONE' in output
    return int(ready[1]), int(ready[2])


def _status(name: str) -> list[str]:
    return [
        record.status for record in Experiment(None, name=name, par_dir='.').list_runs()
    ]


def _csv_rows(name: str) -> dict[str, list[list[str]]]:
    folder = pathlib.Path('csv_metrics', name, 'r')
    return {
        path.name: list(csv.reader(path.open(newline='', encoding='utf-8')))
        for path in sorted(folder.iterdir())
    }


def _checkpoint_files(name: str) -> list[str]:
    return sorted(
        p.name for p in pathlib.Path('checkpoints', name, 'r', 'Model').iterdir()
    )


def _expected_resume_steps(step: int) -> int:
    """The steps of the latest checkpoint when a kill lands after ``step``.

    Step checkpoints are taken after the step, except on an epoch's last
    batch, saved with the epoch's end; the marker fires before that.
    """
    saved = [
        s
        for s in range(1, step + 1)
        if (s % BATCHES == 0 and s < step)
        or (s % EVERY_STEPS == 0 and s % BATCHES != 0)
    ]
    return max(saved, default=0)


def test_killed_anywhere_the_relaunched_run_ends_as_the_uninterrupted_one(
    tmp_path: pathlib.Path,
) -> None:
    seed = int(os.environ.get('DRYTORCH_KILL_SEED', time.time_ns() % 2**32))
    draw = random.Random(seed)
    total = EPOCHS * BATCHES
    steps = range(1, total)
    between = [s for s in steps if s % EVERY_STEPS and s % BATCHES]
    on_checkpoints = [s for s in steps if s % EVERY_STEPS == 0]
    inside = [(s // BATCHES, s % BATCHES) for s in on_checkpoints if s % BATCHES]
    first, second = sorted(draw.sample(between, 2))
    scenarios: dict[str, list[tuple[Any, ...]]] = {
        'between_checkpoints': [('step', draw.choice(between))],
        'after_step_checkpoint': [('step', draw.choice(on_checkpoints))],
        'writing_mid_epoch': [('save', *draw.choice(inside))],
        'writing_epoch_end': [('save', draw.randint(1, EPOCHS), 0)],
        'logged_not_saved': [('metrics', draw.randint(1, EPOCHS))],
        'twice': [('step', first), ('step', second)],
        'at_random_times': [('time', draw.random()), ('time', draw.random())],
    }
    context = f'kill seed {seed}, scenarios {scenarios}'

    started = time.perf_counter()
    reference = _spawn('reference', out=str(tmp_path / 'reference.pt'))
    _read_until(reference, 'READY')
    ready_after = time.perf_counter() - started
    output, _ = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, output

    def play(name: str) -> None:
        for kind, *where in scenarios[name]:
            if kind == 'time':  # from the start: importing, resuming, training
                process = _spawn(name, pace=0.01)
                time.sleep(ready_after * 0.7 + where[0] * (0.6 + ready_after * 0.3))
                if process.poll() is None:
                    _kill(process)
                continue
            process = _spawn(name, (kind, *where))
            _read_until(process, 'MARK')
            _kill(process)
            assert _status(name) == ['crashed'], context
        resumed = _complete(name, out=str(tmp_path / f'{name}.pt'))
        for kind, *where in scenarios[name][-1:]:
            if kind == 'step':  # it went on from the latest checkpoint
                assert resumed[1] == _expected_resume_steps(where[0]), context

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(play, name) for name in scenarios]:
            future.result()

    expected = torch.load(tmp_path / 'reference.pt', weights_only=True)
    rows = _csv_rows('reference')
    assert [int(row[2]) for row in rows['Model_Trainer.csv'][1:]] == list(
        range(1, EPOCHS + 1)
    )
    files = _checkpoint_files('reference')
    assert 'epoch_6.pt' in files
    for name in scenarios:
        weights = torch.load(tmp_path / f'{name}.pt', weights_only=True)
        assert weights.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(weights[key], value), f'{name}: {key}; {context}'
        assert _csv_rows(name) == rows, f'{name}; {context}'
        assert _checkpoint_files(name) == files, f'{name}; {context}'
        assert _status(name) == ['completed']
