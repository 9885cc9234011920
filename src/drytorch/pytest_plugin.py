"""Pytest fixtures for plugin and tracker authors, loaded through ``pytest11``.

Installing DRYTorch makes these fixtures available in any test suite:

* ``drytorch_isolated``: a fresh registry (in ``tmp_path``), working directory
  and plugin host for the test; yields the host.
* ``drytorch_recorder``: a ``drytorch.testing.HookRecorder`` registered on that
  host, recording every tracking event of the test.

None is autouse: a suite that does not ask for them is not affected.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from drytorch import testing
from drytorch.core import plugins


@pytest.fixture
def drytorch_isolated(tmp_path: pathlib.Path) -> Iterator[plugins.PluginHost]:
    """Isolate the test from the user's registry, settings and plugins."""
    with testing.isolated(tmp_path / 'drytorch') as host:
        yield host


@pytest.fixture
def drytorch_recorder(
    drytorch_isolated: plugins.PluginHost,
) -> testing.HookRecorder:
    """Record every tracking event of the test, in order."""
    recorder = testing.HookRecorder()
    drytorch_isolated.register(recorder, 'drytorch-recorder', origin='pytest fixture')
    return recorder
