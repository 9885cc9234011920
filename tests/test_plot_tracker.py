"""PlotTracker and plot helpers: PNGs, resumed curves, failures, no matplotlib."""

from __future__ import annotations

import math
import pathlib
import warnings
from typing import Any

import pytest
import torch

from drytorch import DataLoader, Metric, Model, RunView, hookimpl
from drytorch.core import exceptions, plugins
from drytorch.trackers.base import MetricHistory
from drytorch.trackers.csv import CSVDumper
from drytorch.trackers.plot import (
    MissingPlotDependencyError,
    PlotError,
    PlotTracker,
    match_metric,
    match_metrics,
    plot_curves,
    plot_histories,
    plot_run,
    save_learning_curves,
)
from tests import training_kit as kit
from tests.conftest import ROOT, run_python

matplotlib_image = pytest.importorskip('matplotlib.image')

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def mae_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean()


def history(epochs: list[int], values: list[float], metric: str = 'MSE') -> Any:
    return MetricHistory(list(epochs), {metric: list(values)})


class FakeLoader:
    """A MetricLoader returning fixed histories and remembering its calls."""

    def __init__(self, histories: dict[str, dict[str, MetricHistory]]) -> None:
        self.histories = histories
        self.calls: list[tuple[str, str]] = []

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, MetricHistory]]:
        self.calls.append((experiment_name, run_id))
        return self.histories


class StoredMetrics:
    """A plugin answering ``load_metrics`` (first), remembering the runs asked."""

    def __init__(self, histories: dict[str, dict[str, MetricHistory]]) -> None:
        self.histories = histories
        self.asked: list[tuple[str, str, bool]] = []

    @hookimpl(tryfirst=True)
    def load_metrics(self, run: RunView) -> dict[str, dict[str, MetricHistory]]:
        self.asked.append((run.experiment, run.id, run.resumed))
        return self.histories


def train(
    exp: Any,
    n_epochs: int,
    model: Model[Any, Any] | None = None,
    run_id: str = 'r',
    resume: bool = False,
) -> Model[Any, Any]:
    with exp.create_run(run_id=run_id, resume=resume):
        trainer = kit.trainer(model, n=16)
        trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
        trainer.train(n_epochs)
        return trainer.model


def xdata(tracker: PlotTracker, source: str, model: str = 'Model') -> list[float]:
    figure = plot_histories(tracker.histories[model], 'MSE', model)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    return [float(x) for x in lines[source].get_xdata()]


