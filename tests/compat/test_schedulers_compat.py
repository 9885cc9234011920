"""The original DRYTorch's ``lib.schedulers`` and ``lib.gradient_ops`` on ours.

Written from ``shared/spec/original-api.md`` (sections ``lib.schedulers`` and
``lib.gradient_ops``); each test names the row it covers. The gradient ops
run on the gradients of real parameters, and in a real training.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from drytorch import LearningSchema
from drytorch.core.exceptions import LearningSchemaError
from drytorch.lib import gradient_ops as g
from drytorch.lib import schedulers as s
from tests import training_kit as kit

# --- lib.schedulers ---------------------------------------------------------------


def test_step_scheduler_default_milestones() -> None:
    sched = s.StepScheduler()
    assert sched.milestones == (200,) and sched.gamma == 0.1
    assert sched(1.0, 199) == 1.0
    assert sched(1.0, 200) == pytest.approx(0.1)


def test_warmup_transform_factory_binds() -> None:
    base = s.CosineScheduler(decay_steps=10)
    assert base.bind(s.warmup(4)) == s.warmup(base, 4) == s.WarmupScheduler(base, 4)
    assert base.bind(s.warmup()) == s.WarmupScheduler(base, 10)  # warmup_steps=10
    assert base.bind(s.warmup(warmup_steps=3)).warmup_steps == 3
    original = s.WarmupScheduler(logic=base, warmup_steps=2)
    assert original.logic is base and original == s.WarmupScheduler(base, 2)
    assert repr(s.warmup(4)) == 'warmup(4)'
    with pytest.raises(LearningSchemaError, match='warmup_steps'):
        s.warmup(-1)


def test_restart_transform_factory_and_max_restart() -> None:
    base = s.ExponentialScheduler(exp_decay=0.5)
    bound = base.bind(s.restart(2, 0.5, 1))
    assert bound == s.RestartScheduler(base, 2, 0.5, max_restarts=1)
    assert bound.max_restart == 1
    assert [bound(1.0, e) for e in range(5)] == pytest.approx(
        [1.0, 0.5, 0.5, 0.25, 0.125]  # one restart at 2, then the base continues
    )
    keywords = s.restart(restart_interval=3, restart_fraction=0.5, max_restart=2)
    assert keywords(base) == s.RestartScheduler(
        logic=base, restart_interval=3, restart_fraction=0.5, max_restart=2
    )
    assert s.restart(base, 4, 0.5) == s.RestartScheduler(base, 4, 0.5)  # ours
    with pytest.raises(LearningSchemaError, match='restart_interval'):
        s.restart(0)  # refused when made, not when bound
    with pytest.raises(LearningSchemaError, match='not both'):
        s.RestartScheduler(base, 2, max_restarts=1, max_restart=1)


def test_rescale_transform_and_scheduler() -> None:
    base = s.CosineScheduler(decay_steps=4, min_decay=0.0)
    scaled = base.bind(s.rescale(0.5))
    assert scaled == s.RescaleScheduler(base, 0.5) == s.rescale(base, 0.5)
    assert s.RescaleScheduler(logic=base, factor=0.5) == scaled
    assert [scaled(2.0, e) for e in range(5)] == pytest.approx(
        [0.5 * base(2.0, e) for e in range(5)]
    )
    with pytest.raises(LearningSchemaError, match='factor'):
        s.rescale(0.0)


def test_transforms_chain_in_a_schema() -> None:
    sched = s.ConstantScheduler().bind(s.warmup(2)).bind(s.rescale(0.5))
    schema = LearningSchema.sgd(base_lr=1.0, scheduler=sched)
    assert [schema.lr_at(e)[0] for e in range(4)] == pytest.approx(
        [1 / 6, 2 / 6, 0.5, 0.5]
    )


# --- lib.gradient_ops: the clippers' threshold keyword ----------------------------


def _params(*grads: list[float]) -> list[torch.nn.Parameter]:
    params = []
    for grad in grads:
        param = torch.nn.Parameter(torch.zeros(len(grad)))
        param.grad = torch.tensor(grad)
        params.append(param)
    return params


def _grad_norm(params: list[torch.nn.Parameter]) -> float:
    total = sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)
    return math.sqrt(total)


def test_clippers_take_threshold_with_default_one() -> None:
    assert g.GradNormClipper(threshold=2.0) == g.GradNormClipper(2.0)
    assert g.GradNormClipper().max_norm == 1.0 == g.GradNormClipper().threshold
    assert g.GradValueClipper(threshold=0.5) == g.GradValueClipper(0.5)
    assert g.GradValueClipper().clip_value == 1.0
    params = _params([3.0, 4.0])
    g.GradNormClipper(threshold=1)(params)
    assert _grad_norm(params) == pytest.approx(1.0)
    params = _params([3.0, -0.5])
    g.GradValueClipper(threshold=1)(params)
    assert params[0].grad.tolist() == [1.0, -0.5]  # type: ignore[union-attr]
    with pytest.raises(LearningSchemaError, match='not both'):
        g.GradNormClipper(1.0, threshold=1.0)


def test_normalizers() -> None:
    params = _params([3.0, 4.0], [0.0, 0.0], [1.0, 2.0, 3.0])
    g.GradParamNormalizer()(params)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.8])  # type: ignore[union-attr]
    assert params[1].grad.tolist() == [0.0, 0.0]  # type: ignore[union-attr]
    params = _params([1.0, 2.0, 3.0], [5.0])
    g.GradZScoreNormalizer()(params)
    grad = params[0].grad
    assert grad is not None
    assert float(grad.mean()) == pytest.approx(0.0, abs=1e-7)
    assert float(grad.std()) == pytest.approx(1.0)
    assert params[1].grad.tolist() == [0.0]  # type: ignore[union-attr]


# --- clipping functions, criteria, StatsCollector ---------------------------------


def test_clipping_functions() -> None:
    assert g.max_clipping(5.0, 2.5) == 2.5
    assert g.mean_clipping(5.0, 2.5) == 3.75
    assert g.reciprocal_clipping(5.0, 2.5) == 1.25
    assert g.reciprocal_clipping(2.5, 2.5) == 2.5  # continuous at the threshold


def test_stats_collector() -> None:
    collector = g.StatsCollector(3)
    collector.append(1.0)
    collector.append(2.0)
    assert not collector.is_complete
    collector.append(3.0)
    collector.append(100.0)  # past max_samples: ignored
    assert collector.is_complete
    assert collector.mean == 2.0 and collector.variance == pytest.approx(2 / 3)
    collector.reset()
    assert not collector.is_complete
    with pytest.raises(LearningSchemaError, match='max_samples'):
        g.StatsCollector(0)


def test_zstat_criterion() -> None:
    criterion = g.ZStatCriterion()
    assert (criterion.alpha, criterion.z_thresh) == (0.97, 2.5)
    assert criterion.clipping_function is g.reciprocal_clipping
    criterion.set_statistics(mean=1.0, variance=0.04)  # std 0.2
    assert not criterion.should_clip(1.4)  # z = 2
    assert criterion.should_clip(2.0)  # z = 5
    assert criterion.get_clip_value(2.0) == pytest.approx(1.0 + 0.2 * 1.25)
    criterion.update(1.5)
    assert criterion.mean == pytest.approx(0.97 + 0.03 * 1.5)
    assert criterion.variance == pytest.approx(0.97 * 0.04 + 0.03 * 0.25)
    criterion.reset()
    assert not criterion.should_clip(100.0)  # no statistics: nothing is a spike
    assert isinstance(criterion, g.ClippingCriterion)


def test_ema_criterion() -> None:
    criterion = g.EMACriterion()
    assert (criterion.alpha, criterion.r_thresh) == (0.98, 1.05)
    assert criterion.clipping_function is g.max_clipping
    criterion.set_statistics(2.0, 0.0)
    assert not criterion.should_clip(2.1)  # ratio 1.05
    assert criterion.should_clip(3.0)
    assert criterion.get_clip_value(3.0) == pytest.approx(2.1)
    criterion.update(2.1)
    assert criterion.mean == pytest.approx(0.98 * 2.0 + 0.02 * 2.1)


# --- HistClipper and ParamHistClipper ---------------------------------------------


def test_hist_clipper_warms_up_then_clips_spikes() -> None:
    clipper = g.HistClipper(n_warmup_steps=4)
    assert isinstance(clipper.criterion, g.ZStatCriterion)
    assert clipper.warmup_clip_strategy == g.GradNormClipper()
    assert g.HistClipper().n_warmup_steps == 20
    warmup_norms = [0.8, 1.0, 1.2, 1.0]
    for norm in warmup_norms:
        params = _params([norm, 0.0])
        clipper(params)  # warm-up: clipped to norm 1 by GradNormClipper()
        assert _grad_norm(params) == pytest.approx(min(norm, 1.0))
    criterion = clipper.criterion
    assert criterion.mean == pytest.approx(1.0)
    assert criterion.mean is not None
    std = math.sqrt(criterion.variance)
    assert std == pytest.approx(math.sqrt(0.02))
    params = _params([1.1, 0.0])  # z < 2.5: untouched
    clipper(params)
    assert _grad_norm(params) == pytest.approx(1.1)
    mean, std = criterion.mean, math.sqrt(criterion.variance)
    assert mean is not None
    spike = mean + 10 * std
    params = _params([0.0, spike])
    clipper(params)
    z = (spike - mean) / std
    assert _grad_norm(params) == pytest.approx(mean + std * 2.5**2 / z)
    clipper.reset()
    assert criterion.mean is None
    params = _params([5.0])
    clipper(params)  # warming up again
    assert _grad_norm(params) == pytest.approx(1.0)


def test_param_hist_clipper_clips_each_parameter_by_its_history() -> None:
    clipper = g.ParamHistClipper(
        criterion=g.EMACriterion(r_thresh=1.5), n_warmup_steps=2
    )
    big = torch.nn.Parameter(torch.zeros(1))
    small = torch.nn.Parameter(torch.zeros(1))
    for _ in range(2):  # warm-up: norms 0.5 and 0.01
        big.grad, small.grad = torch.tensor([0.5]), torch.tensor([0.01])
        clipper([big, small])
    big.grad, small.grad = torch.tensor([0.6]), torch.tensor([0.1])
    clipper([big, small])
    assert big.grad.tolist() == pytest.approx([0.6])  # ratio 1.2: kept
    assert small.grad.tolist() == pytest.approx([0.015])  # ratio 10: to 1.5 x 0.01


def test_hist_clipper_in_training(run: Any) -> None:
    clipper = g.HistClipper(n_warmup_steps=3)
    schema = LearningSchema.sgd(base_lr=0.05, gradient_op=clipper)
    trainer = kit.trainer(schema=schema)
    trainer.train(2)
    assert clipper.criterion.mean is not None  # warmed up on the real norms
    assert math.isfinite(trainer.computed_metrics['MSE'])
    assert 'HistClipper(criterion=ZStatCriterion(' in repr(clipper)


def test_no_op_keeps_the_plain_step(run: Any) -> None:
    trainer = kit.trainer(schema=LearningSchema.sgd(base_lr=0.05))
    assert trainer._plain_optimizer is trainer.optimizer  # no gradient-op call
