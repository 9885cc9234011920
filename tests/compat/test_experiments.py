"""The original DRYTorch's experiments, runs, configs and init modes work on ours.

Written from ``shared/spec/original-api.md``: the rows of ``core.experimenting``,
the package root (``INIT_MODE``, ``init_trackers``) and the Behaviours
"Configs", "Init modes", "Run ids" and "Experiment names". Real runs in the
test's temporary registry.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import pathlib
import pickle
import re
import textwrap
from typing import Any

import pydantic
import pytest
from omegaconf import DictConfig, OmegaConf

import drytorch
from drytorch import Experiment, hookimpl
from drytorch.core import exceptions, registry, snapshot
from drytorch.core.experiment import Run
from drytorch.validators.config import FrozenDict
from tests.conftest import run_python


@dataclasses.dataclass
class MutableConfig:
    lr: float = 0.1
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    lr: float = 0.1


class MyExperiment(Experiment[Any]):
    """A subclass, as the original's tutorials write them."""


class OtherExperiment(Experiment[Any]):
    """Another experiment class."""


def recorded_config(exp: Experiment[Any], run_id: str) -> Any:
    return exp.registry.read(exp.key, run_id).config


# Behaviours: Configs (Experiment(config) accepts any plain config)


def test_dict_config_is_a_frozen_deep_copy() -> None:
    original: dict[str, Any] = {
        'lr': 0.1,
        'layers': [1, 2],
        'opt': {'betas': [0.9, 0.99]},
    }
    exp: Experiment[Any] = Experiment(original, name='dict')
    original['lr'] = 5.0
    original['layers'].append(3)
    original['opt']['betas'][0] = 0.0
    with exp.create_run('r'):
        config: Any = Experiment.get_config()
    assert config is exp.config
    assert isinstance(config, FrozenDict) and isinstance(config, dict)
    assert config['lr'] == 0.1 and config['layers'] == (1, 2)
    assert config['opt']['betas'] == (0.9, 0.99)
    with pytest.raises(TypeError):
        config['lr'] = 1.0
    assert recorded_config(exp, 'r') == {
        'lr': 0.1,
        'layers': [1, 2],
        'opt': {'betas': [0.9, 0.99]},
    }


def test_frozen_dict_equals_copies_and_pickles() -> None:
    original = {'lr': 0.1, 'layers': [1, 2], 'c': MutableConfig()}
    config: Any = Experiment(original, name='frozen-dict').config
    assert config == original
    assert (config != original) is False
    assert json.loads(json.dumps({k: config[k] for k in ('lr', 'layers')})) == {
        'lr': 0.1,
        'layers': [1, 2],
    }
    for again in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert again == config and isinstance(again, FrozenDict)
        assert isinstance(again['c'], MutableConfig)
        with pytest.raises(dataclasses.FrozenInstanceError):
            again['c'].lr = 1.0
    with pytest.raises(TypeError, match='frozen copy'):
        config.update(lr=1.0)
    with pytest.raises(TypeError, match='frozen copy'):
        config.pop('lr')
    with pytest.raises(TypeError, match='frozen copy'):
        config.setdefault('new', 1)
    with pytest.raises(TypeError, match='frozen copy'):
        config.clear()
    assert hash(config) == hash(copy.deepcopy(config))


def test_dict_config_resumes_by_value() -> None:
    exp = Experiment({'lr': 0.1, 'tags': ['a']}, name='by-value')
    with exp.create_run('r'):
        pass
    same = Experiment({'lr': 0.1, 'tags': ['a']}, name='by-value')
    with same.create_run('r', resume=True) as run:
        assert run.resumed
    changed = Experiment({'lr': 0.2, 'tags': ['a']}, name='by-value')
    with pytest.raises(exceptions.ConfigMismatchError):
        changed.create_run('r', resume=True)


def test_frozen_copy_records_like_the_original() -> None:
    original = {'a': [1, {'b': {3, 1}}], 'c': MutableConfig()}
    exp = Experiment(original, name='hash')
    assert snapshot.config_hash(exp.config) == snapshot.config_hash(original)


