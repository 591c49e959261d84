"""An offline midjourney-proxy: an aiohttp server that speaks the proxy's HTTP API.

It serves the ``/mj/submit/*`` and ``/mj/task/*`` routes of four dialects ("plus",
"trueai", "newapi", "oss"), runs every task through a simulated queue and lifecycle
(NOT_START -> SUBMITTED -> IN_PROGRESS n% -> SUCCESS/FAILURE, plus MODAL), serves real
PNGs for the results, delivers notifyHook callbacks and plays seeded faults. It imports
nothing from the client side of mjasync.

In tests:

```python
from mjasync.simulator import Simulator, Faults

async with Simulator(dialect="plus", time_scale=0.01) as sim:
    # point a client at sim.base_url
    ...
    sim.inject("POST /mj/submit/imagine", "rate_limit", retry_after=0.01)
    assert sim.requests["GET /mj/task/{id}/fetch"] > 0
```

As a bare app (for ``aiohttp.test_utils.TestServer``): ``create_app(SimulatorConfig(...))``,
with the state reachable through ``get_state(app)``.

From a shell: ``python -m mjasync.simulator --port 8080 --dialect trueai``.

Each dialect follows its server's source (novicezk v2.6.3 for "oss", trueai 11.10.x,
QuantumNous/new-api in front of a PLUS-like upstream); the table in ``docs/dialects.md``
lists the rules. Behaviour worth knowing (where the servers are silent, the
simulator picks):

* Durations in the config are simulated seconds, multiplied by ``time_scale`` before
  sleeping; so is ``Faults.latency`` and ``inject(..., "latency", seconds=)`` (use
  ``real_seconds=`` for wall-clock time). ``Retry-After`` is sent verbatim, unscaled.
* Job timing: by default every job takes the same time and reports evenly spaced
  progress; ``duration_jitter``, ``step_jitter`` and ``progress_percents``
  (``MIDJOURNEY_PROGRESS``) give seeded, Midjourney-like timing instead (issue #11).
* A task that has to wait for a slot is answered with code 22 and ``numberOfQueues`` = its
  1-based place in the waiting queue (oss: the tasks ahead of it, so the first to wait
  gets code 1; new-api: code 1, same properties). Queue full: 23 (oss/plus/new-api), 9
  (trueai).
* ``/submit/modal``: trueai runs the MODAL task under the same id; PLUS (and so new-api's
  upstream) answers with a new id and closes the MODAL task as CANCEL (never pushed to
  notifyHook).
* new-api answers fetches from its own copy, refreshed every ``newapi_sync_interval``
  simulated seconds: ``status: ""`` until the first refresh.
* The ``/sim/*`` asset routes get no probabilistic faults unless ``Faults.routes`` names
  them; injected faults reach them.
* aiohttp's client retries an idempotent request once after a disconnect, so a single
  injected ``drop`` on a GET route may be invisible to it; inject ``times=2``.
"""

from __future__ import annotations

from ._app import create_app
from ._config import DIALECTS, MIDJOURNEY_PROGRESS, Dialect, Faults, SimulatorConfig
from ._context import STATE_KEY, SimulatorState, get_state
from ._server import Simulator, run_forever
from ._state import Button, Notification, RequestRecord, SimTask

__all__ = [
    "DIALECTS",
    "MIDJOURNEY_PROGRESS",
    "STATE_KEY",
    "Button",
    "Dialect",
    "Faults",
    "Notification",
    "RequestRecord",
    "SimTask",
    "Simulator",
    "SimulatorConfig",
    "SimulatorState",
    "create_app",
    "get_state",
    "run_forever",
    "serve",
]


def serve(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Command-line entry (``python -m mjasync.simulator``): serve until Ctrl-C; returns 0.

    *argv* are the command-line arguments (default ``sys.argv[1:]``); ``--help`` prints
    the help and raises ``SystemExit(0)``, as argparse does. *prog* names the command in
    that help and in usage errors (``mjasync simulator``).
    """
    # Imported here so that importing the package does not pull in argparse.
    from .__main__ import serve as _serve

    return _serve(argv, prog=prog)
