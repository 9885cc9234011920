"""A plugin whose hook asks for an argument the contract does not have."""

from drytorch import hookimpl


@hookimpl
def on_run_start(event, verbosity):
    pass
