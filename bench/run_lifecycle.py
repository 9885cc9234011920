"""Benchmark: ``create_run()`` + ``start()`` + ``stop()`` against a large registry.

Targets, with 10,000 runs of the experiment already recorded:

* the median cycle takes under 25 ms;
* it is no more than 2x the median with 10 runs recorded.

Everything happens in a temporary folder: ``DRYTORCH_REGISTRY_DIR`` points
there, ``DRYTORCH_INIT_MODE=none``, the working directory is a scratch folder,
and the real user data directory is never touched.

Two experiments share the registry, one with ``--small`` and one with
``--large`` runs recorded. The large one is filled by writing record files
with the layout ``RunRegistry.create`` produces (cloned from a run recorded
through the public API), which takes seconds; ``--populate api`` records every
run through ``create_run``/``start``/``stop`` instead (about a minute). The
timed cycles of the two experiments are interleaved, in ABBA order. After each
timed cycle the new run is forgotten again (its record and lock file removed,
``last_run`` restored), so the counts stay at exactly 10 and 10,000 and the
id of the current second is free, as for the first run of a relaunched
script; ``--keep`` keeps them (ids then collide within one second).

Also measured: ``create_run(resume=True)`` + ``start()`` + ``stop()`` of the
newest run, each from a fresh ``Experiment`` as a relaunched process would (the
record is restored after each cycle so that its session list does not grow),
and what the cycle would cost without ``os.fsync`` (a what-if, ``os.fsync``
replaced by a no-op in this process only). ``--profile`` shows where the time
of a cycle goes, with cProfile.

Usage::

    .venv/bin/python bench/run_lifecycle.py [--cycles 60] [--profile]

It always exits 0 and prints PASS or MISS beside each target.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import gc
import os
import pathlib
import pstats
import statistics
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import tomli_w
from scratch import scratch_environment

TARGET_MS = 25.0
TARGET_RATIO = 2.0


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """A small, typical configuration."""

    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    model: str = 'resnet18'
    layers: tuple[int, ...] = (64, 128, 256)


def new_experiment(name: str) -> Any:
    from drytorch import Experiment

    return Experiment(BenchConfig(), name=name)


def populate_files(exp: Any, count: int) -> None:
    """Record ``count`` runs: one through the API, the others as cloned files."""
    template_run = exp.create_run('template')
    template_run.start()
    template_run.stop()
    registry = exp.registry
    template = tomllib.loads(template_run.record_path.read_text(encoding='utf-8'))
    template_run.record_path.unlink()
    registry.lock(exp.key, 'template').path.unlink(missing_ok=True)
    runs = registry.experiment_dir(exp.key) / 'runs'
    # One run a minute, ending a day ago: never the id of the current second.
    newest = datetime.datetime.now().astimezone() - datetime.timedelta(days=1)
    last = ''
    for i in range(count):
        created = newest - datetime.timedelta(minutes=count - 1 - i)
        run_id = created.strftime('%Y-%m-%d_%H-%M-%S')
        started = created + datetime.timedelta(seconds=1)
        stopped = created + datetime.timedelta(seconds=30)
        session = dict(template['sessions'][0])
        session.update(started_at=started, stopped_at=stopped)
        record = dict(template)
        record.update(
            id=run_id,
            created_at=created,
            started_at=started,
            stopped_at=stopped,
            sessions=[session],
        )
        (runs / f'{run_id}.toml').write_bytes(tomli_w.dumps(record).encode())
        last = run_id
    (registry.experiment_dir(exp.key) / 'last_run').write_text(last, encoding='utf-8')


def populate_api(exp: Any, count: int) -> None:
    """Record ``count`` runs through the public API."""
    for i in range(count):
        run = exp.create_run(f'run-{i:05d}')
        run.start()
        run.stop()


def count_records(exp: Any) -> int:
    runs = exp.registry.experiment_dir(exp.key) / 'runs'
    return sum(1 for p in runs.iterdir() if p.suffix == '.toml')


def cycle(exp: Any) -> Any:
    run = exp.create_run()
    run.start()
    run.stop()
    return run


def resume_cycle(exp: Any) -> Any:
    run = exp.create_run(resume=True)
    run.start()
    run.stop()
    return run


class Subject:
    """One experiment, and how to undo what a timed cycle recorded."""

    def __init__(self, name: str, keep: bool) -> None:
        self.name = name
        self.keep = keep
        self.exp = new_experiment(name)
        self.pointer = self.exp.registry.experiment_dir(self.exp.key) / 'last_run'

    def timed_create(self) -> float:
        last = self.pointer.read_bytes()
        gc.collect()
        start = time.perf_counter()
        run = cycle(self.exp)
        elapsed = time.perf_counter() - start
        if not self.keep:
            self.forget(run, last)
        return elapsed

    def forget(self, run: Any, last: bytes) -> None:
        """Remove a run recorded by a cycle, and restore ``last_run``."""
        run.record_path.unlink()
        self.exp.registry.lock(self.exp.key, run.id).path.unlink(missing_ok=True)
        self.pointer.write_bytes(last)
        self.exp = new_experiment(self.name)  # drop its cached runs

    def timed_resume(self) -> float:
        exp = new_experiment(self.name)  # a relaunched process
        last = self.pointer.read_text(encoding='utf-8').strip()
        path = exp.registry.record_path(exp.key, last)
        saved = path.read_bytes()
        gc.collect()
        start = time.perf_counter()
        resume_cycle(exp)
        elapsed = time.perf_counter() - start
        path.write_bytes(saved)
        return elapsed


def interleave(
    cycles: int, variants: dict[str, Callable[[], float]], warmup: int = 3
) -> dict[str, list[float]]:
    """Time the variants in ABBA order; return seconds by variant."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(cycles):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(variants[name]())
    return times


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


