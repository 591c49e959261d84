"""Resumable bulk runs: many prompts, each imagined, upscaled and downloaded, journaled.

```python
from mjasync.bulk import run_bulk

async with mjasync.Client() as mj:
    report = await run_bulk(mj, "prompts.jsonl", "out/", actions="U1,U2", concurrency=4)
print(report.done, report.failed, report.unknown)
```

Every job is checked before anything is sent (`check_jobs`: image files, button names):
one bad line refuses the whole file with an `InputError` whose ``problems`` name
each bad line.

Run the same call again after a crash (even ``kill -9``) and it resumes from the SQLite
journal (``out/mjasync-journal.sqlite3`` by default): finished jobs are skipped, tasks
in flight are waited on again, and no submit is sent twice unless the journal proves
the first never reached the server.
"""

from ._events import BulkEvent, BulkReport, EventKind
from ._input import GRID_BUTTONS, InputError, Job, check_jobs, load_jobs, parse_actions, parse_jobs
from ._journal import Journal, JournalError
from ._reach import UnreachableError
from ._runner import BulkRunner, run_bulk

__all__ = [
    "GRID_BUTTONS",
    "BulkEvent",
    "BulkReport",
    "BulkRunner",
    "EventKind",
    "InputError",
    "Job",
    "Journal",
    "JournalError",
    "UnreachableError",
    "check_jobs",
    "load_jobs",
    "parse_actions",
    "parse_jobs",
    "run_bulk",
]
