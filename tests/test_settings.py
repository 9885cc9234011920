"""Settings: ``[tool.drytorch]`` of the nearest pyproject.toml and DRYTORCH_* vars."""

from __future__ import annotations

import pathlib
import warnings

import pytest

from drytorch import Experiment
from drytorch.core import plugins, settings, tracking
from drytorch.core.exceptions import SettingsError, UnknownSettingWarning
from drytorch.trackers import logging as builtin_logging


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``outer/proj/pyproject.toml``; work in ``outer/proj/a/b``.

    ``outer/pyproject.toml`` exists too, so only the nearest file may count.
    The test's registry variable is removed, so the file's ``registry_dir``
    applies unless a test sets the variable again.
    """

    def write(text: str) -> pathlib.Path:
        outer = tmp_path / 'outer'
        proj = outer / 'proj'
        cwd = proj / 'a' / 'b'
        cwd.mkdir(parents=True)
        (outer / 'pyproject.toml').write_text(
            '[tool.drytorch]\ninit_mode = "minimal"\nregistry_dir = "far"\n'
        )
        (proj / 'pyproject.toml').write_text(text)
        monkeypatch.delenv('DRYTORCH_REGISTRY_DIR')
        monkeypatch.chdir(cwd)
        plugins.reset_host()
        tracking.reset_default_trackers()
        return proj

    return write


FULL = """
[project]
name = "someone-elses-project"

[tool.drytorch]
init_mode = "none"
registry_dir = "reg"
par_dir = "out"
disable_plugins = ["drytorch.validators.names"]
"""


def test_nearest_pyproject_settings(project) -> None:
    proj = project(FULL)
    config = settings.get_settings()
    assert config.source == proj / 'pyproject.toml'
    assert config.init_mode == 'none'
    assert config.registry_dir == proj / 'reg'
    assert config.par_dir == proj / 'out'
    assert config.disable_plugins == frozenset({'drytorch.validators.names'})
    assert config.strict_plugins is False


def test_pyproject_settings_take_effect(project) -> None:
    proj = project(FULL)
    exp = Experiment(None, name='a..b')  # the name validator is disabled
    assert len(exp.trackers) == 0  # init_mode = "none"
    assert exp.par_dir == (proj / 'out').resolve()
    assert exp.registry.root == proj / 'reg'
    with exp.create_run() as run:
        pass
    assert run.record_path.is_relative_to(proj / 'reg')
    assert run.record_path.is_file()
    assert not plugins.get_host().has_plugin('drytorch.validators.names')


def test_defaults_without_pyproject(tmp_path: pathlib.Path) -> None:
    config = settings.get_settings()
    assert config.source is None
    assert config.init_mode == 'standard'
    assert config.registry_dir == tmp_path / 'registry'  # from the test's env var
    assert config.par_dir == pathlib.Path('.')
    assert Experiment(None, name='here').par_dir == (tmp_path / 'work').resolve()


def test_env_overrides_pyproject(project, monkeypatch, tmp_path) -> None:
    project(FULL)
    monkeypatch.setenv('DRYTORCH_INIT_MODE', 'minimal')
    monkeypatch.setenv('DRYTORCH_REGISTRY_DIR', str(tmp_path / 'env-registry'))
    config = settings.get_settings()
    assert config.init_mode == 'minimal'
    assert config.registry_dir == tmp_path / 'env-registry'
    tracking.reset_default_trackers()
    exp = Experiment(None, name='env')
    assert exp.trackers.names == ['BuiltinLogger', 'TqdmLogger']
    assert exp.trackers.get('BuiltinLogger').level == builtin_logging.QUIET
    assert exp.registry.root == tmp_path / 'env-registry'


def test_env_disable_plugins_overrides_pyproject(project, monkeypatch) -> None:
    project(FULL)
    monkeypatch.setenv('DRYTORCH_DISABLE_PLUGINS', 'drytorch.validators.config')
    plugins.reset_host()
    host = plugins.get_host()
    assert host.has_plugin('drytorch.validators.names')
    assert not host.has_plugin('drytorch.validators.config')


def test_unknown_key_warns(project) -> None:
    project('[tool.drytorch]\ninit_mode = "none"\ncolour = "blue"\n')
    with pytest.warns(UnknownSettingWarning, match="'colour'") as caught:
        config = settings.get_settings()
    assert len(caught) == 1
    assert config.init_mode == 'none'


def test_plugin_tables_are_allowed(project) -> None:
    project(
        '[tool.drytorch]\ninit_mode = "none"\n\n'
        '[tool.drytorch.myplugin]\nthreshold = 3\nlabel = "x"\n'
    )
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        config = settings.get_settings()
    assert config.plugin_table('myplugin') == {'threshold': 3, 'label': 'x'}
    assert config.plugin_table('other') == {}
    assert config.init_mode == 'none'


@pytest.mark.parametrize(
    ('line', 'key'),
    [
        ('init_mode = "loud"', 'init_mode'),
        ('disable_plugins = 3', 'disable_plugins'),
        ('disable_plugins = ["ok", 3]', 'disable_plugins'),
        ('strict_plugins = "maybe"', 'strict_plugins'),
        ('registry_dir = 7', 'registry_dir'),
        ('par_dir = ""', 'par_dir'),
    ],
)
def test_invalid_values_name_the_file(project, line: str, key: str) -> None:
    proj = project(f'[tool.drytorch]\n{line}\n')
    with pytest.raises(SettingsError) as caught:
        settings.get_settings()
    assert str(proj / 'pyproject.toml') in str(caught.value)
    assert key in str(caught.value)
    with pytest.raises(SettingsError):
        Experiment(None, name='never')


def test_invalid_env_value_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv('DRYTORCH_INIT_MODE', 'loud')
    with pytest.raises(SettingsError, match='DRYTORCH_INIT_MODE'):
        settings.get_settings()


@pytest.mark.parametrize(
    'text',
    [
        '[tool.drytorch\ninit_mode = "none"\n',
        '[tool.drytorch]\ninit_mode = \n',
        'tool = 3\n',
        '[tool]\ndrytorch = 3\n',
    ],
)
def test_malformed_pyproject(project, text: str) -> None:
    proj = project(text)
    with pytest.raises(SettingsError, match=r'pyproject\.toml') as caught:
        settings.get_settings()
    assert str(proj / 'pyproject.toml') in str(caught.value)


def test_table_named_like_a_setting_is_refused(project) -> None:
    proj = project('[tool.drytorch.init_mode]\nvalue = "none"\n')
    with pytest.raises(SettingsError, match='init_mode') as caught:
        settings.get_settings()
    assert str(proj / 'pyproject.toml') in str(caught.value)


def test_settings_follow_cwd_changes(project, monkeypatch, tmp_path) -> None:
    project('[tool.drytorch]\ninit_mode = "none"\n')
    assert settings.get_settings().init_mode == 'none'
    monkeypatch.chdir(tmp_path / 'work')
    assert settings.get_settings().source is None
    assert settings.get_settings().init_mode == 'standard'
