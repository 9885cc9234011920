"""The slow-tracker watchdog: a tracker that blocks must not block silently.

Trackers run inline, in the thread that dispatches the event, so a tracker
stuck on a hung network call or a full pipe stops the run. The plugin host
marks each hook call in the calling thread's ``CallSlot`` (one tuple
assignment: no lock, no timer per call). One daemon thread, started on the
first dispatch, polls the slots and warns once per call that has run longer
than the host's limit, with the stack of the blocked thread. It never
interrupts the call: the run goes on as soon as the tracker returns.

The slots also accumulate each plugin's time in hook calls, per thread, so
that no thread ever writes a total another thread writes.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import sysconfig
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Mapping
from types import CodeType, FrameType

from drytorch.core import exceptions

__all__ = ['CallSlot', 'CallTable', 'noticeable_tracker_times']

_LOGGER = logging.getLogger('drytorch')
_MIN_SHARE = 0.01
_MIN_SECONDS = 0.1


class CallSlot:
    """What one thread is dispatching now, and its plugins' time so far.

    Attributes:
        call: ``(plugin_name, hook_name, perf_counter start)`` while a hook
            call runs, else None. It is replaced whole, so the watchdog never
            sees the plugin of one call with the start of another.
        ident: the thread's identifier, to find its stack.
        times: seconds spent in hook calls, by plugin name.
        reported: the start of the last call warned about. A call that
            started no later is that call, or one it is nested in and slow
            because of it: neither is warned about again.
    """

    __slots__ = ('__weakref__', 'call', 'ident', 'reported', 'times')

    def __init__(self, ident: int) -> None:
        self.call: tuple[str, str, float] | None = None
        self.ident = ident
        self.times: dict[str, float] = {}
        self.reported = -math.inf


class CallTable:
    """The call slots of one plugin host, one per dispatching thread.

    Args:
        dispatcher: the code of the host's function that calls the hooks; a
            warning shows the stack below it, the tracker's part.
        limit: the initial ``limit``.

    Attributes:
        slots: the slots by thread identifier; read it with ``.get`` on the
            hot path and call ``add_thread`` on a miss.
        dispatcher: as given.
    """

    def __init__(self, dispatcher: CodeType, limit: float) -> None:
        self.slots: dict[int, CallSlot] = {}
        self.dispatcher = dispatcher
        self._limit = limit

    @property
    def limit(self) -> float:
        """Seconds after which a hook call is reported; 0 or less: never."""
        return self._limit

    @limit.setter
    def limit(self, seconds: float) -> None:
        self._limit = seconds
        _wake.set()  # a shorter limit polls sooner: do not finish a long nap

    def add_thread(self) -> CallSlot:
        """Return the current thread's slot, created and watched on first use."""
        ident = threading.get_ident()
        with _lock:
            slot = self.slots.get(ident)
            if slot is None:
                slot = self.slots[ident] = CallSlot(ident)
            _tables.add(self)
            _start()
        return slot

    def times(self) -> dict[str, float]:
        """Return the seconds spent in hook calls by plugin, all threads summed."""
        with _lock:
            slots = list(self.slots.values())
        total: dict[str, float] = {}
        for slot in slots:
            for name, seconds in list(slot.times.items()):
                total[name] = total.get(name, 0.0) + seconds
        return total

    def reset_times(self) -> None:
        """Start counting from zero; a call in progress counts from now on."""
        with _lock:
            for slot in self.slots.values():
                slot.times = {}


def noticeable_tracker_times(
    times: Mapping[str, float], run_seconds: float
) -> dict[str, float]:
    """Keep the plugins whose hook time a user would notice, slowest first.

    Noticeable: at least 1 % of the run's wall time and at least 0.1 s, so a
    short run does not record noise and a long one only what matters.

    Args:
        times: seconds in hook calls by plugin name (``tracker_times()``).
        run_seconds: the wall time of the run (or session).
    """
    floor = max(_MIN_SHARE * run_seconds, _MIN_SECONDS)
    kept = {name: seconds for name, seconds in times.items() if seconds >= floor}
    return dict(sorted(kept.items(), key=lambda item: -item[1]))


