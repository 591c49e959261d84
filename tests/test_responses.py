"""Response mapping: every error shape of reference §4 becomes the right exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

import mjasync
from mjasync import (
    APIError,
    AuthenticationError,
    BannedPromptError,
    DecodeError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    Response,
    RetryPolicy,
    RouteNotFoundError,
    ServerError,
    SubmitRejectedError,
    TaskNotFoundError,
)
from mjasync._responses import read_body, submission_or_raise
from mjasync.testing import MockTransport

PAYLOADS = Path(__file__).parent / "payloads"
WHERE = "POST /submit/imagine"


def payload_response(name: str, status: int = 200, **headers: str) -> Response:
    """A response carrying the captured payload *name* verbatim."""
    content = (PAYLOADS / name).read_bytes()
    return Response(status, {"content-type": "application/json", **headers}, content)


def body_response(body: object, status: int = 200, **headers: str) -> Response:
    """A response carrying *body* as JSON."""
    return Response(
        status, {"content-type": "application/json", **headers}, json.dumps(body).encode()
    )


def submit(response: Response) -> mjasync.Submission:
    """Map a submit response the way Client._submit does."""
    return submission_or_raise(read_body(response, WHERE), WHERE, response.status)


# -- accepted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        pytest.param("submit_accepted_oss.json", 1, id="code-1"),
        pytest.param("submit_modal_plus.json", 21, id="code-21-modal"),
        pytest.param("submit_queued_oss.json", 22, id="code-22-queued"),
    ],
)
def test_accepting_codes_return_a_submission(name: str, code: int) -> None:
    """HTTP 200 with code 1, 21 or 22 returns the Submission with its task id."""
    submission = submit(payload_response(name))

    assert submission.code == code
    assert submission.task_id


def test_accepted_without_task_id_is_a_decode_error() -> None:
    """Code 1 with no result cannot be polled, so it is a DecodeError, not a Submission."""
    with pytest.raises(DecodeError) as info:
        submit(body_response({"code": 1, "description": "ok", "result": None}))

    assert info.value.code == 1


# -- business rejections -----------------------------------------------------------------


def test_code_23_is_queue_full() -> None:
    """PLUS/OSS code 23 raises QueueFullError with its properties."""
    with pytest.raises(QueueFullError) as info:
        submit(payload_response("submit_queue_full_plus.json"))

    assert (info.value.status, info.value.code) == (200, 23)
    assert info.value.properties["numberOfQueues"] == 10


def test_trueai_code_9_queue_full_text_is_queue_full() -> None:
    """trueai's code 9 "提交失败，队列已满，请稍后重试" raises QueueFullError."""
    with pytest.raises(QueueFullError) as info:
        submit(payload_response("submit_queue_full_trueai.json"))

    assert info.value.code == 9
    assert info.value.description == "提交失败，队列已满，请稍后重试"


def test_code_9_with_other_text_is_a_plain_rejection() -> None:
    """Code 9 without the queue-full text is a SubmitRejectedError, not QueueFullError."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(body_response({"code": 9, "description": "当前账号不支持编辑/重绘任务"}))

    assert type(info.value) is SubmitRejectedError
    assert info.value.code == 9


def test_code_24_is_banned_prompt_with_banned_word() -> None:
    """Code 24 raises BannedPromptError naming the banned word."""
    with pytest.raises(BannedPromptError) as info:
        submit(payload_response("submit_banned_plus.json"))

    assert info.value.banned_word == "nude"
    assert "nude" in str(info.value)
    assert info.value.properties["promptEn"] == "a nude statue"


def test_code_4_is_submit_rejected() -> None:
    """Code 4 (validation) raises SubmitRejectedError with code and description."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(payload_response("submit_validation_oss.json"))

    assert type(info.value) is SubmitRejectedError
    assert (info.value.code, info.value.description) == (4, "prompt不能为空")
    assert "prompt不能为空" in str(info.value)


def test_code_3_on_action_is_an_api_error_with_code_3() -> None:
    """An action on an unknown parent (HTTP 200, code 3) raises an APIError whose code is 3."""
    with pytest.raises(APIError) as info:
        submit(body_response({"code": 3, "description": "关联任务不存在或已失效"}))

    assert info.value.code == 3


