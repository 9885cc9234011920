"""``DataLoader``: one loader whose behaviour follows the inference mode.

Training wants shuffled, full batches; evaluation wants every sample in order.
Rather than asking users to build two loaders, ``DataLoader`` picks one of two
torch loaders when iteration starts, according to
``torch.is_inference_mode_enabled()``. Batches come straight from the torch
loader, so the per-batch cost is torch's own, except on the fast path.

Fast path: in the main process (no workers), a dataset that can load a whole
batch in one call is read without the torch loader, whose per-sample fetching
and collation cost more than a small model's step. A ``TensorDataset`` (also
under ``Subset``s, as ``split()`` makes) has each tensor indexed once with the
batch's indices; another dataset with ``__getitems__`` gets the batch's
indices and its samples are collated, as the torch loader does. The indices
come from the same samplers and the generator is drawn from as the torch
loader draws from it, so the batches are the same ones, bit for bit.

Shuffling draws from a ``torch.Generator`` owned by the loader, not from the
global RNG, reseeded at the start of each training epoch from the loader's
seed and the epoch's number: epoch ``k``'s order depends on nothing else. So
``sampler_state()`` is two integers, and a checkpoint resumes the exact
sequence of epochs with ``load_sampler_state()``. ``epoch_start_state()`` is
the state the current epoch started from: with ``load_sampler_state(state,
skip_batches=k)`` the next epoch draws that same permutation again and starts
at its batch ``k + 1``, so a checkpoint taken inside an epoch resumes it
exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sized
from typing import Any, Generic, TypeVar

import torch
from torch.utils import data

from drytorch.core import distributed
from drytorch.core.exceptions import DatasetHasNoLengthError, LoaderError

__all__ = ['DataLoader', 'take_from_dataset']

Batch = TypeVar('Batch')

_Fetch = Callable[[torch.Tensor], Any]
"""Loads the batch of the given sample indices."""


def _pin_batch(batch: Any) -> Any:
    """Pin the tensors of a batch (nested lists, tuples, dicts), as torch's loader.

    Written with the public ``Tensor.pin_memory()``: NamedTuples keep their
    type, other values pass through.
    """
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, tuple):
        pinned = [_pin_batch(item) for item in batch]
        return type(batch)(*pinned) if hasattr(batch, '_fields') else tuple(pinned)
    if isinstance(batch, list):
        return [_pin_batch(item) for item in batch]
    if isinstance(batch, dict):
        return {key: _pin_batch(value) for key, value in batch.items()}
    return batch


def _draw_seed() -> int:
    """Draw a seed from torch's global RNG, so ``torch.manual_seed`` fixes it."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


def _epoch_seed(seed: int, epoch: int) -> int:
    """Return the generator seed of training epoch ``epoch`` (from 1).

    The first epoch uses ``seed`` itself, as a torch loader with a generator
    seeded with ``seed`` would; later ones mix the two numbers (SplitMix64).
    """
    if epoch == 1:
        return seed
    mixed = (seed * 0x9E3779B97F4A7C15 + epoch) & 0xFFFFFFFFFFFFFFFF
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (mixed ^ (mixed >> 31)) >> 1  # below 2**63


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | torch.Tensor):
        raise TypeError(f'expected an integer, got {value!r}')
    return int(value)


def _accelerator_available() -> bool:
    accelerator = getattr(torch, 'accelerator', None)
    if accelerator is None:
        return bool(torch.cuda.is_available())
    return bool(accelerator.is_available())


def _pinning(requested: bool) -> bool:
    """Whether batches are pinned: as torch's loader decides for ``pin_memory``.

    Not without an accelerator, and not on MPS, which cannot pin.
    """
    if not requested or not _accelerator_available():
        return False
    accelerator = getattr(torch, 'accelerator', None)
    current = None if accelerator is None else accelerator.current_accelerator()
    return current is None or current.type != 'mps'


def _shard_size(n_samples: int, rank: int, size: int) -> int:
    """Return the samples of ``range(rank, n_samples, size)``."""
    return len(range(rank, n_samples, size))


_READERS = ('__getitem__', '__getitems__')
"""The methods a dataset reads samples with."""


def _redefines_readers(dataset: object, base: type) -> bool:
    """Whether ``dataset``'s class reads samples otherwise than ``base`` does."""
    kind = type(dataset)
    return any(
        getattr(kind, name, None) is not getattr(base, name, None) for name in _READERS
    )


