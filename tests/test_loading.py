"""DataLoader: modes, lengths, splitting, collation and reproducible shuffling."""

from __future__ import annotations

import io
from typing import Any, NamedTuple

import pytest
import torch
from torch.utils import data

from drytorch.core.exceptions import LoaderError
from drytorch.lib.loading import DataLoader


def make_dataset(n: int = 10) -> data.TensorDataset:
    inputs = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return data.TensorDataset(inputs, torch.arange(n))


def order(loader: DataLoader[Any]) -> list[int]:
    """The targets (sample indices) in the order one epoch visits them."""
    return [int(t) for _, targets in loader for t in targets]


def test_attributes_and_repr() -> None:
    dataset = make_dataset()
    loader = DataLoader(dataset, 4)
    assert loader.dataset is dataset
    assert loader.batch_size == 4
    assert (
        repr(loader) == 'DataLoader(dataset=TensorDataset, n_samples=10, batch_size=4)'
    )


def test_training_shuffles_and_drops_the_last_batch() -> None:
    loader = DataLoader(make_dataset(10), 3, seed=0)
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3
    assert all(inputs.shape == (3, 1) for inputs, _ in batches)
    first = order(loader)
    assert len(set(first)) == 9
    assert first != sorted(first)  # shuffled
    # Each epoch draws a new permutation.
    epochs = [order(loader) for _ in range(4)]
    assert len({tuple(epoch) for epoch in epochs}) > 1
    assert loader.epoch == 6  # list(), first and four more


def test_inference_keeps_order_and_every_sample() -> None:
    loader = DataLoader(make_dataset(10), 3, seed=0)
    with torch.inference_mode():
        assert len(loader) == 4
        batches = list(loader)
        assert order(loader) == list(range(10))
    assert [len(targets) for _, targets in batches] == [3, 3, 3, 1]
    assert loader.epoch == 0  # evaluation does not consume an epoch
    assert len(loader) == 3  # back in training


def test_inference_does_not_shift_the_shuffling() -> None:
    plain = DataLoader(make_dataset(12), 4, seed=3)
    evaluated = DataLoader(make_dataset(12), 4, seed=3)
    expected = [order(plain) for _ in range(2)]
    got = []
    for _ in range(2):
        with torch.inference_mode():
            list(evaluated)
        got.append(order(evaluated))
    assert got == expected


def test_get_loader_returns_the_torch_loaders() -> None:
    loader = DataLoader(make_dataset(7), 2)
    train, inference = loader.get_loader(False), loader.get_loader(True)
    assert isinstance(train, data.DataLoader)
    assert train.drop_last and not inference.drop_last
    assert len(train) == 3 and len(inference) == 4
    assert loader.get_loader(False) is train  # built once


def test_seed_makes_shuffling_reproducible() -> None:
    a = DataLoader(make_dataset(20), 5, seed=7)
    b = DataLoader(make_dataset(20), 5, seed=7)
    c = DataLoader(make_dataset(20), 5, seed=8)
    assert [order(a) for _ in range(3)] == [order(b) for _ in range(3)]
    assert order(DataLoader(make_dataset(20), 5, seed=7)) != order(c)


def test_global_seed_makes_default_shuffling_reproducible() -> None:
    torch.manual_seed(123)
    a = DataLoader(make_dataset(20), 5)
    torch.rand(3)  # later global draws do not affect the loader
    first = [order(a) for _ in range(2)]
    torch.manual_seed(123)
    b = DataLoader(make_dataset(20), 5)
    assert a.seed == b.seed
    assert [order(b) for _ in range(2)] == first


def test_sampler_state_restores_the_next_epoch() -> None:
    loader = DataLoader(make_dataset(16), 4, seed=1)
    order(loader)
    state = loader.sampler_state()
    assert state == {'epoch': 1, 'seed': 1}  # each epoch's order derives from them
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored_state = torch.load(buffer, weights_only=True)
    expected = order(loader)

    resumed = DataLoader(make_dataset(16), 4, seed=99)
    resumed.load_sampler_state(restored_state)
    assert resumed.epoch == 1
    assert order(resumed) == expected
    assert resumed.epoch == 2


def test_sampler_state_is_a_copy() -> None:
    loader = DataLoader(make_dataset(16), 4, seed=1)
    state = loader.sampler_state()
    expected = order(loader)
    order(loader)
    loader.load_sampler_state(state)
    assert order(loader) == expected