def test_trueai_404_with_code_3_on_action() -> None:
    """trueai's 404 with a submit-shaped code-3 body raises an APIError with code 3."""
    with pytest.raises(APIError) as info:
        submit(payload_response("error_trueai_404_unknown_parent.json", 404))

    assert (info.value.status, info.value.code) == (404, 3)
    assert info.value.description == "关联任务不存在或已失效"


def test_trueai_404_with_code_3_on_a_task_query_is_task_not_found() -> None:
    """The same 404 + code 3 on a per-task query (image-seed) raises TaskNotFoundError."""
    response = payload_response("error_trueai_404_unknown_parent.json", 404)

    with pytest.raises(TaskNotFoundError) as info:
        read_body(response, "GET /task/9/image-seed", task_id="9")

    assert info.value.task_id == "9"
    assert info.value.code == 3


@pytest.mark.parametrize("status", [200, 400])
def test_trueai_result_fail_shape(status: int) -> None:
    """trueai's {success:false, code:-1, message} "并发数已达上限" is a "not now" QueueFullError."""
    with pytest.raises(QueueFullError) as info:
        submit(payload_response("error_trueai_result_fail.json", status))

    assert info.value.code == -1
    assert info.value.description == "并发数已达上限"
    assert info.value.status == status


def test_trueai_result_fail_with_queue_text_is_queue_full() -> None:
    """trueai's Result.Fail "队列数已达上限" is a queue-full refusal."""
    with pytest.raises(QueueFullError):
        submit(body_response({"success": False, "code": -1, "message": "队列数已达上限"}))


# -- new-api's own errors ---------------------------------------------------------------


def test_newapi_400_shape() -> None:
    """new-api's HTTP 400 {description, type, code} raises with its code and description."""
    with pytest.raises(BannedPromptError) as info:
        submit(payload_response("error_newapi_banned.json", 400))

    assert (info.value.status, info.value.code) == (400, 24)
    assert info.value.description == "提示词包含违禁词"
    assert info.value.body == {
        "description": "提示词包含违禁词 ",
        "type": "upstream_error",
        "code": 24,
    }


def test_newapi_400_validation_is_submit_rejected() -> None:
    """new-api's 400 with code 4 on a submit is a SubmitRejectedError."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(body_response({"description": "prompt_is_required", "type": "x", "code": 4}, 400))

    assert (info.value.status, info.value.code) == (400, 4)


def test_newapi_429_code_30_is_rate_limit() -> None:
    """new-api's HTTP 429 with code 30 raises RateLimitError."""
    with pytest.raises(RateLimitError) as info:
        submit(payload_response("error_newapi_rate_limited.json", 429))

    assert (info.value.status, info.value.code) == (429, 30)
    assert info.value.retry_after is None


def test_code_30_with_http_200_is_rate_limit() -> None:
    """Relay code 30 means rate limited whatever the HTTP status."""
    with pytest.raises(RateLimitError):
        submit(body_response({"code": 30, "description": "busy"}))


# -- HTTP-level failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content", "description"),
    [
        pytest.param(401, b"", None, id="oss-401-empty"),
        pytest.param(
            401, b"Authorization header missing.", "Authorization header missing.", id="t"
        ),
        pytest.param(401, "账号已禁用".encode(), "账号已禁用", id="trueai-401-disabled"),
        pytest.param(403, "账号不可用".encode(), "账号不可用", id="trueai-403"),
        pytest.param(401, b'{"description":"invalid key","code":1}', "invalid key", id="json"),
    ],
)
def test_auth_failures(status: int, content: bytes, description: str | None) -> None:
    """401 and 403, with empty, text or JSON bodies, raise AuthenticationError."""
    with pytest.raises(AuthenticationError) as info:
        read_body(Response(status, {}, content), WHERE)

    assert info.value.status == status
    assert info.value.description == description


def test_429_with_retry_after_seconds() -> None:
    """An empty 429 with Retry-After in seconds carries retry_after."""
    with pytest.raises(RateLimitError) as info:
        read_body(Response(429, {"retry-after": "7"}), WHERE)

    assert info.value.retry_after == 7.0
    assert info.value.status == 429


def test_429_with_retry_after_http_date() -> None:
    """An empty 429 with Retry-After as an HTTP date carries the seconds until then."""
    when = datetime.now(UTC) + timedelta(seconds=120)

    with pytest.raises(RateLimitError) as info:
        read_body(Response(429, {"retry-after": format_datetime(when, usegmt=True)}), WHERE)

    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120