def _index_tensor(indices: Any) -> torch.Tensor | None:
    """Return a ``Subset``'s indices as a CPU int64 tensor; None if not ints."""
    try:
        index = torch.as_tensor(indices)
    except (TypeError, ValueError, RuntimeError):
        return None
    if index.dim() != 1 or index.device.type != 'cpu':
        return None
    if index.dtype not in (torch.int64, torch.int32, torch.int16):
        return None  # floats and bools do not index samples; [] is a float tensor
    return index.to(torch.int64)


def _tensor_fetch(dataset: object) -> _Fetch | None:
    """Index a ``TensorDataset``'s tensors at once, seen through any ``Subset``s.

    None when ``dataset`` is not such a dataset, or a subclass of one reads
    its samples otherwise.
    """
    subsets: list[data.Subset[Any]] = []
    while isinstance(dataset, data.Subset):
        if _redefines_readers(dataset, data.Subset):
            return None
        subsets.append(dataset)
        dataset = dataset.dataset
    if not isinstance(dataset, data.TensorDataset):
        return None
    if _redefines_readers(dataset, data.TensorDataset):
        return None
    if not all(_dense(tensor) for tensor in dataset.tensors):
        return None
    rows = _rows(dataset.tensors)
    if not subsets:
        return rows
    index_map = _compose(subsets)
    if index_map is None:
        return None
    return lambda indices: rows(index_map.index_select(0, indices))


def _dense(tensor: torch.Tensor) -> bool:
    """Whether indexing ``tensor`` surely gives what collating its rows does."""
    return (
        tensor.layout == torch.strided
        and not tensor.is_nested
        and not tensor.is_quantized
    )


def _rows(tensors: tuple[torch.Tensor, ...]) -> _Fetch:
    """Return the rows of a batch of each tensor, as ``default_collate`` would.

    Collating stacks each tensor's rows into a contiguous tensor, and makes a
    list of the samples' tuples. ``index_select`` gives the same values and
    strides (``t[indices]`` keeps a channels-last layout, collating does not),
    and it is the faster of the two.
    """
    if all(tensor.device.type == 'cpu' for tensor in tensors):
        return lambda indices: [tensor.index_select(0, indices) for tensor in tensors]
    return lambda indices: [
        tensor.index_select(0, indices.to(tensor.device)) for tensor in tensors
    ]


def _compose(subsets: list[data.Subset[Any]]) -> torch.Tensor | None:
    """Return the innermost dataset's index of each sample of ``subsets[0]``.

    None when some indices are not integers or overflow the Subset inside:
    the Subset's own ``__getitems__`` then reads (or fails) as it would.
    """
    index_map: torch.Tensor | None = None
    for subset in subsets:  # sample i of a Subset is sample level[i] inside it
        level = _index_tensor(subset.indices)
        if level is None:
            return None
        try:
            index_map = level if index_map is None else level[index_map]
        except IndexError:
            return None
    return index_map


def _items_fetch(dataset: object) -> _Fetch | None:
    """Load a batch with ``__getitems__`` and collate it, as torch's loader does."""
    getitems = getattr(dataset, '__getitems__', None)
    if not callable(getitems):
        return None
    return lambda indices: data.default_collate(getitems(indices.tolist()))


def _batch_fetch(dataset: object) -> _Fetch | None:
    """Return how to load a batch of ``dataset`` in one call; None if it cannot."""
    return _tensor_fetch(dataset) or _items_fetch(dataset)


