"""A bulk run against a server that is wrong or gone: stop early, record nothing as paid (#9).

A base URL with no midjourney-proxy behind it (404 everywhere, a web page), a host that
refuses connections, a host that takes them and never answers: each stops the run in
bounded time with a typed error, and a rerun once fixed submits the unsent jobs without
any flag. A 5xx stays "maybe sent".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import anyio.abc
import pytest
from _servers import WEB_PAGE, closed_port, static_server
from _shared import BULK_FAST as FAST
from _shared import FAST_POLL, ONE_TRY

import mjasync
from mjasync import ConnectError, Request, Response
from mjasync.bulk import BulkEvent, UnreachableError, parse_jobs, run_bulk
from mjasync.bulk._reach import unreachable_reason
from mjasync.simulator import Simulator


def step_statuses(journal: Path) -> list[str]:
    with sqlite3.connect(journal) as db:
        return [row[0] for row in db.execute("SELECT status FROM steps")]


def run_outcome(journal: Path) -> str:
    with sqlite3.connect(journal) as db:
        (outcome,) = db.execute("SELECT outcome FROM runs ORDER BY id LIMIT 1").fetchone()
    return str(outcome)


# -- #9.1: no midjourney-proxy at the base URL -------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "content_type"),
    [(404, "404 page not found", "text/plain"), (200, WEB_PAGE, "text/html")],
    ids=["404-everywhere", "200-web-page"],
)
async def test_a_base_url_with_no_proxy_stops_the_run_and_a_fixed_rerun_submits_normally(
    tmp_path: Path, status: int, text: str, content_type: str
) -> None:
    """Route missing on a submit: not sent, the run stops; the rerun needs no flag."""
    jobs = parse_jobs(["a fox", "a wolf", "a hare", "an owl", "a crane"])
    events: list[BulkEvent] = []
    async with static_server(status, text, content_type) as log:
        async with mjasync.Client(log[0], "key", poll=FAST_POLL, retry=ONE_TRY) as mj:
            with pytest.raises(mjasync.RouteNotFoundError) as caught:
                await run_bulk(mj, jobs, tmp_path, concurrency=2, on_event=events.append, **FAST)
        submits = [line for line in log[1:] if line == "POST /mj/submit/imagine"]
    assert f"{log[0]}/mj/submit/imagine" in str(caught.value)
    assert 1 <= len(submits) <= 2  # the ones in flight when the first answer came
    assert set(step_statuses(tmp_path / "mjasync-journal.sqlite3")) == {"never_sent"}
    assert run_outcome(tmp_path / "mjasync-journal.sqlite3").startswith(
        "stopped: RouteNotFoundError"
    )
    assert not [e for e in events if e.kind in {"job_unknown", "job_failed", "backoff"}]

    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=2) as sim,
        mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        report = await run_bulk(mj, jobs, tmp_path, **FAST)
        assert report.ok, report.to_dict()
        assert sim.requests["POST /mj/submit/imagine"] == len(jobs)


async def test_a_5xx_on_a_submit_stays_maybe_sent(tmp_path: Path) -> None:
    """A 500 may come after the task was made: unknown, never resent, the run goes on."""
    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=3) as sim,
        mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        sim.inject("POST /mj/submit/imagine", "submit_fault_after", status=500)
        report = await run_bulk(
            mj, parse_jobs(["a fox", "a wolf"]), tmp_path, recover=False, concurrency=1, **FAST
        )
        assert len(report.unknown) == 1
        assert len(report.done) == 1
        assert "ServerError" in next(iter(report.unknown.values()))
        assert sim.requests["POST /mj/submit/imagine"] == 2
        assert len(sim.tasks) == 2


async def test_the_recovery_list_is_asked_for_once_on_a_server_without_it(
    tmp_path: Path,
) -> None:
    """new-api has no GET /mj/task/list (it serves its web page): asked once, not per loss."""
    async with (
        Simulator(dialect="newapi", time_scale=0.002, seed=4, newapi_sync_interval=0.5) as sim,
        mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        sim.inject("POST /mj/submit/imagine", "submit_fault_after", times=2, status=500)
        jobs = parse_jobs(["a fox", "a wolf", "a hare"])
        report = await run_bulk(mj, jobs, tmp_path, concurrency=1, **FAST)
        assert len(report.unknown) == 2, report.to_dict()
        assert len(report.done) == 1
        assert sim.requests["GET /mj/task/list"] == 1


# -- #9.2: a host that cannot be reached ---------------------------------------------------


async def test_an_unreachable_host_stops_the_run_at_once_and_a_rerun_submits_normally(
    tmp_path: Path,
) -> None:
    """Connection refused for a server never reached: stop at the first failed submit."""
    jobs = parse_jobs(["a fox", "a wolf", "a hare"])
    events: list[BulkEvent] = []
    port = closed_port()
    retry = mjasync.RetryPolicy(attempts=2, backoff=0.01)
    async with mjasync.Client(f"http://127.0.0.1:{port}", "key", retry=retry) as mj:
        with pytest.raises(UnreachableError) as caught:
            await run_bulk(mj, jobs, tmp_path, concurrency=1, on_event=events.append, **FAST)
        assert mj.requests_sent == 2  # one submit and the client's own retry of it
    error = caught.value
    assert isinstance(error, mjasync.TransportError)
    assert (error.host, error.reason, error.maybe_sent) == (
        f"127.0.0.1:{port}",
        "connection refused",
        False,
    )
    assert str(error).startswith(f"cannot reach 127.0.0.1:{port}: connection refused")
    assert not [e for e in events if e.kind == "backoff"]  # refused is not push-back
    assert step_statuses(tmp_path / "mjasync-journal.sqlite3") == ["never_sent"]

    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=5) as sim,
        mjasync.Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        report = await run_bulk(mj, jobs, tmp_path, **FAST)
        assert report.ok, report.to_dict()
        assert sim.requests["POST /mj/submit/imagine"] == len(jobs)


class _GoneAfter(mjasync.AiohttpTransport):
    """Every imagine submit after the first *answered* ones is refused at connect."""

    def __init__(self, answered: int) -> None:
        super().__init__()
        self.answered = answered
        self.refused = 0

    async def send(self, request: Request) -> Response:
        if request.url.endswith("/submit/imagine"):
            if self.answered:
                self.answered -= 1
            else:
                self.refused += 1
                msg = f"POST {request.url}: could not connect (ClientConnectorError: Cannot "
                raise ConnectError(msg + "connect to host [Connect call failed]); nothing was sent")
        return await super().send(request)


async def test_a_server_that_goes_away_mid_run_is_retried_then_given_up(tmp_path: Path) -> None:
    """Reached before: refusals are retried with pauses, for unreachable_timeout, then stop."""
    events: list[BulkEvent] = []
    transport = _GoneAfter(answered=1)
    async with (
        Simulator(dialect="plus", time_scale=0.002, seed=6) as sim,
        mjasync.Client(
            sim.base_url, "key", poll=FAST_POLL, retry=ONE_TRY, transport=transport
        ) as mj,
    ):
        with pytest.raises(UnreachableError) as caught:
            await run_bulk(
                mj,
                parse_jobs(["a fox", "a wolf", "a hare"]),
                tmp_path,
                concurrency=1,
                unreachable_timeout=0.1,
                max_submit_attempts=10_000,
                on_event=events.append,
                **FAST,
            )
    assert "answered earlier in this run" in str(caught.value)
    assert transport.refused >= 2
    assert [e.kind for e in events].count("job_done") == 1
    assert any(e.kind == "backoff" and "server not reached" in e.message for e in events)


async def test_a_host_that_never_answers_stops_the_run_with_the_submit_unknown(
    tmp_path: Path,
) -> None:
    """Connections taken, no answer ever: one maybe-paid submit, then the run stops."""
    received: list[bytes] = []

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            received.append(await stream.receive())
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, silent)
        async with mjasync.Client(
            f"http://127.0.0.1:{port}", "key", timeout=0.2, retry=ONE_TRY
        ) as mj:
            with pytest.raises(UnreachableError) as caught:
                await run_bulk(mj, parse_jobs(["a fox", "a wolf"]), tmp_path, concurrency=1, **FAST)
        group.cancel_scope.cancel()
    assert caught.value.maybe_sent is True
    assert str(caught.value).startswith(f"no answer from 127.0.0.1:{port}")
    assert len(received) == 1
    assert step_statuses(tmp_path / "mjasync-journal.sqlite3") == ["unknown"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "POST http://h:9/mj/submit/imagine: could not connect (ClientConnectorError: Cannot "
            "connect to host h:9 ssl:default [Connect call failed ('127.0.0.1', 9)]); "
            "nothing was sent",
            "connection refused",
        ),
        (
            "GET http://nosuch/mj/task/1/fetch: could not connect (ClientConnectorDNSError: "
            "Cannot connect to host nosuch:80 ssl:default [Name or service not known])",
            "host name not found (DNS)",
        ),
        (
            "GET https://h/mj/x: could not connect (ClientConnectorCertificateError: Cannot "
            "connect to host h:443 ssl:True [SSLCertVerificationError: ...])",
            "TLS handshake failed",
        ),
        (
            "GET http://h/mj/x: could not connect (ConnectionTimeoutError: Connection timeout "
            "to host http://h/mj/x)",
            "connection timed out",
        ),
        ("GET http://h/mj/x: no free connection within 60s (pool_timeout)", None),
    ],
    ids=["refused", "dns", "tls", "connect-timeout", "pool-timeout"],
)
def test_why_a_host_is_unreachable_is_named(text: str, reason: str | None) -> None:
    """The cause, from the transport's message; a full local pool is not the server's."""
    assert unreachable_reason(ConnectError(text)) == reason
    assert unreachable_reason(mjasync.RequestTimeoutError(text)) is None
