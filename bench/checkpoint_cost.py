"""Benchmark: what exact resuming adds to checkpoints, and step checkpoints per step.

Targets:

* the state that exact resuming adds to a checkpoint (RNG states, the loader's
  epoch-start state, the loss's running sums) costs less than 5 % of the
  checkpoint's save time (median, the real save with ``fsync``);
* with ``checkpoint_every(steps=...)`` set but no save due, the per-batch check
  costs at most 1 us/step (it is an integer compare; the figure is noise).

Reported: the per-step cost of checkpointing every 10 and every 100 steps,
beside what the saves themselves take (``save_checkpoint()`` timed inside that
same training, retention included), and how much slower the steps right
after a save run than steady ones (caches refilled after the save's I/O and
``fsync``: work outside both the save and the batch loop's code, which is why
the per-step cost exceeds the saves' share).

Workload: the training benchmark's MLP 32 -> 64 -> 10 (ReLU), cross-entropy
on 4,096 synthetic samples, batch 32 (128 steps an epoch), CPU with
``torch.set_num_threads(1)``, Adam (so the optimizer state holds two moments
per parameter). Checkpoints go through the storage hooks to the built-in
local backend (temporary file, ``fsync``, rename) in a temporary folder.

Save time: the trainer is stopped inside an epoch (the checkpoint holds the
loss's running sums) and its checkpoint is built and saved as
``Trainer.save_checkpoint`` does, each time to a new file (the one from two
saves before is deleted, untimed, as ``keep_last`` would), in two variants
interleaved in ABBA order: the full checkpoint, and the same with the RNG
states, the loader state and the running sums left out (their functions
patched to return nothing, so gathering them is left out too). This is the
strictest measure: the save's cheapest form, with the extra state's gathering
cold after each save. For information, the same comparison is printed
without ``fsync`` (patched to a no-op: there the extra state weighs most),
with a torch draw between saves (as dropout makes; every generator is read
through its public API at every save either way), and for the whole public call
``trainer.save_checkpoint()`` (which also hashes the file for the run record
and applies ``keep_last``).

Per-step cost: one training epoch per variant per round, in rotated order,
for no checkpointing, ``steps=10**9`` (the check only), ``steps=100`` and
``steps=10``; (variant - none) / 128 steps, median over the rounds. After a
save: with saves every 10 steps, each step's time by its place after the
last save (median over the rounds' epochs), minus the median step of the
run without checkpoints.

Usage::

    .venv/bin/python bench/checkpoint_cost.py [--saves 200] [--rounds 25]

It always exits 0 and prints PASS or MISS beside each target.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from scratch import scratch_environment
from torch import nn
from torch.utils import data
from training_overhead import (  # the training benchmark's workload
    BATCH_SIZE,
    N_CLASSES,
    N_HIDDEN,
    N_IN,
    N_SAMPLES,
    STEPS,
)

EXTRA_TARGET = 0.05
CHECK_TARGET_US = 1.0


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


def make_trainer(name: str) -> Any:
    from drytorch import DataLoader, LearningSchema, Loss, Model, Trainer

    torch.manual_seed(0)
    inputs = torch.randn(N_SAMPLES, N_IN)
    targets = torch.randint(0, N_CLASSES, (N_SAMPLES,))
    module = nn.Sequential(
        nn.Linear(N_IN, N_HIDDEN), nn.ReLU(), nn.Linear(N_HIDDEN, N_CLASSES)
    )
    return Trainer(
        Model(module, name=name, device='cpu'),
        loader=DataLoader(data.TensorDataset(inputs, targets), BATCH_SIZE, seed=1),
        loss=Loss(cross_entropy, 'CE'),
        learning_schema=LearningSchema.adam(lr=1e-3),
    )


def stop_inside_an_epoch(trainer: Any, batches: int) -> None:
    """Leave ``trainer`` ``batches`` batches into its second epoch."""

    class Stop(Exception):
        pass

    trainer.train(1)
    original = trainer._run_batch

    def run_batch(inputs: Any, targets: Any) -> Any:
        outputs = original(inputs, targets)
        if trainer.steps == STEPS + batches:
            raise Stop
        return outputs

    trainer._run_batch = run_batch
    with contextlib.suppress(Stop):
        trainer.train(1)
    del trainer._run_batch
    trainer._in_epoch = True  # as inside the loop: a mid-epoch checkpoint


def _lean(trainer: Any) -> contextlib.ExitStack:
    """Leave the RNG states, the loader state and the running sums out."""
    from drytorch.lib import train

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(train.rng, 'get_states', lambda **_: None))
    stack.enter_context(
        mock.patch.object(trainer.loader, 'epoch_start_state', lambda: None)
    )
    stack.enter_context(mock.patch.object(trainer.loss, 'state_dict', lambda: None))
    return stack


def time_saves(
    trainer: Any, n: int, call: bool = False, between: Callable[[], Any] | None = None
) -> dict[str, list[float]]:
    """Time saving the checkpoint, full and lean, in ABBA order.

    Args:
        trainer: stopped inside an epoch.
        n: saves of each variant.
        call: time ``trainer.save_checkpoint()`` (hashing for the run record,
            retention with ``keep_last=2``), one step further each time;
            otherwise building the state and the storage hook's save only.
        between: run, untimed, before each save.
    """
    from drytorch.core import checkpointing

    location = trainer._location()
    saved: list[int] = []
    if call:
        trainer.checkpoint_every(steps=10**9, keep_last=2)

    def save() -> float:
        if between is not None:
            between()
        if call:
            trainer.steps += 1  # a new position, as step checkpoints have
            start = time.perf_counter()
            trainer.save_checkpoint()
            return time.perf_counter() - start
        start = time.perf_counter()
        epoch, batch = trainer._position()
        state = trainer._state(epoch, batch)
        checkpointing.save(location, 1000 + len(saved), state, batch)
        elapsed = time.perf_counter() - start
        saved.append(1000 + len(saved))
        if len(saved) > 2:
            checkpointing.delete(location, saved[-3], batch)
        return elapsed

    times: dict[str, list[float]] = {'full': [], 'lean': []}
    for _ in range(5):  # warm up
        save()
    for index in range(n):
        order = ('full', 'lean') if index % 4 in (0, 3) else ('lean', 'full')
        for variant in order:
            with _lean(trainer) if variant == 'lean' else contextlib.nullcontext():
                times[variant].append(save())
    return times


def save_cost(n: int, mode: str) -> tuple[float, float, int, int]:
    """Median full and lean save times (s) and the two file sizes (bytes).

    ``mode``: 'file' (the target's measure), 'no fsync', 'torch drawn' (torch's
    generator draws between saves, as dropout does) or 'call'
    (``save_checkpoint()``); see ``time_saves``.
    """
    from drytorch import Experiment

    with Experiment(None, name=f'bench-{mode}', par_dir='.').create_run():
        trainer = make_trainer(f'saves_{mode.replace(" ", "_")}')
        stop_inside_an_epoch(trainer, 40)
        with (
            mock.patch.object(os, 'fsync', lambda fd: None)
            if mode == 'no fsync'
            else contextlib.nullcontext()
        ):
            times = time_saves(
                trainer,
                n,
                call=mode == 'call',
                between=(lambda: torch.rand(1)) if mode == 'torch drawn' else None,
            )
        full_size = _size(trainer._state(*trainer._position()))
        with _lean(trainer):
            lean_size = _size(trainer._state(*trainer._position()))
        trainer._in_epoch = False
    return (
        statistics.median(times['full']),
        statistics.median(times['lean']),
        full_size,
        lean_size,
    )


def _size(state: dict[str, Any]) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return len(buffer.getvalue())


def step_cost(
    rounds: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[int, list[float]]]:
    """Per-round epoch times of each variant, its save_checkpoint() times, and
    the step times of 'every 10' and 'none' by place after the last save."""
    from drytorch import Experiment

    variants: dict[str, int | None] = {
        'none': None,
        'check only': 10**9,
        'every 100': 100,
        'every 10': 10,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    saves: dict[str, list[float]] = {name: [] for name in variants}
    places: dict[int, list[float]] = {}  # -1: steps without checkpoints
    with Experiment(None, name='bench-steps', par_dir='.').create_run():
        trainers = {}
        for index, (name, steps) in enumerate(variants.items()):
            trainer = make_trainer(f'steps_{index}')
            if steps is not None:
                trainer.checkpoint_every(steps=steps, keep_last=2)
            trainer.save_checkpoint = _timed(trainer.save_checkpoint, saves[name])
            trainer.train(1)  # warm up
            saves[name].clear()
            trainers[name] = trainer
        names = list(variants)
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                trainers[name].train(1)
                times[name].append(time.perf_counter() - start)
        for name, every in (('none', None), ('every 10', 10)):  # untimed above
            trainer = trainers[name]
            trainer._run_batch = _step_timer(trainer, every, places)
            for _ in range(max(rounds // 3, 3)):
                trainer.train(1)
    return times, saves, places


def _step_timer(
    trainer: Any, every: int | None, into: dict[int, list[float]]
) -> Callable[..., Any]:
    """Wrap ``trainer._run_batch`` to time each step by its place after a save."""
    original = trainer._run_batch

    def run_batch(*args: Any) -> Any:
        start = time.perf_counter()
        outputs = original(*args)
        elapsed = time.perf_counter() - start
        place = -1 if every is None else trainer.steps % every  # 0: it saved
        into.setdefault(place, []).append(elapsed)
        return outputs

    return run_batch


def _timed(method: Callable[[], str], into: list[float]) -> Callable[[], str]:
    def timed() -> str:
        start = time.perf_counter()
        where = method()
        into.append(time.perf_counter() - start)
        return where

    return timed


def verdict(ok: bool) -> str:
    return 'PASS' if ok else 'MISS'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--saves', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=25)
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    print(f'load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
    with scratch_environment('none'):
        full, lean, full_size, lean_size = save_cost(options.saves, 'file')
        others = {
            mode: save_cost(options.saves, mode)[:2]
            for mode in ('no fsync', 'torch drawn', 'call')
        }
        per_round, saves, places = step_cost(options.rounds)
    extra = (full - lean) / lean
    print(
        f'\ncheckpoint of MLP {N_IN}->{N_HIDDEN}->{N_CLASSES} + Adam, inside an '
        f'epoch ({options.saves} saves each, median):'
    )
    print(f'  full checkpoint   {full * 1e3:8.3f} ms  {full_size:7d} bytes')
    print(f'  without the extra {lean * 1e3:8.3f} ms  {lean_size:7d} bytes')
    print(
        f'  extra state       {extra * 100:+7.2f} %   target < {EXTRA_TARGET:.0%}  '
        f'{verdict(extra < EXTRA_TARGET)}'
    )
    print('  for information, the same comparison:')
    labels = {
        'no fsync': 'without fsync',
        'torch drawn': "torch's generator drawn from between saves",
        'call': 'trainer.save_checkpoint() (record hash, keep_last=2)',
    }
    for mode, (full_other, lean_other) in others.items():
        print(
            f'    {labels[mode]}: {full_other * 1e3:.3f} ms vs '
            f'{lean_other * 1e3:.3f} ms, extra '
            f'{(full_other - lean_other) / lean_other * 100:+.2f} %'
        )
    baseline = per_round['none']
    step_us = statistics.median(baseline) / STEPS * 1e6
    print(f'\nper-step cost of step checkpoints ({options.rounds} rounds, median):')
    print(f'  no checkpoints: {step_us:.1f} us/step')
    overheads = {
        name: statistics.median(
            (t - b) / STEPS * 1e6
            for t, b in zip(per_round[name], baseline, strict=True)
        )
        for name in ('check only', 'every 100', 'every 10')
    }
    print(
        f'  check only {overheads["check only"]:+8.2f} us/step   target <= '
        f'{CHECK_TARGET_US:.2f}  {verdict(overheads["check only"] <= CHECK_TARGET_US)}'
        '  (an integer compare per batch)'
    )
    for name, every in (('every 100', 100), ('every 10', 10)):
        one_save = statistics.median(saves[name])
        print(
            f'  {name:<10} {overheads[name]:+8.2f} us/step   of which the saves '
            f'{one_save / every * 1e6:6.2f}  (save_checkpoint() '
            f'{one_save * 1e3:.2f} ms in training)'
        )
    steady = statistics.median(places[-1]) * 1e6
    after = [statistics.median(places[k]) * 1e6 - steady for k in range(1, 10)]
    listed = ', '.join(f'{value:+.0f}' for value in after[:5])
    print(
        f'  steps after a save (every 10), over a steady step: {listed} ... us;'
        f' {sum(after):+.0f} us a save, {sum(after) / 10:+.1f} us/step'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
