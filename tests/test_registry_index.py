"""The registry index: listings read it, and it never lies about the records.

Every test works on a real registry on disk; concurrency uses real processes.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import tomli_w

from drytorch.core import registry, registry_index
from tests.test_cli import drytorch
from tests.test_record_integrity import UNSHARE
from tests.test_registry_processes import TIMEOUT, load, make_exp, spawn, wait_until

__all__ = ['spawn']  # the fixture, used by name

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='POSIX inodes and process semantics'
)


def index_path(exp: Any) -> pathlib.Path:
    return exp.registry.experiment_dir(exp.key) / registry_index.INDEX_FILE


def record_file(exp: Any, run_id: str) -> pathlib.Path:
    return exp.registry.record_path(exp.key, run_id)


def three_runs() -> Any:
    exp = make_exp()
    for run_id in ('a', 'b', 'c'):
        with exp.create_run(run_id=run_id):
            pass
    exp.tag_run('b', 'best')
    return exp


def listed(exp: Any, **filters: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    del exp  # listed afresh, as by another process
    runs = make_exp().list_runs(**filters)
    return [(r.id, r.status, r.tags) for r in runs]


def rebuilt_notices(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, registry_index.IndexRebuiltWarning)
    ]


EXPECTED = [
    ('a', 'completed', ()),
    ('b', 'completed', ('best',)),
    ('c', 'completed', ()),
]


def test_runs_write_the_index_and_listings_read_it() -> None:
    exp = three_runs()
    with sqlite3.connect(index_path(exp)) as conn:
        rows = dict(conn.execute('SELECT id, status FROM runs'))
        tags = list(conn.execute('SELECT id, tag FROM tags'))
    assert rows == {'a': 'completed', 'b': 'completed', 'c': 'completed'}
    assert tags == [('b', 'best')]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert listed(exp) == EXPECTED
        assert listed(exp, tags='best') == [EXPECTED[1]]
    assert not caught  # an index kept by the runs needs no rebuilding


@pytest.mark.parametrize('damage', ['deleted', 'corrupt', 'truncated'])
def test_index_is_rebuilt_after_deletion_or_corruption(damage: str) -> None:
    exp = three_runs()
    path = index_path(exp)
    for suffix in ('-wal', '-shm'):
        pathlib.Path(f'{path}{suffix}').unlink(missing_ok=True)
    if damage == 'deleted':
        path.unlink()
    elif damage == 'corrupt':
        path.write_bytes(b'this is not a database, whatever it says' * 100)
    else:
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert listed(exp) == EXPECTED
        assert listed(exp, tags='best') == [EXPECTED[1]]
    notices = rebuilt_notices(caught)
    assert len(notices) == 1, notices  # once: the second listing found it sound
    assert 'rebuilt' in notices[0] and exp.key in notices[0]
    with sqlite3.connect(path) as conn:
        assert conn.execute('SELECT count(*) FROM runs').fetchone()[0] == 3


def test_foreign_index_is_replaced() -> None:
    exp = three_runs()
    # an index copied with another experiment's folder
    other_folder = exp.registry.experiment_dir('other-key')
    shutil.copytree(exp.registry.experiment_dir(exp.key), other_folder)
    for path in (other_folder / 'runs').iterdir():
        if path.stem != 'a':
            path.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runs = exp.registry.list_runs('other-key')
        assert [r.id for r in runs] == ['a']
    notices = rebuilt_notices(caught)
    assert len(notices) == 1 and 'experiment' in notices[0], notices


def test_records_written_without_the_index_are_picked_up() -> None:
    """As by an older version, a copy, or a hand: the files are the truth."""
    exp = three_runs()
    data = load(exp, 'a')
    data.update(id='older', status='failed', tags=['old'])
    record_file(exp, 'older').write_bytes(tomli_w.dumps(data).encode())
    record_file(exp, 'c').unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert listed(exp) == [EXPECTED[0], ('older', 'failed', ('old',)), EXPECTED[1]]
        assert listed(exp, status='failed') == [('older', 'failed', ('old',))]
    assert not rebuilt_notices(caught)  # records, not the index, changed


@pytest.mark.parametrize('how', ['in place', 'replaced'])
def test_record_edited_by_hand_shows_its_new_values(how: str) -> None:
    exp = three_runs()
    path = record_file(exp, 'a')
    text = path.read_text(encoding='utf-8')
    data = tomllib.loads(text)
    data.update(status='failed', tags=['edited'], note='by hand')
    new = tomli_w.dumps(data)
    if how == 'in place':  # the same file rewritten, as many editors do
        with path.open('r+', encoding='utf-8') as file:
            file.write(new)
            file.truncate()
    else:  # a new file renamed over it, as other editors and sed -i do
        temp = path.with_name('.edit')
        temp.write_text(new, encoding='utf-8')
        os.replace(temp, path)
    assert listed(exp)[0] == ('a', 'failed', ('edited',))
    assert listed(exp, tags='edited') == [('a', 'failed', ('edited',))]
    assert listed(exp, status='completed') == EXPECTED[1:]
    assert make_exp().list_runs()[0].data['note'] == 'by hand'
    rows = json.loads(drytorch('runs', '--json', '--tag', 'edited').stdout)
    assert [(r['id'], r['status'], r['note']) for r in rows] == [
        ('a', 'failed', 'by hand')
    ]


def test_large_registries_compare_inodes_and_what_they_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above FULL_CHECK records, files are not all stat'ed on every listing.

    Replaced records (every drytorch write, most editors) are still found by
    their inode; a record edited in place shows its new values wherever a
    listing returns it, and filters see it after ``refresh=True``.
    """
    exp = three_runs()
    monkeypatch.setattr(registry_index, 'FULL_CHECK', 0)
    listed(exp)
    replaced = load(exp, 'b')
    replaced['tags'] = ['swapped']
    temp = record_file(exp, 'b').with_name('.swap')
    temp.write_bytes(tomli_w.dumps(replaced).encode())
    os.replace(temp, record_file(exp, 'b'))
    assert listed(exp, tags='swapped') == [('b', 'completed', ('swapped',))]
    path = record_file(exp, 'c')
    data = load(exp, 'c')
    data['tags'] = ['in-place']
    with path.open('r+b') as file:
        file.write(tomli_w.dumps(data).encode())
        file.truncate()
    assert listed(exp)[2] == ('c', 'completed', ('in-place',))  # returned: checked
    assert listed(exp, tags='in-place', refresh=True) == [
        ('c', 'completed', ('in-place',))
    ]
    assert listed(exp, tags='in-place') == [('c', 'completed', ('in-place',))]


