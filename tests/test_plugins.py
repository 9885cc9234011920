"""The plugin host: entry points, load failures, the contract, switches, faults.

The distributions under ``tests/plugin_dist/<variant>/`` are real: a
``*.dist-info`` folder (METADATA, entry_points.txt with a ``[drytorch]`` group)
next to the plugin module. Putting a variant's folder on ``sys.path`` (or on
``PYTHONPATH`` of a subprocess) installs it as far as ``importlib.metadata``
is concerned.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pluggy
import pytest

import drytorch
import drytorch.testing
from drytorch import Experiment
from drytorch.core import exceptions, plugins
from drytorch.core.exceptions import PluginError, TrackerFailureWarning
from drytorch.core.plugins import PluginLoadWarning
from drytorch.hookspecs import SPEC_MODULES
from drytorch.testing import HookRecorder

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIST = ROOT / 'tests' / 'plugin_dist'
DEMO_MODULE = 'drytorch_demo_plugin'
PLUGIN_MODULES = (
    DEMO_MODULE,
    'drytorch_broken_plugin',
    'drytorch_misspelt_plugin',
    'drytorch_badarg_plugin',
    'drytorch_clash_plugin',
)


@pytest.fixture
def use_dist(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Install test distributions in-process; the next host loads them."""

    def forget_modules() -> None:
        for name in PLUGIN_MODULES:
            sys.modules.pop(name, None)

    def install(variant: str) -> None:
        monkeypatch.syspath_prepend(str(DIST / variant))
        plugins.reset_host()

    forget_modules()
    yield install
    forget_modules()


