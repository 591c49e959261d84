"""The exception tree: the shape DESIGN.md draws, pickling, module names, and no leaked keys."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync import (
    APIError,
    AuthenticationError,
    BannedPromptError,
    ButtonNotFoundError,
    ClientClosedError,
    ConnectError,
    DecodeError,
    InvalidRequestError,
    MJError,
    ModalRequiredError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    Request,
    RequestTimeoutError,
    Response,
    RetryPolicy,
    RouteNotFoundError,
    ServerError,
    SubmitRejectedError,
    Task,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
    TransportError,
)
from mjasync.testing import MockTransport, decode_task, json_response, task_payload

SECRET = "sk-SECRET-123"

# (exception, direct parent inside mjasync, builtin mixins it must also be)
HIERARCHY: list[
    tuple[type[BaseException], type[BaseException], tuple[type[BaseException], ...]]
] = [
    (InvalidRequestError, MJError, (ValueError,)),
    (ButtonNotFoundError, MJError, (LookupError,)),
    (TransportError, MJError, (ConnectionError,)),
    (ConnectError, TransportError, (ConnectionError,)),
    (RequestTimeoutError, TransportError, (TimeoutError, ConnectionError)),
    (APIError, MJError, ()),
    (AuthenticationError, APIError, ()),
    (RateLimitError, APIError, ()),
    (ServerError, APIError, ()),
    (NotFoundError, APIError, ()),
    (TaskNotFoundError, NotFoundError, ()),
    (RouteNotFoundError, NotFoundError, ()),
    (SubmitRejectedError, APIError, ()),
    (QueueFullError, SubmitRejectedError, ()),
    (BannedPromptError, SubmitRejectedError, ()),
    (DecodeError, APIError, ()),
    (TaskError, MJError, ()),
    (TaskFailedError, TaskError, ()),
    (TaskCancelledError, TaskError, ()),
    (ModalRequiredError, TaskError, ()),
    (TaskTimeoutError, MJError, (TimeoutError,)),
    (ClientClosedError, MJError, (RuntimeError,)),
    (mjasync.LocalFileError, MJError, (OSError,)),
]


@pytest.mark.parametrize(
    ("error", "parent", "mixins"), [pytest.param(*row, id=row[0].__name__) for row in HIERARCHY]
)
def test_hierarchy_matches_design(
    error: type[BaseException], parent: type[BaseException], mixins: tuple[type[BaseException], ...]
) -> None:
    """Each exception derives from the parent DESIGN.md draws and from its builtin mixins."""
    assert issubclass(error, parent)
    assert issubclass(error, MJError)
    for mixin in mixins:
        assert issubclass(error, mixin)


@pytest.mark.parametrize(
    ("error", "not_a"),
    [
        pytest.param(APIError, ConnectionError, id="api-is-not-connection"),
        pytest.param(TaskTimeoutError, ConnectionError, id="task-timeout-is-not-transport"),
        pytest.param(TaskError, LookupError, id="task-error-is-not-lookup"),
        pytest.param(DecodeError, ValueError, id="decode-is-not-value-error"),
        pytest.param(ServerError, ConnectionError, id="server-error-is-not-connection"),
    ],
)
def test_no_accidental_mixins(error: type[BaseException], not_a: type[BaseException]) -> None:
    """Branches the tree keeps apart stay apart (an except ValueError must not eat DecodeError)."""
    assert not issubclass(error, not_a)


def test_every_exported_exception_is_in_the_tree() -> None:
    """Every exception class mjasync exports is one of the classes the tree lists, or MJError."""
    exported = {
        obj
        for name in mjasync.__all__
        if isinstance(obj := getattr(mjasync, name), type) and issubclass(obj, BaseException)
    }

    assert exported == {row[0] for row in HIERARCHY} | {MJError}


@pytest.mark.parametrize("name", [n for n in mjasync.__all__ if n.endswith("Error")])
def test_exceptions_report_module_mjasync(name: str) -> None:
    """Tracebacks say mjasync.X, not mjasync._errors.X."""
    assert getattr(mjasync, name).__module__ == "mjasync"


def snapshot(status: str = "FAILURE", **extra: Any) -> Task:
    """A decoded task snapshot for TaskError payloads."""
    return decode_task(task_payload("1700000000000009", status, failReason="任务超时", **extra))


def all_instances() -> list[MJError]:
    """One instance of every exception, each with its fields set."""
    common: dict[str, Any] = {"status": 400, "code": 4, "description": "bad", "body": {"code": 4}}
    return [
        MJError("root"),
        InvalidRequestError("prompt must be a non-empty string"),
        ButtonNotFoundError("no button", key="U9", available=("U1", "U2")),
        ClientClosedError("closed"),
        TransportError("connection reset"),
        ConnectError("refused"),
        RequestTimeoutError("no response in time"),
        APIError("generic", **common),
        AuthenticationError("401", status=401, body=""),
        RateLimitError("429", retry_after=2.5, status=429, code=30, description="slow down"),
        ServerError("500", status=500, body="<html>"),
        NotFoundError("404", status=404),
        TaskNotFoundError("gone", task_id="123", status=400, code=4, description="task_no_found"),
        RouteNotFoundError("no route", url="http://mj.test/mj/task/1/cancel", status=200),
        AuthenticationError(
            "401",
            status=401,
            auth_style="bearer",
            auth_header="Authorization",
            suggested_auth=("mj-api-secret",),
        ),
        SubmitRejectedError("rejected", properties={"a": 1}, **common),
        QueueFullError("full", properties={"numberOfQueues": 10}, status=200, code=23),
        BannedPromptError("banned", properties={"bannedWord": "nude"}, status=200, code=24),
        DecodeError("not json", status=200, body="<html>"),
        TaskError(snapshot("PAUSED")),
        TaskFailedError(snapshot()),
        TaskCancelledError(snapshot("CANCEL")),
        ModalRequiredError(snapshot("MODAL")),
        TaskTimeoutError("too slow", task_id="42", last=snapshot("IN_PROGRESS")),
        TaskTimeoutError("too slow", task_id="43"),
    ]


def fields_of(error: BaseException) -> dict[str, Any]:
    """The public state of an exception: its message, args and every attribute."""
    state = dict(vars(error))
    state["__str__"] = str(error)
    state["__args__"] = error.args
    state["__type__"] = type(error)
    return state


@pytest.mark.parametrize("error", all_instances(), ids=lambda e: type(e).__name__)
def test_every_exception_pickles_with_its_fields(error: MJError) -> None:
    """Every exception survives a pickle round trip with type, message, args and fields intact."""
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own objects)

    assert fields_of(clone) == fields_of(error)


def test_exception_specific_properties_survive_pickling() -> None:
    """banned_word, retry_after, reason, task_id and last read the same after pickling."""
    banned, rate, failed, timeout = (
        pickle.loads(pickle.dumps(e))  # noqa: S301 (our own objects)
        for e in (
            BannedPromptError("b", properties={"bannedWord": "nude"}, code=24),
            RateLimitError("r", retry_after=3.0, status=429),
            TaskFailedError(snapshot()),
            TaskTimeoutError("t", task_id="42", last=snapshot("IN_PROGRESS")),
        )
    )

    assert banned.banned_word == "nude"
    assert rate.retry_after == 3.0
    assert failed.reason == "任务超时"
    assert failed.task.status is TaskStatus.FAILURE
    assert timeout.task_id == "42"
    assert timeout.last is not None
    assert timeout.last.status is TaskStatus.IN_PROGRESS


def test_a_connect_errors_reason_and_host_survive_pickling() -> None:
    """The transport's structured cause travels with the error (to a worker, a log)."""
    error = ConnectError("could not connect", reason="connection timed out", host="h:8080")
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own objects)

    assert (clone.reason, clone.host, str(clone)) == ("connection timed out", "h:8080", str(error))


