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
5. Distributed, with 2 or more CUDA devices: a 2-process ``torchrun`` job
   (NCCL) trains with the Trainer for two epochs per trainer; each rank's
   model is on ``cuda:<LOCAL_RANK>`` and wrapped in DDP, the process group's
   backend is NCCL, an epoch of 32 batches per rank synchronises no more
   often than one of 8 (with and without the default trackers, on every
   rank), the replicas end with equal weights, and the job leaves one
   completed run record with world size 2. With fewer devices it is skipped:
   NCCL needs one GPU per process.

Prints PASS/FAIL per check and exits non-zero if one fails. Without a CUDA
device it prints SKIP and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

SCRIPT = os.path.abspath(__file__)  # before the chdir below
WORKER_FLAG = '--distributed-worker'
DIST_WORKER = WORKER_FLAG in sys.argv  # a rank of the distributed case
DIST_TIMEOUT_S = 300
if DIST_WORKER:  # the launcher's folder and registry, shared by the ranks
    WORK = os.environ['GPU_CHECK_DIST_FOLDER']
else:
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
    testing,
)

if DIST_WORKER:  # this rank's own GPU
    DEVICE = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
else:
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


def sync_trainer(
    n_batches: int, mixed: bool = False, device: torch.device | None = DEVICE
) -> Trainer:
    model = Model(mlp(), device=device, mixed_precision=mixed)
    return Trainer(
        model,
        loader=DataLoader(dataset(n_batches), 32, seed=0),
        loss=Loss(ce, 'CE') | Metric(accuracy, 'acc', higher_is_better=True),
        learning_schema=LearningSchema.adam(1e-3),
    )


def count_syncs(trainer: Trainer) -> int:
    """Train an epoch to warm up, then count the syncs of the next one."""
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


def syncs_in_epoch(n_batches: int, trackers: bool, mixed: bool = False) -> int:
    exp = Experiment(None, name=f'sync{n_batches}{trackers}{mixed}')
    if not trackers:
        exp.trackers.remove_all()
    with exp.create_run():
        return count_syncs(sync_trainer(n_batches, mixed))


