"""W&B offline in temporary folders; a fresh DRYTorch registry and host per test.

The tests need the distribution installed (its entry point is what makes
DRYTorch load the plugin): ``pip install ./contrib/drytorch-contrib-wandb``.
They never reach the network and never write to the real home folder: W&B
runs offline, silent, with every folder of its own in a temporary one.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from drytorch import testing

DISTRIBUTION = 'drytorch-contrib-wandb'

WANDB_FOLDERS = ('WANDB_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_DATA_DIR')


def pytest_configure(config: pytest.Config) -> None:
    testing.require_distribution(DISTRIBUTION)


def wandb_environment(folder: pathlib.Path) -> dict[str, str]:
    """W&B offline and silent, its folders under ``folder``, no API key."""
    env = {name: str(folder / name.lower()) for name in WANDB_FOLDERS}
    env.update(
        WANDB_MODE='offline',
        WANDB_SILENT='true',
        WANDB_DISABLE_GIT='true',
        WANDB_DISABLE_CODE='true',
        WANDB_ARTIFACT_DIR=str(folder / 'artifacts'),
    )
    return env


@pytest.fixture(scope='session', autouse=True)
def offline_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Offline W&B for the whole session; its service is stopped at the end."""
    folder = tmp_path_factory.mktemp('wandb-home')
    with pytest.MonkeyPatch.context() as patch:
        for name, value in wandb_environment(folder).items():
            patch.setenv(name, value)
        patch.delenv('WANDB_API_KEY', raising=False)
        patch.delenv('WANDB_BASE_URL', raising=False)
        yield
        if 'wandb' in sys.modules:  # stop the background service it started
            sys.modules['wandb'].teardown()


@pytest.fixture(autouse=True)
def host(tmp_path: pathlib.Path) -> Iterator[Any]:
    """A fresh plugin host, registry ``tmp_path/registry``, cwd ``tmp_path/work``.

    No default trackers (init mode ``none``): each test subscribes what it needs.
    """
    with testing.isolated(tmp_path, init_mode='none') as fresh:
        yield fresh
