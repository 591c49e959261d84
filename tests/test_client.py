"""The wire layer over MockTransport: URLs, auth, bodies, endpoints, retries, input checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _shared import QUICK_RETRY as FAST

import mjasync
from mjasync import (
    AccountFilter,
    AuthenticationError,
    Button,
    ButtonNotFoundError,
    Client,
    ClientClosedError,
    ConnectError,
    InvalidRequestError,
    PollPolicy,
    QueueFullError,
    RateLimitError,
    Request,
    RequestTimeoutError,
    Response,
    RetryPolicy,
    ServerError,
    SubmitRejectedError,
    TransportError,
)
from mjasync.testing import MockTransport, decode_task, json_response, submit_payload, task_payload

PAYLOADS = Path(__file__).parent / "payloads"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32)
JPEG = b"\xff\xd8\xff\xe0" + bytes(32)
GIF = b"GIF89a" + bytes(32)
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(32)


def uri(data: bytes, mime: str) -> str:
    """The data URI the client should send for *data*."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def load(name: str) -> Any:
    """Parse one captured payload from tests/payloads."""
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def accepted(request: Request) -> Response:
    """Accept any submit with a fixed task id."""
    return json_response(submit_payload("1700000000000001"))


def client(
    handler: Callable[[Request], Response] = accepted,
    base_url: str = "http://mj.test",
    **kwargs: Any,
) -> tuple[Client, MockTransport]:
    """A client over a MockTransport with fast retries, and the transport."""
    transport = MockTransport(handler)
    kwargs.setdefault("retry", FAST)
    return Client(base_url, "k", transport=transport, **kwargs), transport


def sequence(*responses: Response | Exception) -> Callable[[Request], Response]:
    """A handler that answers with *responses* in order (an exception is raised)."""
    queue: Iterator[Response | Exception] = iter(responses)

    def handler(request: Request) -> Response:
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://mj.test",
        "http://mj.test/",
        "http://mj.test/mj",
        "http://mj.test/mj/",
        "  http://mj.test/mj/  ",
    ],
)
async def test_base_url_variants_all_reach_mj_paths(base_url: str) -> None:
    """Base URLs ending in nothing, /, /mj or /mj/ all send to /mj/submit/imagine."""
    mj, transport = client(base_url=base_url)
    async with mj:
        await mj.imagine("a cat")

    assert transport.requests[0].url == "http://mj.test/mj/submit/imagine"
    assert mj.base_url == "http://mj.test"


async def test_base_url_with_a_path_prefix_keeps_it() -> None:
    """A relay mounted under a path keeps that path before /mj."""
    mj, transport = client(base_url="https://relay.test/api/v1/mj")
    async with mj:
        await mj.shorten("x")

    assert transport.requests[0].url == "https://relay.test/api/v1/mj/submit/shorten"


@pytest.mark.parametrize(
    ("mode", "prefix"),
    [
        pytest.param("fast", "/mj-fast", id="fast"),
        pytest.param("relax", "/mj-relax", id="relax"),
        pytest.param("TURBO", "/mj-turbo", id="turbo-upper"),
        pytest.param("/mj-fast-relay", "/mj-fast-relay", id="free-form"),
        pytest.param(None, "", id="none"),
    ],
)
async def test_mode_prefixes_every_path(mode: str | None, prefix: str) -> None:
    """mode= puts /mj-<mode> before /mj on submits and queries alike."""

    def handler(request: Request) -> Response:
        if request.method == "GET":
            return json_response(task_payload("7"))
        return accepted(request)

    mj, transport = client(handler, mode=mode)
    async with mj:
        await mj.imagine("a cat")
        await mj.fetch("7")

    assert [r.url for r in transport.requests] == [
        f"http://mj.test{prefix}/mj/submit/imagine",
        f"http://mj.test{prefix}/mj/task/7/fetch",
    ]


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        pytest.param("bearer", "Authorization", "Bearer sk-1", id="bearer"),
        pytest.param("authorization", "Authorization", "sk-1", id="authorization"),
        pytest.param("mj-api-secret", "mj-api-secret", "sk-1", id="mj-api-secret"),
    ],
)
async def test_auth_styles(auth: str, header: str, value: str) -> None:
    """Each auth style sends the key in its own header, and only there."""
    transport = MockTransport(accepted)
    async with Client("http://mj.test", "sk-1", auth=auth, transport=transport) as mj:  # type: ignore[arg-type]
        await mj.imagine("a cat")

    headers = transport.requests[0].headers
    assert headers[header] == value
    assert [k for k, v in headers.items() if "sk-1" in v] == [header]


async def test_default_auth_is_bearer() -> None:
    """Without auth= or MJ_AUTH, the key goes out as Authorization: Bearer."""
    mj, transport = client()
    async with mj:
        await mj.imagine("a cat")

    assert transport.requests[0].headers["Authorization"] == "Bearer k"


