"""Benchmark: the run registry at sweep scale (1,000 to 100,000 runs).

Target: with 100,000 runs of one experiment recorded, each of these takes at
most 0.5 s:

* ``drytorch runs`` and ``drytorch runs --json`` (the newest 100, as they
  list by default), and ``drytorch runs`` with status, tag and sort filters
  (fresh processes; the target applies to the wall time minus that of
  ``drytorch --help``, the start-up);
* ``experiment.list_runs()`` with the newest 100 records read, and
  ``list_runs(status=..., tags=..., limit=50)`` with its records read,
  in-process from a fresh ``Experiment``;
* ``experiment.create_run(resume=True)`` + ``start()`` + ``stop()`` of the
  newest run (the ``last_run`` pointer path), from a fresh ``Experiment``;
* ``drytorch show RUN`` of a run in the middle (fresh process, net of start-up).

Reading every record of a listing (``list_all``) is timed without a target:
it is linear by nature. The first listing of a registry written without the
index (as the clones are) builds it from the records; that is timed once.
The resume restores the record in place and removes what it added, so most
listings find the runs folder changed and compare it with the index (the
cost during a sweep), rather than the quiet path.

Each size gets its own registry in a temporary folder (``DRYTORCH_REGISTRY_DIR``
points there, ``DRYTORCH_INIT_MODE=none``, the working directory is a scratch
folder; the real user data directory is never touched). The registry is
filled by ``clone_records``: one run is recorded through the public API
(``create_run``/``start``/``stop``), and its TOML record is cloned with new
ids and ``created_at`` times, one run a minute ending a day ago, as
``bench/run_lifecycle.py`` does. Unlike there, the clones vary: 70 %
completed, 20 % failed (with an ``error``), 10 % crashed-looking (``running``
on this host with no lock held, which the registry reports as ``crashed``),
and tags (``sweep``, one of four ``lr-*`` tags, ``best`` on every 97th), so
filters have something to select. Files are written by parallel processes.

The operations of a size are timed in rounds, in an order rotated from round
to round; the figure is the median over rounds (``--repeats``, at least 3;
cut to 3 when one round takes more than ``--round-budget`` seconds). Resumed
records, pointer and run folder are restored after each resume so the sizes
stay exact. Sizes that are not measured (``--sizes 1000,10000``) are
extrapolated to 100,000 runs by a straight line through the two largest.

Usage::

    .venv/bin/python bench/registry_scale.py                     # 1k, 10k, 100k
    .venv/bin/python bench/registry_scale.py --sizes 1000,10000  # skip 100k

It always exits 0 and prints PASS or MISS beside each target.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import multiprocessing
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import tomli_w
from run_lifecycle import new_experiment
from scratch import scratch_environment

TARGET_S = 0.5
TARGET_SIZE = 100_000
EXPERIMENT = 'sweep'
PARALLEL_FROM = 2_000  # fewer records are written by this process
LR_TAGS = ('lr-1e-4', 'lr-3e-4', 'lr-1e-3', 'lr-3e-3')

FILTERS = ('--status', 'completed', '--tag', 'best', '--sort', 'started', '--desc')
# name: (label, target applies)
OPERATIONS = {
    'help': ('drytorch --help (start-up)', False),
    'runs': ('drytorch runs (newest 100)', True),
    'runs_json': ('drytorch runs --json (newest 100)', True),
    'runs_filtered': ('drytorch runs --status --tag --sort --desc', True),
    'show': ('drytorch show RUN (middle run)', True),
    'list_runs': ('list_runs() + newest 100 records', True),
    'list_filtered': ('list_runs(status, tags, limit=50)', True),
    'list_all': ('list_runs(): every record read', False),
    'resume': ('create_run(resume=True)+start+stop', True),
}
CLI_OPERATIONS = ('runs', 'runs_json', 'runs_filtered', 'show')
MORE_NOTE = 'newest shown'  # drytorch runs --json says on stderr what it left out


def cli_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / 'drytorch'
    if script.exists():
        return [str(script)]
    return [sys.executable, '-m', 'drytorch.cli']


# --------------------------------------------------------------------------
# the generator


def record_template(exp: Any) -> dict[str, Any]:
    """Record one run through the API; return its record and forget the run."""
    run = exp.create_run('template')
    run.start()
    run.stop()
    template = tomllib.loads(run.record_path.read_text(encoding='utf-8'))
    runs = run.record_path.parent
    for path in runs.glob('template.*'):
        path.unlink()
    for path in (exp.registry.experiment_dir(exp.key) / 'locks').glob('template.*'):
        path.unlink()
    return template


def dead_pid() -> int:
    """The pid of a process that has exited (for crashed-looking records)."""
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    return child.pid


def clone(
    template: dict[str, Any], i: int, count: int, newest: datetime.datetime, pid: int
) -> tuple[str, bytes]:
    """Return the id and TOML bytes of clone ``i`` of ``count``.

    Clone ``count - 1`` is the newest and always completed (the one resumed).
    """
    created = newest - datetime.timedelta(minutes=count - 1 - i)
    run_id = created.strftime('%Y-%m-%d_%H-%M-%S')
    started = created + datetime.timedelta(seconds=1)
    stopped = created + datetime.timedelta(seconds=30)
    kind = i % 10
    if i == count - 1 or kind < 7:
        status = 'completed'
    elif kind < 9:
        status = 'failed'
    else:
        status = 'running'  # lock not held, this host: listed as crashed
    tags = ['sweep', LR_TAGS[i % len(LR_TAGS)]]
    if i % 97 == 0:
        tags.append('best')
    session = dict(template['sessions'][0], started_at=started, status=status)
    record = dict(
        template,
        id=run_id,
        status=status,
        created_at=created,
        started_at=started,
        tags=tags,
        sessions=[session],
    )
    if status == 'running':
        record.pop('stopped_at', None)
        session.pop('stopped_at', None)
        record['pid'] = session['pid'] = pid
    else:
        record['stopped_at'] = session['stopped_at'] = stopped
    if status == 'failed':
        record['error'] = 'RuntimeError: loss diverged'
    return run_id, tomli_w.dumps(record).encode()


def _write_chunk(job: tuple[Any, ...]) -> int:
    runs, template, start, stop, count, newest, pid = job
    for i in range(start, stop):
        run_id, content = clone(template, i, count, newest, pid)
        with open(runs / f'{run_id}.toml', 'xb') as file:
            file.write(content)
    return stop - start


def clone_records(exp: Any, count: int, workers: int) -> str:
    """Fill the experiment with ``count`` real records; return the newest id.

    One run is recorded through the API and its record cloned (see the module
    docstring); ``workers`` processes write the files. ``last_run`` points at
    the newest clone, as ``RunRegistry.create`` leaves it.
    """
    template = record_template(exp)
    exp_dir = exp.registry.experiment_dir(exp.key)
    runs = exp_dir / 'runs'
    # One run a minute, ending a day ago: never the id of the current second.
    newest = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    newest = newest.replace(microsecond=0)
    pid = dead_pid()
    chunk = max(1, min(5_000, -(-count // max(1, workers))))
    jobs = [
        (runs, template, start, min(start + chunk, count), count, newest, pid)
        for start in range(0, count, chunk)
    ]
    if workers > 1 and count >= PARALLEL_FROM:
        with multiprocessing.get_context('fork').Pool(workers) as pool:
            written = sum(pool.imap_unordered(_write_chunk, jobs))
    else:
        written = sum(_write_chunk(job) for job in jobs)
    if written != count:
        raise RuntimeError(f'wrote {written} of {count} records')
    last_id, _ = clone(template, count - 1, count, newest, pid)
    last_created = newest.isoformat()
    (exp_dir / 'last_run').write_text(f'{last_id}\n{last_created}\n', encoding='utf-8')
    return last_id


def middle_id(exp: Any, count: int) -> str:
    """The id of the run in the middle (ids sort as their creation times)."""
    runs = sorted(
        p.stem for p in (exp.registry.experiment_dir(exp.key) / 'runs').glob('*.toml')
    )
    return runs[count // 2]


# --------------------------------------------------------------------------
# the timed operations


class Size:
    """One registry of ``count`` runs and its timed operations."""

    def __init__(self, folder: pathlib.Path, count: int, workers: int) -> None:
        self.count = count
        self.root = folder / f'registry-{count}'
        os.environ['DRYTORCH_REGISTRY_DIR'] = str(self.root)
        start = time.perf_counter()
        exp = new_experiment(EXPERIMENT)
        self.last = clone_records(exp, count, workers)
        self.build_s = time.perf_counter() - start
        self.exp_dir = exp.registry.experiment_dir(exp.key)
        self.middle = middle_id(exp, count)
        self.env = dict(os.environ)
        self.cli = cli_command()
        self.cli_errors: list[str] = []
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the notice that the index was built
            exp.list_runs()
        self.index_s = time.perf_counter() - start

    def activate(self) -> None:
        os.environ['DRYTORCH_REGISTRY_DIR'] = str(self.root)

    def _cli(self, *args: str) -> float:
        start = time.perf_counter()
        done = subprocess.run(
            [*self.cli, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        elapsed = time.perf_counter() - start
        message = [
            line
            for line in done.stderr.decode(errors='replace').strip().splitlines()
            if MORE_NOTE not in line
        ]
        if done.returncode != 0 or message:
            self.cli_errors.append(
                f'drytorch {" ".join(args)}: exit {done.returncode}: '
                f'{message[-1] if message else ""}'
            )
        return elapsed

    def help(self) -> float:
        return self._cli('--help')

    def runs(self) -> float:
        return self._cli('runs')

    def runs_json(self) -> float:
        return self._cli('runs', '--json')

    def runs_filtered(self) -> float:
        return self._cli('runs', *FILTERS)

    def show(self) -> float:
        return self._cli('show', self.middle)

    def _listing(self, read: Callable[[Any], object], **filters: Any) -> float:
        exp = new_experiment(EXPERIMENT)
        gc.collect()
        start = time.perf_counter()
        read(exp.list_runs(**filters))
        return time.perf_counter() - start

    def list_runs(self) -> float:
        def newest(listed: Any) -> object:
            if len(listed) != self.count:
                raise RuntimeError(f'listed {len(listed)} of {self.count} runs')
            return [(r.status, r.tags) for r in listed[-100:]]

        return self._listing(newest)

    def list_filtered(self) -> float:
        return self._listing(
            lambda listed: [(r.status, r.tags) for r in listed],
            status='failed',
            tags='lr-1e-3',
            limit=50,
        )

    def list_all(self) -> float:
        return self._listing(lambda listed: [r.status for r in listed])

    def resume(self) -> float:
        pointer = self.exp_dir / 'last_run'
        runs = self.exp_dir / 'runs'
        saved_pointer = pointer.read_bytes()
        record = runs / f'{self.last}.toml'
        saved = record.read_bytes()
        before = set(os.listdir(runs))
        exp = new_experiment(EXPERIMENT)  # a relaunched process
        gc.collect()
        start = time.perf_counter()
        run = exp.create_run(resume=True)
        run.start()
        run.stop()
        elapsed = time.perf_counter() - start
        if run.id != self.last:
            raise RuntimeError(f'resumed {run.id}, expected {self.last}')
        record.write_bytes(saved)
        pointer.write_bytes(saved_pointer)
        for name in set(os.listdir(runs)) - before:
            (runs / name).unlink()
        return elapsed


def time_size(size: Size, repeats: int, round_budget: float) -> dict[str, list[float]]:
    size.activate()
    os.sync()  # write the build back now, not during the timed rounds
    size.help()  # warm the interpreter's files
    size.resume()
    operations: dict[str, Callable[[], float]] = {
        name: getattr(size, name) for name in OPERATIONS
    }
    names = list(operations)
    times: dict[str, list[float]] = {name: [] for name in names}
    rounds = repeats
    i = 0
    while i < rounds:
        start = time.perf_counter()
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(operations[name]())
        if i == 0 and time.perf_counter() - start > round_budget:
            rounds = min(rounds, 3)
        i += 1
    return times


# --------------------------------------------------------------------------
# reporting


def verdict(seconds: float) -> str:
    return 'PASS' if seconds <= TARGET_S else 'MISS'


def net_medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Median of each operation; CLI ones net of the same round's start-up."""
    medians = {}
    for name, values in times.items():
        if name in CLI_OPERATIONS:
            net = [v - h for v, h in zip(values, times['help'], strict=True)]
            medians[name] = max(0.0, statistics.median(net))
        else:
            medians[name] = statistics.median(values)
    return medians


