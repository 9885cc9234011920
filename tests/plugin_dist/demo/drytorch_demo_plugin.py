"""The plugin module of the test distribution ``drytorch-demo-plugin`` 1.2.3."""

from drytorch import hookimpl

CALLS = []


@hookimpl
def on_run_start(event):
    CALLS.append(event)
    print(f'demo-plugin on_run_start {event.experiment_name} {event.run_id}')


def on_run_stop(event):
    # Not marked with drytorch.hookimpl: must not become a hook implementation.
    raise AssertionError('unmarked function called as a hook')
