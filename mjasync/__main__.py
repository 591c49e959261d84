"""``python -m mjasync``: the same as the ``mjasync`` command."""

import sys

from .cli import main

sys.exit(main())