@contextmanager
def fsync_patched(replacement: Callable[[int], None]) -> Iterator[None]:
    original = os.fsync
    os.fsync = replacement
    try:
        yield
    finally:
        os.fsync = original


def fsync_cost(folder: pathlib.Path, repeats: int = 200) -> float:
    """Median seconds of one os.fsync of a freshly written 2 KiB file."""
    times = []
    for i in range(repeats):
        with (folder / f'.fsync-probe-{i}').open('xb') as file:
            file.write(b'x' * 2048)
            file.flush()
            start = time.perf_counter()
            os.fsync(file.fileno())
            times.append(time.perf_counter() - start)
        (folder / f'.fsync-probe-{i}').unlink()
    return statistics.median(times)


def count_fsyncs(subject: Subject) -> int:
    calls = 0
    original = os.fsync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        original(fd)

    with fsync_patched(counting):
        subject.timed_create()
    return calls


def profile(subject: Subject, cycles: int, top: int) -> None:
    for _ in range(3):
        subject.timed_create()
    profiler = cProfile.Profile()
    for _ in range(cycles):
        last = subject.pointer.read_bytes()
        profiler.enable()
        run = cycle(subject.exp)
        profiler.disable()
        if not subject.keep:
            subject.forget(run, last)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs()
    total = stats.total_tt
    print(
        f'\ncProfile of {cycles} create/start/stop cycles, {subject.name}: '
        f'{total / cycles * 1e3:.2f} ms a cycle under the profiler'
    )
    print('--- by cumulative time ---')
    stats.sort_stats('cumulative').print_stats(top)
    print('--- by own time ---')
    stats.sort_stats('tottime').print_stats(top)


