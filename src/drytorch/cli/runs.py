"""``drytorch runs``, ``show``, ``compare`` and ``plot``: what the registry holds.

Everything is read from the run records, and what only plugins know is asked
through the query hooks with a ``RunView`` of the record: metric histories for
plots (``load_metrics``: the built-in readers answer from the CSV or SQLite
files, another plugin from its own store) and output locations beyond those
the record keeps (``run_outputs``). Nothing here knows a tracker's layout.

These commands read and never write, except ``plot``, which writes only to
``--out`` or the working directory. Records are checked before use
(``drytorch.cli.records``): a name that would make a path leave its folder
refuses the record, with an error naming the file and the field.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import tomli_w

from drytorch.cli import records
from drytorch.cli.records import check_record as records_check
from drytorch.cli.tables import print_json, print_table, printable
from drytorch.core import exceptions, registry, selection, settings
from drytorch.core.plugins import get_host
from drytorch.core.run_view import RunView
from drytorch.core.snapshot import flatten

__all__ = ['compare', 'find_run', 'list_runs', 'load_histories', 'plot', 'show']

PREFERRED_SOURCES = ('Validation', 'Trainer', 'Test')
DEFAULT_LIMIT = 100  # runs listed unless --limit or --all says otherwise


def _registry(args: argparse.Namespace) -> registry.RunRegistry:
    return registry.RunRegistry(args.registry or settings.get_settings().registry_dir)


def _records(
    args: argparse.Namespace, *, limit: int | None = None
) -> selection.RunList:
    """Return the runs the filters choose; checked for safety when read."""
    reg = _registry(args)
    keys = [
        key
        for key in reg.experiment_keys()
        if not args.experiment
        or reg.experiment_info(key).get('name', key) == args.experiment
    ]
    return reg.select_runs(
        keys,
        status=args.status,
        tags=args.tag,
        since=args.since,
        sort=args.sort,
        descending=args.desc,
        limit=limit,
        refresh=args.refresh,
    )


def _safe(records: selection.RunList) -> list[registry.RunRecord]:
    """Return the records whose names are safe; warn about and skip the others."""
    found = []
    for record in records:
        try:
            records_check(record)
        except exceptions.CorruptRecordError as err:
            warnings.warn(str(err), registry.RecordWarning, stacklevel=2)
            continue
        found.append(record)
    return found


def find_run(args: argparse.Namespace, run_id: str) -> registry.RunRecord:
    """Return the record that ``run_id`` names (in ``args.experiment`` if given).

    ``run_id`` is a run id; else ``last``, the newest run, or ``last~N``,
    the run N before it (by creation); else the start of exactly one run id.

    Raises:
        DryTorchError: no run, or several runs, answer to ``run_id``.
        CorruptRecordError: the record holds an unsafe experiment name or id.
    """
    reg = _registry(args)
    keys = [
        key
        for key in reg.experiment_keys()
        if not args.experiment
        or reg.experiment_info(key).get('name', key) == args.experiment
    ]
    matches = [reg.read(key, run_id) for key in keys if reg.exists(key, run_id)]
    back = _steps_back(run_id)
    if not matches and back is not None:
        newest = reg.select_runs(keys, descending=True, limit=back + 1)
        matches = list(newest[back : back + 1])
        if not matches:
            raise exceptions.DryTorchError(
                f'{run_id!r} asks for run number {back + 1} from the newest, but '
                f'{len(newest)} run(s) are recorded in {reg.root}.'
            )
    if not matches and run_id:
        started = [
            (key, found)
            for key in keys
            for found in reg.select_runs([key]).ids
            if found.startswith(run_id)
        ]
        if len(started) > 1:
            shown = ', '.join(sorted(found for _, found in started)[:10])
            more = f' and {len(started) - 10} more' if len(started) > 10 else ''
            raise exceptions.DryTorchError(
                f'{run_id!r} starts several run ids ({shown}{more}); give more of '
                'the id.'
            )
        matches = [reg.read(key, found) for key, found in started]
    if not matches:
        where = f' of experiment {args.experiment!r}' if args.experiment else ''
        raise exceptions.DryTorchError(
            f'No run {run_id!r}{where} in {reg.root}; `drytorch runs` lists them '
            '(RUN is an id, a prefix only one id has, "last" or "last~N").'
        )
    if len(matches) > 1:
        names = ', '.join(sorted(str(r.data.get('par_dir')) for r in matches))
        raise exceptions.DryTorchError(
            f'Several experiments have a run {run_id!r} ({names}); add '
            '--experiment NAME.'
        )
    records_check(matches[0])
    return matches[0]


def _steps_back(run_id: str) -> int | None:
    """Return N for ``last~N`` (0 for ``last``), or ``None`` for another name."""
    if run_id == 'last':
        return 0
    head, tilde, count = run_id.partition('~')
    if head == 'last' and tilde and count.isdigit():
        return int(count)
    return None


def last_metrics(record: registry.RunRecord) -> dict[str, Any]:
    """Return ``{model: {source: metrics}}`` as recorded when the run stopped.

    Entries with unsafe names are skipped with a warning.
    """
    return records.last_metrics(record)


def _metrics_cell(record: registry.RunRecord) -> str:
    models = last_metrics(record)
    if not models:
        return '-'
    model, sources = next(iter(models.items()))
    source = next((s for s in PREFERRED_SOURCES if s in sources), next(iter(sources)))
    values = ' '.join(
        f'{name}={value:.4g}'
        for name, value in sources[source].items()
        if name != 'epoch'
    )
    return f'{model}/{source} {values}'


def list_runs(args: argparse.Namespace) -> int:
    """Print the recorded runs, oldest first (or as ``--sort``/``--desc`` say).

    Without ``--limit`` or ``--all``, the newest ``DEFAULT_LIMIT`` that match
    are listed, with a line saying how many more there are.
    """
    limit = None if args.all else args.limit
    if limit is None and not args.all:
        limit = DEFAULT_LIMIT
    chosen = _records(args, limit=limit)
    shown = len(chosen)
    hidden = chosen.matched - shown if args.limit is None else 0
    records = _safe(chosen)
    if args.json:
        print_json([dict(r.to_json(), registry_path=str(r.path)) for r in records])
        if hidden:
            print(_more(shown, hidden), file=sys.stderr)
        return 0
    if not records:
        filtered = args.status or args.tag or args.since or args.limit is not None
        what = 'No run matches' if filtered else 'No runs recorded'
        print(f'{what} in {_registry(args).root}.')
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
    if hidden:
        print(_more(shown, hidden))
    return 0


def _more(shown: int, hidden: int) -> str:
    return f'({shown} newest shown, {hidden} more: --limit N or --all to list them)'


def show(args: argparse.Namespace) -> int:
    """Print one run: status, config, environment, metrics and output places."""
    record = find_run(args, args.run)
    outputs = {name: str(place) for name, place in _outputs(record).items()}
    if args.json:
        print_json(
            dict(
                record.to_json(),
                registry_path=str(record.path),
                outputs=outputs,
                **_setup(record),
            )
        )
        return 0
    data = record.data
    print(f'Run {record.id} of experiment {record.experiment}: {record.status}')
    print(f'  created   {record.created_at:%Y-%m-%d %H:%M:%S}')
    sessions = len(data.get('sessions', []))
    print(f'  duration  {_duration(record)} over {sessions} session(s)')
    host, pid = printable(data.get('host', '-')), printable(data.get('pid', '-'))
    print(f'  host      {host} (pid {pid})')
    print(f'  tags      {printable(", ".join(record.tags)) or "-"}')
    print(f'  seed      {_seed_line(record)}')
    if 'error' in data:
        print(f'  error     {printable(data["error"])}')
    _section('Config', {'config': dict(record.config)} if record.config else {})
    _section('Environment', {'environment': data.get('environment', {})})
    metrics = last_metrics(record)
    _section('Last metrics', {'metrics': metrics} if metrics else {})
    print('\nOutputs')
    for name, place in outputs.items():
        print(f'  {printable(name):<14}{printable(place)}')
    return 0


def compare(args: argparse.Namespace) -> int:
    """Print the config and final-metric differences of two runs side by side."""
    first, second = (find_run(args, run_id) for run_id in args.runs)
    setup = _differences(_setup(first), _setup(second))
    config = _differences(flatten(first.config), flatten(second.config))
    metrics = _differences(flatten(last_metrics(first)), flatten(last_metrics(second)))
    if args.json:
        print_json(
            {
                'runs': [first.id, second.id],
                'run': {k: list(v) for k, v in setup.items()},
                'config': {k: list(v) for k, v in config.items()},
                'metrics': {k: list(v) for k, v in metrics.items()},
            }
        )
        return 0
    for title, rows in (('RUN', setup), ('CONFIG', config), ('METRIC', metrics)):
        if not rows:
            print(f'{title}: no differences')
            continue
        table = [(title, first.id, second.id)]
        table.extend((key, _text(a), _text(b)) for key, (a, b) in rows.items())
        print_table(table)
        print()
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw a run's learning curves, from its stored metrics, in one figure.

    The figure goes to ``--out`` exactly (its suffix picks the format) or, by
    default, to ``<experiment>_<run>.png`` in the working directory (or in
    ``--out`` when that is an existing folder): the record's names are
    checked safe names, so the default name has no folder. One axes per
    metric (``--metric``, repeatable, matched ignoring case and by unique
    prefix or substring), with every model and source of it. Prints the path.
    """
    record = find_run(args, args.run)
    from drytorch.trackers.plot import figure_format, plot_run

    default = f'{record.experiment}_{record.id}.png'
    out = args.out if args.out is not None else pathlib.Path.cwd() / default
    if out.is_dir():
        out = out / default
    figure_format(out)  # refuse an unknown suffix before reading metrics
    histories = load_histories(record)
    try:
        written = plot_run(
            histories, out, args.metric, title=f'{record.experiment} / {record.id}'
        )
    except OSError as err:
        raise exceptions.DryTorchError(f'Could not write {out}: {err}') from err
    print(written)
    return 0


