"""Edited records and planted links: nothing is read or written outside.

A run record is a file anyone who can write the registry can edit, and an
output folder is one anyone can plant a symbolic link in. Each test edits a
real record or plants a real link to a real outside file, runs the real
command or tracker, and checks the outside file and folders afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tomli_w

from drytorch import Experiment, cli
from drytorch.cli import runs
from drytorch.core import exceptions, registry, registry_index
from drytorch.trackers.csv import CSVDumper
from drytorch.trackers.sqlite import SQLiteTracker
from tests import training_kit as kit
from tests.conftest import git
from tests.test_cli import drytorch

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='symbolic links and SIGKILL'
)


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1


def train(
    run_id: str,
    *trackers: object,
    name: str = 'exp',
    epochs: int = 2,
    resume: bool = False,
) -> Experiment[None]:
    """Train ``Model`` for ``epochs`` in run ``run_id`` with only ``trackers``."""
    experiment = kit.experiment(name)
    experiment.trackers.remove_all()
    experiment.trackers.subscribe(*trackers)
    with experiment.create_run(run_id=run_id, resume=resume):
        trainer = kit.trainer()
        trainer.train(epochs)
        trainer.save_checkpoint()
    return experiment


def record_file(experiment: Experiment[Any], run_id: str) -> pathlib.Path:
    return experiment.registry.record_path(experiment.key, run_id)


def edit(path: pathlib.Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a record on disk, as a person (or an attacker) would."""
    data = tomllib.loads(path.read_text(encoding='utf-8'))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding='utf-8')


def tree(root: pathlib.Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root``: kind, mtime and content (or link target).

    The registry index is left out: it is a cache that listings bring in step.
    """
    found = {}
    for path in sorted(root.rglob('*')):
        if path.name.startswith(registry_index.INDEX_FILE):
            continue
        stat = path.lstat()
        if path.is_symlink():
            found[str(path)] = ('link', stat.st_mtime_ns, os.readlink(path))
        elif path.is_dir():
            found[str(path)] = ('dir', 0, '')
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path)] = ('file', stat.st_mtime_ns, digest)
    return found


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder outside the registry and the working directory."""
    folder = tmp_path / 'outside'
    folder.mkdir()
    return folder


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        yield record


def failures(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, exceptions.TrackerFailureWarning)
    ]


# --- names read from records ------------------------------------------------


def test_plot_refuses_an_experiment_name_that_leaves_its_folder(
    outside: pathlib.Path,
) -> None:
    experiment = train('a', CSVDumper())
    source = pathlib.Path.cwd() / 'csv_metrics' / 'exp' / 'a'
    # what the old path building read: csv_metrics / <absolute name> / <run id>
    shutil.copytree(source, outside / 'evil' / 'a')
    before = tree(outside)
    path = record_file(experiment, 'a')
    edit(path, lambda data: data.update(experiment=str(outside / 'evil')))

    done = drytorch('plot', 'a')
    assert done.returncode == 1
    assert str(path) in done.stderr and "field 'experiment'" in done.stderr
    assert tree(outside) == before  # no evil_a.png beside the planted metrics
    assert not list(pathlib.Path.cwd().glob('*.png'))

    shown = drytorch('show', 'a')
    assert shown.returncode == 1 and "field 'experiment'" in shown.stderr
    listed = drytorch('runs', '--json')
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert str(path) in listed.stderr and "field 'experiment'" in listed.stderr


