"""Configurations are recorded faithfully, or refused before anything is written.

Arrays are hashed by content (their repr elides elements), keys must stay
distinct as TOML text, OmegaConf containers must be read-only, and cycles and
lone surrogates are refused with a DRYTorch error naming where they are.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import pathlib
import tomllib
import types
import warnings
from typing import Any

import numpy as np
import pydantic
import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

import drytorch
from drytorch import Experiment
from drytorch.core import exceptions, snapshot
from drytorch.validators import names
from tests import training_kit as kit
from tests.conftest import run_python


@dataclasses.dataclass(frozen=True)
class Config:
    weights: Any = None
    lr: float = 0.1


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def record(exp: Experiment[Any], run_id: str) -> dict[str, Any]:
    path = exp.registry.root / exp.key / 'runs' / f'{run_id}.toml'
    return tomllib.loads(path.read_text())


def refused(
    error: type[exceptions.DryTorchError],
    config: Any,
    tmp_path: pathlib.Path,
    match: str,
) -> str:
    """Build an experiment that must fail; return the message. Nothing is written."""
    before = tree(tmp_path)
    with pytest.raises(error, match=match) as info:
        Experiment(config, name='refused')
    assert tree(tmp_path) == before
    assert not (tmp_path / 'registry').exists()
    return str(info.value)


def frozen(cfg: DictConfig | ListConfig) -> Any:
    OmegaConf.set_readonly(cfg, True)
    return cfg


# arrays across real processes

# ``kind`` picks the array; ``changed`` flips one element that the repr elides.
CHILD = """
import dataclasses, warnings
from typing import Any
import numpy as np, torch
from omegaconf import OmegaConf
import drytorch
from drytorch.core import exceptions

warnings.simplefilter('ignore')


@dataclasses.dataclass(frozen=True)
class Config:
    weights: Any = None
    lr: float = 0.1


def build(kind, changed):
    if kind == 'torch':
        weights = torch.zeros(2000)
    elif kind == 'numpy':
        weights = np.zeros(2000)
    else:
        cfg = OmegaConf.create({'lr': 0.1, 'layers': [16, 16], 'out': '${lr}'})
        if changed:
            cfg.layers[1] = 32
        OmegaConf.set_readonly(cfg, True)
        return cfg
    if changed:
        weights[1000] = 1.0
    return Config(weights)


def main(kind, changed, resume):
    exp = drytorch.Experiment(build(kind, changed), name='arrays')
    try:
        with exp.create_run('r', resume=resume) as run:
            print('resumed' if resume else 'created', run.id)
    except exceptions.ConfigMismatchError as error:
        print('mismatch')
        for line in error.differences:
            print(line)
"""


def child(kind: str, changed: bool, resume: bool) -> str:
    """Run ``main`` in a fresh interpreter, in the test's working directory."""
    code = f'{CHILD}\nmain({kind!r}, {changed}, {resume})\n'
    done = run_python(code, pathlib.Path.cwd(), {'DRYTORCH_INIT_MODE': 'none'})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize('kind', ['torch', 'numpy'])
def test_one_changed_element_is_a_mismatch_in_another_process(kind: str) -> None:
    make = torch.zeros if kind == 'torch' else np.zeros
    original, changed = make(2000), make(2000)
    changed[1000] = 1.0
    assert repr(original) == repr(changed)  # the repr cannot tell them apart

    assert child(kind, False, False) == 'created r'
    outcome = child(kind, True, True).splitlines()
    assert outcome[0] == 'mismatch', outcome  # by repr, it resumed
    old, new = (snapshot.to_toml(Config(a))['weights'] for a in (original, changed))
    assert outcome[1:] == [f'weights.sha256: {old["sha256"]!r} -> {new["sha256"]!r}']
    assert child(kind, False, True) == 'resumed r'

    data = record(Experiment(Config(original), name='arrays'), 'r')
    assert data['config']['weights'] == {
        'array': 'torch.Tensor' if kind == 'torch' else 'numpy.ndarray',
        'dtype': 'float32' if kind == 'torch' else 'float64',
        'shape': [2000],
        'sha256': old['sha256'],
    }
    assert data['config_hash'] == snapshot.config_hash(Config(original))
    assert data['config_hash'] != snapshot.config_hash(Config(changed))
    assert [s['status'] for s in data['sessions']] == ['completed', 'completed']