def test_invalid_sampler_state_is_refused() -> None:
    loader = DataLoader(make_dataset(), 2)
    with pytest.raises(LoaderError, match=r"lacks \['epoch'\]"):
        loader.load_sampler_state({'seed': 1})
    with pytest.raises(LoaderError, match='cannot be restored'):
        loader.load_sampler_state({'epoch': 'one'})
    with pytest.raises(LoaderError, match='cannot be restored'):
        loader.load_sampler_state({'epoch': 1, 'seed': 2.5})
    with pytest.raises(LoaderError, match='negative epoch'):
        loader.load_sampler_state({'epoch': -1})


def test_a_state_of_the_first_format_restores_epoch_and_seed() -> None:
    loader = DataLoader(make_dataset(16), 4, seed=5)
    expected = [order(loader) for _ in range(3)][1:]
    resumed = DataLoader(make_dataset(16), 4, seed=8)
    resumed.load_sampler_state(
        {'generator_state': torch.zeros(3, dtype=torch.uint8), 'epoch': 1, 'seed': 5}
    )
    assert [order(resumed) for _ in range(2)] == expected


def test_the_first_epoch_follows_a_torch_loader_with_the_same_seed() -> None:
    # a TensorDataset: the fast path, batch for batch as the torch loader
    dataset = make_dataset(20)
    torch_loader = data.DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(7),
    )
    first = [int(t) for _, targets in torch_loader for t in targets]
    assert order(DataLoader(dataset, 4, seed=7)) == first


def test_an_epoch_resumes_after_its_trained_batches() -> None:
    loader = DataLoader(make_dataset(18), 4, seed=3)  # 4 batches, 2 samples dropped
    order(loader)
    iterator = iter(loader)
    start = loader.epoch_start_state()
    trained = [next(iterator) for _ in range(2)]
    rest = [batch for batch in iterator]
    following = order(loader)
    assert start['epoch'] == 1 and loader.epoch_start_state()['epoch'] == 2

    resumed = DataLoader(make_dataset(18), 4, seed=99)
    resumed.load_sampler_state(start, skip_batches=2)
    assert len(resumed) == 4  # the length of an epoch, whole
    again = list(resumed)
    assert len(trained) + len(again) == 4
    for (inputs, targets), (inputs_again, targets_again) in zip(
        rest, again, strict=True
    ):
        assert torch.equal(inputs, inputs_again)
        assert torch.equal(targets, targets_again)
    assert order(resumed) == following  # later epochs are whole
    assert resumed.epoch == loader.epoch


def test_epoch_start_state_before_training_and_in_inference() -> None:
    loader = DataLoader(make_dataset(8), 4, seed=3)
    assert loader.epoch_start_state()['epoch'] == 0
    order(loader)
    with torch.inference_mode():
        order(loader)  # evaluation starts no training epoch
    assert loader.epoch_start_state()['epoch'] == 0
    loader.load_sampler_state(loader.epoch_start_state(), skip_batches=2)
    assert list(loader) == []  # every batch was trained: nothing is left
    assert len(order(loader)) == 8


@pytest.mark.parametrize('skip', [-1, 3, True, 1.0])
def test_invalid_skips_are_refused(skip: Any) -> None:
    loader = DataLoader(make_dataset(10), 4)
    with pytest.raises(LoaderError, match='skip_batches must be an int from 0 to 2'):
        loader.load_sampler_state(loader.sampler_state(), skip_batches=skip)


class EmptyTuple(NamedTuple):
    pass


class Pair(NamedTuple):
    left: torch.Tensor
    right: torch.Tensor


class ItemDataset(data.Dataset[tuple[Any, Any]]):
    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self.items = items

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def test_empty_named_tuple_inputs() -> None:
    dataset = ItemDataset([(EmptyTuple(), torch.tensor(float(i))) for i in range(5)])
    loader = DataLoader(dataset, 2)
    with torch.inference_mode():
        batches = list(loader)
    assert [inputs for inputs, _ in batches] == [EmptyTuple()] * 3
    assert torch.equal(batches[0][1], torch.tensor([0.0, 1.0]))
    assert len(list(loader)) == 2


