"""``TqdmLogger``: progress bars over the batches of each epoch, and the epochs.

``on_batch_end`` fires for every batch, so the bar does as little as possible
there: one ``tqdm.update`` (tqdm itself decides whether to redraw, at most every
``mininterval``) and, at most every ``postfix_interval`` seconds, the live
metrics. Reading them synchronises with the device, which is why this tracker
never calls ``live_metrics()`` on every batch.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import std as tqdm_std  # type: ignore[import-untyped]

from drytorch import hookimpl
from drytorch.core import log_events, tracking

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView

__all__ = ['TqdmLogger']


class _EpochBar:
    """One runner's epoch: its bar (``None`` when not drawn) and postfix clock."""

    __slots__ = ('bar', 'next_postfix')

    def __init__(self, bar: Any, next_postfix: float) -> None:
        self.bar = bar
        self.next_postfix = next_postfix


class TqdmLogger(tracking.Tracker):
    """Shows a tqdm bar per epoch of each runner (Trainer, Validation, Test).

    A bar opens at the first batch of an epoch and closes at its last, so log
    lines written at the end of the epoch never land in the middle of a bar.
    Every bar's title starts with the run's id and, for a run that resumed
    from a checkpoint, the epoch it resumed from.
    Bars left open by a failing run are closed when the run stops.

    Args:
        leave: keep each finished bar on screen, with its final metrics.
        enable_training_bar: add an outer bar over the epochs of ``train()``.
            Log lines written while it is open (the epoch lines of
            ``BuiltinLogger``) interleave with it: lower that logger's level
            or leave this off.
        file: the stream to draw on; by default ``sys.stderr`` as it is when
            each bar is created (notebooks and test runners replace it).
        epoch_bars: show the bars over the batches of each epoch; turn off
            to keep only the training bar (the ``minimal`` init mode).
        disable: as in tqdm: ``None`` draws only on a terminal or in a
            Jupyter notebook, so logs redirected to a file stay clean;
            ``False`` always draws (useful to test, or to keep bars in a
            captured stream); ``True`` never does.
        postfix_interval: the least number of seconds between two readings of
            the live metrics during an epoch.
    """

    def __init__(
        self,
        leave: bool = False,
        enable_training_bar: bool = False,
        file: TextIO | None = None,
        *,
        epoch_bars: bool = True,
        disable: bool | None = None,
        postfix_interval: float = 0.1,
    ) -> None:
        super().__init__()
        self.leave = leave
        self.enable_training_bar = enable_training_bar
        self.epoch_bars = epoch_bars
        self.file = file
        self.disable = disable
        self.postfix_interval = postfix_interval
        self._epochs: dict[str, _EpochBar] = {}
        self._training: dict[str, Any] = {}
        self._title = ''  # the run, and where it resumed: every bar's prefix
        self._titled: set[str] = set()  # models whose training start was seen

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Title the bars with the run's id."""
        self._title = run.id
        self._titled = set()

    @hookimpl
    def on_batch_end(self, event: log_events.IterateBatchEvent) -> None:
        """Advance the runner's bar: the hot path, called per batch."""
        try:
            self._advance(event)
        except BaseException:  # the host unsubscribes us: leave no bar behind
            self.close_all()
            raise

    def _advance(self, event: log_events.IterateBatchEvent) -> None:
        if not self.epoch_bars:
            return
        source = event.source_name
        epoch = self._epochs.get(source)
        if epoch is None or event.batch == 1:
            epoch = self._open_epoch(event)
            if epoch is None:
                return
        total = event.n_batches  # None: a stream, its bar ends with the epoch
        last = total is not None and event.batch >= total
        bar = epoch.bar
        if bar is not None:
            now = time.monotonic()
            if now >= epoch.next_postfix or (last and self.leave):
                # a bar that is not left is erased at once: no final reading
                epoch.next_postfix = now + self.postfix_interval
                bar.set_postfix(event.live_metrics(), refresh=False)
            bar.update(event.batch - bar.n)
        if last:
            del self._epochs[source]
            if bar is not None:
                bar.close()

    def _open_epoch(self, event: log_events.IterateBatchEvent) -> _EpochBar | None:
        """Start tracking an epoch of a runner; ``None`` if it cannot be shown."""
        stale = self._epochs.pop(event.source_name, None)
        if stale is not None and stale.bar is not None:  # an epoch that broke off
            stale.bar.close()
        total = event.n_batches
        if total is not None and event.batch > total:  # the length was wrong
            return None
        bar = self._new_bar(
            desc=self._desc(event.source_name),
            total=event.n_batches,
            initial=event.batch - 1,
            unit='batch',
        )
        epoch = _EpochBar(bar, time.monotonic() + self.postfix_interval)
        self._epochs[event.source_name] = epoch
        return epoch

    def _desc(self, name: str) -> str:
        return f'{self._title} | {name}' if self._title else name

    def _new_bar(self, **kwargs: Any) -> Any:
        """Return a tqdm bar on the chosen stream, or ``None`` if not drawn."""
        stream = self.file if self.file is not None else sys.stderr
        if not self._draws_on(stream):
            return None
        return tqdm_std.tqdm(
            file=stream, leave=self.leave, dynamic_ncols=True, **kwargs
        )

    def _draws_on(self, stream: TextIO | None) -> bool:
        if self.disable is not None:
            return not self.disable
        if _in_notebook():  # a kernel's streams are no terminals, but they draw
            return True
        try:
            return stream is not None and stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False

    def close_all(self) -> None:
        """Close every open bar (epoch bars first, then training bars)."""
        epochs, self._epochs = self._epochs, {}
        training, self._training = self._training, {}
        for bar in [e.bar for e in epochs.values()] + list(training.values()):
            if bar is not None:
                bar.close()

    @hookimpl
    def on_training_start(self, event: log_events.TrainingStartEvent) -> None:
        """Open the bar over the epochs of ``train()`` (``enable_training_bar``).

        The first training of a model in the run that starts past epoch 0
        resumed from a checkpoint: the bars' title says from which epoch.
        """
        if event.model_name not in self._titled:
            self._titled.add(event.model_name)
            if event.start_epoch > 0 and event.start_epoch < event.end_epoch:
                resumed = f'resumed from epoch {event.start_epoch}'
                self._title = f'{self._title}, {resumed}' if self._title else resumed
        if not self.enable_training_bar:
            return
        stale = self._training.pop(event.model_name, None)
        if stale is not None:
            stale.close()
        if event.start_epoch >= event.end_epoch:  # nothing to train
            return
        bar = self._new_bar(
            desc=self._desc(f'{event.model_name} ({event.source_name})'),
            total=event.end_epoch,
            initial=event.start_epoch,
            unit='epoch',
        )
        if bar is not None:
            self._training[event.model_name] = bar

    @hookimpl
    def on_epoch_end(self, event: log_events.EpochEndEvent) -> None:
        """Advance the training bar of the model; end an epoch bar without a total."""
        unsized = self._epochs.pop(event.source_name, None)
        if unsized is not None and unsized.bar is not None:
            unsized.bar.close()
        bar = self._training.get(event.model_name)
        if bar is not None:
            bar.update(event.epoch - bar.n)

    @hookimpl
    def on_training_end(self, event: log_events.TrainingEndEvent) -> None:
        """Close the training bar of the model."""
        bar = self._training.pop(event.model_name, None)
        if bar is not None:
            bar.close()

    @hookimpl
    def on_run_stop(self) -> None:
        """Close the bars a failing run left open."""
        self.close_all()


def _in_notebook() -> bool:
    """Return whether the code runs in a Jupyter kernel."""
    ipython = sys.modules.get('IPython')
    get_ipython = getattr(ipython, 'get_ipython', None)
    shell = get_ipython() if callable(get_ipython) else None
    return type(shell).__name__ == 'ZMQInteractiveShell'