@pytest.mark.parametrize(
    ("status", "body", "refused_by", "reads_auth"),
    [
        (401, None, "novicezk's midjourney-proxy", ("mj-api-secret",)),
        (
            401,
            "Authorization header missing.",
            "trueai answers",
            ("authorization", "mj-api-secret"),
        ),
        (
            401,
            {"error": {"message": "无效的令牌", "type": "new_api_error"}},
            "new-api's refusal",
            ("bearer", "authorization", "mj-api-secret"),
        ),
        (403, {"code": 403, "description": "forbidden"}, "", ()),
    ],
    ids=["novicezk", "trueai", "newapi", "unknown"],
)
def test_an_authentication_error_names_the_server_its_shape_points_to(
    status: int, body: object, refused_by: str, reads_auth: tuple[str, ...]
) -> None:
    """refused_by and reads_auth come from the refusal's status and body, for any caller."""
    error = AuthenticationError("denied", status=status, body=body, auth_style="bearer")

    assert refused_by in error.refused_by
    assert bool(error.refused_by) is bool(refused_by)
    assert error.reads_auth == reads_auth


def test_description_en_adds_english_to_a_chinese_server_text() -> None:
    """description_en is the description as messages show it; None without one."""
    assert QueueFullError("q", description="队列已满").description_en == (
        "队列已满 (the queue is full; try again later)"
    )
    assert APIError("x", description="plain text").description_en == "plain text"
    assert APIError("x").description_en is None


