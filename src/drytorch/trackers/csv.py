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
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import pathlib
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from drytorch import hookimpl
from drytorch.core import exceptions, files
from drytorch.trackers import base

if TYPE_CHECKING:
    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = ['HEADER', 'CSVColumnsWarning', 'CSVDumper', 'CSVWriteWarning']

HEADER = ('Model', 'Source', 'Epoch')
"""The first columns of every file; the metrics follow."""

_UNSAFE = re.compile(r'[^A-Za-z0-9_-]')
_PART = re.compile(r'^(?P<stem>[^.]+)(?:\.(?P<part>[0-9]+))?\.csv$')
_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)  # not on Windows: is_symlink checks


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
    """

    kind = 'csv_metrics'

    def __init__(self, par_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(par_dir)
        self._session: _Session | None = None

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

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, base.MetricHistory]]:
        """Return ``{model: {source: history}}`` from a run's files ({} if none).

        Parts are read in order and rows follow the writer's rule: a row for
        an epoch not after the last one read replaces that epoch and the later
        ones. Missing cells are NaN.

        Raises:
            UnsafePathError: a file or folder of the run's layout is a
                symbolic link.
        """
        folder = self.location(experiment_name, run_id)
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
            header, rows, _ = _read(path)
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
            header, rows, _ = _read(sheet.path)
            kept = [row for row in rows if int(row[2]) < event.epoch]
            sheet.handle = _rewrite(sheet.path, header, kept)
        row = [event.model_name, event.source_name, str(event.epoch)]
        row += [_cell(event.metrics.get(name)) for name in sheet.columns]
        csv.writer(sheet.handle).writerow(row)
        sheet.handle.flush()
        sheet.last_epoch = event.epoch

    def _open(self, run: RunView, model: str, source: str, names: list[str]) -> _Sheet:
        """Continue the file of ``model`` and ``source``, or start it."""
        # the kind, experiment and run folders: checked before run_dir makes them
        files.refuse_links(self.folder(run), 'CSVDumper', depth=3)
        folder = self.run_dir(run)
        stem = f'{_safe(model)}_{_safe(source)}'
        owner = _owner(folder / f'{stem}.csv')
        if owner is not None and owner != (model, source):  # a plain-name clash
            stem += '-' + _digest(f'{model}\0{source}')
        path = _latest_part(folder, stem)
        files.refuse_links(path, 'CSVDumper')
        if not path.exists():
            return _create(path, names)
        header, rows, whole = _read(path)
        if tuple(header[:3]) != HEADER or not set(names) <= set(header[3:]):
            return self._next_part(path, names)
        # a crash may have cut the last row short: drop it, then append
        handle = _append(path) if whole else _rewrite(path, header, rows)
        epochs = [int(row[2]) for row in rows]
        return _Sheet(path, header[3:], max(epochs, default=None), handle)

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
        return _create(new_path, names)

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
        return f'{type(self).__name__}(par_dir={par_dir!r})'


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


def _create(path: pathlib.Path, names: Sequence[str]) -> _Sheet:
    # a dangling link: exclusive creation would fail anyway
    files.refuse_links(path, 'CSVDumper')
    handle = path.open('x', newline='', encoding='utf-8')
    csv.writer(handle).writerow([*HEADER, *names])
    handle.flush()
    return _Sheet(path, list(names), None, handle)


def _read(path: pathlib.Path) -> tuple[list[str], list[list[str]], bool]:
    """Return a file's header and whole rows, and whether nothing was left out.

    A last line without its newline was cut short by a crash (rows are
    written and flushed whole): it is left out, like any malformed row.
    Undecodable text gives no header and no rows.
    """
    files.refuse_links(path, 'CSVDumper')
    try:
        text = path.read_text(encoding='utf-8')
        lines = list(csv.reader(io.StringIO(text, newline='')))
    except (UnicodeDecodeError, csv.Error):
        return [], [], False
    if not lines:
        return [], [], not text
    header, rows = lines[0], lines[1:]
    if rows and not text.endswith(('\n', '\r')):
        rows.pop()
    valid = [row for row in rows if _valid(row, header)]
    return header, valid, len(valid) == len(lines) - 1 and text.endswith('\n')


def _owner(path: pathlib.Path) -> tuple[str, str] | None:
    """Return the model and source of a file's first row, if it has one."""
    files.refuse_links(path, 'CSVDumper')
    if not path.exists():
        return None
    _, rows, _ = _read(path)
    return (rows[0][0], rows[0][1]) if rows and len(rows[0]) >= 2 else None


def _valid(row: list[str], header: list[str]) -> bool:
    return len(row) == len(header) and row[2].lstrip('-').isdigit()


def _rewrite(
    path: pathlib.Path, header: Sequence[str], rows: Sequence[Sequence[str]]
) -> TextIO:
    """Replace ``path`` atomically by ``header`` and ``rows``; open it to append.

    The old file stays whole until ``os.replace``, so a crash mid-rewrite
    loses nothing.
    """
    with files.replacing(path, mode='w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
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


def _value(cell: str) -> float:
    try:
        return float(cell) if cell else math.nan
    except ValueError:
        return math.nan
