"""A plugin whose entry point names are taken: ``demo`` and a built-in's name."""

from drytorch import hookimpl


@hookimpl
def on_run_start(event):
    print('clash-plugin on_run_start')
