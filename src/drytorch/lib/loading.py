"""``DataLoader``: one loader whose behaviour follows the inference mode.

Training wants shuffled, full batches; evaluation wants every sample in order.
Rather than asking users to build two loaders, ``DataLoader`` picks one of two
torch loaders when iteration starts, according to
``torch.is_inference_mode_enabled()``. Batches come straight from the torch
loader, so the per-batch cost is torch's own.

Shuffling draws from a ``torch.Generator`` owned by the loader, not from the
global RNG: the order does not depend on what else consumed random numbers,
and ``sampler_state()`` / ``load_sampler_state()`` let a checkpoint resume the
exact sequence of epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any, Generic, TypeVar

import torch
from torch.utils import data

from drytorch.core.exceptions import LoaderError

__all__ = ['DataLoader']

Batch = TypeVar('Batch')


def _draw_seed() -> int:
    """Draw a seed from torch's global RNG, so ``torch.manual_seed`` fixes it."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


def _accelerator_available() -> bool:
    accelerator = getattr(torch, 'accelerator', None)
    if accelerator is None:
        return bool(torch.cuda.is_available())
    return bool(accelerator.is_available())


class _EpochSampler(data.Sampler[int]):
    """Draws one permutation per epoch from a generator and counts the epochs.

    The permutation is drawn when iteration starts, so the generator state
    between two epochs is exactly what the next epoch needs.
    """

    def __init__(self, n_samples: int, generator: torch.Generator) -> None:
        self.n_samples = n_samples
        self.generator = generator
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        self.epoch += 1
        order: list[int] = torch.randperm(
            self.n_samples, generator=self.generator
        ).tolist()
        return iter(order)

    def __len__(self) -> int:
        return self.n_samples


