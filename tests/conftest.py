"""Every test gets its own registry, working directory and plugin host."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from drytorch import testing
from drytorch.core import plugins
from tests import training_kit as kit
from tests.training_kit import Recorder

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def host(tmp_path: pathlib.Path) -> Iterator[plugins.PluginHost]:
    """A fresh plugin host, registry ``tmp_path/registry``, cwd ``tmp_path/work``."""
    with testing.isolated(tmp_path) as fresh:
        yield fresh


@pytest.fixture
def rec(host: plugins.PluginHost) -> Recorder:
    """A plugin recording every tracking hook call, registered for the test."""
    recorder = Recorder()
    host.register(recorder, 'rec')
    return recorder


@pytest.fixture
def run() -> Iterator[Any]:
    """An active run ``r`` of the training kit's experiment ``exp``."""
    with kit.experiment().create_run(run_id='r') as active:
        yield active


@pytest.fixture
def registry_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """The registry folder used by the current test."""
    return tmp_path / 'registry'


def run_python(
    code: str,
    cwd: pathlib.Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the test's DRYTorch environment."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run(
        [sys.executable, '-c', code],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def git(repo: pathlib.Path, *args: str, timeout: float = 120) -> str:
    """Run git in ``repo`` as a test user; return its output, stripped."""
    done = subprocess.run(
        ['git', '-c', 'user.name=Test', '-c', 'user.email=test@example.com', *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return done.stdout.strip()
