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
    RetryPolicy,
    ServerError,
    SubmitRejectedError,
    TaskNotFoundError,
)
from mjasync._responses import read_body, submission_or_raise
from mjasync._transport import Response
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
    """trueai's {success:false, code:-1, message} raises SubmitRejectedError with the message."""
    with pytest.raises(SubmitRejectedError) as info:
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
        pytest.param(403, b"", None, id="blacklist-403-empty"),
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
def test_200_with_non_json_is_decode_error(content: bytes) -> None:
    """HTTP 200 whose body is not JSON raises DecodeError carrying the text."""
    with pytest.raises(DecodeError) as info:
        read_body(Response(200, {}, content), WHERE)

    assert info.value.status == 200
    assert isinstance(info.value.body, str)


@pytest.mark.parametrize("body", [[], "text", 5, {"description": "no code"}])
def test_200_json_that_is_no_submit_answer_is_decode_error(body: object) -> None:
    """A submit answered with JSON that is not {code, ...} raises DecodeError."""
    with pytest.raises(DecodeError):
        submit(body_response(body))


def test_empty_200_on_a_submit_is_decode_error() -> None:
    """A submit answered with an empty 200 raises DecodeError, not a Submission without id."""
    with pytest.raises(DecodeError):
        submit(Response(200))


def test_404_without_code_is_not_found() -> None:
    """A bare 404 (route missing) raises NotFoundError, not TaskNotFoundError."""
    with pytest.raises(NotFoundError) as info:
        read_body(Response(404, {}, b"Not Found"), "POST /submit/shorten")

    assert type(info.value) is NotFoundError


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
        pytest.param(Response(404, {}, b""), id="404"),
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
