"""DRYTorch's errors and warnings (public home of ``core.exceptions``)."""

from drytorch.core.exceptions import *  # noqa: F403
from drytorch.core.exceptions import __all__  # noqa: F401