_lock = threading.Lock()
_tables: weakref.WeakSet[CallTable] = weakref.WeakSet()
_thread: threading.Thread | None = None
_wake = threading.Event()


def _start() -> None:
    """Start the watchdog thread unless it runs; call with ``_lock`` held."""
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_watch, name='drytorch-watchdog', daemon=True)
        _thread.start()


def _watch() -> None:
    """Poll every watched table, forever, at a tenth of the smallest limit."""
    while True:
        with _lock:
            tables = [(t, list(t.slots.values())) for t in _tables if t.limit > 0]
        limits = [table.limit for table, _ in tables]
        try:
            _check(tables)
        except Exception:  # pragma: no cover - the watchdog must never die
            _LOGGER.exception('The DRYTorch slow-tracker watchdog failed')
        _wake.wait(min(max(min(limits, default=1.0) / 10, 0.05), 1.0))
        _wake.clear()


def _check(tables: list[tuple[CallTable, list[CallSlot]]]) -> None:
    now = time.perf_counter()
    frames: dict[int, FrameType] | None = None
    for table, slots in tables:
        for slot in slots:
            call = slot.call
            if call is None or call[2] <= slot.reported or now - call[2] < table.limit:
                continue
            slot.reported = call[2]
            if frames is None:
                frames = sys._current_frames()
            frame = frames.get(slot.ident)
            if slot.call is call:  # not finished meanwhile
                _report(call, now - call[2], frame, table.dispatcher)


def _report(
    call: tuple[str, str, float],
    elapsed: float,
    frame: FrameType | None,
    dispatcher: CodeType,
) -> None:
    """Warn about a blocked call; log it if the warning filters raise."""
    plugin, hook, _ = call
    stack = _stack_below(frame, dispatcher)
    where = ''.join(stack.format()) if stack else '  (no stack available)\n'
    message = (
        f'{hook} of {plugin!r} has been running for {elapsed:.1f} s; the run '
        f'waits for it (the call is not interrupted). Where it is:\n{where}'
        'Change the limit with DRYTORCH_SLOW_TRACKER_SECONDS or '
        'slow_tracker_seconds in [tool.drytorch]; 0 turns this off.'
    )
    filename, lineno = _location(stack)
    try:
        # a fresh registry: the same text for another stuck call still shows
        warnings.warn_explicit(
            message, exceptions.SlowTrackerWarning, filename, lineno, registry=None
        )
    except Exception:  # an 'error' filter cannot raise into the blocked thread
        _LOGGER.warning('SlowTrackerWarning: %s', message)


def _stack_below(
    frame: FrameType | None, dispatcher: CodeType
) -> traceback.StackSummary:
    """Return the stack from the hook implementation down to ``frame``."""
    inner: list[tuple[FrameType, int]] = []
    if frame is not None:  # walk_stack(None) would walk the watchdog's own
        for current, lineno in traceback.walk_stack(frame):
            if current.f_code is dispatcher:
                break
            inner.append((current, lineno))
    return traceback.StackSummary.extract(reversed(inner))


_LIBRARY = sysconfig.get_path('stdlib')
_PACKAGES = (sysconfig.get_path('purelib'), sysconfig.get_path('platlib'))


def _location(stack: traceback.StackSummary) -> tuple[str, int]:
    """Return the innermost line outside the standard library.

    A lock's wait in ``threading`` tells less than the tracker's line waiting.
    """
    for entry in reversed(stack):
        name = entry.filename
        if not name.startswith(_LIBRARY) or name.startswith(_PACKAGES):
            return name, entry.lineno or 0
    if stack:
        return stack[-1].filename, stack[-1].lineno or 0
    return __file__, 0


def _forget_after_fork() -> None:
    """In a forked child only the forking thread lives: start over on first use."""
    global _lock, _thread, _wake
    _lock = threading.Lock()  # the watchdog may have held these at the fork
    _wake = threading.Event()
    _thread = None
    for table in list(_tables):
        table.slots.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