def load_histories(record: registry.RunRecord) -> dict[str, Any]:
    """Return ``{model: {source: MetricHistory}}`` through the ``load_metrics`` hook.

    The built-in readers answer from the CSV or SQLite files of the run; an
    installed plugin that stores metrics answers for its own.

    Raises:
        DryTorchError: no plugin has metrics of the run.
        CorruptRecordError: the record's names or ``par_dir`` cannot be used.
        UnsafePathError: a metrics file or folder is a symbolic link.
    """
    histories = get_host().load_metrics(RunView.of_record(record))
    if histories:
        return histories
    raise exceptions.DryTorchError(
        f'No metrics of run {record.id!r} were found: no installed plugin stores '
        'them. Subscribe CSVDumper or SQLiteTracker (or list them in '
        '[tool.drytorch] trackers), or install the plugin of the tracker that '
        'stored them.'
    )


def _outputs(record: registry.RunRecord) -> dict[str, pathlib.Path | str]:
    """Return the record file, the recorded outputs, and what plugins add now."""
    places: dict[str, pathlib.Path | str] = {'record': record.path}
    places.update(records.outputs(record))
    try:
        run = RunView.of_record(record)
    except exceptions.CorruptRecordError:
        return places  # show the rest of the record all the same
    for label, place in get_host().run_outputs(run).items():
        places.setdefault(label, printable(place))
    return places