def distributed_worker() -> dict[str, object]:
    """One rank of the distributed case: one run, four trainers of two epochs.

    Each rank loads half of each dataset, so 16 and 64 batches in all make
    8 and 32 batches per rank. The model takes DRYTorch's default device,
    which must be this rank's GPU.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from drytorch.core import distributed

    local_rank = distributed.local_device_index()
    exp = Experiment(None, name='distributed', par_dir=os.path.join(WORK, 'outputs'))
    defaults = list(exp.trackers)
    report: dict[str, object] = {'local_rank': local_rank, 'syncs': {}}
    with exp.create_run() as run:
        report.update(rank=run.world.rank, world_size=run.world.size, id=run.id)
        report['backend'] = str(dist.get_backend())
        for trackers in (False, True):
            exp.trackers.remove_all()
            if trackers:
                exp.trackers.subscribe(*defaults)
            few_trainer = sync_trainer(16, device=None)
            few = count_syncs(few_trainer)
            many_trainer = sync_trainer(64, device=None)
            many = count_syncs(many_trainer)
            label = 'default trackers' if trackers else 'no trackers'
            report['syncs'][label] = [few, many]  # type: ignore[index]
        model = many_trainer.model
        report['device'] = str(model.device)
        report['parameter_device'] = str(next(model.module.parameters()).device)
        report['ddp'] = isinstance(model.distributed, DistributedDataParallel)
        report['batches'] = [len(few_trainer.loader), len(many_trainer.loader)]
        report['loss'] = many_trainer.computed_metrics['CE']
        weights = torch.cat([p.detach().flatten() for p in model.module.parameters()])
        replicas = [torch.empty_like(weights) for _ in range(run.world.size)]
        dist.all_gather(replicas, weights)
        report['replica_difference'] = max(
            float((other - replicas[0]).abs().max()) for other in replicas
        )
    return report


def distributed_case() -> None:
    """Launch the distributed case under torchrun and check what it reports."""
    count = torch.cuda.device_count()
    if count < 2:
        print(
            f'SKIP  distributed (torchrun, 2 processes, NCCL): {count} CUDA '
            f'device{"" if count == 1 else "s"}; NCCL needs one GPU per process, '
            'so at least 2'
        )
        return
    folder = os.path.join(WORK, 'distributed')
    os.makedirs(folder)
    registry = os.path.join(folder, 'registry')
    env = dict(
        os.environ,
        GPU_CHECK_DIST_FOLDER=folder,
        DRYTORCH_REGISTRY_DIR=registry,
        PYTHONUNBUFFERED='1',
    )
    command = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--standalone',
        '--nproc_per_node=2',
        SCRIPT,
        WORKER_FLAG,
    ]
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        output, _ = process.communicate(timeout=DIST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        testing.stop_torchrun(process, grace=45)  # it and its workers
        output, _ = process.communicate()
    completed = process.returncode == 0 and not timed_out
    check(
        'distributed job completes',
        completed,
        f'ran past {DIST_TIMEOUT_S} s, stopped'
        if timed_out
        else f'torchrun exit {process.returncode} (2 processes)',
    )
    if not completed:
        print(output[-4000:])
        return
    reports = []
    for rank in range(2):
        with open(os.path.join(folder, f'rank_{rank}.json'), encoding='utf-8') as f:
            reports.append(json.load(f))
    check(
        'distributed: each rank on cuda:LOCAL_RANK, in DDP',
        all(
            r['device'] == r['parameter_device'] == f'cuda:{r["local_rank"]}'
            and r['ddp']
            and r['world_size'] == 2
            for r in reports
        ),
        ', '.join(
            f'rank {r["rank"]}: {r["parameter_device"]} (LOCAL_RANK '
            f'{r["local_rank"]}), DDP {r["ddp"]}'
            for r in reports
        ),
    )
    check(
        'distributed: NCCL backend',
        all(r['backend'] == 'nccl' for r in reports),
        ', '.join(f'rank {r["rank"]}: {r["backend"]}' for r in reports),
    )
    for label in ('no trackers', 'default trackers'):
        counts = [r['syncs'][label] for r in reports]
        check(
            f'distributed: no per-batch sync ({label})',
            all(r['batches'] == [8, 32] for r in reports)
            and all(many <= few for few, many in counts),
            '; '.join(
                f'rank {r["rank"]}: {few} syncs for 8 batches, {many} for 32'
                for r, (few, many) in zip(reports, counts, strict=True)
            ),
        )
    difference = max(r['replica_difference'] for r in reports)
    check(
        'distributed: replicas equal',
        difference == 0.0,
        f'max |weight difference| between ranks {difference:.1e}, '
        f'CE {reports[0]["loss"]:.4f}',
    )
    runs_command = [sys.executable, '-m', 'drytorch', 'runs', '--registry', registry]
    listing = subprocess.run(
        [*runs_command, '--json', '--all'],
        capture_output=True,
        text=True,
        check=False,
    )
    runs = json.loads(listing.stdout) if listing.returncode == 0 else []
    check(
        'distributed: one run record',
        len(runs) == 1
        and runs[0]['id'] == reports[0]['id'] == reports[1]['id']
        and runs[0]['status'] == 'completed'
        and runs[0].get('world_size') == 2,
        ', '.join(
            f'{run["id"]} {run["status"]}, world size {run.get("world_size")}'
            for run in runs
        )
        or f'none listed ({listing.stderr.strip()[-200:]})',
    )


if DIST_WORKER:
    found = distributed_worker()
    with open(f'rank_{found["rank"]}.json', 'w', encoding='utf-8') as file:
        json.dump(found, file)
    sys.exit(0)

if not torch.cuda.is_available():
    print('SKIP  every check: no CUDA device (torch.cuda.is_available() is False)')
    distributed_case()  # skips too: it needs 2 devices
    sys.exit(1 if failures else 0)

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

distributed_case()

print(f'torch {torch.__version__}, {torch.cuda.get_device_name()}')
sys.exit(1 if failures else 0)
