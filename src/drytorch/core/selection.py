"""Choosing runs from a listing: by status, tags and time, sorted and limited.

One implementation serves ``Experiment.list_runs`` and ``drytorch runs``, so
the same words select the same runs in Python and on the command line: the
arguments are checked here (``criteria``), the registry index chooses the
runs, and a ``RunList`` holds them.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args, overload

from drytorch.core.log_events import RunStatus

if TYPE_CHECKING:
    from drytorch.core.registry import RunRecord

__all__ = [
    'SORT_KEYS',
    'STATUSES',
    'RunList',
    'SortKey',
    'criteria',
    'parse_since',
]

SortKey = Literal['created', 'started', 'stopped', 'id', 'status']
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
_AGO = re.compile(r'(\d+(?:\.\d+)?)\s*([smhdw])')
_UNIT = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}


def criteria(
    status: str | Sequence[str] | None,
    tags: str | Sequence[str],
    since: datetime.datetime | str | None,
    sort: str,
    limit: int | None,
) -> tuple[set[str], set[str], datetime.datetime | None]:
    """Check a selection's arguments; return the statuses, tags and start wanted.

    Raises:
        ValueError: an unknown status or sort key, a bad ``since``, a
            negative ``limit``.
    """
    wanted = {status} if isinstance(status, str) else set(status or ())
    unknown = wanted - STATUSES
    if unknown:
        raise ValueError(
            f'Unknown run status {sorted(unknown)[0]!r}: use one of '
            f'{", ".join(sorted(STATUSES))}.'
        )
    if sort not in SORT_KEYS:
        raise ValueError(f'Cannot sort runs by {sort!r}: use one of {SORT_KEYS}.')
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
    ):
        raise ValueError(f'limit must be an integer >= 0, got {limit!r}.')
    required = {tags} if isinstance(tags, str) else set(tags)
    start = parse_since(since) if since is not None else None
    return wanted, required, start


class RunList(Sequence['RunRecord']):
    """The runs a listing chose, in order; each record is read when first used.

    Choosing is done by the registry index, so a listing of 100,000 runs
    returns at once; records are then built a page at a time. It compares
    equal to a list of the same records.
    """

    PAGE = 256

    def __init__(
        self,
        entries: Sequence[Any],
        load: Callable[[Sequence[Any]], list[RunRecord]],
        *,
        matched: int | None = None,
    ) -> None:
        self._entries = list(entries)
        self._load = load
        self._records: list[RunRecord | None] = [None] * len(self._entries)
        self.matched = len(self._entries) if matched is None else matched
        """How many runs matched the filters, before ``limit``."""

    @property
    def ids(self) -> list[str]:
        """The ids of the runs, in order, without reading their records."""
        return [entry[0] for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> RunRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[RunRecord]: ...

    def __getitem__(self, index: int | slice) -> RunRecord | list[RunRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError('run list index out of range')
        record = self._records[index]
        if record is None:
            start = index - index % self.PAGE
            stop = min(start + self.PAGE, len(self))
            for offset, loaded in enumerate(self._load(self._entries[start:stop])):
                self._records[start + offset] = loaded
            record = self._records[index]
            assert record is not None
        return record

    def __iter__(self) -> Iterator[RunRecord]:
        for index in range(len(self)):
            yield self[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunList | list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ', '.join(repr(run_id) for run_id in self.ids[:5])
        more = ', ...' if len(self) > 5 else ''
        return f'RunList([{shown}{more}], {len(self)} runs)'


def parse_since(value: datetime.datetime | str) -> datetime.datetime:
    """Return ``value`` as an aware datetime: a datetime, an ISO time or an age.

    Raises:
        ValueError: ``value`` is none of these.
    """
    if isinstance(value, datetime.datetime):
        return _aware(value)
    text = value.strip()
    match = _AGO.fullmatch(text)
    if match:
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
        return datetime.datetime.now().astimezone() - datetime.timedelta(
            seconds=seconds
        )
    try:
        return _aware(datetime.datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f'Cannot read {value!r} as a time: use an ISO date or time '
            '(2026-12-01, 2026-12-01T10:30) or an age (30m, 12h, 7d).'
        ) from None


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.astimezone()
