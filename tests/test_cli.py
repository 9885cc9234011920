"""The ``drytorch`` console command, through a real subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

from drytorch import Experiment

DRYTORCH = pathlib.Path(sys.executable).parent / 'drytorch'


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1


def drytorch(
    *args: str, cwd: pathlib.Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``drytorch`` script."""
    return subprocess.run(
        [str(DRYTORCH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=dict(os.environ),
    )


def test_runs_lists_every_run_with_status() -> None:
    first = Experiment(Config(), name='first', tags=['baseline'])
    second = Experiment(Config(), name='second')
    with first.create_run(run_id='ok'):
        pass
    try:
        with first.create_run(run_id='broken'):
            raise RuntimeError('boom')
    except RuntimeError:
        pass
    second.create_run(run_id='waiting')
    done = drytorch('runs', '--json')
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {(r['experiment'], r['id'], r['status']) for r in rows} == {
        ('first', 'ok', 'completed'),
        ('first', 'broken', 'failed'),
        ('second', 'waiting', 'created'),
    }
    broken = next(r for r in rows if r['id'] == 'broken')
    assert broken['error'] == 'RuntimeError: boom'
    assert broken['config'] == {'lr': 0.1}
    assert pathlib.Path(broken['registry_path']).is_file()

    table = drytorch('runs', '--experiment', 'first')
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ['EXPERIMENT', 'RUN', 'STATUS']
    assert len(lines) == 3 and all(line.startswith('first') for line in lines[1:])
    assert lines[0].split()[-2:] == ['LAST', 'METRICS']


def test_runs_shows_a_killed_run_as_crashed(tmp_path: pathlib.Path) -> None:
    script = (
        'import os, signal\n'
        'from drytorch import Experiment\n'
        "run = Experiment(None, name='victim').create_run(run_id='r')\n"
        'run.start()\n'
        'os.kill(os.getpid(), signal.SIGKILL)\n'
    )
    subprocess.run([sys.executable, '-c', script], timeout=60, check=False)
    rows = json.loads(drytorch('runs', '--json').stdout)
    assert [(r['id'], r['status']) for r in rows] == [('r', 'crashed')]
    assert 'crashed' in drytorch('runs').stdout


def test_runs_on_an_empty_registry(tmp_path: pathlib.Path) -> None:
    done = drytorch('runs', '--registry', str(tmp_path / 'nothing'))
    assert done.returncode == 0
    assert 'No runs recorded' in done.stdout


def test_runs_reports_a_corrupt_record_and_lists_the_rest() -> None:
    experiment = Experiment(Config(), name='exp')
    with experiment.create_run(run_id='good'):
        pass
    bad = experiment.registry.record_path(experiment.key, 'bad')
    bad.write_bytes(b'id = "bad\n\x00garbage')
    done = drytorch('runs', '--json')
    assert done.returncode == 0
    assert [r['id'] for r in json.loads(done.stdout)] == ['good']
    assert str(bad) in done.stderr
    assert bad.read_bytes() == b'id = "bad\n\x00garbage'


def test_plugins_lists_builtins_with_their_hooks() -> None:
    done = drytorch('plugins', '--json')
    assert done.returncode == 0, done.stderr
    found = {p['name']: p for p in json.loads(done.stdout)}
    assert found['drytorch.core.scope']['hooks'] == ['get_config']
    assert found['drytorch.validators.modules']['origin'] == 'built-in'
    assert 'validate_model' in found['drytorch.validators.modules']['hooks']
    assert 'drytorch.core.scope' in drytorch('plugins').stdout


def test_bad_usage_exits_non_zero() -> None:
    assert drytorch('nonsense').returncode == 2


def _trained(
    name: str,
    lr: float,
    run_id: str,
    trackers: tuple[object, ...] = (),
    without: tuple[str, ...] = (),
) -> None:
    from tests import training_kit as kit

    experiment = Experiment(Config(lr=lr), name=name)
    for default in without:
        experiment.trackers.remove(default)
    experiment.trackers.subscribe(*trackers)
    with experiment.create_run(run_id=run_id):
        trainer = kit.trainer(schema=kit.LearningSchema.sgd(lr=lr))
        trainer.train(2)
        trainer.save_checkpoint()


def test_runs_show_last_metrics() -> None:
    _trained('exp', 0.1, 'a')
    row = drytorch('runs').stdout.splitlines()[1]
    assert 'Model/Trainer MSE=' in row
    (record,) = json.loads(drytorch('runs', '--json').stdout)
    trainer = record['summary']['metrics']['Model']['Trainer']
    assert trainer['epoch'] == 2 and trainer['MSE'] > 0


def test_show_prints_config_environment_metrics_and_outputs() -> None:
    _trained('exp', 0.1, 'a')
    done = drytorch('show', 'a')
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith('Run a of experiment exp: completed')
    for section in ('Config', 'Environment', 'Last metrics', 'Outputs'):
        assert f'\n{section}\n' in text
    assert 'lr = 0.1' in text and 'torch = ' in text and 'MSE = ' in text
    assert 'checkpoints' in text
    shown = json.loads(drytorch('show', 'a', '--json').stdout)
    assert pathlib.Path(shown['outputs']['checkpoints']).is_dir()
    assert pathlib.Path(shown['outputs']['record']).is_file()


def test_show_unknown_or_ambiguous_runs_fail_clearly() -> None:
    missing = drytorch('show', 'nope')
    assert missing.returncode == 1 and "No run 'nope'" in missing.stderr
    Experiment(Config(), name='one').create_run(run_id='same')
    Experiment(Config(), name='two').create_run(run_id='same')
    ambiguous = drytorch('show', 'same')
    assert ambiguous.returncode == 1 and '--experiment' in ambiguous.stderr
    assert drytorch('show', 'same', '--experiment', 'two').returncode == 0


def test_compare_shows_config_and_metric_differences() -> None:
    _trained('exp', 0.1, 'slow')
    _trained('exp', 0.01, 'fast')
    done = drytorch('compare', 'slow', 'fast')
    assert done.returncode == 0, done.stderr
    config_row = next(
        line for line in done.stdout.splitlines() if line.startswith('lr')
    )
    assert config_row.split() == ['lr', '0.1', '0.01']
    assert 'Model.Trainer.MSE' in done.stdout
    diff = json.loads(drytorch('compare', 'slow', 'fast', '--json').stdout)
    assert diff['config'] == {'lr': [0.1, 0.01]}
    assert 'Model.Trainer.epoch' not in diff['metrics']  # both at epoch 2


def test_plot_draws_curves_from_csv(tmp_path: pathlib.Path) -> None:
    from drytorch.trackers.csv import CSVDumper

    _trained('exp', 0.1, 'a', (CSVDumper(),))
    out = tmp_path / 'curves.png'
    done = drytorch('plot', 'a', '--metric', 'MSE', '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out)]
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    missing = drytorch('plot', 'a', '--metric', 'nothing', '--out', str(out))
    assert missing.returncode == 1


def test_plot_reads_sqlite_when_there_is_no_csv(tmp_path: pathlib.Path) -> None:
    from drytorch.trackers.sqlite import SQLiteTracker

    _trained('exp', 0.1, 'b', (SQLiteTracker(path=tmp_path / 'm.db'),))
    done = drytorch('plot', 'b', '--out', str(tmp_path / 'b.png'))
    assert done.returncode == 0, done.stderr
    assert all(pathlib.Path(p).is_file() for p in done.stdout.split())


def test_plot_without_stored_metrics_says_what_to_do() -> None:
    _trained('exp', 0.1, 'c', without=('CSVDumper',))
    done = drytorch('plot', 'c')
    assert done.returncode == 1
    assert 'CSVDumper' in done.stderr
