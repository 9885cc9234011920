"""Benchmark: the per-step overhead of DRYTorch's ``Trainer`` over a plain loop.

Targets, as extra time per optimizer step over a hand-written PyTorch loop on
the same data:

* ``Trainer`` with no trackers: at most 25 us/step;
* ``Trainer`` with the default trackers: at most 50 us/step;
* the standard trackers (progress bars drawn) plus ``CSVDumper`` and
  ``SQLiteTracker``: at most 25 us/step over the ``Trainer`` with no trackers.

Fast in-memory data (``drytorch.DataLoader`` indexes a ``TensorDataset``'s
tensors once per batch), per round, the ``Trainer`` with no trackers against:

* (a), over torch's ``DataLoader``: at least 1.3x faster (time of (a) / time
  of the ``Trainer``, median over the rounds);
* (g), over shuffled tensors sliced by hand: at most 10 % slower (time of the
  ``Trainer`` / time of (g), median over the rounds).

Workload: an MLP 32 -> 64 -> 10 (ReLU) classifying 4,096 synthetic samples
(``torch.randn`` inputs, integer targets in 0..9) with cross-entropy, on the
CPU with ``torch.set_num_threads(1)``, batch size 32 (128 steps an epoch), SGD
with learning rate 0.01 and no momentum. The data and the initial weights come
from one seed; every variant starts every round from a copy of the same
``state_dict``.

Variants, all in this one process:

a. a hand-written loop (zero_grad, forward, loss, backward, step) over
   ``torch.utils.data.DataLoader(TensorDataset, batch_size=32, shuffle=True,
   drop_last=True)``;
g. the same hand-written loop over the tensors themselves, shuffled and sliced
   (``perm = torch.randperm(n)``, ``x[perm[i:i + 32]]``): the data's cheapest
   form;
b. DRYTorch's ``Trainer`` in an experiment with no trackers;
c. DRYTorch's ``Trainer`` with the default trackers (init mode ``standard``);
d. Lightning with every optional feature off (no logger, checkpointing,
   progress bar or model summary, no sanity validation), without ``self.log``;
e. Lightning with its defaults, logging into a temporary ``default_root_dir``;
   its ``training_step`` calls ``self.log('train_loss', loss)`` as a default
   user would.

Each round trains every variant for one epoch, in an order rotated from round
to round, timed with ``time.perf_counter`` around the epoch alone
(``trainer.train(1)``, ``lightning_trainer.fit(...)``); building the Lightning
trainer, resetting the weights and the checks happen outside the timing. The
overhead of a variant in a round is (its time - the hand-written loop's time in
the same round) / 128 steps; the median and the minimum over the rounds are
reported, with each variant's own time per step. One untimed round comes first
(imports, allocator and caches warm up).

Same data order: every variant has its own loader, shuffled by a
``torch.Generator`` seeded with the same seed (``generator=`` for the torch
loaders of a, d and e, ``seed=`` for DRYTorch's ``DataLoader``, which draws its
permutation with ``torch.randperm`` from such a generator, as torch's
``RandomSampler`` does; (g) draws ``torch.randperm`` from its own, after the
one number that torch's loader draws first, untimed). The first epoch from
that seed is then the same for all, but later ones are not: at the end of
each epoch torch's ``RandomSampler`` draws one more (unused) permutation and
DRYTorch's sampler does not, so the generators drift apart. Before each
round, untimed, every loader is therefore put back at its seed
(``generator.manual_seed`` for the torch loaders and (g), ``load_sampler_state``
of the state saved at construction for DRYTorch's), and every round trains on
that same first-epoch order. The script checks the result instead of assuming
it: after each epoch it compares the variant's final weights with the
hand-written loop's of the same round (largest absolute difference) and the
cross-entropy of those weights on the whole dataset (tolerance 1e-6 for
DRYTorch and (g); Lightning's are shown for information).

While training, ``sys.stdout`` and ``sys.stderr`` are redirected to
``os.devnull``: the default trackers' log lines (stderr) and Lightning's
progress bar (stdout) are still formatted and written, but terminal speed does
not count. Lightning's informational console messages are silenced by raising
its loggers' level to WARNING; warnings raised while training that do not come
from Lightning are printed afterwards.

Everything happens in a temporary folder: ``DRYTORCH_REGISTRY_DIR`` points
there and the working directory is a scratch folder, so the real user data
directory is never touched. ``--profile`` runs cProfile over one DRYTorch
epoch with no trackers and prints the top entries by own time.

Reference figures, measured elsewhere (from the issue): the original DRYTorch
~160-210 us/step overhead, Lightning all-off ~700 us/step, Lightning defaults
~2,400 us/step.

Usage::

    .venv/bin/python bench/training_overhead.py [--rounds 30] [--profile]

It always exits 0 and prints PASS or MISS beside each target. Lightning is not
a dependency of the project: without it, variants d and e are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import gc
import logging
import os
import pathlib
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from scratch import scratch_environment
from torch import nn
from torch.utils import data

SEED = 0
LOADER_SEED = 1234
N_SAMPLES = 4096
N_IN, N_HIDDEN, N_CLASSES = 32, 64, 10
BATCH_SIZE = 32
STEPS = N_SAMPLES // BATCH_SIZE
LR = 0.01
MIN_ROUNDS = 20
LOSS_TOLERANCE = 1e-6

TARGETS_US = {'drytorch-none': 25.0, 'drytorch-default': 50.0, 'drytorch-files': 25.0}
# Fast in-memory data: the Trainer with no trackers against the two hand loops.
MIN_SPEEDUP_OVER_TORCH_LOADER = 1.3  # time of (a) / time of the Trainer
MAX_RATIO_OVER_SLICED = 1.10  # time of the Trainer / time of (g)
FAST_DATA_TRAINER = 'drytorch-none'
FAST_DATA_INFO = ('drytorch-default',)  # shown beside it, without a target
# The overhead of a variant is measured over this one (default: the hand loop).
# DRYTorch's DataLoader indexes in-memory tensors a batch at a time: its
# overhead is the Trainer's over the loop that does the same, (g).
BASELINES = {
    'drytorch-none': 'hand-sliced',
    'drytorch-default': 'hand-sliced',
    'drytorch-files': 'drytorch-none',
}
REFERENCES = {
    'hand-sliced': 'no loader: the data cost floor',
    'drytorch-none': 'original DRYTorch ~160-210',
    'drytorch-default': 'original DRYTorch ~160-210',
    'drytorch-files': 'over (b), not (a)',
    'lightning-off': '~700',
    'lightning-default': '~2,400',
}
LABELS = {
    'hand': '(a) hand-written loop',
    'hand-sliced': '(g) hand-written, sliced tensors',
    'drytorch-none': '(b) DRYTorch, no trackers',
    'drytorch-default': '(c) DRYTorch, default trackers',
    'drytorch-files': '(f) standard + bars + CSV + SQLite',
    'lightning-off': '(d) Lightning, all off',
    'lightning-default': '(e) Lightning, defaults',
}


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


def torch_loader(dataset: data.Dataset[Any]) -> data.DataLoader[Any]:
    return data.DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(LOADER_SEED),
    )


def reseed(loader: data.DataLoader[Any]) -> None:
    """Reset the generator shuffling ``loader`` (its RandomSampler's too)."""
    assert loader.generator is not None
    loader.generator.manual_seed(LOADER_SEED)


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


class Variant:
    """One way of training: ``reset`` (untimed), then ``epoch`` (timed)."""

    module: nn.Module

    def __init__(self, init_state: dict[str, torch.Tensor]) -> None:
        self.init_state = init_state

    def reset(self) -> None:
        self.module.load_state_dict(self.init_state)

    def epoch(self) -> None:
        raise NotImplementedError

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}


