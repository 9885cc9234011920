"""The events that tracking hooks receive (public home of ``core.log_events``)."""

from drytorch.core.log_events import *  # noqa: F403
from drytorch.core.log_events import __all__  # noqa: F401