def assert_png(path: pathlib.Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


# --- the tracker during training ---------------------------------------------


def test_curves_are_saved_every_epoch(tmp_path: pathlib.Path) -> None:
    exp = kit.experiment()
    tracker = PlotTracker(par_dir=tmp_path / 'out')
    exp.trackers.subscribe(tracker)
    png = tmp_path / 'out' / 'plots' / 'exp' / 'r' / 'Model-MSE.png'
    with exp.create_run(run_id='r'):
        trainer = kit.trainer(n=16)
        trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
        trainer.train(1)
        assert_png(png)  # written at the epoch's end, before the run stops
        first = png.stat().st_mtime_ns
        trainer.train(2)
        assert png.stat().st_mtime_ns >= first
    assert sorted(p.name for p in png.parent.iterdir()) == ['Model-MSE.png']
    assert_png(png)
    assert xdata(tracker, 'Trainer') == [1, 2, 3]
    assert xdata(tracker, 'Validation') == [1, 2, 3]


def test_default_folder_is_the_experiments() -> None:
    exp = kit.experiment()  # par_dir='.' (the test's working directory)
    exp.trackers.subscribe(PlotTracker(every_epoch=False))
    with exp.create_run(run_id='r'):
        kit.trainer(n=16).train(1)
        assert not pathlib.Path('plots').exists()  # only at run stop
    assert_png(pathlib.Path('plots/exp/r/Model-MSE.png').resolve())


def test_each_model_and_metric_gets_a_file(tmp_path: pathlib.Path) -> None:
    exp = kit.experiment()
    exp.trackers.subscribe(PlotTracker(par_dir=tmp_path))
    with exp.create_run(run_id='r'):
        for name in ('a', 'b'):
            loss = kit.mse() | Metric(mae_fn, 'MAE')
            trainer = kit.trainer(kit.linear(name), n=16, loss=loss)
            trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
            trainer.train(2)
    names = sorted(p.name for p in (tmp_path / 'plots' / 'exp' / 'r').iterdir())
    assert names == ['a-MAE.png', 'a-MSE.png', 'b-MAE.png', 'b-MSE.png']


# --- resumed runs ------------------------------------------------------------


def test_resume_reloads_from_the_given_loader() -> None:
    first = PlotTracker()
    exp = kit.experiment()
    exp.trackers.subscribe(first)
    model = train(exp, 2)

    loader = FakeLoader(first.histories)
    again = kit.experiment()
    resumed = PlotTracker(loader=loader)
    again.trackers.subscribe(resumed)
    train(again, 2, model, resume=True)
    assert loader.calls == [('exp', 'r')]
    assert xdata(resumed, 'Trainer') == [1, 2, 3, 4]
    assert xdata(resumed, 'Validation') == [1, 2, 3, 4]
    assert first.histories['Model']['Trainer'].epochs == [1, 2]  # not mutated


def test_remeasured_epochs_supersede_the_loaded_ones() -> None:
    model = train(kit.experiment(), 2)  # the model is at epoch 2
    earlier = {'Model': {'Trainer': history([1, 2, 3], [9.0, 8.0, 7.0])}}
    exp = kit.experiment()
    tracker = PlotTracker(loader=FakeLoader(earlier))
    exp.trackers.subscribe(tracker)
    train(exp, 1, model, resume=True)  # epoch 3 again
    trainer = tracker.histories['Model']['Trainer']
    assert trainer.epochs == [1, 2, 3]
    assert trainer.values['MSE'][:2] == [9.0, 8.0]
    assert trainer.values['MSE'][2] != 7.0


def test_resume_loads_the_earlier_history_once_through_load_metrics(
    host: plugins.PluginHost,
) -> None:
    model = train(kit.experiment(), 1)
    stored = StoredMetrics({'Model': {'Trainer': history([1], [5.0])}})
    host.register(stored, 'stored')
    exp = kit.experiment()
    tracker = PlotTracker()
    exp.trackers.subscribe(tracker)
    train(exp, 2, model, resume=True)
    assert stored.asked == [('exp', 'r', True)]  # once, not per epoch
    assert xdata(tracker, 'Trainer') == [1, 2, 3]
    assert tracker.histories['Model']['Trainer'].values['MSE'][0] == 5.0
    assert stored.histories['Model']['Trainer'].epochs == [1]  # not mutated


def test_resume_in_another_process_draws_the_whole_curve_from_csv_files() -> None:
    first = kit.experiment()
    first.trackers.subscribe(CSVDumper())
    model = train(first, 2)
    again = kit.experiment()  # as a new process would: nothing in memory
    tracker = PlotTracker(every_epoch=False)
    again.trackers.subscribe(CSVDumper(), tracker)
    train(again, 1, model, resume=True)
    assert xdata(tracker, 'Trainer') == [1, 2, 3]
    assert xdata(tracker, 'Validation') == [1, 2, 3]
    assert_png(pathlib.Path('plots/exp/r/Model-MSE.png').resolve())


def test_a_new_run_asks_for_no_history(host: plugins.PluginHost) -> None:
    stored = StoredMetrics({'Model': {'Trainer': history([1], [5.0])}})
    host.register(stored, 'stored')
    exp = kit.experiment()
    tracker = PlotTracker()
    exp.trackers.subscribe(tracker)
    train(exp, 1)
    assert stored.asked == []
    assert xdata(tracker, 'Trainer') == [1]


def test_same_tracker_keeps_its_curves_when_the_run_resumes() -> None:
    exp = kit.experiment()
    tracker = PlotTracker()
    exp.trackers.subscribe(tracker)
    model = train(exp, 2)
    train(exp, 1, model, resume=True)
    assert xdata(tracker, 'Trainer') == [1, 2, 3]
    train(exp, 1, run_id='other')  # a new run (and model) starts a new curve
    assert xdata(tracker, 'Trainer') == [1]


def test_a_failing_loader_warns_and_plots_this_session() -> None:
    class Broken:
        def load_metrics(self, experiment_name: str, run_id: str) -> Any:
            raise OSError('disk gone')

    model = train(kit.experiment(), 1)
    exp = kit.experiment()
    tracker = PlotTracker(loader=Broken())
    exp.trackers.subscribe(tracker)
    with pytest.warns(exceptions.DryTorchWarning, match='disk gone'):
        train(exp, 1, model, resume=True)
    assert xdata(tracker, 'Trainer') == [2]


# --- failures and missing data -----------------------------------------------


def test_unwritable_folder_warns_once_and_training_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    exp = kit.experiment()
    exp.trackers.subscribe(PlotTracker(par_dir=blocker))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = train(exp, 3)
    assert model.epoch == 3
    mine = [w for w in caught if 'could not save' in str(w.message)]
    assert len(mine) == 1
    assert str(blocker / 'plots' / 'exp' / 'r') in str(mine[0].message)
    assert 'PlotTracker' in exp.trackers  # still subscribed


def test_a_metric_without_data_warns_and_writes_nothing(
    tmp_path: pathlib.Path,
) -> None:
    exp = kit.experiment()
    exp.trackers.subscribe(PlotTracker(par_dir=tmp_path, metric='Accuracy'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        train(exp, 2)
    mine = [str(w.message) for w in caught if 'No data' in str(w.message)]
    assert mine == [
        "No data to plot for metric 'Accuracy' of model 'Model'; no plot was made."
    ]
    assert not list(tmp_path.rglob('*.png'))


def test_save_learning_curves_skips_missing_metrics(tmp_path: pathlib.Path) -> None:
    histories = {
        'm': {'Trainer': history([1, 2], [1.0, 0.5])},
        'empty': {'Trainer': history([1, 2], [math.nan, math.nan])},
    }
    with pytest.warns(exceptions.DryTorchWarning, match="'MSE' of model 'empty'"):
        written = save_learning_curves(histories, tmp_path / 'new', 'MSE')
    assert written == [tmp_path / 'new' / 'm-MSE.png']
    assert_png(written[0])
    with pytest.warns(exceptions.DryTorchWarning, match="metric 'Loss'"):
        assert save_learning_curves(histories, tmp_path, 'Loss') == []


def test_plot_histories_handles_gaps_and_sources() -> None:
    histories = {
        'Trainer': MetricHistory(),
        'Validation': history([2, 4], [0.9, 0.7]),
        'Test': history([4], [0.6]),
    }
    histories['Trainer'].add(1, {'MSE': 1.0, 'MAE': 2.0})
    histories['Trainer'].add(2, {'MAE': 1.5})  # no MSE at epoch 2: a gap
    histories['Trainer'].add(3, {'MSE': 0.8, 'MAE': 1.0})
    figure = plot_histories(histories, 'MSE', 'm')
    ax = figure.axes[0]
    assert ax.get_title() == 'm'
    assert [line.get_label() for line in ax.lines] == ['Trainer', 'Validation', 'Test']
    trainer_y = list(ax.lines[0].get_ydata())
    assert trainer_y[0] == 1.0 and math.isnan(trainer_y[1]) and trainer_y[2] == 0.8
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert ax.get_legend() is not None and ax.get_xlabel() == 'Epoch'

    every = plot_histories(histories, None, 'm')  # one axes per metric
    assert [a.get_ylabel() for a in every.axes] == ['MSE', 'MAE']
    assert len(every.axes[1].lines) == 1  # only the Trainer measured MAE

    with pytest.warns(exceptions.DryTorchWarning, match="'R2'"):
        empty = plot_histories(histories, 'R2', 'm')
    assert not empty.axes[0].lines


# --- plot_run (the CLI's helper) and the shared look -------------------------


def test_plot_run_writes_one_figure_at_the_path_given(tmp_path: pathlib.Path) -> None:
    one = {'m': {'Trainer': history([1, 2], [1.0, 0.5])}}
    assert plot_run(one, tmp_path / 'curve.png') == tmp_path / 'curve.png'
    assert_png(tmp_path / 'curve.png')
    assert plot_run(one, tmp_path / 'noext', 'mse') == tmp_path / 'noext'
    assert (tmp_path / 'noext').read_bytes()[:8] == PNG_SIGNATURE

    two_metrics = {'m': {'Trainer': MetricHistory()}, 'n/x': one['m']}
    two_metrics['m']['Trainer'].add(1, {'MSE': 1.0, 'MAE': 2.0})
    out = tmp_path / 'sub' / 'run.svg'
    assert plot_run(two_metrics, out) == out
    assert out.read_text().lstrip().startswith('<?xml')
    assert sorted(p.name for p in tmp_path.rglob('*') if p.is_file()) == [
        'curve.png',
        'noext',
        'run.svg',
    ]
    with pytest.raises(exceptions.DryTorchError, match=r"'\.bmp'.*\.pdf.*\.png"):
        plot_run(one, tmp_path / 'x.bmp')
    with pytest.raises(exceptions.DryTorchError, match='no metric has data'):
        plot_run({'m': {'Trainer': history([1], [math.nan])}}, tmp_path / 'e.png')
    assert not (tmp_path / 'x.bmp').exists() and not (tmp_path / 'e.png').exists()


def test_plot_curves_puts_every_model_and_source_of_a_metric_in_its_axes() -> None:
    histories = {
        'a': {
            'Trainer': history([1, 2], [1.0, 0.5]),
            'Validation': history([1, 2], [1.2, 0.7]),
        },
        'b': {'Trainer': MetricHistory()},
    }
    histories['b']['Trainer'].add(1, {'MSE': 2.0, 'MAE': 1.0})
    figure = plot_curves(histories, ['MSE', 'MAE'], 'exp / r')
    mse, mae = figure.axes
    assert figure.get_suptitle() == 'exp / r'
    assert [ax.get_title() for ax in figure.axes] == ['MSE', 'MAE']
    assert [line.get_label() for line in mse.lines] == [
        'a/Trainer',
        'a/Validation',
        'b/Trainer',
    ]
    assert [line.get_label() for line in mae.lines] == ['b/Trainer']
    # one colour per source, one line style per model
    assert mse.lines[0].get_color() == mse.lines[2].get_color() == 'C0'
    assert mse.lines[1].get_color() == 'C1'
    assert mse.lines[0].get_linestyle() != mse.lines[2].get_linestyle()


def test_tracker_files_and_run_figures_share_one_look() -> None:
    histories = {'Validation': history([1, 2], [1.2, 0.7])}  # no Trainer here
    tracker_figure = plot_histories(histories, 'MSE', 'Model')
    run_figure = plot_curves({'Model': histories}, ['MSE'], 'exp / r')
    (ax_file,), (ax_run,) = tracker_figure.axes, run_figure.axes
    assert ax_file.lines[0].get_color() == ax_run.lines[0].get_color() == 'C1'
    assert ax_file.lines[0].get_marker() == ax_run.lines[0].get_marker()
    assert (ax_file.get_xlabel(), ax_file.get_ylabel()) == ('Epoch', 'MSE')
    assert (ax_run.get_xlabel(), ax_run.get_ylabel()) == ('Epoch', 'MSE')


def test_metric_names_are_matched_helpfully() -> None:
    names = ['MSE', 'MAE', 'Accuracy', 'top1 accuracy']
    assert match_metric('MSE', names) == 'MSE'
    assert match_metric('mse', names) == 'MSE'
    assert match_metric('acc', names) == 'Accuracy'  # prefix beats substring
    assert match_metric('top', names) == 'top1 accuracy'
    assert match_metric('1 acc', names) == 'top1 accuracy'  # unique substring
    assert match_metrics(['mae', 'MAE', 'mse'], names) == ['MAE', 'MSE']
    with pytest.raises(PlotError, match=r"'M'.*ambiguous.*'MSE', 'MAE'"):
        match_metric('M', names)
    with pytest.raises(PlotError, match=r"'ccura'.*'Accuracy', 'top1 accuracy'"):
        match_metric('ccura', names)
    with pytest.raises(PlotError, match=r"No metric matches 'R2'.*'MSE', 'MAE'"):
        match_metric('R2', names)
    assert issubclass(PlotError, exceptions.DryTorchError)
    assert match_metric('mse', ['mse', 'MSE']) == 'mse'  # exact name first
    with pytest.raises(PlotError, match='ambiguous'):
        match_metric('Mse', ['mse', 'MSE'])


# --- matplotlib is optional --------------------------------------------------

NO_MATPLOTLIB = """
import sys
import drytorch.trackers.plot as plot
assert 'matplotlib' not in sys.modules, 'imported at module import'
sys.modules['matplotlib'] = None  # as if it were not installed
for make in (plot.PlotTracker, lambda: plot.plot_run({}, 'x.png')):
    try:
        make()
    except plot.MissingPlotDependencyError as error:
        assert isinstance(error, ImportError)
        print(error)
    else:
        raise AssertionError('no error')
"""


def test_without_matplotlib_a_clear_error(tmp_path: pathlib.Path) -> None:
    done = run_python(NO_MATPLOTLIB, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all('pip install drytorch[plot]' in line for line in lines)
    assert issubclass(MissingPlotDependencyError, exceptions.DryTorchError)