@pytest.mark.parametrize("value", ["", "soon", "Mon, 99 Foo 2025"])
def test_429_with_garbage_retry_after(value: str) -> None:
    """An unparseable Retry-After leaves retry_after None."""
    with pytest.raises(RateLimitError) as info:
        read_body(Response(429, {"retry-after": value}), WHERE)

    assert info.value.retry_after is None


def test_429_with_past_date_is_zero() -> None:
    """A Retry-After date in the past means retry now, not a negative wait."""
    when = datetime.now(UTC) - timedelta(hours=1)

    with pytest.raises(RateLimitError) as info:
        read_body(Response(429, {"retry-after": format_datetime(when, usegmt=True)}), WHERE)

    assert info.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("status", "content"),
    [
        pytest.param(500, b"", id="500-empty"),
        pytest.param(502, b"<html><body>502 Bad Gateway</body></html>", id="502-html"),
        pytest.param(503, b"Service Unavailable", id="503-text"),
        pytest.param(500, b'{"timestamp":"x","status":500,"error":"Internal"}', id="spring"),
        pytest.param(500, '{"code":9,"description":"系统异常"}'.encode(), id="500-with-code"),
    ],
)
def test_5xx_is_server_error(status: int, content: bytes) -> None:
    """HTTP 5xx raises ServerError, whatever the body, so queries retry it."""
    with pytest.raises(ServerError) as info:
        read_body(Response(status, {}, content), WHERE)

    assert info.value.status == status


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"<html>maintenance</html>", id="html"),
        pytest.param(b"OK", id="text"),
        pytest.param(b"\xff\xfe\xfd", id="binary"),
    ],
)
def test_200_that_is_not_json_is_route_not_found(content: bytes) -> None:
    """HTTP 200 whose body is not JSON at all is not the proxy: RouteNotFoundError with the text."""
    with pytest.raises(RouteNotFoundError) as info:
        read_body(Response(200, {}, content), WHERE)

    assert info.value.status == 200
    assert isinstance(info.value.body, str)


@pytest.mark.parametrize("content", [b'{"code": 1, "result": "17', b"[{", b'"unterminated'])
def test_200_with_broken_json_is_decode_error(content: bytes) -> None:
    """A body that starts as JSON but breaks off is a broken proxy answer: DecodeError.

    It may be the answer to a submit that created a task, so it must stay MAYBE_SENT.
    """
    with pytest.raises(DecodeError) as info:
        read_body(Response(200, {"content-type": "application/json"}, content), WHERE)

    assert mjasync.delivery_of(info.value) is mjasync.Delivery.MAYBE_SENT


@pytest.mark.parametrize("body", [[], "text", 5, {"description": "no code"}])
def test_200_json_that_is_no_submit_answer_is_decode_error(body: object) -> None:
    """A submit answered with JSON that is not {code, ...} raises DecodeError."""
    with pytest.raises(DecodeError):
        submit(body_response(body))


def test_empty_200_on_a_submit_is_decode_error() -> None:
    """A submit answered with an empty 200 raises DecodeError, not a Submission without id."""
    with pytest.raises(DecodeError):
        submit(Response(200))


def test_404_without_code_is_route_not_found() -> None:
    """A bare 404 (route missing) raises RouteNotFoundError, a NotFoundError."""
    with pytest.raises(NotFoundError) as info:
        read_body(Response(404, {}, b"Not Found"), "POST http://mj.test/mj/submit/shorten")

    assert type(info.value) is RouteNotFoundError


def test_other_4xx_is_api_error() -> None:
    """Any other 4xx without a code is a plain APIError with the status."""
    with pytest.raises(APIError) as info:
        read_body(Response(400, {}, "演示模式，禁止操作".encode()), "POST /task/1/cancel")

    assert info.value.status == 400
    assert info.value.description == "演示模式，禁止操作"


# -- fetch of an unknown task fails at once ----------------------------------------------