async def test_no_key_sends_no_auth_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a key (and no MJ_API_KEY) no auth header is sent."""
    monkeypatch.delenv("MJ_API_KEY", raising=False)
    transport = MockTransport(accepted)
    async with Client("http://mj.test", transport=transport) as mj:
        await mj.imagine("a cat")

    headers = transport.requests[0].headers
    assert "Authorization" not in headers
    assert "mj-api-secret" not in headers


async def test_environment_configures_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client() reads MJ_BASE_URL, MJ_API_KEY and MJ_AUTH."""
    monkeypatch.setenv("MJ_BASE_URL", "https://env.test/mj/")
    monkeypatch.setenv("MJ_API_KEY", "env-key")
    monkeypatch.setenv("MJ_AUTH", "mj-api-secret")
    transport = MockTransport(accepted)

    async with Client(transport=transport) as mj:
        await mj.imagine("a cat")

    request = transport.requests[0]
    assert request.url == "https://env.test/mj/submit/imagine"
    assert request.headers["mj-api-secret"] == "env-key"
    assert "Authorization" not in request.headers


async def test_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments override MJ_BASE_URL, MJ_API_KEY and MJ_AUTH."""
    monkeypatch.setenv("MJ_BASE_URL", "https://env.test")
    monkeypatch.setenv("MJ_API_KEY", "env-key")
    monkeypatch.setenv("MJ_AUTH", "mj-api-secret")
    transport = MockTransport(accepted)

    async with Client("http://arg.test", "arg-key", auth="bearer", transport=transport) as mj:
        await mj.imagine("a cat")

    request = transport.requests[0]
    assert request.url.startswith("http://arg.test/")
    assert request.headers["Authorization"] == "Bearer arg-key"


def test_no_base_url_anywhere_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without base_url and MJ_BASE_URL, construction raises InvalidRequestError."""
    monkeypatch.delenv("MJ_BASE_URL", raising=False)

    with pytest.raises(InvalidRequestError, match="MJ_BASE_URL"):
        Client(transport=MockTransport(accepted))


async def test_user_agent_and_extra_headers() -> None:
    """Every request carries User-Agent mjasync/<version>, JSON Accept and the extra headers."""
    mj, transport = client(headers={"X-Trace": "t-1", "X-Group": "g"})
    async with mj:
        await mj.imagine("a cat")

    headers = transport.requests[0].headers
    assert headers["User-Agent"] == f"mjasync/{mjasync.__version__}"
    assert headers["Accept"] == "application/json"
    assert (headers["X-Trace"], headers["X-Group"]) == ("t-1", "g")


# -- endpoints -------------------------------------------------------------------------


async def test_imagine_body_is_camel_case_with_unset_options_omitted() -> None:
    """imagine sends only the prompt when nothing else is set."""
    mj, transport = client()
    async with mj:
        submission = await mj.imagine("a red fox --ar 3:2")

    (request,) = transport.requests
    assert (request.method, request.json) == ("POST", {"prompt": "a red fox --ar 3:2"})
    assert submission.task_id == "1700000000000001"


async def test_imagine_with_every_option() -> None:
    """imagine sends images as data URIs and every set option in camelCase."""
    mj, transport = client()
    async with mj:
        await mj.imagine(
            "a cat",
            images=[PNG, uri(JPEG, "image/jpeg")],
            bot_type="niji",
            account_filter=AccountFilter(modes=("RELAX",), remark="pool"),
            state="job-1",
            notify_hook="https://app.test/hook",
        )

    assert transport.requests[0].json == {
        "prompt": "a cat",
        "base64Array": [uri(PNG, "image/png"), uri(JPEG, "image/jpeg")],
        "botType": "NIJI_JOURNEY",
        "accountFilter": {"modes": ["RELAX"], "remark": "pool"},
        "state": "job-1",
        "notifyHook": "https://app.test/hook",
    }


async def test_empty_account_filter_sends_no_remix() -> None:
    """An AccountFilter with nothing set sends {} and never a remix member."""
    mj, transport = client()
    async with mj:
        await mj.imagine("a cat", account_filter=AccountFilter())

    body: Any = transport.requests[0].json
    assert body["accountFilter"] == {}
    assert "remix" not in json.dumps(body)


async def test_client_notify_hook_is_sent_with_its_token() -> None:
    """With notify_hook on the client, every submit carries the hook URL with the token."""
    mj, transport = client(notify_hook="https://app.test/mj-hook?x=1", notify_token="tok")
    async with mj:
        await mj.imagine("a cat")
        await mj.shorten("a cat")

    for request in transport.requests:
        assert request.json["notifyHook"] == "https://app.test/mj-hook?x=1&token=tok"  # type: ignore[index]