def print_size(size: Size, times: dict[str, list[float]]) -> dict[str, float]:
    medians = net_medians(times)
    rounds = len(times['help'])
    print(f'\n{size.count:,} runs, {rounds} rounds (median; CLI net of start-up)')
    print(f'  {"operation":38} {"median":>9} {"raw":>9}   target')
    for name, (label, targeted) in OPERATIONS.items():
        raw = statistics.median(times[name])
        target = f'<= {TARGET_S} s: {verdict(medians[name])}' if targeted else ''
        print(f'  {label:38} {medians[name]:8.3f}s {raw:8.3f}s   {target}')
    for error in dict.fromkeys(size.cli_errors):
        print(f'  warning: {error}')
    return medians


def extrapolate(points: dict[int, float], size: int) -> float:
    """The value at ``size`` on the line through the two largest sizes.

    Never below the largest size's value: noise must not make time shrink.
    """
    (n1, t1), (n2, t2) = sorted(points.items())[-2:]
    slope = (t2 - t1) / (n2 - n1)
    return max(t2, t2 + slope * (size - n2))


def print_summary(results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    smallest, largest = sizes[0], sizes[-1]
    measured = TARGET_SIZE in results
    where = 'measured' if measured else 'extrapolated'
    print(f'\nsummary: target <= {TARGET_S} s at {TARGET_SIZE:,} runs ({where})')
    header = ''.join(f'{n:>10,}' for n in sizes)
    if not measured:
        header += f'{"100k (ext)":>12}'
    print(f'  {"operation":38}{header}   growth   verdict')
    misses = 0
    for name, (label, targeted) in OPERATIONS.items():
        points = {n: results[n][name] for n in sizes}
        row = ''.join(f'{points[n]:9.3f}s' for n in sizes)
        if measured:
            at_target = points[TARGET_SIZE]
        elif len(sizes) >= 2:
            at_target = extrapolate(points, TARGET_SIZE)
            row += f'{at_target:11.3f}s'
        else:
            at_target = float('nan')
            row += f'{"-":>12}'
        base = points[smallest] or float('nan')
        if measured and smallest != TARGET_SIZE:
            growth = f'{points[TARGET_SIZE] / base:6.1f}x'
        elif len(sizes) >= 2:
            growth = f'{at_target / base:6.1f}x*'
        else:
            growth = '     -'
        result = verdict(at_target) if targeted and at_target == at_target else ''
        misses += result == 'MISS'
        print(f'  {label:38}{row}   {growth:8} {result}')
    note = ''
    if not measured and len(sizes) >= 2:
        note = f' (*: extrapolated on the line through {sizes[-2]:,} and {largest:,})'
    print(f'  growth: time at {TARGET_SIZE:,} / time at {smallest:,} runs{note}')
    targeted = sum(targeted for _, targeted in OPERATIONS.values())
    print(
        f'registry_scale: {"PASS" if misses == 0 else f"MISS ({misses} of {targeted})"}'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1000,10000,100000')
    parser.add_argument('--repeats', type=int, default=5, help='at least 3')
    parser.add_argument(
        '--round-budget',
        type=float,
        default=30.0,
        help='seconds: a longer first round cuts the rounds to 3',
    )
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sizes = sorted({int(s.replace('_', '')) for s in args.sizes.split(',') if s})
    repeats = max(3, args.repeats)

    with scratch_environment('none') as folder:
        import drytorch

        print(f'drytorch {drytorch.__version__}, python {sys.version.split()[0]}')
        print(f'scratch registries in {folder}; CLI: {" ".join(cli_command())}')
        print(f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
        results: dict[int, dict[str, float]] = {}
        for count in sizes:
            size = Size(folder, count, args.workers)
            on_disk = sum(1 for p in (size.exp_dir / 'runs').glob('*.toml'))
            mb = sum(p.stat().st_size for p in (size.exp_dir / 'runs').iterdir())
            print(
                f'\nbuilt {on_disk:,} records ({mb / 2**20:.0f} MiB) in '
                f'{size.build_s:.1f} s with '
                f'{args.workers if count >= PARALLEL_FROM else 1} process(es)'
            )
            if on_disk != count:
                raise RuntimeError(f'expected {count} records, found {on_disk}')
            print(
                f'first listing built the index from the records in '
                f'{size.index_s:.1f} s (once: a registry written without it)'
            )
            times = time_size(size, repeats, args.round_budget)
            listed = new_experiment(EXPERIMENT).list_runs()
            statuses = Counter(r.status for r in listed)
            best = sum('best' in r.tags for r in listed)
            print(
                f'list_runs() read {len(listed):,}: '
                + ', '.join(f'{n:,} {s}' for s, n in sorted(statuses.items()))
                + f'; {best:,} tagged best'
            )
            if len(listed) != count:
                print(f'warning: list_runs() read {len(listed)} of {count}')
            results[count] = print_size(size, times)
            shutil.rmtree(size.root)
        print_summary(results)
        print(f'(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)')


if __name__ == '__main__':
    try:
        main()
    except Exception as err:  # a benchmark: report, never fail the caller
        print(f'registry_scale: error: {type(err).__name__}: {err}')
    sys.exit(0)
