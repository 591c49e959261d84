"""The public pieces #10 added to the core, and the rules it keeps in one place.

list_tasks, the read-only policies and accessors, one backoff formula, one same-origin
check, one route-missing rule, one single-image normaliser, and the poller's back-off on
the injected clock.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import pytest
from _fakeproxy import FakeProxy

import mjasync
from mjasync import Request, Response, backoff
from mjasync._transport import same_origin
from mjasync.simulator import Simulator
from mjasync.testing import MockTransport, VirtualClock, json_response, task_payload

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32)
QUICK = mjasync.RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.002)


# -- list_tasks ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["oss", "plus", "trueai"])
async def test_list_tasks_lists_what_the_server_keeps(dialect: str) -> None:
    """GET /mj/task/list where the server has it: every task it keeps, decoded."""
    async with (
        Simulator(dialect=dialect, time_scale=0.002) as sim,  # type: ignore[arg-type]
        mjasync.Client(sim.base_url, retry=QUICK) as mj,
    ):
        subs = [await mj.imagine(f"a lark {i}") for i in range(3)]
        tasks = await mj.list_tasks()
    assert {task.id for task in tasks} >= {sub.task_id for sub in subs}
    assert all(isinstance(task, mjasync.Task) for task in tasks)
    assert sim.requests["GET /mj/task/list"] == 1


async def test_list_tasks_on_new_api_is_route_not_found() -> None:
    """new-api has no GET /mj/task/list: RouteNotFoundError, never a task error."""
    async with (
        Simulator(dialect="newapi", time_scale=0.002) as sim,
        mjasync.Client(sim.base_url, retry=QUICK) as mj,
    ):
        with pytest.raises(mjasync.RouteNotFoundError):
            await mj.list_tasks()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            json_response({"code": 404, "description": "nope"}, status=404), id="json-404"
        ),
        pytest.param(Response(status=501, content=b"Not Implemented"), id="501"),
        pytest.param(Response(status=405, content=b""), id="empty-405"),
    ],
)
async def test_list_tasks_reads_every_route_missing_answer_as_route_not_found(
    answer: Response,
) -> None:
    """A proxy's own JSON 404 and a bare 501 mean "no such route" too."""
    transport = MockTransport(lambda request: answer)
    async with mjasync.Client("http://mj.test", "k", transport=transport, retry=QUICK) as mj:
        with pytest.raises(mjasync.RouteNotFoundError) as caught:
            await mj.list_tasks()
    assert caught.value.status == answer.status
    assert "/mj/task/list" in str(caught.value)


async def test_list_tasks_skips_entries_that_are_not_tasks() -> None:
    """Only JSON objects with an id become tasks."""
    body = [task_payload("1"), {"no": "id"}, "text", task_payload("2")]
    transport = MockTransport(lambda request: json_response(body))
    async with mjasync.Client("http://mj.test", "k", transport=transport) as mj:
        tasks = await mj.list_tasks()
    assert [task.id for task in tasks] == ["1", "2"]
    assert transport.requests[0].method == "GET"
    assert transport.requests[0].url == "http://mj.test/mj/task/list"


# -- read-only policies and accessors --------------------------------------------------------


def test_policies_and_limits_are_read_only() -> None:
    """retry and poll are read-only: reassigning them raised nothing and did nothing before."""
    retry = mjasync.RetryPolicy(attempts=5)
    poll = mjasync.PollPolicy(interval=1.0)
    mj = mjasync.Client(
        "http://mj.test",
        retry=retry,
        poll=poll,
        max_image_bytes=1234,
        max_download_bytes=5678,
        transport=MockTransport(lambda request: json_response({})),
    )
    assert mj.retry is retry
    assert mj.poll is poll
    assert (mj.max_image_bytes, mj.max_download_bytes) == (1234, 5678)
    for name in ("retry", "poll", "max_image_bytes", "max_download_bytes"):
        with pytest.raises(AttributeError):
            setattr(mj, name, None)
    mj.trust_notifications = True  # still settable, as it always was
    assert mj.trust_notifications


async def test_max_image_bytes_is_the_limit_inputs_are_held_to() -> None:
    """The accessor reports the limit the client enforces."""
    transport = MockTransport(lambda request: json_response({"code": 1, "result": "1"}))
    async with mjasync.Client(
        "http://mj.test", transport=transport, max_image_bytes=len(PNG)
    ) as mj:
        await mj.describe(PNG)
        with pytest.raises(mjasync.InvalidRequestError, match="limit"):
            await mj.describe(PNG + b"\x00")
    assert mj.max_image_bytes == len(PNG)