@pytest.mark.parametrize("count", [2, 3, 4, 5])
async def test_blend_sends_two_to_five_images(count: int) -> None:
    """blend accepts 2 to 5 images of any sniffed type."""
    images = [PNG, JPEG, GIF, WEBP, PNG][:count]
    mj, transport = client()
    async with mj:
        await mj.blend(images)

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/blend")
    assert len(request.json["base64Array"]) == count  # type: ignore[index]
    assert "dimensions" not in request.json  # type: ignore[operator]


@pytest.mark.parametrize("dimensions", ["PORTRAIT", "square", "Landscape"])
async def test_blend_dimensions_are_upper_cased(dimensions: str) -> None:
    """blend sends dimensions upper-cased."""
    mj, transport = client()
    async with mj:
        await mj.blend([PNG, JPEG], dimensions=dimensions)

    assert transport.requests[0].json["dimensions"] == dimensions.upper()  # type: ignore[index]


async def test_describe_sends_one_base64() -> None:
    """describe sends the image as base64 (a data URI)."""
    mj, transport = client()
    async with mj:
        await mj.describe(JPEG)

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/describe")
    assert request.json == {"base64": uri(JPEG, "image/jpeg")}


async def test_shorten_sends_the_prompt() -> None:
    """shorten sends the prompt to /submit/shorten."""
    mj, transport = client()
    async with mj:
        await mj.shorten("a very long prompt", bot_type="MID_JOURNEY")

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/shorten")
    assert request.json == {"prompt": "a very long prompt", "botType": "MID_JOURNEY"}


@pytest.fixture
def grid() -> mjasync.Task:
    """The captured PLUS grid."""
    return decode_task(load("task_imagine_success_plus.json"))


H = "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(Button(f"MJ::JOB::upsample::2::{H}", label="U2"), id="button"),
        pytest.param(f"MJ::JOB::upsample::2::{H}", id="customId"),
        pytest.param("U2", id="name"),
        pytest.param("u2", id="name-folded"),
    ],
)
async def test_action_by_button_custom_id_or_name(grid: mjasync.Task, key: Button | str) -> None:
    """action takes a Button, a customId or a name and sends the customId."""
    mj, transport = client()
    async with mj:
        await mj.action(grid, key)

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/action")
    assert request.json == {"taskId": grid.id, "customId": f"MJ::JOB::upsample::2::{H}"}


async def test_action_with_an_id_and_a_custom_id() -> None:
    """action with a task id string accepts a customId."""
    mj, transport = client()
    async with mj:
        await mj.action("123", f"MJ::JOB::variation::1::{H}", choose_same_channel=True)

    assert transport.requests[0].json == {
        "taskId": "123",
        "customId": f"MJ::JOB::variation::1::{H}",
        "chooseSameChannel": True,
    }


async def test_action_by_name_needs_a_task() -> None:
    """A button name with only a task id cannot be resolved: InvalidRequestError, nothing sent."""
    mj, transport = client()
    async with mj:
        with pytest.raises(InvalidRequestError, match="pass the Task"):
            await mj.action("123", "U1")

    assert transport.requests == []


async def test_action_with_missing_button_sends_nothing(grid: mjasync.Task) -> None:
    """A button the task lacks raises ButtonNotFoundError before anything is sent."""
    mj, transport = client()
    async with mj:
        with pytest.raises(ButtonNotFoundError):
            await mj.action(grid, "vary_region")

    assert transport.requests == []


async def test_action_code_21_returns_the_modal_submission(grid: mjasync.Task) -> None:
    """An action answered with code 21 returns a Submission that needs a modal."""
    mj, _ = client(lambda r: json_response(load("submit_modal_plus.json")))
    async with mj:
        submission = await mj.action(grid, "V1")

    assert submission.needs_modal
    assert submission.task_id == "14001929738841620"


async def test_modal_with_prompt_and_png_mask(tmp_path: Path) -> None:
    """modal sends taskId, prompt and the mask as a PNG data URI."""
    mask = tmp_path / "mask.png"
    mask.write_bytes(PNG)
    mj, transport = client()
    async with mj:
        await mj.modal(mjasync.Submission(code=21, task_id="14001929738841620"), prompt="a dog")
        await mj.modal("14001929738841620", mask=mask)

    first, second = transport.requests
    assert first.url.endswith("/mj/submit/modal")
    assert first.json == {"taskId": "14001929738841620", "prompt": "a dog"}
    assert second.json == {"taskId": "14001929738841620", "maskBase64": uri(PNG, "image/png")}