def test_mutable_dataclass_config_is_a_frozen_view() -> None:
    original = MutableConfig()
    exp = MyExperiment(original, name='dataclass')
    original.lr = 9.0
    original.layers.append(3)
    with exp.create_run('r'):
        config = MyExperiment.get_config()
    assert isinstance(config, MutableConfig)
    assert config == MutableConfig(lr=0.1, layers=[1, 2])
    assert tuple(config.layers) == (1, 2) and isinstance(config.layers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    assert type(config).__qualname__ == 'MutableConfig'
    record = exp.registry.read(exp.key, 'r')
    assert record.data['config_class'].endswith('.MutableConfig')
    assert record.config == {'lr': 0.1, 'layers': [1, 2]}
    changed = dataclasses.replace(config, lr=0.5)
    assert changed.lr == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.lr = 2.0


@pytest.mark.parametrize(
    ('config', 'frozen'),
    [([1, [2, 3]], (1, (2, 3))), ({1, 2}, frozenset({1, 2}))],
    ids=['list', 'set'],
)
def test_list_and_set_configs_are_frozen(config: Any, frozen: Any) -> None:
    exp = Experiment(config, name='containers')
    assert exp.config == frozen and type(exp.config) is type(frozen)
    with exp.create_run():
        assert Experiment.get_config() == frozen


def test_writable_dictconfig_is_a_read_only_copy() -> None:
    cfg = OmegaConf.create({'lr': 0.1, 'model': {'layers': [1, 2]}})
    exp: Experiment[Any] = Experiment(cfg, name='hydra-writable')
    cfg.lr = 0.5  # the user's object stays writable, and apart
    with exp.create_run('r'):
        config: Any = Experiment.get_config()
    assert isinstance(config, DictConfig) and config is not cfg
    assert config.lr == 0.1
    assert OmegaConf.is_readonly(config)
    with pytest.raises(Exception, match='read-only'):
        config.model.layers.append(3)
    assert recorded_config(exp, 'r') == {'lr': 0.1, 'model': {'layers': [1, 2]}}


def test_dictconfig_with_a_writable_node_is_frozen_all_the_way() -> None:
    cfg = OmegaConf.create({'model': {'layers': [1, 2]}})
    OmegaConf.set_readonly(cfg, True)
    OmegaConf.set_readonly(cfg.model.layers, False)
    config = Experiment(cfg, name='node').config
    assert OmegaConf.is_readonly(config.model.layers)
    cfg.model.layers.append(3)  # still the user's to change
    assert list(config.model.layers) == [1, 2]


def test_frozen_configs_are_kept_as_they_are() -> None:
    config = FrozenConfig()
    assert Experiment(config, name='frozen').config is config


def test_unrecordable_configs_are_still_refused() -> None:
    with pytest.raises(exceptions.ConfigNotRecordableError, match='cannot be'):
        Experiment({'activation': object()}, name='bad')


def test_mutable_pydantic_config_is_still_refused() -> None:
    class Model(pydantic.BaseModel):
        lr: float = 0.1

    with pytest.raises(exceptions.ConfigNotImmutableError, match='frozen'):
        Experiment(Model(), name='pydantic')


def test_validate_config_plugins_see_the_frozen_copy(host: Any) -> None:
    seen: list[Any] = []

    class Validator:
        @hookimpl
        def validate_config(self, config: Any) -> None:
            seen.append(config)

    host.register(Validator(), 'my-validator')
    exp = Experiment({'lr': 0.1}, name='validated')
    assert seen == [exp.config]
    assert isinstance(seen[0], FrozenDict)


# core.experimenting: Experiment


def test_experiment_tags_read_as_a_list() -> None:
    exp = Experiment(None, name='tagged', tags=['a', 'b'])
    assert exp.tags == ['a', 'b'] and exp.tags == ('a', 'b')
    assert list(exp.tags) == ['a', 'b']
    assert Experiment(None, name='untagged', tags=None).tags == []


def test_get_current_is_the_experiment_of_the_active_run() -> None:
    exp = MyExperiment(None, name='current')
    with pytest.raises(exceptions.NoActiveExperimentError, match='get_current'):
        Experiment.get_current()
    with exp.create_run():
        assert Experiment.get_current() is exp
        assert MyExperiment.get_current() is exp
        with pytest.raises(exceptions.AccessOutsideScopeError):
            OtherExperiment.get_current()
    with pytest.raises(exceptions.NoActiveExperimentError):
        MyExperiment.get_current()


def test_set_current_accepts_only_the_active_runs_experiment() -> None:
    exp, other = MyExperiment(None, name='set'), OtherExperiment(None, name='no')
    with pytest.raises(exceptions.NoActiveExperimentError):
        Experiment.set_current(exp)
    with exp.create_run():
        Experiment.set_current(exp)
        Experiment.set_current(MyExperiment(None, name='set'))  # the same one
        with pytest.raises(exceptions.NestedScopeError):
            Experiment.set_current(other)
        assert Experiment.get_current() is exp


def test_experiment_run_is_its_active_run() -> None:
    exp, other = Experiment(None, name='mine'), Experiment(None, name='theirs')
    with pytest.raises(exceptions.NoActiveExperimentError):
        _ = exp.run
    with exp.create_run() as run:
        assert exp.run is run
        with pytest.raises(exceptions.NoActiveExperimentError):
            _ = other.run
    with pytest.raises(exceptions.NoActiveExperimentError):
        _ = exp.run


def test_create_run_record_false_keeps_the_run_out_of_the_registry() -> None:
    exp = Experiment(None, name='unrecorded')
    run = exp.create_run(record=False)
    assert not run.in_registry and exp.create_run('kept').in_registry
    with run:
        assert Experiment.get_current() is exp
        assert [listed.id for listed in exp.list_runs()] == ['kept']
    assert run.status == 'completed'
    assert [listed.id for listed in exp.list_runs()] == ['kept']
    assert not exp.registry.record_path(exp.key, run.id).exists()
    with pytest.raises(exceptions.RunNotFoundError):
        run.start()  # not recorded: it cannot be started (resumed) again


def test_record_false_cannot_resume() -> None:
    exp = Experiment(None, name='unrecorded-resume')
    with pytest.raises(ValueError, match='record=False'):
        exp.create_run(resume=True, record=False)


def test_resume_with_no_previous_run_warns_no_previous_runs() -> None:
    exp = Experiment(None, name='first')
    with pytest.warns(exceptions.NoPreviousRunsWarning):
        run = exp.create_run(resume=True)
    with run:
        assert not run.resumed


# core.experimenting: Run


def test_run_resumed_created_at_and_created_at_str() -> None:
    exp = Experiment(None, name='attrs')
    before = registry.now().replace(microsecond=0)
    with exp.create_run('r') as run:
        assert run.resumed is False and run.in_registry
    assert isinstance(run.created_at, datetime.datetime)
    assert run.created_at >= before
    assert re.fullmatch(r'\d{4}-\d\d-\d\d@\d\dh\d\dm\d\ds', run.created_at_str)
    with exp.create_run('r', resume=True) as again:
        assert again.resumed is True
        assert again.created_at == run.created_at


def test_run_add_tags_writes_the_record() -> None:
    exp = Experiment(None, name='run-tags', tags=['exp'])
    with exp.create_run('r') as run:
        run.add_tags('best', 'seed-1')
        run.add_tags(['seed-1', 'again'])
    assert exp.registry.read(exp.key, 'r').data['tags'] == [
        'exp',
        'best',
        'seed-1',
        'again',
    ]
    assert [listed.id for listed in exp.list_runs(tags='best')] == ['r']


def test_start_of_a_running_run_warns_and_keeps_it() -> None:
    exp = Experiment(None, name='twice')
    with exp.create_run() as run:
        with pytest.warns(exceptions.RunAlreadyRunningWarning):
            assert run.start() is run
        assert run.is_active()
    assert run.status == 'completed'


def test_stop_of_a_run_not_started_or_completed_warns() -> None:
    exp = Experiment(None, name='stops')
    run = exp.create_run()
    with pytest.warns(exceptions.RunNotStartedWarning):
        run.stop()
    assert str(run.status) == 'created'
    run.start()
    run.stop()
    with pytest.warns(exceptions.RunAlreadyCompletedWarning):
        run.stop()
    assert run.status == 'completed'


def test_starting_a_run_of_another_experiment_raises_nested_scope() -> None:
    first, second = Experiment(None, name='one'), Experiment(None, name='two')
    with first.create_run():
        with pytest.raises(exceptions.NestedScopeError):
            second.create_run().start()
        with pytest.raises(exceptions.RunAlreadyActiveError):  # ours, too
            second.create_run().start()
        with pytest.raises(exceptions.RunAlreadyActiveError):  # same experiment
            first.create_run().start()


def test_run_is_active_works_as_method_and_property() -> None:
    with Experiment(None, name='active').create_run() as run:
        assert run.is_active() is True and run.is_active
    assert run.is_active() is False and not run.is_active
    assert isinstance(run, Run)


# Behaviours: run ids, experiment names (D: ours)


def test_default_run_id_is_a_timestamp() -> None:
    run = Experiment(None, name='ids').create_run()
    assert re.fullmatch(r'\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?', run.id)


def test_same_name_and_par_dir_is_the_same_experiment(tmp_path: pathlib.Path) -> None:
    with Experiment(None, name='same', par_dir=tmp_path / 'a').create_run('r'):
        pass
    again = Experiment(None, name='same', par_dir=tmp_path / 'a')
    elsewhere = Experiment(None, name='same', par_dir=tmp_path / 'b')
    assert [run.id for run in again.list_runs()] == ['r']
    assert list(elsewhere.list_runs()) == []


# drytorch package root: INIT_MODE and init_trackers modes (a fresh interpreter)


INIT_CODE = textwrap.dedent(
    """
    import sys
    import drytorch
    mode = drytorch.INIT_MODE
    assert 'torch' not in sys.modules, 'INIT_MODE imported torch'
    from drytorch import Experiment
    exp = Experiment(None, name='tutorial')
    run = exp.create_run()
    run.start()
    run.stop()
    print('MODE', mode, exp.trackers.names)
    """
)


@pytest.mark.parametrize('mode', ['standard', 'minimal', 'none'])
def test_init_mode_from_the_environment(tmp_path: pathlib.Path, mode: str) -> None:
    done = run_python(INIT_CODE, tmp_path, {'DRYTORCH_INIT_MODE': mode}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f'MODE {mode} ')
    if mode == 'standard':
        assert 'Running experiment: tutorial.' in done.stderr
    else:  # minimal: a silent logger and a bar over the epochs; none: nothing
        assert done.stderr == ''
    assert not (tmp_path / 'metadata').exists() or mode == 'standard'


def test_init_mode_defaults_to_standard(tmp_path: pathlib.Path) -> None:
    code = (
        'import os; os.environ.pop("DRYTORCH_INIT_MODE", None); '
        'import drytorch; print(drytorch.INIT_MODE)'
    )
    done = run_python(code, tmp_path, timeout=60)
    assert done.stdout.strip() == 'standard', done.stderr


def test_minimal_mode_in_process_prints_no_line(capsys: Any) -> None:
    drytorch.init_trackers('minimal')
    exp = Experiment(None, name='quiet')
    assert exp.trackers.names == ['BuiltinLogger', 'TqdmLogger']
    with exp.create_run():
        pass
    with exp.create_run(resume=True):
        pass
    captured = capsys.readouterr()
    assert captured.err == '' and captured.out == ''
    assert not (exp.par_dir / 'metadata').exists()


def test_init_trackers_unknown_mode_is_refused() -> None:
    with pytest.raises(exceptions.SettingsError, match='loud'):
        drytorch.init_trackers('loud')