class _EpochSampler(data.Sampler[int]):
    """Draws one permutation per epoch from a generator and counts the epochs.

    The loader reseeds the generator before each epoch. ``skip`` samples are
    left out of the next permutation only (an epoch resumed mid-way).

    In a distributed run every rank draws the same permutation and takes
    every ``size``-th sample of it from its rank on, over the first
    ``n // size * size``: the ranks get as many samples each, disjoint, and
    together the permutation's head, which changes every epoch.
    """

    def __init__(self, n_samples: int, generator: torch.Generator) -> None:
        self.n_samples = n_samples
        self.generator = generator
        self.epoch = 0
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        order: list[int] = self.order().tolist()
        return iter(order)

    def order(self) -> torch.Tensor:
        """Draw this epoch's samples: this rank's share, the skipped ones out."""
        order = torch.randperm(self.n_samples, generator=self.generator)
        rank, size = distributed.current()
        if size > 1:
            order = order[rank : self.n_samples // size * size : size]
        skip, self.skip = self.skip, 0
        return order[skip:]

    def __len__(self) -> int:
        return self.n_samples // distributed.current().size


class _ShardSampler(data.Sampler[int]):
    """The samples in order; in a distributed run, this rank's share of them.

    Rank ``r`` of ``size`` takes samples ``r, r + size, ...``: every sample
    is evaluated once, by one rank, with no padding (the shares differ by at
    most one sample), so the reduced metrics are those of one process.
    """

    def __init__(self, n_samples: int) -> None:
        self.n_samples = n_samples

    def __iter__(self) -> Iterator[int]:
        return iter(range(*self._share()))

    def order(self) -> torch.Tensor:
        """Return this rank's samples, in order."""
        return torch.arange(*self._share())

    def _share(self) -> tuple[int, int, int]:
        """Return ``(start, stop, step)`` of this rank's samples."""
        rank, size = distributed.current()
        if size > self.n_samples:
            raise LoaderError(
                f'The dataset has {self.n_samples} samples, fewer than the '
                f'{size} processes of the run: every process needs at least one '
                'to evaluate. Use more samples or fewer processes.'
            )
        return rank, self.n_samples, size

    def __len__(self) -> int:
        return _shard_size(self.n_samples, *distributed.current())


class DataLoader(Generic[Batch]):
    """Batches a dataset: shuffled and full in training, complete in inference.

    In training (outside ``torch.inference_mode()``) each epoch visits the
    samples in a new random order and drops the last partial batch, so every
    step sees ``batch_size`` samples. In inference mode the samples keep their
    order and none is dropped.

    In a distributed run (``torchrun``) each process loads its own share:
    in training, an equal part of the epoch's permutation (so every process
    takes the same number of steps, of ``batch_size`` samples each); in
    inference, every ``world_size``-th sample, so that each sample is
    evaluated exactly once. No ``DistributedSampler`` is needed, and the
    shuffling resumes exactly as in one process.

    Batches are collated by torch's ``default_collate``: tensors are stacked,
    NamedTuples keep their type (an empty one included), plain tuples become
    lists, and numbers become tensors. Without workers, a ``TensorDataset``'s
    batches are its tensors indexed at once, and a dataset with
    ``__getitems__`` loads each batch in one call: the same batches, faster.

    Args:
        dataset: a map-style dataset (it must define ``__len__``).
        batch_size: the samples per batch, at least 1.
        pin_memory: pin batches in page-locked memory for faster copies to an
            accelerator; ignored when there is no accelerator. ``None`` (the
            original DRYTorch's default) is ``False``: pinning costs a copy
            per batch, and a dataset already on the accelerator cannot pin.
        sampler: yields the sample indices of each training epoch in place
            of our shuffling (a ``WeightedRandomSampler``, say); batches then
            come through torch's loader, and the last partial one is dropped.
            Inference keeps every sample in order. The sampler is used as
            given on every process of a distributed run, and a resumed epoch
            skips its first batches by drawing them.
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
        pin_memory: bool | None = None,
        sampler: data.Sampler[int] | None = None,
        n_workers: int = 0,
        *,
        seed: int | None = None,
    ) -> None:
        if not isinstance(dataset, Sized):
            error = DatasetHasNoLengthError()  # the original's name, our advice
            error.args = (
                f'DataLoader needs a map-style dataset that defines __len__; '
                f'{type(dataset).__name__} does not. Iterable datasets cannot be '
                'shuffled or split: use a torch.utils.data.DataLoader directly.',
            )
            raise error
        if sampler is not None and not (
            isinstance(sampler, Sized) and hasattr(sampler, '__iter__')
        ):
            raise LoaderError(
                f'sampler must be a torch Sampler with a length (it yields the '
                f'sample indices of a training epoch), got {sampler!r}.'
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
        self.pin_memory = bool(pin_memory)
        self.n_workers = n_workers
        self._custom_sampler = sampler
        self.seed = _draw_seed() if seed is None else int(seed)
        self._n_samples = n_samples
        self._generator = torch.Generator().manual_seed(self.seed)
        self._sampler = _EpochSampler(n_samples, self._generator)
        self._shards = _ShardSampler(n_samples)
        self.sampler: data.Sampler[int] = sampler or self._sampler
        """What orders the training samples: the custom one given, or ours."""
        self._epoch_start: dict[str, Any] | None = None
        self._train_loader: data.DataLoader[Batch] | None = None
        self._inference_loader: data.DataLoader[Batch] | None = None

    @property
    def dataset_len(self) -> int:
        """The samples in the dataset (the original DRYTorch's name)."""
        return self._n_samples

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
                    sampler=self._shards,
                    drop_last=False,
                    generator=torch.Generator().manual_seed(self.seed),
                )
            return self._inference_loader
        if self._train_loader is None:
            self._train_loader = self._build(
                sampler=self.sampler, drop_last=True, generator=self._generator
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
        fetch = self._fast_fetch()
        if torch.is_inference_mode_enabled():
            if fetch is not None:
                return self._fast_batches(self._shards.order, fetch, drop_last=False)
            return iter(self.get_loader(True))
        sampler = self._sampler
        self._epoch_start = self.sampler_state()
        sampler.epoch += 1
        # Before iter(): torch draws the workers' base seed from the generator.
        self._generator.manual_seed(_epoch_seed(self.seed, sampler.epoch))
        if self._custom_sampler is not None:  # its order, through torch's loader
            skip, sampler.skip = sampler.skip // self.batch_size, 0
            return itertools.islice(iter(self.get_loader(False)), skip, None)
        if fetch is not None:
            return self._fast_batches(self._train_order, fetch, drop_last=True)
        return iter(self.get_loader(False))

    def _fast_fetch(self) -> _Fetch | None:
        """Return how to load a batch in one call; None to use the torch loader.

        Only in the main process: with workers, the torch loader shares the
        batches out among them.
        """
        return None if self.n_workers else _batch_fetch(self.dataset)

    def _train_order(self) -> torch.Tensor:
        """Draw the epoch's samples as the torch loader would."""
        # The torch loader first draws its workers' base seed, then the order.
        torch.empty((), dtype=torch.int64).random_(generator=self._generator)
        return self._sampler.order()

    def _fast_batches(
        self, order: Callable[[], torch.Tensor], fetch: _Fetch, drop_last: bool
    ) -> Iterator[Batch]:
        """Yield the batches of ``order()``'s samples, each loaded by one ``fetch``.

        A generator, as torch's loader is lazy: the order is drawn, and the
        samples to skip left out, when the first batch is asked for.
        """
        pin = _pinning(self.pin_memory)
        indices = order()
        size = self.batch_size
        n_batches = len(indices) // size if drop_last else -(-len(indices) // size)
        for batch_indices in torch.split(indices, size)[:n_batches]:
            batch = fetch(batch_indices)
            yield _pin_batch(batch) if pin else batch

    def __len__(self) -> int:
        """Return the batches in one epoch, in the mode active now."""
        rank, size = distributed.current()
        if torch.is_inference_mode_enabled():
            shard = _shard_size(self._n_samples, rank, size)
            return math.ceil(shard / self.batch_size)
        return self._train_batches()

    def _train_batches(self) -> int:
        """Return the batches of a training epoch."""
        if self._custom_sampler is not None:
            return len(self._custom_sampler) // self.batch_size
        return self._n_samples // distributed.current().size // self.batch_size

    def sampler_state(self) -> dict[str, Any]:
        """Return what a checkpoint needs to resume the shuffling exactly.

        ``{'seed': int, 'epoch': int}``: the epochs started so far, and the
        seed the order of each epoch derives from.
        """
        return {'epoch': self._sampler.epoch, 'seed': self.seed}

    def epoch_start_state(self) -> dict[str, Any]:
        """Return ``sampler_state()`` as it was when the last training epoch began.

        Loaded with ``load_sampler_state(state, skip_batches=k)``, it makes the
        next epoch repeat that epoch's permutation from its batch ``k + 1``.
        Before any training epoch, it is the current ``sampler_state()``.
        """
        if self._epoch_start is None:
            return self.sampler_state()
        return dict(self._epoch_start)

    def load_sampler_state(
        self, state: dict[str, Any], *, skip_batches: int = 0
    ) -> None:
        """Restore the shuffling saved by ``sampler_state()``.

        A state saved by an earlier version, with a ``generator_state``,
        restores the epoch count and the seed; the generator state is not
        used (each epoch's order now derives from the seed and the epoch).

        Args:
            state: from ``sampler_state()`` or ``epoch_start_state()``.
            skip_batches: leave out the first batches of the next training
                epoch (the ones a checkpoint taken mid-epoch had trained on);
                later epochs are whole.

        Raises:
            LoaderError: ``state`` was not made by ``sampler_state()``, or
                ``skip_batches`` is not in ``[0, len(self)]``.
        """
        n_batches = self._train_batches()
        if (
            isinstance(skip_batches, bool)
            or not isinstance(skip_batches, int)
            or not 0 <= skip_batches <= n_batches
        ):
            raise LoaderError(
                f'skip_batches must be an int from 0 to {n_batches} (the batches '
                f'of an epoch), got {skip_batches!r}.'
            )
        if not isinstance(state, dict) or 'epoch' not in state:
            raise LoaderError(
                "The sampler state lacks ['epoch']: pass the dict returned by "
                'DataLoader.sampler_state().'
            )
        try:
            epoch = _integer(state['epoch'])
            seed = _integer(state.get('seed', self.seed))
        except (TypeError, ValueError) as error:
            raise LoaderError(
                f'The sampler state cannot be restored: {error}. Pass the dict '
                'returned by DataLoader.sampler_state().'
            ) from error
        if epoch < 0:
            raise LoaderError(f'The sampler state has a negative epoch: {epoch}.')
        self._sampler.epoch = epoch
        self._sampler.skip = skip_batches * self.batch_size
        self._epoch_start = None
        self.seed = seed

    def split(
        self,
        fraction: float | None = None,
        seed: int | bool | None = None,
        shuffle: bool | int = True,
        *,
        split: float | None = None,
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
            split: ``fraction``, as the original DRYTorch names it. Its
                positional order ``split(0.2, shuffle, seed)`` works too: a
                bool in ``seed``'s place is read as ``shuffle``.

        Raises:
            LoaderError: ``fraction`` is outside (0, 1) or leaves a side empty.
            TypeError: both ``fraction`` and ``split`` are given.
        """
        if split is not None:
            if fraction is not None:
                raise TypeError(
                    'split() takes the validation fraction once: fraction= or '
                    'split= (the original DRYTorch name), not both.'
                )
            fraction = split
        if fraction is None:
            fraction = 0.2
        split_seed: int | None = None if isinstance(seed, bool) else seed
        if isinstance(seed, bool):  # the original's order: (split, shuffle, seed)
            split_seed = None if isinstance(shuffle, bool) else int(shuffle)
            shuffle = seed
        shuffle = bool(shuffle)
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
            _draw_seed() if split_seed is None else split_seed
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
                self.pin_memory,
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


def take_from_dataset(
    dataset: data.Dataset[Batch],
    n_samples: int = 1,
    preserve_order: bool = True,
    device: torch.device | str | None = None,
) -> Batch:
    """Collate samples of ``dataset`` into one batch on ``device``.

    For a quick look at a model's outputs, or a batch to trace a model with.

    Args:
        dataset: a map-style dataset with a length.
        n_samples: how many samples, from 1 to the dataset's length.
        preserve_order: take the first samples; else random ones, drawn from
            torch's global RNG.
        device: where the batch goes; defaults to the accelerator when one is
            available, else the CPU (as ``Model``'s default).

    Raises:
        DatasetHasNoLengthError: the dataset has no length.
        LoaderError: ``n_samples`` is not between 1 and the dataset's length.
    """
    from drytorch.lib.models import default_device
    from drytorch.lib.runners import to_device

    if not isinstance(dataset, Sized):
        raise DatasetHasNoLengthError()
    length = len(dataset)
    if (
        isinstance(n_samples, bool)
        or not isinstance(n_samples, int)
        or not 1 <= n_samples <= length
    ):
        raise LoaderError(
            f"n_samples must be an integer from 1 to {length} (the dataset's "
            f'length), got {n_samples!r}.'
        )
    indices = (
        list(range(n_samples))
        if preserve_order
        else torch.randperm(length)[:n_samples].tolist()
    )
    batch: Batch = data.default_collate([dataset[index] for index in indices])
    target = default_device() if device is None else torch.device(device)
    moved: Batch = to_device(batch, target)
    return moved