@pytest.mark.parametrize(
    "mask", [pytest.param(JPEG, id="jpeg"), pytest.param(b"\x00" * 9, id="junk")]
)
async def test_modal_mask_must_be_png(mask: bytes) -> None:
    """A mask that is not PNG is refused before sending."""
    mj, transport = client()
    async with mj:
        with pytest.raises(InvalidRequestError):
            await mj.modal("1", mask=mask)

    assert transport.requests == []


async def test_swap_face() -> None:
    """swap_face sends sourceBase64 and targetBase64 to /insight-face/swap."""
    mj, transport = client()
    async with mj:
        await mj.swap_face(PNG, JPEG)

    (request,) = transport.requests
    assert request.url == "http://mj.test/mj/insight-face/swap"
    assert request.json == {
        "sourceBase64": uri(PNG, "image/png"),
        "targetBase64": uri(JPEG, "image/jpeg"),
    }


async def test_swap_face_with_the_same_image_is_refused() -> None:
    """Source and target must differ (proxies reject it), checked before sending."""
    mj, transport = client()
    async with mj:
        with pytest.raises(InvalidRequestError):
            await mj.swap_face(PNG, PNG)

    assert transport.requests == []


async def test_edit() -> None:
    """edit sends trueai's {prompt, image} body to /submit/edits."""
    mj, transport = client()
    async with mj:
        await mj.edit("make it blue", PNG)

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/edits")
    assert request.json == {"prompt": "make it blue", "image": uri(PNG, "image/png")}


async def test_video_from_an_image() -> None:
    """video sends the first frame and set options in camelCase."""
    mj, transport = client()
    async with mj:
        await mj.video("waves", image=PNG, motion="high", batch_size=2, loop=True)

    (request,) = transport.requests
    assert request.url.endswith("/mj/submit/video")
    assert request.json == {
        "prompt": "waves",
        "image": uri(PNG, "image/png"),
        "motion": "high",
        "loop": True,
        "batchSize": 2,
    }


async def test_video_extend() -> None:
    """video with extend= sends action extend, the parent id and the index."""
    mj, transport = client()
    async with mj:
        await mj.video("more waves", extend="900", index=2)

    assert transport.requests[0].json == {
        "prompt": "more waves",
        "action": "extend",
        "taskId": "900",
        "index": 2,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="no-image-no-extend"),
        pytest.param({"image": PNG, "motion": "medium"}, id="bad-motion"),
        pytest.param({"image": PNG, "batch_size": 3}, id="bad-batch"),
        pytest.param({"extend": "900"}, id="extend-without-index"),
        pytest.param({"extend": "900", "index": 4}, id="index-out-of-range"),
    ],
)
async def test_video_bad_arguments(kwargs: dict[str, Any]) -> None:
    """video refuses inconsistent arguments before sending."""
    mj, transport = client()
    async with mj:
        with pytest.raises(InvalidRequestError):
            await mj.video("waves", **kwargs)

    assert transport.requests == []


async def test_upload_returns_urls() -> None:
    """upload sends base64Array and returns the result URL list."""
    mj, transport = client(lambda r: json_response(load("upload_trueai.json")))
    async with mj:
        urls = await mj.upload([PNG])
        single = await mj.upload(JPEG)  # type: ignore[arg-type]

    assert urls == load("upload_trueai.json")["result"]
    assert single == urls
    assert transport.requests[0].url.endswith("/mj/submit/upload-discord-images")
    assert transport.requests[0].json == {"base64Array": [uri(PNG, "image/png")]}
    assert transport.requests[1].json == {"base64Array": [uri(JPEG, "image/jpeg")]}


async def test_upload_rejection_raises() -> None:
    """An upload answered with a rejection code raises SubmitRejectedError."""
    mj, _ = client(lambda r: json_response({"code": 4, "description": "禁止上传"}))
    async with mj:
        with pytest.raises(SubmitRejectedError):
            await mj.upload([PNG])


@pytest.mark.parametrize("path", ["/submit/retexture", "submit/retexture", "/mj/submit/retexture"])
async def test_submit_raw(path: str) -> None:
    """submit sends any body to any route, dropping None values."""
    mj, transport = client()
    async with mj:
        submission = await mj.submit(path, {"prompt": "x", "image": "data:...", "skip": None})

    (request,) = transport.requests
    assert request.url == "http://mj.test/mj/submit/retexture"
    assert request.json == {"prompt": "x", "image": "data:..."}
    assert submission.code == 1


async def test_fetch() -> None:
    """fetch GETs /task/{id}/fetch and decodes the task."""
    mj, transport = client(lambda r: json_response(load("task_imagine_success_plus.json")))
    async with mj:
        task = await mj.fetch(mjasync.Submission(code=1, task_id="1748339029401828"))

    (request,) = transport.requests
    assert (request.method, request.url) == (
        "GET",
        "http://mj.test/mj/task/1748339029401828/fetch",
    )
    assert request.json is None
    assert task.id == "1748339029401828"


