"""Benchmark: what ``import drytorch`` adds to ``import torch``.

Target: ``import drytorch`` adds at most 0.15 s to ``import torch``.

Every measurement runs in a fresh interpreter, so nothing is cached in
``sys.modules``; the three variants are interleaved, with their order rotated
each round, so drifts in machine load hit them alike. Each child times its own
import statements with ``time.perf_counter`` (interpreter start-up is the same
for every variant and is left out), and the variants that import drytorch also
time the drytorch import alone, after torch, which gives a paired measure that
does not suffer from the noise of torch's own import time.

Usage::

    .venv/bin/python bench/import_time.py [--rounds 21] [--verbose]

It always exits 0 and prints PASS or MISS beside the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TARGET_S = 0.15

# Each child prints a JSON object: the total time of its imports and, where it
# imports drytorch, the time of that import alone.
_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
assert 'torch' in sys.modules
print(json.dumps({{'total': t2 - t0, 'torch': t1 - t0, 'drytorch': t2 - t1}}))
"""

VARIANTS = {
    'import torch': '',
    'import torch; import drytorch': 'import drytorch',
    'import torch; from drytorch import Experiment': (
        'from drytorch import Experiment'
    ),
}


def _child_env(folder: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('DRYTORCH_')}
    # Importing must not touch the registry; point it at a scratch folder anyway.
    env['DRYTORCH_REGISTRY_DIR'] = os.path.join(folder, 'registry')
    env['DRYTORCH_INIT_MODE'] = 'none'
    return env


def _run_child(extra: str, env: dict[str, str], cwd: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, '-c', _CHILD.format(extra=extra)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(rounds: int, env: dict[str, str], cwd: str) -> dict[str, list[dict]]:
    names = list(VARIANTS)
    for name in names:  # warm the page cache and the bytecode caches
        _run_child(VARIANTS[name], env, cwd)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(_run_child(VARIANTS[name], env, cwd))
        print(f'  round {i + 1}/{rounds} done', end='\r', file=sys.stderr)
    print(file=sys.stderr)
    return results


def importtime_offenders(
    statement: str, env: dict[str, str], cwd: str, top: int
) -> None:
    """Print the slowest modules loaded after torch (python -X importtime)."""
    code = f'import torch\n{statement}'
    done = subprocess.run(
        [sys.executable, '-X', 'importtime', '-c', code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    after_torch = False
    for line in done.stderr.splitlines():
        if not line.startswith('import time:') or 'self [us]' in line:
            continue
        self_us, cumulative_us, name = line.split(':', 1)[1].split('|', 2)
        if not after_torch:
            if name == ' torch':
                after_torch = True
            continue
        rows.append((int(self_us), int(cumulative_us), name.rstrip()))
    top_level = [r for r in rows if r[2].startswith(' ') and not r[2].startswith('  ')]
    total_us = sum(r[1] for r in top_level)
    print(f'\n-X importtime, {statement!r} after torch: {total_us / 1e3:.1f} ms')
    print('  top-level imports (cumulative):')
    for _, cumulative, name in sorted(top_level, key=lambda r: -r[1])[:top]:
        print(f'    {cumulative / 1e3:8.2f} ms  {name.strip()}')
    print('  slowest modules (self time):')
    for self_us, _, name in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f'    {self_us / 1e3:8.2f} ms  {name.strip()}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=21, help='at least 15')
    parser.add_argument(
        '--verbose', action='store_true', help='show -X importtime top offenders'
    )
    parser.add_argument('--top', type=int, default=12)
    args = parser.parse_args()
    rounds = max(args.rounds, 15)

    with tempfile.TemporaryDirectory(prefix='drytorch-bench-') as folder:
        env = _child_env(folder)
        print(
            f'python {sys.version.split()[0]}, {rounds} interleaved rounds, '
            f'load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs'
        )
        results = measure(rounds, env, folder)
        if args.verbose:
            for statement in VARIANTS.values():
                if statement:
                    importtime_offenders(statement, env, folder, args.top)

    print()
    print(f'{"variant":48} {"median":>9} {"p10":>9} {"p90":>9}')
    totals = {}
    for name, runs in results.items():
        values = [r['total'] for r in runs]
        totals[name] = statistics.median(values)
        print(
            f'{name:48} {totals[name]:8.3f}s {_quantile(values, 0.1):8.3f}s '
            f'{_quantile(values, 0.9):8.3f}s'
        )
    base = totals['import torch']
    print()
    verdicts = []
    for name in list(VARIANTS)[1:]:
        added = totals[name] - base
        paired = statistics.median(r['drytorch'] for r in results[name])
        verdict = 'PASS' if added <= TARGET_S else 'MISS'
        verdicts.append(verdict)
        print(
            f'{name}: adds {added:+.3f} s (difference of medians), '
            f'{paired:.3f} s (median of the drytorch import alone, after torch); '
            f'target <= {TARGET_S:.2f} s, margin {TARGET_S - added:+.3f} s: {verdict}'
        )
    print(f'import_time: {"PASS" if all(v == "PASS" for v in verdicts) else "MISS"}')
    print(f'(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)')


if __name__ == '__main__':
    main()
