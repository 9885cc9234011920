"""Users' code type-checks: Experiment[Config] and Model[Input, Output] generics."""

from __future__ import annotations

import pathlib
import subprocess
import sys

USER_CODE = """
import dataclasses
from typing import TypeAlias

import torch

from drytorch import Experiment, Model


@dataclasses.dataclass(frozen=True)
class SimpleConfig:
    batch_size: int


class MyExp(Experiment[SimpleConfig]):
    pass


Alias: TypeAlias = Experiment[SimpleConfig]

exp = MyExp(SimpleConfig(3), name='x', par_dir='.', tags=[])
reveal_type(MyExp.get_config())
reveal_type(MyExp.get_config().batch_size)
reveal_type(Alias(SimpleConfig(1)).config)
with exp.create_run() as run:
    reveal_type(run)
    model: Model[torch.Tensor, torch.Tensor] = Model(torch.nn.Linear(1, 1))
    reveal_type(model(torch.ones(1)))
MyExp.get_config().missing
"""


def test_generics_type_check_for_users(tmp_path: pathlib.Path) -> None:
    source = tmp_path / 'user_code.py'
    source.write_text(USER_CODE)
    done = subprocess.run(
        [sys.executable, '-m', 'mypy', '--strict', '--no-incremental', str(source)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    revealed = [
        line.split('Revealed type is ')[1]
        for line in done.stdout.splitlines()
        if 'Revealed type' in line
    ]
    assert revealed == [
        '"user_code.SimpleConfig"',
        '"int"',
        '"user_code.SimpleConfig"',
        '"drytorch.core.run.Run[user_code.SimpleConfig]"',
        '"torch._tensor.Tensor"',
    ], done.stdout
    errors = [line for line in done.stdout.splitlines() if ': error:' in line]
    assert len(errors) == 1 and '"SimpleConfig" has no attribute "missing"' in errors[0]
