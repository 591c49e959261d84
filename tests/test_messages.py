"""What a failed call tells its caller: the whole URL, the auth hint, the unknown task, the
English next to the server's Chinese, the debug log; and the input refused before sending.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from _shared import QUICK_RETRY as FAST

import mjasync
from mjasync import (
    AuthenticationError,
    Client,
    InvalidRequestError,
    Request,
    Response,
    RetryPolicy,
    RouteNotFoundError,
    SubmitRejectedError,
    TaskNotFoundError,
)
from mjasync.testing import MockTransport, decode_task, json_response, submit_payload, task_payload

KEY = "sk-wire-test-0123456789"
PARENT = "1700000000000042"


def client(
    handler: Callable[[Request], Response],
    key: str | None = KEY,
    base_url: str = "http://mj.test",
    **kwargs: Any,
) -> tuple[Client, MockTransport]:
    """A client over a MockTransport with fast retries, and the transport."""
    transport = MockTransport(handler)
    kwargs.setdefault("retry", FAST)
    return Client(base_url, key, transport=transport, **kwargs), transport


def grid() -> mjasync.Task:
    """A finished grid whose id is PARENT."""
    return decode_task(task_payload(PARENT, "SUCCESS"))


# -- an unknown parent on action / modal --------------------------------------------------


@pytest.mark.parametrize(
    ("response", "code"),
    [
        # new-api relay/mjproxy_handler.go: code 4 "task_not_found", HTTP 400 via relay.go.
        pytest.param(
            json_response(
                {"description": "task_not_found ", "type": "upstream_error", "code": 4}, 400
            ),
            4,
            id="newapi",
        ),
        # trueai SubmitController.cs Action: NotFound(SubmitResultVO.Fail(NOT_FOUND, ...)).
        pytest.param(
            json_response(
                {"code": 3, "description": "关联任务不存在或已失效", "result": None}, 404
            ),
            3,
            id="trueai",
        ),
    ],
)
async def test_action_on_an_unknown_parent_raises_task_not_found(
    response: Response, code: int
) -> None:
    """action() on a parent the server does not know: TaskNotFoundError(.task_id = parent)."""
    mj, transport = client(lambda r: response)
    async with mj:
        with pytest.raises(TaskNotFoundError) as info:
            await mj.action(grid(), "U1")

    assert info.value.task_id == PARENT
    assert info.value.code == code
    assert len(transport.requests) == 1


async def test_modal_on_an_unknown_task_raises_task_not_found() -> None:
    """trueai SubmitController.cs Modal answers 404 code 3 for an unknown modal task."""
    body = {"code": 3, "description": "关联任务不存在或已失效", "result": None}
    mj, _ = client(lambda r: json_response(body, 404))
    async with mj:
        with pytest.raises(TaskNotFoundError) as info:
            await mj.modal("1700000000000077", prompt="a fox --zoom 1.5")

    assert info.value.task_id == "1700000000000077"
    assert info.value.code == 3


async def test_action_with_no_account_is_not_task_not_found() -> None:
    """novicezk's code 3 "无可用的账号实例" names no task: a SubmitRejectedError."""
    mj, _ = client(lambda r: json_response({"code": 3, "description": "无可用的账号实例"}))
    async with mj:
        with pytest.raises(SubmitRejectedError) as info:
            await mj.action(grid(), "U1")

    assert type(info.value) is SubmitRejectedError
    assert "no Midjourney account" in str(info.value)


async def test_newapi_unknown_action_through_the_client() -> None:
    """new-api's distributor 400 for a customId it cannot map is a SubmitRejectedError."""
    body = {
        "error": {
            "message": "Invalid request: unknown_action:MJ::Picread::Retry (request id: 1)",
            "type": "new_api_error",
            "code": "",
        }
    }
    mj, transport = client(lambda r: json_response(body, 400))
    async with mj:
        with pytest.raises(SubmitRejectedError) as info:
            await mj.action(PARENT, "MJ::Picread::Retry")

    assert "unknown_action" in str(info.value)
    assert len(transport.requests) == 1


# -- auth errors say what to try (#9.3) ----------------------------------------------------

EMPTY_401 = Response(401)  # novicezk ApiAuthorizeInterceptor.java
TRUEAI_401 = Response(401, {"content-type": "text/plain"}, b"Authorization header missing.")
NEWAPI_401 = json_response(  # new-api middleware/auth.go TokenAuth
    {"error": {"message": "Invalid token (request id: 1)", "type": "new_api_error", "code": ""}},
    401,
)