def run_python(
    args: list[str], cwd: pathlib.Path, *variants: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with test distributions on ``PYTHONPATH``."""
    paths = [str(DIST / v) for v in variants]
    if os.environ.get('PYTHONPATH'):
        paths.append(os.environ['PYTHONPATH'])
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_project(base: pathlib.Path, table: str) -> pathlib.Path:
    """Write a pyproject.toml with a ``[tool.drytorch]`` table; return its folder."""
    base.mkdir(parents=True)
    (base / 'pyproject.toml').write_text(f'[tool.drytorch]\n{table}\n')
    return base


def run_once(name: str) -> Any:
    exp = Experiment(None, name=name)
    with exp.create_run() as run:
        pass
    return exp.registry.read(exp.key, run.id)


def info_of(host: plugins.PluginHost, name: str) -> plugins.PluginInfo:
    found = [info for info in host.plugins() if info.name == name]
    assert len(found) == 1, [info.name for info in host.plugins()]
    return found[0]


# 1. Entry points, for real


def test_entry_point_plugin_is_called_when_a_run_starts(use_dist) -> None:
    use_dist('demo')
    exp = Experiment(None, name='with-demo')
    with exp.create_run(run_id='first') as run:
        module = sys.modules[DEMO_MODULE]
        assert [event.run_id for event in module.CALLS] == ['first']
    assert module.CALLS[0].experiment_name == 'with-demo'
    assert plugins.get_host().get_plugin('demo') is module
    assert exp.registry.read(exp.key, run.id).status == 'completed'


def test_entry_point_origin_is_the_distribution(use_dist) -> None:
    use_dist('demo')
    host = plugins.get_host()
    demo = info_of(host, 'demo')
    assert 'drytorch-demo-plugin' in demo.origin
    assert '1.2.3' in demo.origin
    # the unmarked ``on_run_stop`` function of the module is not a hook
    assert demo.hooks == ('on_run_start',)
    assert info_of(host, 'drytorch.validators.names').origin == 'built-in'


def test_drytorch_hookimpl_is_the_marker(use_dist) -> None:
    use_dist('demo')
    host = plugins.get_host()
    module = sys.modules[DEMO_MODULE]
    assert drytorch.hookimpl.project_name == 'drytorch'
    assert 'demo' in host.implementers('on_run_start')
    assert host.get_plugin('demo').on_run_start is module.on_run_start

    class ForeignMarker:
        @pluggy.HookimplMarker('not-drytorch')
        def on_run_start(self, event: object) -> None:
            raise AssertionError('a foreign marker must not make a hook')

    host.register(ForeignMarker(), 'foreign')
    assert info_of(host, 'foreign').hooks == ()
    assert run_once('foreign-marker').status == 'completed'


def test_entry_point_plugin_in_a_subprocess(tmp_path: pathlib.Path) -> None:
    code = (
        'import json\n'
        'from drytorch import Experiment\n'
        'from drytorch.core import plugins\n'
        "exp = Experiment(None, name='sub')\n"
        "with exp.create_run(run_id='r1'):\n"
        '    pass\n'
        'infos = plugins.get_host().plugins()\n'
        'print(json.dumps({i.name: [i.origin, list(i.hooks)] for i in infos}))\n'
    )
    result = run_python(['-c', code], tmp_path / 'work', 'demo')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'demo-plugin on_run_start sub r1'
    infos = json.loads(lines[-1])
    assert infos['demo'] == ['drytorch-demo-plugin 1.2.3', ['on_run_start']]


def test_cli_plugins_json_lists_entry_point_origin(tmp_path: pathlib.Path) -> None:
    args = ['-m', 'drytorch.cli', 'plugins', '--json']
    result = run_python(args, tmp_path / 'work', 'demo')
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert isinstance(listed, list)
    assert all({'name', 'origin', 'hooks'} <= set(entry) for entry in listed)
    by_name = {entry['name']: entry for entry in listed}
    assert 'drytorch-demo-plugin' in by_name['demo']['origin']
    assert '1.2.3' in by_name['demo']['origin']
    assert list(by_name['demo']['hooks']) == ['on_run_start']
    assert by_name['drytorch.validators.names']['origin'] == 'built-in'
    assert 'validate_name' in by_name['drytorch.validators.names']['hooks']


# 2. A plugin whose import fails


def test_plugin_whose_import_fails_is_reported_and_skipped(use_dist) -> None:
    use_dist('broken')
    with pytest.warns(PluginLoadWarning) as caught:
        host = plugins.get_host()
    messages = [str(w.message) for w in caught if w.category is PluginLoadWarning]
    assert len(messages) == 1
    assert "'broken'" in messages[0]
    assert 'drytorch_dependency_that_is_not_installed' in messages[0]
    assert not host.has_plugin('broken')
    assert run_once('survives').status == 'completed'


def test_strict_plugins_env_raises_plugin_error(use_dist, monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_STRICT_PLUGINS', '1')
    use_dist('broken')
    with pytest.raises(PluginError, match="'broken'"):
        plugins.get_host()
    with pytest.raises(PluginError, match='drytorch_dependency_that_is_not'):
        Experiment(None, name='never')


def test_strict_plugins_pyproject_raises_plugin_error(
    use_dist, monkeypatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.chdir(make_project(tmp_path / 'proj', 'strict_plugins = true'))
    use_dist('broken')
    with pytest.raises(PluginError, match="'broken'"):
        plugins.get_host()


def test_entry_point_name_clash_is_reported(use_dist) -> None:
    use_dist('demo')
    use_dist('clash')  # also names its entry points 'demo' and a built-in's name
    with pytest.warns(PluginLoadWarning) as caught:
        host = plugins.get_host()
    messages = [str(w.message) for w in caught if w.category is PluginLoadWarning]
    assert len(messages) == 2
    demo_clash, builtin_clash = sorted(messages)
    assert "'demo'" in demo_clash
    assert 'drytorch-clash-plugin' in demo_clash
    assert 'drytorch-demo-plugin' in demo_clash
    assert "'drytorch.core.scope'" in builtin_clash
    assert 'built-in' in builtin_clash
    assert info_of(host, 'drytorch.core.scope').origin == 'built-in'
    assert info_of(host, 'demo').origin.startswith('drytorch-')


def test_entry_point_name_clash_strict(use_dist, monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_STRICT_PLUGINS', 'true')
    use_dist('clash')
    with pytest.raises(PluginError, match=r"'drytorch.core.scope'.*taken"):
        plugins.get_host()


# 3. The contract is checked when a plugin loads


def test_misspelt_hook_name_fails_loudly(use_dist) -> None:
    use_dist('misspelt')
    with pytest.raises(PluginError) as caught:
        plugins.get_host()
    assert "'misspelt'" in str(caught.value)
    assert 'on_run_strat' in str(caught.value)
    assert 'DRYTORCH_DISABLE_PLUGINS=misspelt' in str(caught.value)


def test_misspelt_hook_refused_at_registration(host: plugins.PluginHost) -> None:
    class Typo:
        @drytorch.hookimpl
        def on_model_registr(self, event: object) -> None:
            pass

    with pytest.raises(PluginError, match=r"'typo'.*'on_model_registr'"):
        host.register(Typo(), 'typo')
    assert not host.has_plugin('typo')
    assert 'typo' not in [info.name for info in host.plugins()]


def test_hookimpl_with_unknown_argument_is_refused(use_dist) -> None:
    use_dist('badarg')
    with pytest.raises(PluginError) as caught:
        plugins.get_host()
    assert "'badarg'" in str(caught.value)
    assert 'verbosity' in str(caught.value)


def test_tracking_hook_wrapper_is_refused(host: plugins.PluginHost) -> None:
    class Wrapper:
        @drytorch.hookimpl(wrapper=True)
        def on_run_start(self, event: object) -> Any:
            return (yield)

    with pytest.raises(PluginError, match=r"'wrapping'.*on_run_start"):
        host.register(Wrapper(), 'wrapping')
    assert not host.has_plugin('wrapping')


def test_plugin_name_must_be_unique(host: plugins.PluginHost) -> None:
    with pytest.raises(PluginError, match=r'drytorch\.validators\.names'):
        host.register(object(), 'drytorch.validators.names')


# 4. Switches that keep plugins from loading


def test_disable_plugins_env(use_dist, monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_DISABLE_PLUGINS', 'demo, drytorch.validators.modules')
    use_dist('demo')
    host = plugins.get_host()
    assert not host.has_plugin('demo')
    assert not host.has_plugin('drytorch.validators.modules')
    assert host.has_plugin('drytorch.validators.names')
    assert not host.implementers('validate_model')
    assert DEMO_MODULE not in sys.modules  # never even imported
    assert run_once('no-demo').status == 'completed'
    assert DEMO_MODULE not in sys.modules


def test_disable_plugins_pyproject(use_dist, monkeypatch, tmp_path) -> None:
    project = make_project(
        tmp_path / 'proj', 'disable_plugins = ["demo", "drytorch.validators.names"]'
    )
    monkeypatch.chdir(project)
    use_dist('demo')
    host = plugins.get_host()
    assert not host.has_plugin('demo')
    assert not host.has_plugin('drytorch.validators.names')
    assert host.has_plugin('drytorch.validators.modules')
    Experiment(None, name='a..b')  # the name validator is gone
    assert DEMO_MODULE not in sys.modules


def test_disabled_broken_plugin_is_not_imported(use_dist, monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_DISABLE_PLUGINS', 'broken')
    monkeypatch.setenv('DRYTORCH_STRICT_PLUGINS', '1')
    use_dist('broken')
    host = plugins.get_host()  # strict: importing it would raise
    assert not host.has_plugin('broken')


def test_name_validator_refuses_by_default() -> None:
    with pytest.raises(exceptions.InvalidNameError):
        Experiment(None, name='a..b')


# 5. Faults of global plugins and validators


class FaultyPlugin:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @drytorch.hookimpl
    def on_run_start(self, event: object) -> None:
        self.calls.append('on_run_start')
        raise RuntimeError('plugin broke')

    @drytorch.hookimpl
    def on_run_stop(self, event: object) -> None:
        self.calls.append('on_run_stop')


def test_global_plugin_tracking_fault_is_isolated(host: plugins.PluginHost) -> None:
    recorder = HookRecorder()
    faulty = FaultyPlugin()
    host.register(recorder, 'recorder-before')
    host.register(faulty, 'faulty-global')
    later = HookRecorder()
    host.register(later, 'recorder-after')
    with pytest.warns(TrackerFailureWarning) as caught:
        record = run_once('global-fault')
    failures = [w for w in caught if w.category is TrackerFailureWarning]
    assert len(failures) == 1
    assert "'faulty-global'" in str(failures[0].message)
    assert 'on_run_start' in str(failures[0].message)
    assert not host.has_plugin('faulty-global')
    assert faulty.calls == ['on_run_start']
    assert recorder.names() == later.names() == ['on_run_start', 'on_run_stop']
    assert record.status == 'completed'


class ValidatorError(Exception):
    pass


class RefuseConfig:
    @drytorch.hookimpl
    def validate_config(self, config: object) -> None:
        raise ValidatorError('config refused by plugin')


class RefuseName:
    @drytorch.hookimpl
    def validate_name(self, name: str, kind: str) -> None:
        if name == 'forbidden':
            raise ValidatorError(f'{kind} name refused by plugin')


class RefuseModel:
    @drytorch.hookimpl
    def validate_model(self, model: object, run: object) -> None:
        raise ValidatorError('model refused by plugin')


def test_config_validator_stops_experiment(host: plugins.PluginHost) -> None:
    host.register(RefuseConfig(), 'refuse-config')
    with pytest.raises(ValidatorError, match='config refused by plugin'):
        Experiment(None, name='refused')


def test_name_validator_stops_run_creation(host: plugins.PluginHost) -> None:
    host.register(RefuseName(), 'refuse-name')
    exp = Experiment(None, name='allowed')
    with pytest.raises(ValidatorError, match='run name refused'):
        exp.create_run(run_id='forbidden')
    assert exp.list_runs() == []


def test_model_validator_stops_model(host: plugins.PluginHost) -> None:
    import torch

    from drytorch import Model

    recorder = HookRecorder()
    host.register(recorder, 'recorder')
    host.register(RefuseModel(), 'refuse-model')
    exp = Experiment(None, name='model-refused')
    refused = pytest.raises(ValidatorError, match='model refused by plugin')
    with exp.create_run(), refused:
        Model(torch.nn.Linear(2, 2), device='cpu')
    assert recorder.names() == ['on_run_start', 'on_run_stop']
    assert host.has_plugin('refuse-model')


# 8. ``import drytorch`` stays cheap


def test_import_drytorch_loads_neither_torch_nor_plugins(tmp_path) -> None:
    code = (
        'import sys\n'
        'import drytorch\n'
        'loaded = set(sys.modules)\n'
        'from drytorch import Experiment\n'
        'from drytorch.core import plugins\n'
        'print(sorted(loaded & {"torch", "drytorch.core.plugins", '
        f'{DEMO_MODULE!r}, *{list(plugins.BUILTIN_PLUGINS)!r}}}))\n'
        'print("torch" in sys.modules, plugins._host is None, '
        f'{DEMO_MODULE!r} in sys.modules)\n'
    )
    result = run_python(['-c', code], tmp_path / 'work', 'demo')
    assert result.returncode == 0, result.stderr
    after_import, after_experiment = result.stdout.splitlines()
    assert ast.literal_eval(after_import) == []
    assert after_experiment == 'False True False'


# 9. Every hook of the contract is documented


def contract_hooks() -> list[str]:
    return [
        name
        for module in SPEC_MODULES
        for name, value in vars(module).items()
        if callable(value) and hasattr(value, 'drytorch_spec')
    ]


def test_contract_hooks_are_found() -> None:
    hooks = contract_hooks()
    for required in ('on_run_start', 'on_run_stop', 'on_model_register'):
        assert required in hooks
    assert 'get_config' in hooks
    assert sorted(hooks) == sorted(plugins.PluginHost().hook_names())


def test_every_hook_is_documented() -> None:
    doc = ROOT / 'docs' / 'hooks.md'
    assert doc.is_file(), f'{doc} is missing: document every hook there.'
    text = doc.read_text(encoding='utf-8')
    missing = [name for name in contract_hooks() if f'`{name}`' not in text]
    assert not missing, f'hooks missing from docs/hooks.md: {missing}'


def test_every_hook_has_its_typed_host_method() -> None:
    documented_tracking = {
        name
        for module in SPEC_MODULES
        for name in contract_hooks()
        if (spec := getattr(module, name, None)) is not None
        and (spec.__doc__ or '').startswith('Tracking:')
    }
    assert documented_tracking == plugins.TRACKING_HOOKS
    recorder_hooks = {
        name
        for name, value in vars(drytorch.testing.HookRecorder).items()
        if hasattr(value, 'drytorch_impl')
    }
    assert recorder_hooks == plugins.TRACKING_HOOKS
    missing = [
        name
        for name in contract_hooks()
        if not callable(getattr(plugins.PluginHost, name, None))
    ]
    assert not missing, f'PluginHost has no method for {missing}'
    # nothing outside core/plugins.py reaches into pluggy
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / 'src' / 'drytorch').rglob('*.py')
        if path.name != 'plugins.py'
        and any(
            word in path.read_text(encoding='utf-8')
            for word in ('get_hookimpls', '.argnames', 'import pluggy', '.hook.')
        )
        and 'hookspecs' not in path.parts
    ]
    assert not offenders, offenders
    # trackers and the CLI see runs through the contract only (RunView)
    reaching = [
        str(path.relative_to(ROOT))
        for folder in ('trackers', 'cli')
        for path in (ROOT / 'src' / 'drytorch' / folder).rglob('*.py')
        if 'active_run' in path.read_text(encoding='utf-8')
    ]
    assert not reaching, reaching