# -- one backoff ----------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_within_its_jitter() -> None:
    """The one formula: ceiling base * 2**(n-1) up to cap, drawn from its upper half."""
    rng = random.Random(7)
    for failures in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (failures - 1))
        for _ in range(50):
            delay = backoff(failures, base=0.5, cap=8.0, rng=rng)
            assert ceiling / 2 <= delay <= ceiling
    assert backoff(3, base=1.0, cap=60.0, rng=rng, jitter=0.0) == 4.0
    # A streak of refusals as long as it likes never overflows a float.
    assert backoff(100_000, base=1.0, cap=60.0, rng=rng) <= 60.0


def test_retry_policy_validators_name_the_field() -> None:
    """attrs validators: attempts >= 1, durations >= 0 (NaN included)."""
    for bad in ({"attempts": 0}, {"backoff": -1}, {"max_backoff": math.nan}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            mjasync.RetryPolicy(**bad)  # type: ignore[arg-type]
    mjasync.RetryPolicy(attempts=1, backoff=0, max_backoff=0)


async def test_poller_backs_off_on_failures_with_the_one_formula(clock: VirtualClock) -> None:
    """After failed status requests the gaps double from 2 x interval up to max_interval."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "SUCCESS")
    proxy.queued = [json_response({"error": "busy"}, status=503) for _ in range(6)]
    policy = mjasync.PollPolicy(interval=1.0, max_interval=16.0, first_poll=0.0, jitter=0.0)
    async with mjasync.Client(
        "http://mj.test",
        poll=policy,
        retry=mjasync.RetryPolicy(attempts=1),
        transport=proxy.transport,
        clock=clock,
    ) as mj:
        task = await clock.run(mj.await_task("1", timeout=None))
    assert task.status == "SUCCESS"
    times = [when for when, _, _ in proxy.log]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([2.0, 4.0, 8.0, 16.0, 16.0, 16.0])


@pytest.fixture
def clock() -> VirtualClock:
    """Virtual time for the poller."""
    return VirtualClock()


# -- one same-origin check ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "other", "same"),
    [
        ("https://h/a", "https://h:443/b", True),
        ("http://H:80/x", "http://h", True),
        ("https://h", "http://h", False),
        ("https://h:8443", "https://h", False),
        ("https://user@h/a", "https://h", True),
    ],
)
def test_same_origin_knows_default_ports(url: str, other: str, same: bool) -> None:
    """https://h and https://h:443 are one origin, for redirects and downloads alike."""
    assert same_origin(url, other) is same


async def test_download_from_the_default_port_spelled_out_carries_the_key(tmp_path: Path) -> None:
    """A result on https://host:443 is the client's own origin https://host: the key goes."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(status=200, headers={"content-type": "image/png"}, content=PNG_FILE)

    task = mjasync.Task(
        id="1", status=mjasync.TaskStatus.SUCCESS, image_url="https://mj.test:443/img/1.png"
    )
    async with mjasync.Client(
        "https://mj.test", "secret-key", transport=MockTransport(handler)
    ) as mj:
        await mj.download(task, tmp_path)
    assert seen[0].headers.get("Authorization") == "Bearer secret-key"


# A complete 1x1 PNG (signature, IHDR, IDAT, IEND): download checks the end marker.
PNG_FILE = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5e6e3c3"
    "0000000049454e44ae426082"
)


# -- one single-image normaliser --------------------------------------------------------------


@pytest.mark.parametrize(
    "images",
    [
        pytest.param(Path("one.png"), id="path"),
        pytest.param(bytearray(PNG), id="bytearray"),
        pytest.param(PNG, id="bytes"),
        pytest.param("https://cdn.example/a.png", id="url"),
    ],
)
async def test_blend_of_one_image_in_any_form_is_refused(images: Any) -> None:
    """A single image is one image whatever its type (a Path used to be a TypeError)."""
    transport = MockTransport(lambda request: json_response({}))
    async with mjasync.Client("http://mj.test", transport=transport) as mj:
        with pytest.raises(mjasync.InvalidRequestError, match="got 1"):
            await mj.blend(images)
    assert transport.requests == []
