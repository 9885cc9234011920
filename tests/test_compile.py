"""Compiled models: ``Model(compile=...)`` or a module from ``torch.compile``.

Training runs through the compiled module; checkpoints hold the plain state
dict, so compiled and plain models load each other's checkpoints, and old
checkpoints written with the ``_orig_mod.`` prefix load too. Most tests use
torch's ``eager`` backend (the wrapping without code generation); one trains
with the default backend, which needs a C compiler.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import torch
from torch import nn

from drytorch import DataLoader, LearningSchema, Model, Trainer
from drytorch.core import checkpointing
from tests import training_kit as kit

EAGER = {'backend': 'eager'}


def trainer_of(model: Model[Any, Any]) -> Trainer[Any, Any, Any]:
    return Trainer(
        model,
        loader=DataLoader(kit.regression(32), 8, seed=1),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(0.1),
    )


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_a_compiled_model_trains_and_saves_the_plain_state() -> None:
    with kit.experiment().create_run(run_id='c') as run:
        model = Model(linear(), device='cpu', compile=EAGER)
        assert isinstance(model.module, nn.Linear)  # the plain module
        calls = []
        model._training.register_forward_pre_hook(lambda *_: calls.append(1))
        trainer = trainer_of(model)
        trainer.train(2)
        assert len(calls) == 8  # every training batch went through it
        where = trainer.save_checkpoint()
        saved = torch.load(where, weights_only=True)
        assert set(saved['model']) == {'weight', 'bias'}
        trained = kit.weights(model)
    with kit.experiment().create_run(run_id=run.id, resume=True):
        plain = Model(linear(), device='cpu')
        trainer_of(plain).load_checkpoint()
        assert kit.same_weights(kit.weights(plain), trained)


def test_a_module_compiled_by_the_user_is_unwrapped() -> None:
    compiled = torch.compile(linear(), **EAGER)
    with kit.experiment().create_run(run_id='u'):
        model = Model(compiled, device='cpu')  # type: ignore[arg-type]
        assert isinstance(model.module, nn.Linear)
        assert model._evaluating is compiled
        trainer_of(model).train(1)
        assert set(model.module.state_dict()) == {'weight', 'bias'}


def test_a_checkpoint_with_the_compiled_prefix_loads_in_a_plain_model() -> None:
    with kit.experiment().create_run(run_id='old') as run:
        model = Model(linear(), device='cpu')
        trainer = trainer_of(model)
        trainer.train(1)
        where = trainer.save_checkpoint()
        trained = kit.weights(model)
    state = torch.load(where, weights_only=True)
    state['model'] = {f'_orig_mod.{k}': v for k, v in state['model'].items()}
    location = checkpointing.CheckpointLocation(
        run.experiment.par_dir, run.experiment.name, run.id, 'Model'
    )
    with kit.experiment().create_run(run_id='old', resume=True):
        checkpointing.store(location, 1, state, 0)  # as an earlier version wrote
        plain = Model(linear(), device='cpu')
        trainer_of(plain).load_checkpoint()
        assert kit.same_weights(kit.weights(plain), trained)


def test_compile_takes_a_bool_or_options() -> None:
    with (
        kit.experiment().create_run(run_id='bad'),
        pytest.raises(TypeError, match='compile='),
    ):
        Model(linear(), device='cpu', compile='yes')  # type: ignore[arg-type]


@pytest.mark.skipif(
    not (shutil.which('cc') or shutil.which('gcc')),
    reason='the default backend compiles C++: no compiler here',
)
def test_the_default_backend_trains_like_the_plain_model() -> None:
    with kit.experiment().create_run(run_id='plain'):
        plain = Model(linear(), device='cpu')
        trainer_of(plain).train(2)
    with kit.experiment().create_run(run_id='inductor'):
        compiled = Model(linear(), device='cpu', compile=True)
        trainer_of(compiled).train(2)
    for key, value in kit.weights(compiled).items():
        torch.testing.assert_close(value, kit.weights(plain)[key])
