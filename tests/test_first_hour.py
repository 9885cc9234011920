"""The README's first-hour walk, command by command, as a new user types it.

The commands are read from the README's block, so the README cannot promise a
step this test does not run: each command must have its check below. They run
in a fresh working directory holding a copy of ``examples/``, with the real
``drytorch`` console script and a fresh interpreter per command.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from matplotlib import image

from tests.conftest import ROOT
from tests.test_cli import DRYTORCH

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='interrupts the example with SIGINT'
)

Done = subprocess.CompletedProcess[str]


def walk_commands() -> list[str]:
    """The commands of the README's first-hour block, comments stripped."""
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    section = readme.split('## The first hour', 1)[1]
    block = re.search(r'```bash\n(.*?)```', section, re.DOTALL)
    assert block is not None, 'the first-hour section has no bash block'
    return [line.split('#', 1)[0].strip() for line in block.group(1).splitlines()]


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    program = {'python': sys.executable, 'drytorch': str(DRYTORCH)}[words[0]]
    return [program, *words[1:]]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED='1')


def run(command: str, cwd: pathlib.Path) -> Done:
    return subprocess.run(
        argv(command),
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def interrupt_while_training(command: str, cwd: pathlib.Path) -> Done:
    """Start ``command``, press Ctrl-C (SIGINT) in its sixth epoch."""
    out, err = cwd / 'interrupted.out', cwd / 'interrupted.err'
    with out.open('w') as stdout, err.open('w') as stderr:
        process = subprocess.Popen(
            argv(command), cwd=cwd, env=env(), stdout=stdout, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 240
            while not re.search(r'Epoch: +6 /', err.read_text()):
                assert process.poll() is None, err.read_text()
                assert time.monotonic() < deadline, 'the example never reached epoch 6'
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return subprocess.CompletedProcess(
        process.args, code, out.read_text(), err.read_text()
    )


def test_the_readme_walk_works_as_written(tmp_path: pathlib.Path) -> None:
    work = pathlib.Path.cwd()  # the test's own working directory
    shutil.copytree(ROOT / 'examples', work / 'examples')
    commands = walk_commands()
    state: dict[str, str] = {}

    def interrupted(done: Done) -> None:
        assert done.returncode == 130, done.stderr
        run_id = re.search(r'continue run (\S+)\.', done.stdout).group(1)
        assert f'Run {run_id} interrupted: mlp trained epochs 1 to ' in done.stderr
        assert 'Traceback' not in done.stderr
        state['first'] = run_id

    def relaunched(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        first = state['first']
        assert f'Resuming run {first}: its last session was interrupted.' in (
            done.stderr
        )
        epoch = re.search(r'Checkpoint of mlp at epoch (\d+) loaded', done.stderr)
        assert epoch is not None, done.stderr
        assert f'Training mlp resumed from epoch {epoch[1]}, to 60.' in done.stderr
        assert re.search(
            rf'Run {first} completed: mlp resumed from epoch {epoch[1]}, trained to '
            r'epoch \d+\.',
            done.stderr,
        )
        assert f'run {first}: completed' in done.stdout

    def listed(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        rows = done.stdout.splitlines()[1:]
        assert len(rows) == 1 and state['first'] in rows[0]
        assert 'completed' in rows[0] and 'mlp/Validation MSE=' in rows[0]

    def shown(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f'Run {state["first"]} of experiment ')
        assert 'over 2 session(s)' in done.stdout
        assert 'seed      0 (passed to create_run(seed=...))' in done.stdout
        assert 'csv_metrics' in done.stdout  # the metric history is an output

    def plotted(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in work.glob('*.png')) == ['curves.png']
        pixels = image.imread(work / 'curves.png')
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.std() > 0

    def another_config(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        assert 'Resuming' not in done.stderr  # another config: a new run
        second = re.search(r'run (\S+): completed', done.stdout).group(1)
        assert second != state['first']
        state['second'] = second

    def compared(done: Done) -> None:
        assert done.returncode == 0, done.stderr
        lr = [line.split() for line in done.stdout.splitlines() if line[:3] == 'lr ']
        assert lr == [['lr', '0.003', '0.01']]
        assert 'mlp.Test.MSE' in done.stdout

    def verified(done: Done) -> None:
        assert done.returncode == 0, done.stdout + done.stderr
        assert 'mlp/epoch_' in done.stdout and ' ok ' in done.stdout
        assert 'mismatch' not in done.stdout.lower()

    checks: list[tuple[str, Callable[[Done], None]]] = [
        ('python examples/main.py', interrupted),
        ('python examples/main.py', relaunched),
        ('drytorch runs', listed),
        ('drytorch show last', shown),
        ('drytorch plot last --out curves.png', plotted),
        ('python examples/main.py --lr 0.01', another_config),
        ('drytorch compare last~1 last', compared),
        ('drytorch verify last', verified),
    ]
    assert commands == [command for command, _ in checks]
    for index, (command, check) in enumerate(checks):
        if index == 0:
            done = interrupt_while_training(command, work)
        else:
            done = run(command, work)
        check(done)

    # the README's claim: the interrupted run ends where an uninterrupted one does
    fresh = run('python examples/main.py --new', work)
    assert fresh.returncode == 0, fresh.stderr
    same = run(f'drytorch compare {state["first"]} last --json', work)
    differences = json.loads(same.stdout)
    assert differences['metrics'] == {}, differences


def test_a_killed_example_is_resumed_by_a_plain_relaunch(
    tmp_path: pathlib.Path,
) -> None:
    work = pathlib.Path.cwd()
    shutil.copytree(ROOT / 'examples', work / 'examples')
    err = work / 'killed.err'
    with err.open('w') as stderr:
        process = subprocess.Popen(
            argv('python examples/main.py'),
            cwd=work,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 240
            while not re.search(r'Epoch: +4 /', err.read_text()):  # 3 is saved
                assert process.poll() is None, err.read_text()
                assert time.monotonic() < deadline, 'the example never reached epoch 4'
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=60)
    relaunched = run('python examples/main.py', work)
    assert relaunched.returncode == 0, relaunched.stderr
    assert re.search(
        r'Resuming run \S+: its last session crashed', relaunched.stderr
    ), relaunched.stderr
    loaded = re.search(r'Checkpoint of mlp at epoch (\d+) loaded', relaunched.stderr)
    assert loaded is not None and int(loaded[1]) >= 3, relaunched.stderr
    runs = json.loads(run('drytorch runs --json', work).stdout)
    assert [r['status'] for r in runs] == ['completed']
