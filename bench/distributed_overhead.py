"""Benchmark: the per-step overhead of DRYTorch's ``Trainer`` under 2-process DDP.

Target, as extra time per optimizer step over a hand-written
``DistributedDataParallel`` loop on the same data, 2 processes on the CPU
(gloo), measured on rank 0:

* ``Trainer`` with no trackers: at most 50 us/step (median).

Also reported, without a target: the ``Trainer`` with the default trackers
(init mode ``standard``), and the same overheads measured on rank 1.

Workload: the MLP of ``training_overhead.py`` (32 -> 64 -> 10, ReLU),
cross-entropy on 4,096 synthetic samples (``torch.randn`` inputs, integer
targets in 0..9), batch size 32 on each rank, SGD with learning rate 0.01 and
no momentum. Each of the 2 ranks loads half of every epoch, so every variant
takes 64 optimizer steps per rank per epoch (4,096 / 2 / 32), each with a
gloo all-reduce of the gradients. The data and the initial weights come from
one seed and are the same on both ranks; every variant starts every round
from a copy of the same ``state_dict``. Each worker runs with
``torch.set_num_threads(1)``.

Variants, in each of the two worker processes:

a. a hand-written loop: the MLP in ``torch.nn.parallel.DistributedDataParallel``,
   ``torch.utils.data.DataLoader(TensorDataset, batch_size=32,
   sampler=DistributedSampler(shuffle=True, drop_last=True), drop_last=True)``,
   ``sampler.set_epoch(epoch)`` before each epoch, then zero_grad, forward,
   loss, backward, step;
b. DRYTorch: ``Experiment(...).create_run()``, ``Model`` (which wraps the
   module in ``DistributedDataParallel`` itself), ``drytorch.DataLoader``
   (which shards its permutation over the ranks), ``Trainer`` with
   ``Loss`` and ``LearningSchema.sgd``, in an experiment with no trackers
   (``DRYTORCH_INIT_MODE=none``);
c. the same ``Trainer`` with the default trackers of init mode ``standard``
   subscribed (only rank 0's trackers run in a distributed run).

Method: ``python bench/distributed_overhead.py`` launches itself under
``torchrun --standalone --nproc_per_node=2`` (``--worker``), with a timeout
(``--timeout``, default 120 s + 5 s per round) after which the job is stopped:
SIGTERM to torchrun, which stops its workers (each in a session of its own),
then SIGKILL by pid for whatever is left. The workers measure, rank 0 prints the
report, and the launcher exits with the job's status (0 unless a worker
failed; a MISS still exits 0). The workers initialise the gloo process group
themselves, as a hand-written script would; DRYTorch uses that group as it is.
Each round trains every variant for one epoch, in an order rotated from round
to round. Before each epoch, untimed: the weights are reset from the
``state_dict``, the loaders put back at their first epoch (the hand-written
loop's epoch counter back to 0, DRYTorch's ``load_sampler_state`` of the state
saved at construction), ``gc.collect()``, then a barrier so that both ranks
start together. ``time.perf_counter`` on each rank times the epoch alone
(``trainer.train(1)`` for DRYTorch, which includes its one all-reduce of the
metrics at the end of the epoch). The overhead of a variant in a round is
(its time - the hand-written loop's time in the same round) / 64 steps, on
rank 0 (the ranks wait for each other at every step's all-reduce, so they
agree closely; rank 1's figures are shown too). The median and the minimum
over the rounds are reported, with each variant's own time per step. One
untimed round comes first (imports, allocator, gloo and caches warm up).

The two loaders do not draw the same order (``DistributedSampler`` seeds its
own generator with ``seed + epoch``; torch's loader draws its workers' base
seed from DRYTorch's generator before the permutation), so the weights are not
compared between variants. Instead, after every epoch, untimed, the script
checks that each variant took 64 steps on each rank and that both ranks hold
the same weights (DDP kept them in sync); the final cross-entropy on the whole
dataset is printed for information.

While training, ``sys.stdout`` and ``sys.stderr`` are redirected to
``os.devnull`` in the workers: the default trackers' log lines are formatted
and written, but terminal speed does not count.

Everything happens in a temporary folder: the launcher sets
``DRYTORCH_REGISTRY_DIR`` to a folder made with ``tempfile.mkdtemp()`` in the
workers' environment (and drops the caller's other ``DRYTORCH_*`` variables),
the experiment's ``par_dir`` and the workers' working directory are in it too,
and it is removed at the end: the real user data directory is never touched.
``--profile`` runs cProfile over one epoch of (b) on rank 0 and prints the top
entries by own time.

Noise: a step of either loop is mostly the gloo all-reduce waited for in
``backward``, and with two processes, their gloo threads and torchrun's agent
sharing few CPUs, single steps sometimes wait a scheduler time slice (on the
2-CPU VM the hand-written loop's steps have a median near 0.9 ms, a 90th
percentile near 4 ms and a maximum near 10 ms). Epoch times then scatter by
about +-30 % from round to round, whatever the variant, and the median
overhead of a run moves by up to a few hundred us/step between runs;
hence the default of 60 rounds (about a minute). The minimum, printed as in the
other benchmarks, shows here how far one round can stray rather than a floor.

Usage::

    .venv/bin/python bench/distributed_overhead.py [--rounds 60] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import datetime
import gc
import os
import pathlib
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils import data

from drytorch import testing

SEED = 0
LOADER_SEED = 1234
WORLD_SIZE = 2
N_SAMPLES = 4096
N_IN, N_HIDDEN, N_CLASSES = 32, 64, 10
BATCH_SIZE = 32
STEPS = N_SAMPLES // WORLD_SIZE // BATCH_SIZE  # per rank per epoch
LR = 0.01
MIN_ROUNDS = 5
RANK_TOLERANCE = 0.0  # DDP keeps the replicas bitwise equal
COLLECTIVE_TIMEOUT_S = 120
STOP_GRACE_S = 45  # torchrun gives its workers 30 s after a SIGTERM

TARGETS_US = {'drytorch-none': 50.0}
LABELS = {
    'hand': '(a) hand-written DDP loop',
    'drytorch-none': '(b) DRYTorch, no trackers',
    'drytorch-default': '(c) DRYTorch, default trackers',
}


# --------------------------------------------------------------------------
# launcher


def launch(args: argparse.Namespace) -> int:
    """Run the workers under torchrun; return the job's exit status."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix='drytorch-bench-dist-')).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith('DRYTORCH_')}
    env.update(
        DRYTORCH_REGISTRY_DIR=str(folder / 'registry'),
        DRYTORCH_INIT_MODE='none',
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1',
    )
    command = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--standalone',
        f'--nproc_per_node={WORLD_SIZE}',
        str(pathlib.Path(__file__).resolve()),
        '--worker',
        '--folder',
        str(folder),
        '--rounds',
        str(args.rounds),
        '--top',
        str(args.top),
    ]
    if args.profile:
        command.append('--profile')
    timeout = args.timeout or 120 + 5 * args.rounds
    print(
        f'launching {WORLD_SIZE} workers under torchrun (gloo, CPU), '
        f'timeout {timeout:g} s'
    )
    sys.stdout.flush()
    try:
        process = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            testing.stop_torchrun(process, grace=STOP_GRACE_S)
            print(f'distributed_overhead: the job ran past {timeout:g} s; stopped')
            return 124
        except KeyboardInterrupt:
            testing.stop_torchrun(process, grace=STOP_GRACE_S)
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if code != 0:
        print(f'distributed_overhead: the workers failed (torchrun exit {code})')
    return code


