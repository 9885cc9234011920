"""``drytorch runs``, ``show``, ``compare`` and ``plot``: what the registry holds.

Everything is read from the run records; metric histories for plots come
from the files the CSV or SQLite trackers wrote, found through the output
locations each record keeps in its ``[summary.outputs]`` table (or their
default places).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from typing import Any

import tomli_w

from drytorch.cli.tables import print_json, print_table
from drytorch.core import exceptions, registry, settings
from drytorch.core.snapshot import flatten

__all__ = ['compare', 'find_run', 'list_runs', 'load_histories', 'plot', 'show']

PREFERRED_SOURCES = ('Validation', 'Trainer', 'Test')


def _registry(args: argparse.Namespace) -> registry.RunRegistry:
    return registry.RunRegistry(args.registry or settings.get_settings().registry_dir)


def _records(args: argparse.Namespace) -> list[registry.RunRecord]:
    reg = _registry(args)
    found = []
    for key in reg.experiment_keys():
        name = reg.experiment_info(key).get('name', key)
        if not args.experiment or name == args.experiment:
            found.extend(reg.list_runs(key))
    return found


def find_run(args: argparse.Namespace, run_id: str) -> registry.RunRecord:
    """Return the record of ``run_id`` (in ``args.experiment`` if given).

    Raises:
        DryTorchError: no run or several runs have that id.
    """
    reg = _registry(args)
    matches = []
    for key in reg.experiment_keys():
        name = reg.experiment_info(key).get('name', key)
        if args.experiment and name != args.experiment:
            continue
        if reg.exists(key, run_id):
            matches.append(reg.read(key, run_id))
    if not matches:
        where = f' of experiment {args.experiment!r}' if args.experiment else ''
        raise exceptions.DryTorchError(
            f'No run {run_id!r}{where} in {reg.root}; `drytorch runs` lists them.'
        )
    if len(matches) > 1:
        names = ', '.join(sorted(str(r.data.get('par_dir')) for r in matches))
        raise exceptions.DryTorchError(
            f'Several experiments have a run {run_id!r} ({names}); add '
            '--experiment NAME.'
        )
    return matches[0]


def last_metrics(record: registry.RunRecord) -> dict[str, Any]:
    """Return ``{model: {source: metrics}}`` as recorded when the run stopped."""
    metrics = record.data.get('summary', {}).get('metrics', {})
    return metrics if isinstance(metrics, dict) else {}


def _metrics_cell(record: registry.RunRecord) -> str:
    models = last_metrics(record)
    if not models:
        return '-'
    model, sources = next(iter(models.items()))
    source = next((s for s in PREFERRED_SOURCES if s in sources), next(iter(sources)))
    values = ' '.join(
        f'{name}={value:.4g}'
        for name, value in sources[source].items()
        if name != 'epoch' and isinstance(value, int | float)
    )
    return f'{model}/{source} {values}'


def list_runs(args: argparse.Namespace) -> int:
    """Print the recorded runs, oldest first per experiment."""
    records = _records(args)
    if args.json:
        print_json([dict(r.to_json(), registry_path=str(r.path)) for r in records])
        return 0
    if not records:
        print(f'No runs recorded in {_registry(args).root}.')
        return 0
    table = [('EXPERIMENT', 'RUN', 'STATUS', 'CREATED', 'DURATION', 'LAST METRICS')]
    for record in records:
        table.append(
            (
                record.experiment,
                record.id,
                record.status,
                record.created_at.strftime('%Y-%m-%d %H:%M:%S'),
                _duration(record),
                _metrics_cell(record),
            )
        )
    print_table(table)
    return 0


def show(args: argparse.Namespace) -> int:
    """Print one run: status, config, environment, metrics and output places."""
    record = find_run(args, args.run)
    outputs = _outputs(record)
    if args.json:
        print_json(
            dict(record.to_json(), registry_path=str(record.path), outputs=outputs)
        )
        return 0
    data = record.data
    print(f'Run {record.id} of experiment {record.experiment}: {record.status}')
    print(f'  created   {record.created_at:%Y-%m-%d %H:%M:%S}')
    sessions = len(data.get('sessions', []))
    print(f'  duration  {_duration(record)} over {sessions} session(s)')
    print(f'  host      {data.get("host", "-")} (pid {data.get("pid", "-")})')
    print(f'  tags      {", ".join(record.tags) or "-"}')
    if 'error' in data:
        print(f'  error     {data["error"]}')
    _section('Config', {'config': dict(record.config)} if record.config else {})
    _section('Environment', {'environment': data.get('environment', {})})
    metrics = last_metrics(record)
    _section('Last metrics', {'metrics': metrics} if metrics else {})
    print('\nOutputs')
    for name, place in outputs.items():
        print(f'  {name:<14}{place}')
    return 0


def compare(args: argparse.Namespace) -> int:
    """Print the config and final-metric differences of two runs side by side."""
    first, second = (find_run(args, run_id) for run_id in args.runs)
    config = _differences(flatten(first.config), flatten(second.config))
    metrics = _differences(flatten(last_metrics(first)), flatten(last_metrics(second)))
    if args.json:
        print_json(
            {
                'runs': [first.id, second.id],
                'config': {k: list(v) for k, v in config.items()},
                'metrics': {k: list(v) for k, v in metrics.items()},
            }
        )
        return 0
    for title, rows in (('CONFIG', config), ('METRIC', metrics)):
        if not rows:
            print(f'{title}: no differences')
            continue
        table = [(title, first.id, second.id)]
        table.extend((key, _text(a), _text(b)) for key, (a, b) in rows.items())
        print_table(table)
        print()
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw the learning curves of a run from its CSV or SQLite metrics."""
    record = find_run(args, args.run)
    histories = load_histories(record)
    from drytorch.trackers.plot import plot_run

    out = args.out or pathlib.Path(f'{record.experiment}_{record.id}.png')
    written = plot_run(histories, out, args.metric)
    if not written:
        raise exceptions.DryTorchError(
            f'Nothing to plot for run {record.id!r}'
            + (f' and metric {args.metric!r}.' if args.metric else '.')
        )
    for path in written:
        print(path)
    return 0


