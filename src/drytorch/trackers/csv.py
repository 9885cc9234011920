"""``CSVDumper``: the metrics of each model and source as a CSV file.

Layout: ``<par_dir>/csv_metrics/<experiment>/<run id>/<model>_<source>.csv``,
with the header ``Model,Source,Epoch,<metric>...`` (metrics in the order they
first arrive) and one row per ``MetricsEvent``: once per epoch and source,
never per batch. Each row is flushed when written, so a crash loses nothing
and the files can be read (``csv``, pandas, a spreadsheet) while training.

Rules that keep a file trustworthy across resumed runs:

- A resumed run appends; nothing is ever truncated by opening a file.
- A row for an epoch the file already reaches (a resumed run that went back
  to a checkpoint, a test repeated at the same epoch) supersedes: the file is
  rewritten atomically (temporary file, then ``os.replace``) without the rows
  of that epoch and later ones, and the new row is appended.
- Metrics that do not fit the file's columns (a resumed run measuring other
  metrics) never rewrite the old file: a ``CSVColumnsWarning`` names it and
  the rows continue in ``<model>_<source>.2.csv`` (then ``.3.csv``...).
  ``load_metrics`` reads the parts in order.
- Characters outside ``A-Z a-z 0-9 _ -`` in a name become ``_`` and a short
  hash of the name is appended, so that two names never share a file; two
  pairs whose plain names still collide (``a_b``/``c`` and ``a``/``b_c``) are
  told apart by the ``Model`` and ``Source`` columns, which are authoritative.
- An output folder that cannot be written gives one ``CSVWriteWarning`` and
  the tracker stops writing for the run: training never stops for a tracker.
- Nothing is read or written through a symbolic link: a file (or a folder of
  the layout) that is a link, planted to make the tracker append to a file
  elsewhere, raises ``UnsafePathError`` naming it, and the tracker is
  unsubscribed with a ``TrackerFailureWarning``; ``load_metrics`` raises it
  too. Rewrites replace the file by renaming a new one over it, which never
  reaches a link's target.

The format is ``dialect``'s (``DryTorchDialect``, excel's, by default). A file
is always read in the format it was written in: when its header does not read
as ``Model``, ``Source``, ``Epoch`` in this tracker's dialect, the delimiter,
quote character and line ending are taken from the header itself, so any
``CSVDumper`` (and ``drytorch plot``) reads the files of any other, and a
resumed run keeps appending to a file in that file's own format.

The original DRYTorch's one-model readers are here too: ``read_csv(model_name,
source, max_epoch=-1)`` and ``load_metrics(model_name, max_epoch=-1)`` read the
run this tracker is writing for, or wrote for last.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import inspect
import io
import math
import os
import pathlib
import re
import warnings
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO, TypeAlias, cast, overload

from drytorch import hookimpl
from drytorch.core import exceptions, files
from drytorch.trackers import base

if TYPE_CHECKING:
    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = [
    'HEADER',
    'CSVColumnsWarning',
    'CSVDumper',
    'CSVDumperError',
    'CSVWriteWarning',
    'DryTorchDialect',
]

HEADER = ('Model', 'Source', 'Epoch')
"""The first columns of every file; the metrics follow."""

_UNSAFE = re.compile(r'[^A-Za-z0-9_-]')
_PART = re.compile(r'^(?P<stem>[^.]+)(?:\.(?P<part>[0-9]+))?\.csv$')
_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)  # not on Windows: is_symlink checks


History: TypeAlias = tuple[list[int], dict[str, list[float]]]
"""The original DRYTorch's form of one source's metrics: epochs, and values by name."""

DialectLike: TypeAlias = csv.Dialect | type[csv.Dialect] | str
"""A ``csv`` dialect: an instance, a subclass or a registered name."""

_ATTRIBUTES = (
    'delimiter',
    'quotechar',
    'escapechar',
    'doublequote',
    'skipinitialspace',
    'lineterminator',
    'quoting',
    'strict',
)
_DEFAULTS = {
    'escapechar': None,
    'doublequote': True,
    'skipinitialspace': False,
    'lineterminator': '\r\n',
    'quoting': csv.QUOTE_MINIMAL,
    'strict': False,
}


class DryTorchDialect(csv.Dialect):
    """The format of ``CSVDumper``'s files by default: excel's.

    Comma-separated, fields quoted only when they must be, lines ended by
    CR LF: what spreadsheets, pandas and ``csv.reader`` read without
    options. (The original DRYTorch's dialect of this name quotes every
    field that is not a number; pass ``dialect=`` such a dialect to get that.)
    """

    delimiter = ','
    quotechar = '"'
    escapechar = None
    doublequote = True
    skipinitialspace = False
    lineterminator = '\r\n'
    quoting = csv.QUOTE_MINIMAL
    strict = False


class CSVDumperError(exceptions.DryTorchError, ValueError):
    """A ``CSVDumper`` was given a bad argument, or has no metrics to read as asked."""


class CSVColumnsWarning(exceptions.DryTorchWarning):
    """Metrics did not fit an existing file's columns; a new part was started."""


