"""``python -m drytorch``: the ``drytorch`` command."""

import sys

from drytorch.cli import main

sys.exit(main())
