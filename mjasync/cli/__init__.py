"""The ``mjasync`` command line: demo, simulator, imagine, action, task, seed, download, batch.

Exit codes (also in ``mjasync --help``): 0 ok; 1 some jobs (or the task) failed or
have an unknown outcome; 2 usage or configuration error; 3 API, authentication or
connection error; 130 interrupted.

Built on the public API alone (`mjasync`, `mjasync.bulk`, `mjasync.simulator`), like a
user's script. The parts: `main` (``_main``), the parser (``_parser``), the commands
(``_commands``), what it shows (``_display``) and how it reports failures (``_errors``).
"""

from ._common import EXIT_API, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._main import main
from ._parser import DEMO_DIALECTS, build_parser

__all__ = [
    "DEMO_DIALECTS",
    "EXIT_API",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]
