"""A plugin with a misspelt hook name."""

from drytorch import hookimpl


@hookimpl
def on_run_strat(event):
    pass
