"""TqdmLogger: one bar per epoch and runner, throttled live metrics, clean exits."""

from __future__ import annotations

import io
import itertools
import re
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from tqdm import std as tqdm_std

from drytorch import DataLoader, Loss, Test
from drytorch.core import exceptions, log_events
from drytorch.trackers import tqdm as tqdm_tracker
from drytorch.trackers.tqdm import TqdmLogger
from tests import training_kit as kit


class LiveSpy:
    """Wraps a runner's live metrics and counts the calls (each one syncs)."""

    def __init__(self, runner: Any) -> None:
        self.calls = 0
        self._inner = runner._live_metrics
        runner._live_metrics = self

    def __call__(self) -> Mapping[str, float]:
        self.calls += 1
        return self._inner()  # type: ignore[no-any-return]


def final_lines(output: str) -> list[str]:
    """What stays on screen of each finished bar: its last redraw."""
    return [line.rsplit('\r', 1)[-1] for line in output.split('\n') if line.strip()]


def only(tracker: TqdmLogger) -> Any:
    """An experiment with ``tracker`` as its only tracker."""
    exp = kit.experiment()
    exp.trackers.remove_all()
    exp.trackers.subscribe(tracker)
    return exp


def full_run(tracker: TqdmLogger, epochs: int = 2) -> Any:
    """Train with validation, then test, with only ``tracker`` subscribed."""
    with only(tracker).create_run():
        trainer = kit.trainer(n=48, batch_size=8)  # 6 batches
        trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))  # 2
        trainer.train(epochs)
        Test(
            trainer.model, loader=DataLoader(kit.regression(12), 4), metric=kit.mse()
        )()
    return trainer


def test_a_bar_per_epoch_and_runner_with_metrics_in_the_postfix() -> None:
    stream = io.StringIO()
    full_run(TqdmLogger(leave=True, file=stream, disable=False))
    lines = final_lines(stream.getvalue())
    titles = [line.split(':')[0] for line in lines]
    run_id = titles[0].split(' | ')[0]
    assert titles == [
        f'{run_id} | {name}'
        for name in ('Trainer', 'Validation', 'Trainer', 'Validation', 'Test')
    ]
    for line, total in zip(lines, [6, 2, 6, 2, 3], strict=True):
        assert f'{total}/{total}' in line
        assert 'batch/s' in line
        assert re.search(r'MSE=\d', line), line
    assert not tqdm_std.tqdm._instances  # every bar was closed


def test_bars_are_titled_with_the_run_and_the_epoch_it_resumed_from() -> None:
    stream = io.StringIO()
    tracker = TqdmLogger(leave=True, file=stream, disable=False)
    tracker.enable_training_bar = True
    exp = only(tracker)
    with exp.create_run(run_id='titled'):
        trainer = kit.trainer(n=16, batch_size=8)
        trainer.train(1)
        trainer.save_checkpoint()
    first = final_lines(stream.getvalue())
    assert {line.split(':')[0] for line in first} == {
        'titled | Model (Trainer)',
        'titled | Trainer',
    }
    stream.seek(0)
    stream.truncate()
    with exp.create_run(run_id='titled', resume=True):
        trainer = kit.trainer(n=16, batch_size=8)
        assert trainer.resume()
        trainer.train(1)
    again = final_lines(stream.getvalue())
    assert {line.split(':')[0] for line in again} == {
        'titled, resumed from epoch 1 | Model (Trainer)',
        'titled, resumed from epoch 1 | Trainer',
    }


def test_bars_are_not_left_by_default() -> None:
    stream = io.StringIO()
    full_run(TqdmLogger(file=stream, disable=False), epochs=1)
    output = stream.getvalue()
    assert 'Trainer' in output
    assert '\n' not in output  # every bar was erased at its last batch
    assert not tqdm_std.tqdm._instances


def test_live_metrics_are_read_a_handful_of_times_for_many_batches() -> None:
    tracker = TqdmLogger(leave=True, file=io.StringIO(), disable=False)
    with only(tracker).create_run():
        trainer = kit.trainer(n=1200, batch_size=2)  # 600 batches an epoch
        spy = LiveSpy(trainer)
        start = time.monotonic()
        trainer.train(2)
        elapsed = time.monotonic() - start
    # once per 0.1 s at most, plus the final reading of each left bar
    assert 2 <= spy.calls <= 2 + elapsed / 0.1 + 1
    assert spy.calls < 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(('leave', 'expected'), [(True, 10), (False, 9)])
def test_postfix_is_time_throttled_and_final_only_when_left(
    monkeypatch: pytest.MonkeyPatch, leave: bool, expected: int
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(
        tqdm_tracker, 'time', types.SimpleNamespace(monotonic=clock.monotonic)
    )
    reads = []

    def live() -> dict[str, float]:
        reads.append(clock.now)
        return {'loss': 1.0}

    stream = io.StringIO()
    tracker = TqdmLogger(leave=leave, file=stream, disable=False)
    for batch in range(1, 101):  # 100 batches, 0.01 s each
        tracker.on_batch_end(
            log_events.IterateBatchEvent('Trainer', batch, 100, 4, live)
        )
        clock.now = batch / 100
    assert len(reads) == expected  # at 0.1 s, 0.2 s, ... (and the last batch)
    throttled = reads[:-1] if leave else reads  # the final reading is extra
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(throttled))
    assert ('100/100' in stream.getvalue()) is leave
    assert not tqdm_std.tqdm._instances


