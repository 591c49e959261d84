"""Client.server_info: which server this is and what it honours; the silent-hook warning (#7)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
from _shared import FAST_POLL as SHARED_FAST_POLL

from mjasync import AccountFilter, Client, Request, Response
from mjasync.simulator import Simulator
from mjasync.testing import MockTransport, json_response, submit_payload, task_payload

# webhook_interval: once a notification arrived, polling is only a safety net.
FAST_POLL = attrs.evolve(SHARED_FAST_POLL, webhook_interval=0.02)

# What each dialect's routes are, as the probes find them (new-api answers a GET on its
# POST routes with its web page, which says nothing about the route).
ROUTES: dict[str, dict[str, bool | None]] = {
    "oss": {
        "action_route": False,
        "change_route": True,
        "list_by_condition": True,
        "list_by_ids": False,
        "cancel": False,
        "image_seed": False,
    },
    "plus": {
        "action_route": True,
        "change_route": True,
        "list_by_condition": True,
        "list_by_ids": True,
        "cancel": True,
        "image_seed": True,
    },
    "trueai": {
        "action_route": True,
        "change_route": False,
        "list_by_condition": True,
        "list_by_ids": True,
        "cancel": True,
        "image_seed": True,
    },
    "newapi": {
        "action_route": None,
        "change_route": None,
        "list_by_condition": None,
        "list_by_ids": None,
        "cancel": None,
        "image_seed": True,
    },
}


@pytest.mark.parametrize("dialect", ["oss", "plus", "trueai", "newapi"])
async def test_probes_tell_the_dialect_and_its_routes(dialect: str) -> None:
    """A fresh client's server_info() probes with GETs only and names the server."""
    async with (
        Simulator(dialect=dialect, time_scale=0.005) as sim,
        Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        info = await mj.server_info()
        again = await mj.server_info()
        requests = dict(sim.requests)

    assert info.dialect == dialect
    assert info.evidence
    assert {key: getattr(info, key) for key in ROUTES[dialect]} == ROUTES[dialect]
    assert again == info
    assert not [key for key in requests if key.startswith("POST")]  # never a submit
    assert sum(requests.values()) == 6  # probed once


@pytest.mark.parametrize("dialect", ["oss", "plus", "trueai", "newapi"])
async def test_tasks_alone_tell_the_dialect(dialect: str) -> None:
    """Without probes, the fields of the task JSON a wait saw are enough."""
    async with (
        Simulator(dialect=dialect, time_scale=0.005) as sim,
        Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        await mj.await_task(await mj.imagine("a fox"), timeout=30)
        info = await mj.server_info(probe=False)

    assert info.dialect == dialect
    assert info.buttons is (dialect != "oss")
    assert info.finished_tasks == 1
    assert info.list_by_condition is True


async def test_nothing_seen_is_unknown() -> None:
    """Before any answer, and without probes, every feature is None."""
    async with Client("http://mj.test", "k", transport=MockTransport(_no_request)) as mj:
        info = await mj.server_info(probe=False)

    assert info.dialect == "unknown"
    assert info.evidence == ()
    assert info.action_route is info.change_route is info.buttons is None
    assert info.notifications_arrive is None


def _no_request(request: Request) -> Response:
    raise AssertionError(f"nothing should be sent, got {request.url}")


# -- AccountFilter.channel_id on trueai -----------------------------------------------------


def trueai_like(request: Request) -> Response:
    """Submits accepted; fetches answer a task with trueai's TaskInfo fields."""
    if "/fetch" in request.url:
        return json_response(task_payload(isCompleted=True, instanceId="i-1", displays={}))
    return json_response(submit_payload())


async def test_channel_id_is_dropped_once_the_server_is_known_to_be_trueai() -> None:
    """trueai has no channel id: sent until trueai is detected, then left out."""
    wanted = AccountFilter(channel_id="c-1", instance_id="i-1", modes=("FAST",))
    transport = MockTransport(trueai_like)
    async with Client("http://mj.test", "k", transport=transport) as mj:
        await mj.imagine("a fox", account_filter=wanted)
        await mj.fetch("1700000000000001")
        await mj.imagine("a fox", account_filter=wanted)
        info = await mj.server_info(probe=False)

    first, second = transport.requests[0].json, transport.requests[2].json
    assert first["accountFilter"] == {"channelId": "c-1", "instanceId": "i-1", "modes": ["FAST"]}
    assert second["accountFilter"] == {"instanceId": "i-1", "modes": ["FAST"]}
    assert info.dialect == "trueai"


async def test_channel_id_is_sent_to_other_servers() -> None:
    """A PLUS task body keeps channelId in the filter."""
    transport = MockTransport(
        lambda r: json_response(task_payload() if "/fetch" in r.url else submit_payload())
    )
    async with Client("http://mj.test", "k", transport=transport) as mj:
        await mj.fetch("1700000000000001")
        await mj.imagine("a fox", account_filter=AccountFilter(channel_id="c-1"))

    assert transport.requests[1].json["accountFilter"] == {"channelId": "c-1"}


# -- notifyHook that never arrives -----------------------------------------------------------

HOOK = "http://127.0.0.1:9/mj-hook"


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "notify_hook" in record.getMessage()
    ]


async def run_tasks(mj: Client, count: int) -> None:
    for i in range(count):
        await mj.await_task(await mj.imagine(f"a fox {i}"), timeout=30)


async def test_one_warning_when_no_notification_ever_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three tasks finish without a notification: one warning, however many follow."""
    caplog.set_level(logging.WARNING, logger="mjasync")
    async with (
        Simulator(dialect="plus", time_scale=0.005, notify=False) as sim,
        Client(sim.base_url, "key", poll=FAST_POLL, notify_hook=HOOK) as mj,
    ):
        await run_tasks(mj, 2)
        assert warnings_in(caplog) == []
        await run_tasks(mj, 3)
        info = await mj.server_info(probe=False)

    messages = warnings_in(caplog)
    assert len(messages) == 1
    assert "new-api strips it" in messages[0]
    assert "falls back to polling" in messages[0] or "fall back to polling" in messages[0]
    assert info.notify_hook is True
    assert info.notifications == 0
    assert info.notifications_arrive is False


async def test_no_warning_once_a_notification_arrived(caplog: pytest.LogCaptureFixture) -> None:
    """A notification with the right token proves hooks arrive: no warning."""
    caplog.set_level(logging.WARNING, logger="mjasync")
    async with (
        Simulator(dialect="plus", time_scale=0.005, notify=False) as sim,
        Client(sim.base_url, "key", poll=FAST_POLL, notify_hook=HOOK) as mj,
    ):
        submission = await mj.imagine("a fox")
        body: dict[str, Any] = task_payload(str(submission.task_id), "IN_PROGRESS")
        result = await mj.handle_notification(body, token=mj.notify_token)
        assert result.status == 200
        await mj.await_task(submission, timeout=30)
        await run_tasks(mj, 3)
        info = await mj.server_info(probe=False)

    assert warnings_in(caplog) == []
    assert info.notifications == 1
    assert info.notifications_arrive is True


async def test_no_warning_without_a_notify_hook(caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends no hook expects none."""
    caplog.set_level(logging.WARNING, logger="mjasync")
    async with (
        Simulator(dialect="plus", time_scale=0.005) as sim,
        Client(sim.base_url, "key", poll=FAST_POLL) as mj,
    ):
        await run_tasks(mj, 3)

    assert warnings_in(caplog) == []


async def test_a_closed_client_reports_without_probing() -> None:
    """server_info() after aclose answers from what was seen, sending nothing."""
    mj = Client("http://mj.test", "k", transport=MockTransport(_no_request))
    await mj.aclose()
    info = await mj.server_info()

    assert info.dialect == "unknown"


REAL = Path(__file__).parent / "payloads" / "real"


@pytest.mark.parametrize(
    ("name", "dialect"),
    [
        ("oss_notify_imagine_success_doc.json", "oss"),  # a finished grid, no buttons field
        ("plus_task_describe_success_doc.json", "plus"),  # abridged, but finalZhPrompt
        ("agg_dmxapi_task_imagine_success.json", "newapi"),  # customId + maskBase64
        ("agg_octopusx_task_imagine_in_progress.json", "unknown"),
    ],
)
async def test_real_task_bodies_point_at_their_server(name: str, dialect: str) -> None:
    """The marks of real bodies, fed as notifications: the verdict each supports."""
    async with Client("http://mj.test", "k", transport=MockTransport(_no_request)) as mj:
        result = await mj.handle_notification((REAL / name).read_bytes(), token=mj.notify_token)
        info = await mj.server_info(probe=False)

    assert result.status == 200
    assert info.dialect == dialect
    assert info.notifications == 1
