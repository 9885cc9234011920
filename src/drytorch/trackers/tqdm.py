"""``TqdmLogger``: progress bars over the batches of each epoch, and the epochs.

``on_batch_end`` fires for every batch, so the bar does as little as possible
there: one ``tqdm.update`` (tqdm itself decides whether to redraw, at most every
``mininterval``) and, at most every ``postfix_interval`` seconds, the live
metrics. Reading them synchronises with the device, which is why this tracker
never calls ``live_metrics()`` on every batch.

``EpochBar`` and ``TrainingBar``, the two bars it draws, are public (as in the
original DRYTorch) for loops of one's own. Two defaults differ from the
original's on purpose: bars are not left on screen (``leave=False``), and they
are drawn only on a terminal or in a notebook, so that logs redirected to a
file stay clean; ``disable=False`` draws them on any stream (CI logs).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from tqdm import std as tqdm_std  # type: ignore[import-untyped]

from drytorch import hookimpl
from drytorch.core import log_events, tracking

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView

__all__ = ['EpochBar', 'TqdmLogger', 'TrainingBar']


class EpochBar:
    """The bar over the batches of one epoch, with the samples seen and metrics.

    ``TqdmLogger`` draws its epoch bars with this class; it is public so that
    a loop of one's own can show the same bar (the original DRYTorch's
    ``EpochBar``). Unlike ``TqdmLogger``, it always draws: whoever makes one
    wants it shown.

    Args:
        batch_size: the samples in a batch; ``None`` if not known (shown as
            ``?``).
        n_iter: the batches in the epoch; ``None`` if not known (a stream).
        n_samples: the samples in the epoch (the last batch may be short);
            ``None`` if not known.
        leave: keep the bar on screen when the epoch ends.
        file: the stream to draw on; ``None``: ``sys.stderr`` as it is now.
        desc: the bar's title.
        position: the line of the bar, as in tqdm (``None``: the first free
            one).

    Attributes:
        pbar: the tqdm bar drawn.
    """

    __slots__ = ('batch_size', 'n_iter', 'n_samples', 'next_postfix', 'pbar', 'seen')
    seen_str = 'Samples'
    """The postfix key of the samples seen."""

    def __init__(
        self,
        batch_size: int | None,
        n_iter: int | None,
        n_samples: int | None,
        leave: bool,
        file: TextIO | None,
        desc: str,
        position: int | None = 0,
        *,
        initial: int = 0,
    ) -> None:
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.n_samples = n_samples
        self.seen = 0
        self.next_postfix = 0.0  # TqdmLogger's clock for the live metrics
        self.pbar = tqdm_std.tqdm(
            total=n_iter,
            initial=initial,
            leave=leave,
            file=file if file is not None else sys.stderr,
            desc=desc,
            position=position,
            unit='batch',
            dynamic_ncols=True,
        )

    def update(self, metrics: Mapping[str, float], n_processes: int = 1) -> None:
        """Advance one batch and show ``metrics``; the last batch closes the bar.

        Args:
            metrics: the values to show, by name (formatted ``%.3e``).
            n_processes: the processes that each ran a batch of
                ``batch_size`` (distributed training): the samples seen grow
                by their product.
        """
        last = self.n_iter is not None and self.pbar.n + 1 >= self.n_iter
        seen: int | str = '?'
        if self.batch_size is not None:
            self.seen += self.batch_size * n_processes
            if self.n_samples is not None and (last or self.seen > self.n_samples):
                self.seen = self.n_samples
            seen = self.seen
        postfix: dict[str, int | str] = {self.seen_str: seen}
        postfix.update({name: f'{value:.3e}' for name, value in metrics.items()})
        self.pbar.set_postfix(postfix, refresh=False)
        self.pbar.update()
        if last:
            self.pbar.close()

    def close(self) -> None:
        """Close the bar (kept on screen if ``leave``)."""
        self.pbar.close()


class TrainingBar:
    """The bar over the epochs of a training, from ``start_epoch`` to ``end_epoch``.

    ``TqdmLogger(enable_training_bar=True)`` draws this bar; it is public for
    loops of one's own (the original DRYTorch's ``TrainingBar``). It counts
    epochs as the model does: resumed at epoch 3 of 5, it shows ``3/5``.
    It always draws.

    Args:
        start_epoch: the epoch training starts from (0: the start).
        end_epoch: the epoch training ends at.
        file: the stream to draw on; ``None``: ``sys.stderr`` as it is now.
        leave: keep the bar on screen when training ends.
        desc: the bar's title.

    Attributes:
        pbar: the tqdm bar drawn.
    """

    __slots__ = ('end_epoch', 'pbar', 'start_epoch')

    def __init__(
        self,
        start_epoch: int,
        end_epoch: int,
        file: TextIO | None,
        leave: bool,
        *,
        desc: str = 'Epoch',
    ) -> None:
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.pbar = tqdm_std.tqdm(
            total=end_epoch,
            initial=start_epoch,
            leave=leave,
            file=file if file is not None else sys.stderr,
            desc=desc,
            unit='epoch',
            dynamic_ncols=True,
        )

    def update(self, current_epoch: int) -> None:
        """Move the bar to ``current_epoch``, the last epoch done."""
        self.pbar.update(current_epoch - self.pbar.n)

    def close(self) -> None:
        """Close the bar (kept on screen if ``leave``)."""
        self.pbar.close()


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
        self._epochs: dict[str, EpochBar | None] = {}  # None: not drawn
        self._training: dict[str, TrainingBar] = {}
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
        opens = event.batch == 1 or source not in self._epochs
        if opens and not self._open_epoch(event):
            return
        epoch = self._epochs[source]  # None: an epoch not drawn
        total = event.n_batches  # None: a stream, its bar ends with the epoch
        last = total is not None and event.batch >= total
        if epoch is not None:
            bar = epoch.pbar
            now = time.monotonic()
            if now >= epoch.next_postfix or (last and self.leave):
                # a bar that is not left is erased at once: no final reading
                epoch.next_postfix = now + self.postfix_interval
                bar.set_postfix(event.live_metrics(), refresh=False)
            bar.update(event.batch - bar.n)
        if last:
            del self._epochs[source]
            if epoch is not None:
                epoch.close()

    def _open_epoch(self, event: log_events.IterateBatchEvent) -> bool:
        """Start tracking an epoch of a runner; ``False`` if it cannot be tracked."""
        stale = self._epochs.pop(event.source_name, None)
        if stale is not None:  # an epoch that broke off
            stale.close()
        total = event.n_batches
        if total is not None and event.batch > total:  # the length was wrong
            return False
        stream = self._stream()
        epoch = None
        if stream is not None:
            epoch = EpochBar(
                event.batch_size,
                total,
                None,
                self.leave,
                stream,
                self._desc(event.source_name),
                position=None,
                initial=event.batch - 1,
            )
            epoch.next_postfix = time.monotonic() + self.postfix_interval
        self._epochs[event.source_name] = epoch
        return True

    def _desc(self, name: str) -> str:
        return f'{self._title} | {name}' if self._title else name

    def _stream(self) -> TextIO | None:
        """Return the stream to draw on, or ``None`` if bars are not drawn."""
        stream = self.file if self.file is not None else sys.stderr
        return stream if self._draws_on(stream) else None

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
        for epoch in epochs.values():
            if epoch is not None:
                epoch.close()
        for bar in training.values():
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
        stream = self._stream()
        if stream is not None:
            self._training[event.model_name] = TrainingBar(
                event.start_epoch,
                event.end_epoch,
                stream,
                self.leave,
                desc=self._desc(f'{event.model_name} ({event.source_name})'),
            )

    @hookimpl
    def on_epoch_end(self, event: log_events.EpochEndEvent) -> None:
        """Advance the training bar of the model; end an epoch bar without a total."""
        unsized = self._epochs.pop(event.source_name, None)
        if unsized is not None:
            unsized.close()
        bar = self._training.get(event.model_name)
        if bar is not None:
            bar.update(event.epoch)

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
