"""Registry housekeeping: tags, ``rm`` and ``gc``, with real files and processes."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import tomli_w

from drytorch.core import exceptions, files
from drytorch.trackers.csv import CSVDumper
from tests import training_kit as kit
from tests.test_cli import DRYTORCH, drytorch
from tests.test_registry_processes import TIMEOUT, wait_until
from tests.test_registry_processes import spawn as spawn  # a fixture

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='uses POSIX locks and symbolic links'
)

CHILD = """
ready, go = sys.argv[1], sys.argv[2]
exp = drytorch.Experiment(None, name='exp', par_dir='.')
run = exp.create_run(run_id='live').start()
touch(ready)
wait_for(go)
run.summary['note'] = 'written after the tag'
run.save_summary()
run.stop()
print(run.status)
"""


@pytest.fixture
def live_run(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> Callable[[], subprocess.Popen[str]]:
    """Start a child that runs ``exp/live`` until ``tmp_path/go`` exists."""
    ready = tmp_path / 'ready'

    def start() -> subprocess.Popen[str]:
        proc = spawn(CHILD, ready, tmp_path / 'go')
        wait_until(ready.exists, [proc], 'the live run to start')
        return proc

    return start


def release(proc: subprocess.Popen[str], tmp_path: pathlib.Path) -> str:
    (tmp_path / 'go').touch()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return out


def record_of(exp: Any, run_id: str) -> dict[str, Any]:
    with exp.registry.record_path(exp.key, run_id).open('rb') as file:
        return tomllib.load(file)


def edit_record(
    exp: Any, run_id: str, change: Callable[[dict[str, Any]], None]
) -> None:
    path = exp.registry.record_path(exp.key, run_id)
    data = record_of(exp, run_id)
    change(data)
    path.write_text(tomli_w.dumps(data), encoding='utf-8')


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, '-c', 'pass'])
    done.wait(timeout=TIMEOUT)
    return done.pid


def stale_temp(folder: pathlib.Path, pid: int) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'.tmp-{pid}-0123abcd'
    path.write_bytes(b'half written')
    old = time.time() - 2 * files.STALE_AGE
    os.utime(path, (old, old))
    return path


# --- tags -------------------------------------------------------------------------


def test_tag_and_untag_a_run_in_python() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    assert exp.tag_run('r', 'best', 'seed-1', 'best').tags == ('best', 'seed-1')
    assert exp.tag_run('r', 'best', 'late').tags == ('best', 'seed-1', 'late')
    assert exp.untag_run('r', 'seed-1', 'never-there').tags == ('best', 'late')
    assert record_of(exp, 'r')['tags'] == ['best', 'late']
    assert [r.tags for r in exp.list_runs()] == [('best', 'late')]
    with pytest.raises(exceptions.InvalidNameError):
        exp.tag_run('r', 'bad\ntag')
    with pytest.raises(exceptions.RunNotFoundError):
        exp.tag_run('missing', 'best')
    assert record_of(exp, 'r')['tags'] == ['best', 'late']


def test_a_tag_survives_the_run_running_in_another_process(
    live_run: Callable[[], subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    exp = kit.experiment()
    proc = live_run()
    assert record_of(exp, 'live')['status'] == 'running'
    done = drytorch('tag', 'live', 'keep', 'drop')
    assert done.returncode == 0, done.stderr
    done = drytorch('tag', 'live', 'drop', '--remove', '--experiment', 'exp')
    assert done.returncode == 0, done.stderr
    assert 'keep' in done.stdout
    assert release(proc, tmp_path).strip() == 'completed'
    data = record_of(exp, 'live')
    assert data['status'] == 'completed'
    assert data['summary']['note'] == 'written after the tag'  # the run wrote after
    assert data['tags'] == ['keep']


def test_cli_tag_refuses_bad_tags_and_unknown_runs() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    done = drytorch('tag', 'r', 'bad\x1btag')
    assert done.returncode == 1
    assert 'Tag' in done.stderr
    done = drytorch('tag', 'nope', 'best')
    assert done.returncode == 1
    assert 'No run' in done.stderr
    assert record_of(exp, 'r')['tags'] == []


# --- rm ---------------------------------------------------------------------------


def test_delete_run_removes_the_record_and_files_beside_it() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='a'):
        pass
    with exp.create_run(run_id='b'):
        pass
    runs = exp.registry.root / exp.key / 'runs'
    locks = exp.registry.root / exp.key / 'locks'
    assert (runs / 'b.packages.txt').is_file()
    assert (locks / 'b.lock').exists()
    assert exp.registry.last_id(exp.key) == 'b'
    before = sorted(p.name for p in runs.iterdir())
    exp.delete_run('b')
    assert sorted(p.name for p in runs.iterdir()) == [
        name for name in before if name.startswith('a.')
    ]
    assert {'a.toml', 'a.packages.txt', 'b.toml', 'b.packages.txt'} <= set(before)
    assert not any(p.name.startswith('b.') for p in locks.iterdir())
    assert [r.id for r in exp.list_runs()] == ['a']
    assert exp.registry.last_id(exp.key) == 'a'  # the pointer falls back
    with exp.create_run(resume=True) as resumed:
        assert resumed.id == 'a'
    with pytest.raises(exceptions.RunNotFoundError):
        exp.delete_run('b')


def test_delete_refuses_the_active_run_of_this_process() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'), pytest.raises(exceptions.RunInUseError):
        exp.delete_run('r')
    assert exp.registry.exists(exp.key, 'r')


def test_rm_refuses_a_run_live_in_another_process(
    live_run: Callable[[], subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    exp = kit.experiment()
    proc = live_run()
    done = drytorch('rm', 'live', '--yes', '--outputs')
    assert done.returncode == 1
    assert 'in use' in done.stderr
    with pytest.raises(exceptions.RunInUseError):
        exp.delete_run('live')
    assert exp.registry.exists(exp.key, 'live')
    assert release(proc, tmp_path).strip() == 'completed'
    assert record_of(exp, 'live')['status'] == 'completed'
    done = drytorch('rm', 'live', '--yes')  # stopped: now it may go
    assert done.returncode == 0, done.stderr
    assert not exp.registry.exists(exp.key, 'live')


def test_rm_without_yes_needs_a_terminal() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    done = subprocess.run(
        [str(DRYTORCH), 'rm', 'r'],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert '--yes' in done.stderr
    assert exp.registry.exists(exp.key, 'r')


def train_with_outputs(tmp_path: pathlib.Path) -> tuple[Any, pathlib.Path]:
    """Run ``exp/r`` with checkpoints and CSV files; plant foreign outputs."""
    exp = kit.experiment()
    exp.trackers.subscribe(CSVDumper())
    with exp.create_run(run_id='r'):
        trainer = kit.trainer(kit.linear(name='net'))
        trainer.train(1)
        trainer.save_checkpoint()
        trainer.train(1)
        trainer.save_checkpoint()
    with exp.create_run(run_id='other'):
        other = kit.trainer(kit.linear(name='net'))
        other.train(1)
        other.save_checkpoint()
    outside = tmp_path / 'outside' / 'exp' / 'r'
    outside.mkdir(parents=True)
    (outside / 'precious.txt').write_text('keep me')
    target = tmp_path / 'target'
    (target / 'exp' / 'r').mkdir(parents=True)
    (target / 'exp' / 'r' / 'precious.txt').write_text('keep me too')
    (exp.par_dir / 'linked').symlink_to(target, target_is_directory=True)
    linked = exp.par_dir / 'linked' / 'exp' / 'r'  # a real folder, through a link

    def plant(data: dict[str, Any]) -> None:
        data['summary']['outputs'].update(
            Outside=str(outside), Linked=str(linked), Parent=str(exp.par_dir)
        )

    edit_record(exp, 'r', plant)
    return exp, target


def test_rm_outputs_deletes_only_the_runs_own_outputs(tmp_path: pathlib.Path) -> None:
    exp, target = train_with_outputs(tmp_path)
    par_dir = exp.par_dir
    run_checkpoints = par_dir / 'checkpoints' / 'exp' / 'r'
    csv_folder = par_dir / 'csv_metrics' / 'exp' / 'r'
    assert sorted(p.name for p in (run_checkpoints / 'net').iterdir()) == [
        'epoch_1.pt',
        'epoch_2.pt',
    ]
    assert any(csv_folder.iterdir())
    assert record_of(exp, 'r')['summary']['outputs']['CSVDumper'] == str(csv_folder)
    done = drytorch('rm', 'r', '--outputs', '--yes')
    assert done.returncode == 0, done.stderr
    assert 'could not be removed' not in done.stderr  # each folder removed once
    assert 'checkpoints 2 of model net' in done.stdout
    assert not run_checkpoints.exists()
    assert not csv_folder.exists()
    assert not exp.registry.exists(exp.key, 'r')
    # what is not the run's own stays
    assert (tmp_path / 'outside' / 'exp' / 'r' / 'precious.txt').is_file()
    assert (target / 'exp' / 'r' / 'precious.txt').read_text() == 'keep me too'
    assert (par_dir / 'linked').is_symlink()
    assert 'kept' in done.stdout and 'symbolic link' in done.stdout
    assert (par_dir / 'checkpoints' / 'exp' / 'other' / 'net' / 'epoch_1.pt').is_file()
    assert (par_dir / 'csv_metrics' / 'exp' / 'other').is_dir()
    assert [r.id for r in exp.list_runs()] == ['other']


def test_rm_without_outputs_keeps_checkpoints(tmp_path: pathlib.Path) -> None:
    exp, _ = train_with_outputs(tmp_path)
    done = drytorch('rm', 'r', '--yes')
    assert done.returncode == 0, done.stderr
    assert not exp.registry.exists(exp.key, 'r')
    assert (exp.par_dir / 'checkpoints' / 'exp' / 'r' / 'net' / 'epoch_2.pt').is_file()
    assert (exp.par_dir / 'csv_metrics' / 'exp' / 'r').is_dir()


def test_rm_outputs_refuses_an_edited_par_dir(tmp_path: pathlib.Path) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    elsewhere = tmp_path / 'elsewhere'
    victim = elsewhere / 'checkpoints' / 'exp' / 'r' / 'net' / 'epoch_1.pt'
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b'not this run')
    edit_record(exp, 'r', lambda data: data.update(par_dir=str(elsewhere)))
    with pytest.raises(exceptions.CorruptRecordError):
        exp.delete_run('r', outputs=True)
    assert victim.is_file()
    assert exp.registry.exists(exp.key, 'r')


def test_a_symlinked_checkpoint_folder_is_not_followed(tmp_path: pathlib.Path) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    target = tmp_path / 'target'
    (target / 'net').mkdir(parents=True)
    (target / 'net' / 'epoch_1.pt').write_bytes(b'someone else')
    link = exp.par_dir / 'checkpoints' / 'exp' / 'r'
    link.parent.mkdir(parents=True)
    link.symlink_to(target, target_is_directory=True)
    exp.delete_run('r', outputs=True)
    assert (target / 'net' / 'epoch_1.pt').is_file()
    assert not exp.registry.exists(exp.key, 'r')


# --- gc ---------------------------------------------------------------------------


def test_gc_removes_leftovers_of_dead_processes_only(
    live_run: Callable[[], subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='done'):
        pass
    proc = live_run()
    folder = exp.registry.root / exp.key
    dead, alive = dead_pid(), proc.pid
    garbage = [
        stale_temp(folder / 'runs', dead),
        stale_temp(folder / 'locks', dead),
        stale_temp(folder, dead),
        stale_temp(exp.par_dir / 'checkpoints' / 'exp' / 'done' / 'Model', dead),
    ]
    for name in ('gone.lock', 'gone.write.lock'):
        (folder / 'locks' / name).touch()
        garbage.append(folder / 'locks' / name)
    kept = [
        stale_temp(folder / 'runs', alive),  # its writer is alive
        folder / 'locks' / 'done.lock',  # its run is recorded
        folder / 'locks' / 'live.lock',
        folder / 'locks' / 'last_run.lock',
        # the run is running: never touched
        stale_temp(exp.par_dir / 'checkpoints' / 'exp' / 'live' / 'Model', dead),
    ]
    assert all(path.exists() for path in garbage + kept)
    dry = drytorch('gc', '--dry-run')
    assert dry.returncode == 0, dry.stderr
    assert {line.split(' ', 2)[2] for line in dry.stdout.splitlines()[:-1]} == {
        str(path) for path in garbage
    }
    assert all(path.exists() for path in garbage + kept)
    done = drytorch('gc')
    assert done.returncode == 0, done.stderr
    assert f'{len(garbage)} file(s) removed' in done.stdout
    assert not any(path.exists() for path in garbage)
    assert all(path.exists() for path in kept)
    assert release(proc, tmp_path).strip() == 'completed'


def test_gc_keeps_the_lock_of_a_run_being_created_elsewhere(
    tmp_path: pathlib.Path,
) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='done'):
        pass
    lock = exp.registry.root / exp.key / 'locks' / 'creating.lock'
    code = (
        'import sys, time, filelock, pathlib\n'
        f'lock = filelock.FileLock({str(lock)!r}, timeout=0)\n'
        'lock.acquire()\n'
        f'pathlib.Path({str(tmp_path / "ready")!r}).touch()\n'
        'time.sleep(60)\n'
    )
    proc = subprocess.Popen([sys.executable, '-c', code])
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / 'ready').exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        done = drytorch('gc')
        assert done.returncode == 0, done.stderr
        assert lock.exists()
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
    done = drytorch('gc')
    assert done.returncode == 0, done.stderr
    assert not lock.exists()


@pytest.mark.parametrize(('answer', 'deleted'), [('n', False), ('y', True)])
def test_rm_asks_on_a_terminal(answer: str, deleted: bool) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        pass
    main, terminal = os.openpty()
    try:
        os.write(main, f'{answer}\n'.encode())
        done = subprocess.run(
            [str(DRYTORCH), 'rm', 'r'],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(main)
    assert 'for good?' in done.stdout
    assert done.returncode == (0 if deleted else 1), done.stderr
    assert exp.registry.exists(exp.key, 'r') is not deleted