class HandWritten(Variant):
    def __init__(
        self,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.Dataset[Any],
    ) -> None:
        super().__init__(init_state)
        self.module = copy.deepcopy(reference)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=LR)
        self.loader = torch_loader(dataset)

    def reset(self) -> None:
        super().reset()
        reseed(self.loader)

    def epoch(self) -> None:
        module, optimizer = self.module, self.optimizer
        module.train()
        for inputs, targets in self.loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(module(inputs), targets)
            loss.backward()
            optimizer.step()


class HandSliced(Variant):
    """The hand-written loop over the tensors, shuffled and sliced: no loader."""

    def __init__(
        self,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.TensorDataset,
    ) -> None:
        super().__init__(init_state)
        self.module = copy.deepcopy(reference)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=LR)
        self.inputs, self.targets = dataset.tensors
        self.generator = torch.Generator()

    def reset(self) -> None:
        super().reset()
        self.generator.manual_seed(LOADER_SEED)
        # torch's loader draws one number (its workers' seed) before the
        # permutation: drawn here too, the order is (a)'s.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)

    def epoch(self) -> None:
        module, optimizer = self.module, self.optimizer
        inputs, targets = self.inputs, self.targets
        module.train()
        perm = torch.randperm(N_SAMPLES, generator=self.generator)
        for start in range(0, N_SAMPLES - BATCH_SIZE + 1, BATCH_SIZE):
            indices = perm[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = F.cross_entropy(module(inputs[indices]), targets[indices])
            loss.backward()
            optimizer.step()


class DryTorchVariant(Variant):
    def __init__(
        self,
        name: str,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.Dataset[Any],
        experiment: Any,
        trackers: list[Any],
    ) -> None:
        from drytorch import DataLoader, LearningSchema, Loss, Model, Trainer

        super().__init__(init_state)
        self.module = copy.deepcopy(reference)  # a module joins one run only
        self.model = Model(self.module, name=name, device='cpu')
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

    def epoch(self) -> None:
        self.trainer.train(1)


class LightningVariant(Variant):
    def __init__(
        self,
        reference: nn.Module,
        init_state: dict[str, torch.Tensor],
        dataset: data.Dataset[Any],
        trainer_kwargs: dict[str, Any],
        log_loss: bool,
    ) -> None:
        import lightning

        class LitModule(lightning.LightningModule):
            def __init__(self, module: nn.Module) -> None:
                super().__init__()
                self.module = module

            def forward(self, inputs: torch.Tensor) -> torch.Tensor:
                return self.module(inputs)

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                inputs, targets = batch
                loss = F.cross_entropy(self.module(inputs), targets)
                if log_loss:
                    self.log('train_loss', loss)
                return loss

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.SGD(self.parameters(), lr=LR)

        super().__init__(init_state)
        self.module = copy.deepcopy(reference)
        self.lit = LitModule(self.module)
        self.loader = torch_loader(dataset)
        self.trainer_kwargs = trainer_kwargs
        self.trainer: Any = None
        self.lightning = lightning

    def reset(self) -> None:
        super().reset()
        reseed(self.loader)
        self.trainer = self.lightning.Trainer(**self.trainer_kwargs)

    def epoch(self) -> None:
        self.trainer.fit(self.lit, train_dataloaders=self.loader)
        steps = self.trainer.global_step
        if steps != STEPS:
            raise RuntimeError(f'Lightning made {steps} steps, not {STEPS}')


def full_loss(module: nn.Module, dataset: data.TensorDataset) -> float:
    inputs, targets = dataset.tensors
    with torch.no_grad():
        return float(F.cross_entropy(module(inputs), targets))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def time_epoch(variant: Variant) -> float:
    variant.reset()
    gc.collect()
    start = time.perf_counter()
    variant.epoch()
    return time.perf_counter() - start


def run_rounds(
    variants: dict[str, Variant], rounds: int, dataset: data.TensorDataset
) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, float]]]]:
    """Time ``rounds`` interleaved rounds (after one untimed round).

    Returns the epoch times of each variant and, per round, the largest weight
    difference and the full-data loss difference from the hand-written loop.
    """
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    checks: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for index in range(rounds + 1):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        round_times: dict[str, float] = {}
        round_weights: dict[str, dict[str, torch.Tensor]] = {}
        round_losses: dict[str, float] = {}
        for name in order:
            round_times[name] = time_epoch(variants[name])
            round_weights[name] = variants[name].weights()
            round_losses[name] = full_loss(variants[name].module, dataset)
        if index == 0:
            continue  # warm-up
        for name in names:
            times[name].append(round_times[name])
            checks[name].append(
                (
                    max_difference(round_weights[name], round_weights['hand']),
                    abs(round_losses[name] - round_losses['hand']),
                )
            )
    return times, checks


