"""``drytorch plot``: one figure at the path given, metrics matched helpfully."""

from __future__ import annotations

import pathlib

import pytest
import torch

from drytorch import DataLoader, Metric
from drytorch.trackers.csv import CSVDumper
from drytorch.trackers.plot import PlotTracker
from tests import training_kit as kit
from tests.test_cli import drytorch

matplotlib_image = pytest.importorskip('matplotlib.image')

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def mae_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean()


@pytest.fixture
def trained() -> pathlib.Path:
    """Run ``r`` of ``exp``: models ``a`` and ``b``, MSE and MAE, two sources.

    Its metrics are in CSV files; a ``PlotTracker`` drew its own PNGs, whose
    folder is returned.
    """
    exp = kit.experiment()
    exp.trackers.subscribe(CSVDumper(), PlotTracker(every_epoch=False))
    with exp.create_run(run_id='r'):
        for name in ('a', 'b'):
            loss = kit.mse() | Metric(mae_fn, 'MAE')
            trainer = kit.trainer(kit.linear(name), n=16, loss=loss)
            trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
            trainer.train(2)
    return pathlib.Path('plots/exp/r').resolve()


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """Return ``(height, width)`` of the PNG at ``path``, read back."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return int(image.shape[0]), int(image.shape[1])


def test_one_figure_at_the_path_given_with_an_axes_per_metric(
    trained: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / 'figures' / 'curves.png'
    done = drytorch('plot', 'r', '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(out)]
    assert [p.name for p in out.parent.iterdir()] == ['curves.png']
    height, width = image_size(out)
    assert height > 200 and width > 2 * height  # two axes side by side

    single = tmp_path / 'mse.png'
    done = drytorch('plot', 'r', '--metric', 'MSE', '--out', str(single))
    assert done.returncode == 0, done.stderr
    one_height, one_width = image_size(single)
    assert one_height == height and one_width < width * 0.6  # one axes

    # the tracker's own files are still one per model and metric
    assert sorted(p.name for p in trained.iterdir()) == [
        'a-MAE.png',
        'a-MSE.png',
        'b-MAE.png',
        'b-MSE.png',
    ]
    assert image_size(trained / 'a-MSE.png') == (one_height, one_width)


def test_default_name_in_the_working_directory_or_given_folder(
    trained: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    done = drytorch('plot', 'r', cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(elsewhere / 'exp_r.png')]
    assert [p.name for p in elsewhere.iterdir()] == ['exp_r.png']
    image_size(elsewhere / 'exp_r.png')

    folder = tmp_path / 'folder'
    folder.mkdir()
    done = drytorch('plot', 'r', '--out', str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(folder / 'exp_r.png')]
    image_size(folder / 'exp_r.png')


def test_metrics_are_matched_ignoring_case_and_by_prefix(
    trained: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / 'm.png'
    done = drytorch('plot', 'r', '-m', 'mse', '-m', 'ma', '--out', str(out))
    assert done.returncode == 0, done.stderr
    height, width = image_size(out)
    assert width > 2 * height  # both metrics, two axes

    missing = drytorch('plot', 'r', '--metric', 'accuracy', '--out', str(out))
    assert missing.returncode == 1
    assert "No metric matches 'accuracy'" in missing.stderr
    assert "'MSE', 'MAE'" in missing.stderr  # lists what exists

    ambiguous = drytorch('plot', 'r', '--metric', 'm', '--out', str(out))
    assert ambiguous.returncode == 1
    assert "'m' is ambiguous" in ambiguous.stderr
    assert "'MSE', 'MAE'" in ambiguous.stderr
    assert 'Traceback' not in missing.stderr + ambiguous.stderr


def test_the_suffix_picks_the_format(
    trained: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    pdf, svg = tmp_path / 'c.pdf', tmp_path / 'c.svg'
    assert drytorch('plot', 'r', '--out', str(pdf)).returncode == 0
    assert pdf.read_bytes().startswith(b'%PDF')
    assert drytorch('plot', 'r', '--out', str(svg)).returncode == 0
    assert b'<svg' in svg.read_bytes()[:1000]

    unknown = drytorch('plot', 'r', '--out', str(tmp_path / 'c.bmp'))
    assert unknown.returncode == 1
    assert "'.bmp'" in unknown.stderr
    assert '.png' in unknown.stderr and '.pdf' in unknown.stderr
    assert '.svg' in unknown.stderr
    assert not (tmp_path / 'c.bmp').exists()
