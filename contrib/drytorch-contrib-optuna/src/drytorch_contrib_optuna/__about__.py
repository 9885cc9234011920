"""The version of drytorch-contrib-optuna, read by the build backend."""

__version__ = '0.1.0'