def batch_server(
    missing: frozenset[str] = frozenset(), known: frozenset[str] | None = None
) -> Callable[[Request], Response]:
    """Answer list routes and fetches; routes in *missing* answer 404."""

    def handler(request: Request) -> Response:
        route = request.url.removeprefix("http://mj.test/mj")
        if route in missing:
            return Response(404, {}, b"Not Found")
        if request.method == "POST":
            ids = request.json["ids"]  # type: ignore[index]
            return json_response(
                [task_payload(i, "IN_PROGRESS") for i in ids if known is None or i in known]
            )
        task_id = route.split("/")[2]
        if known is not None and task_id not in known:
            return Response(200)
        return json_response(task_payload(task_id, "IN_PROGRESS"))

    return handler


async def test_fetch_many_batches_by_batch_size() -> None:
    """fetch_many sends deduplicated ids in list-by-condition batches of batch_size."""
    mj, transport = client(batch_server(), poll=PollPolicy(batch_size=2))
    async with mj:
        tasks = await mj.fetch_many(["1", "2", "3", "2", "4", "5"])

    assert [t.id for t in tasks] == ["1", "2", "3", "4", "5"]
    assert [r.url for r in transport.requests] == ["http://mj.test/mj/task/list-by-condition"] * 3
    assert [r.json for r in transport.requests] == [
        {"ids": ["1", "2"]},
        {"ids": ["3", "4"]},
        {"ids": ["5"]},
    ]
    assert mj.batch_route == "list-by-condition"


async def test_fetch_many_leaves_out_unknown_ids() -> None:
    """Ids the server does not return are left out, not errors."""
    mj, _ = client(batch_server(known=frozenset({"1"})))
    async with mj:
        tasks = await mj.fetch_many(["1", "2"])

    assert [t.id for t in tasks] == ["1"]


async def test_fetch_many_falls_back_to_list_by_ids_and_remembers() -> None:
    """Without list-by-condition, fetch_many uses list-by-ids, and keeps using it."""
    mj, transport = client(batch_server(missing=frozenset({"/task/list-by-condition"})))
    async with mj:
        await mj.fetch_many(["1", "2"])
        await mj.fetch_many(["3"])

    routes = [r.url.rsplit("/", 1)[-1] for r in transport.requests]
    assert routes == ["list-by-condition", "list-by-ids", "list-by-ids"]
    assert mj.batch_route == "list-by-ids"


async def test_fetch_many_falls_back_to_per_id_fetch_and_remembers() -> None:
    """Without either list route, fetch_many fetches each id, skips unknown ones, and remembers."""
    missing = frozenset({"/task/list-by-condition", "/task/list-by-ids"})
    mj, transport = client(batch_server(missing=missing, known=frozenset({"1", "2", "3"})))
    async with mj:
        first = await mj.fetch_many(["1", "2", "404"])
        second = await mj.fetch_many(["3"])

    assert [t.id for t in first] == ["1", "2"]
    assert [t.id for t in second] == ["3"]
    urls = [r.url.removeprefix("http://mj.test/mj") for r in transport.requests]
    assert urls[:2] == ["/task/list-by-condition", "/task/list-by-ids"]
    assert sorted(urls[2:5]) == ["/task/1/fetch", "/task/2/fetch", "/task/404/fetch"]
    assert urls[5:] == ["/task/3/fetch"]
    assert mj.batch_route == "fetch"


async def test_fetch_many_does_not_fall_back_on_auth_errors() -> None:
    """A 401 on list-by-condition is raised, not mistaken for a missing route."""
    mj, transport = client(lambda r: Response(401))
    async with mj:
        with pytest.raises(AuthenticationError):
            await mj.fetch_many(["1"])

    assert len(transport.requests) == 1
    assert mj.batch_route == "list-by-condition"


async def test_image_seed() -> None:
    """image_seed GETs /task/{id}/image-seed and returns the seed string."""
    mj, transport = client(lambda r: json_response(load("image_seed_plus.json")))
    async with mj:
        seed = await mj.image_seed("1748339029401828")

    (request,) = transport.requests
    assert request.url == "http://mj.test/mj/task/1748339029401828/image-seed"
    assert request.timeout is not None
    assert request.timeout >= 65
    assert seed == "636646138"


async def test_cancel() -> None:
    """cancel POSTs /task/{id}/cancel and accepts PLUS's {code: 1} answer as it is."""
    mj, transport = client(lambda r: json_response({"code": 1, "description": "ok", "result": "9"}))
    async with mj:
        await mj.cancel("9")

    (request,) = transport.requests
    assert (request.method, request.url) == ("POST", "http://mj.test/mj/task/9/cancel")