# --------------------------------------------------------------------------
# workers


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Send what is written to ``sys.stdout`` and ``sys.stderr`` to devnull."""
    with (
        open(os.devnull, 'w', encoding='utf-8') as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        yield


def make_problem() -> tuple[data.TensorDataset, nn.Module]:
    """Return the dataset and the reference module, both from ``SEED``."""
    torch.manual_seed(SEED)
    inputs = torch.randn(N_SAMPLES, N_IN)
    targets = torch.randint(0, N_CLASSES, (N_SAMPLES,))
    module = nn.Sequential(
        nn.Linear(N_IN, N_HIDDEN), nn.ReLU(), nn.Linear(N_HIDDEN, N_CLASSES)
    )
    return data.TensorDataset(inputs, targets), module


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


class Variant:
    """One way of training: ``reset`` (untimed), then ``epoch`` (timed)."""

    module: nn.Module

    def __init__(self, init_state: dict[str, torch.Tensor]) -> None:
        self.init_state = init_state

    def reset(self) -> None:
        self.module.load_state_dict(self.init_state)

    def epoch(self) -> int:
        """Train one epoch; return the optimizer steps it took."""
        raise NotImplementedError

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in self.module.parameters()])


class HandWritten(Variant):
    def __init__(
        self,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.TensorDataset,
    ) -> None:
        super().__init__(init_state)
        self.module = copy.deepcopy(reference)
        self.ddp = DistributedDataParallel(self.module)
        self.optimizer = torch.optim.SGD(self.ddp.parameters(), lr=LR)
        self.sampler: data.DistributedSampler[Any] = data.DistributedSampler(
            dataset, shuffle=True, seed=LOADER_SEED, drop_last=True
        )
        self.loader = data.DataLoader(
            dataset, batch_size=BATCH_SIZE, sampler=self.sampler, drop_last=True
        )
        self.epochs = 0

    def reset(self) -> None:
        super().reset()
        self.epochs = 0  # every round trains the first epoch's order

    def epoch(self) -> int:
        ddp, optimizer = self.ddp, self.optimizer
        self.sampler.set_epoch(self.epochs)
        self.epochs += 1
        ddp.train()
        steps = 0
        for inputs, targets in self.loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(ddp(inputs), targets)
            loss.backward()
            optimizer.step()
            steps += 1
        return steps


class DryTorchVariant(Variant):
    def __init__(
        self,
        name: str,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.TensorDataset,
        experiment: Any,
        trackers: list[Any],
    ) -> None:
        from drytorch import DataLoader, LearningSchema, Loss, Model, Trainer

        super().__init__(init_state)
        self.module = copy.deepcopy(reference)  # a module joins one run only
        self.model = Model(self.module, name=name, device='cpu')
        if self.model.distributed is None:
            raise RuntimeError('Model did not wrap the module in DDP')
        self.loader = DataLoader(dataset, BATCH_SIZE, seed=LOADER_SEED)
        if len(self.loader) != STEPS:
            raise RuntimeError(f'{len(self.loader)} steps an epoch, not {STEPS}')
        self.trainer = Trainer(
            self.model,
            loader=self.loader,
            loss=Loss(cross_entropy, 'CE'),
            learning_schema=LearningSchema.sgd(lr=LR),
        )
        self.initial_sampler = self.loader.sampler_state()
        self.experiment = experiment
        self.trackers = trackers

    def reset(self) -> None:
        super().reset()
        self.loader.load_sampler_state(self.initial_sampler)
        registry = self.experiment.trackers
        if list(registry) != self.trackers:
            registry.remove_all()
            registry.subscribe(*self.trackers)

    def epoch(self) -> int:
        before = self.trainer.steps
        self.trainer.train(1)
        return self.trainer.steps - before


def full_loss(module: nn.Module, dataset: data.TensorDataset) -> float:
    inputs, targets = dataset.tensors
    with torch.no_grad():
        return float(F.cross_entropy(module(inputs), targets))


def time_epoch(variant: Variant) -> tuple[float, int]:
    """Return the epoch's wall time and the steps it took."""
    variant.reset()
    gc.collect()
    dist.barrier()  # both ranks start the epoch together
    start = time.perf_counter()
    steps = variant.epoch()
    return time.perf_counter() - start, steps