def not_found_client(response: Response) -> mjasync.Client:
    """A client whose every request gets *response*."""
    return mjasync.Client(
        "http://mj.test",
        "k",
        transport=MockTransport(lambda request: response),
        retry=RetryPolicy(attempts=3, backoff=0.001),
    )


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(Response(200), id="oss-200-empty"),
        pytest.param(Response(200, {}, b"null"), id="json-null"),
        pytest.param(Response(200, {}, b"{}"), id="empty-object"),
        pytest.param(Response(204), id="trueai-204"),
        pytest.param(payload_response("error_newapi_task_not_found.json", 400), id="newapi-400"),
        pytest.param(
            payload_response("error_trueai_404_unknown_parent.json", 404), id="404-code-3"
        ),
    ],
)
async def test_fetch_unknown_task_raises_task_not_found_at_once(response: Response) -> None:
    """Every dialect's "no such task" answer raises TaskNotFoundError after one request."""
    async with not_found_client(response) as mj:
        with pytest.raises(TaskNotFoundError) as info:
            await mj.fetch("1700000000000404")
        sent = mj.requests_sent

    assert info.value.task_id == "1700000000000404"
    assert sent == 1


def test_task_not_found_is_a_not_found_error() -> None:
    """TaskNotFoundError is caught by except NotFoundError."""
    response = payload_response("error_newapi_task_not_found.json", 400)

    with pytest.raises(NotFoundError):
        read_body(response, "GET /task/1/fetch", task_id="1")


def test_error_bodies_are_kept() -> None:
    """The decoded body rides on the exception for callers that want the details."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(payload_response("error_trueai_result_fail.json"))

    body: Any = info.value.body
    assert body["timestamp"].startswith("2025-11-12")


# -- shapes read in the servers' source (issue #7) ---------------------------------------

ACTION_URL = "POST http://mj.test/mj/submit/action"


def test_newapi_unknown_action_is_submit_rejected() -> None:
    """new-api's distributor refuses a customId it cannot map with its own 400 error shape.

    Body: middleware/distributor.go abortWithOpenAiMessage(400, i18n
    "distributor.invalid_request" = "Invalid request: {{.Error}}") with the error from
    service/midjourney.go CoverPlusActionToNormalAction ("unknown_action:" + customId),
    plus common.MessageWithRequestId's " (request id: ...)".
    """
    body = {
        "error": {
            "message": (
                "Invalid request: unknown_action:MJ::Picread::Retry (request id: 2025111215)"
            ),
            "type": "new_api_error",
            "code": "",
        }
    }

    with pytest.raises(SubmitRejectedError) as info:
        read_body(body_response(body, 400), ACTION_URL, task_id="1700000000000001")

    assert type(info.value) is SubmitRejectedError
    assert info.value.status == 400
    assert "unknown_action:MJ::Picread::Retry" in str(info.value)
    assert info.value.description is not None
    assert info.value.description.startswith("Invalid request: unknown_action")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        # new-api relay/mjproxy_handler.go RelayMidjourneySubmit: GetByMJId(...) == nil ->
        # MidjourneyErrorWrapper(MjRequestError=4, "task_not_found"); controller/relay.go
        # writes {"description": "<desc> <result>", "type": "upstream_error", "code": 4}.
        pytest.param(
            {"description": "task_not_found ", "type": "upstream_error", "code": 4},
            400,
            4,
            id="newapi-task_not_found",
        ),
        # trueai SubmitController.cs Action/Modal: NotFound(SubmitResultVO.Fail(NOT_FOUND,
        # "关联任务不存在或已失效")).
        pytest.param(
            {"code": 3, "description": "关联任务不存在或已失效", "result": None, "properties": {}},
            404,
            3,
            id="trueai-404-code-3",
        ),
        # novicezk SubmitController.java change(): fail(NOT_FOUND, "关联任务不存在或已失效"),
        # with HTTP 200.
        pytest.param({"code": 3, "description": "关联任务不存在或已失效"}, 200, 3, id="oss-code-3"),
    ],
)
def test_unknown_parent_is_task_not_found(body: dict[str, Any], status: int, code: int) -> None:
    """An action on an unknown parent raises TaskNotFoundError naming the parent, code as sent."""
    with pytest.raises(TaskNotFoundError) as info:
        submission_or_raise(
            read_body(body_response(body, status), ACTION_URL, task_id="1700000000000042"),
            ACTION_URL,
            status,
            task_id="1700000000000042",
        )

    assert info.value.task_id == "1700000000000042"
    assert info.value.code == code
    assert info.value.status == status


@pytest.mark.parametrize(
    "description",
    [
        # novicezk TaskServiceImpl.java / trueai TaskService.cs: fail(NOT_FOUND, "无可用的账号实例")
        pytest.param("无可用的账号实例", id="no-account"),
        # novicezk TaskServiceImpl.java: fail(NOT_FOUND, "账号不可用: " + instanceId)
        pytest.param("账号不可用: 1118138338562560102", id="account-unavailable"),
        # trueai TaskService.cs SubmitSeed: Fail(NOT_FOUND, "未找到 seed")
        pytest.param("未找到 seed", id="no-seed"),
    ],
)
def test_code_3_that_is_not_about_the_task_is_a_rejection(description: str) -> None:
    """Code 3 also means "no account" or "no seed": those are rejections, not unknown tasks."""
    with pytest.raises(SubmitRejectedError) as info:
        submission_or_raise(
            {"code": 3, "description": description}, ACTION_URL, task_id="1700000000000042"
        )

    assert type(info.value) is SubmitRejectedError
    assert info.value.code == 3


def test_trueai_concurrency_cap_on_imagine_is_queue_full() -> None:
    """trueai SubmitController.cs Imagine catches LogicException("并发数已达上限") as code 4."""
    with pytest.raises(QueueFullError) as info:
        submit(body_response({"code": 4, "description": "并发数已达上限", "result": None}))

    assert info.value.code == 4
    assert info.value.description == "并发数已达上限"
    assert mjasync.delivery_of(info.value) is mjasync.Delivery.REJECTED


@pytest.mark.parametrize("text", ["并发数已达上限", "队列数已达上限"])
def test_trueai_caps_elsewhere_are_queue_full(text: str) -> None:
    """Other submits get the cap through CustomLogicExceptionFilterAttribute.cs: Result.Fail."""
    body = {"success": False, "code": -1, "message": text, "timestamp": "638670000000000000"}

    with pytest.raises(QueueFullError) as info:
        submit(body_response(body))

    assert info.value.code == -1
    assert info.value.description == text


def test_trueai_daily_limit_is_not_queue_full() -> None:
    """ "今日绘图次数已达上限" is a daily quota, not "retry in a moment": a plain rejection."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(body_response({"code": 4, "description": "用户今日绘图次数已达上限"}))

    assert type(info.value) is SubmitRejectedError


