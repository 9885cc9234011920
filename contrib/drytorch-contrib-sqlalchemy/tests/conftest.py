"""Every test gets its own registry, working directory and plugin host.

The tests need the distribution installed (its entry point is what makes
DRYTorch load the plugin): ``pip install ./contrib/drytorch-contrib-sqlalchemy``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from drytorch import testing

DISTRIBUTION = 'drytorch-contrib-sqlalchemy'


def pytest_configure(config: pytest.Config) -> None:
    testing.require_distribution(DISTRIBUTION)


@pytest.fixture(autouse=True)
def host(tmp_path: pathlib.Path) -> Iterator[Any]:
    """A fresh plugin host, registry ``tmp_path/registry``, cwd ``tmp_path/work``.

    No default trackers (init mode ``none``): each test subscribes what it needs.
    """
    with testing.isolated(tmp_path, init_mode='none') as fresh:
        yield fresh


@pytest.fixture
def recorder(host: Any) -> testing.HookRecorder:
    """A recorder of every tracking event, registered on the test's host."""
    recorder = testing.HookRecorder()
    host.register(recorder, 'recorder')
    return recorder
