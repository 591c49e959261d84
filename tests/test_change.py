"""novicezk's /submit/change: implied buttons, the fallback from /submit/action, change().

Over MockTransport, with answers written from novicezk's SubmitController.java (change)
and Spring's error JSON for a route it lacks; the simulator runs whole chains in
test_chains.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mjasync
from mjasync import (
    Button,
    ButtonNotFoundError,
    Client,
    InvalidRequestError,
    Request,
    RequestTimeoutError,
    Response,
    RouteNotFoundError,
    ServerError,
    TaskNotFoundError,
)
from mjasync.testing import MockTransport, decode_task, json_response, submit_payload, task_payload

GRID_ID = "1700000000000001"
NEW_ID = "1700000000000002"
IMPLIED = ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "reroll"]


def oss_task(status: str = "SUCCESS", action: str = "IMAGINE", **extra: Any) -> dict[str, Any]:
    """A task as novicezk's Task.java serialises it: no buttons field at all."""
    body = task_payload(GRID_ID, status, action=action, **extra)
    del body["buttons"]
    return body


def spring_404(path: str) -> Response:
    """Spring Boot's answer for a path novicezk has no handler for."""
    body = {"timestamp": "2025-01-01T00:00:00.000+00:00", "status": 404, "error": "Not Found"}
    return json_response({**body, "path": f"/mj{path}"}, status=404)


def route(path: str, request: Request) -> bool:
    return request.url.endswith(path)


def oss(request: Request) -> Response:
    """novicezk: /submit/change accepts, /submit/action does not exist."""
    if route("/submit/change", request):
        return json_response(submit_payload(NEW_ID))
    if route("/submit/action", request):
        return spring_404("/submit/action")
    raise AssertionError(f"unexpected {request.method} {request.url}")


def client(handler: Callable[[Request], Response]) -> tuple[Client, MockTransport]:
    transport = MockTransport(handler)
    retry = mjasync.RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.002)
    poll = mjasync.PollPolicy(interval=0.005, max_interval=0.02, first_poll=0.005)
    return Client("http://mj.test", "k", transport=transport, retry=retry, poll=poll), transport


def paths(transport: MockTransport) -> list[str]:
    return [request.url.rsplit("/mj", 1)[1] for request in transport.requests]


# -- implied buttons ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["IMAGINE", "VARIATION", "REROLL", "BLEND"])
def test_a_finished_grid_without_buttons_implies_nine(action: str) -> None:
    """No buttons field on a SUCCESS grid: U1-U4, V1-V4 and reroll, without customIds."""
    task = decode_task(oss_task(action=action))

    assert [button.name for button in task.buttons] == IMPLIED
    assert all(button.implied and button.custom_id == "" for button in task.buttons)
    assert task.button("U2") == Button("", label="U2", change_action="UPSCALE", change_index=2)
    assert task.button("v4").change_action == "VARIATION"
    assert task.button("🔄").name == "reroll"
    assert repr(task.button("U2"))  # the repr works without a customId


def test_null_buttons_imply_them_too() -> None:
    """new-api sends ``"buttons": null`` for a task its upstream sent none for."""
    task = decode_task({**oss_task(), "buttons": None})

    assert [button.name for button in task.buttons] == IMPLIED


@pytest.mark.parametrize(
    ("status", "action", "buttons"),
    [
        ("SUCCESS", "IMAGINE", []),  # the server says: no buttons
        ("IN_PROGRESS", "IMAGINE", None),
        ("FAILURE", "IMAGINE", None),
        ("SUCCESS", "UPSCALE", None),
        ("SUCCESS", "DESCRIBE", None),
    ],
)
def test_no_implied_buttons_where_change_cannot_act(
    status: str, action: str, buttons: list[Any] | None
) -> None:
    """An empty list, an unfinished task, an upscale or a describe imply nothing."""
    body = oss_task(status, action)
    if buttons is not None:
        body["buttons"] = buttons

    assert decode_task(body).buttons == ()


def test_a_sent_button_list_is_used_as_sent() -> None:
    """A server's own buttons win: their customIds, none implied."""
    task = decode_task(task_payload(GRID_ID))

    assert task.button("U2").custom_id.startswith("MJ::JOB::upsample::2::")
    assert not any(button.implied for button in task.buttons)