def profile_epoch(variant: Variant) -> cProfile.Profile:
    variant.reset()
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
        f'\ncProfile of one DRYTorch epoch with no trackers ({STEPS} steps, '
        f'{total * 1e3:.1f} ms under the profiler); times in us per step'
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


def summarise(
    times: dict[str, list[float]], checks: dict[str, list[tuple[float, float]]]
) -> list[str]:
    """Print the table; return the verdicts."""
    hand = times['hand']
    rounds = len(hand)
    print(
        f'\n{rounds} rounds of one epoch ({STEPS} steps) each; us per step; '
        'overhead = (variant - its baseline, same round) / steps; the baseline '
        'is (a), except (g) for (b) and (c), over the same kind of loader, and '
        '(b) for (f)'
    )
    header = (
        f'{"variant":<32}{"own med":>9}{"own min":>9}'
        f'{"ovh med":>10}{"ovh min":>10}   {"target":<14}reference (elsewhere)'
    )
    print(header)
    print('-' * len(header))
    verdicts = []
    for name, epoch_times in times.items():
        own = [t / STEPS * 1e6 for t in epoch_times]
        row = f'{LABELS[name]:<32}{statistics.median(own):9.1f}{min(own):9.1f}'
        if name == 'hand':
            print(row + f'{"-":>10}{"-":>10}')
            continue
        base = times[BASELINES.get(name, 'hand')]
        overhead = [
            (t - h) / STEPS * 1e6 for t, h in zip(epoch_times, base, strict=True)
        ]
        median = statistics.median(overhead)
        row += f'{median:+10.1f}{min(overhead):+10.1f}   '
        target = TARGETS_US.get(name)
        if target is None:
            row += f'{"":<14}'
        else:
            verdict = 'PASS' if median <= target else 'MISS'
            verdicts.append(verdict)
            row += f'{f"<= {target:g} {verdict}":<14}'
        print(row + REFERENCES[name])

    print('\nsame training as the hand-written loop (every round):')
    for name, results in checks.items():
        if name == 'hand':
            continue
        weight_diff = max(r[0] for r in results)
        loss_diff = max(r[1] for r in results)
        line = (
            f'  {LABELS[name]:<32} max |weight diff| {weight_diff:.2e}, '
            f'max |final loss diff| {loss_diff:.2e}'
        )
        if name in TARGETS_US or name == 'hand-sliced':
            verdict = 'PASS' if loss_diff <= LOSS_TOLERANCE else 'MISS'
            verdicts.append(verdict)
            line += f'  (<= {LOSS_TOLERANCE:g} {verdict})'
        print(line)
    return verdicts + summarise_fast_data(times)


