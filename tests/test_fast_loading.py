"""DataLoader's fast path: batches loaded in one call are the torch loader's ones.

A dataset that loads a whole batch at once (``TensorDataset``, also under
``Subset``s, or any dataset with ``__getitems__``) is read without the torch
loader; every test compares those batches, bit for bit, with the ones of the
torch loader path, forced by hiding the dataset behind ``Hidden`` (only
``__getitem__``) or by turning the fast path off.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils import data

from drytorch import DataLoader, LearningSchema, Trainer
from drytorch.core import distributed
from drytorch.lib import loading
from tests import training_kit as kit


class Hidden(data.Dataset[Any]):
    """The samples of a dataset, one ``__getitem__`` at a time: no fast path."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


class Batched(data.Dataset[dict[str, Any]]):
    """Samples as dicts, loaded a batch at a time with ``__getitems__``."""

    def __init__(self, n: int) -> None:
        self.values = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
        self.calls: list[list[int]] = []
        self.single_reads = 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        self.single_reads += 1
        return {'x': self.values[index], 'id': index}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        self.calls.append(indices)
        return [{'x': self.values[i], 'id': i} for i in indices]

    def __len__(self) -> int:
        return len(self.values)


class Shifted(data.TensorDataset):
    """A TensorDataset whose samples are not its tensors' rows."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(tensor[index] + 1 for tensor in self.tensors)


def tensors(n: int = 23) -> data.TensorDataset:
    """Inputs of several shapes and layouts, and integer targets."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 4, 5, generator=generator)
    return data.TensorDataset(
        torch.randn(n, 2, generator=generator),
        images.to(memory_format=torch.channels_last),
        torch.arange(n),
    )


def epochs(loader: DataLoader[Any], n: int = 1) -> list[list[Any]]:
    return [list(loader) for _ in range(n)]


def ids(batches: list[Any]) -> list[int]:
    """The targets of ``tensors()`` batches: the samples' indices, in order."""
    return [int(t) for *_, targets in batches for t in targets]


def assert_same(got: Any, expected: Any) -> None:
    """Equal structure, types, dtypes, shapes, strides and values."""
    assert type(got) is type(expected)
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.stride() == expected.stride()
        assert torch.equal(got, expected)
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected)
        for item, expected_item in zip(got, expected, strict=True):
            assert_same(item, expected_item)
    else:
        assert got == expected