def trueai_cancel(known: set[str]) -> Callable[[Request], Response]:
    """trueai TaskController.cs: Cancel answers `Ok()` (an empty 200) for any id; Fetch
    answers a known task, and 204 (`ActionResult<TaskInfo>` of null) for an unknown one."""

    def handler(request: Request) -> Response:
        task_id = request.url.split("/")[-2]
        if request.url.endswith("/cancel"):
            return Response(200)
        if task_id in known:
            return json_response(task_payload(task_id, "FAILURE", failReason="取消任务"))
        return Response(204)

    return handler


async def test_trueai_cancel_of_a_known_task_is_confirmed_by_one_fetch() -> None:
    """trueai's empty 200 is checked with one fetch; a known id passes."""
    mj, transport = client(trueai_cancel({"9"}))
    async with mj:
        await mj.cancel("9")

    urls = [(r.method, r.url.removeprefix("http://mj.test/mj")) for r in transport.requests]
    assert urls == [("POST", "/task/9/cancel"), ("GET", "/task/9/fetch")]


async def test_trueai_cancel_of_an_unknown_task_raises_task_not_found() -> None:
    """An unknown id is not reported as cancelled: the confirming fetch raises."""
    mj, transport = client(trueai_cancel(set()))
    async with mj:
        with pytest.raises(mjasync.TaskNotFoundError) as caught:
            await mj.cancel("404")

    assert caught.value.task_id == "404"
    assert len(transport.requests) == 2


async def test_cancel_refused() -> None:
    """A cancel refused with a code raises SubmitRejectedError."""
    mj, _ = client(lambda r: json_response({"code": 4, "description": "no"}))
    async with mj:
        with pytest.raises(SubmitRejectedError):
            await mj.cancel("9")


# -- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Response(500), id="500"),
        pytest.param(Response(503, {}, b"<html>"), id="503"),
        pytest.param(RequestTimeoutError("slow"), id="timeout"),
        pytest.param(ConnectError("refused"), id="connect"),
        pytest.param(TransportError("reset"), id="reset"),
        pytest.param(Response(429, {"retry-after": "0"}), id="429"),
    ],
)
async def test_get_is_retried_on_transient_failures(failure: Response | Exception) -> None:
    """A fetch is retried after 5xx, timeouts, connection errors and 429."""
    mj, transport = client(sequence(failure, json_response(task_payload("7"))))
    async with mj:
        task = await mj.fetch("7")

    assert task.id == "7"
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param(RequestTimeoutError("slow"), RequestTimeoutError, id="timeout"),
        pytest.param(Response(500), ServerError, id="500"),
        pytest.param(Response(502, {}, b"bad gateway"), ServerError, id="502"),
        pytest.param(TransportError("reset mid-response"), TransportError, id="reset"),
    ],
)
async def test_submit_is_not_resent_when_it_may_have_arrived(
    failure: Response | Exception, error: type[Exception]
) -> None:
    """A submit that may have reached the server is never resent: exactly one request."""
    mj, transport = client(sequence(failure, json_response(submit_payload("1"))))
    async with mj:
        with pytest.raises(error) as info:
            await mj.imagine("a cat")

    assert len(transport.requests) == 1
    assert mj.requests_sent == 1
    assert not isinstance(info.value, ConnectError)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(ConnectError("refused"), id="connect"),
        pytest.param(Response(429), id="429"),
        pytest.param(json_response({"code": 23, "description": "full"}), id="code-23"),
        pytest.param(json_response(load("submit_queue_full_trueai.json")), id="trueai-9"),
        pytest.param(json_response(load("error_newapi_rate_limited.json"), 429), id="newapi-30"),
    ],
)
async def test_submit_is_retried_when_it_provably_did_not_start(
    failure: Response | Exception,
) -> None:
    """A submit refused before it could start a job is retried."""
    mj, transport = client(sequence(failure, json_response(submit_payload("1"))))
    async with mj:
        submission = await mj.imagine("a cat")

    assert submission.task_id == "1"
    assert len(transport.requests) == 2


async def test_retried_submit_resends_the_same_body() -> None:
    """The retry of a submit sends the identical request."""
    mj, transport = client(sequence(ConnectError("x"), json_response(submit_payload("1"))))
    async with mj:
        await mj.imagine("a cat", state="s")

    first, second = transport.requests
    assert first == second


async def test_attempts_counts_every_try() -> None:
    """RetryPolicy.attempts is the total number of tries, the first included."""
    mj, transport = client(lambda r: Response(500), retry=RetryPolicy(attempts=4, backoff=0.001))
    async with mj:
        with pytest.raises(ServerError):
            await mj.fetch("7")

    assert len(transport.requests) == 4
    assert mj.requests_sent == 4