@pytest.mark.parametrize(
    ("response", "auth", "header", "suggested"),
    [
        pytest.param(EMPTY_401, "bearer", "Authorization", ("mj-api-secret",), id="oss-bearer"),
        pytest.param(EMPTY_401, "authorization", "Authorization", ("mj-api-secret",), id="oss-raw"),
        pytest.param(EMPTY_401, "mj-api-secret", "mj-api-secret", (), id="oss-secret"),
        pytest.param(
            TRUEAI_401,
            "bearer",
            "Authorization",
            ("authorization", "mj-api-secret"),
            id="trueai-bearer",
        ),
        pytest.param(TRUEAI_401, "authorization", "Authorization", (), id="trueai-raw"),
        pytest.param(NEWAPI_401, "bearer", "Authorization", (), id="newapi-bearer"),
        pytest.param(NEWAPI_401, "mj-api-secret", "mj-api-secret", (), id="newapi-secret"),
    ],
)
async def test_auth_error_names_the_header_and_suggests_other_styles(
    response: Response, auth: str, header: str, suggested: tuple[str, ...]
) -> None:
    """The message says which header carried the key and what the 401's shape suggests."""
    mj, transport = client(lambda r: response, auth=auth)
    async with mj:
        with pytest.raises(AuthenticationError) as info:
            await mj.imagine("a cat")

    error = info.value
    message = str(error)
    assert (error.auth_style, error.auth_header, error.suggested_auth) == (auth, header, suggested)
    assert f'auth="{auth}"' in message
    assert header in message
    for style in suggested:
        assert f'try auth="{style}"' in message or f'or auth="{style}"' in message
    if not suggested:
        assert "check the key itself" in message
    assert "http://mj.test/mj/submit/imagine" in message
    assert KEY not in message
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    ("response", "suggested"),
    [
        pytest.param(EMPTY_401, ("mj-api-secret",), id="oss"),
        pytest.param(TRUEAI_401, ("authorization",), id="trueai"),
        pytest.param(NEWAPI_401, ("bearer",), id="newapi"),
    ],
)
async def test_auth_error_without_a_key_says_none_was_sent(
    response: Response, suggested: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key at all: the message says so, and names the style the server reads."""
    monkeypatch.delenv("MJ_API_KEY", raising=False)
    mj, _ = client(lambda r: response, key=None)
    async with mj:
        with pytest.raises(AuthenticationError) as info:
            await mj.fetch("1")

    assert info.value.auth_style is None
    assert info.value.auth_header is None
    assert info.value.suggested_auth == suggested
    assert "no API key was sent" in str(info.value)
    assert "MJ_API_KEY" in str(info.value)


async def test_auth_error_of_an_unknown_shape_still_says_how_the_key_went() -> None:
    """trueai's "账号已禁用" suggests no other style but is explained in English."""
    mj, _ = client(lambda r: Response(401, {}, "账号已禁用".encode()), auth="authorization")
    async with mj:
        with pytest.raises(AuthenticationError) as info:
            await mj.imagine("a cat")

    assert info.value.suggested_auth == ()
    assert info.value.description == "账号已禁用"
    assert "disabled" in str(info.value)
    assert '"Authorization: <key>"' in str(info.value)


# -- messages name the whole URL, never credentials ----------------------------------------


async def test_messages_name_scheme_host_mode_prefix_and_path() -> None:
    """A refusal names the whole URL, /mj-relax prefix included, without user:password@."""
    mj, _ = client(
        lambda r: json_response({"code": 4, "description": "关联任务状态错误"}),
        base_url="https://user:hunter22@mj.example:8443",
        mode="relax",
    )
    async with mj:
        with pytest.raises(SubmitRejectedError) as info:
            await mj.imagine("a cat")

    message = str(info.value)
    assert message.startswith("POST https://***@mj.example:8443/mj-relax/mj/submit/imagine: ")
    assert "hunter22" not in message
    assert "关联任务状态错误 (the task is not in a state that allows this)" in message
    assert info.value.description == "关联任务状态错误"


async def test_route_missing_on_fetch_is_route_not_found_naming_the_url() -> None:
    """A bare 404 on /task/{id}/fetch is a missing route, not an unknown task."""
    mj, _ = client(lambda r: Response(404))
    async with mj:
        with pytest.raises(RouteNotFoundError) as info:
            await mj.fetch("1700000000000001")

    assert info.value.url == "http://mj.test/mj/task/1700000000000001/fetch"
    assert "no such route" in str(info.value)


@pytest.mark.parametrize(
    "missing",
    [
        pytest.param(Response(200, {"content-type": "text/html"}, b"<html></html>"), id="newapi"),
        pytest.param(
            json_response(
                {"timestamp": "x", "status": 404, "error": "Not Found", "path": "/mj/x"}, 404
            ),
            id="spring",
        ),
        pytest.param(Response(405), id="405"),
    ],
)
async def test_list_route_fallback_works_with_route_not_found(missing: Response) -> None:
    """list-by-condition -> list-by-ids -> fetch still falls back on every route-missing shape."""

    def handler(request: Request) -> Response:
        if request.url.endswith(("/list-by-condition", "/list-by-ids")):
            return missing
        return json_response(task_payload(request.url.split("/")[-2], "IN_PROGRESS"))

    mj, transport = client(handler)
    async with mj:
        tasks = await mj.fetch_many(["1", "2"])

    assert sorted(t.id for t in tasks) == ["1", "2"]
    assert mj.batch_route == "fetch"
    assert len(transport.requests) == 4


# -- ids and prompts refused before sending (#8.8, #9.6) ------------------------------------


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("abc?", id="question-mark"),
        pytest.param("../../etc", id="dot-dot-path"),
        pytest.param("..", id="dot-dot"),
        pytest.param(".", id="dot"),
        pytest.param("a/b", id="slash"),
        pytest.param("a#b", id="hash"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("17 00", id="inner-space"),
        pytest.param("17\t00", id="tab"),
        pytest.param("17\x0000", id="nul"),
        pytest.param("17\x7f", id="del"),
        pytest.param("17\u200b00", id="zero-width"),
        pytest.param("1" * 129, id="too-long"),
        pytest.param("17\ud80000", id="surrogate"),
    ],
)
@pytest.mark.parametrize("call", ["fetch", "cancel", "image_seed", "await_task", "modal"])
async def test_bad_task_ids_are_refused_before_sending(task_id: str, call: str) -> None:
    """An id that is not one, or would change the URL's path, is refused; nothing is sent."""
    mj, transport = client(lambda r: json_response(submit_payload("1")))
    async with mj:
        with pytest.raises(InvalidRequestError):
            await getattr(mj, call)(task_id)

    assert transport.requests == []


