"""PlotlyPlotter on real training: the figures' traces hold the run's metrics."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import plotly.graph_objects as go
import pytest
import torch
from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    MetricHistory,
    Model,
    Test,
    Trainer,
    testing,
)
from drytorch.exceptions import DryTorchWarning
from torch import nn
from torch.utils import data

from drytorch_contrib_plotly import PlotError, PlotlyPlotter

# --- a real, short training ------------------------------------------------------


def regression(n: int, seed: int) -> data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return data.TensorDataset(x, x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean()


def train(epochs: int, name: str = 'net') -> Model[Any, Any]:
    torch.manual_seed(0)
    model = Model(nn.Linear(3, 1), name=name, device='cpu')
    trainer: Trainer[Any, Any, Any] = Trainer(
        model,
        loader=DataLoader(regression(16, seed=0), 8, seed=0),
        loss=Loss(mse, 'MSE') + Loss(mae, 'MAE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(DataLoader(regression(8, seed=1), 8))
    trainer.train(epochs)
    return model


def experiment(*trackers: Any) -> Experiment[Any]:
    exp = Experiment(None, name='exp', par_dir='.')
    exp.trackers.subscribe(*trackers)
    return exp


def curves(
    recorder: testing.HookRecorder, metric: str
) -> dict[str, tuple[list[int], list[float]]]:
    """``{source: (epochs, values)}`` of a metric, from the recorded events."""
    found: dict[str, tuple[list[int], list[float]]] = {}
    for event in recorder.events('on_metrics'):
        if metric not in event.metrics:
            continue
        epochs, values = found.setdefault(event.source_name, ([], []))
        epochs.append(event.epoch)
        values.append(pytest.approx(event.metrics[metric]))
    return found


def traces(figure: Any) -> dict[str, tuple[list[int], list[float]]]:
    return {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}


# --- figures -----------------------------------------------------------------------


def test_a_figure_per_model_and_metric_with_a_trace_per_source(
    recorder: testing.HookRecorder,
) -> None:
    """``trackers.plotly.PlotlyPlotter(...)``: figures kept in ``figures``."""
    plotter = PlotlyPlotter()
    with experiment(plotter).create_run('r1'):
        train(3)
    assert sorted(plotter.figures) == [
        ('net', 'Combined Loss'),
        ('net', 'MAE'),
        ('net', 'MSE'),
    ]
    for metric in ('Combined Loss', 'MSE', 'MAE'):
        figure = plotter.figures['net', metric]
        assert isinstance(figure, go.Figure)
        assert traces(figure) == curves(recorder, metric)
        assert figure.layout.title.text == f'net: {metric}'
        assert figure.layout.xaxis.title.text == 'Epoch'
    assert traces(plotter.figures['net', 'MSE'])['Trainer'][0] == [1, 2, 3]


def test_figures_are_updated_in_place(recorder: testing.HookRecorder) -> None:
    """So that a displayed ``FigureWidget`` follows the training."""
    seen: list[Any] = []

    def factory() -> go.Figure:
        figure = go.Figure(layout={'template': 'plotly_white'})
        seen.append(figure)
        return figure

    plotter = PlotlyPlotter(metric_names=['MSE'], figure_factory=factory)
    with experiment(plotter).create_run('r1'):
        train(2)
    assert seen == [plotter.figures['net', 'MSE']]  # one figure, redrawn twice
    assert [t.name for t in seen[0].data] == ['Trainer', 'Validation']
    assert traces(seen[0]) == curves(recorder, 'MSE')


def test_names_and_start_choose_what_is_drawn(recorder: testing.HookRecorder) -> None:
    plotter = PlotlyPlotter(
        model_names=['net'], source_names=['Validation'], metric_names=['MAE'], start=2
    )
    ignored = PlotlyPlotter(model_names=['other'])
    ignored.name = 'Ignored'
    with experiment(plotter, ignored).create_run('r1'):
        model = train(3)
        Test(model, loader=DataLoader(regression(8, 2), 8), metric=Loss(mse, 'MSE'))()
        assert plotter.plot('net', source_names=['Test'], metric_names=['MSE']) == [
            'MSE'
        ]
    assert ignored.figures == {}
    assert sorted(plotter.figures) == [('net', 'MAE'), ('net', 'MSE')]
    epochs, values = curves(recorder, 'MAE')['Validation']
    assert traces(plotter.figures['net', 'MAE']) == {
        'Validation': (epochs[1:], values[1:])
    }
    assert traces(plotter.figures['net', 'MSE']) == {
        'Test': ([3], [pytest.approx(recorder.events('on_metrics')[-1].metrics['MSE'])])
    }


def test_figures_written_as_html(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    plotter = PlotlyPlotter(metric_names=['MSE'], write_html=True)
    with experiment(plotter).create_run('r1'):
        train(2)
    folder = tmp_path / 'work' / 'plotly' / 'exp' / 'r1'
    assert sorted(path.name for path in folder.iterdir()) == ['net-MSE.html']
    page = (folder / 'net-MSE.html').read_text()
    assert 'cdn.plot.ly' in page
    assert '"Validation"' in page and '"Trainer"' in page
    other = tmp_path / 'elsewhere'
    with experiment(PlotlyPlotter(write_html=True, par_dir=other)).create_run('r2'):
        train(1)
    assert sorted(
        path.name for path in (other / 'plotly' / 'exp' / 'r2').iterdir()
    ) == [
        'net-Combined_Loss.html',
        'net-MAE.html',
        'net-MSE.html',
    ]


class Loader:
    """A ``MetricLoader``: the metrics of an earlier session."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, MetricHistory]]:
        self.asked.append((experiment_name, run_id))
        return {'net': {'Trainer': MetricHistory([1, 2], {'MSE': [4.0, 3.0]})}}