@pytest.fixture
def get_loader_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``get_loader`` calls of every DataLoader: one per epoch without fast path."""
    calls: list[bool] = []
    original = DataLoader.get_loader

    def spy(self: DataLoader[Any], inference: bool) -> Any:
        calls.append(inference)
        return original(self, inference)

    monkeypatch.setattr(DataLoader, 'get_loader', spy)
    return calls


def test_training_epochs_are_the_torch_loaders(get_loader_calls: list[bool]) -> None:
    dataset = tensors(23)
    fast = DataLoader(dataset, 4, seed=3)
    slow = DataLoader(Hidden(dataset), 4, seed=3)
    got = epochs(fast, 4)
    assert not get_loader_calls  # no torch loader on the fast path
    assert_same(got, epochs(slow, 4))
    assert [len(epoch) for epoch in got] == [len(fast)] * 4 == [5] * 4
    assert isinstance(got[0][0], list)  # as default_collate makes of tuples
    images = got[0][0][1]
    assert images.is_contiguous()  # stacked, as collating does
    assert len({tuple(ids(epoch)) for epoch in got}) == 4


def test_inference_keeps_order_and_the_last_batch() -> None:
    dataset = tensors(10)
    fast = DataLoader(dataset, 4, seed=3)
    slow = DataLoader(Hidden(dataset), 4, seed=3)
    with torch.inference_mode():
        got = list(fast)
        assert len(fast) == 3
        assert_same(got, list(slow))
    assert ids(got) == list(range(10))
    assert [len(targets) for _, _, targets in got] == [4, 4, 2]


def test_inference_between_epochs_does_not_shift_the_shuffling() -> None:
    dataset = tensors(16)
    fast = DataLoader(dataset, 4, seed=3)
    slow = DataLoader(Hidden(dataset), 4, seed=3)
    for _ in range(3):
        with torch.inference_mode():
            list(fast)
        assert_same(list(fast), list(slow))
    assert fast.epoch == slow.epoch == 3


def test_an_epoch_resumes_after_its_trained_batches() -> None:
    dataset = tensors(26)  # 6 batches of 4, 2 samples dropped
    reference = DataLoader(Hidden(dataset), 4, seed=5)
    list(reference)
    iterator = iter(reference)
    start = reference.epoch_start_state()
    trained = [next(iterator) for _ in range(2)]
    rest = list(iterator)
    following = epochs(reference, 2)

    resumed = DataLoader(dataset, 4, seed=99)
    resumed.load_sampler_state(start, skip_batches=2)
    assert len(resumed) == 6
    again = list(resumed)
    assert len(trained) + len(again) == 6
    assert_same(again, rest)
    assert_same(epochs(resumed, 2), following)  # later epochs are whole
    assert resumed.sampler_state() == reference.sampler_state()


def test_skipping_every_batch_leaves_an_empty_epoch() -> None:
    loader = DataLoader(tensors(8), 4, seed=3)
    loader.load_sampler_state(loader.sampler_state(), skip_batches=2)
    assert list(loader) == []
    assert len(list(loader)) == 2


@pytest.mark.parametrize('size', [2, 3])
def test_distributed_shards_are_the_torch_loaders(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    dataset = tensors(23)
    seen: list[int] = []
    trained: list[int] = []
    for rank in range(size):
        monkeypatch.setattr(
            distributed, 'current', lambda r=rank: distributed.World(r, size)
        )
        fast = DataLoader(dataset, 3, seed=4)
        slow = DataLoader(Hidden(dataset), 3, seed=4)
        got = epochs(fast, 2)
        assert_same(got, epochs(slow, 2))
        assert [len(epoch) for epoch in got] == [len(fast)] * 2
        assert len(fast) == 23 // size // 3
        trained += ids(got[0])
        with torch.inference_mode():
            evaluated = list(fast)
            assert_same(evaluated, list(slow))
            assert len(evaluated) == len(fast)
        assert ids(evaluated) == list(range(rank, 23, size))
        seen += ids(evaluated)
    assert sorted(seen) == list(range(23))  # each sample evaluated once
    assert len(set(trained)) == len(trained)  # the ranks' shares are disjoint


def test_distributed_resume_skips_this_ranks_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(distributed, 'current', lambda: distributed.World(1, 2))
    dataset = tensors(30)
    reference = DataLoader(Hidden(dataset), 3, seed=8)  # 5 batches per rank
    rest = list(reference)[2:]
    resumed = DataLoader(dataset, 3, seed=8)
    resumed.load_sampler_state({'epoch': 0, 'seed': 8}, skip_batches=2)
    assert_same(list(resumed), rest)


def test_split_loaders_index_through_their_subsets(
    get_loader_calls: list[bool],
) -> None:
    dataset = tensors(40)
    train, val = DataLoader(dataset, 4, seed=0).split(0.25, seed=4)
    slow_train, slow_val = DataLoader(Hidden(dataset), 4, seed=0).split(0.25, seed=4)
    assert_same(epochs(train, 3), epochs(slow_train, 3))
    with torch.inference_mode():
        assert_same(list(val), list(slow_val))
    nested = DataLoader(data.Subset(train.dataset, [5, 0, 9, 2, 2]), 2, seed=1)
    slow_nested = DataLoader(Hidden(nested.dataset), 2, seed=1)
    assert_same(epochs(nested, 2), epochs(slow_nested, 2))
    get_loader_calls.clear()  # the slow ones asked; the fast ones never do
    list(train)
    assert not get_loader_calls


def test_getitems_loads_each_batch_in_one_call(get_loader_calls: list[bool]) -> None:
    dataset = Batched(11)
    fast = DataLoader(dataset, 3, seed=2)
    got = epochs(fast, 2)
    with torch.inference_mode():
        evaluated = list(fast)
    assert not get_loader_calls
    assert dataset.single_reads == 0
    assert len(dataset.calls) == 3 + 3 + 4
    assert all(isinstance(i, int) for call in dataset.calls for i in call)
    assert dataset.calls[-1] == [9, 10]
    slow = DataLoader(Hidden(dataset), 3, seed=2)
    assert_same(got, epochs(slow, 2))
    with torch.inference_mode():
        assert_same(evaluated, list(slow))
    assert isinstance(got[0][0], dict)
    assert torch.equal(got[0][0]['x'], dataset.values[got[0][0]['id']])


def test_getitems_batches_are_the_torch_loaders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_set, slow_set = Batched(14), Batched(14)
    fast = DataLoader(fast_set, 4, seed=6)
    got = epochs(fast, 3)
    with monkeypatch.context() as torch_path:  # the fast path turned off
        torch_path.setattr(loading, '_batch_fetch', lambda dataset: None)
        slow = DataLoader(slow_set, 4, seed=6)
        expected = epochs(slow, 3)
    assert_same(got, expected)
    assert fast_set.calls == slow_set.calls  # torch's loader calls it alike


def test_a_dataset_without_getitems_takes_the_torch_loader(
    get_loader_calls: list[bool],
) -> None:
    dataset = Hidden(tensors(12))
    loader = DataLoader(dataset, 4, seed=1)
    list(loader)
    with torch.inference_mode():
        list(loader)
    assert get_loader_calls == [False, True]


def test_workers_take_the_torch_loader(get_loader_calls: list[bool]) -> None:
    dataset = tensors(12)
    with_workers = DataLoader(dataset, 4, n_workers=1, seed=1)
    got = list(with_workers)
    assert get_loader_calls == [False]
    assert_same(got, list(DataLoader(dataset, 4, seed=1)))


def test_a_subclass_reading_samples_otherwise_takes_the_torch_loader(
    get_loader_calls: list[bool],
) -> None:
    dataset = Shifted(torch.arange(8.0), torch.arange(8))
    with torch.inference_mode():
        inputs, _ = next(iter(DataLoader(dataset, 8)))
        subset = DataLoader(data.Subset(dataset, [3, 4]), 2)
        _, subset_targets = next(iter(subset))
    assert torch.equal(inputs, torch.arange(1.0, 9.0))
    assert torch.equal(subset_targets, torch.tensor([4, 5]))
    # The Subset is read with its __getitems__, which asks Shifted sample by sample.
    assert get_loader_calls == [True]


def test_pinned_as_torch_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned: list[Any] = []

    def pin(batch: Any) -> Any:
        pinned.append(batch)
        return batch

    monkeypatch.setattr(loading, '_pin_batch', pin)
    list(DataLoader(tensors(8), 4, pin_memory=True))
    assert not pinned  # no accelerator: nothing to pin for
    monkeypatch.setattr(loading, '_accelerator_available', lambda: True)
    batches = list(DataLoader(tensors(8), 4, pin_memory=True))
    assert pinned == batches and len(batches) == 2
    list(DataLoader(tensors(8), 4))
    assert len(pinned) == 2  # not asked for


def test_a_trainer_trains_through_the_fast_path(run: Any) -> None:
    def train(wrap: Any, name: str) -> tuple[dict[str, torch.Tensor], float]:
        trainer = Trainer(
            kit.linear(name),
            loader=DataLoader(wrap(kit.regression(50)), 8, seed=0),
            loss=kit.mse(),
            learning_schema=LearningSchema.adam(lr=0.05),
        )
        validation = trainer.add_validation(
            DataLoader(wrap(kit.regression(13, seed=1)), 4)
        )
        trainer.train(3)
        return kit.weights(trainer.model), validation.computed_metrics['MSE']

    fast_weights, fast_mse = train(lambda dataset: dataset, 'fast')
    slow_weights, slow_mse = train(Hidden, 'slow')
    assert kit.same_weights(fast_weights, slow_weights)
    assert fast_mse == slow_mse
    initial = kit.weights(kit.linear('initial'))
    assert not kit.same_weights(fast_weights, initial)  # it did train
