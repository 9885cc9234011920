"""Experiments, runs, the active-run scope and model registration, in process."""

from __future__ import annotations

import dataclasses
import gc
import pathlib
import weakref
from typing import NamedTuple, TypeAlias

import pydantic
import pytest
import torch
from torch import nn

from drytorch import Experiment, Model
from drytorch.core import exceptions, registering, scope


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1
    layers: tuple[int, ...] = (4, 2)


class TupleConfig(NamedTuple):
    lr: float = 0.1


class FrozenModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    lr: float = 0.1


class MyExperiment(Experiment[Config]):
    """A subclassed experiment."""


class OtherExperiment(Experiment[Config]):
    """Another experiment class."""


Alias: TypeAlias = Experiment[Config]


def test_name_defaults_to_class_name() -> None:
    assert MyExperiment(Config()).name == 'MyExperiment'
    assert Alias(Config()).name == 'Experiment'
    assert MyExperiment(Config(), name='named').name == 'named'


@pytest.mark.parametrize('par_dir', ['out', pathlib.Path('out')])
def test_par_dir_accepts_str_and_path(par_dir: str | pathlib.Path) -> None:
    experiment = MyExperiment(Config(), par_dir=par_dir)
    assert experiment.par_dir == pathlib.Path('out').resolve()
    assert experiment.par_dir.is_absolute()


@pytest.mark.parametrize('config', [None, Config(), TupleConfig(), FrozenModel()])
def test_accepted_configs(config: object) -> None:
    experiment = Experiment(config, name='configs')
    with experiment.create_run():
        assert Experiment.get_config() is config
    with experiment.create_run(resume=True):
        assert Experiment.get_config() is config


class MutableModel(pydantic.BaseModel):
    lr: float = 0.1


@dataclasses.dataclass
class MutableConfig:
    lr: float = 0.1


def test_mutable_models_are_refused() -> None:
    # Plain containers and dataclasses are frozen as deep copies
    # (tests/compat/test_experiments.py); a model with validators is not ours
    # to copy field by field.
    with pytest.raises(exceptions.ConfigNotImmutableError, match='frozen'):
        Experiment(MutableModel())


@pytest.mark.parametrize('config', [MutableConfig(), {'lr': 0.1}])
def test_mutable_containers_run_on_a_frozen_copy(config: object) -> None:
    experiment = Experiment(config)
    assert experiment.config == config and experiment.config is not config
    with pytest.raises((TypeError, AttributeError)):
        if isinstance(config, dict):
            experiment.config['lr'] = 1.0  # type: ignore[index]
        else:
            experiment.config.lr = 1.0  # type: ignore[attr-defined]


def test_config_cannot_be_replaced() -> None:
    experiment = MyExperiment(Config())
    with pytest.raises(AttributeError):
        experiment.config = Config(lr=1.0)  # type: ignore[misc]


def test_get_config_only_inside_a_run() -> None:
    experiment = MyExperiment(Config(lr=0.5))
    with pytest.raises(exceptions.NoActiveExperimentError, match='get_config'):
        MyExperiment.get_config()
    with experiment.create_run():
        assert MyExperiment.get_config().lr == 0.5
        assert Experiment.get_config() == Config(lr=0.5)
    with pytest.raises(exceptions.NoActiveExperimentError):
        MyExperiment.get_config()


def test_get_config_of_another_experiment_class_is_refused() -> None:
    error = exceptions.AccessOutsideScopeError
    with MyExperiment(Config()).create_run(), pytest.raises(error, match='Other'):
        OtherExperiment.get_config()


def test_one_active_run_per_process() -> None:
    first, second = MyExperiment(Config()), OtherExperiment(Config())
    with first.create_run() as run:
        with pytest.raises(exceptions.RunAlreadyActiveError, match='still active'):
            second.create_run().start()
        with pytest.warns(exceptions.RunAlreadyRunningWarning):
            assert run.start() is run  # the original's warning, nothing else
        assert scope.active_run() is run
    assert scope.active_run() is None