def test_read_only_dictconfig_resumes_in_another_process() -> None:
    assert child('omegaconf', False, False) == 'created r'
    assert child('omegaconf', True, True).splitlines() == [
        'mismatch',
        'layers: [16, 16] -> [16, 32]',
    ]
    assert child('omegaconf', False, True) == 'resumed r'


def test_snapshot_imports_no_array_library(tmp_path: pathlib.Path) -> None:
    code = (
        'import sys, dataclasses, drytorch\n'
        'from drytorch.core import snapshot\n'
        '@dataclasses.dataclass(frozen=True)\n'
        'class C:\n'
        '    table: tuple = ((1, "a"),)\n'
        'drytorch.Experiment(C(), name="light")\n'
        'snapshot.config_hash(C()); snapshot.to_toml(C())\n'
        'print(sorted({"torch", "numpy", "omegaconf"} & set(sys.modules)))\n'
    )
    done = run_python(code, tmp_path, {'DRYTORCH_INIT_MODE': 'none'})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '[]'


# arrays in one process


def test_small_arrays_list_their_values_and_diff_readably() -> None:
    with Experiment(Config(torch.tensor([1.0, 2.0])), name='small').create_run('r'):
        pass
    changed = Experiment(Config(torch.tensor([1.0, 3.0])), name='small')
    with pytest.raises(exceptions.ConfigMismatchError) as info:
        changed.create_run('r', resume=True)
    differences = info.value.differences
    assert len(differences) == 2
    assert differences[0].startswith('weights.sha256: ')
    assert differences[1] == 'weights.values: [1.0, 2.0] -> [1.0, 3.0]'


def test_nan_in_array_values_is_not_a_difference() -> None:
    weights = torch.tensor([math.nan, 1.0])
    with Experiment(Config(weights), name='nan').create_run('r'):
        pass
    with pytest.raises(exceptions.ConfigMismatchError) as info:
        Experiment(Config(weights.clone(), lr=0.2), name='nan').create_run(
            'r', resume=True
        )
    assert info.value.differences == ['lr: 0.1 -> 0.2']
    with Experiment(Config(weights.clone()), name='nan').create_run('r', resume=True):
        pass


def test_array_hash_ignores_memory_layout_and_autograd() -> None:
    base = torch.arange(12.0).reshape(3, 4)
    wide = torch.zeros(3, 8)
    wide[:, ::2] = base
    same = [
        base.t().contiguous().t(),  # another stride order
        base.clone().requires_grad_(),
        torch.nn.Parameter(base.clone()),
        wide[:, ::2],  # a view with gaps
        base.to_sparse(),
    ]
    for tensor in same:
        assert snapshot.config_hash(tensor) == snapshot.config_hash(base), tensor

    array = np.arange(12.0).reshape(3, 4)
    for other in (
        np.asfortranarray(array),
        array.astype('>f8'),
        wide.numpy().astype(np.float64)[:, ::2],
    ):
        assert snapshot.config_hash(other) == snapshot.config_hash(array)
    assert snapshot.config_hash(array[:, ::-1]) != snapshot.config_hash(array)


def test_array_hash_covers_dtype_shape_and_type() -> None:
    base = torch.zeros(4)
    hashes = {
        snapshot.config_hash(value)
        for value in (
            base,
            base.double(),
            base.reshape(2, 2),
            base.numpy(),
            torch.zeros(4, dtype=torch.bfloat16),
            torch.zeros(4, dtype=torch.complex64),
        )
    }
    assert len(hashes) == 6


def test_masked_array_hash_covers_the_mask() -> None:
    data = np.arange(4)
    one = np.ma.array(data, mask=[0, 1, 0, 0])
    two = np.ma.array(data, mask=[0, 0, 1, 0])
    assert snapshot.config_hash(one) != snapshot.config_hash(two)
    assert snapshot.to_toml(one)['array'] == 'numpy.ma.MaskedArray'


def test_object_arrays_are_recorded_by_value() -> None:
    one = np.array([1, 'a', None], dtype=object)
    assert snapshot.to_toml(one) == {
        'array': 'numpy.ndarray',
        'dtype': 'object',
        'shape': [3],
        'values': [1, 'a', '<None>'],
    }
    two = one.copy()
    two[1] = 'b'
    assert snapshot.config_hash(one) != snapshot.config_hash(two)