def test_trueai_empty_403_is_rate_limit() -> None:
    """trueai RateLimitingMiddleware.cs sets StatusCode 403 and writes nothing for its IP
    rate limiter and blacklists; its auth refusals always write a text. So: RateLimitError."""
    with pytest.raises(RateLimitError) as info:
        read_body(Response(403, {}, b""), WHERE)

    assert info.value.status == 403
    assert "rate limit" in str(info.value)
    assert mjasync.delivery_of(info.value) is mjasync.Delivery.REJECTED


def test_trueai_ip_rate_limit_429_is_rate_limit() -> None:
    """The same middleware's plain rate rules answer 429 with no body."""
    with pytest.raises(RateLimitError):
        read_body(Response(429, {}, b""), WHERE)


ROUTE_MISSING = [
    # novicezk (Spring Boot): an unknown path gets BasicErrorController's JSON.
    pytest.param(
        404,
        {"content-type": "application/json"},
        b'{"timestamp":"2025-11-12T07:44:12.123+00:00","status":404,"error":"Not Found",'
        b'"path":"/mj/task/1700000000000001/cancel"}',
        id="spring-404",
    ),
    pytest.param(
        405,
        {"content-type": "application/json"},
        b'{"timestamp":"2025-11-12T07:44:12.123+00:00","status":405,'
        b'"error":"Method Not Allowed","path":"/mj/task/list"}',
        id="spring-405",
    ),
    # trueai (ASP.NET Core endpoint routing): no endpoint, nothing written.
    pytest.param(404, {}, b"", id="aspnet-empty-404"),
    pytest.param(405, {}, b"", id="aspnet-empty-405"),
    pytest.param(
        404, {"content-type": "text/html"}, b"<html><body>404</body></html>", id="html-404"
    ),
    # new-api router/web-router.go NoRoute: c.Data(200, "text/html; charset=utf-8", IndexPage)
    pytest.param(
        200,
        {"content-type": "text/html; charset=utf-8"},
        b'<!doctype html><html lang="zh"><head><title>New API</title></head><body>'
        b'<div id="root"></div></body></html>',
        id="newapi-200-html",
    ),
    pytest.param(
        400,
        {"content-type": "text/html"},
        b"<html><head><title>400 The plain HTTP request was sent to HTTPS port</title>"
        b"</head></html>",
        id="nginx-400-html",
    ),
]