async def test_bad_parent_id_on_action_is_refused() -> None:
    """action() refuses a parent id that would be a path too, before sending."""
    mj, transport = client(lambda r: json_response(submit_payload("1")))
    async with mj:
        with pytest.raises(InvalidRequestError):
            await mj.action("../x", "MJ::JOB::upsample::1::abc")

    assert transport.requests == []


@pytest.mark.parametrize(
    ("task_id", "segment"),
    [
        pytest.param("1700%41", "1700%2541", id="percent"),
        pytest.param("任务1", "%E4%BB%BB%E5%8A%A11", id="non-ascii"),
        pytest.param("a;b=c", "a%3Bb%3Dc", id="params"),
        pytest.param("1" * 128, "1" * 128, id="128-chars"),
    ],
)
async def test_task_ids_are_percent_encoded_in_paths(task_id: str, segment: str) -> None:
    """A legal id with reserved characters is one percent-encoded path segment."""
    mj, transport = client(lambda r: json_response(task_payload(task_id)))
    async with mj:
        await mj.fetch(task_id)

    (request,) = transport.requests
    assert request.url == f"http://mj.test/mj/task/{segment}/fetch"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda mj: mj.imagine("a fox \ud83e"), id="imagine"),
        pytest.param(lambda mj: mj.shorten("\udc00 a fox"), id="shorten"),
        pytest.param(lambda mj: mj.modal("1", prompt="a fox \ud800"), id="modal"),
        pytest.param(
            lambda mj: mj.edit("a fox \ud800", b"\x89PNG\r\n\x1a\n" + bytes(40)), id="edit"
        ),
        pytest.param(
            lambda mj: mj.video("a fox \ud800", image="https://cdn.example/a.png"), id="video"
        ),
    ],
)
async def test_prompts_that_are_not_valid_unicode_are_refused(
    call: Callable[[Client], Any],
) -> None:
    """A prompt with a lone surrogate cannot be sent as UTF-8: InvalidRequestError, nothing sent."""
    mj, transport = client(lambda r: json_response(submit_payload("1")))
    async with mj:
        with pytest.raises(InvalidRequestError, match="surrogate"):
            await call(mj)

    assert transport.requests == []


# -- the debug log (#9.6) --------------------------------------------------------------------


