"""The run registry, in one process, on a real registry on disk."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import importlib.metadata
import os
import pathlib
import platform
import re
import socket
import sys
import tomllib
import warnings
from typing import Any, NamedTuple

import pydantic
import pytest

import drytorch
from drytorch.core import exceptions, registry, snapshot

TIMESTAMP_ID = re.compile(r'^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_[0-9a-f]+)?$')


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1
    epochs: int = 2


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 16


@dataclasses.dataclass(frozen=True)
class Nested:
    model: Inner = Inner()
    name: str = 'base'


class TupleConfig(NamedTuple):
    lr: float = 0.1
    layers: tuple[int, ...] = (4, 8)


class PydanticConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    lr: float = 0.1
    optimizer: str = 'adam'


@pytest.fixture(autouse=True)
def quiet(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default trackers: these tests are about records, not logs."""
    monkeypatch.setenv('DRYTORCH_INIT_MODE', 'none')


def make_exp(
    config: Any = Config(), name: str = 'exp', **kwargs: Any
) -> drytorch.Experiment[Any]:
    return drytorch.Experiment(config, name=name, **kwargs)


def runs_dir(exp: drytorch.Experiment[Any]) -> pathlib.Path:
    return exp.registry.root / exp.key / 'runs'


def load(exp: drytorch.Experiment[Any], run_id: str) -> dict[str, Any]:
    with (runs_dir(exp) / f'{run_id}.toml').open('rb') as file:
        return tomllib.load(file)


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob('*'))
        if p.is_file()
    }


