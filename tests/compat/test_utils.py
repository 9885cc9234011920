"""The original DRYTorch's ``utils``: apply_ops, averages, local_ops, repr_utils.

Written from ``shared/spec/original-api.md`` (the ``utils`` table): each test
names the row it covers.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Any

import pytest
import torch

from drytorch.core.exceptions import (
    FuncNotApplicableError,
    InvalidNameError,
    NamedTupleOnlyError,
    RecursionWarning,
    UnsafePathError,
)
from drytorch.utils import apply_ops, averages, local_ops, repr_utils
from tests import training_kit as kit

Pair = collections.namedtuple('Pair', ['first', 'second'])


@dataclasses.dataclass
class Batch:
    inputs: torch.Tensor
    labels: list[torch.Tensor]


class PlainTuple(tuple[Any, ...]):
    pass


# --- utils.apply_ops.apply ----------------------------------------------------


def test_apply_rebuilds_every_container() -> None:
    data: dict[str, Any] = {
        'list': [torch.ones(1), (torch.ones(2),)],
        'pair': Pair(torch.ones(1), torch.zeros(1)),
        'batch': Batch(torch.ones(1), [torch.ones(1)]),
    }
    doubled = apply_ops.apply(data, torch.Tensor, lambda t: 2 * t)
    assert doubled['list'][0].item() == 2.0
    assert isinstance(doubled['list'][1], tuple)
    assert doubled['list'][1][0].tolist() == [2.0, 2.0]
    pair = doubled['pair']
    assert isinstance(pair, Pair)
    assert pair.first.item() == 2.0
    assert isinstance(doubled['batch'], Batch)
    assert doubled['batch'].labels[0].item() == 2.0
    assert Pair(*data['pair']).first.item() == 1.0  # the input is left alone


def test_apply_refuses_other_leaves_and_plain_tuple_subclasses() -> None:
    with pytest.raises(FuncNotApplicableError, match='str'):
        apply_ops.apply([torch.ones(1), 'text'], torch.Tensor, torch.neg)
    with pytest.raises(NamedTupleOnlyError, match='PlainTuple'):
        apply_ops.apply(PlainTuple([torch.ones(1)]), torch.Tensor, torch.neg)


def test_apply_to_and_apply_cpu_detach_move_tensors_and_keep_the_rest() -> None:
    weight = torch.ones(2, requires_grad=True)
    data: dict[str, Any] = {'x': Pair(weight * 2, 3), 'name': 'kept'}
    moved = apply_ops.apply_to(data, 'cpu')
    assert moved['x'].first.device.type == 'cpu'
    assert moved['x'].second == 3
    assert moved['name'] == 'kept'
    detached = apply_ops.apply_cpu_detach(data)
    assert not detached['x'].first.requires_grad
    assert data['x'].first.requires_grad
    with pytest.raises(NamedTupleOnlyError):
        apply_ops.apply_to(PlainTuple([torch.ones(1)]), 'cpu')


# --- utils.averages -----------------------------------------------------------


def test_moving_average_weighs_recent_values_more() -> None:
    average = averages.get_moving_average(decay=0.5, mass_coverage=0.99)
    assert average([4.0]) == 4.0
    assert average([0.0, 3.0]) == pytest.approx(2.0)  # (0.5 * 0 + 3) / 1.5
    window = averages.get_moving_average(decay=0.5, mass_coverage=0.7)  # 2 values
    assert window([100.0, 0.0, 3.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match='decay'):
        averages.get_moving_average(decay=1.0)
    with pytest.raises(ValueError, match='mass_coverage'):
        averages.get_moving_average(mass_coverage=0)


def test_trailing_mean_reads_the_window() -> None:
    mean = averages.get_trailing_mean(2)
    assert mean([1.0, 2.0, 4.0]) == 3.0
    assert mean([5.0]) == 5.0
    with pytest.raises(ValueError, match='at least 1'):
        averages.get_trailing_mean(0)


# --- utils.local_ops ----------------------------------------------------------


def _experiment_with_outputs(name: str) -> pathlib.Path:
    """Run an experiment that saves a checkpoint; return its par_dir."""
    experiment = kit.experiment(name)
    with experiment.create_run(run_id='r'):
        trainer = kit.trainer(n=8)
        trainer.train(1)
        trainer.save_checkpoint()
    folder = experiment.par_dir / 'checkpoints' / name
    assert any(folder.rglob('*')), 'the run saved nothing'
    return experiment.par_dir


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file())


def test_clone_rename_and_delete_experiment_data() -> None:
    par_dir = _experiment_with_outputs('alpha')
    kinds = sorted(p.parent.name for p in par_dir.glob('*/alpha'))
    assert 'checkpoints' in kinds
    original = _files(par_dir / 'checkpoints' / 'alpha')
    cloned = local_ops.clone_experiment_data(par_dir, 'alpha', 'beta')
    assert cloned == [par_dir / kind / 'beta' for kind in kinds]
    assert _files(par_dir / 'checkpoints' / 'beta') == original
    renamed = local_ops.rename_experiment_data(par_dir, 'beta', 'gamma')
    assert renamed == [par_dir / kind / 'gamma' for kind in kinds]
    assert not list(par_dir.glob('*/beta'))
    assert _files(par_dir / 'checkpoints' / 'gamma') == original
    with pytest.raises(FileExistsError):
        local_ops.rename_experiment_data(par_dir, 'gamma', 'alpha')
    deleted = local_ops.delete_experiment_data(par_dir, 'gamma')
    assert deleted == renamed
    assert not list(par_dir.glob('*/gamma'))
    assert _files(par_dir / 'checkpoints' / 'alpha') == original
    assert local_ops.delete_experiment_data(par_dir, 'never') == []


def test_local_ops_refuse_unsafe_names_and_links(tmp_path: pathlib.Path) -> None:
    par_dir = tmp_path / 'outputs'
    outside = tmp_path / 'elsewhere'
    (outside / 'keep').mkdir(parents=True)
    (outside / 'keep' / 'file.txt').write_text('precious')
    (par_dir / 'csv').mkdir(parents=True)
    os.symlink(outside / 'keep', par_dir / 'csv' / 'linked')
    with pytest.raises(UnsafePathError, match='symbolic link'):
        local_ops.delete_experiment_data(par_dir, 'linked')
    assert (outside / 'keep' / 'file.txt').read_text() == 'precious'
    with pytest.raises(InvalidNameError):
        local_ops.delete_experiment_data(par_dir, '../elsewhere')
    with pytest.raises(InvalidNameError):
        local_ops.clone_experiment_data(par_dir, 'linked', '..')
    with pytest.raises(FileNotFoundError):
        local_ops.delete_experiment_data(tmp_path / 'missing', 'exp')


# --- utils.repr_utils ---------------------------------------------------------


@dataclasses.dataclass
class Config:
    lr: float
    layers: list[int]


class Holder:
    def __init__(self) -> None:
        self.config = Config(0.1, [1, 2])
        self.tensor = torch.zeros(2, 3)
        self._private = 'hidden'

    @property
    def doubled(self) -> float:
        return 2 * self.config.lr


def test_recursive_repr_describes_nested_objects() -> None:
    described = repr_utils.recursive_repr(Holder())
    assert described == {
        'class': 'Holder',
        'config': {'class': 'Config', 'lr': 0.1, 'layers': [1, 2]},
        'tensor': 'Tensor(shape=(2, 3), dtype=torch.float32)',
    }


def test_recursive_repr_limits_size_and_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    assert repr_utils.MAX_DEPTH == 10
    assert repr_utils.MAX_REPR_SIZE == 10
    assert repr_utils.INCLUDE_PROPERTIES is False
    long = repr_utils.recursive_repr(list(range(15)))
    assert long == [*range(10), '... (5 more)']
    nested = repr_utils.recursive_repr({'a': {'b': [1]}}, depth=1)
    assert nested == {'a': "{'b': [1]}"}
    monkeypatch.setattr(repr_utils, 'MAX_REPR_SIZE', 2)
    assert repr_utils.recursive_repr({'x': 1, 'y': 2, 'z': 3}) == {
        'x': 1,
        'y': 2,
        '...': '1 more',
    }
    monkeypatch.setattr(repr_utils, 'MAX_REPR_SIZE', 10)
    monkeypatch.setattr(repr_utils, 'INCLUDE_PROPERTIES', True)
    assert repr_utils.recursive_repr(Holder())['doubled'] == 0.2


def test_recursive_repr_cuts_cycles() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.warns(RecursionWarning):
        described = repr_utils.recursive_repr(looped)
    assert described == [1, '<recursion: list>']