# -- pressing them ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "action", "index"),
    [("U2", "UPSCALE", 2), ("V3", "VARIATION", 3), ("reroll", "REROLL", 1)],
)
async def test_an_implied_button_goes_to_change_once(key: str, action: str, index: int) -> None:
    """U/V/reroll on a button-less grid: one /submit/change, no /submit/action."""
    mj, transport = client(oss)
    async with mj:
        submission = await mj.action(decode_task(oss_task()), key, state="s1")

    assert submission.task_id == NEW_ID
    assert paths(transport) == ["/submit/change"]
    assert transport.requests[0].json == {
        "taskId": GRID_ID,
        "action": action,
        "index": index,
        "state": "s1",
    }


async def test_missing_action_route_falls_back_to_change_and_is_remembered() -> None:
    """A U2 customId answered 404 by Spring is pressed through /change; later ones go there."""
    mj, transport = client(oss)
    grid = decode_task(task_payload(GRID_ID))  # a grid with real buttons
    async with mj:
        first = await mj.action(grid, "U2")
        second = await mj.action(grid, "V1")
        info = await mj.server_info(probe=False)

    assert first.task_id == second.task_id == NEW_ID
    assert paths(transport) == ["/submit/action", "/submit/change", "/submit/change"]
    assert [r.json["action"] for r in transport.requests[1:]] == ["UPSCALE", "VARIATION"]
    assert "customId" not in transport.requests[1].json
    assert info.action_route is False
    assert info.change_route is True


async def test_a_button_change_cannot_press_raises_route_not_found() -> None:
    """Zoom on a server without /submit/action: RouteNotFoundError, one request."""
    mj, transport = client(oss)
    async with mj:
        with pytest.raises(RouteNotFoundError):
            await mj.action(GRID_ID, "MJ::Outpaint::50::1::abc::SOLO")

    assert paths(transport) == ["/submit/action"]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Response(500), id="500"),
        pytest.param(RequestTimeoutError("no answer in time"), id="read-timeout"),
        pytest.param(Response(502, content=b"<html>bad gateway</html>"), id="502-page"),
    ],
)
async def test_a_press_that_may_have_arrived_is_never_sent_again(
    failure: Response | Exception,
) -> None:
    """Only a missing route falls back: a 5xx or a timeout may hide a paid job."""

    def handler(request: Request) -> Response:
        if isinstance(failure, Exception):
            raise failure
        return failure

    mj, transport = client(handler)
    async with mj:
        with pytest.raises((ServerError, RequestTimeoutError)):
            await mj.action(decode_task(task_payload(GRID_ID)), "U2")

    assert paths(transport) == ["/submit/action"]


async def test_an_unknown_parent_is_task_not_found_not_a_missing_route() -> None:
    """Code 3 on /change is the parent missing, with its id."""
    mj, transport = client(
        lambda r: json_response({"code": 3, "description": "关联任务不存在或已失效"})
    )
    async with mj:
        with pytest.raises(TaskNotFoundError) as info:
            await mj.action(decode_task(oss_task()), "U1")

    assert info.value.task_id == GRID_ID
    assert len(transport.requests) == 1


@pytest.mark.parametrize("status", ["FAILURE", "CANCEL"])
async def test_nothing_is_pressed_on_a_failed_task(status: str) -> None:
    """A FAILURE or CANCEL task has no buttons to press, even if its JSON lists some."""
    mj, transport = client(oss)
    failed = decode_task(task_payload(GRID_ID, status, buttons=task_payload()["buttons"]))
    async with mj:
        with pytest.raises(ButtonNotFoundError, match=status):
            await mj.action(failed, "U1")
        with pytest.raises(ButtonNotFoundError):
            await mj.run_action(failed, failed.buttons[0])

    assert transport.requests == []


async def test_a_button_without_custom_id_or_change_is_refused() -> None:
    """A hand-made Button with nothing to send is an InvalidRequestError."""
    mj, transport = client(oss)
    async with mj:
        with pytest.raises(InvalidRequestError, match="customId"):
            await mj.action(GRID_ID, Button(""))

    assert transport.requests == []


# -- change() -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "index", "sent"),
    [
        ("UPSCALE", 1, ("UPSCALE", 1)),
        ("upscale", 4, ("UPSCALE", 4)),
        (" Variation ", 2, ("VARIATION", 2)),
        ("REROLL", None, ("REROLL", 1)),  # new-api refuses index 0 ("index_is_required")
        ("reroll", 3, ("REROLL", 3)),
    ],
)
async def test_change_sends_action_and_index(
    action: str, index: int | None, sent: tuple[str, int]
) -> None:
    """change() upper-cases the action and always sends an index of 1..4."""
    mj, transport = client(oss)
    async with mj:
        submission = await mj.change(GRID_ID, action, index)

    assert submission.task_id == NEW_ID
    assert paths(transport) == ["/submit/change"]
    body = transport.requests[0].json
    assert (body["taskId"], body["action"], body["index"]) == (GRID_ID, *sent)


