"""The version of drytorch-contrib-sqlalchemy, read by the build backend."""

__version__ = '0.1.0'
