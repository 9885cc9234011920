"""TomlDumper: config, architecture and runner files, kept safe across resumes."""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib
import warnings
from typing import Any

import pytest
import tomli_w
from torch import nn

from drytorch import DataLoader, Experiment, Model, Test, testing
from drytorch.core import exceptions, plugins
from drytorch.trackers.toml import TomlDumper, file_name
from tests import training_kit as kit


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.05
    layers: tuple[int, ...] = (3, 1)
    note: str | None = None


def experiment(tracker: TomlDumper) -> Experiment[Config]:
    """A fresh experiment object (the same experiment each time) with ``tracker``."""
    exp = Experiment(Config(), name='exp', par_dir='.')
    exp.trackers.remove_all()
    exp.trackers.subscribe(tracker)
    return exp


def read(path: pathlib.Path) -> dict[str, Any]:
    with path.open('rb') as file:
        return tomllib.load(file)


def run_all(exp: Experiment[Config], *, test_batch: int = 4) -> None:
    """Train a model with validation and test it, in run ``r`` (resumed if recorded)."""
    with exp.create_run(run_id='r', resume=True):
        trainer = kit.trainer(kit.linear('net'))
        trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
        trainer.train(1)
        loader = DataLoader(kit.regression(8), test_batch)
        Test(trainer.model, loader=loader, metric=kit.mse())()


@pytest.fixture
def recorder(host: plugins.PluginHost) -> testing.HookRecorder:
    rec = testing.HookRecorder()
    host.register(rec, 'rec')
    return rec


def test_a_run_writes_config_architecture_and_runners(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', exceptions.DryTorchWarning)  # new run
        run_all(experiment(TomlDumper()))
    folder = pathlib.Path.cwd() / 'metadata' / 'exp' / 'r'
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*')) == [
        'config.toml',
        'net',
        'net/Test.toml',
        'net/Trainer.toml',
        'net/Validation.toml',
        'net/architecture.toml',
    ]
    assert read(folder / 'config.toml') == {
        'lr': 0.05,
        'layers': [3, 1],
        'note': '<None>',
    }
    architecture = read(folder / 'net' / 'architecture.toml')
    assert architecture['model'] == 'net'
    assert architecture['n_parameters'] == 4
    assert architecture['architecture'].startswith('Linear(in_features=3')
    descriptions = {
        e.actor_name: e.description for e in recorder.events('on_actor_register')
    }
    for actor, description in descriptions.items():
        expected = tomllib.loads(tomli_w.dumps(dict(description)))
        assert read(folder / 'net' / f'{actor}.toml') == expected
    assert 'torch.optim.Adam' in (folder / 'net' / 'Trainer.toml').read_text()


def test_par_dir_of_the_tracker_wins(tmp_path: pathlib.Path) -> None:
    exp = experiment(TomlDumper(tmp_path / 'meta'))
    with exp.create_run(run_id='r'):
        pass
    assert (tmp_path / 'meta' / 'metadata' / 'exp' / 'r' / 'config.toml').is_file()
    assert not (pathlib.Path.cwd() / 'metadata').exists()


def test_resuming_keeps_equal_files_and_never_clobbers_changed_ones() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', exceptions.DryTorchWarning)
        run_all(experiment(TomlDumper()))
    folder = pathlib.Path.cwd() / 'metadata' / 'exp' / 'r'
    files = sorted(folder.rglob('*.toml'))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    first_test = (folder / 'net' / 'Test.toml').read_bytes()

    run_all(experiment(TomlDumper()))  # same runners: nothing is rewritten
    assert sorted(folder.rglob('*.toml')) == files
    assert {path: path.stat().st_mtime_ns for path in files} == stamps

    run_all(experiment(TomlDumper()), test_batch=2)  # the test's loader changed
    run_all(experiment(TomlDumper()), test_batch=8)
    run_all(experiment(TomlDumper()), test_batch=8)  # no change: no new copy
    tests = sorted(p.name for p in (folder / 'net').glob('Test*.toml'))
    assert tests == ['Test.1.toml', 'Test.2.toml', 'Test.toml']
    assert (folder / 'net' / 'Test.1.toml').read_bytes() == first_test
    assert 'batch_size=2' in read(folder / 'net' / 'Test.2.toml')['loader']
    assert 'batch_size=8' in read(folder / 'net' / 'Test.toml')['loader']
    assert (folder / 'config.toml').stat().st_mtime_ns == stamps[folder / 'config.toml']

    with experiment(TomlDumper()).create_run(run_id='r', resume=True):
        Model(nn.Linear(3, 2), name='net', device='cpu')  # another architecture
    assert read(folder / 'net' / 'architecture.1.toml')['n_parameters'] == 4
    assert read(folder / 'net' / 'architecture.toml')['n_parameters'] == 8
    assert not list(folder.rglob('.tmp-*'))


def test_names_are_made_safe_for_file_systems() -> None:
    assert file_name('a/b:c*?') == 'a_b_c__'
    assert file_name('..') == '_'
    assert file_name(' x. ') == 'x'
    assert file_name('CON') == '_CON'
    assert file_name('nul.txt') == '_nul.txt'
    assert file_name('Architecture', reserved=('architecture',)) == 'Architecture_'
    assert len(file_name('x' * 500)) == 100
    with experiment(TomlDumper()).create_run(run_id='r'):
        model = kit.linear('net')
        for name in ('hold/out', 'architecture'):
            Test(
                model,
                loader=DataLoader(kit.regression(8), 4),
                metric=kit.mse(),
                name=name,
            )()
    folder = pathlib.Path.cwd() / 'metadata' / 'exp' / 'r' / 'net'
    assert sorted(p.name for p in folder.iterdir()) == [
        'architecture.toml',
        'architecture_.toml',
        'hold_out.toml',
    ]
    assert read(folder / 'architecture.toml')['model'] == 'net'


def test_an_unwritable_folder_warns_once_and_the_run_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    blocker = tmp_path / 'not-a-folder'
    blocker.write_text('a file where the metadata folder should be')
    tracker = TomlDumper(blocker)
    exp = experiment(tracker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with exp.create_run(run_id='r'):
            trainer = kit.trainer(kit.linear('net'))
            trainer.train(2)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert issubclass(caught[0].category, exceptions.DryTorchWarning)
    assert str(blocker / 'metadata' / 'exp' / 'r') in messages[0]
    assert trainer.model.epoch == 2
    assert 'TomlDumper' in exp.trackers  # not unsubscribed as a faulty tracker


def test_a_tracker_subscribed_during_a_run_adopts_it() -> None:
    exp = experiment(TomlDumper())
    exp.trackers.remove_all()
    with exp.create_run(run_id='r'):
        exp.trackers.subscribe(TomlDumper())
        kit.linear('net')
    folder = pathlib.Path.cwd() / 'metadata' / 'exp' / 'r'
    assert read(folder / 'config.toml')['lr'] == 0.05
    assert read(folder / 'net' / 'architecture.toml')['model'] == 'net'