@pytest.mark.parametrize(
    ("task", "action", "index", "match"),
    [
        (GRID_ID, "ZOOM", 1, "UPSCALE"),
        (GRID_ID, "U1", None, "UPSCALE"),
        (GRID_ID, "UPSCALE", None, "needs index"),
        (GRID_ID, "VARIATION", 0, "index must be"),
        (GRID_ID, "VARIATION", 5, "index must be"),
        (GRID_ID, "UPSCALE", True, "index must be"),
        (GRID_ID, "UPSCALE", "2", "index must be"),
        (decode_task(oss_task("IN_PROGRESS")), "UPSCALE", 1, "SUCCESS"),
        (decode_task(oss_task(action="UPSCALE")), "VARIATION", 1, "UPSCALE task"),
        ("", "UPSCALE", 1, "task id"),
    ],
)
async def test_change_checks_its_inputs_before_sending(
    task: Any, action: Any, index: Any, match: str
) -> None:
    """A bad action, index or parent is an InvalidRequestError; nothing is sent."""
    mj, transport = client(oss)
    async with mj:
        with pytest.raises(InvalidRequestError, match=match):
            await mj.change(task, action, index)

    assert transport.requests == []


async def test_run_action_on_an_oss_grid_waits_for_the_change() -> None:
    """run_action("U2") on a button-less grid: /change, then the new task to SUCCESS."""

    def handler(request: Request) -> Response:
        if route("/submit/change", request):
            return json_response(submit_payload(NEW_ID))
        if route(f"/task/{NEW_ID}/fetch", request) or "list-by-condition" in request.url:
            up = {**oss_task(action="UPSCALE"), "id": NEW_ID}
            return json_response([up] if "list" in request.url else up)
        raise AssertionError(request.url)

    mj, transport = client(handler)
    async with mj:
        up = await mj.run_action(decode_task(oss_task()), "U2", timeout=5)

    assert up.id == NEW_ID
    assert up.buttons == ()  # novicezk's upscale: nothing more to press
    assert paths(transport)[0] == "/submit/change"
    assert paths(transport).count("/submit/change") == 1


# -- old novicezk's code 21 -------------------------------------------------------------------


def existing_21(status: str = "SUCCESS") -> dict[str, Any]:
    """novicezk before b146e94: a repeated upscale answers with the earlier task."""
    return {
        "code": 21,
        "description": "任务已存在",
        "result": NEW_ID,
        "properties": {"status": status, "imageUrl": "https://cdn.example/u.png"},
    }


async def test_code_21_with_an_existing_task_is_not_a_modal() -> None:
    """run_action returns the existing task and never sends /submit/modal."""

    def handler(request: Request) -> Response:
        if route("/submit/change", request):
            return json_response(existing_21())
        if "list-by-condition" in request.url:
            return json_response([{**oss_task(action="UPSCALE"), "id": NEW_ID}])
        raise AssertionError(request.url)

    mj, transport = client(handler)
    async with mj:
        submission = await mj.action(decode_task(oss_task()), "U1")
        up = await mj.run_action(decode_task(oss_task()), "U1", prompt="a fox", timeout=5)

    assert submission.existing
    assert not submission.needs_modal
    assert up.id == NEW_ID
    assert "/submit/modal" not in paths(transport)


@pytest.mark.parametrize(
    ("body", "existing"),
    [
        (existing_21(), True),
        (existing_21("IN_PROGRESS"), True),
        ({"code": 21, "description": "任务已存在", "result": NEW_ID}, True),
        (
            {
                "code": 21,
                "description": "窗口等待",
                "result": NEW_ID,
                "properties": {"finalPrompt": "a fox", "remix": True},
            },
            False,
        ),
        ({"code": 21, "description": "Waiting for window confirm", "result": NEW_ID}, False),
        (submit_payload(NEW_ID), False),
    ],
)
async def test_code_21_is_told_apart_by_its_body(body: dict[str, Any], existing: bool) -> None:
    """properties.status/imageUrl or 任务已存在: existing task; finalPrompt/remix: a modal."""
    mj, _ = client(lambda r: json_response(body))
    async with mj:
        submission = await mj.submit("/submit/change", {"taskId": GRID_ID})

    assert submission.existing is existing
    assert submission.needs_modal is (body["code"] == 21 and not existing)