def rank_difference(weights: torch.Tensor) -> float:
    """Return the largest difference of ``weights`` between the ranks."""
    found = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(found, weights)
    return max(float((other - found[0]).abs().max()) for other in found)


Times = dict[str, list[float]]
Checks = dict[str, list[tuple[int, float]]]


def run_rounds(variants: dict[str, Variant], rounds: int) -> tuple[Times, Checks]:
    """Time ``rounds`` interleaved rounds (after one untimed round).

    Returns this rank's epoch times of each variant and, per round, the steps
    it took on this rank and the largest weight difference between the ranks.
    """
    names = list(variants)
    times: Times = {name: [] for name in names}
    checks: Checks = {name: [] for name in names}
    for index in range(rounds + 1):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        round_times: dict[str, float] = {}
        round_checks: dict[str, tuple[int, float]] = {}
        for name in order:
            elapsed, steps = time_epoch(variants[name])
            round_times[name] = elapsed
            round_checks[name] = (
                steps,
                rank_difference(variants[name].flat_weights()),
            )
        if index == 0:
            continue  # warm-up
        for name in names:
            times[name].append(round_times[name])
            checks[name].append(round_checks[name])
    return times, checks


def profile_epoch(variant: Variant, rank: int) -> cProfile.Profile | None:
    """Profile one epoch of ``variant`` on rank 0; the other ranks just train."""
    variant.reset()
    dist.barrier()
    if rank != 0:
        variant.epoch()
        return None
    profiler = cProfile.Profile()
    profiler.enable()
    variant.epoch()
    profiler.disable()
    return profiler