def test_unreadable_record_is_reported_by_every_listing() -> None:
    exp = three_runs()
    record_file(exp, 'b').write_text('status = [', encoding='utf-8')
    for _ in range(2):
        with pytest.warns(registry.RecordWarning, match='b.toml'):
            assert [r[0] for r in listed(exp)] == ['a', 'c']


def test_a_run_removed_after_listing_keeps_its_listed_fields() -> None:
    three_runs()
    runs = make_exp().list_runs()
    make_exp().delete_run('b')
    assert [r.id for r in runs] == ['a', 'b', 'c']
    assert runs[1].status == 'completed' and runs[1].data['id'] == 'b'
    assert [r.id for r in make_exp().list_runs()] == ['a', 'c']


def test_run_list_is_a_lazy_sequence() -> None:
    exp = three_runs()
    runs = make_exp().list_runs(limit=2)
    assert len(runs) == 2 and runs.matched == 3 and runs.ids == ['b', 'c']
    assert runs == [runs[0], runs[1]] and runs[-1].id == 'c'
    assert [r.id for r in runs[::-1]] == ['c', 'b']
    assert make_exp().list_runs(limit=0) == []
    with pytest.raises(IndexError):
        runs[2]
    assert 'b' in repr(runs)
    del exp


def test_cli_lists_the_newest_100_unless_asked(tmp_path: pathlib.Path) -> None:
    exp = make_exp()
    with exp.create_run(run_id='template'):
        pass
    template = load(exp, 'template')
    first = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    for n in range(104):  # written as an older version would: no index rows
        created = first + datetime.timedelta(minutes=n)
        data = dict(template, id=f'r{n:03d}', created_at=created)
        record_file(exp, f'r{n:03d}').write_bytes(tomli_w.dumps(data).encode())
    table = drytorch('runs').stdout.splitlines()
    assert len(table) == 1 + 100 + 1  # header, rows, what was left out
    assert '5 more' in table[-1] and '--all' in table[-1]
    assert 'r005' in table[1] and 'template' in table[100]
    assert len(drytorch('runs', '--all').stdout.splitlines()) == 1 + 105
    assert len(drytorch('runs', '--limit', '3').stdout.splitlines()) == 1 + 3
    done = drytorch('runs', '--json')
    assert len(json.loads(done.stdout)) == 100 and '5 more' in done.stderr
    assert len(json.loads(drytorch('runs', '--json', '--all').stdout)) == 105