async def test_attempts_one_disables_retries() -> None:
    """attempts=1 sends once."""
    mj, transport = client(lambda r: Response(500), retry=RetryPolicy(attempts=1))
    async with mj:
        with pytest.raises(ServerError):
            await mj.fetch("7")

    assert len(transport.requests) == 1


async def test_queue_full_until_queue_full_wait_raises_queue_full() -> None:
    """A queue that stays full raises QueueFullError once queue_full_wait is used up."""
    mj, transport = client(
        lambda r: json_response({"code": 23, "description": "full"}), queue_full_wait=0.05
    )
    async with mj:
        start = anyio.current_time()
        with pytest.raises(QueueFullError) as info:
            await mj.imagine("a cat")
        elapsed = anyio.current_time() - start

    assert 0.05 <= elapsed < 0.4
    assert len(transport.requests) >= 2
    assert "queue_full_wait=0.05" in "".join(info.value.__notes__)


async def test_queue_full_wait_zero_raises_the_first_refusal() -> None:
    """With queue_full_wait=0 a full queue raises at once, after one request."""
    mj, transport = client(
        lambda r: json_response({"code": 23, "description": "full"}), queue_full_wait=0
    )
    async with mj:
        with pytest.raises(QueueFullError):
            await mj.imagine("a cat")

    assert len(transport.requests) == 1


async def test_retry_after_is_honoured() -> None:
    """A 429's Retry-After delays the retry by at least that long."""
    mj, _ = client(
        sequence(Response(429, {"retry-after": "0.05"}), json_response(submit_payload("1"))),
        retry=RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001),
    )
    async with mj:
        start = anyio.current_time()
        await mj.imagine("a cat")
        elapsed = anyio.current_time() - start

    assert elapsed >= 0.05


async def test_retry_after_above_the_cap_raises_at_once() -> None:
    """A Retry-After above max_retry_after raises RateLimitError with retry_after, unretried."""
    mj, transport = client(
        lambda r: Response(429, {"retry-after": "120"}),
        retry=RetryPolicy(attempts=5, backoff=0.001, max_retry_after=30),
    )
    async with mj:
        with pytest.raises(RateLimitError) as info:
            await mj.imagine("a cat")

    assert info.value.retry_after == 120
    assert len(transport.requests) == 1


async def test_rejections_are_not_retried() -> None:
    """A plain rejection (code 4) and an auth failure are raised after one request."""
    mj, transport = client(sequence(json_response({"code": 4}), Response(401)))
    async with mj:
        with pytest.raises(SubmitRejectedError):
            await mj.imagine("a cat")
        with pytest.raises(AuthenticationError):
            await mj.fetch("7")

    assert len(transport.requests) == 2


# -- lifecycle -------------------------------------------------------------------------


async def test_closed_client_raises_client_closed() -> None:
    """After aclose, calls raise ClientClosedError and nothing is sent; the transport is closed."""
    mj, transport = client()
    async with mj:
        pass

    assert mj.closed
    assert transport.closed
    with pytest.raises(ClientClosedError):
        await mj.imagine("a cat")
    with pytest.raises(ClientClosedError):
        await mj.fetch("7")
    with pytest.raises(ClientClosedError):
        async with mj:
            pass
    assert transport.requests == []


async def test_aclose_is_idempotent() -> None:
    """aclose may be called twice."""
    mj, _ = client()
    await mj.aclose()
    await mj.aclose()

    assert mj.closed


# -- input validation: nothing is sent --------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda mj: mj.imagine(""), id="empty-prompt"),
        pytest.param(lambda mj: mj.imagine("   "), id="blank-prompt"),
        pytest.param(lambda mj: mj.shorten(""), id="empty-shorten"),
        pytest.param(lambda mj: mj.blend([PNG]), id="blend-1"),
        pytest.param(lambda mj: mj.blend([PNG] * 6), id="blend-6"),
        pytest.param(lambda mj: mj.blend(PNG), id="blend-bytes"),
        pytest.param(lambda mj: mj.blend([PNG, JPEG], dimensions="WIDE"), id="bad-dimensions"),
        pytest.param(lambda mj: mj.imagine("x", images=[b"not an image"]), id="not-an-image"),
        pytest.param(lambda mj: mj.imagine("x", images=[b""]), id="empty-image"),
        pytest.param(lambda mj: mj.imagine("x", images=["not/a/path"]), id="bare-string"),
        pytest.param(lambda mj: mj.imagine("x", images=[Path("/no/such.png")]), id="missing-file"),
        pytest.param(lambda mj: mj.imagine("x", images=[12]), id="int-image"),
        pytest.param(lambda mj: mj.describe("data:image/png;base64,@@@"), id="bad-data-uri"),
        pytest.param(lambda mj: mj.imagine("x", state="s" * 256), id="state-256"),
        pytest.param(lambda mj: mj.imagine("x", bot_type="dalle"), id="bad-bot-type"),
        pytest.param(lambda mj: mj.imagine("x", account_filter={"remix": True}), id="dict-filter"),
        pytest.param(lambda mj: mj.modal("1", prompt="  "), id="blank-modal-prompt"),
        pytest.param(lambda mj: mj.fetch(""), id="empty-id"),
        pytest.param(lambda mj: mj.fetch(mjasync.Submission(code=4)), id="idless-submission"),
        pytest.param(lambda mj: mj.upload([]), id="upload-none"),
        pytest.param(lambda mj: mj.submit("/submit/x", ["not", "a", "mapping"]), id="raw-list"),
    ],
)
async def test_bad_input_is_refused_before_sending(call: Callable[[Client], Any]) -> None:
    """Bad input raises InvalidRequestError (a ValueError) and sends nothing."""
    mj, transport = client()
    async with mj:
        with pytest.raises(InvalidRequestError) as info:
            await call(mj)

    assert isinstance(info.value, ValueError)
    assert transport.requests == []