_SEED_SOURCES = {
    'argument': 'passed to create_run(seed=...)',
    'setting': 'the seed setting ([tool.drytorch] seed or DRYTORCH_SEED)',
    'drawn': 'drawn at random and recorded; choose one with create_run(seed=...) '
    'or the seed setting',
}


def _setup(record: registry.RunRecord) -> dict[str, Any]:
    """Return what, besides the config, decides how the run computes."""
    data = record.data
    return {
        'seed': data.get('seed'),
        'seed_source': data.get('seed_source'),
        'deterministic': data.get('deterministic'),
    }


def _seed_line(record: registry.RunRecord) -> str:
    setup = _setup(record)
    if setup['seed'] is None:
        return '- (recorded before runs had seeds)'
    source = _SEED_SOURCES.get(
        str(setup['seed_source']), printable(setup['seed_source'])
    )
    mode = ', deterministic mode' if setup['deterministic'] else ''
    return f'{printable(setup["seed"])} ({source}){mode}'


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
    """Return the time the run ran, over all its sessions, as ``H:MM:SS``.

    A session counts from its ``started_at`` to its ``stopped_at``. The
    session of a run still running counts until now, and the duration ends
    with ``(running)``. A session without ``stopped_at`` that is not running
    (its process was killed) counts nothing, since when it stopped cannot be
    known: the duration is then a lower bound and ends with ``+``. Records
    without sessions count from their ``started_at`` to their ``stopped_at``.
    """
    sessions = record.data.get('sessions')
    if not isinstance(sessions, list) or not sessions:
        sessions = [{'started_at': record.started_at, 'stopped_at': record.stopped_at}]
    total = 0.0
    counted = unknown = running = False
    for index, session in enumerate(sessions):
        started = session.get('started_at') if isinstance(session, dict) else None
        stopped = session.get('stopped_at') if isinstance(session, dict) else None
        if not isinstance(started, datetime.datetime):
            unknown = True
            continue
        if not isinstance(stopped, datetime.datetime):
            if index == len(sessions) - 1 and record.status == 'running':
                stopped, running = registry.now(), True
            else:
                unknown = True
                continue
        seconds = (_aware(stopped) - _aware(started)).total_seconds()
        if seconds < 0:  # a clock set back: nothing sensible to add
            unknown = True
            continue
        total += seconds
        counted = True
    if not counted:
        return 'running' if running or record.status == 'running' else '-'
    hours, rest = divmod(int(total), 3600)
    text = f'{hours}:{rest // 60:02d}:{rest % 60:02d}'
    if running:
        return f'{text} (running)'
    return f'{text}+' if unknown else text


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """Return ``moment`` with a timezone (local time if it has none)."""
    return moment if moment.tzinfo is not None else moment.astimezone()