def test_values_only_for_plain_numbers() -> None:
    listed = snapshot.to_toml(Config(np.array([[1, 2], [3, 4]], dtype=np.int8)))
    assert listed['weights']['values'] == [[1, 2], [3, 4]]
    assert 'values' not in snapshot.to_toml(torch.tensor([1j]))
    assert 'values' not in snapshot.to_toml(np.array([2**64 - 1], dtype=np.uint64))
    assert 'values' not in snapshot.to_toml(torch.zeros(snapshot.SMALL_ARRAY + 1))
    assert snapshot.to_toml(torch.tensor(3))['values'] == 3


def quantized() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # deprecated in recent torch
        return torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)


@pytest.mark.parametrize(
    ('build', 'match'),
    [(lambda: torch.empty(3, device='meta'), 'meta device'), (quantized, 'quantized')],
    ids=['meta', 'quantized'],
)
def test_tensors_without_readable_values_are_refused(
    build: Any, match: str, tmp_path: pathlib.Path
) -> None:
    tensor = build()
    message = refused(
        exceptions.ConfigNotRecordableError, Config(tensor), tmp_path, match
    )
    assert 'config.weights' in message


class Frame:
    """An array-like of another library: its repr rounds and elides."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.zeros(3)

    def __repr__(self) -> str:
        return 'Frame([0.0, ..., 0.0])'


def test_foreign_array_likes_are_refused(tmp_path: pathlib.Path) -> None:
    message = refused(
        exceptions.ConfigNotRecordableError,
        Config(Frame()),
        tmp_path,
        r'config\.weights is a Frame',
    )
    assert 'numpy.asarray' in message
    Experiment(Config(np.float32(0.1)), name='scalar')  # NumPy scalars: exact repr


# keys


class Color(enum.Enum):
    RED = 'red'


@pytest.mark.parametrize(
    ('table', 'keys'),
    [
        ({1: 'a', '1': 'b'}, "1 and '1'"),
        ({True: 'a', 'True': 'b'}, "True and 'True'"),
        ({'Color.RED': 'a', Color.RED: 'b'}, "'Color.RED' and <Color.RED: 'red'>"),
    ],
    ids=['int-str', 'bool-str', 'enum-str'],
)
def test_keys_colliding_as_text_are_refused(
    table: dict[Any, str], keys: str, tmp_path: pathlib.Path
) -> None:
    config = Config({'inner': [types.MappingProxyType(table)]})
    message = refused(
        exceptions.ConfigNotRecordableError,
        config,
        tmp_path,
        r'config\.weights\.inner\[0\] has the keys',
    )
    assert keys in message
    assert 'distinct as text' in message


def test_distinct_keys_of_allowed_types_are_recorded() -> None:
    table = {7: 'a', 2.5: 'b', True: 'c', Color.RED: 'd', 'x y': {'z': 1}}
    config = Config(types.MappingProxyType(table))
    with Experiment(config, name='keys').create_run('r') as run:
        pass
    assert record(run.experiment, 'r')['config']['weights'] == {
        '7': 'a',
        '2.5': 'b',
        'True': 'c',
        'Color.RED': 'd',
        'x y': {'z': 1},
    }


@pytest.mark.parametrize('key', [(1, 2), None, pathlib.Path('p'), b'k'])
def test_keys_without_faithful_text_are_refused(
    key: Any, tmp_path: pathlib.Path
) -> None:
    config = Config({'odd key': {key: 1}})
    message = refused(
        exceptions.ConfigNotRecordableError,
        config,
        tmp_path,
        r"config\.weights\['odd key'\] has the key",
    )
    assert type(key).__name__ in message


# lone surrogates

SURROGATE = os.fsdecode(b'caf\xff')  # as os.listdir returns an undecodable name


@pytest.mark.parametrize(
    ('config', 'where'),
    [
        (Config(SURROGATE), r'config\.weights holds'),
        (Config(['ok', SURROGATE]), r'config\.weights\[1\] holds'),
        (Config({SURROGATE: 1}), r'a key of config\.weights holds'),
        (Config(pathlib.Path('/data') / SURROGATE), r'config\.weights holds'),
        ((SURROGATE,), r'config\[0\] holds'),
    ],
    ids=['string', 'list', 'key', 'path', 'tuple'],
)
def test_lone_surrogates_in_config_are_refused(
    config: Any, where: str, tmp_path: pathlib.Path
) -> None:
    message = refused(exceptions.ConfigNotRecordableError, config, tmp_path, where)
    assert r"'\udcff' at position" in message
    assert 'surrogateescape' in message


def test_lone_surrogates_in_names_are_refused(tmp_path: pathlib.Path) -> None:
    before = tree(tmp_path)
    with pytest.raises(exceptions.InvalidNameError, match='lone surrogate'):
        Experiment(None, name=SURROGATE)
    with pytest.raises(exceptions.InvalidNameError, match=r'^Tag .*lone surrogate'):
        Experiment(None, name='ok', tags=['fine', SURROGATE])
    exp = Experiment(None, name='ok')
    for resume in (False, True):
        with pytest.raises(exceptions.InvalidNameError, match='surrogateescape'):
            exp.create_run(SURROGATE, resume=resume)
    assert tree(tmp_path) == before


def test_lone_surrogate_in_a_model_name_is_refused(run: Any) -> None:
    with pytest.raises(exceptions.InvalidNameError, match=r'^Model name .*surrogate'):
        kit.linear(name=SURROGATE)


@pytest.mark.parametrize('tag', ['team/vision', 'lr:0.1', 'a..b', 'CON', 'x*y'])
def test_tags_are_labels_not_file_names(tag: str) -> None:
    names.check_name(tag, 'tag')
    with pytest.raises(exceptions.InvalidNameError):
        names.check_name(tag, 'run')
    with Experiment(None, name='tagged', tags=[tag]).create_run('r') as run:
        pass
    assert record(run.experiment, 'r')['tags'] == [tag]


@pytest.mark.parametrize('tag', ['', ' padded', 'new\nline', 'x' * 129])
def test_unusable_tags_are_refused(tag: str) -> None:
    with pytest.raises(exceptions.InvalidNameError, match=r'^Tag '):
        Experiment(None, name='tagged', tags=[tag])


def test_non_string_tag_is_refused_by_the_validator() -> None:
    with pytest.raises(exceptions.InvalidNameError, match='Tags must be strings'):
        drytorch.core.plugins.get_host().validate_name(name=3, kind='tag')


# cycles


def cyclic_list() -> Any:
    items: list[Any] = [1]
    items.append(items)
    return Config(items)


def cyclic_dict() -> Any:
    table: dict[str, Any] = {'a': {}}
    table['a']['back'] = table
    return types.MappingProxyType({'table': table})


def cyclic_dataclass() -> Any:
    config = Config()
    object.__setattr__(config, 'weights', {'parent': config})
    return config


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    child: Any = None


def cyclic_model() -> Any:
    model = Model()
    object.__setattr__(model, 'child', [model])  # frozen: assigned behind pydantic
    return model


def cyclic_tuple() -> Any:
    items: list[Any] = []
    config = (items,)
    items.append(config)
    return config


@pytest.mark.parametrize(
    ('build', 'where'),
    [
        (cyclic_list, r'config\.weights\[1\] is config\.weights again'),
        (cyclic_dict, r'config\.table\.a\.back is config\.table again'),
        (cyclic_dataclass, r'config\.weights\.parent is config again'),
        (cyclic_tuple, r'config\[0\]\[0\] is config again'),
        (cyclic_model, r'config\.child\[0\]\S* is config again'),
    ],
    ids=['list', 'dict', 'dataclass', 'tuple', 'pydantic'],
)
def test_cycles_are_refused(build: Any, where: str, tmp_path: pathlib.Path) -> None:
    refused(exceptions.ConfigNotRecordableError, build(), tmp_path, where)


def test_object_array_containing_itself_is_refused(tmp_path: pathlib.Path) -> None:
    array = np.empty(2, dtype=object)
    array[0], array[1] = 1, array
    refused(
        exceptions.ConfigNotRecordableError,
        Config(array),
        tmp_path,
        r'config\.weights\[1\] is config\.weights again',
    )


def test_shared_values_are_not_cycles() -> None:
    shared = (1, 2)
    config = Config({'a': shared, 'b': [shared, shared]})
    with Experiment(config, name='shared').create_run('r') as run:
        pass
    assert record(run.experiment, 'r')['config']['weights'] == {
        'a': [1, 2],
        'b': [[1, 2], [1, 2]],
    }


def test_too_deep_nesting_is_refused(tmp_path: pathlib.Path) -> None:
    deep: Any = 0
    for _ in range(5000):
        deep = (deep,)
    refused(exceptions.ConfigNotRecordableError, Config(deep), tmp_path, 'deeply')


# OmegaConf


def test_mutable_omegaconf_containers_run_on_a_read_only_copy() -> None:
    for cfg in (OmegaConf.create({'lr': 0.1}), OmegaConf.create([1, 2])):
        config = Experiment(cfg).config
        assert config is not cfg and config == cfg
        assert OmegaConf.is_readonly(config)
        assert not OmegaConf.is_readonly(cfg)  # the user's object is left as it was


def test_a_node_made_writable_again_is_copied_read_only() -> None:
    cfg = frozen(OmegaConf.create({'model': {'layers': [1, 2]}, 'lr': 0.1}))
    OmegaConf.set_readonly(cfg.model.layers, False)
    config = Experiment(cfg).config
    assert config is not cfg
    assert OmegaConf.is_readonly(config.model.layers)
    cfg.model.layers.append(3)  # the user's writable node changes, the run's not
    assert list(config.model.layers) == [1, 2]


def test_read_only_dictconfig_is_recorded_resolved() -> None:
    cfg = frozen(
        OmegaConf.create(
            {'lr': 0.1, 'opt': {'lr': '${lr}', 'betas': [0.9, 0.99]}, 'n': None}
        )
    )
    exp = Experiment(cfg, name='hydra')
    with exp.create_run('r'):
        assert Experiment.get_config() is cfg
    data = record(exp, 'r')
    assert data['config'] == {
        'lr': 0.1,
        'opt': {'lr': 0.1, 'betas': [0.9, 0.99]},
        'n': '<None>',
    }
    assert data['config_class'] == 'omegaconf.dictconfig.DictConfig'
    with Experiment(cfg, name='hydra').create_run('r', resume=True):
        pass
    other = frozen(OmegaConf.create({'lr': 0.2, 'opt': {'lr': '${lr}', 'betas': []}}))
    with pytest.raises(exceptions.ConfigMismatchError) as info:
        Experiment(other, name='hydra').create_run('r', resume=True)
    assert info.value.differences == [
        'lr: 0.1 -> 0.2',
        "n: '<None>' -> '<missing>'",
        'opt.betas: [0.9, 0.99] -> []',
        'opt.lr: 0.1 -> 0.2',
    ]


def test_read_only_listconfig_and_nested_containers_are_recorded() -> None:
    cfg = frozen(OmegaConf.create([{'a': 1}, [2, 3]]))
    assert snapshot.to_toml(cfg) == {'value': [{'a': 1}, [2, 3]]}
    nested = Config(frozen(OmegaConf.create({'layers': [4, 8]})))
    with Experiment(nested, name='nested').create_run('r') as run:
        pass
    assert record(run.experiment, 'r')['config']['weights'] == {'layers': [4, 8]}


def test_missing_or_broken_values_are_refused(tmp_path: pathlib.Path) -> None:
    missing = frozen(OmegaConf.create({'model': {'width': '???'}}))
    message = refused(
        exceptions.ConfigNotRecordableError,
        missing,
        tmp_path,
        r'config\.model\.width cannot be resolved',
    )
    assert 'MissingMandatoryValue' in message
    broken = frozen(OmegaConf.create({'lr': '${nowhere}'}))
    refused(exceptions.ConfigNotRecordableError, broken, tmp_path, r'config\.lr cannot')


# what still works


def test_accepted_configs_keep_their_hash() -> None:
    # The canonical form is unchanged for configs without arrays, so runs
    # recorded before these checks still resume.
    canonical = json.dumps({'lr': 0.1, 'weights': {'a': [1, None]}}, sort_keys=True)
    digest = hashlib.sha256(canonical.replace(' ', '').encode()).hexdigest()[:16]
    config = Config(types.MappingProxyType({'a': (1, None)}))
    assert snapshot.config_hash(config) == f'sha256:{digest}'


def test_disabled_validator_still_cannot_write_a_broken_record(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with drytorch.testing.isolated(
            tmp_path / 'other', disable_plugins='drytorch.validators.config'
        ):
            exp = Experiment(Config({1: 'a', '1': 'b'}), name='unchecked')
            with pytest.raises(exceptions.ConfigNotRecordableError):
                exp.create_run('r')
            assert exp.list_runs() == []
