"""The fixtures DRYTorch ships for plugin authors, used as they would use them."""

from __future__ import annotations

import os
import pathlib

from drytorch import Experiment, testing
from drytorch.core import plugins


def test_recorder_fixture_sees_a_run(drytorch_recorder: testing.HookRecorder) -> None:
    with Experiment(None, name='probe').create_run():
        pass
    assert drytorch_recorder.names()[:1] == ['on_run_start']
    assert drytorch_recorder.names()[-1] == 'on_run_stop'
    (start,) = drytorch_recorder.events('on_run_start')
    assert start.experiment_name == 'probe'


def test_isolated_fixture_uses_a_temporary_registry(
    drytorch_isolated: plugins.PluginHost, tmp_path: pathlib.Path
) -> None:
    assert os.environ['DRYTORCH_REGISTRY_DIR'].startswith(str(tmp_path))
    assert pathlib.Path.cwd().is_relative_to(tmp_path)
    assert plugins.get_host() is drytorch_isolated


def test_recorder_implements_every_tracking_hook() -> None:
    missing = [
        h for h in plugins.TRACKING_HOOKS if not hasattr(testing.HookRecorder, h)
    ]
    assert missing == []