def test_start_stop_without_context_manager() -> None:
    experiment = MyExperiment(Config())
    run = experiment.create_run()
    assert run.status == 'created'
    run.start()
    assert run.is_active and run.status == 'running'
    run.stop()
    with pytest.warns(exceptions.RunAlreadyCompletedWarning):
        run.stop()  # warns (as the original does) and changes nothing
    assert run.status == 'completed'
    assert not run.is_active
    assert experiment.list_runs()[0].status == 'completed'


def test_exception_in_run_marks_it_failed_and_propagates() -> None:
    experiment = MyExperiment(Config())
    with pytest.raises(ZeroDivisionError), experiment.create_run():
        _ = 1 / 0
    (record,) = experiment.list_runs()
    assert record.status == 'failed'
    assert record.data['error'].startswith('ZeroDivisionError')
    assert scope.active_run() is None


def test_explicit_run_id_and_resume_by_id() -> None:
    experiment = MyExperiment(Config())
    with experiment.create_run(run_id='baseline') as run:
        assert run.id == 'baseline'
    with pytest.raises(exceptions.RunAlreadyExistsError, match='resume=True'):
        experiment.create_run(run_id='baseline')
    again = MyExperiment(Config())  # a re-run notebook cell
    with again.create_run(run_id='baseline', resume=True) as resumed:
        assert resumed.id == 'baseline'
    assert [r.id for r in experiment.list_runs()] == ['baseline']
    assert len(experiment.list_runs()[0].data['sessions']) == 2


def test_model_needs_an_active_run() -> None:
    with pytest.raises(exceptions.NoActiveExperimentError, match='Model'):
        Model(nn.Linear(1, 1))


def test_model_registration_and_unique_names() -> None:
    module = nn.Linear(2, 3)
    with MyExperiment(Config()).create_run():
        first = Model(module, device='cpu')
        second = Model(nn.Linear(1, 1))
        named = Model(nn.Linear(1, 1), name='encoder')
        assert first.module is module
        assert (first.name, second.name, named.name) == ('Model', 'Model_1', 'encoder')
        assert first(torch.ones(1, 2)).shape == (1, 3)
        registering.require_registered(first)


def test_module_cannot_move_to_another_run() -> None:
    module = nn.Linear(1, 1)
    with MyExperiment(Config()).create_run():
        model = Model(module)
    with OtherExperiment(Config()).create_run():
        with pytest.raises(exceptions.ModuleAlreadyRegisteredError, match='unregister'):
            Model(module)
        with pytest.raises(exceptions.ModuleNotRegisteredError):
            registering.require_registered(model)


def test_unregistered_module_can_join_another_run() -> None:
    module = nn.Linear(1, 1)
    with MyExperiment(Config()).create_run():
        model = Model(module)
    registering.unregister_model(model)
    with OtherExperiment(Config()).create_run():
        assert Model(module).module is module


def test_resuming_in_process_keeps_models_usable() -> None:
    experiment = MyExperiment(Config())
    with experiment.create_run() as run:
        model = Model(nn.Linear(1, 1))
    with experiment.create_run(resume=True) as resumed:
        assert resumed is run
        registering.require_registered(model)
        assert Model(model.module).module is model.module


def test_ownership_is_weak() -> None:
    gc.collect()
    before = len(registering._owners)
    with MyExperiment(Config()).create_run():
        module = nn.Linear(1, 1)
        Model(module)
        assert registering.owner_of(module) is not None
        assert len(registering._owners) == before + 1
    alive = weakref.ref(module)
    del module
    gc.collect()
    assert alive() is None  # the registry did not keep the module alive
    assert len(registering._owners) <= before


def test_same_name_different_par_dir_are_different_experiments() -> None:
    a = MyExperiment(Config(), name='exp', par_dir='a')
    b = MyExperiment(Config(), name='exp', par_dir='b')
    assert a.key != b.key
    with a.create_run():
        pass
    assert b.list_runs() == []
    assert MyExperiment(Config(), name='exp', par_dir='a').key == a.key


@dataclasses.dataclass(frozen=True)
class FunctionConfig:
    activation: object = dataclasses.field(default_factory=lambda: lambda x: x)


def test_configs_that_cannot_be_recorded_are_refused() -> None:
    with pytest.raises(
        exceptions.ConfigNotRecordableError, match=r'config\.activation'
    ):
        Experiment(FunctionConfig())
    assert Experiment(FunctionConfig(activation='relu')).config.activation == 'relu'