@pytest.mark.parametrize(("status", "headers", "content"), ROUTE_MISSING)
@pytest.mark.parametrize("task_id", [None, "1700000000000001"])
def test_a_missing_route_is_route_not_found_never_task_not_found(
    status: int, headers: dict[str, str], content: bytes, task_id: str | None
) -> None:
    """A route the server lacks raises RouteNotFoundError, on task routes too, naming the URL."""
    where = "POST https://mj.example:8443/mj-relax/mj/task/1700000000000001/cancel"

    with pytest.raises(RouteNotFoundError) as info:
        read_body(Response(status, headers, content), where, task_id=task_id)

    message = str(info.value)
    assert not isinstance(info.value, TaskNotFoundError)
    assert info.value.url == "https://mj.example:8443/mj-relax/mj/task/1700000000000001/cancel"
    assert "no such route" in message
    assert "https://mj.example:8443/mj-relax/mj/task/1700000000000001/cancel" in message
    assert "MJ_BASE_URL" in message
    assert "supports POST /mj-relax/mj/task/1700000000000001/cancel" in message
    assert mjasync.delivery_of(info.value) is mjasync.Delivery.REJECTED


def test_a_404_with_the_proxy_json_on_fetch_stays_task_not_found() -> None:
    """trueai's 404 carries a submit-shaped code 3 body: that is the proxy speaking."""
    where = "GET http://mj.test/mj/task/9/fetch"

    with pytest.raises(TaskNotFoundError):
        read_body(payload_response("error_trueai_404_unknown_parent.json", 404), where, task_id="9")


def test_a_413_page_is_not_a_missing_route() -> None:
    """nginx's 413 page for a too-large image says something about the request, not the route."""
    page = b"<html><head><title>413 Request Entity Too Large</title></head></html>"

    with pytest.raises(APIError) as info:
        read_body(Response(413, {"content-type": "text/html"}, page), WHERE)

    assert type(info.value) is APIError


# -- Chinese texts get their English next to them (#9) -----------------------------------


@pytest.mark.parametrize(
    ("text", "english"),
    [
        pytest.param("关联任务状态错误", "not in a state that allows this", id="oss-state"),
        pytest.param("任务状态错误", "not in a state that allows this", id="state"),
        pytest.param("关联任务不存在或已失效", "does not exist or has expired", id="missing"),
        pytest.param("无可用的账号实例", "no Midjourney account", id="no-account"),
        pytest.param("提交失败，队列已满，请稍后重试", "queue is full", id="queue"),
        pytest.param("禁止上传", "send image URLs", id="upload"),
        pytest.param("未知的 Action 类型", "unknown action", id="action"),
        pytest.param("base64格式错误", "base64", id="base64"),
        pytest.param("prompt不能为空", "prompt is empty", id="prompt"),
    ],
)
def test_server_text_is_explained_and_kept_verbatim(text: str, english: str) -> None:
    """str(exc) shows "原文 (English)"; .description keeps the server's text as sent."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(body_response({"code": 4 if "队列" not in text else 9, "description": text}))

    assert info.value.description == text
    assert f"{text} (" in str(info.value)
    assert english in str(info.value)


def test_text_without_chinese_is_left_alone() -> None:
    """English descriptions get no parenthesis."""
    with pytest.raises(SubmitRejectedError) as info:
        submit(body_response({"code": 4, "description": "bad parameters"}))

    assert "bad parameters (code 4" in str(info.value)


def test_demo_mode_refusal_is_explained() -> None:
    """trueai TaskController.cs Cancel: BadRequest("演示模式，禁止操作") for a non-admin key."""
    with pytest.raises(APIError) as info:
        read_body(
            Response(400, {"content-type": "text/plain"}, "演示模式，禁止操作".encode()), WHERE
        )

    assert info.value.description == "演示模式，禁止操作"
    assert "administrator" in str(info.value)
    assert type(info.value) is APIError