def summarise_fast_data(times: dict[str, list[float]]) -> list[str]:
    """Print the Trainer's time against both hand loops, paired by round."""
    hand, sliced = times['hand'], times['hand-sliced']
    print(
        '\nfast in-memory data: the Trainer against the hand-written loops, '
        "paired by round (median, and the rounds' range)"
    )
    verdicts = []
    for name in (FAST_DATA_TRAINER, *FAST_DATA_INFO):
        own = times[name]
        speedup = [h / t for h, t in zip(hand, own, strict=True)]
        ratio = [t / s for t, s in zip(own, sliced, strict=True)]
        extra = [(t - s) / STEPS * 1e6 for t, s in zip(own, sliced, strict=True)]
        speedup_ok = statistics.median(speedup) >= MIN_SPEEDUP_OVER_TORCH_LOADER
        ratio_ok = statistics.median(ratio) <= MAX_RATIO_OVER_SLICED
        rows = [
            ('(a) / it', speedup, f'>= {MIN_SPEEDUP_OVER_TORCH_LOADER:g}x', speedup_ok),
            ('it / (g)', ratio, f'<= {MAX_RATIO_OVER_SLICED:g}x', ratio_ok),
        ]
        for what, values, target, passed in rows:
            line = (
                f'  {LABELS[name]:<32}{what:<10}{statistics.median(values):7.3f}x'
                f'  ({min(values):.3f}-{max(values):.3f})'
            )
            if name == FAST_DATA_TRAINER:
                verdict = 'PASS' if passed else 'MISS'
                verdicts.append(verdict)
                line += f'   {target} {verdict}'
            print(line)
        print(
            f'  {LABELS[name]:<32}{"it - (g)":<10}'
            f'{statistics.median(extra):+7.1f} us/step  (min {min(extra):+.1f})'
        )
    return verdicts


def quiet_lightning() -> None:
    for name in ('lightning', 'lightning.pytorch', 'lightning.fabric'):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in ('PossibleUserWarning', 'LightningDeprecationWarning'):
        warnings.filterwarnings('ignore', message='.*', category=_warning(category))
    warnings.filterwarnings('ignore', message='.*does not have many workers.*')


def _warning(name: str) -> type[Warning]:
    from lightning.fabric.utilities import warnings as fabric_warnings
    from lightning.pytorch.utilities import warnings as pl_warnings

    found = getattr(pl_warnings, name, None) or getattr(fabric_warnings, name, None)
    return found if isinstance(found, type) else UserWarning