class DataLoader(Generic[Batch]):
    """Batches a dataset: shuffled and full in training, complete in inference.

    In training (outside ``torch.inference_mode()``) each epoch visits the
    samples in a new random order and drops the last partial batch, so every
    step sees ``batch_size`` samples. In inference mode the samples keep their
    order and none is dropped.

    Batches are collated by torch's ``default_collate``: tensors are stacked,
    NamedTuples keep their type (an empty one included), plain tuples become
    lists, and numbers become tensors.

    Args:
        dataset: a map-style dataset (it must define ``__len__``).
        batch_size: the samples per batch, at least 1.
        pin_memory: pin batches in page-locked memory for faster copies to an
            accelerator; ignored when there is no accelerator.
        n_workers: the worker processes loading batches; 0 loads them in the
            main process.
        seed: the seed of the shuffling generator. None draws it once from
            torch's global RNG, so ``torch.manual_seed`` makes it reproducible.

    Raises:
        LoaderError: the dataset has no length or is empty, ``batch_size`` is
            below 1 or ``n_workers`` is negative.
    """

    def __init__(
        self,
        dataset: data.Dataset[Batch],
        batch_size: int,
        *,
        pin_memory: bool = False,
        n_workers: int = 0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(dataset, Sized):
            raise LoaderError(
                f'DataLoader needs a map-style dataset that defines __len__; '
                f'{type(dataset).__name__} does not. Iterable datasets cannot be '
                'shuffled or split: use a torch.utils.data.DataLoader directly.'
            )
        n_samples = len(dataset)
        if n_samples == 0:
            raise LoaderError('The dataset is empty: there is nothing to load.')
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise LoaderError(f'batch_size must be an integer, got {batch_size!r}.')
        if batch_size < 1:
            raise LoaderError(f'batch_size must be at least 1, got {batch_size}.')
        if n_workers < 0:
            raise LoaderError(
                f'n_workers must be 0 (load in the main process) or more, '
                f'got {n_workers}.'
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.pin_memory = pin_memory
        self.n_workers = n_workers
        self.seed = _draw_seed() if seed is None else int(seed)
        self._n_samples = n_samples
        self._generator = torch.Generator().manual_seed(self.seed)
        self._sampler = _EpochSampler(n_samples, self._generator)
        self._train_loader: data.DataLoader[Batch] | None = None
        self._inference_loader: data.DataLoader[Batch] | None = None

    @property
    def epoch(self) -> int:
        """The number of training epochs started so far."""
        return self._sampler.epoch

    def get_loader(self, inference: bool) -> data.DataLoader[Batch]:
        """Return the torch loader used in inference mode or in training."""
        if inference:
            if self._inference_loader is None:
                # A separate generator: evaluating must not shift the shuffling.
                self._inference_loader = self._build(
                    sampler=data.SequentialSampler(self.dataset),
                    drop_last=False,
                    generator=torch.Generator().manual_seed(self.seed),
                )
            return self._inference_loader
        if self._train_loader is None:
            self._train_loader = self._build(
                sampler=self._sampler, drop_last=True, generator=self._generator
            )
        return self._train_loader

    def _build(
        self,
        sampler: data.Sampler[int],
        drop_last: bool,
        generator: torch.Generator,
    ) -> data.DataLoader[Batch]:
        # The generator also seeds the workers, so their randomness repeats too.
        return data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.n_workers,
            pin_memory=self.pin_memory and _accelerator_available(),
            generator=generator,
        )

    def __iter__(self) -> Iterator[Batch]:
        """Iterate over one epoch, in the mode active when iteration starts."""
        return iter(self.get_loader(torch.is_inference_mode_enabled()))

    def __len__(self) -> int:
        """Return the batches in one epoch, in the mode active now."""
        if torch.is_inference_mode_enabled():
            return math.ceil(self._n_samples / self.batch_size)
        return self._n_samples // self.batch_size

    def sampler_state(self) -> dict[str, Any]:
        """Return what a checkpoint needs to resume the shuffling exactly.

        The values are plain tensors and ints, loadable with
        ``torch.load(..., weights_only=True)``.
        """
        return {
            'generator_state': self._generator.get_state(),
            'epoch': self._sampler.epoch,
            'seed': self.seed,
        }

    def load_sampler_state(self, state: dict[str, Any]) -> None:
        """Restore the shuffling saved by ``sampler_state()``.

        Raises:
            LoaderError: ``state`` was not made by ``sampler_state()``.
        """
        missing = {'generator_state', 'epoch'} - set(state)
        if missing:
            raise LoaderError(
                f'The sampler state lacks {sorted(missing)}: pass the dict '
                'returned by DataLoader.sampler_state().'
            )
        generator_state = state['generator_state']
        if (
            not isinstance(generator_state, torch.Tensor)
            or generator_state.dtype != torch.uint8
        ):
            raise LoaderError(
                'The sampler state has no valid generator_state (a uint8 '
                'tensor): pass the dict returned by DataLoader.sampler_state().'
            )
        try:
            self._generator.set_state(generator_state.cpu())
        except RuntimeError as error:
            raise LoaderError(
                f'The sampler state cannot be restored: {error}'
            ) from error
        self._sampler.epoch = int(state['epoch'])
        if 'seed' in state:
            self.seed = int(state['seed'])

    def split(
        self, fraction: float = 0.2, seed: int | None = None, shuffle: bool = True
    ) -> tuple[DataLoader[Batch], DataLoader[Batch]]:
        """Split the dataset into a training and a validation loader.

        The validation loader holds ``round(fraction * n)`` samples; the two
        are disjoint and together hold every sample. Both keep this loader's
        batch size, pinning and workers.

        Args:
            fraction: the share of samples for validation, in (0, 1).
            seed: fixes which samples go where and the loaders' shuffling.
                None draws it from torch's global RNG.
            shuffle: pick the validation samples at random; if False, the
                last samples are used for validation.

        Raises:
            LoaderError: ``fraction`` is outside (0, 1) or leaves a side empty.
        """
        if not 0 < fraction < 1:
            raise LoaderError(
                f'The validation fraction must be in (0, 1), got {fraction!r}.'
            )
        n_val = round(fraction * self._n_samples)
        n_train = self._n_samples - n_val
        if n_val == 0 or n_train == 0:
            raise LoaderError(
                f'Splitting {self._n_samples} samples with fraction {fraction} '
                f'gives {n_train} training and {n_val} validation samples: both '
                'need at least one. Choose a fraction closer to 0.5 or use more '
                'samples.'
            )
        generator = torch.Generator().manual_seed(
            _draw_seed() if seed is None else seed
        )
        if shuffle:
            indices: list[int] = torch.randperm(
                self._n_samples, generator=generator
            ).tolist()
        else:
            indices = list(range(self._n_samples))
        seeds = torch.randint(0, 2**62, (2,), generator=generator).tolist()
        loaders = tuple(
            DataLoader(
                data.Subset(self.dataset, part),
                self.batch_size,
                pin_memory=self.pin_memory,
                n_workers=self.n_workers,
                seed=part_seed,
            )
            for part, part_seed in zip(
                (indices[:n_train], indices[n_train:]), seeds, strict=True
            )
        )
        return loaders[0], loaders[1]

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(dataset={type(self.dataset).__name__}, '
            f'n_samples={self._n_samples}, batch_size={self.batch_size})'
        )