def print_profile(profiler: cProfile.Profile, top: int) -> None:
    """Print the top entries by own time, in microseconds per step."""
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tottime for _, _, tottime, _, _ in entries.values())
    print(
        f'\ncProfile of one DRYTorch epoch with no trackers on rank 0 ({STEPS} '
        f'steps, {total * 1e3:.1f} ms under the profiler); times in us per step'
    )

    def show(title: str, keys: list[Any]) -> None:
        print(f'\n{title}')
        print(f'{"calls":>8}{"own":>9}{"cumul":>9}  function')
        for key in keys[:top]:
            _, ncalls, tottime, cumtime, _ = entries[key]
            filename, line, function = key
            where = f'{_short(filename)}:{line}({function})' if line else function
            print(
                f'{ncalls:8d}{tottime / STEPS * 1e6:9.2f}'
                f'{cumtime / STEPS * 1e6:9.2f}  {where}'
            )

    ordered = sorted(entries, key=lambda key: entries[key][2], reverse=True)
    show(f'top {top} by own time:', ordered)
    own = [key for key in ordered if 'drytorch' in key[0]]
    show(f'DRYTorch functions only, top {top} by own time:', own)


def _short(filename: str) -> str:
    for marker in ('site-packages/', 'src/'):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def overheads(times: Times, name: str) -> list[float]:
    """Return the overhead of ``name`` in each round, in us per step."""
    return [
        (t - h) / STEPS * 1e6 for t, h in zip(times[name], times['hand'], strict=True)
    ]