def test_task_errors_have_useful_default_messages() -> None:
    """TaskFailedError names the reason; ModalRequiredError says what to call next."""
    assert "任务超时" in str(TaskFailedError(snapshot()))
    assert "modal(" in str(ModalRequiredError(snapshot("MODAL")))
    assert "cancelled" in str(TaskCancelledError(snapshot("CANCEL")))
    assert TaskFailedError(Task(id="1", status="FAILURE")).reason is None


def test_banned_word_is_none_when_not_sent() -> None:
    """banned_word is None when the server named no word."""
    assert BannedPromptError("b", code=24).banned_word is None


# -- the API key never leaks ---------------------------------------------------------------


def assert_no_secret(*objects: object) -> None:
    """SECRET appears in no str, repr, args, attribute or cause of *objects*."""
    for obj in objects:
        texts = [str(obj), repr(obj)]
        if isinstance(obj, BaseException):
            texts += [repr(arg) for arg in obj.args]
            texts += [repr(value) for value in vars(obj).values()]
            if obj.__cause__ is not None:
                texts += [str(obj.__cause__), repr(obj.__cause__)]
        for text in texts:
            assert SECRET not in text, text


def secret_client(handler: Any, **kwargs: Any) -> mjasync.Client:
    """A client holding SECRET, answering with *handler*, retrying (and waiting) fast."""
    kwargs.setdefault("queue_full_wait", 0.01)
    return mjasync.Client(
        "http://mj.test",
        SECRET,
        transport=MockTransport(handler),
        retry=RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.002),
        **kwargs,
    )


def refuse(request: Request) -> Response:
    """A transport failure before anything was sent."""
    raise ConnectError("could not connect: refused")


def time_out(request: Request) -> Response:
    """A transport failure after the request may have arrived."""
    raise RequestTimeoutError("no response in time")


PROVOCATIONS = [
    pytest.param(lambda r: Response(401), id="401-empty"),
    pytest.param(lambda r: Response(401, content=b"Authorization header missing."), id="401-text"),
    pytest.param(lambda r: Response(403), id="403"),
    pytest.param(lambda r: Response(429, {"retry-after": "3600"}), id="429"),
    pytest.param(lambda r: Response(502, content=b"<html>bad gateway</html>"), id="502"),
    pytest.param(lambda r: Response(200, content=b"<html>oops</html>"), id="not-json"),
    pytest.param(lambda r: json_response({"code": 23, "description": "full"}), id="queue-full"),
    pytest.param(lambda r: json_response({"code": 24, "description": "banned"}), id="banned"),
    pytest.param(lambda r: json_response({"code": 4, "description": "bad"}), id="rejected"),
    pytest.param(
        lambda r: json_response({"success": False, "code": -1, "message": "上限"}), id="trueai-fail"
    ),
    pytest.param(
        lambda r: json_response({"description": "x", "type": "upstream_error", "code": 4}, 400),
        id="newapi-400",
    ),
    pytest.param(refuse, id="connect-error"),
    pytest.param(time_out, id="timeout"),
]