def test_a_resumed_run_starts_with_the_loaded_curves() -> None:
    with experiment().create_run('r1'):
        pass
    loader = Loader()
    plotter = PlotlyPlotter(metric_loader=loader)
    with experiment(plotter).create_run('r1', resume=True):
        assert plotter.plot('net') == ['MSE']
    assert loader.asked == [('exp', 'r1')]
    assert traces(plotter.figures['net', 'MSE']) == {'Trainer': ([1, 2], [4.0, 3.0])}
    with experiment(plotter).create_run('r2'):  # a new run: nothing loaded
        assert plotter.model_dict == {} and plotter.figures == {}
    assert loader.asked == [('exp', 'r1')]


def test_a_loader_that_fails_is_a_warning() -> None:
    class Broken:
        def load_metrics(self, experiment_name: str, run_id: str) -> Any:
            raise OSError('gone')

    with experiment().create_run('r1'):
        pass
    plotter = PlotlyPlotter(metric_loader=Broken())
    with (
        pytest.warns(DryTorchWarning, match='could not load the earlier metrics'),
        experiment(plotter).create_run('r1', resume=True),
    ):
        train(1)
    assert ('net', 'MSE') in plotter.figures


def test_bad_requests_are_explained() -> None:
    with pytest.raises(PlotError, match='start must be an epoch number'):
        PlotlyPlotter(start=-1)
    plotter = PlotlyPlotter()
    with pytest.raises(PlotError, match="No metrics of model 'net'"):
        plotter.plot('net')
    assert isinstance(PlotError('x'), ValueError)


# --- the plugin --------------------------------------------------------------------


def test_the_entry_point_offers_it_by_name(host: Any) -> None:
    (found,) = (
        e
        for e in importlib.metadata.entry_points(group='drytorch')
        if e.name == 'plotly'
    )
    assert found.value == 'drytorch_contrib_plotly.plugin'
    assert host.tracker_types()['PlotlyPlotter'] is PlotlyPlotter
    assert 'plotly' not in host.implementers('default_trackers')


def test_loading_the_plugin_imports_no_plotly(tmp_path: pathlib.Path) -> None:
    code = (
        'import json, pathlib, sys\n'
        'from drytorch import testing\n'
        'with testing.isolated(pathlib.Path(sys.argv[1])) as host:\n'
        '    names = sorted(host.tracker_types())\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] == "plotly")\n'
        'print(json.dumps({"names": names, "heavy": heavy}))\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, str(tmp_path / 'child')],
        cwd=tmp_path / 'work',
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert 'PlotlyPlotter' in result['names']
    assert result['heavy'] == []
