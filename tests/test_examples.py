"""The README's main example runs end to end, and the README keeps its promises."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib

from tests.conftest import ROOT

EXAMPLE = ROOT / 'examples' / 'main.py'


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_main_example_trains_tests_and_records(tmp_path: pathlib.Path) -> None:
    done = run_example()
    assert done.returncode == 0, done.stderr
    assert 'Running experiment: sine-regression.' in done.stderr
    assert re.search(r'Epoch: +1 / 60', done.stderr)
    assert 'Validation: MSE=' in done.stderr
    assert 'terminated training' in done.stderr  # early stopping
    test_mse = float(re.search(r'test MSE ([\d.]+)', done.stdout).group(1))
    assert test_mse < 0.05  # it learned sin(3x)
    checkpoint = pathlib.Path(re.search(r'checkpoint: (\S+)', done.stdout).group(1))
    assert checkpoint.is_file() and checkpoint.suffix == '.pt'
    record = pathlib.Path(re.search(r'run record: (\S+)', done.stdout).group(1))
    with record.open('rb') as file:
        assert tomllib.load(file)['status'] == 'completed'

    resumed = run_example('--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert 'loaded from' in resumed.stderr
    assert re.search(r'run record: (\S+)', resumed.stdout).group(1) == str(record)


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    block = re.search(r'```bash\n(.*?)```', readme, re.DOTALL)
    assert block is not None and readme.index('```bash') < readme.index('\n## ')
    example, tests = block.group(1).strip().splitlines()
    assert example.endswith('python examples/main.py')
    ci = (ROOT / '.ci' / 'run').read_text(encoding='utf-8')
    assert any(line.startswith(tests) for line in ci.splitlines())
    assert 'torch==2.13.0' in ci.split(tests)[0]


def test_training_guide_example_runs(tmp_path: pathlib.Path) -> None:
    guide = (ROOT / 'docs' / 'training.md').read_text(encoding='utf-8')
    code = re.search(r'```python\n(.*?)```', guide, re.DOTALL).group(1)
    code += '\nprint("epochs", model.epoch, "metrics", trainer.computed_metrics)\n'
    done = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'Running experiment: demo.' in done.stderr
    assert 'epochs' in done.stdout
    assert list((pathlib.Path.cwd() / 'checkpoints' / 'demo').rglob('epoch_*.pt'))


def test_gan_example_trains_two_optimizers_and_learns_the_ring() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / 'examples' / 'gan.py')],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'GANTrainer: Generator=' in done.stderr
    distance = float(re.search(r'test ring distance ([\d.]+)', done.stdout).group(1))
    assert distance < 1.0  # untrained, the generator's points sit near 0: about 2
    assert 'completed' in done.stdout