WRITER = """
log = open(sys.argv[1], 'a', buffering=1)
for n in range(int(sys.argv[2])):
    run = exp.create_run(run_id=f'{sys.argv[3]}-{n}')
    log.write(f'{run.id} {time.monotonic_ns()}\\n')
    run.start()
    if n % 3 == 0:
        exp.tag_run(run.id, 'third')
    run.stop()
"""

LISTER = """
import json
from drytorch.core import registry_index
if sys.argv[3] == 'large':
    registry_index.FULL_CHECK = 0  # compare inodes only, as above 5,000 runs
out = open(sys.argv[1], 'a', buffering=1)
while not os.path.exists(sys.argv[2]):
    start = time.monotonic_ns()
    runs = exp.list_runs()
    seen = [(r.id, r.status, r.data['id']) for r in runs]
    tagged = [r.id for r in exp.list_runs(tags='third')]
    out.write(json.dumps({'start': start, 'runs': seen, 'tagged': tagged}) + '\\n')
"""


def test_concurrent_writers_and_listers_never_miss_or_tear_a_run(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    per_writer = 15
    done = tmp_path / 'done'
    writers = [
        spawn(WRITER, tmp_path / f'w{i}.log', per_writer, f'w{i}') for i in range(3)
    ]
    listers = [
        spawn(LISTER, tmp_path / f'l{kind}.log', done, kind)
        for kind in ('small', 'large')
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
    wait_until(
        lambda: all((tmp_path / f'l{k}.log').exists() for k in ('small', 'large')),
        listers,
        'listers to write',
    )
    time.sleep(0.3)  # a few listings after the last run
    done.touch()
    for proc in listers:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
    created = {}
    for i in range(3):
        for line in (tmp_path / f'w{i}.log').read_text().splitlines():
            run_id, when = line.split()
            created[run_id] = int(when)
    assert len(created) == 3 * per_writer
    listings = [
        json.loads(line)
        for kind in ('small', 'large')
        for line in (tmp_path / f'l{kind}.log').read_text().splitlines()
    ]
    assert len(listings) >= 4
    for listing in listings:
        ids = [run_id for run_id, _, _ in listing['runs']]
        assert len(ids) == len(set(ids))
        must = {run_id for run_id, when in created.items() if when < listing['start']}
        assert must <= set(ids), sorted(must - set(ids))
        for run_id, status, data_id in listing['runs']:
            assert data_id == run_id  # a whole record behind every listed run
            assert status in {'created', 'running', 'completed'}
    final = [(r.id, r.status) for r in make_exp().list_runs()]
    assert sorted(final) == sorted((run_id, 'completed') for run_id in created)
    third = {f'w{i}-{n}' for i in range(3) for n in range(0, per_writer, 3)}
    assert {r.id for r in make_exp().list_runs(tags='third')} == third


READ_ONLY = """
import os, pathlib, subprocess, sys, tomllib, tomli_w, warnings
root = pathlib.Path(sys.argv[1])
subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(root)],
               check=True)
os.environ['DRYTORCH_REGISTRY_DIR'] = str(root / 'registry')
import drytorch
exp = drytorch.Experiment(None, name='exp', par_dir=str(root / 'out'))
for run_id in ('a', 'b'):
    with exp.create_run(run_id=run_id):
        pass
runs = root / 'registry' / exp.key / 'runs'
data = tomllib.loads((runs / 'a.toml').read_text())
data.update(id='hand', tags=['by-hand'])
(runs / 'hand.toml').write_bytes(tomli_w.dumps(data).encode())
from drytorch.core import registry_index
registry_index.close_connections()  # an open database keeps the disk busy
subprocess.run(['mount', '-o', 'remount,ro', str(root)], check=True)
before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob('*'))
with warnings.catch_warnings():
    warnings.simplefilter('error')
    again = drytorch.Experiment(None, name='exp', par_dir=str(root / 'out'))
    print('IDS', [r.id for r in again.list_runs()])
    print('TAGGED', [r.id for r in exp.list_runs(tags='by-hand')])
assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob('*')) == before
"""


def test_read_only_registry_is_listed_from_an_index_in_memory(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / 'mnt'
    root.mkdir()
    probe = subprocess.run([*UNSHARE, 'true'], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip('needs mount namespaces (unshare --mount) for a read-only disk')
    done = subprocess.run(
        [*UNSHARE, sys.executable, '-c', READ_ONLY, str(root)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, DRYTORCH_INIT_MODE='none'),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IDS ['a', 'hand', 'b']" in done.stdout  # hand: a copy of a
    assert "TAGGED ['hand']" in done.stdout