@pytest.mark.parametrize("handler", PROVOCATIONS)
@pytest.mark.parametrize("auth", ["bearer", "authorization", "mj-api-secret"])
async def test_api_key_never_in_errors_or_logs(
    handler: Any, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever goes wrong, the key is in no exception, Request repr, Client repr or log line."""
    caplog.set_level(logging.DEBUG)
    async with secret_client(handler, auth=auth) as mj:
        with pytest.raises(MJError) as submit_info:
            await mj.imagine("a cat")
        with pytest.raises(MJError) as fetch_info:
            await mj.fetch("1700000000000001")
        requests = mj._transport.requests  # type: ignore[attr-defined]

    assert requests
    assert any(SECRET in value for value in requests[0].headers.values())
    assert_no_secret(submit_info.value, fetch_info.value, mj, *requests)
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()


async def test_api_key_never_in_input_errors() -> None:
    """Errors raised before sending do not carry the key either."""
    async with secret_client(lambda r: json_response({})) as mj:
        with pytest.raises(InvalidRequestError) as info:
            await mj.blend([b"not an image"])

    assert_no_secret(info.value, mj)


async def test_api_key_never_in_closed_client_error() -> None:
    """ClientClosedError does not carry the key."""
    mj = secret_client(lambda r: json_response({}))
    await mj.aclose()

    with pytest.raises(ClientClosedError) as info:
        await mj.fetch("1")

    assert_no_secret(info.value, mj)


async def test_api_key_never_in_real_transport_errors(
    free_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the real aiohttp transport, a refused connection and a 401 do not leak the key."""
    caplog.set_level(logging.DEBUG)

    async def deny(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == SECRET
        return web.Response(status=401, text="账号已禁用")

    app = web.Application()
    app.router.add_post("/mj/submit/imagine", deny)

    async with TestServer(app) as server:
        base = str(server.make_url("/"))
        async with mjasync.Client(base, SECRET, auth="authorization") as mj:
            with pytest.raises(AuthenticationError) as denied:
                await mj.imagine("a cat")
    async with mjasync.Client(
        f"http://127.0.0.1:{free_tcp_port}", SECRET, retry=RetryPolicy(attempts=1)
    ) as mj:
        with pytest.raises(ConnectError) as refused:
            await mj.imagine("a cat")

    assert denied.value.description == "账号已禁用"
    assert_no_secret(denied.value, refused.value, mj)
    assert SECRET not in caplog.text


def test_client_repr_omits_the_key() -> None:
    """repr(Client) shows the base URL and auth style, never the key."""
    mj = mjasync.Client("http://mj.test", SECRET, transport=MockTransport(lambda r: Response(200)))

    assert SECRET not in repr(mj)
    assert "mj.test" in repr(mj)


# -- did it reach the server? (#10.1) -----------------------------------------------------

DELIVERIES = [
    pytest.param(ConnectError("refused"), mjasync.Delivery.NOT_SENT, id="connect"),
    pytest.param(InvalidRequestError("bad prompt"), mjasync.Delivery.NOT_SENT, id="invalid"),
    pytest.param(ButtonNotFoundError("no U9", key="U9"), mjasync.Delivery.NOT_SENT, id="button"),
    pytest.param(ClientClosedError("closed"), mjasync.Delivery.NOT_SENT, id="closed"),
    pytest.param(AuthenticationError("401", status=401), mjasync.Delivery.REJECTED, id="401"),
    pytest.param(RateLimitError("429", status=429), mjasync.Delivery.REJECTED, id="429"),
    pytest.param(QueueFullError("full", code=23), mjasync.Delivery.REJECTED, id="queue-full"),
    pytest.param(BannedPromptError("banned", code=24), mjasync.Delivery.REJECTED, id="banned"),
    pytest.param(SubmitRejectedError("no", code=4), mjasync.Delivery.REJECTED, id="code-4"),
    pytest.param(TaskNotFoundError("gone", task_id="1"), mjasync.Delivery.REJECTED, id="no-task"),
    pytest.param(RouteNotFoundError("no route", status=200), mjasync.Delivery.REJECTED, id="route"),
    pytest.param(APIError("teapot", status=418), mjasync.Delivery.REJECTED, id="4xx"),
    pytest.param(RequestTimeoutError("slow"), mjasync.Delivery.MAYBE_SENT, id="timeout"),
    pytest.param(TransportError("reset"), mjasync.Delivery.MAYBE_SENT, id="dropped"),
    pytest.param(ServerError("500", status=500), mjasync.Delivery.MAYBE_SENT, id="5xx"),
    pytest.param(DecodeError("garbled", status=200), mjasync.Delivery.MAYBE_SENT, id="garbled"),
    pytest.param(APIError("odd", status=200), mjasync.Delivery.MAYBE_SENT, id="2xx-api"),
    pytest.param(RuntimeError("bug"), mjasync.Delivery.MAYBE_SENT, id="unknown"),
    pytest.param(TaskTimeoutError("late", task_id="1"), mjasync.Delivery.MAYBE_SENT, id="wait"),
]


@pytest.mark.parametrize(("error", "delivery"), DELIVERIES)
def test_delivery_of(error: BaseException, delivery: mjasync.Delivery) -> None:
    """delivery_of sorts every failure into never sent, refused, or maybe accepted."""
    assert mjasync.delivery_of(error) is delivery


@pytest.mark.parametrize(
    ("error", "delivery"), [p for p in DELIVERIES if isinstance(p.values[0], MJError)]
)
def test_submits_are_retried_only_when_not_sent_or_told_not_now(
    error: MJError, delivery: mjasync.Delivery
) -> None:
    """is_retryable for a submit follows delivery_of: NOT_SENT transport failures and
    explicit "not now" (429, queue full) only; a query also retries MAYBE_SENT failures."""
    from mjasync._retry import RequestKind, is_retryable

    not_now = isinstance(error, RateLimitError | QueueFullError)
    transient = isinstance(error, TransportError | ServerError)
    expected_submit = not_now or (transient and delivery is mjasync.Delivery.NOT_SENT)

    assert is_retryable(RequestKind.SUBMIT, error) is expected_submit
    assert is_retryable(RequestKind.QUERY, error) is (not_now or transient)