def test_non_terminal_streams_get_no_bars_and_no_readings() -> None:
    stream = io.StringIO()
    tracker = TqdmLogger(leave=True, file=stream, enable_training_bar=True)
    with only(tracker).create_run():
        runner = kit.trainer()
        spy = LiveSpy(runner)
        runner.train(2)
    assert stream.getvalue() == ''
    assert spy.calls == 0


def test_bars_go_to_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    replaced = io.StringIO()
    tracker = TqdmLogger(leave=True, disable=False)  # created before the swap
    monkeypatch.setattr(sys, 'stderr', replaced)
    full_run(tracker, epochs=1)
    assert len(final_lines(replaced.getvalue())) == 3


def test_disable_true_draws_nothing_even_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = Terminal(), Terminal()
    full_run(TqdmLogger(file=shown), epochs=1)
    full_run(TqdmLogger(file=hidden, disable=True), epochs=1)
    assert 'Trainer' in shown.getvalue()  # a terminal gets bars by default
    assert hidden.getvalue() == ''


def test_a_run_failing_mid_epoch_closes_its_bar() -> None:
    calls = 0

    def breaking(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError('broken batch')
        return kit.mse_fn(outputs, targets)

    stream = io.StringIO()
    tracker = TqdmLogger(leave=True, file=stream, disable=False)
    run = only(tracker).create_run()
    with pytest.raises(RuntimeError, match='broken batch'), run:
        kit.trainer(loss=Loss(breaking, 'MSE')).train(1)
    output = stream.getvalue()
    assert output.endswith('\n')  # the next line starts clean
    assert '2/6' in final_lines(output)[-1]
    assert not tqdm_std.tqdm._instances


def test_a_new_epoch_replaces_a_bar_that_broke_off() -> None:
    stream = io.StringIO()
    tracker = TqdmLogger(leave=True, file=stream, disable=False)

    def live() -> dict[str, float]:
        return {}

    for batch in (1, 2, 1, 2, 3):  # the first epoch stopped after 2 of 3
        tracker.on_batch_end(log_events.IterateBatchEvent('Test', batch, 3, 4, live))
    lines = final_lines(stream.getvalue())
    assert len(lines) == 2
    assert '2/3' in lines[0]
    assert '3/3' in lines[1]
    assert not tqdm_std.tqdm._instances


def test_training_bar_counts_epochs_across_calls() -> None:
    stream = io.StringIO()
    tracker = TqdmLogger(
        leave=True, enable_training_bar=True, file=stream, disable=False
    )
    with only(tracker).create_run():
        trainer = kit.trainer()
        trainer.train(3)
        trainer.train_until(5)
        with pytest.warns(exceptions.PastEpochWarning):
            trainer.train_until(4)  # already there: no bar
    output = stream.getvalue()
    assert len(re.findall(r'Model \(Trainer\)', output)) >= 2
    assert re.search(r'3/3 \[[^]]*epoch/s', output)
    assert re.search(r'5/5 \[[^]]*epoch/s', output)
    assert output.count('4/4') == 0
    assert not tqdm_std.tqdm._instances


def test_per_batch_cost_is_tiny() -> None:
    n = 20_000
    tracker = TqdmLogger(file=io.StringIO(), disable=False)
    events = [
        log_events.IterateBatchEvent('Trainer', batch, n, 4, dict)
        for batch in range(1, n + 1)
    ]
    start = time.perf_counter()
    for event in events:
        tracker.on_batch_end(event)
    per_batch = (time.perf_counter() - start) / n
    assert per_batch < 20e-6  # about 0.3 us on a laptop core


def test_training_bar_alone_for_the_minimal_mode() -> None:
    stream = io.StringIO()
    tracker = TqdmLogger(
        enable_training_bar=True, epoch_bars=False, file=stream, disable=False
    )
    trainer = full_run(tracker)
    assert trainer.model.epoch == 2
    output = stream.getvalue()
    assert 'epoch' in output
    assert 'batch' not in output
    assert not tqdm_std.tqdm._instances


def test_of_the_built_in_trackers_only_the_bars_are_called_per_batch(
    host: Any,
) -> None:
    from drytorch import Tracker
    from drytorch.trackers.csv import CSVDumper
    from drytorch.trackers.logging import BuiltinLogger
    from drytorch.trackers.sqlite import SQLiteTracker
    from drytorch.trackers.toml import TomlDumper

    trackers: list[Tracker] = [
        BuiltinLogger(),
        TqdmLogger(),
        TomlDumper(),
        CSVDumper(),
        SQLiteTracker(),
    ]
    try:
        from drytorch.trackers.plot import PlotTracker

        trackers.append(PlotTracker())
    except ImportError:  # matplotlib is optional
        pass
    # hook methods only: no catch-all ``notify`` that would take every event
    assert all(type(t).notify is Tracker.notify for t in trackers)
    exp = kit.experiment()
    exp.trackers.remove_all()
    exp.trackers.subscribe(*trackers)
    with exp.create_run():
        assert host.implementers('on_batch_end') == ['tracker:TqdmLogger']