def test_plot_writes_to_the_working_directory_by_default(
    tmp_path: pathlib.Path,
) -> None:
    train('a', CSVDumper())
    here = tmp_path / 'here'
    here.mkdir()
    done = drytorch('plot', 'a', '--metric', 'MSE', cwd=here)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(here / 'exp_a.png')]
    assert (here / 'exp_a.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert [p.name for p in here.iterdir()] == ['exp_a.png']


def test_a_csv_output_entry_naming_another_folder_is_ignored(
    outside: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    experiment = train('a', CSVDumper())
    real = pathlib.Path.cwd() / 'csv_metrics' / 'exp' / 'a'
    planted = outside / 'csv_metrics' / 'exp' / 'a'
    shutil.copytree(real, planted)
    for file in planted.iterdir():  # other values: the planted file is told apart
        lines = file.read_text().splitlines()
        lines[1:] = [','.join([*line.split(',')[:3], '1234.0']) for line in lines[1:]]
        file.write_text('\n'.join(lines) + '\n')
    path = record_file(experiment, 'a')
    place = str(outside / 'p' / 'q' / 'r')  # its parents[2] is the planted root
    edit(path, lambda data: data['summary']['outputs'].update(CSVDumper=place))
    record = experiment.registry.read(experiment.key, 'a')

    histories = runs.load_histories(record)
    values = histories['Model']['Trainer'].values['MSE']
    assert 1234.0 not in values and len(values) == 2
    notices = [str(w.message) for w in caught]
    assert any(str(path) in n and 'summary.outputs.CSVDumper' in n for n in notices), (
        notices
    )


def test_unsafe_model_names_and_control_characters_never_reach_the_terminal(
    caught: list[warnings.WarningMessage],
) -> None:
    experiment = train('a')
    path = record_file(experiment, 'a')

    def plant(data: dict[str, Any]) -> None:
        metrics = data['summary']['metrics']
        metrics['../evil'] = {'Trainer': {'epoch': 1, 'MSE': 1.0}}
        metrics['Model']['Tr\x1b[2Jainer'] = {'epoch': 1, 'MSE': 2.0}
        data['error'] = 'boom\x1b[31m red'

    edit(path, plant)
    done = drytorch('show', 'a')
    assert done.returncode == 0, done.stderr
    assert '\x1b' not in done.stdout + done.stderr
    assert '../evil' not in done.stdout and 'MSE = ' in done.stdout
    assert 'boom\\x1b[31m red' in done.stdout
    assert str(path) in done.stderr and 'summary.metrics.../evil' in done.stderr
    table = drytorch('runs')
    assert table.returncode == 0 and '\x1b' not in table.stdout + table.stderr
    assert 'Model/Trainer MSE=' in table.stdout


# --- SQLite read without a file beside the database --------------------------


def _add_epoch(database: pathlib.Path, connection: sqlite3.Connection) -> None:
    """Write epoch 99 of the run's Trainer source, as a live writer would."""
    (source,) = connection.execute(
        "SELECT id FROM sources WHERE source = 'Trainer'"
    ).fetchone()
    connection.execute("INSERT INTO metrics VALUES (?, 99, 'MSE', 0.5)", (source,))


def test_reading_sqlite_creates_no_file_beside_the_database(
    tmp_path: pathlib.Path,
) -> None:
    folder = tmp_path / 'shared'
    train('b', SQLiteTracker(path=folder / 'm.db'))
    assert sorted(p.name for p in folder.iterdir()) == ['m.db']  # WAL, no writer
    before = tree(folder)
    read = SQLiteTracker.read(folder / 'm.db', 'exp', 'b')
    assert read['Model']['Trainer'].epochs == [1, 2]
    out = tmp_path / 'b.png'
    done = drytorch('plot', 'b', '--metric', 'MSE', '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    assert tree(folder) == before


def test_reading_sqlite_sees_a_live_writer_and_creates_nothing(
    tmp_path: pathlib.Path,
) -> None:
    database = tmp_path / 'm.db'
    train('b', SQLiteTracker(path=database))
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute('PRAGMA journal_mode=WAL').fetchone()
        writer.execute('BEGIN IMMEDIATE')
        _add_epoch(database, writer)
        writer.execute('COMMIT')  # in the WAL, not yet in the database file
        assert (tmp_path / 'm.db-wal').stat().st_size > 0
        before = tree(tmp_path)
        read = SQLiteTracker.read(database, 'exp', 'b')
        assert read['Model']['Trainer'].epochs == [1, 2, 99]
        after = tree(tmp_path)
        assert after.keys() == before.keys()
        shm = str(tmp_path / 'm.db-shm')  # shared memory: readers mark it
        assert {k: v for k, v in after.items() if k != shm} == {
            k: v for k, v in before.items() if k != shm
        }
    finally:
        writer.close()


def test_reading_a_wal_left_without_its_index_creates_nothing(
    tmp_path: pathlib.Path,
) -> None:
    database = tmp_path / 'm.db'
    train('b', SQLiteTracker(path=database))
    killed = (
        'import os, sqlite3, sys\n'
        'c = sqlite3.connect(sys.argv[1], isolation_level=None)\n'
        "c.execute('PRAGMA journal_mode=WAL').fetchone()\n"
        '(s,) = c.execute("SELECT id FROM sources WHERE source = \'Trainer\'")'
        '.fetchone()\n'
        'c.execute("INSERT INTO metrics VALUES (?, 99, \'MSE\', 0.5)", (s,))\n'
        'os._exit(0)\n'  # killed: the WAL and its index stay
    )
    subprocess.run(
        [sys.executable, '-c', killed, str(database)], check=True, timeout=60
    )
    (tmp_path / 'm.db-shm').unlink()
    assert (tmp_path / 'm.db-wal').stat().st_size > 0
    before = tree(tmp_path)
    read = SQLiteTracker.read(database, 'exp', 'b')
    assert read['Model']['Trainer'].epochs == [1, 2, 99]
    assert tree(tmp_path) == before


# --- appending trackers and planted links ------------------------------------


def resume_through_link(
    tracker: Any,
    link: pathlib.Path,
    victim: pathlib.Path,
    caught: list[warnings.WarningMessage],
) -> None:
    """Resume run ``r`` with ``tracker``: it refuses ``link`` and spares ``victim``."""
    content = victim.read_bytes()
    train('r', tracker, resume=True)
    (message,) = failures(caught)
    assert str(link) in message and 'UnsafePathError' in message
    assert victim.read_bytes() == content


def test_csv_dumper_refuses_to_append_through_a_planted_link(
    outside: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    train('r', CSVDumper())
    link = pathlib.Path.cwd() / 'csv_metrics' / 'exp' / 'r' / 'Model_Trainer.csv'
    victim = outside / 'victim.csv'
    shutil.move(link, victim)  # a file the tracker would happily continue
    link.symlink_to(victim)
    resume_through_link(CSVDumper(), link, victim, caught)
    assert link.is_symlink()


def test_csv_dumper_refuses_a_linked_run_folder(
    outside: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    planted = pathlib.Path.cwd() / 'csv_metrics' / 'exp'
    planted.parent.mkdir()
    planted.symlink_to(outside, target_is_directory=True)
    experiment = train('r', CSVDumper())
    (message,) = failures(caught)
    assert str(planted) in message
    assert list(outside.iterdir()) == []
    (record,) = experiment.list_runs()
    assert record.status == 'completed'  # the run went on without the tracker
    with pytest.raises(exceptions.UnsafePathError, match=str(planted)):
        CSVDumper(par_dir='.').load_metrics('exp', 'r')


@pytest.mark.parametrize('planted', ['metrics.db', 'metrics.db-wal'])
def test_sqlite_tracker_refuses_to_write_through_a_planted_link(
    planted: str, outside: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    train('r', SQLiteTracker())
    database = pathlib.Path.cwd() / 'metrics.db'
    link = pathlib.Path.cwd() / planted
    victim = outside / 'victim'
    if planted == 'metrics.db':
        shutil.move(database, victim)  # a real database the tracker would extend
    else:
        victim.write_bytes(b'a file that must stay as it is\n')
    link.symlink_to(victim)
    resume_through_link(SQLiteTracker(), link, victim, caught)
    assert sorted(p.name for p in outside.iterdir()) == ['victim']
    with pytest.raises(exceptions.UnsafePathError, match=str(link)):
        SQLiteTracker.read(database, 'exp', 'r')


def test_plot_tracker_replaces_a_planted_link_and_leaves_its_target(
    outside: pathlib.Path,
) -> None:
    pytest.importorskip('matplotlib')
    from drytorch.trackers.plot import PlotTracker

    folder = pathlib.Path.cwd() / 'plots' / 'exp' / 'r'
    folder.mkdir(parents=True)
    victim = outside / 'victim.png'
    victim.write_bytes(b'not to be overwritten')
    (folder / 'Model-MSE.png').symlink_to(victim)
    train('r', PlotTracker(every_epoch=False))
    assert victim.read_bytes() == b'not to be overwritten'
    written = folder / 'Model-MSE.png'
    assert not written.is_symlink()
    assert written.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# --- drytorch verify ----------------------------------------------------------


def test_verify_reads_only_the_checkpoints_the_backend_lists(
    outside: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    experiment = train('r', epochs=1)
    real = pathlib.Path.cwd() / 'checkpoints' / 'exp' / 'r' / 'Model' / 'epoch_1.pt'
    copy = outside / 'epoch_1.pt'
    shutil.copy(real, copy)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()

    def plant(data: dict[str, Any]) -> None:
        entry = {'path': str(copy), 'epoch': 1, 'batch': 0, 'sha256': digest}
        saved = data['summary']['checkpoints']
        saved['Model/elsewhere.pt'] = entry  # a listed position, another file
        saved['../x/epoch_1.pt'] = entry  # an unsafe model name
        saved['Model/epoch_7.pt'] = dict(entry, epoch=7)  # not listed
        saved['Ghost/epoch_1.pt'] = entry  # a model without checkpoints

    edit(record_file(experiment, 'r'), plant)
    opened: list[str] = []
    file_digest, load = hashlib.file_digest, torch.load

    def spy_digest(file: Any, name: str) -> Any:
        opened.append(file.name)
        return file_digest(file, name)

    def spy_load(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(hashlib, 'file_digest', spy_digest)
    monkeypatch.setattr(torch, 'load', spy_load)
    assert cli.main(['verify', 'r', '--json']) == 1
    report = json.loads(capsys.readouterr().out)
    statuses = {c['name']: c['status'] for c in report['checkpoints']}
    assert statuses == {
        'Model/epoch_1.pt': 'ok',
        'Model/elsewhere.pt': 'repeats epoch 1',  # its path is never opened
        '../x/epoch_1.pt': 'invalid model name',
        'Model/epoch_7.pt': 'missing',
        'Ghost/epoch_1.pt': 'missing',
    }
    assert opened and all(pathlib.Path(p) == real for p in opened), opened


def test_verify_does_not_follow_a_linked_checkpoint(outside: pathlib.Path) -> None:
    train('r', epochs=1)
    real = pathlib.Path.cwd() / 'checkpoints' / 'exp' / 'r' / 'Model' / 'epoch_1.pt'
    shutil.move(real, outside / 'epoch_1.pt')
    real.symlink_to(outside / 'epoch_1.pt')  # same bytes: the hash would match
    done = drytorch('verify', 'r', '--json')
    assert done.returncode == 1
    (checked,) = json.loads(done.stdout)['checkpoints']
    assert checked['status'].startswith('not read: symbolic link:')


@pytest.mark.skipif(shutil.which('git') is None, reason='git is not installed')
def test_a_fresh_run_verifies_with_the_environment_outside_the_repository(
    tmp_path: pathlib.Path,
) -> None:
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'train.py').write_text(
        'import drytorch\n'
        "experiment = drytorch.Experiment(None, name='gitexp')\n"
        "with experiment.create_run(run_id='g'):\n"
        '    pass\n'
    )
    git(repo, 'init', '-q')
    git(repo, 'add', 'train.py')
    git(repo, 'commit', '-q', '-m', 'first')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, str(repo / 'train.py')],
        cwd=elsewhere,
        env=dict(os.environ, DRYTORCH_INIT_MODE='none'),
        check=True,
        timeout=120,
    )
    # the README's setup: the environment, with its `drytorch` script, is
    # not in the repository, and the command runs from another folder
    bin_dir = tmp_path / 'venv' / 'bin'
    bin_dir.mkdir(parents=True)
    script = bin_dir / 'drytorch'
    script.write_text(
        f'#!{sys.executable}\nimport sys\nfrom drytorch.cli import main\n'
        'sys.exit(main())\n'
    )
    script.chmod(0o755)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), 'verify', 'g', '--json'],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = verify()
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report['ok'] and report['environment'] == []

    (repo / 'train.py').write_text('# edited\n')  # git is really compared
    done = verify()
    assert done.returncode == 1
    (difference,) = json.loads(done.stdout)['environment']
    assert difference == {'key': 'git.dirty', 'recorded': 'False', 'now': 'True'}


# --- durations and read-only listing -----------------------------------------


def test_duration_is_the_sum_of_the_sessions() -> None:
    experiment = Experiment(Config(), name='exp')
    for resume in (False, True):
        with Experiment(Config(), name='exp').create_run('d', resume=resume):
            pass
    path = record_file(experiment, 'd')
    zone = datetime.timezone(datetime.timedelta(hours=2))

    def at(hour: int, second: int) -> datetime.datetime:
        return datetime.datetime(2024, 5, 1, hour, 0, second, tzinfo=zone)

    def closed(data: dict[str, Any]) -> None:
        first, second = data['sessions']
        first.update(started_at=at(10, 0), stopped_at=at(10, 10))
        second.update(started_at=at(11, 0), stopped_at=at(11, 20))
        data.update(started_at=at(11, 0), stopped_at=at(11, 20))

    edit(path, closed)
    shown = drytorch('show', 'd')
    assert '  duration  0:00:30 over 2 session(s)' in shown.stdout, shown.stdout

    def crashed(data: dict[str, Any]) -> None:  # a third session, killed
        data['sessions'].append(
            dict(data['sessions'][-1], started_at=at(12, 0), status='running')
        )
        del data['sessions'][-1]['stopped_at']
        data.update(status='running', started_at=at(12, 0), host=registry.this_host())
        del data['stopped_at']

    edit(path, crashed)
    shown = drytorch('show', 'd')
    assert 'Run d of experiment exp: crashed' in shown.stdout
    assert '  duration  0:00:30+ over 3 session(s)' in shown.stdout, shown.stdout
    row = drytorch('runs').stdout.splitlines()[1]
    assert '0:00:30+' in row.split()


def test_listing_and_showing_runs_leave_the_file_tree_as_it_was(
    tmp_path: pathlib.Path,
) -> None:
    train('a', CSVDumper())
    killed = (
        'import os, signal\n'
        'from drytorch import Experiment\n'
        "run = Experiment(None, name='victim', par_dir='.').create_run(run_id='k')\n"
        'run.start()\n'
        'os.kill(os.getpid(), signal.SIGKILL)\n'
    )
    subprocess.run([sys.executable, '-c', killed], timeout=60, check=False)
    for lock in (tmp_path / 'registry').glob('victim-*/locks/*'):
        lock.unlink()  # a record saying running, with no lock to probe
    before = tree(tmp_path)
    listed = drytorch('runs', '--json')
    assert listed.returncode == 0, listed.stderr
    statuses = {r['id']: r['status'] for r in json.loads(listed.stdout)}
    assert statuses == {'a': 'completed', 'k': 'crashed'}
    for args in (('runs',), ('show', 'k'), ('show', 'a', '--json'), ('show', 'a')):
        done = drytorch(*args)
        assert done.returncode == 0, done.stderr
    assert drytorch('compare', 'a', 'k').returncode == 0
    assert tree(tmp_path) == before
