"""The seed notebook (shared spec), cell by cell, in one process, as written.

The cells below are the seed's code verbatim; the expectations are what the
seed shows under each cell. ``test_shared_seed_runner`` also runs the spec's own
checker when the shared folder sits beside the project.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_python

CELLS = [
    '''
import dataclasses

from typing import TypeAlias

from drytorch import Experiment as GenericExperiment


@dataclasses.dataclass(frozen=True)
class SimpleConfig:
    """A simple configuration."""

    batch_size: int


class MySubclassedExperiment(GenericExperiment[SimpleConfig]):
    """Class for Simple Experiments."""


# alternatively:
MyAnnotatedExperiment: TypeAlias = GenericExperiment[SimpleConfig]

my_config = SimpleConfig(32)
my_experiment = MySubclassedExperiment(
    my_config,
    name='SimpleExp',
    par_dir='.',
    tags=[],
)
''',
    '''
def implement_experiment() -> None:
    """Here should the code for the experiment."""


with my_experiment.create_run() as run:
    first_id = run.id
    implement_experiment()


with my_experiment.create_run(resume=True) as run:
    second_id = run.id
    implement_experiment()

if first_id != second_id:
    raise
''',
    """
run = my_experiment.create_run()
run.start()
run.stop()
""",
    """
my_experiment.trackers.remove('BuiltinLogger')

with my_experiment.create_run(resume=True) as run:
    second_id = run.id
    implement_experiment()

# no output
""",
    '''
from drytorch.core import exceptions


def get_batch() -> int:
    """Retrieve the batch size setting."""
    return MySubclassedExperiment.get_config().batch_size


with my_experiment.create_run():
    get_batch()

try:
    get_batch()
except (exceptions.AccessOutsideScopeError, exceptions.NoActiveExperimentError):
    err_str = 'Configuration accessed when no run is on.'
else:
    err_str = ''


err_str
''',
    """
from torch.nn import Linear

from drytorch import Model


my_second_exp = MyAnnotatedExperiment(my_config)

with my_experiment.create_run():
    first_model = Model(Linear(1, 1))

with my_second_exp.create_run():
    second_model = Model(first_model.module)
""",
]

DRIVER = """
import sys, traceback
cells = {cells!r}
ns = {{'__name__': '__main__'}}
for i, code in enumerate(cells):
    for stream in (sys.stdout, sys.stderr):
        print(f'@@CELL {{i}}', file=stream, flush=True)
    try:
        exec(compile(code, f'<cell {{i}}>', 'exec'), ns)
        print('@@OK', flush=True)
    except BaseException as exc:
        print(f'@@RAISED {{type(exc).__name__}}', flush=True)
print(f'@@ERR_STR {{ns.get("err_str")!r}}', flush=True)
print(f'@@IDS {{ns["first_id"]}} {{ns["second_id"]}}', flush=True)
"""

LOG = r'\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] - Running experiment: (\w+)\.'


def _by_cell(text: str) -> dict[int, list[str]]:
    cells: dict[int, list[str]] = {}
    current = -1
    for line in text.splitlines():
        if match := re.fullmatch(r'@@CELL (\d+)', line):
            current = int(match.group(1))
            cells[current] = []
        elif current >= 0:
            cells[current].append(line)
    return cells


@pytest.fixture(scope='module')
def seed_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    work = tmp_path_factory.mktemp('seed')
    done = run_python(
        DRIVER.format(cells=CELLS),
        cwd=work,
        env={'DRYTORCH_REGISTRY_DIR': str(work / 'registry')},
    )
    return done.stdout, done.stderr


@pytest.mark.parametrize(
    ('cell', 'outcome', 'logs'),
    [
        (0, '@@OK', []),
        (1, '@@OK', ['SimpleExp', 'SimpleExp']),
        (2, '@@OK', ['SimpleExp']),
        (3, '@@OK', []),
        (4, '@@OK', []),
        (5, '@@RAISED ModuleAlreadyRegisteredError', ['Experiment']),
    ],
)
def test_seed_cell(
    seed_output: tuple[str, str], cell: int, outcome: str, logs: list[str]
) -> None:
    stdout, stderr = (_by_cell(text) for text in seed_output)
    assert [line for line in stdout[cell] if line.startswith('@@')][:1] == [outcome]
    printed = [
        line for line in stdout[cell] + stderr[cell] if not line.startswith('@@')
    ]
    names = [m.group(1) for line in printed if (m := re.fullmatch(LOG, line.strip()))]
    assert names == logs
    if cell < 5:  # nothing but the documented lines
        assert [line for line in printed if not re.fullmatch(LOG, line)] == []


def test_seed_config_outside_run_raises(seed_output: tuple[str, str]) -> None:
    assert "@@ERR_STR 'Configuration accessed when no run is on.'" in seed_output[0]


def test_seed_resume_keeps_the_id(seed_output: tuple[str, str]) -> None:
    ids = next(line for line in seed_output[0].splitlines() if line.startswith('@@IDS'))
    first, second = ids.split()[1:]
    assert first != second  # cell 5 resumed cell 4's run, a new one
    assert re.fullmatch(r'\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\w+)?', first)


SHARED_RUNNER = ROOT.parent / 'shared' / 'spec' / 'run_seed.py'


@pytest.mark.skipif(not SHARED_RUNNER.exists(), reason='shared spec not beside repo')
def test_shared_seed_runner(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SHARED_RUNNER)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith('seed: 6/6 cells as specified')
