"""Checks that need a CUDA device; run on a machine with one.

    python bench/gpu_check.py

1. No host-device synchronisation per batch: with CUDA's sync debug mode set to
   warn, an epoch of 32 batches synchronises no more often than one of 8
   batches (the epoch-end reads only), with and without the default trackers.
2. Mixed precision trains on CUDA (float16 autocast and gradient scaling).
   ``torch.amp.GradScaler.step`` itself reads its inf check on the host each
   step: that synchronisation belongs to torch, and is reported apart.
3. A checkpoint saved on CUDA restores the weights and the CUDA RNG state.
4. Time per step of the Trainer and of a hand-written loop on the GPU.
Prints PASS/FAIL per check and exits non-zero if one fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

WORK = tempfile.mkdtemp()
os.environ['DRYTORCH_REGISTRY_DIR'] = os.path.join(WORK, 'registry')
os.chdir(WORK)

import torch  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from drytorch import (  # noqa: E402
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    Metric,
    Model,
    Trainer,
)

DEVICE = torch.device('cuda')
failures: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f'{"PASS" if ok else "FAIL"}  {name}: {detail}')
    if not ok:
        failures.append(name)


def dataset(n_batches: int) -> TensorDataset:
    x = torch.randn(32 * n_batches, 32, device=DEVICE)
    return TensorDataset(x, torch.randint(0, 10, (32 * n_batches,), device=DEVICE))


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )


def ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(outputs, targets)


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(1) == targets).float()


def syncs_in_epoch(n_batches: int, trackers: bool, mixed: bool = False) -> int:
    exp = Experiment(None, name=f'sync{n_batches}{trackers}{mixed}')
    if not trackers:
        exp.trackers.remove_all()
    with exp.create_run():
        model = Model(mlp(), device=DEVICE, mixed_precision=mixed)
        trainer = Trainer(
            model,
            loader=DataLoader(dataset(n_batches), 32, seed=0),
            loss=Loss(ce, 'CE') | Metric(accuracy, 'acc', higher_is_better=True),
            learning_schema=LearningSchema.adam(1e-3),
        )
        trainer.train(1)  # warm-up: lazy optimizer state, cuBLAS handles
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                trainer.train(1)
            finally:
                torch.cuda.set_sync_debug_mode('default')
        return sum('synchroniz' in str(w.message) for w in caught)


for trackers in (False, True):
    few, many = syncs_in_epoch(8, trackers), syncs_in_epoch(32, trackers)
    label = 'default trackers' if trackers else 'no trackers'
    check(
        f'no per-batch sync ({label})',
        many <= few,  # a per-batch sync would add at least 24
        f'{few} syncs for 8 batches, {many} for 32',
    )

few, many = syncs_in_epoch(8, False, True), syncs_in_epoch(32, False, True)
print(
    f'INFO  mixed precision: {few} syncs for 8 batches, {many} for 32 '
    '(GradScaler.step reads its inf check on the host)'
)

exp = Experiment(None, name='amp')
with exp.create_run():
    model = Model(mlp(), device=DEVICE, mixed_precision=True)
    trainer = Trainer(
        model,
        loader=DataLoader(dataset(64), 32, seed=0),
        loss=Loss(ce, 'CE'),
        learning_schema=LearningSchema.adam(3e-3),
    )
    trainer.train(1)
    first = trainer.computed_metrics['CE']
    trainer.train(4)
    last = trainer.computed_metrics['CE']
    check(
        'mixed precision trains',
        last < first and trainer.scaler.is_enabled(),
        f'CE {first:.4f} -> {last:.4f}, scaler on',
    )

    trainer.save_checkpoint()
    saved = {k: v.clone() for k, v in model.module.state_dict().items()}
    cuda_state = torch.cuda.get_rng_state()
    expected = torch.rand(3, device=DEVICE)
    with torch.no_grad():
        for p in model.module.parameters():
            p.add_(1.0)
    torch.rand(100, device=DEVICE)
    trainer.load_checkpoint()
    weights_ok = all(
        torch.equal(saved[k], v) for k, v in model.module.state_dict().items()
    )
    torch.cuda.set_rng_state(cuda_state)
    rng_ok = torch.equal(torch.rand(3, device=DEVICE), expected)
    trainer.load_checkpoint()
    restored_draw = torch.rand(3, device=DEVICE)
    check(
        'checkpoint on CUDA',
        weights_ok and rng_ok and torch.equal(restored_draw, expected),
        'weights and CUDA RNG restored',
    )

exp = Experiment(None, name='timing')
exp.trackers.remove_all()
with exp.create_run():
    data = dataset(256)
    model = Model(mlp(), device=DEVICE)
    trainer = Trainer(
        model,
        loader=DataLoader(data, 32, seed=0),
        loss=Loss(ce, 'CE'),
        learning_schema=LearningSchema.sgd(0.01),
    )
    reference = mlp().to(DEVICE)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(
        data, batch_size=32, shuffle=True, drop_last=True
    )
    trainer.train(1)
    rows = []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            ce(reference(x), y).backward()
            optimizer.step()
        torch.cuda.synchronize()
        hand = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train(1)
        torch.cuda.synchronize()
        rows.append(
            ((time.perf_counter() - start - hand) / 256 * 1e6, hand / 256 * 1e6)
        )
    rows.sort()
    hand_us, extra_us = rows[2][1], rows[2][0]
    print(
        f'INFO  GPU: hand-written loop {hand_us:.1f} us/step, '
        f'Trainer adds {extra_us:+.1f} us/step (median of 5 epochs)'
    )

print(f'torch {torch.__version__}, {torch.cuda.get_device_name()}')
sys.exit(1 if failures else 0)
