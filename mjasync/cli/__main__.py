"""``python -m mjasync.cli``: the same as ``python -m mjasync`` and the ``mjasync`` command."""

import sys

from . import main

sys.exit(main())
