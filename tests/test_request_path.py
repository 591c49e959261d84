"""The per-request path made cheaper for `fetch()` (#11), without changing what it does.

* the pool admission takes a free connection without a pass through the event loop,
  but never ahead of a request already waiting for one (the pool-wait fix of
  `tests/test_pool.py` holds);
* the ``"METHOD URL"`` every message starts with is built from a root shown once, and
  equals what `display_url` gives for the whole URL;
* a plain task id skips the character-by-character checks and is still the same id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

import mjasync
from mjasync import _transport
from mjasync._models import task_id_of, task_path
from mjasync._redact import display_url
from mjasync._transport import Request

REQUEST = Request("GET", "http://mj.test/mj/task/1/fetch")


def done_without_suspending(coroutine: Coroutine[Any, Any, Any]) -> bool:
    """Run *coroutine* one step: True when it finished without awaiting anything."""
    try:
        coroutine.send(None)
    except StopIteration:
        return True
    coroutine.close()
    return False


async def test_a_free_connection_is_taken_without_waiting() -> None:
    """With a slot free and nobody queued, acquire() finishes in its first step."""
    pool = _transport._Pool(limit=4, limit_per_host=2, timeout=1.0)
    leases = []
    for _ in range(2):
        coroutine = pool.acquire(REQUEST, REQUEST.url)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            leases.append(stop.value)
        else:
            pytest.fail("acquire() waited although a connection was free")
    # Both per-host slots are taken now: the next one must wait.
    assert not done_without_suspending(pool.acquire(REQUEST, REQUEST.url))
    for lease in leases:
        lease.release()
    # Another host has its own slots, under the same total.
    other = "http://other.test/mj/task/1/fetch"
    assert done_without_suspending(pool.acquire(Request("GET", other), other))


async def test_a_request_never_jumps_the_queue_for_a_connection() -> None:
    """A slot freed while requests wait goes to the first of them, not to a newcomer."""
    pool = _transport._Pool(limit=10, limit_per_host=1, timeout=5.0)
    first = await pool.acquire(REQUEST, REQUEST.url)
    order: list[str] = []

    async def take(name: str) -> None:
        lease = await pool.acquire(REQUEST, REQUEST.url)
        order.append(name)
        await asyncio.sleep(0)
        lease.release()

    waiting = [asyncio.ensure_future(take(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    first.release()
    # The slot was handed to "a"; a newcomer now finds none free and queues after "b".
    late = asyncio.ensure_future(take("late"))
    await asyncio.gather(*waiting, late)
    assert order == ["a", "b", "late"]


@pytest.mark.parametrize(
    "base_url",
    [
        "http://mj.test",
        "https://MJ.Example.com:8443/api/",
        "http://user:secret@mj.test:8080/mj",
        "http://[::1]:9000",
        "https://mj.test/relay/mj/",
    ],
)
@pytest.mark.parametrize("mode", [None, "relax", "/mj-custom"])
def test_where_is_what_display_url_shows(base_url: str, mode: str | None) -> None:
    """The fast ``where`` is the slow one, credentials dropped, for every path shape."""
    mj = mjasync.Client(base_url, "key", mode=mode)
    for path in ("/submit/imagine", task_path("1748339029401123", "fetch"), task_path("a b", "x")):
        assert mj._where("GET", path) == f"GET {display_url(mj._url(path))}"
    assert "secret" not in mj._where("POST", "/task/list-by-condition")
    # A path with a query takes the slow way, which drops the query.
    assert mj._where("GET", "/task/list?token=abc") == f"GET {display_url(mj._url('/task/list'))}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1748339029401123", "1748339029401123"),
        ("  1748339029401123 ", "1748339029401123"),
        ("0ddb91a0-af46-4ae9-8e8e-c271074eb6e6", "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6"),
        ("a.b", "a.b"),
        ("任务1", "任务1"),
    ],
)
def test_plain_ids_pass_as_they_are(given: str, expected: str) -> None:
    assert task_id_of(given) == expected


@pytest.mark.parametrize("bad", [".", "..", "a/b", "a?b", "a#b", "a\\b", "a b", "a\x00", "x" * 129])
def test_ids_that_would_change_the_path_are_still_refused(bad: str) -> None:
    with pytest.raises(mjasync.InvalidRequestError):
        task_id_of(bad)