def report_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Show the warnings raised while training that are not Lightning's."""
    seen = {
        f'{w.category.__name__}: {w.message}'
        for w in caught
        if 'lightning' not in (w.filename or '')
    }
    for line in sorted(seen)[:10]:
        print(f'warning while training: {line}')


def lightning_available() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def file_trackers() -> list[Any]:
    """The standard trackers, bars drawn even off a terminal, plus CSV and SQLite."""
    from drytorch.trackers.csv import CSVDumper
    from drytorch.trackers.logging import BuiltinLogger
    from drytorch.trackers.sqlite import SQLiteTracker
    from drytorch.trackers.toml import TomlDumper
    from drytorch.trackers.tqdm import TqdmLogger

    return [
        BuiltinLogger(),
        TqdmLogger(disable=False),
        TomlDumper(),
        CSVDumper(),
        SQLiteTracker(),
    ]


def build_variants(
    exp: Any,
    default_trackers: list[Any],
    dataset: data.TensorDataset,
    reference: nn.Module,
    folder: pathlib.Path,
) -> dict[str, Variant]:
    """Build the variants; Lightning's only when it is installed."""
    init_state = copy.deepcopy(reference.state_dict())
    variants: dict[str, Variant] = {
        'hand': HandWritten(reference, init_state, dataset),
        'hand-sliced': HandSliced(reference, init_state, dataset),
        'drytorch-none': DryTorchVariant(
            'NoTrackers', reference, init_state, dataset, exp, []
        ),
        'drytorch-default': DryTorchVariant(
            'DefaultTrackers', reference, init_state, dataset, exp, default_trackers
        ),
        'drytorch-files': DryTorchVariant(
            'FileTrackers', reference, init_state, dataset, exp, file_trackers()
        ),
    }
    if not lightning_available():
        return variants
    quiet_lightning()
    all_off = {
        'accelerator': 'cpu',
        'devices': 1,
        'logger': False,
        'enable_checkpointing': False,
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'num_sanity_val_steps': 0,
        'max_epochs': 1,
    }
    defaults = {
        'accelerator': 'cpu',
        'devices': 1,
        'max_epochs': 1,
        'default_root_dir': str(folder / 'lightning'),
    }
    variants['lightning-off'] = LightningVariant(
        reference, init_state, dataset, all_off, log_loss=False
    )
    variants['lightning-default'] = LightningVariant(
        reference, init_state, dataset, defaults, log_loss=True
    )
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=30, help='at least 20')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='cProfile one DRYTorch epoch with no trackers',
    )
    parser.add_argument('--top', type=int, default=15)
    args = parser.parse_args()
    rounds = max(args.rounds, MIN_ROUNDS)
    torch.set_num_threads(1)

    with scratch_environment('standard') as folder:
        import drytorch

        print(
            f'drytorch {drytorch.__version__}, torch {torch.__version__}, '
            f'python {sys.version.split()[0]}, torch threads '
            f'{torch.get_num_threads()}'
        )
        print(f'scratch folder {folder}')
        print(f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
        if lightning_available():
            import lightning

            print(f'lightning {lightning.__version__}')
        else:
            print('lightning is not installed: variants (d) and (e) skipped')
        dataset, reference = make_problem()
        exp = drytorch.Experiment(None, name='bench', par_dir=folder / 'outputs')
        default_trackers = list(exp.trackers)
        print(f'default trackers: {[t.name for t in default_trackers] or "none"}')
        print(f'timing {rounds} interleaved rounds (after one untimed round)...')
        sys.stdout.flush()
        profiler = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            with quiet_output(), exp.create_run():
                variants = build_variants(
                    exp, default_trackers, dataset, reference, folder
                )
                start = time.perf_counter()
                times, checks = run_rounds(variants, rounds, dataset)
                elapsed = time.perf_counter() - start
                if args.profile:
                    profiler = profile_epoch(variants['drytorch-none'])
        print(f'timed in {elapsed:.1f} s')
        report_warnings(caught)
        verdicts = summarise(times, checks)
        print(
            'reference figures (measured elsewhere, from the issue): original '
            'DRYTorch ~160-210 us/step overhead, Lightning all-off ~700, '
            'Lightning defaults ~2,400'
        )
        if profiler is not None:
            print_profile(profiler, args.top)
        overall = 'PASS' if all(v == 'PASS' for v in verdicts) else 'MISS'
        print(f'\ntraining_overhead: {overall}')
        print(f'(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)')


if __name__ == '__main__':
    main()
