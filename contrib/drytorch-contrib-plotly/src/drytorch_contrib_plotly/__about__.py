"""The version of drytorch-contrib-plotly, read by the build backend."""

__version__ = '0.1.0'
