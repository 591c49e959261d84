"""Fault soak: imagine -> U1..U4 -> download chains against a misbehaving simulator.

    python -m benchmarks.soak --jobs 300 --seed 1
    python -m benchmarks.soak --fast --seed 1          # the CI version (tests/test_soak.py)
    python -m benchmarks.soak --dialect trueai | --cancel-downloads 0.3 | --budget 5

The simulator runs in its own process (plus dialect, an API key, notifyHook on) with
seeded faults at the rates of the profile: 5xx, 429 with ``Retry-After``, dropped
connections, submits dropped or failed before and after the server created the task,
answers held past the client's timeout after the server did the work, malformed JSON,
failed and stuck tasks, notifyHook deliveries dropped, doubled and reordered, and image
downloads cut mid-body, truncated, or of the wrong type. This process runs one
`mjasync.Client` with its webhook receiver (an aiohttp app mounting
``mj.webhook_handler``), and N chains, ``--concurrency`` at a time::

    imagine(state=<unique>) -> await_task -> upscale_all(return_exceptions=True)
                                          -> download() of every upscale that succeeded

The caller cancels a few chains (a native task cancellation during the imagine's wait or
``upscale_all``; ``--cancel-downloads`` during a download too), and an attacker posts
forged notifications to the webhook all along. ``--budget`` cancels the whole run, so the
client is closed while its calls are being cancelled.

It runs under ``PYTHONASYNCIODEBUG=1`` and ``-W error::ResourceWarning`` (it restarts
itself with both when they are missing). It prints the faults the simulator played, per
kind; the outcome of every job (SUCCESS when the imagine, the four upscales and the four
downloads all succeeded, else the class of the first error) and of every step; and the
verdict. It exits 1 when any check below fails.

How each check is judged (the server's own record, ``GET /sim/tasks`` and
``GET /sim/requests``, against what each call returned or raised):

* **Non-mjasync exceptions**: any exception out of a client call that is not an
  `mjasync.MJError` (its traceback is printed), and any ERROR logged by mjasync.
* **Duplicates**: the server created two tasks for one logical submit: two imagine tasks
  with one ``state``, or two upscales of one grid with one index. Also counted apart:
  **resent after maybe-sent**, a submit request that arrived again after an earlier copy
  met a fault that may hide an accepted job (5xx, dropped connection, malformed answer,
  a latency spike): the SDK must never resend those, even when the server happened to
  create nothing. Resending after a 429 or a queue-full answer is allowed.
* **Lost**: every task the server created belongs to one chain step (the imagine by its
  ``state``, an upscale by its parent grid and index). It is lost when

  - the step's submit raised an error `mjasync.delivery_of` calls definite
    (``NOT_SENT`` or ``REJECTED``: queue full, rate limited, not found...), yet the
    server had created the task: the user was told "it did not happen" about a job
    they will pay for;
  - the step raised `TaskNotFoundError` naming a task the server has;
  - the step raised `TaskTimeoutError` for a task the server finished more than a
    margin (the longest the client may legitimately take to notice: the webhook safety
    poll, two failed polls each with its back-off and request timeout, plus 1 s) before
    the wait's deadline (a false timeout);
  - the server finished the task (SUCCESS or FAILURE) and the step reported nothing
    about it.

  A submit that raised a ``MAYBE_SENT`` error (a read timeout, a 5xx, a dropped
  connection, a malformed answer) told the user the truth: the job may exist. If the
  server did create it, it is counted as **maybe-sent, created**, not lost. A task the
  client reported with another status than the server's is **misreported** (fails too).
  A task of a step the caller cancelled is theirs to look up (**abandoned**), not lost.
* **Corrupt / partial files**: after the run, every file in the output directory must be
  ``<task id>.png``, a complete PNG (signature, every chunk's CRC, IDAT inflating to
  the size IHDR promises, IEND last) whose text chunk names that very task; a ``.part``
  or any other leftover is partial; every download that returned a path has its file
  there, and no failed download left one.
* **Leaks**: once every call has ended, the poller holds no waiter and polls no id;
  after ``aclose()``, no asyncio task but this one is left, no aiohttp session or
  connector is open (found with `gc`), and the loop's exception handler,
  ``sys.unraisablehook`` (where ``-W error::ResourceWarning`` sends an unclosed resource
  found by ``__del__``) and the asyncio logger reported nothing, also after the loop
  closed. A cancelled chain must end within 1 s of its cancellation, and no call may
  swallow the cancellation.
* **Key leaks**: the API key appears in no exception message or repr and no log record.
* **Forged notifications**: an attacker posts final statuses for real task ids to the
  webhook, without the token, with a wrong one, or 2 MB large; any answer but 401, 403
  or 413 fails the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import io
import json
import logging
import os
import random
import re
import resource
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import mjasync
from mjasync import simulator

_T = TypeVar("_T")

# -- profiles ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Profile:
    """The shape of one soak: load, server capacity, client timeouts and fault rates."""

    name: str
    jobs: int
    concurrency: int
    slots: int
    queue_size: int
    time_scale: float
    request_timeout: float
    wait_timeout: float
    budget: float
    faults: Mapping[str, float]
    dialect: str = "plus"
    # The share of chains whose caller cancels the imagine's wait or upscale_all, at a
    # uniform time in [0, cancel_within] of it; and the share whose caller cancels their
    # first download within its first 30 ms.
    cancel_rate: float = 0.05
    cancel_within: float = 2.0
    cancel_download_rate: float = 0.0
    poll_interval: float = 0.2
    poll_max_interval: float = 1.0
    # The safety-net poll once callbacks arrive (a lost final callback costs this much).
    webhook_interval: float = 1.0


# Rates a busy proxy behind a flaky network might show: a few percent of requests fail in
# some way, a few percent of jobs fail or hang, a few percent of callbacks go astray.
LONG = Profile(
    name="long",
    jobs=300,
    concurrency=24,
    # Stuck tasks keep their slot for good (no proxy-side timeout in the simulator), so
    # the slots outnumber the stuck tasks a run is expected to make.
    slots=24,
    queue_size=48,
    time_scale=0.02,
    request_timeout=1.0,
    wait_timeout=30.0,
    budget=900.0,
    faults={
        "server_error": 0.02,
        "rate_limit": 0.02,
        "retry_after": 0.2,
        "drop": 0.01,
        "malformed": 0.01,
        "submit_fault_before": 0.02,
        "submit_fault_after": 0.02,
        "latency_spike": 0.01,
        "spike_seconds": 2.0,
        "task_failure": 0.03,
        "stuck": 0.005,
        "notify_drop": 0.05,
        "notify_duplicate": 0.05,
        "notify_reorder": 0.05,
        "image_cut": 0.03,
        "image_truncated": 0.02,
        "image_wrong_type": 0.02,
    },
)

# Fewer jobs at higher rates, so that every kind plays about ten times in ~10 s.
FAST = Profile(
    name="fast",
    jobs=60,
    concurrency=30,
    slots=24,
    queue_size=48,
    time_scale=0.01,
    request_timeout=0.5,
    wait_timeout=6.0,
    budget=45.0,  # below the test's 55 s subprocess timeout
    poll_max_interval=0.5,
    webhook_interval=0.5,
    cancel_rate=0.1,
    cancel_within=1.0,
    faults={
        "server_error": 0.04,
        "rate_limit": 0.04,
        "retry_after": 0.1,
        "drop": 0.03,
        "malformed": 0.03,
        "submit_fault_before": 0.05,
        "submit_fault_after": 0.05,
        "latency_spike": 0.04,
        "spike_seconds": 1.0,
        "task_failure": 0.07,
        "stuck": 0.05,
        "notify_drop": 0.1,
        "notify_duplicate": 0.1,
        "notify_reorder": 0.1,
        "image_cut": 0.1,
        "image_truncated": 0.09,
        "image_wrong_type": 0.1,
    },
)

# Seconds between two forged notifications of the attacker.
ATTACK_INTERVAL = 0.05
# How each dialect's server reads the key (see mjasync.simulator's auth rules).
AUTH: dict[str, mjasync.AuthStyle] = {
    "plus": "mj-api-secret",
    "oss": "mj-api-secret",
    "trueai": "authorization",
    "newapi": "bearer",
}
# Faults after which a submit may have been accepted: resending it could pay twice.
MAYBE_SENT_FAULTS = frozenset(
    {"server_error", "drop", "submit_fault_before", "submit_fault_after", "malformed"}
    | {"latency_spike"}
)
FAULT_KINDS = (
    "server_error",
    "rate_limit",
    "drop",
    "malformed",
    "submit_fault_before",
    "submit_fault_after",
    "latency_spike",
    "task_failure",
    "stuck",
    "notify_drop",
    "notify_duplicate",
    "notify_reorder",
    "image_cut",
    "image_truncated",
    "image_wrong_type",
)
# A cancelled chain must end within this many seconds of its cancellation.
CANCEL_LAG = 1.0
PENDING = "PENDING"
CANCELLED = "CANCELLED"
_STEP_ORDER = ("imagine", "U1", "U2", "U3", "U4", "get U1", "get U2", "get U3", "get U4")
_FILE_NAME = re.compile(r"^(?P<id>\d+)\.png$")

# -- the simulator process -----------------------------------------------------------------


def serve(config_json: str) -> None:
    """Subprocess entry: run a simulator with this config until killed."""
    options = json.loads(config_json)
    options["faults"] = simulator.Faults(**options["faults"])
    config = simulator.SimulatorConfig(**options)
    asyncio.run(simulator.run_forever(config, "127.0.0.1", 0))


class Server:
    """The simulator in a child process (its CPU and its bugs are not the client's)."""

    def __init__(self, profile: Profile, seed: int, api_key: str) -> None:
        config = {
            "dialect": profile.dialect,
            "api_key": api_key,
            # new-api forwards notifyHook only when its operator allows it.
            "newapi_notify": True,
            "seed": seed,
            "slots": profile.slots,
            "queue_size": profile.queue_size,
            "time_scale": profile.time_scale,
            # Jobs of uneven length with Midjourney's uneven progress steps (#11), so
            # that chains finish out of step, as real ones do.
            "duration_jitter": 0.5,
            "step_jitter": 0.3,
            "progress_percents": list(simulator.MIDJOURNEY_PROGRESS),
            "image_size": 32,
            "faults": dict(profile.faults),
        }
        env = dict(os.environ)
        # The client is under test here, not the simulator: let it run at full speed.
        env.pop("PYTHONASYNCIODEBUG", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak", "--serve", json.dumps(config)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.close()
            msg = f"the simulator did not start: {line!r}"
            raise RuntimeError(msg)
        self.base_url = match.group(1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- records -------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """What one client call of a chain returned or raised."""

    name: str  # "imagine", "U1".."U4", "get U1".."get U4"
    # SUCCESS, the exception's class name, SKIPPED (nothing to download), PENDING (the
    # call is running) or CANCELLED (the caller cancelled the chain during the call).
    outcome: str = PENDING
    task_id: str | None = None
    status: str | None = None  # the final status the client reported
    error: BaseException | None = None
    # The error came from the submit (before any task id was known to the client).
    at_submit: bool = False
    deadline: float | None = None  # epoch seconds the wait was allowed to run to
    path: Path | None = None


@dataclasses.dataclass
class Chain:
    index: int
    state: str
    steps: dict[str, Step] = dataclasses.field(default_factory=dict)
    grid_id: str | None = None
    # The caller's cancellation: in which call ("imagine": its wait, "upscale":
    # upscale_all, "download": the first download), after how many seconds of it, and
    # how late the chain ended.
    cancel_phase: str | None = None
    cancel_after: float | None = None
    cancelled: bool = False
    cancel_lag: float = 0.0
    ignored_cancel: bool = False

    @property
    def outcome(self) -> str:
        if self.cancelled:
            return "cancelled by the caller"
        for name in _STEP_ORDER:
            step = self.steps.get(name)
            if step is not None and step.outcome != "SUCCESS":
                return step.outcome
        return "SUCCESS" if len(self.steps) == len(_STEP_ORDER) else "INCOMPLETE"


def _task_of(error: BaseException) -> tuple[str | None, str | None]:
    """The task id an error names, and the final status it reports (None if none)."""
    if isinstance(error, mjasync.TaskError):
        return error.task.id, error.task.status
    if isinstance(error, mjasync.TaskTimeoutError | mjasync.TaskNotFoundError):
        return error.task_id or None, None
    return None, None


def _failed(step: Step, error: BaseException, *, at_submit: bool) -> Step:
    step.error = error
    step.outcome = type(error).__name__
    step.at_submit = at_submit
    task_id, status = _task_of(error)
    if not at_submit:
        step.task_id = step.task_id or task_id
        step.status = status
    return step


# -- one chain -----------------------------------------------------------------------------


async def run_chain(mj: mjasync.Client, chain: Chain, profile: Profile, out: Path) -> None:
    """imagine -> await -> upscale_all -> download each upscale; every outcome recorded."""
    imagine = chain.steps["imagine"] = Step("imagine")
    prompt = f"soak {chain.index}: a lighthouse in the fog, watercolor --ar 3:2"
    try:
        submission = await mj.imagine(prompt, state=chain.state)
    except Exception as error:
        _failed(imagine, error, at_submit=True)
        return
    imagine.task_id = submission.task_id
    imagine.deadline = time.time() + profile.wait_timeout
    try:
        grid = await _phase(
            chain, "imagine", mj.await_task(submission, timeout=profile.wait_timeout)
        )
    except Exception as error:
        _failed(imagine, error, at_submit=False)
        return
    imagine.outcome, imagine.status = "SUCCESS", grid.status
    chain.grid_id = grid.id

    deadline = time.time() + profile.wait_timeout
    for n in range(1, 5):
        chain.steps[f"U{n}"] = Step(f"U{n}", deadline=deadline)
    try:
        results = await _phase(
            chain,
            "upscale",
            mj.upscale_all(grid, timeout=profile.wait_timeout, return_exceptions=True),
        )
    except Exception as error:
        # Raised before any U was pressed (no U buttons): every U gets the error.
        for n in range(1, 5):
            _failed(chain.steps[f"U{n}"], error, at_submit=True)
        return
    upscales: list[tuple[int, mjasync.Task]] = []
    for n, result in enumerate(results, 1):
        step = chain.steps[f"U{n}"]
        if isinstance(result, mjasync.Task):
            step.outcome, step.task_id, step.status = "SUCCESS", result.id, result.status
            upscales.append((n, result))
        else:
            task_id, _ = _task_of(result)
            # Wait errors name their task; submit errors (transport, API) name none,
            # except a TaskNotFoundError for the parent, which names the grid.
            waiting = isinstance(result, mjasync.TaskError | mjasync.TaskTimeoutError) or (
                isinstance(result, mjasync.TaskNotFoundError) and task_id != grid.id
            )
            _failed(step, result, at_submit=not waiting)

    for n in range(1, 5):
        # A U that did not succeed has nothing to download: its failure is the job's.
        chain.steps[f"get U{n}"] = Step(f"get U{n}", outcome="SKIPPED")
    for n, upscale in upscales:
        step = chain.steps[f"get U{n}"] = Step(f"get U{n}", task_id=upscale.id)
        try:
            step.path = await _phase(chain, "download", mj.download(upscale, out))
        except Exception as error:
            _failed(step, error, at_submit=False)
        else:
            step.outcome = "SUCCESS"


class CallerCancelled(BaseException):
    """The harness cancelled a chain the way a caller would (not an error of the client)."""


async def _phase(chain: Chain, phase: str, call: Awaitable[_T]) -> _T:
    """Await *call*; if the chain's caller cancels during *phase*, cancel it after
    ``chain.cancel_after`` seconds (a native task cancellation, as ``asyncio.timeout``,
    ``wait_for`` and web frameworks deliver) and end the chain with `CallerCancelled`."""
    if chain.cancel_phase != phase or chain.cancel_after is None:
        return await call
    chain.cancel_phase = None  # once per chain
    started = time.monotonic()
    scope = asyncio.timeout(chain.cancel_after)
    try:
        async with scope:
            return await call
    except TimeoutError as error:
        if type(error) is TimeoutError and scope.expired():
            chain.cancelled = True
            chain.cancel_lag = time.monotonic() - started - chain.cancel_after
            raise CallerCancelled from None
        raise
    finally:
        # Expired, yet the call returned or raised something else: it swallowed (or
        # converted) the cancellation.
        if scope.expired() and not chain.cancelled:
            chain.ignored_cancel = True


async def one_chain(mj: mjasync.Client, chain: Chain, profile: Profile, out: Path) -> Chain:
    """`run_chain`, ended early if its caller cancels it."""
    try:
        await run_chain(mj, chain, profile, out)
    except CallerCancelled:
        for step in chain.steps.values():
            if step.outcome == PENDING:
                step.outcome = CANCELLED
    return chain


# -- capturing what goes wrong behind our back ---------------------------------------------


class Capture(logging.Handler):
    """Collects log records (nothing is printed), the loop's exception-handler calls and
    unraisable exceptions (``-W error::ResourceWarning`` turns an unclosed resource found
    in ``__del__`` into one)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[str] = []
        self.unraisable: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        detail = f": {exception!r}" if exception is not None else ""
        self.loop_errors.append(f"{context.get('message', '?')}{detail}")

    def unraisable_hook(self, info: Any) -> None:
        self.unraisable.append(f"{info.exc_type.__name__}: {info.exc_value} ({info.object!r})")

    def problems(self) -> list[str]:
        """ERRORs of mjasync and asyncio, and asyncio warnings other than slow callbacks."""
        found = []
        for record in self.records:
            name = record.name.split(".")[0]
            if name == "mjasync" and record.levelno >= logging.ERROR:
                found.append(f"mjasync log {record.levelname}: {record.getMessage()}")
            elif name == "asyncio" and record.levelno >= logging.WARNING:
                message = record.getMessage()
                if not message.startswith("Executing "):  # debug mode's slow-callback note
                    found.append(f"asyncio log {record.levelname}: {message}")
        return found

    def slow_callbacks(self) -> list[str]:
        """Debug mode's notes on callbacks that held the loop over 100 ms."""
        return [r.getMessage() for r in self.records if r.getMessage().startswith("Executing ")]


# -- the run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    chains: list[Chain]
    harness_errors: list[str]
    tasks: list[dict[str, Any]]
    submits: list[dict[str, Any]]
    fault_counts: dict[str, int]
    routes: dict[str, int]  # requests the simulator received, per route

    @property
    def requests(self) -> int:
        return sum(self.routes.values())

    client_requests: int
    hooks: collections.Counter[int]
    attacks: collections.Counter[str]
    wall: float
    leaks: list[str]


async def attack(
    url: str, chains: list[Chain], stop: asyncio.Event, answers: collections.Counter[str], seed: int
) -> None:
    """Post forged notifications to the webhook until *stop*: final statuses for real task
    ids, without the token, with a wrong one, or 2 MB large. None may change anything."""
    import aiohttp

    rng = random.Random(f"{seed}:attack")
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            await asyncio.sleep(ATTACK_INTERVAL)
            known = [c.steps["imagine"].task_id for c in chains if "imagine" in c.steps]
            task_ids = [task_id for task_id in known if task_id]
            if not task_ids:
                continue
            forged = {
                "id": rng.choice(task_ids),
                "status": rng.choice(("SUCCESS", "FAILURE", "CANCEL")),
                "progress": "100%",
                "failReason": "forged",
                "imageUrl": "http://127.0.0.1:9/forged.png",
            }
            roll = rng.random()
            body: bytes | io.BytesIO = json.dumps(forged).encode()
            if roll < 0.1:
                body = io.BytesIO(b" " * (2 << 20))  # aiohttp wants big bodies as files
            target = url if roll > 0.55 else f"{url}?token={secrets.token_urlsafe(32)}"
            try:
                async with http.post(
                    target, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    answers[str(response.status)] += 1
            except aiohttp.ClientError as error:
                # A refusal sent before a large body was read may cut the upload short.
                answers[type(error).__name__] += 1


async def soak(profile: Profile, seed: int, base_url: str, api_key: str, out: Path) -> Run:
    import aiohttp
    from aiohttp import web

    hooks: collections.Counter[int] = collections.Counter()
    attacks: collections.Counter[str] = collections.Counter()
    harness_errors: list[str] = []
    client: mjasync.Client | None = None

    async def hook(request: web.Request) -> web.StreamResponse:
        assert client is not None
        response: web.StreamResponse = await client.webhook_handler(request)
        hooks[response.status] += 1
        return response

    app = web.Application()
    app.router.add_post("/hook", hook)
    # aiohttp lingers up to 10 s (lingering_time) draining an upload the handler refused
    # unread, which the forged 2 MB notifications are, and AppRunner.cleanup() leaves
    # those handler tasks running: not the client's, so this app does not linger.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    client = mjasync.Client(
        base_url,
        api_key,
        auth=AUTH[profile.dialect],
        timeout=profile.request_timeout,
        retry=mjasync.RetryPolicy(attempts=4, backoff=0.1, max_backoff=1.0, max_retry_after=5.0),
        poll=mjasync.PollPolicy(
            interval=profile.poll_interval,
            max_interval=profile.poll_max_interval,
            first_poll=0.1,
            webhook_interval=profile.webhook_interval,
            max_requests_per_second=200,
        ),
        notify_hook=f"http://127.0.0.1:{port}/hook",
    )
    started = time.monotonic()
    # The caller gives up on a few chains, at a random point of their run.
    rng = random.Random(f"{seed}:cancel")
    chains: list[Chain] = []
    for i in range(profile.jobs):
        chain = Chain(i, f"soak-{seed}-{i}")
        if rng.random() < profile.cancel_rate:
            chain.cancel_phase = rng.choice(("imagine", "upscale"))
            chain.cancel_after = rng.uniform(0.0, profile.cancel_within)
        elif rng.random() < profile.cancel_download_rate:
            # A download of a small PNG takes a few milliseconds.
            chain.cancel_phase = "download"
            chain.cancel_after = rng.uniform(0.0, 0.03)
        chains.append(chain)
    try:
        # The budget wraps the client: running out cancels the calls and closes the client
        # while the cancellation is under way (the path of an app shut down by cancellation).
        async with asyncio.timeout(profile.budget), client as mj:
            stop = asyncio.Event()
            attacker = asyncio.create_task(
                attack(f"http://127.0.0.1:{port}/hook", chains, stop, attacks, seed)
            )
            try:
                # one_chain records into each Chain as it goes.
                outcomes = await mjasync.gather_chains(
                    (one_chain(mj, chain, profile, out) for chain in chains),
                    limit=profile.concurrency,
                )
            finally:
                stop.set()
                try:
                    await attacker
                except Exception as error:
                    harness_errors.append(
                        "the attacker crashed:\n" + "".join(traceback.format_exception(error))
                    )
            harness_errors.extend(
                "".join(traceback.format_exception(outcome))
                for outcome in outcomes
                if not isinstance(outcome, Chain)
            )
            # Every call has returned or been cancelled: nothing may still wait or poll.
            left = mj.poll_stats
            if left.waiters or left.polled_ids:
                harness_errors.append(
                    f"the poller still holds {left.waiters} waiters and polls "
                    f"{left.polled_ids} ids after every call ended"
                )
    except TimeoutError:
        harness_errors.append(f"the soak did not finish within its budget of {profile.budget} s")
        # The whole run was cancelled: judge what each chain had done by then.
        for chain in chains:
            pending = [step for step in chain.steps.values() if step.outcome == PENDING]
            if pending or not chain.steps:
                chain.cancelled = True
            for step in pending:
                step.outcome = CANCELLED
    wall = time.monotonic() - started
    await runner.cleanup()
    harness_errors.extend(
        f"{n} forged notifications were answered {answer}"
        for answer, n in attacks.items()
        if answer not in {"401", "403", "413"} and not answer.startswith("Client")
    )

    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> Any:
            async with http.get(base_url + path) as response:
                response.raise_for_status()
                return await response.json()

        tasks = await get("/sim/tasks")
        fault_counts = await get("/sim/faults")
        stats = await get("/sim/stats")
        submits = []
        for route in ("imagine", "action", "change", "simple-change"):
            submits += await get(f"/sim/requests?route={route}")
    # Debug-route requests are the harness's, not the client's.
    debug = {f"GET /sim/{name}" for name in ("tasks", "faults", "stats", "requests")}
    routes = {route: n for route, n in sorted(stats.items()) if route not in debug}
    leaks = await _leaks_in_loop()
    return Run(
        chains=chains,
        harness_errors=harness_errors,
        tasks=tasks,
        submits=submits,
        fault_counts=fault_counts,
        routes=routes,
        client_requests=client.requests_sent,
        hooks=hooks,
        attacks=attacks,
        wall=wall,
        leaks=leaks,
    )


async def _leaks_in_loop() -> list[str]:
    """Tasks still alive and aiohttp sessions or connectors still open, after aclose()."""
    import aiohttp

    # Let the callbacks of whatever was just closed run.
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    leaks = [
        f"asyncio task left running: {task!r}"
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
    ]
    gc.collect()
    for obj in gc.get_objects():
        if isinstance(obj, aiohttp.ClientSession) and not obj.closed:
            leaks.append(f"unclosed aiohttp session: {obj!r}")
        elif isinstance(obj, aiohttp.BaseConnector) and not obj.closed:
            leaks.append(f"unclosed aiohttp connector: {obj!r}")
    return leaks


# -- judging -------------------------------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    jobs: int
    outcomes: collections.Counter[str]
    steps: dict[str, collections.Counter[str]]
    duplicates: list[str]
    resent: list[str]
    lost: list[str]
    misreported: list[str]
    maybe_sent_created: int
    maybe_sent_never_arrived: int
    abandoned: int
    late_notice: list[str]
    false_timeouts: int
    corrupt: list[str]
    partial: list[str]
    missing_files: list[str]
    foreign: list[str]
    key_leaks: list[str]
    problems: list[str]  # non-mjasync exceptions, errors logged, leaks

    @property
    def failed(self) -> bool:
        return bool(
            self.duplicates
            or self.resent
            or self.lost
            or self.misreported
            or self.corrupt
            or self.partial
            or self.missing_files
            or self.foreign
            or self.key_leaks
            or self.problems
        )


def _margin(profile: Profile) -> float:
    """How long after a task finished the client may legitimately still not know it.

    A lost final callback is covered by the safety-net poll (``webhook_interval``, plus
    jitter); that poll may fail twice (a request timeout and a back-off each), and 1 s
    is left for a loaded loop.
    """
    poll = profile.poll_max_interval * 1.1 + profile.request_timeout
    return profile.webhook_interval * 1.1 + 2 * poll + 1.0


def judge(run: Run, capture: Capture, out: Path, api_key: str, profile: Profile) -> Verdict:
    chains = {chain.state: chain for chain in run.chains}
    by_grid = {chain.grid_id: chain for chain in run.chains if chain.grid_id}
    tasks = {task["id"]: task for task in run.tasks}
    problems: list[str] = list(run.harness_errors) + list(run.leaks) + capture.problems()

    # Non-mjasync exceptions, and the key in any message.
    key_leaks: list[str] = []
    for chain in run.chains:
        for step in chain.steps.values():
            error = step.error
            if error is None:
                continue
            if not isinstance(error, mjasync.MJError):
                problems.append(
                    f"job {chain.index} {step.name}: non-mjasync exception\n"
                    + "".join(traceback.format_exception(error))
                )
            text = f"{error}\n{error!r}\n{getattr(error, 'body', '')!r}"
            if api_key in text:
                key_leaks.append(f"job {chain.index} {step.name}: {type(error).__name__}")
    key_leaks.extend(
        f"log record {record.name}: {record.getMessage()[:80]}"
        for record in capture.records
        if api_key in record.getMessage()
    )

    # Which server task belongs to which step; duplicates.
    owned: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    foreign: list[str] = []
    for task in run.tasks:
        if task["kind"] == "imagine" and task["state"] in chains:
            owned[(task["state"], "imagine")].append(task)
        elif task["kind"] == "upsample" and task["parentId"] in by_grid:
            owned[(by_grid[task["parentId"]].state, f"U{task['index']}")].append(task)
        else:
            foreign.append(f"task {task['id']} ({task['kind']}) belongs to no chain step")
    duplicates = [
        f"{key[0]} {key[1]}: {len(found)} tasks {[t['id'] for t in found]}"
        for key, found in owned.items()
        if len(found) > 1
    ]

    # Submit requests that came again after a maybe-sent fault.
    resent: list[str] = []
    history: dict[str, list[tuple[str, ...]]] = collections.defaultdict(list)
    arrived: set[tuple[str, str]] = set()
    for request in run.submits:
        body: dict[str, Any] = request["body"] if isinstance(request.get("body"), dict) else {}
        if request["route"].endswith("/imagine"):
            key = f"imagine {body.get('state')}"
        elif request["route"].endswith("/change"):
            key = f"change {body.get('taskId')} {body.get('action')} {body.get('index')}"
        elif request["route"].endswith("/simple-change"):
            key = f"simple-change {body.get('content')}"
        else:
            key = f"action {body.get('taskId')} {body.get('customId')}"
        earlier = history[key]
        if any(MAYBE_SENT_FAULTS.intersection(faults) for faults in earlier):
            resent.append(f"{key}: sent again after {earlier}")
        earlier.append(tuple(request.get("faults") or ()))
        owner = _step_of(body, request["route"], chains, by_grid)
        if owner is not None:
            arrived.add(owner)

    # Maybe-sent errors for submits that never reached the server (informative: the
    # answer was honest, only more cautious than it had to be).
    never_arrived = sum(
        1
        for chain in run.chains
        for step in chain.steps.values()
        if step.at_submit
        and step.error is not None
        and mjasync.delivery_of(step.error) is mjasync.Delivery.MAYBE_SENT
        and (chain.state, step.name) not in arrived
    )

    # Lost and misreported: each server task against the step it belongs to.
    lost: list[str] = []
    misreported: list[str] = []
    maybe_sent_created = 0
    abandoned = 0
    false_timeouts = 0
    late_notice: list[str] = []
    margin = _margin(profile)
    for (state, name), found in owned.items():
        chain = chains[state]
        if name not in chain.steps:
            foreign.extend(f"task {t['id']}: job {chain.index} never reached {name}" for t in found)
            continue
        step = chain.steps[name]
        if step.outcome == CANCELLED:
            # The caller walked away during this call: the job is theirs to look up.
            abandoned += len(found)
            continue
        if len(found) > 1:
            # The extra copies are duplicates (counted above); judge the one reported.
            found = [t for t in found if t["id"] == step.task_id] or found[:1]
        task = found[0]
        where = f"job {chain.index} {name} (task {task['id']}, server: {task['status']})"
        finished = task["status"] in {"SUCCESS", "FAILURE"}
        error = step.error
        if step.task_id == task["id"] and step.status is not None:
            # The client reported a final status (a result, or a TaskError carrying it).
            if step.status != task["status"]:
                misreported.append(f"{where}: the client said {step.status}")
        elif step.at_submit and error is not None:
            delivery = mjasync.delivery_of(error)
            if delivery is mjasync.Delivery.MAYBE_SENT:
                maybe_sent_created += 1
            else:
                lost.append(f"{where}: its submit raised {step.outcome} ({delivery.name})")
        elif isinstance(error, mjasync.TaskNotFoundError):
            lost.append(f"{where}: TaskNotFoundError for a task the server has")
        elif isinstance(error, mjasync.TaskTimeoutError):
            finish = task["finishTime"]
            if finished and finish is not None and step.deadline is not None:
                early = step.deadline - finish / 1000
                if early > margin:
                    false_timeouts += 1
                    lost.append(f"{where}: TaskTimeoutError, finished {early:.1f} s before")
                elif early > 0:
                    # Finished so close to the deadline that the client may not have seen
                    # it yet: not counted against it, but shown.
                    late_notice.append(f"{where}: finished {early:.2f} s before the deadline")
        elif finished:
            lost.append(f"{where}: the client reported {step.outcome} for task {step.task_id}")
    misreported.extend(
        f"job {chain.index} {step.name}: unknown task {step.task_id}"
        for chain in run.chains
        for step in chain.steps.values()
        if step.task_id and not step.name.startswith("get") and step.task_id not in tasks
    )

    for chain in run.chains:
        if chain.cancelled and chain.cancel_lag > CANCEL_LAG:
            problems.append(
                f"job {chain.index}: cancelled, yet it ended {chain.cancel_lag:.2f} s later"
            )
        if chain.ignored_cancel:
            problems.append(f"job {chain.index}: a call swallowed the caller's cancellation")
        problems.extend(
            f"job {chain.index} {step.name}: never finished"
            for step in chain.steps.values()
            if step.outcome == PENDING
        )

    corrupt, partial, missing_files = _check_files(run, out)
    jobs = len(run.chains)
    outcomes = collections.Counter(chain.outcome for chain in run.chains)
    steps: dict[str, collections.Counter[str]] = {
        "imagine": collections.Counter(),
        "upscale": collections.Counter(),
        "download": collections.Counter(),
    }
    for chain in run.chains:
        for step in chain.steps.values():
            group = (
                "imagine"
                if step.name == "imagine"
                else "download"
                if step.name.startswith("get")
                else "upscale"
            )
            if step.outcome != "SKIPPED":
                steps[group][step.outcome] += 1
    if jobs != profile.jobs and not run.harness_errors:
        problems.append(f"{profile.jobs - jobs} jobs never reported back")
    return Verdict(
        jobs=jobs,
        outcomes=outcomes,
        steps=steps,
        duplicates=duplicates,
        resent=resent,
        lost=lost,
        misreported=misreported,
        maybe_sent_created=maybe_sent_created,
        maybe_sent_never_arrived=never_arrived,
        abandoned=abandoned,
        late_notice=late_notice,
        false_timeouts=false_timeouts,
        corrupt=corrupt,
        partial=partial,
        missing_files=missing_files,
        foreign=foreign,
        key_leaks=key_leaks,
        problems=problems,
    )


def _step_of(
    body: Mapping[str, Any], route: str, chains: Mapping[str, Chain], by_grid: Mapping[str, Chain]
) -> tuple[str, str] | None:
    """The (chain state, step name) a submit request the server received was for."""
    if route.endswith("/imagine"):
        state = body.get("state")
        return (state, "imagine") if isinstance(state, str) and state in chains else None
    if route.endswith("/simple-change"):
        # novicezk's "<task id> U2"
        grid, _, button = str(body.get("content")).partition(" ")
        chain = by_grid.get(grid)
        upscale = re.fullmatch(r"U([1-4])", button.strip())
        return (chain.state, f"U{upscale.group(1)}") if chain and upscale else None
    chain = by_grid.get(str(body.get("taskId")))
    if chain is None:
        return None
    if route.endswith("/change"):
        return chain.state, f"U{body.get('index')}"
    match = re.search(r"::upsample::(\d)::", str(body.get("customId")))
    return (chain.state, f"U{match.group(1)}") if match else None


def _check_files(run: Run, out: Path) -> tuple[list[str], list[str], list[str]]:
    """(corrupt, partial, missing) files of the output directory."""
    corrupt: list[str] = []
    partial: list[str] = []
    missing: list[str] = []
    saved: dict[str, Path] = {}
    failed: set[str] = set()
    cancelled: set[str] = set()
    for chain in run.chains:
        for step in chain.steps.values():
            if not step.name.startswith("get") or step.task_id is None:
                continue
            if step.path is not None:
                saved[step.task_id] = step.path
            elif step.outcome == CANCELLED:
                # Cancelled around the final rename, a complete file may stay: fine.
                cancelled.add(step.task_id)
            elif step.outcome != "SKIPPED":
                failed.add(step.task_id)
    present: set[str] = set()
    for path in sorted(out.iterdir()) if out.exists() else []:
        match = _FILE_NAME.match(path.name)
        if match is None or not path.is_file():
            partial.append(path.name)
            continue
        task_id = match["id"]
        present.add(task_id)
        problem = png_problem(path.read_bytes(), task_id)
        if problem is not None:
            corrupt.append(f"{path.name}: {problem}")
        if task_id in failed:
            corrupt.append(f"{path.name}: written although its download raised")
        elif task_id not in saved and task_id not in cancelled:
            corrupt.append(f"{path.name}: no download returned it")
    for task_id, path in saved.items():
        if task_id not in present or path.parent.resolve() != out.resolve():
            missing.append(f"{path} (task {task_id})")
    return corrupt, partial, missing


def png_problem(data: bytes, task_id: str) -> str | None:
    """None when *data* is a complete simulator PNG of *task_id*; else what is wrong."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "not a PNG"
    pos, idat, kinds, text = 8, b"", [], b""
    width = height = 0
    while pos < len(data):
        if pos + 12 > len(data):
            return "cut inside a chunk header"
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        if pos + 12 + length > len(data):
            return f"cut inside {kind!r}"
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if crc != zlib.crc32(kind + payload) & 0xFFFFFFFF:
            return f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", payload[:8])
        elif kind == b"IDAT":
            idat += payload
        elif kind == b"tEXt":
            text = payload
        pos += 12 + length
    if not kinds or kinds[0] != b"IHDR" or kinds[-1] != b"IEND":
        return f"chunks {kinds!r}"
    try:
        raw = zlib.decompress(idat)
    except zlib.error:
        return "IDAT does not inflate"
    if len(raw) != height * (1 + width * 3):
        return "IDAT size does not match IHDR"
    if text != b"Comment\x00mjasync-simulator " + task_id.encode():
        return f"the image of another task ({text!r})"
    return None


# -- output --------------------------------------------------------------------------------


def summary(run: Run, verdict: Verdict, profile: Profile, seed: int) -> dict[str, Any]:
    return {
        "profile": profile.name,
        "dialect": profile.dialect,
        "seed": seed,
        "jobs": verdict.jobs,
        "wall_s": round(run.wall, 2),
        "requests": run.requests,
        "routes": run.routes,
        "client_requests": run.client_requests,
        "tasks": len(run.tasks),
        # Peak resident memory of this process (client, harness and debug mode together).
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "faults": {kind: run.fault_counts.get(kind, 0) for kind in FAULT_KINDS},
        "outcomes": dict(verdict.outcomes.most_common()),
        "steps": {name: dict(c.most_common()) for name, c in verdict.steps.items()},
        "hooks": {str(status): n for status, n in sorted(run.hooks.items())},
        "forged_notifications": dict(sorted(run.attacks.items())),
        "examples": _examples(run.chains),
        "duplicates": len(verdict.duplicates),
        "resent_after_maybe_sent": len(verdict.resent),
        "lost": len(verdict.lost),
        "false_timeouts": verdict.false_timeouts,
        "timeouts_within_margin": len(verdict.late_notice),
        "misreported": len(verdict.misreported),
        "maybe_sent_created": verdict.maybe_sent_created,
        "maybe_sent_never_arrived": verdict.maybe_sent_never_arrived,
        "cancelled_jobs": sum(1 for chain in run.chains if chain.cancelled),
        "abandoned_tasks": verdict.abandoned,
        "corrupt": len(verdict.corrupt),
        "partial": len(verdict.partial),
        "missing_files": len(verdict.missing_files),
        "foreign_tasks": len(verdict.foreign),
        "key_leaks": len(verdict.key_leaks),
        "problems": len(verdict.problems),
        "passed": not verdict.failed,
    }


def _examples(chains: list[Chain]) -> dict[str, str]:
    """The first message of each (step kind, error class), shortened."""
    found: dict[str, str] = {}
    for chain in chains:
        for step in chain.steps.values():
            if step.error is None:
                continue
            kind = "download" if step.name.startswith("get") else step.name.rstrip("1234")
            key = f"{kind} {type(step.error).__name__}"
            if key not in found:
                text = " ".join(str(step.error).split())
                found[key] = text if len(text) <= 160 else text[:160] + "…"
    return dict(sorted(found.items()))


def report(data: dict[str, Any], verdict: Verdict, slow: list[str]) -> str:
    lines = [
        f"soak ({data['profile']}, {data['dialect']}): seed {data['seed']}, {data['jobs']} jobs, "
        f"{data['wall_s']:.1f} s, {data['requests']:,} requests to the simulator "
        f"({data['client_requests']:,} sent by the client), {data['tasks']:,} tasks, "
        f"peak RSS {data['peak_rss_mb']:.0f} MB",
        "faults played (simulator):",
        *(f"  {kind:<24} {n:>6,}" for kind, n in data["faults"].items()),
        "jobs by outcome:",
        *(f"  {name:<24} {n:>6,}" for name, n in data["outcomes"].items()),
    ]
    for name, counts in data["steps"].items():
        lines.append(f"{name} steps: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines.append("an example of each error:")
    lines.extend(f"  {name}: {text}" for name, text in data["examples"].items())
    lines.append("webhook answers: " + ", ".join(f"{k}: {v}" for k, v in data["hooks"].items()))
    lines.append(
        "forged notifications, answered: "
        + (", ".join(f"{k}: {v}" for k, v in data["forged_notifications"].items()) or "none")
    )
    lines.append(
        f"duplicates {data['duplicates']}, resent after maybe-sent "
        f"{data['resent_after_maybe_sent']}, lost {data['lost']} (false timeouts "
        f"{data['false_timeouts']}; timeouts within the margin, not counted: "
        f"{data['timeouts_within_margin']}), misreported {data['misreported']}, corrupt "
        f"{data['corrupt']}, partial {data['partial']}, missing files "
        f"{data['missing_files']}, foreign tasks {data['foreign_tasks']}, key leaks "
        f"{data['key_leaks']}, other problems {data['problems']}"
    )
    lines.append(
        f"maybe-sent submits (reported honestly): the server created {data['maybe_sent_created']}"
        f", never received {data['maybe_sent_never_arrived']}"
    )
    lines.append(
        f"cancelled by the caller: {data['cancelled_jobs']} jobs, leaving "
        f"{data['abandoned_tasks']} server tasks to their owner"
    )
    for title, items in (
        ("duplicates", verdict.duplicates),
        ("resent after maybe-sent", verdict.resent),
        ("lost", verdict.lost),
        ("timeouts within the margin (not failures)", verdict.late_notice),
        ("misreported", verdict.misreported),
        ("corrupt files", verdict.corrupt),
        ("partial files", verdict.partial),
        ("missing files", verdict.missing_files),
        ("foreign tasks", verdict.foreign),
        ("key leaks", verdict.key_leaks),
        ("problems", verdict.problems),
    ):
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  {item}" for item in items[:20])
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more")
    if slow:
        # Not a failure: the loop was held, which may explain a request timeout.
        lines.append(f"slow callbacks (asyncio debug mode, over 100 ms): {len(slow)}")
        lines.extend(f"  {note[:300]}" for note in slow[:5])
    lines.append("PASS" if data["passed"] else "FAIL")
    return "\n".join(lines)


# -- entry ---------------------------------------------------------------------------------


def _debug_flags_missing() -> bool:
    return os.environ.get("PYTHONASYNCIODEBUG") != "1" or not any(
        option.startswith("error::ResourceWarning") for option in sys.warnoptions
    )


def _reexec(argv: list[str]) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    args = [sys.executable, "-W", "error::ResourceWarning", "-m", "benchmarks.soak", *argv]
    os.execve(sys.executable, args, env)  # noqa: S606 (our own interpreter, fixed arguments)


@dataclasses.dataclass
class _Hooks:
    capture: Capture

    def __enter__(self) -> Capture:
        capture = self.capture
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(capture)
        root.setLevel(logging.DEBUG)
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
        self._hook = sys.unraisablehook
        sys.unraisablehook = capture.unraisable_hook
        return capture

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        sys.unraisablehook = self._hook
        root = logging.getLogger()
        root.removeHandler(self.capture)
        root.setLevel(self._level)


def run_soak(profile: Profile, seed: int, out: Path | None) -> tuple[dict[str, Any], str]:
    """Run one soak; returns its summary (as printed with ``--json``) and its report."""
    api_key = f"soak-key-{secrets.token_hex(8)}"
    directory = out or Path(tempfile.mkdtemp(prefix="mjasync-soak-"))
    directory.mkdir(parents=True, exist_ok=True)
    server = Server(profile, seed, api_key)
    try:
        with _Hooks(Capture()) as capture:

            async def main() -> Run:
                asyncio.get_running_loop().set_exception_handler(capture.loop_handler)
                return await soak(profile, seed, server.base_url, api_key, directory)

            run = asyncio.run(main())
            # Resources nobody closed surface when the loop is gone and gc runs.
            gc.collect()
        run.leaks.extend(f"loop exception handler: {e}" for e in capture.loop_errors)
        run.leaks.extend(f"unraisable: {e}" for e in capture.unraisable)
        verdict = judge(run, capture, directory, api_key, profile)
        data = summary(run, verdict, profile, seed)
        slow = capture.slow_callbacks()
        data["slow_callbacks"] = len(slow)
        return data, report(data, verdict, slow)
    finally:
        server.close()
        if out is None:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, help="chains to run (default: the profile's)")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's fault seed")
    parser.add_argument("--fast", action="store_true", help="the CI profile: 60 jobs, ~10 s")
    parser.add_argument("--concurrency", type=int, help="chains at once")
    parser.add_argument(
        "--dialect", choices=sorted(AUTH), default="plus", help="the simulator's dialect"
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="cancel the whole run after this long (default: the profile's); the client "
        "is then closed while its calls are being cancelled",
    )
    parser.add_argument(
        "--cancel-downloads",
        type=float,
        metavar="RATE",
        help="the share of chains whose caller cancels a download (default 0)",
    )
    parser.add_argument("--out", type=Path, help="keep the downloads here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON too")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if _debug_flags_missing():
        _reexec(argv)
    profile = FAST if args.fast else LONG
    if args.jobs is not None:
        profile = dataclasses.replace(profile, jobs=args.jobs)
    if args.concurrency is not None:
        profile = dataclasses.replace(profile, concurrency=args.concurrency)
    profile = dataclasses.replace(profile, dialect=args.dialect)
    if args.budget is not None:
        profile = dataclasses.replace(profile, budget=args.budget)
    if args.cancel_downloads is not None:
        profile = dataclasses.replace(profile, cancel_download_rate=args.cancel_downloads)
    data, text = run_soak(profile, args.seed, args.out)
    print(text, flush=True)
    if args.json:
        print(json.dumps(data), flush=True)
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