async def test_state_of_255_characters_is_allowed() -> None:
    """state up to 255 characters is sent."""
    mj, transport = client()
    async with mj:
        await mj.imagine("x", state="s" * 255)

    assert len(transport.requests) == 1


async def test_oversized_image_is_refused() -> None:
    """An image above max_image_bytes is refused before sending, for bytes and files alike."""
    mj, transport = client(max_image_bytes=len(PNG) - 1)
    async with mj:
        with pytest.raises(InvalidRequestError, match="limit"):
            await mj.describe(PNG)

    assert transport.requests == []


async def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A file above max_image_bytes is refused by its size."""
    image = tmp_path / "big.png"
    image.write_bytes(PNG + bytes(100))
    mj, transport = client(max_image_bytes=64)
    async with mj:
        with pytest.raises(InvalidRequestError, match="limit"):
            await mj.describe(image)

    assert transport.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"mode": "warp"}, id="bad-mode"),
        pytest.param({"mode": "/has space"}, id="bad-prefix"),
        pytest.param({"auth": "basic"}, id="bad-auth"),
        pytest.param({"base_url": "ftp://mj.test"}, id="bad-scheme"),
        pytest.param({"base_url": "mj.test"}, id="no-scheme"),
        pytest.param({"base_url": "http://"}, id="no-host"),
        pytest.param({"timeout": 0}, id="zero-timeout"),
        pytest.param({"notify_hook": "app.test/hook"}, id="bad-hook"),
        pytest.param({"session": object()}, id="session-and-transport"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    """Bad mode, auth, base_url, timeout or hook raise InvalidRequestError at construction."""
    base_url = kwargs.pop("base_url", "http://mj.test")

    with pytest.raises(InvalidRequestError):
        Client(base_url, "k", transport=MockTransport(accepted), **kwargs)


def test_bad_auth_from_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown MJ_AUTH raises InvalidRequestError."""
    monkeypatch.setenv("MJ_AUTH", "token")

    with pytest.raises(InvalidRequestError):
        Client("http://mj.test", "k", transport=MockTransport(accepted))


@pytest.mark.parametrize("call", ["image_seed", "cancel"])
async def test_plus_code_3_on_a_task_query_is_task_not_found(call: str) -> None:
    """PLUS answers an unknown id with HTTP 200 code 3: TaskNotFoundError, as in other dialects."""
    mj, _ = client(lambda r: json_response({"code": 3, "description": "任务不存在"}))
    async with mj:
        with pytest.raises(mjasync.TaskNotFoundError) as caught:
            await getattr(mj, call)("999")
    assert caught.value.task_id == "999"
    assert caught.value.code == 3


async def test_action_sends_an_explicit_custom_id_the_snapshot_lacks() -> None:
    """A customId is sent as given with a Task too (relays may strip the buttons list)."""
    transport = MockTransport(lambda request: json_response(submit_payload("77")))
    task = decode_task(task_payload("42", buttons=[]))
    async with mjasync.Client("http://mj.test", "k", transport=transport) as mj:
        await mj.action(task, "MJ::JOB::upsample::1::abc")
    (request,) = transport.requests
    assert request.json == {"taskId": "42", "customId": "MJ::JOB::upsample::1::abc"}


async def test_a_bare_500_names_the_status_once() -> None:
    """An empty 5xx reads "no description (HTTP 500)", not the status twice."""
    transport = MockTransport(lambda request: Response(status=500))
    retry = mjasync.RetryPolicy(attempts=1)
    async with mjasync.Client("http://mj.test", "k", transport=transport, retry=retry) as mj:
        with pytest.raises(mjasync.ServerError) as caught:
            await mj.fetch("42")
    assert str(caught.value).count("500") == 1