async def test_debug_log_has_method_url_status_time_and_retry_decisions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each request logs method, URL, status and time; each retry decision is logged too."""
    answers = iter(
        [
            mjasync.ConnectError("refused"),
            json_response(submit_payload("1700000000000001")),
            mjasync.RequestTimeoutError("slow"),
        ]
    )

    def handler(request: Request) -> Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    caplog.set_level(logging.DEBUG, logger="mjasync")
    mj, _ = client(handler, headers={"X-Api-Token": "tok-abcdefgh"})
    png_bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(2984)
    png = "data:image/png;base64," + base64.b64encode(png_bytes).decode()
    async with mj:
        await mj.imagine("a cat", images=[png])
        with pytest.raises(mjasync.RequestTimeoutError):
            await mj.imagine("a dog")

    lines = [record.getMessage() for record in caplog.records if record.name == "mjasync"]
    text = "\n".join(lines)
    url = "POST http://mj.test/mj/submit/imagine"
    assert any(line.startswith(f"{url}: sending") for line in lines)
    assert any(f"{url}: HTTP 200 in " in line and "s (" in line for line in lines)
    assert f"retrying {url} in " in text
    assert "after ConnectError (try 2 of 3)" in text
    assert f"giving up on {url} after RequestTimeoutError" in text
    assert "may have reached the server" in text
    assert "<data:image/png;base64, 4,000 chars>" in text
    assert base64.b64encode(png_bytes).decode()[:100] not in text
    assert KEY not in text
    assert "tok-abcdefgh" not in text


async def test_debug_log_redacts_a_key_the_server_echoes(caplog: pytest.LogCaptureFixture) -> None:
    """A server that quotes the key back has it redacted in the logged answer too."""
    caplog.set_level(logging.DEBUG, logger="mjasync")
    body = {"code": 4, "description": f"bad token Bearer {KEY}"}
    mj, _ = client(lambda r: json_response(body))
    async with mj:
        with pytest.raises(SubmitRejectedError):
            await mj.imagine("a cat")

    assert KEY not in caplog.text
    assert "HTTP 200" in caplog.text


# -- a server echoing the key (#8.2) ------------------------------------------------------


ECHOES = [
    pytest.param(
        lambda r: json_response({"code": 4, "description": f"unknown key {KEY}"}), id="desc"
    ),
    pytest.param(
        lambda r: Response(401, {}, f"Authorization header missing. got: {KEY}".encode()),
        id="401-text",
    ),
    pytest.param(
        lambda r: Response(
            502,
            {"content-type": "text/html"},
            f"<html><pre>Authorization: Bearer {KEY}</pre>".encode(),
        ),
        id="502-html",
    ),
    pytest.param(
        lambda r: json_response(
            {"error": {"message": f"token {KEY} invalid", "type": "new_api_error"}}, 400
        ),
        id="newapi",
    ),
    pytest.param(
        lambda r: Response(200, {"content-type": "text/html"}, f"<p>{KEY}</p>".encode()),
        id="html-200",
    ),
]


@pytest.mark.parametrize("handler", ECHOES)
@pytest.mark.parametrize("auth", ["bearer", "authorization", "mj-api-secret"])
async def test_a_key_echoed_by_the_server_is_redacted(handler: Any, auth: str) -> None:
    """str(exc), .description, .body and args hold no key, whatever the server sent back."""
    mj, _ = client(handler, auth=auth, retry=RetryPolicy(attempts=1))
    async with mj:
        with pytest.raises(mjasync.APIError) as info:
            await mj.imagine("a cat")

    error = info.value
    everything = [str(error), repr(error), repr(error.args), repr(vars(error))]
    everything.append(json.dumps(error.body, ensure_ascii=False, default=str))
    for text in everything:
        assert KEY not in text
    assert "***" in str(error) or "***" in json.dumps(error.body, default=str)


async def test_trueai_result_fail_on_403_is_not_mistaken_for_new_api() -> None:
    """trueai Filters/CustomActionFilterAttribute.cs turns a 403 into Result.Fail("您无权限访问"):
    trueai's shape, so no new-api style is suggested."""
    body = {"success": False, "code": -1, "message": "您无权限访问", "timestamp": "1"}
    mj, _ = client(lambda r: json_response(body, 403), auth="authorization")
    async with mj:
        with pytest.raises(AuthenticationError) as info:
            await mj.imagine("a cat")

    assert info.value.suggested_auth == ()
    assert "new-api" not in str(info.value)
    assert "no permission" in str(info.value)


async def test_a_key_passed_in_headers_counts_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key given through headers= (no api_key) is reported by its header, not as missing."""
    monkeypatch.delenv("MJ_API_KEY", raising=False)
    mj, _ = client(lambda r: EMPTY_401, key=None, headers={"Authorization": f"Bearer {KEY}"})
    async with mj:
        with pytest.raises(AuthenticationError) as info:
            await mj.imagine("a cat")

    assert info.value.auth_style == "bearer"
    assert info.value.suggested_auth == ("mj-api-secret",)
    assert "no API key was sent" not in str(info.value)
    assert KEY not in str(info.value)


async def test_token_query_values_are_redacted_from_messages() -> None:
    """A notify hook URL echoed in an error keeps its path but loses its token= value."""
    text = "bad notifyHook https://app.example/hook?token=s3cr3t-hook-token&x=1"
    mj, _ = client(lambda r: json_response({"code": 4, "description": text}))
    async with mj:
        with pytest.raises(SubmitRejectedError) as info:
            await mj.imagine("a cat")

    assert "s3cr3t-hook-token" not in str(info.value)
    assert "https://app.example/hook?token=***&x=1" in str(info.value)
