"""Adapters and forwarders for third-party libraries, at the original DRYTorch's paths.

Each submodule imports its third-party library only when it is itself imported,
so ``import drytorch`` and ``import drytorch.contrib`` stay cheap. Where the
implementation lives in a ``drytorch-contrib-*`` package, the submodule forwards
to it and, when that package is missing, says which one to install.
"""
