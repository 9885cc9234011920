"""LearningSchema and gradient operations on real tiny modules."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from typing import Any

import pytest
import torch
from torch import nn

from drytorch.core.exceptions import LearningSchemaError
from drytorch.lib import gradient_ops as g
from drytorch.lib import schedulers as s
from drytorch.lib.learning import LearningSchema


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))
        return out


def ids(params: list[torch.Tensor]) -> set[int]:
    return {id(p) for p in params}


# --- gradient operations -------------------------------------------------


def with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = []
    for grad in grads:
        param = nn.Parameter(torch.zeros(len(grad)))
        param.grad = torch.tensor(grad)
        params.append(param)
    return params


def test_no_op_leaves_gradients() -> None:
    params = with_grads([3.0, 4.0])
    g.NoOp()(params)
    assert torch.equal(params[0].grad, torch.tensor([3.0, 4.0]))  # type: ignore[arg-type]
    assert repr(g.NoOp()) == 'NoOp()'
    assert isinstance(g.NoOp(), g.GradientOp)


def test_norm_clipper_rescales_the_joint_norm() -> None:
    params = with_grads([3.0, 0.0], [4.0])  # joint 2-norm 5
    g.GradNormClipper(1.0)(iter(params))  # any iterable works
    assert params[0].grad is not None and params[1].grad is not None
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.0]), atol=1e-5)
    assert torch.allclose(params[1].grad, torch.tensor([0.8]), atol=1e-5)
    small = with_grads([0.3, 0.4])
    g.GradNormClipper(1.0)(small)
    assert torch.allclose(small[0].grad, torch.tensor([0.3, 0.4]))  # type: ignore[arg-type]


def test_norm_clipper_with_max_norm() -> None:
    params = with_grads([3.0, -6.0], [1.0])
    g.GradNormClipper(2.0, norm_type=math.inf)(params)
    assert torch.allclose(params[0].grad, torch.tensor([1.0, -2.0]), atol=1e-5)  # type: ignore[arg-type]
    assert torch.allclose(params[1].grad, torch.tensor([1 / 3]), atol=1e-5)  # type: ignore[arg-type]
    assert repr(g.GradNormClipper(2.0, math.inf)) == (
        'GradNormClipper(max_norm=2.0, norm_type=inf)'
    )


def test_norm_clipper_skips_parameters_without_grad() -> None:
    params = [*with_grads([6.0, 8.0]), nn.Parameter(torch.ones(2))]
    g.GradNormClipper(5.0)(params)
    assert torch.allclose(params[0].grad, torch.tensor([3.0, 4.0]))  # type: ignore[arg-type]
    assert params[1].grad is None


def test_value_clipper_clamps_elements() -> None:
    params = with_grads([-3.0, 0.2, 5.0])
    g.GradValueClipper(0.5)(params)
    assert torch.equal(params[0].grad, torch.tensor([-0.5, 0.2, 0.5]))  # type: ignore[arg-type]
    assert repr(g.GradValueClipper(0.5)) == 'GradValueClipper(clip_value=0.5)'


@pytest.mark.parametrize(
    ('build', 'message'),
    [
        (
            lambda: g.GradNormClipper(0.0),
            'max_norm must be positive and finite, got 0.0',
        ),
        (lambda: g.GradNormClipper(math.inf), 'max_norm must be positive and finite'),
        (lambda: g.GradNormClipper(1.0, norm_type=0.0), 'norm_type must be positive'),
        (
            lambda: g.GradNormClipper(1.0, norm_type=math.nan),
            'norm_type must be positive',
        ),
        (
            lambda: g.GradValueClipper(-1.0),
            'clip_value must be positive and finite, got -1.0',
        ),
        (
            lambda: g.GradValueClipper(math.nan),
            'clip_value must be positive and finite',
        ),
    ],
)
def test_invalid_gradient_ops_are_refused(build: Any, message: str) -> None:
    with pytest.raises(LearningSchemaError, match=message):
        build()


def test_clipping_in_a_training_step() -> None:
    torch.manual_seed(0)
    net = Net()
    schema = LearningSchema.sgd(lr=0.1, gradient_op=g.GradNormClipper(0.01))
    optimizer = schema.build_optimizer(net)
    net(torch.randn(8, 3)).pow(2).sum().mul(1000).backward()
    schema.gradient_op(net.parameters())
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in net.parameters()])  # type: ignore[arg-type]
    )
    assert float(norm) == pytest.approx(0.01, rel=1e-4)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.step()
    moved = sum(
        float((p.detach() - b).norm() ** 2)
        for p, b in zip(net.parameters(), before, strict=True)
    )
    assert math.sqrt(moved) == pytest.approx(0.1 * 0.01, rel=1e-3)


# --- construction ----------------------------------------------------------


def test_defaults() -> None:
    schema = LearningSchema(torch.optim.SGD, 0.1)
    assert schema.scheduler == s.ConstantScheduler()
    assert schema.gradient_op == g.NoOp()
    assert dict(schema.optimizer_defaults) == {}


@pytest.mark.parametrize(
    ('factory', 'cls', 'lr', 'defaults'),
    [
        (
            LearningSchema.adam,
            torch.optim.Adam,
            1e-3,
            {'betas': (0.9, 0.999), 'weight_decay': 0.0},
        ),
        (
            LearningSchema.adam_w,
            torch.optim.AdamW,
            1e-3,
            {'betas': (0.9, 0.999), 'weight_decay': 1e-2},
        ),
        (
            LearningSchema.r_adam,
            torch.optim.RAdam,
            1e-3,
            {'betas': (0.9, 0.999), 'weight_decay': 0.0},
        ),
        (
            LearningSchema.sgd,
            torch.optim.SGD,
            0.01,
            {'momentum': 0.0, 'weight_decay': 0.0, 'nesterov': False},
        ),
    ],
)
def test_factories(
    factory: Any, cls: type, lr: float, defaults: dict[str, Any]
) -> None:
    schema = factory()
    assert schema.optimizer_cls is cls
    assert schema.base_lr == lr
    assert dict(schema.optimizer_defaults) == defaults
    optimizer = schema.build_optimizer(Net())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group['lr'] == lr
    for key, value in defaults.items():
        assert group[key] == value


def test_factory_arguments_reach_the_optimizer() -> None:
    sched = s.CosineScheduler(10)
    schema = LearningSchema.sgd(
        lr=0.5, momentum=0.9, weight_decay=1e-4, nesterov=True, scheduler=sched
    )
    group = schema.build_optimizer(Net()).param_groups[0]
    assert (
        group['lr'],
        group['momentum'],
        group['weight_decay'],
        group['nesterov'],
    ) == (
        0.5,
        0.9,
        1e-4,
        True,
    )
    assert schema.scheduler is sched
    adam = LearningSchema.adam_w(lr=2e-3, betas=(0.8, 0.9), weight_decay=0.1)
    group = adam.build_optimizer(Net()).param_groups[0]
    assert (group['lr'], group['betas'], group['weight_decay']) == (
        2e-3,
        (0.8, 0.9),
        0.1,
    )


def test_schema_is_frozen_hashable_and_picklable() -> None:
    lrs = {'encoder': 0.1, 'head': 0.2}
    schema = LearningSchema.adam(lr=lrs)
    lrs['head'] = 9.0  # the schema keeps its own copy
    assert schema.base_lr == {'encoder': 0.1, 'head': 0.2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        schema.base_lr = 0.3  # type: ignore[misc]
    assert hash(schema) == hash(LearningSchema.adam(lr={'encoder': 0.1, 'head': 0.2}))
    assert pickle.loads(pickle.dumps(schema)) == schema
    assert copy.deepcopy(schema) == schema


@pytest.mark.parametrize(
    ('build', 'message'),
    [
        (
            lambda: LearningSchema(torch.optim.SGD(nn.Linear(1, 1).parameters()), 0.1),
            'must be a torch.optim.Optimizer subclass',
        ),  # type: ignore[arg-type]
        (
            lambda: LearningSchema(nn.Linear, 0.1),
            'must be a torch.optim.Optimizer subclass',
        ),  # type: ignore[arg-type]
        (
            lambda: LearningSchema(torch.optim.SGD, -0.1),
            'base_lr must be finite and non-negative, got -0.1',
        ),
        (
            lambda: LearningSchema(torch.optim.SGD, math.inf),
            'base_lr must be finite and non-negative',
        ),
        (
            lambda: LearningSchema(torch.optim.SGD, '0.1'),
            "base_lr must be a number, got '0.1'",
        ),  # type: ignore[arg-type]
        (lambda: LearningSchema(torch.optim.SGD, {}), 'base_lr is an empty mapping'),
        (
            lambda: LearningSchema(torch.optim.SGD, {'head': -1.0}),
            "The learning rate of 'head' must be finite",
        ),
        (
            lambda: LearningSchema(torch.optim.SGD, {1: 0.1}),
            'keys of base_lr are submodule names, got 1',
        ),  # type: ignore[dict-item]
        (
            lambda: LearningSchema(
                torch.optim.SGD, 0.1, optimizer_defaults={'lr': 0.2}
            ),
            "must not set 'lr'",
        ),
        (
            lambda: LearningSchema(torch.optim.SGD, 0.1, scheduler=lambda lr, e: lr),
            'scheduler must be a drytorch schedule',
        ),  # type: ignore[arg-type]
        (
            lambda: LearningSchema(torch.optim.SGD, 0.1, gradient_op=3),
            'gradient_op must be callable',
        ),  # type: ignore[arg-type]
        (
            lambda: LearningSchema.sgd(nesterov=True),
            'Nesterov momentum needs momentum > 0',
        ),
    ],
)
def test_invalid_schemas_are_refused(build: Any, message: str) -> None:
    with pytest.raises(LearningSchemaError, match=message):
        build()


def test_optimizer_errors_become_schema_errors() -> None:
    schema = LearningSchema(
        torch.optim.Adam, 0.1, optimizer_defaults={'bettas': (0.9, 0.9)}
    )
    with pytest.raises(
        LearningSchemaError, match=r"Adam cannot be built with \{'bettas'"
    ):
        schema.build_optimizer(Net())
    bad_betas = LearningSchema.adam(betas=(2.0, 0.9))
    with pytest.raises(LearningSchemaError, match='Invalid beta parameter'):
        bad_betas.build_optimizer(Net())


# --- parameter groups ------------------------------------------------------


def test_single_rate_groups_every_parameter() -> None:
    net = Net()
    net.head.bias.requires_grad_(False)
    (group,) = LearningSchema.adam(lr=0.3).param_groups(net)
    assert group['lr'] == 0.3
    assert group['name'] == ''
    assert ids(group['params']) == ids(list(net.parameters()))


def test_named_groups_with_dotted_paths() -> None:
    net = Net()
    schema = LearningSchema.sgd(lr={'encoder.0': 0.1, 'encoder.2': 0.2, 'head': 0.3})
    groups = schema.param_groups(net)
    assert [(grp['name'], grp['lr']) for grp in groups] == [
        ('encoder.0', 0.1),
        ('encoder.2', 0.2),
        ('head', 0.3),
    ]
    assert ids(groups[0]['params']) == ids(list(net.encoder[0].parameters()))
    assert ids(groups[2]['params']) == ids(list(net.head.parameters()))
    optimizer = schema.build_optimizer(net)
    assert [grp['lr'] for grp in optimizer.param_groups] == [0.1, 0.2, 0.3]
    assert [grp['name'] for grp in optimizer.param_groups] == [
        'encoder.0',
        'encoder.2',
        'head',
    ]


def test_frozen_parameters_need_no_group() -> None:
    net = Net()
    net.encoder.requires_grad_(False)
    groups = LearningSchema.adam(lr={'head': 0.1}).param_groups(net)
    assert [grp['name'] for grp in groups] == ['head']


def test_unknown_submodule_is_refused() -> None:
    with pytest.raises(
        LearningSchemaError, match="names 'decoder', which is not a submodule of Net"
    ) as info:
        LearningSchema.adam(lr={'decoder': 0.1}).param_groups(Net())
    assert "['encoder', 'head', 'act']" in str(info.value)
    with pytest.raises(LearningSchemaError, match=r"'encoder\.7'"):
        LearningSchema.adam(lr={'encoder.7': 0.1, 'head': 0.1}).param_groups(Net())


def test_overlapping_groups_are_refused() -> None:
    schema = LearningSchema.adam(lr={'encoder': 0.1, 'encoder.0': 0.2, 'head': 0.3})
    with pytest.raises(
        LearningSchemaError, match=r"'encoder' and 'encoder\.0' share parameters"
    ):
        schema.param_groups(Net())


def test_tied_weights_in_two_groups_are_refused() -> None:
    net = Net()
    net.extra = nn.Linear(4, 2)
    net.extra.weight = net.head.weight
    schema = LearningSchema.adam(lr={'encoder': 0.1, 'head': 0.2, 'extra': 0.3})
    with pytest.raises(
        LearningSchemaError, match="'head' and 'extra' share parameters"
    ):
        schema.param_groups(net)


def test_uncovered_parameters_are_listed() -> None:
    schema = LearningSchema.adam(lr={'encoder.0': 0.1, 'head': 0.2})
    with pytest.raises(LearningSchemaError) as info:
        schema.param_groups(Net())
    message = str(info.value)
    assert "['encoder.2.weight', 'encoder.2.bias']" in message
    assert "Add their submodules (e.g. ['encoder']) to base_lr" in message
    assert 'requires_grad_(False)' in message


def test_groups_without_parameters_are_refused() -> None:
    with pytest.raises(LearningSchemaError, match="'act' has no parameters: remove it"):
        LearningSchema.adam(lr={'encoder': 0.1, 'head': 0.1, 'act': 0.1}).param_groups(
            Net()
        )
    with pytest.raises(LearningSchemaError, match='ReLU has no parameters to optimize'):
        LearningSchema.adam().param_groups(nn.ReLU())


# --- rates over time and description -------------------------------------------


def test_lr_at_follows_the_scheduler_per_group() -> None:
    schema = LearningSchema.adam(
        lr={'encoder': 0.1, 'head': 0.01}, scheduler=s.ExponentialScheduler(0.5)
    )
    assert schema.lr_at(0) == pytest.approx([0.1, 0.01])
    assert schema.lr_at(2) == pytest.approx([0.025, 0.0025])
    assert schema.lr_at(2, factor=2.0) == pytest.approx([0.05, 0.005])
    single = LearningSchema.sgd(lr=1.0, scheduler=s.warmup(s.ConstantScheduler(), 4))
    assert single.lr_at(1) == pytest.approx([0.4])
    optimizer = schema.build_optimizer(Net())
    for group, lr in zip(optimizer.param_groups, schema.lr_at(3), strict=True):
        group['lr'] = lr
    assert [grp['lr'] for grp in optimizer.param_groups] == pytest.approx(
        [0.0125, 0.00125]
    )


def test_describe_is_readable_and_toml_friendly() -> None:
    schema = LearningSchema.adam(
        lr={'encoder': 0.1, 'head': 0.01},
        scheduler=s.warmup(s.CosineScheduler(100), 5),
        gradient_op=g.GradNormClipper(1.0),
    )
    assert schema.describe() == {
        'optimizer': 'torch.optim.Adam',
        'base_lr': {'encoder': 0.1, 'head': 0.01},
        'optimizer_defaults': {'betas': [0.9, 0.999], 'weight_decay': 0.0},
        'scheduler': 'WarmupScheduler(base=CosineScheduler(decay_steps=100, '
        'min_decay=0.01), warmup_steps=5)',
        'gradient_op': 'GradNormClipper(max_norm=1.0, norm_type=2.0)',
        'interval': 'epoch',
    }
    plain = LearningSchema(torch.optim.SGD, 0.5, optimizer_defaults={'dampening': None})
    described = plain.describe()
    assert described['base_lr'] == 0.5
    assert described['optimizer_defaults'] == {'dampening': 'None'}
    assert described['scheduler'] == 'ConstantScheduler()'
    assert described['gradient_op'] == 'NoOp()'


def test_describe_names_custom_optimizers() -> None:
    class MySGD(torch.optim.SGD):
        pass

    name = LearningSchema(MySGD, 0.1).describe()['optimizer']
    assert name.endswith('test_describe_names_custom_optimizers.<locals>.MySGD')
    assert name.startswith('tests.test_learning') or name.startswith('test_learning')