def test_named_tuple_and_list_inputs() -> None:
    items = [
        ((Pair(torch.full((2,), i), torch.tensor(i)), [torch.tensor(i)]), i)
        for i in range(4)
    ]
    loader = DataLoader(ItemDataset(items), 2)
    with torch.inference_mode():
        (pair, listed), targets = next(iter(loader))
    assert isinstance(pair, Pair)
    assert torch.equal(pair.left, torch.tensor([[0, 0], [1, 1]]))
    assert torch.equal(pair.right, torch.tensor([0, 1]))
    assert torch.equal(listed[0], torch.tensor([0, 1]))
    assert torch.equal(targets, torch.tensor([0, 1]))


def test_workers_keep_order_and_reproducibility() -> None:
    a = DataLoader(make_dataset(8), 4, n_workers=1, seed=5)
    b = DataLoader(make_dataset(8), 4, seed=5)
    assert order(a) == order(b)
    with torch.inference_mode():
        assert order(a) == list(range(8))


def test_pin_memory_without_accelerator_is_quiet(
    recwarn: pytest.WarningsRecorder,
) -> None:
    loader = DataLoader(make_dataset(4), 2, pin_memory=True)
    assert len(list(loader)) == 2
    assert not [w for w in recwarn if 'pin_memory' in str(w.message)]


def test_split_is_disjoint_complete_and_reproducible() -> None:
    loader = DataLoader(make_dataset(10), 2, seed=0)
    train, val = loader.split(0.25, seed=4)
    assert isinstance(train, DataLoader) and isinstance(val, DataLoader)
    assert train.batch_size == val.batch_size == 2
    with torch.inference_mode():
        train_ids, val_ids = order(train), order(val)
    assert len(val_ids) == round(0.25 * 10) == 2
    assert sorted(train_ids + val_ids) == list(range(10))
    again_train, again_val = loader.split(0.25, seed=4)
    with torch.inference_mode():
        assert order(again_val) == val_ids
        assert order(again_train) == train_ids
    assert order(again_train) == order(train)  # same shuffling, too
    other = {
        tuple(sorted(order_in_inference(loader.split(0.25, seed=s)[1])))
        for s in range(6)
    }
    assert len(other) > 1


def order_in_inference(loader: DataLoader[Any]) -> list[int]:
    with torch.inference_mode():
        return order(loader)


def test_split_without_shuffle_takes_the_last_samples() -> None:
    train, val = DataLoader(make_dataset(10), 3).split(0.3, shuffle=False)
    assert order_in_inference(train) == list(range(7))
    assert order_in_inference(val) == [7, 8, 9]


def test_split_uses_the_global_seed_by_default() -> None:
    loader = DataLoader(make_dataset(10), 3)
    torch.manual_seed(0)
    first = order_in_inference(loader.split()[1])
    torch.manual_seed(0)
    assert order_in_inference(loader.split()[1]) == first


@pytest.mark.parametrize('fraction', [0.0, 1.0, -0.1, 1.5])
def test_split_refuses_fractions_outside_the_interval(fraction: float) -> None:
    with pytest.raises(LoaderError, match=r'must be in \(0, 1\)'):
        DataLoader(make_dataset(), 2).split(fraction)


@pytest.mark.parametrize(
    ('fraction', 'sides'), [(0.04, '10 training and 0'), (0.96, '0 training and 10')]
)
def test_split_refuses_an_empty_side(fraction: float, sides: str) -> None:
    with pytest.raises(LoaderError, match=f'gives {sides} validation samples'):
        DataLoader(make_dataset(10), 2).split(fraction)


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'batch_size': 0}, 'batch_size must be at least 1, got 0'),
        ({'batch_size': -3}, 'batch_size must be at least 1, got -3'),
        ({'batch_size': 2.0}, 'batch_size must be an integer, got 2.0'),
        ({'batch_size': 2, 'n_workers': -1}, 'n_workers must be 0'),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LoaderError, match=message):
        DataLoader(make_dataset(), **kwargs)


def test_unsized_and_empty_datasets_are_refused() -> None:
    class Stream(data.IterableDataset[int]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield 1

    with pytest.raises(LoaderError, match='Stream does not'):
        DataLoader(Stream(), 2)
    with pytest.raises(LoaderError, match='The dataset is empty'):
        DataLoader(make_dataset(0), 2)