def ms(seconds: float) -> str:
    return f'{seconds * 1e3:7.2f} ms'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cycles', type=int, default=60, help='at least 50')
    parser.add_argument('--small', type=int, default=10)
    parser.add_argument('--large', type=int, default=10_000)
    parser.add_argument('--populate', choices=('files', 'api'), default='files')
    parser.add_argument(
        '--keep', action='store_true', help='keep the runs the timed cycles record'
    )
    parser.add_argument('--profile', action='store_true', help='cProfile cycles')
    parser.add_argument('--profile-cycles', type=int, default=20)
    parser.add_argument('--top', type=int, default=25)
    args = parser.parse_args()
    cycles = max(args.cycles, 50)

    with scratch_environment('none') as folder:
        import drytorch

        print(f'drytorch {drytorch.__version__}, python {sys.version.split()[0]}')
        print(f'scratch registry in {folder}')
        print(f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs')
        populate = populate_files if args.populate == 'files' else populate_api
        counts = {'small': args.small, 'large': args.large}
        subjects = {}
        for label, count in counts.items():
            name = f'bench-{label}'
            start = time.perf_counter()
            populate(new_experiment(name), count)
            subjects[label] = Subject(name, args.keep)
            found = count_records(subjects[label].exp)
            print(
                f'{name}: {found} runs recorded ({args.populate}) in '
                f'{time.perf_counter() - start:.1f} s'
            )
            if found != count:
                raise RuntimeError(f'expected {count} records, found {found}')
        start = time.perf_counter()
        listed = len(subjects['large'].exp.list_runs())
        print(
            f'(list_runs() of {listed} runs: {time.perf_counter() - start:.2f} s, '
            'not part of the cycle)'
        )
        if listed != counts['large']:  # the cloned records must read as valid
            raise RuntimeError(f'list_runs() read {listed} of {counts["large"]}')

        os.sync()  # write back the population now, not during the timed cycles
        small, large = subjects['small'], subjects['large']
        print(f'\ntiming {cycles} interleaved cycles of each variant...')
        times = interleave(
            cycles,
            {
                'create small': small.timed_create,
                'create large': large.timed_create,
                'resume small': small.timed_resume,
                'resume large': large.timed_resume,
            },
        )
        with fsync_patched(lambda fd: None):
            no_fsync = interleave(
                cycles,
                {
                    'create small': small.timed_create,
                    'create large': large.timed_create,
                },
            )
        fsyncs = count_fsyncs(large)
        one_fsync = fsync_cost(folder / 'registry')

        print(f'\n{"variant":58} {"median":>10} {"p90":>10}')
        rows = [
            ('create_run()+start+stop', 'create', times),
            ('create_run(resume=True)+start+stop', 'resume', times),
            ('create_run()+start+stop, os.fsync a no-op', 'create', no_fsync),
        ]
        for title, kind, table in rows:
            for label in counts:
                values = table[f'{kind} {label}']
                print(
                    f'{title + f" [{counts[label]:,} runs]":58} '
                    f'{ms(statistics.median(values))} {ms(p90(values))}'
                )
        print(
            f'\nos.fsync: {fsyncs} calls a create/start/stop cycle, '
            f'{ms(one_fsync).strip()} each (median of 200 on this disk) '
            f'= {ms(fsyncs * one_fsync).strip()} a cycle'
        )

        median_small = statistics.median(times['create small'])
        median_large = statistics.median(times['create large'])
        ratio = median_large / median_small
        resume_large = statistics.median(times['resume large'])
        print()
        verdict_abs = 'PASS' if median_large * 1e3 < TARGET_MS else 'MISS'
        verdict_ratio = 'PASS' if ratio <= TARGET_RATIO else 'MISS'
        print(
            f'median with {counts["large"]:,} runs: {ms(median_large).strip()}, '
            f'target < {TARGET_MS:.0f} ms: {verdict_abs}'
        )
        print(
            f'ratio {counts["large"]:,} / {counts["small"]:,} runs: {ratio:.2f}x, '
            f'target <= {TARGET_RATIO:.0f}x: {verdict_ratio}'
        )
        print(
            f'resume median with {counts["large"]:,} runs: '
            f'{ms(resume_large).strip()} (informational; same {TARGET_MS:.0f} ms '
            f'budget: {"PASS" if resume_large * 1e3 < TARGET_MS else "MISS"})'
        )
        overall = 'PASS' if verdict_abs == verdict_ratio == 'PASS' else 'MISS'
        print(f'run_lifecycle: {overall}')
        print(f'(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)')

        if args.profile:
            profile(large, args.profile_cycles, args.top)


if __name__ == '__main__':
    main()