def summarise(
    per_rank: list[Times],
    checks: list[Checks],
    losses: dict[str, float],
) -> list[str]:
    """Print the table of rank 0 and the checks; return the verdicts."""
    times = per_rank[0]
    rounds = len(times['hand'])
    print(
        f'\n{rounds} rounds of one epoch ({STEPS} steps per rank) each, timed on '
        'rank 0; us per step; overhead = (variant - hand-written, same round) '
        '/ steps'
    )
    header = (
        f'{"variant":<34}{"own med":>9}{"own min":>9}'
        f'{"ovh med":>10}{"ovh min":>10}   target'
    )
    print(header)
    print('-' * len(header))
    verdicts = []
    for name, epoch_times in times.items():
        own = [t / STEPS * 1e6 for t in epoch_times]
        row = f'{LABELS[name]:<34}{statistics.median(own):9.1f}{min(own):9.1f}'
        if name == 'hand':
            print(row + f'{"-":>10}{"-":>10}')
            continue
        overhead = overheads(times, name)
        median = statistics.median(overhead)
        row += f'{median:+10.1f}{min(overhead):+10.1f}   '
        target = TARGETS_US.get(name)
        if target is None:
            row += '(no target)'
        else:
            verdict = 'PASS' if median <= target else 'MISS'
            verdicts.append(verdict)
            row += f'<= {target:g} {verdict}'
        print(row)

    for rank, rank_times in enumerate(per_rank[1:], start=1):
        parts = []
        for name in rank_times:
            if name == 'hand':
                continue
            overhead = overheads(rank_times, name)
            parts.append(
                f'{LABELS[name][:3]} {statistics.median(overhead):+.1f} '
                f'(min {min(overhead):+.1f})'
            )
        hand = statistics.median(t / STEPS * 1e6 for t in rank_times['hand'])
        print(
            f'rank {rank}, for information: hand-written {hand:.1f} us/step; '
            f'overhead medians {", ".join(parts)}'
        )

    print('\nchecks (every round, every rank):')
    for name in times:
        steps = {s for rank_checks in checks for s, _ in rank_checks[name]}
        difference = max(d for rank_checks in checks for _, d in rank_checks[name])
        ok = steps == {STEPS} and difference <= RANK_TOLERANCE
        verdicts.append('PASS' if ok else 'MISS')
        print(
            f'  {LABELS[name]:<34} steps per rank {sorted(steps)}, max |weight '
            f'diff between ranks| {difference:.1e}, final CE {losses[name]:.6f}'
            f'  {"PASS" if ok else "MISS"}'
        )
    return verdicts


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != WORLD_SIZE:
        raise RuntimeError(f'{world} processes, not {WORLD_SIZE}')
    folder = pathlib.Path(args.folder)
    registry_dir = pathlib.Path(os.environ['DRYTORCH_REGISTRY_DIR']).resolve()
    if folder not in registry_dir.parents:
        raise RuntimeError(f'the registry {registry_dir} is not in {folder}')
    work = folder / 'work'
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    rounds = max(args.rounds, MIN_ROUNDS)

    import drytorch
    from drytorch.core.plugins import get_host

    if rank == 0:
        print(
            f'drytorch {drytorch.__version__}, torch {torch.__version__}, '
            f'python {sys.version.split()[0]}, {world} processes ({dist.get_backend()}'
            f'), torch threads {torch.get_num_threads()} each'
        )
        print(f'scratch folder {folder}')
        print(f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
        print(f'timing {rounds} interleaved rounds (after one untimed round)...')
        sys.stdout.flush()
    dataset, reference = make_problem()
    init_state = copy.deepcopy(reference.state_dict())
    profiler = None
    with quiet_output():
        exp = drytorch.Experiment(None, name='bench', par_dir=folder / 'outputs')
        if list(exp.trackers):
            raise RuntimeError('init mode none, yet the experiment has trackers')
        standard = get_host().default_trackers('standard')
        with exp.create_run():
            variants: dict[str, Variant] = {
                'hand': HandWritten(reference, init_state, dataset),
                'drytorch-none': DryTorchVariant(
                    'NoTrackers', reference, init_state, dataset, exp, []
                ),
                'drytorch-default': DryTorchVariant(
                    'DefaultTrackers', reference, init_state, dataset, exp, standard
                ),
            }
            start = time.perf_counter()
            times, checks = run_rounds(variants, rounds)
            elapsed = time.perf_counter() - start
            losses = {
                name: full_loss(variant.module, dataset)
                for name, variant in variants.items()
            }
            if args.profile:
                profiler = profile_epoch(variants['drytorch-none'], rank)
            variants['drytorch-none'].reset()  # no trackers for the run's end
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (times, checks))
    if rank == 0:
        names = [tracker.name for tracker in standard]
        print(f'timed in {elapsed:.1f} s; default trackers of (c): {names}')
        verdicts = summarise(
            [found[0] for found in gathered], [found[1] for found in gathered], losses
        )
        if profiler is not None:
            print_profile(profiler, args.top)
        overall = 'PASS' if all(v == 'PASS' for v in verdicts) else 'MISS'
        print(f'\ndistributed_overhead: {overall}')
        print(f'(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)')
        sys.stdout.flush()
    del variants
    gc.collect()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=60, help=f'at least {MIN_ROUNDS}')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='cProfile one DRYTorch epoch with no trackers on rank 0',
    )
    parser.add_argument('--top', type=int, default=15)
    parser.add_argument(
        '--timeout',
        type=float,
        default=0.0,
        help='seconds before the job is killed (default: 120 + 5 per round)',
    )
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--folder', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        sys.exit(launch(args))


if __name__ == '__main__':
    main()
