"""suggest_overrides: a tuning configuration made Hydra overrides by a real trial."""

from __future__ import annotations

import pathlib

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from drytorch_contrib_optuna import OptunaError, suggest_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONFIG = """\
train:
  lr: 0.1
  batch_size: 32
  epochs: 5
  name: base
model:
  layers: 1
  act: relu
  width: 8
  norm: none
"""

TUNE = """\
train.lr: tag(log, interval(1e-4, 1e-1))
train.batch_size: {suggest: int, low: 16, high: 128, log: true}
train.name: '3'
model:
  layers: range(1, 4)
  act: choice(relu, gelu)
  width: tag(int, interval(16, 256))
  norm: [batch, layer]
"""


def test_overrides_compose_with_the_trial_values(tmp_path: pathlib.Path) -> None:
    """The original's suggest_overrides(tune_cfg, trial) on an omegaconf config."""
    (tmp_path / 'config.yaml').write_text(CONFIG)
    tune = OmegaConf.create(TUNE)
    study = optuna.create_study()
    trial = study.ask()
    overrides = suggest_overrides(tune, trial)
    assert [o.split('=')[0] for o in overrides] == [
        'train.lr', 'train.batch_size', 'train.name', 'model.layers', 'model.act',
        'model.width', 'model.norm',
    ]  # fmt: skip
    with initialize_config_dir(str(tmp_path), version_base=None):
        cfg = compose('config', overrides=overrides)
    params = trial.params
    assert set(params) == {'lr', 'batch_size', 'layers', 'act', 'width', 'norm'}
    assert cfg.train.lr == params['lr'] and 1e-4 <= params['lr'] <= 1e-1
    assert cfg.train.batch_size == params['batch_size']
    assert cfg.train.name == '3'  # quoted: stays a string
    assert cfg.model.layers == params['layers'] and params['layers'] in (1, 2, 3)
    assert cfg.model.act == params['act'] and params['act'] in ('relu', 'gelu')
    assert isinstance(params['width'], int) and cfg.model.width == params['width']
    assert cfg.model.norm == params['norm']
    distributions = trial.distributions
    assert distributions['lr'] == optuna.distributions.FloatDistribution(
        1e-4, 1e-1, log=True
    )
    assert distributions['layers'] == optuna.distributions.CategoricalDistribution(
        [1, 2, 3]
    )


def test_full_names_and_lists_of_overrides() -> None:
    trial = optuna.trial.FixedTrial({'a.lr': 0.5, 'b.lr': 0.25})
    tune = ['a.lr=interval(0, 1)', 'b.lr=interval(0, 1)']
    assert suggest_overrides(tune, trial, use_full_name=True) == [
        'a.lr=0.5', 'b.lr=0.25',
    ]  # fmt: skip
    with pytest.raises(OptunaError, match='use_full_name=True'):
        suggest_overrides(tune, optuna.trial.FixedTrial({'lr': 0.5}))


def test_bad_search_spaces() -> None:
    trial = optuna.create_study().ask()
    with pytest.raises(OptunaError, match='not a Hydra sweep'):
        suggest_overrides({'x': 'interval(1'}, trial)
    with pytest.raises(OptunaError, match="unknown suggest 'floats'"):
        suggest_overrides({'x': {'suggest': 'floats', 'low': 0, 'high': 1}}, trial)
    with pytest.raises(OptunaError, match='suggest_float'):
        suggest_overrides({'x': {'suggest': 'float', 'lo': 0}}, trial)
    with pytest.raises(OptunaError, match='mapping'):
        suggest_overrides(3, trial)