def list_quietly(exp: drytorch.Experiment[Any]) -> list[registry.RunRecord]:
    """List runs, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return exp.list_runs()


# ids


def test_default_ids_are_unique_timestamps_within_one_second() -> None:
    exp = make_exp()
    runs = [exp.create_run() for _ in range(30)]
    ids = [run.id for run in runs]
    assert len(set(ids)) == 30
    assert all(TIMESTAMP_ID.match(run_id) for run_id in ids), ids
    seconds = [run_id[:19] for run_id in ids]
    assert max(seconds.count(s) for s in seconds) > 1, 'no two runs in one second'
    for run in runs:
        data = load(exp, run.id)
        assert data['id'] == run.id
        assert data['created_at'].strftime('%Y-%m-%d_%H-%M-%S') == run.id[:19]
    assert sorted(p.stem for p in runs_dir(exp).glob('*.toml')) == sorted(ids)
    assert [r.id for r in list_quietly(exp)] == ids


def test_explicit_existing_id_without_resume_is_refused() -> None:
    exp = make_exp()
    with exp.create_run('first'):
        pass
    before = tree(exp.registry.root)
    with pytest.raises(exceptions.RunAlreadyExistsError, match="'first'"):
        exp.create_run('first')
    with pytest.raises(exceptions.RunAlreadyExistsError):
        make_exp().create_run('first')
    assert tree(exp.registry.root) == before


# names

BAD_NAMES = [
    '/',
    'a/b',
    '../escape',
    '\\',
    'a\\b',
    '..',
    'a..b',
    '.',
    '.hidden',
    'a\x00b',
    'a\nb',
    'tab\there',
    'x' * 129,
    'CON',
    'con.txt',
    'LPT1',
    ' leading',
    'trailing ',
]


@pytest.mark.parametrize('bad', [*BAD_NAMES, ''])
@pytest.mark.parametrize('resume', [False, True])
def test_unsafe_run_ids_are_refused_and_nothing_written(
    bad: str, resume: bool, tmp_path: pathlib.Path
) -> None:
    exp = make_exp()
    before = tree(tmp_path)
    with pytest.raises(exceptions.InvalidNameError):
        exp.create_run(bad, resume=resume)
    assert tree(tmp_path) == before
    assert not exp.registry.root.exists()


@pytest.mark.parametrize('bad', BAD_NAMES)
def test_unsafe_experiment_names_are_refused(bad: str, tmp_path: pathlib.Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(exceptions.InvalidNameError):
        make_exp(name=bad)
    assert tree(tmp_path) == before


def test_refused_id_after_valid_runs_writes_nothing() -> None:
    exp = make_exp()
    with exp.create_run('ok'):
        pass
    before = tree(exp.registry.root)
    for bad in ('../ok', 'x/../../y', '..'):
        with pytest.raises(exceptions.InvalidNameError):
            exp.create_run(bad, resume=True)
    assert tree(exp.registry.root) == before


@pytest.mark.parametrize(
    'name', ['my run', 'run-1', 'Run 2 (final)', 'a.b', 'lr=0.1,bs=32', 'x' * 128]
)
def test_valid_names_work(name: str) -> None:
    exp = make_exp(name=name)
    with exp.create_run(name) as run:
        pass
    assert run.record_path == runs_dir(exp) / f'{name}.toml'
    assert run.record_path.resolve().is_relative_to(exp.registry.root.resolve())
    data = load(exp, name)
    assert (data['id'], data['experiment'], data['status']) == (
        name,
        name,
        'completed',
    )
    assert [r.id for r in list_quietly(make_exp(name=name))] == [name]


def test_empty_experiment_name_defaults_to_class_name() -> None:
    class MyExperiment(drytorch.Experiment[Config]):
        pass

    assert MyExperiment(Config(), name='').name == 'MyExperiment'


# corrupt records

CORRUPT = {
    'garbage': b'\xff\xfe\x00\x81garbage\x00\n',
    'invalid_toml': b'id = "broken"\nstatus = \n[[[',
    'missing_fields': b'id = "broken"\nstatus = "completed"\n',
    'empty': b'',
    'wrong_types': (
        b'id = "broken"\nexperiment = "exp"\nstatus = "completed"\n'
        b'created_at = "yesterday"\n'
    ),
    'bad_status': (
        b'id = "broken"\nexperiment = "exp"\nstatus = "exploded"\n'
        b'created_at = 2024-01-01T00:00:00Z\n'
    ),
    'wrong_id': (
        b'id = "good"\nexperiment = "exp"\nstatus = "completed"\n'
        b'created_at = 2024-01-01T00:00:00Z\n'
    ),
}


@pytest.mark.parametrize('content', CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_record_is_reported_and_left_untouched(content: bytes) -> None:
    exp = make_exp()
    with exp.create_run('good'):
        pass
    good_before = load(exp, 'good')
    broken = runs_dir(exp) / 'broken.toml'
    broken.write_bytes(content)

    with pytest.warns(registry.RecordWarning, match=re.escape(str(broken))):
        listed = exp.list_runs()
    assert [r.id for r in listed] == ['good']
    assert broken.read_bytes() == content

    with pytest.warns(registry.RecordWarning):
        with exp.create_run('new'):
            pass
        ids = [r.id for r in make_exp().list_runs()]
    assert ids == ['good', 'new']

    with pytest.raises(exceptions.CorruptRecordError, match=re.escape(str(broken))):
        exp.create_run('broken', resume=True)
    with pytest.raises(exceptions.CorruptRecordError) as info:
        make_exp().create_run('broken', resume=True)
    assert pathlib.Path(str(info.value.path)) == broken
    with pytest.raises(exceptions.RunAlreadyExistsError):
        exp.create_run('broken')
    assert broken.read_bytes() == content
    assert load(exp, 'good') == good_before


def test_copied_record_is_not_resumed_as_the_original() -> None:
    exp = make_exp()
    with exp.create_run('original'):
        pass
    original = runs_dir(exp) / 'original.toml'
    content = original.read_bytes()
    copy_path = runs_dir(exp) / 'copy.toml'
    copy_path.write_bytes(content)
    with pytest.warns(registry.RecordWarning, match=re.escape(str(copy_path))):
        assert [r.id for r in make_exp().list_runs()] == ['original']
    with pytest.raises(exceptions.CorruptRecordError, match=re.escape(str(copy_path))):
        make_exp().create_run('copy', resume=True)
    assert original.read_bytes() == content
    assert copy_path.read_bytes() == content


def test_hand_written_record_with_local_times_lists() -> None:
    exp = make_exp()
    with exp.create_run('aware'):
        pass
    (runs_dir(exp) / 'naive.toml').write_text(
        'id = "naive"\nexperiment = "exp"\nstatus = "completed"\n'
        'created_at = 2000-01-01T00:00:00\n'
    )
    assert [r.id for r in list_quietly(exp)] == ['naive', 'aware']


def test_temp_files_are_ignored_by_listing() -> None:
    exp = make_exp()
    with exp.create_run('r1'):
        pass
    (runs_dir(exp) / f'.tmp-{os.getpid()}-deadbeef').write_bytes(b'id = "r1"\nsta')
    (runs_dir(exp) / '.tmp-1-00000000').write_bytes(b'')
    assert [r.id for r in list_quietly(exp)] == ['r1']
    assert exp.create_run(resume=True).id == 'r1'


# configurations


def test_resume_with_other_config_shows_the_differences() -> None:
    exp = make_exp(Config(lr=0.1))
    with exp.create_run('r'):
        pass
    before = tree(exp.registry.root)
    other = make_exp(Config(lr=0.2))
    for run_id in ('r', None):
        with pytest.raises(exceptions.ConfigMismatchError) as info:
            other.create_run(run_id, resume=True)
        assert info.value.differences == ['lr: 0.1 -> 0.2']
        assert 'lr: 0.1 -> 0.2' in str(info.value)
        assert 'epochs' not in str(info.value)
    assert tree(exp.registry.root) == before


def test_nested_config_difference_is_named_by_path() -> None:
    with make_exp(Nested()).create_run('r'):
        pass
    changed = make_exp(Nested(model=Inner(width=32), name='other'))
    with pytest.raises(exceptions.ConfigMismatchError) as info:
        changed.create_run('r', resume=True)
    assert info.value.differences == [
        'model.width: 16 -> 32',
        "name: 'base' -> 'other'",
    ]


def test_resume_with_equal_config_works() -> None:
    with make_exp(Config(lr=0.3)).create_run('r'):
        pass
    with make_exp(Config(lr=0.3)).create_run(resume=True) as run:
        assert run.id == 'r'
    assert len(load(run.experiment, 'r')['sessions']) == 2


CONFIGS = {
    'namedtuple': (TupleConfig(), TupleConfig(lr=0.5), {'lr': 0.1, 'layers': [4, 8]}),
    'dataclass': (Config(), Config(epochs=3), {'lr': 0.1, 'epochs': 2}),
    'nested': (Nested(), Nested(Inner(8)), {'model': {'width': 16}, 'name': 'base'}),
    'pydantic': (
        PydanticConfig(),
        PydanticConfig(optimizer='sgd'),
        {'lr': 0.1, 'optimizer': 'adam'},
    ),
    'none': (None, Config(), {'value': '<None>'}),
}


@pytest.mark.parametrize(('config', 'other', 'expected'), CONFIGS.values(), ids=CONFIGS)
def test_config_kinds_snapshot_into_the_record(
    config: Any, other: Any, expected: dict[str, Any]
) -> None:
    with make_exp(config).create_run('r') as run:
        assert drytorch.Experiment.get_config() == config
    data = load(run.experiment, 'r')
    assert data['config'] == expected
    assert data['config_hash'] == snapshot.config_hash(config)
    assert re.fullmatch(r'sha256:[0-9a-f]{16}', data['config_hash'])
    assert data['config_hash'] != snapshot.config_hash(other)
    assert data['config_class'].endswith(type(config).__qualname__)
    record = list_quietly(run.experiment)[0]
    assert record.config == expected
    assert record.config_hash == data['config_hash']

    with make_exp(copy.deepcopy(config)).create_run(resume=True) as resumed:
        assert resumed.id == 'r'
    with pytest.raises(exceptions.ConfigMismatchError):
        make_exp(other).create_run('r', resume=True)


# resuming


def test_resume_takes_the_newest_run_of_this_experiment_only() -> None:
    exp_a, exp_b = make_exp(name='a'), make_exp(name='b')
    with exp_a.create_run('a1'):
        pass
    with exp_a.create_run('a2'):
        pass
    with exp_b.create_run('b1'):
        pass
    assert exp_a.key != exp_b.key
    assert make_exp(name='a').create_run(resume=True).id == 'a2'
    assert make_exp(name='b').create_run(resume=True).id == 'b1'
    assert [r.id for r in exp_a.list_runs()] == ['a1', 'a2']
    assert [r.id for r in exp_b.list_runs()] == ['b1']
    assert all(r.experiment == 'a' for r in exp_a.list_runs())


def test_resume_newest_default_id() -> None:
    exp = make_exp()
    ids = [exp.create_run().id for _ in range(12)]
    assert make_exp().create_run(resume=True).id == ids[-1]


def test_same_name_in_other_par_dir_is_another_experiment(
    tmp_path: pathlib.Path,
) -> None:
    one = make_exp(name='same', par_dir=tmp_path / 'p1')
    two = make_exp(name='same', par_dir=tmp_path / 'p2')
    assert one.key != two.key
    with one.create_run('r1'):
        pass
    with pytest.warns(exceptions.DryTorchWarning, match='No run'):
        fresh = two.create_run(resume=True)
    assert fresh.id != 'r1'
    assert [r.id for r in one.list_runs()] == ['r1']
    assert [r.id for r in two.list_runs()] == [fresh.id]
    two.create_run('r1')  # the id is free in the other experiment
    assert make_exp(name='same', par_dir=tmp_path / 'p1').create_run(
        resume=True
    ).id == ('r1')
    assert load(two, 'r1')['par_dir'] == str((tmp_path / 'p2').resolve())


def test_relative_par_dir_is_resolved_against_cwd(tmp_path: pathlib.Path) -> None:
    exp = make_exp(par_dir='out')
    assert exp.par_dir == (tmp_path / 'work' / 'out').resolve()
    assert exp.key == make_exp(par_dir=tmp_path / 'work' / 'out').key
    assert exp.key != make_exp().key


def test_recreated_experiment_addresses_the_same_runs() -> None:
    with make_exp().create_run('r1') as first:
        pass
    again = make_exp()
    assert [r.id for r in again.list_runs()] == ['r1']
    resumed = again.create_run(resume=True)
    assert resumed.id == 'r1'
    assert resumed is not first
    with resumed:
        pass
    data = load(again, 'r1')
    assert data['status'] == 'completed'
    assert len(data['sessions']) == 2


def test_resume_missing_id_creates_it_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exp = make_exp()
    with warnings.catch_warnings(), caplog.at_level('INFO', logger='drytorch'):
        warnings.simplefilter('error')  # the first launch of a resuming script
        run = exp.create_run('new', resume=True)
    assert "'new'" in caplog.text and 'not recorded yet' in caplog.text
    assert run.id == 'new'
    assert load(exp, 'new')['status'] == 'created'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert make_exp().create_run('new', resume=True).id == 'new'


def test_resume_with_nothing_recorded_starts_a_new_run() -> None:
    exp = make_exp()
    with pytest.warns(exceptions.DryTorchWarning, match='No run'):
        run = exp.create_run(resume=True)
    assert TIMESTAMP_ID.match(run.id)
    assert [r.id for r in exp.list_runs()] == [run.id]


def test_resume_in_one_process_returns_the_same_run() -> None:
    exp = make_exp()
    run = exp.create_run()
    assert exp.create_run(resume=True) is run
    assert exp.create_run(run.id, resume=True) is run
    with run:
        assert exp.create_run(resume=True) is run
    assert exp.create_run(resume=True) is run
    other = exp.create_run()
    assert exp.create_run(resume=True) is other
    assert exp.create_run(run.id, resume=True) is run


def test_resume_of_a_run_held_by_another_host_is_refused() -> None:
    exp = make_exp()
    exp.create_run('remote')
    data = load(exp, 'remote')
    data.update(status='running', pid=1, host='another-host.invalid')
    exp.registry.write(exp.key, data)
    assert [r.status for r in list_quietly(exp)] == ['running']
    with pytest.raises(
        exceptions.RunInUseError, match=re.escape('another-host.invalid')
    ):
        make_exp().create_run('remote', resume=True)


# record contents


def test_record_lifecycle() -> None:
    exp = make_exp(tags=('baseline', 'small'))
    run = exp.create_run('r')
    data = load(exp, 'r')
    assert data['status'] == 'created'
    assert 'started_at' not in data
    assert isinstance(data['created_at'], datetime.datetime)
    assert [r.status for r in list_quietly(exp)] == ['created']

    run.start()
    data = load(exp, 'r')
    assert data['status'] == 'running'
    assert data['pid'] == os.getpid()
    assert data['host'] == socket.gethostname()
    assert data['created_at'] <= data['started_at']
    assert [r.status for r in list_quietly(exp)] == ['running']
    with pytest.raises(exceptions.RunInUseError):
        make_exp().create_run('r', resume=True)

    run.stop()
    data = load(exp, 'r')
    assert data['status'] == 'completed'
    assert data['started_at'] <= data['stopped_at']
    assert 'error' not in data
    (session,) = data['sessions']
    assert session['status'] == 'completed'
    assert session['pid'] == os.getpid()
    assert session['started_at'] == data['started_at']
    assert session['stopped_at'] == data['stopped_at']
    assert 'stop_reason' not in session
    assert [r.status for r in list_quietly(exp)] == ['completed']

    assert data['id'] == 'r'
    assert data['experiment'] == 'exp'
    assert data['experiment_key'] == exp.key
    assert data['tags'] == ['baseline', 'small']
    assert data['par_dir'] == str(exp.par_dir)
    record = exp.list_runs()[0]
    assert record.tags == ('baseline', 'small')
    assert (record.created_at, record.started_at, record.stopped_at) == (
        data['created_at'],
        data['started_at'],
        data['stopped_at'],
    )
    assert record.to_json()['created_at'] == data['created_at'].isoformat()


def test_failed_run_records_the_error_and_resume_clears_it() -> None:
    exp = make_exp()
    with pytest.raises(ValueError, match='boom'), exp.create_run('r'):
        raise ValueError('boom')
    data = load(exp, 'r')
    assert data['status'] == 'failed'
    assert data['error'] == 'ValueError: boom'
    assert data['sessions'][-1]['status'] == 'failed'
    assert [r.status for r in list_quietly(exp)] == ['failed']

    with make_exp().create_run(resume=True):
        pass
    data = load(exp, 'r')
    assert data['status'] == 'completed'
    assert 'error' not in data
    assert [s['status'] for s in data['sessions']] == ['failed', 'completed']


def test_environment_is_recorded() -> None:
    exp = make_exp()
    with exp.create_run('r'):
        pass
    env = load(exp, 'r')['environment']
    assert env['python'] == platform.python_version()
    assert env['torch'] == importlib.metadata.version('torch')
    assert env['drytorch'] == drytorch.__version__
    assert env['command'][0] == sys.executable
    assert env['cwd'] == os.getcwd()


def test_sessions_grow_on_resume() -> None:
    exp = make_exp()
    for n in range(1, 4):
        with make_exp().create_run('r', resume=n > 1):
            pass
        data = load(exp, 'r')
        assert len(data['sessions']) == n
        assert all(s['status'] == 'completed' for s in data['sessions'])
    starts = [s['started_at'] for s in data['sessions']]
    assert starts == sorted(starts)
    assert data['started_at'] == starts[-1]


def test_writing_one_run_never_touches_another() -> None:
    exp = make_exp()
    with exp.create_run('a'):
        pass
    a_bytes = (runs_dir(exp) / 'a.toml').read_bytes()
    for run_id in ('b', 'c'):
        with exp.create_run(run_id):
            pass
    with exp.create_run('b', resume=True):
        pass
    assert (runs_dir(exp) / 'a.toml').read_bytes() == a_bytes


def test_running_record_of_a_dead_process_is_crashed() -> None:
    exp = make_exp()
    exp.create_run('r')
    data = load(exp, 'r')
    data.update(status='running', pid=2**22 + 12345, host=socket.gethostname())
    exp.registry.write(exp.key, data)
    assert [r.status for r in list_quietly(exp)] == ['crashed']
    assert load(exp, 'r')['status'] == 'running'  # reported, not rewritten
    with make_exp().create_run('r', resume=True) as run:
        assert load(exp, 'r')['status'] == 'running'
    assert run.status == 'completed'