def load_histories(record: registry.RunRecord) -> dict[str, Any]:
    """Return ``{model: {source: MetricHistory}}`` from the run's CSV or SQLite files.

    Raises:
        DryTorchError: neither tracker stored metrics for the run.
    """
    outputs = record.data.get('summary', {}).get('outputs', {})
    par_dir = pathlib.Path(str(record.data.get('par_dir', '.')))
    csv_root = par_dir
    if 'CSVDumper' in outputs:
        csv_root = pathlib.Path(outputs['CSVDumper']).parents[2]
    from drytorch.trackers.csv import CSVDumper

    histories: dict[str, Any] = CSVDumper(par_dir=csv_root).load_metrics(
        record.experiment, record.id
    )
    if histories:
        return histories
    database = pathlib.Path(outputs.get('SQLiteTracker', par_dir / 'metrics.db'))
    if database.is_file():
        from drytorch.trackers.sqlite import SQLiteTracker

        histories = SQLiteTracker.read(database, record.experiment, record.id)
        if histories:
            return histories
    raise exceptions.DryTorchError(
        f'No metrics of run {record.id!r} were stored as CSV or SQLite; subscribe '
        'CSVDumper or SQLiteTracker (or list them in [tool.drytorch] trackers).'
    )


def _outputs(record: registry.RunRecord) -> dict[str, str]:
    places = {'record': str(record.path)}
    places.update(record.data.get('summary', {}).get('outputs', {}))
    par_dir = pathlib.Path(str(record.data.get('par_dir', '.')))
    checkpoints = par_dir / 'checkpoints' / record.experiment / record.id
    if checkpoints.is_dir():
        places['checkpoints'] = str(checkpoints)
    return places


def _section(title: str, table: Mapping[str, Any]) -> None:
    print(f'\n{title}')
    if not table:
        print('  -')
        return
    for line in tomli_w.dumps(dict(table)).splitlines():
        if line.strip():
            print(f'  {line}')


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = sorted(a.keys() | b.keys())
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def _text(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def _duration(record: registry.RunRecord) -> str:
    if record.started_at is None:
        return '-'
    if record.stopped_at is None or record.stopped_at < record.started_at:
        return 'running' if record.status == 'running' else '-'
    seconds = int((record.stopped_at - record.started_at).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'