class CSVWriteWarning(exceptions.DryTorchWarning):
    """The CSV files of a run could not be written; the tracker stopped writing."""


@dataclasses.dataclass
class _Sheet:
    """The open file of one model and source in the active run."""

    path: pathlib.Path
    columns: list[str]
    last_epoch: int | None
    handle: TextIO
    dialect: csv.Dialect | None  # None: excel's, written with csv's defaults


@dataclasses.dataclass
class _Session:
    """What the tracker writes for one session of a run: its open files."""

    run: RunView
    sheets: dict[tuple[str, str], _Sheet] = dataclasses.field(default_factory=dict)
    stopped: bool = False  # writing failed in this session; warned once

    def close(self) -> None:
        for sheet in self.sheets.values():
            with contextlib.suppress(OSError):
                sheet.handle.close()
        self.sheets.clear()


class CSVDumper(base.Dumper):
    """Writes each model's metrics, one CSV file per source, one row per epoch.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
        dialect: the format of the files: a ``csv.Dialect`` subclass or
            instance, or the name of a registered dialect. The default,
            ``DryTorchDialect``, is excel's.

    Raises:
        CSVDumperError: ``dialect`` is not a dialect ``csv`` can write with.
    """

    kind = 'csv_metrics'

    def __init__(
        self,
        par_dir: str | os.PathLike[str] | None = None,
        dialect: DialectLike = DryTorchDialect,
    ) -> None:
        super().__init__(par_dir)
        self.dialect = _resolve(dialect)
        self._dialect_label = (
            repr(dialect)
            if isinstance(dialect, str)
            else getattr(dialect, '__name__', type(dialect).__name__)
        )
        # a dialect with excel's settings writes through csv's defaults
        self._dialect = None if _same(self.dialect, csv.excel) else self.dialect
        self._session: _Session | None = None
        # (experiment, run id, par_dir) of the run written for last: read_csv's
        self._last_run: tuple[str, str, pathlib.Path] | None = None

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Forget the files of an earlier run; the run's files open on first use."""
        self._begin(run)

    @hookimpl
    def on_run_stop(self) -> None:
        """Close the run's files."""
        self._end()

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent, run: RunView) -> None:
        """Write one row to the file of the event's model and source."""
        session = self._current(run)
        if session.stopped:
            return
        try:
            self._write(session, event)
        except exceptions.UnsafePathError:
            self._end()
            raise  # not a write failure to warn about: the tracker must go
        except (OSError, ValueError, csv.Error) as error:  # never stop training
            self._stop_writing(session, error)

    @overload
    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, base.MetricHistory]]: ...

    @overload
    def load_metrics(
        self, model_name: str, max_epoch: int = -1
    ) -> dict[str, History]: ...

    def load_metrics(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Return the metrics of a run, or of a model in the original's form.

        ``load_metrics(experiment_name, run_id)``, both strings (the
        ``MetricLoader`` protocol: plots and readers call it so), returns
        ``{model: {source: MetricHistory}}`` of that run, ``{}`` if it has no
        files. Parts are read in order and rows follow the writer's rule: a
        row for an epoch not after the last one read replaces that epoch and
        the later ones. Missing cells are NaN.

        ``load_metrics(model_name, max_epoch=-1)``, one string and at most an
        int (the original DRYTorch's form), is ``load_model_metrics``: the
        metrics of one model of the run written for now or last. The two are
        told apart by the arguments: a second positional argument that is a
        string is a run id, an int is an epoch.

        Raises:
            UnsafePathError: a file or folder of the run's layout is a
                symbolic link.
            CSVDumperError: the arguments fit neither form.
        """
        ours = _bound(_RUN_FORM, args, kwargs)
        if ours is not None and all(isinstance(v, str) for v in ours.values()):
            return self._load_run(ours['experiment_name'], ours['run_id'])
        original = _bound(_MODEL_FORM, args, kwargs)
        if original is not None and isinstance(original['model_name'], str):
            max_epoch = original.get('max_epoch', -1)
            if isinstance(max_epoch, int) and not isinstance(max_epoch, bool):
                return self.load_model_metrics(original['model_name'], max_epoch)
        given = [repr(v) for v in args] + [f'{k}={v!r}' for k, v in kwargs.items()]
        raise CSVDumperError(
            f'{self.name}.load_metrics({", ".join(given)}): pass '
            "(experiment_name: str, run_id: str) for a run's metrics, or "
            '(model_name: str, max_epoch: int = -1) for one model of the run '
            'written for now or last (the original DRYTorch form, also named '
            'load_model_metrics).'
        )

    def load_model_metrics(
        self, model_name: str, max_epoch: int = -1
    ) -> dict[str, History]:
        """Return ``{source: (epochs, {metric: values})}`` of a model (original form).

        The metrics are those of the run this tracker is writing for, else
        the run it wrote for last, up to ``max_epoch`` (-1: all of them;
        0: none, ``{}``). A model without metrics gives ``{}``.

        Raises:
            CSVDumperError: ``max_epoch`` is below -1, or this tracker has
                seen no run yet.
        """
        _check_max_epoch(max_epoch)
        if max_epoch == 0:
            return {}
        _, histories = self._load_last(model_name, 'load_metrics')
        sources = histories.get(model_name, {})
        loaded = {source: _history(h, max_epoch) for source, h in sources.items()}
        return {source: history for source, history in loaded.items() if history[0]}

    def read_csv(self, model_name: str, source: str, max_epoch: int = -1) -> History:
        """Return ``(epochs, {metric: values})`` of a model and source (original form).

        The rows are those of the run this tracker is writing for, else the
        run it wrote for last, up to ``max_epoch`` (-1: all of them), as the
        files hold them after resumes (a rolled-back epoch's old rows are
        superseded; earlier epochs stay). Missing cells are NaN.

        Raises:
            CSVDumperError: ``max_epoch`` is below -1, this tracker has seen
                no run yet, or the run has no metrics of that model and source.
        """
        _check_max_epoch(max_epoch)
        run_id, histories = self._load_last(model_name, 'read_csv')
        history = histories.get(model_name, {}).get(source)
        if history is None:
            known = sorted((m, s) for m, sources in histories.items() for s in sources)
            listed = ', '.join(f'{m!r}/{s!r}' for m, s in known) or 'none'
            raise CSVDumperError(
                f'{self.name} has no metrics of model {model_name!r} from source '
                f'{source!r} in run {run_id!r}; the run has: {listed}.'
            )
        return _history(history, max_epoch)

    def _load_last(
        self, model_name: str, method: str
    ) -> tuple[str, dict[str, dict[str, base.MetricHistory]]]:
        """Return the id and metrics of the run written for now or last."""
        if self._last_run is None:
            raise CSVDumperError(
                f'{self.name}.{method}({model_name!r}, ...) reads the run this '
                'tracker writes for, and it has seen no run yet: call it during '
                'or after a run, or name the run with '
                'load_metrics(experiment_name, run_id).'
            )
        experiment, run_id, par_dir = self._last_run
        return run_id, self._load_run(experiment, run_id, par_dir)

    def _load_run(
        self,
        experiment_name: str,
        run_id: str,
        par_dir: pathlib.Path | None = None,
    ) -> dict[str, dict[str, base.MetricHistory]]:
        folder = self.location(experiment_name, run_id, par_dir)
        files.refuse_links(folder, 'CSVDumper', depth=3)
        if not folder.is_dir():
            return {}
        parts = []
        for path in folder.iterdir():
            match = _PART.match(path.name)
            if match:
                files.refuse_links(path, 'CSVDumper')
                if path.is_file():
                    parts.append((match['stem'], int(match['part'] or 1), path))
        histories: dict[str, dict[str, base.MetricHistory]] = {}
        for _, _, path in sorted(parts):
            header, rows, _, _ = _read(path, self._dialect)
            if tuple(header[:3]) != HEADER:
                continue  # not a file of this tracker
            for row in rows:
                model, source, epoch = row[0], row[1], int(row[2])
                metrics = {
                    name: _value(cell)
                    for name, cell in zip(header[3:], row[3:], strict=True)
                }
                history = histories.setdefault(model, {}).setdefault(
                    source, base.MetricHistory()
                )
                _supersede(history, epoch)
                history.add(epoch, metrics)
        for sources in histories.values():
            for history in sources.values():
                for series in history.values.values():  # metrics of other parts
                    series.extend([math.nan] * (len(history.epochs) - len(series)))
        return histories

    def _begin(self, run: RunView) -> _Session:
        """Start writing for a session of ``run``: nothing of another stays open."""
        self._end()
        self._session = _Session(run)
        self._last_run = (run.experiment, run.id, run.par_dir)
        return self._session

    def _current(self, run: RunView) -> _Session:
        """Return the session of ``run``, begun now if its start was not seen."""
        session = self._session
        if session is None or session.run is not run:
            session = self._begin(run)
        return session

    def _end(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _write(self, session: _Session, event: log_events.MetricsEvent) -> None:
        key = (event.model_name, event.source_name)
        names = list(event.metrics)
        sheets = session.sheets
        sheet = sheets.get(key)
        if sheet is None:
            sheet = sheets[key] = self._open(session.run, *key, names)
        elif not set(names) <= set(sheet.columns):
            sheet.handle.close()
            sheet = sheets[key] = self._next_part(sheet.path, names)
        if sheet.last_epoch is not None and event.epoch <= sheet.last_epoch:
            sheet.handle.close()
            header, rows, _, _ = _read(sheet.path, sheet.dialect)
            kept = [row for row in rows if int(row[2]) < event.epoch]
            sheet.handle = _rewrite(sheet.path, header, kept, sheet.dialect)
        values = [event.metrics.get(name) for name in sheet.columns]
        _writer(sheet.handle, sheet.dialect).writerow(
            _row(
                event.model_name, event.source_name, event.epoch, values, sheet.dialect
            )
        )
        sheet.handle.flush()
        sheet.last_epoch = event.epoch

    def _open(self, run: RunView, model: str, source: str, names: list[str]) -> _Sheet:
        """Continue the file of ``model`` and ``source``, or start it."""
        # the kind, experiment and run folders: checked before run_dir makes them
        files.refuse_links(self.folder(run), 'CSVDumper', depth=3)
        folder = self.run_dir(run)
        stem = f'{_safe(model)}_{_safe(source)}'
        owner = _owner(folder / f'{stem}.csv', self._dialect)
        if owner is not None and owner != (model, source):  # a plain-name clash
            stem += '-' + _digest(f'{model}\0{source}')
        path = _latest_part(folder, stem)
        files.refuse_links(path, 'CSVDumper')
        if not path.exists():
            return _create(path, names, self._dialect)
        header, rows, whole, dialect = _read(path, self._dialect)
        if tuple(header[:3]) != HEADER or not set(names) <= set(header[3:]):
            return self._next_part(path, names)
        # a crash may have cut the last row short: drop it, then append
        handle = _append(path) if whole else _rewrite(path, header, rows, dialect)
        epochs = [int(row[2]) for row in rows]
        return _Sheet(path, header[3:], max(epochs, default=None), handle, dialect)

    def _next_part(self, path: pathlib.Path, names: list[str]) -> _Sheet:
        match = _PART.match(path.name)
        assert match is not None
        new_path = path.with_name(f'{match["stem"]}.{int(match["part"] or 1) + 1}.csv')
        warnings.warn(
            f'{self.name}: the metrics {names} do not fit the columns of '
            f'{path}; that file is kept as it is and the metrics continue in '
            f'{new_path.name}.',
            CSVColumnsWarning,
            stacklevel=2,
        )
        return _create(new_path, names, self._dialect)

    def _stop_writing(self, session: _Session, error: Exception) -> None:
        session.stopped = True
        session.close()
        where = getattr(error, 'filename', None) or self.folder(session.run)
        reason = getattr(error, 'strerror', None) or error
        warnings.warn(
            f'{self.name} cannot write {where} ({reason}); it stops writing '
            f'metrics for run {session.run.id!r}. Training goes on.',
            CSVWriteWarning,
            stacklevel=2,
        )

    def __repr__(self) -> str:
        par_dir = str(self.par_dir) if self.par_dir is not None else None
        if self._dialect is None:
            return f'{type(self).__name__}(par_dir={par_dir!r})'
        label = self._dialect_label
        return f'{type(self).__name__}(par_dir={par_dir!r}, dialect={label})'


def _resolve(dialect: DialectLike) -> csv.Dialect:
    """Return ``dialect`` as a ``csv.Dialect`` instance; ``csv`` checks it."""
    try:
        if isinstance(dialect, csv.Dialect) and type(dialect) is not csv.Dialect:
            return dialect  # checked when it was made
        if isinstance(dialect, type) and issubclass(dialect, csv.Dialect):
            return dialect()
        source: Any = csv.get_dialect(dialect) if isinstance(dialect, str) else dialect
        return _dialect(_settings(source))
    except (TypeError, AttributeError, csv.Error) as error:
        raise CSVDumperError(
            f'CSVDumper(dialect={dialect!r}) is not a csv dialect ({error}): pass '
            'a csv.Dialect subclass or instance (such as DryTorchDialect, '
            "csv.excel_tab), or the name of a registered dialect ('excel')."
        ) from None


def _dialect(settings: dict[str, Any]) -> csv.Dialect:
    """Return a dialect instance with ``settings`` (checked by ``csv.Dialect``)."""
    return type('Dialect', (csv.Dialect,), settings)()  # type: ignore[no-any-return]


def _same(one: Any, other: Any) -> bool:
    return _settings(one) == _settings(other)


def _settings(dialect: Any) -> dict[str, Any]:
    """Return a dialect's settings; those it leaves out have csv's defaults."""
    return {name: getattr(dialect, name, _DEFAULTS.get(name)) for name in _ATTRIBUTES}


def _writer(handle: IO[str], dialect: csv.Dialect | None) -> Any:
    return csv.writer(handle) if dialect is None else csv.writer(handle, dialect)


def _row(
    model: str,
    source: str,
    epoch: int,
    values: Sequence[float | None],
    dialect: csv.Dialect | None,
) -> list[Any]:
    """Return a row to write; numbers stay numbers for a dialect that quotes by type."""
    if dialect is None:
        return [model, source, str(epoch), *map(_cell, values)]
    return [model, source, epoch, *(None if v is None else float(v) for v in values)]


_RUN_FORM = inspect.Signature(
    [
        inspect.Parameter('experiment_name', inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter('run_id', inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
)
_MODEL_FORM = inspect.Signature(
    [
        inspect.Parameter('model_name', inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(
            'max_epoch', inspect.Parameter.POSITIONAL_OR_KEYWORD, default=-1
        ),
    ]
)


def _bound(
    form: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """Return the arguments by name if they fit ``form``, else ``None``."""
    try:
        return dict(form.bind(*args, **kwargs).arguments)
    except TypeError:
        return None


def _check_max_epoch(max_epoch: int) -> None:
    if isinstance(max_epoch, bool) or not isinstance(max_epoch, int) or max_epoch < -1:
        raise CSVDumperError(
            'max_epoch must be an epoch number, or -1 for all epochs; got '
            f'{max_epoch!r}.'
        )


def _history(history: base.MetricHistory, max_epoch: int) -> History:
    """Return ``history`` in the original's form, up to ``max_epoch`` (-1: all)."""
    kept = [
        i for i, e in enumerate(history.epochs) if max_epoch == -1 or e <= max_epoch
    ]
    epochs = [history.epochs[i] for i in kept]
    return epochs, {name: [s[i] for i in kept] for name, s in history.values.items()}


def _safe(name: str) -> str:
    """Make ``name`` a file-name part; a changed name gets a hash of the original."""
    safe = _UNSAFE.sub('_', name)
    return safe if safe == name and name else f'{safe}-{_digest(name)}'


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _latest_part(folder: pathlib.Path, stem: str) -> pathlib.Path:
    part = 1
    while (folder / f'{stem}.{part + 1}.csv').exists():
        part += 1
    return folder / (f'{stem}.csv' if part == 1 else f'{stem}.{part}.csv')


def _append(path: pathlib.Path) -> TextIO:
    """Open ``path`` to append, refusing a link even if one appeared just now."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
    except OSError:
        # ELOOP: a link appeared since the last check
        files.refuse_links(path, 'CSVDumper')
        raise
    return os.fdopen(fd, 'a', newline='', encoding='utf-8')


def _create(
    path: pathlib.Path, names: Sequence[str], dialect: csv.Dialect | None
) -> _Sheet:
    # a dangling link: exclusive creation would fail anyway
    files.refuse_links(path, 'CSVDumper')
    handle = path.open('x', newline='', encoding='utf-8')
    _writer(handle, dialect).writerow([*HEADER, *names])
    handle.flush()
    return _Sheet(path, list(names), None, handle, dialect)


def _read(
    path: pathlib.Path, dialect: csv.Dialect | None
) -> tuple[list[str], list[list[str]], bool, csv.Dialect | None]:
    """Return a file's header, whole rows, whether nothing was left out, and format.

    The file is read in ``dialect`` (``None``: excel's) or, when its header
    does not read so, in the format its header shows (returned, to append in).
    A last line without its line ending was cut short by a crash (rows are
    written and flushed whole): it is left out, like any malformed row.
    Undecodable text gives no header and no rows.
    """
    files.refuse_links(path, 'CSVDumper')
    try:
        text = path.read_bytes().decode('utf-8')  # line endings as written
    except UnicodeDecodeError:
        return [], [], False, dialect
    lines = _parse(text, dialect)
    if lines is None or (lines and tuple(lines[0][:3]) != HEADER):
        found = _detect(text, dialect)
        other = _parse(text, found) if found is not None else None
        if other and tuple(other[0][:3]) == HEADER:
            lines, dialect = other, found
    if not lines:
        return [], [], lines is not None and not text, dialect
    header, rows = lines[0], lines[1:]
    if rows and not text.endswith(('\n', '\r')):
        rows.pop()
    valid = [row for row in rows if _valid(row, header)]
    ending = (dialect or csv.excel).lineterminator[-1:]
    return (
        header,
        valid,
        len(valid) == len(lines) - 1 and text.endswith(ending),
        dialect,
    )


def _parse(text: str, dialect: csv.Dialect | None) -> list[list[str]] | None:
    """Return the rows of ``text`` as strings in ``dialect``; ``None`` if malformed."""
    source = io.StringIO(text, newline='')
    try:
        if dialect is None:
            return list(csv.reader(source))
        # every cell a string: a dialect quoting by type would make floats
        quoting = (
            csv.QUOTE_NONE if dialect.quoting == csv.QUOTE_NONE else csv.QUOTE_MINIMAL
        )
        return list(csv.reader(source, dialect, quoting=cast('Any', quoting)))
    except csv.Error:
        return None


def _detect(text: str, dialect: csv.Dialect | None) -> csv.Dialect | None:
    """Return the format a file's header shows (``Model``, then the delimiter).

    The delimiter, quote character and line ending come from the header;
    the rest from ``dialect``. A quoted header was written quoting every
    text (as the original DRYTorch's dialect does): rows are appended so.
    """
    base_dialect: Any = dialect or csv.excel
    end = min((i for i in (text.find('\r'), text.find('\n')) if i >= 0), default=-1)
    line = text if end < 0 else text[:end]
    settings = _settings(base_dialect)
    if line.startswith(HEADER[0]):
        rest = line[len(HEADER[0]) :]
        if settings['quoting'] not in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
            settings['quoting'] = csv.QUOTE_MINIMAL
        settings['quotechar'] = settings['quotechar'] or '"'
    elif line[1 : len(HEADER[0]) + 2] == f'{HEADER[0]}{line[:1]}':
        rest = line[len(HEADER[0]) + 2 :]
        settings['quotechar'] = line[0]
        settings['quoting'] = csv.QUOTE_NONNUMERIC
    else:
        return None
    if not rest or end < 0:
        return None
    settings['delimiter'] = rest[0]
    settings['lineterminator'] = '\r\n' if text[end : end + 2] == '\r\n' else text[end]
    try:
        return _dialect(settings)
    except (TypeError, csv.Error):
        return None


def _owner(path: pathlib.Path, dialect: csv.Dialect | None) -> tuple[str, str] | None:
    """Return the model and source of a file's first row, if it has one."""
    files.refuse_links(path, 'CSVDumper')
    if not path.exists():
        return None
    _, rows, _, _ = _read(path, dialect)
    return (rows[0][0], rows[0][1]) if rows and len(rows[0]) >= 2 else None


def _valid(row: list[str], header: list[str]) -> bool:
    return len(row) == len(header) and row[2].lstrip('-').isdigit()


def _rewrite(
    path: pathlib.Path,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    dialect: csv.Dialect | None,
) -> TextIO:
    """Replace ``path`` atomically by ``header`` and ``rows``; open it to append.

    The old file stays whole until ``os.replace``, so a crash mid-rewrite
    loses nothing.
    """
    with files.replacing(path, mode='w', newline='', encoding='utf-8') as handle:
        writer = _writer(handle, dialect)
        writer.writerow(header)
        if dialect is None:
            writer.writerows(rows)
        else:  # numbers back to numbers, as they were first written
            for row in rows:
                values = [_number(cell) for cell in row[3:]]
                writer.writerow(_row(row[0], row[1], int(row[2]), values, dialect))
    return _append(path)


def _supersede(history: base.MetricHistory, epoch: int) -> None:
    """Drop the epochs from ``epoch`` on, as the writer does."""
    index = next((i for i, e in enumerate(history.epochs) if e >= epoch), None)
    if index is not None:
        del history.epochs[index:]
        for series in history.values.values():
            del series[index:]


def _cell(value: float | None) -> str:
    return '' if value is None else repr(float(value))


def _number(cell: str) -> float | None:
    return None if not cell else _value(cell)


def _value(cell: str) -> float:
    try:
        return float(cell) if cell else math.nan
    except ValueError:
        return math.nan
