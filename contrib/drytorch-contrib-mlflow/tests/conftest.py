"""Each test: its own registry, working directory and plugin host; one MLflow store.

The tests need the distribution installed (its entry point is what makes
DRYTorch load the plugin): ``pip install ./contrib/drytorch-contrib-mlflow``.

They log to a real MLflow tracking store, a SQLite file shared by the whole
session (creating its tables takes seconds) and named by
``MLFLOW_TRACKING_URI``; each test uses its own MLflow experiment. Mark a test
``@pytest.mark.drytorch_settings(trackers='MLflow')`` to pass DRYTorch
settings to ``drytorch.testing.isolated`` (the default: init mode ``none``).
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from drytorch import testing

DISTRIBUTION = 'drytorch-contrib-mlflow'


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'drytorch_settings(**settings): DRYTorch settings of the test'
    )
    testing.require_distribution(DISTRIBUTION)


@pytest.fixture(scope='session')
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The MLflow store of the session: ``sqlite:////<tmp>/mlflow.db``."""
    return f'sqlite:///{tmp_path_factory.mktemp("mlflow") / "mlflow.db"}'


@pytest.fixture
def exp_name(request: pytest.FixtureRequest) -> str:
    """An experiment name of this test alone (MLflow experiments are shared)."""
    return re.sub(r'[^A-Za-z0-9_-]', '_', request.node.name)[:80]


@pytest.fixture(autouse=True)
def host(
    request: pytest.FixtureRequest,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    tracking_uri: str,
) -> Iterator[Any]:
    """A fresh plugin host, registry ``tmp_path/registry``, cwd ``tmp_path/work``."""
    settings = {'init_mode': 'none'}
    marker = request.node.get_closest_marker('drytorch_settings')
    if marker is not None:
        settings.update(marker.kwargs)
    monkeypatch.setenv('MLFLOW_TRACKING_URI', tracking_uri)
    with testing.isolated(tmp_path, **settings) as fresh:
        yield fresh
