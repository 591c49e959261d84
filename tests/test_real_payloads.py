"""Every real response body in tests/payloads/real/, decoded through the public API.

The bodies were copied from public sources (``SOURCES.md`` names each one). ``CORPUS``
says, per file, which client call the body answers and what that call must make of it:
the `Submission` or `Task` fields, the semantic names of the buttons, or the exception.
A body is served verbatim by a `MockTransport`, so the whole wire path runs: status and
body mapping, the cattrs decode, and the retry decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from mjasync import (
    AuthenticationError,
    BannedPromptError,
    Client,
    MJError,
    QueueFullError,
    Request,
    Response,
    RetryPolicy,
    SubmitRejectedError,
    Task,
    TaskAction,
    TaskFailedError,
    TaskStatus,
)
from mjasync.testing import MockTransport

REAL = Path(__file__).parent / "payloads" / "real"
PARENT = "1700000000000001"
TOKEN = "corpus-token"
ATTEMPTS = 3
# Fast retries, several attempts: a test also sees which answers the client resends.
RETRY = RetryPolicy(attempts=ATTEMPTS, backoff=0.001, max_backoff=0.002)
GRID = ("U1", "U2", "U3", "U4", "reroll", "V1", "V2", "V3", "V4")
DIALECTS = frozenset({"oss", "plus", "trueai", "newapi", "agg"})


@attrs.frozen
class Prefix:
    """An expected string that the actual value starts with."""

    text: str


@attrs.frozen
class Case:
    """What one body must mean: the call it answers and the fields (or error) it yields.

    ``expect`` maps an attribute path (``task_id``, ``properties.bannedWord``,
    ``0.status``) to its value on the call's result, or on the exception in ``raises``.
    """

    dialect: str
    call: str
    expect: Mapping[str, object]
    status: int = 200
    raises: type[MJError] | None = None
    buttons: tuple[str | None, ...] | None = None


CORPUS: dict[str, Case] = {
    # -- novicezk/midjourney-proxy ---------------------------------------------------
    "oss_submit_accepted_doc.json": Case(
        "oss",
        "imagine",
        {
            "code": 1,
            "description": "成功",
            "task_id": "8498455807619990",
            "properties.discordInstanceId": "1118138338562560102",
            "queue_position": None,
        },
    ),
    "oss_submit_accepted_empty_properties.json": Case(
        "oss",
        "imagine",
        {"code": 1, "task_id": "0452164493055063", "task_ids": ("0452164493055063",)},
    ),
    "oss_submit_exists_21.json": Case(
        "oss",
        "simple_change",
        {
            "code": 21,
            "description": "任务已存在",
            "task_id": "0741798445574458",
            "properties.status": "SUCCESS",
            "properties.imageUrl": "https://xxxx",
        },
    ),
    "oss_submit_queued_22.json": Case(
        "oss",
        "imagine",
        {"code": 22, "task_id": "0741798445574458", "queue_position": 1, "needs_modal": False},
    ),
    "oss_submit_queue_full_23.json": Case(
        "oss",
        "imagine",
        {"code": 23, "status": 200, "description": "队列已满，请稍后尝试"},
        raises=QueueFullError,
    ),
    "oss_submit_banned_24.json": Case(
        "oss",
        "imagine",
        {
            "code": 24,
            "banned_word": "nude",
            "properties.promptEn": "nude body",
            "description": "可能包含敏感词",
        },
        raises=BannedPromptError,
    ),
    "oss_task_describe_success_doc.json": Case(
        "oss",
        "fetch",
        {
            "id": "14001929738841620",
            "action": TaskAction.DESCRIBE,
            "status": TaskStatus.SUCCESS,
            "progress": None,
            "description": "/describe 14001929738841620.png",
            "image_url": "https://cdn.discordapp.com/attachments/xxx/xxx/14001929738841620.png",
            "final_prompt": Prefix("1️⃣ Cat --ar 5:4\n\n2️⃣ Cat2"),
            "submit_time": None,
            "is_terminal": True,
        },
        buttons=(),
    ),
    "oss_notify_imagine_success_doc.json": Case(
        "oss",
        "notify",
        {
            "id": "14001929738841620",
            "action": TaskAction.IMAGINE,
            "status": TaskStatus.SUCCESS,
            "progress": 100,
            "prompt": "猫猫",
            "prompt_en": "Cat",
            "submit_time": datetime(2023, 7, 13, 6, 56, 45, 854000, tzinfo=UTC),
            "finish_time": datetime(2023, 7, 13, 6, 59, 4, 312000, tzinfo=UTC),
            "fail_reason": None,
            "final_prompt": "Cat",
        },
        buttons=("U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "reroll"),
    ),
    "oss_task_imagine_failure_invalid_form_body.json": Case(
        "oss",
        "fetch",
        {
            "id": "7564193164428700",
            "status": TaskStatus.FAILURE,
            "progress": None,
            "fail_reason": "Invalid Form Body",
            "image_url": None,
            "state": None,
            "start_time": datetime(2023, 6, 17, 10, 35, 27, 234000, tzinfo=UTC),
            "finish_time": datetime(2023, 6, 17, 10, 35, 27, 596000, tzinfo=UTC),
            "properties": {},
            "is_terminal": True,
        },
        buttons=(),
    ),
    # -- midjourney-proxy-plus ---------------------------------------------------------
    "plus_submit_accepted_doc.json": Case(
        "plus",
        "imagine",
        {"code": 1, "description": "提交成功", "task_id": "14001929738841620"},
    ),
    "plus_submit_modal_21.json": Case(
        "plus",
        "action",
        {
            "code": 21,
            "description": "窗口等待",
            "task_id": "14001929738841620",
            "needs_modal": True,
            "properties": {},
        },
    ),
    "plus_task_describe_success_doc.json": Case(
        "plus",
        "fetch",
        {
            "action": TaskAction.DESCRIBE,
            "status": TaskStatus.SUCCESS,
            "final_prompt": Prefix("1️⃣ Cat --ar 5:4"),
            "properties.finalZhPrompt": Prefix("1️⃣ 猫 --ar 5:4"),
        },
        buttons=(),
    ),
    "plus_task_shorten_success_doc.json": Case(
        "plus",
        "fetch",
        {
            "id": "1689252749098647",
            "action": TaskAction.SHORTEN,
            "status": TaskStatus.SUCCESS,
            "final_prompt": Prefix("## Important tokens\n**appdash** **appdash**"),
            "properties.finalZhPrompt": Prefix("## 重要词汇"),
        },
    ),
    "plus_task_shorten_show_details_doc.json": Case(
        "plus",
        "fetch",
        {
            "id": "1689253263953453",
            "action": TaskAction.SHORTEN,
            "description": "/up 168925266642808397 Show Details",
            "final_prompt": Prefix("## Important tokens\n**appdash** (1.00)"),
        },
    ),
    "plus_image_seed_doc.json": Case("plus", "image_seed", {"": "636646138"}),
    "plus_notify_imagine_success_doc.json": Case(
        "plus",
        "notify",
        {
            "id": "14001929738841620",
            "status": TaskStatus.SUCCESS,
            "progress": 100,
            "image_url": "https://cdn.discordapp.com/attachments/xxx/xxx/xxxx.png",
            "final_prompt": "Cat",
        },
        buttons=(),
    ),
    # -- trueai-org/midjourney-proxy ---------------------------------------------------
    "trueai_submit_no_account_3.json": Case(
        "trueai",
        "video",
        {"code": 3, "status": 200, "description": "无可用的账号实例"},
        raises=SubmitRejectedError,
    ),
    "trueai_error_401_invalid_token.txt": Case(
        "trueai",
        "fetch_many",
        {"status": 401, "description": "Invalid token.", "code": None},
        status=401,
        raises=AuthenticationError,
    ),
    # -- QuantumNous/new-api -----------------------------------------------------------
    "newapi_submit_numeric_result_doc.json": Case(
        "newapi",
        "imagine",
        {"code": 1, "task_id": "1320098173412546", "result": 1320098173412546, "properties": {}},
    ),
    "newapi_list_by_condition_doc.json": Case(
        "newapi",
        "fetch_many",
        {
            "len": 1,
            "0.id": "string",
            "0.status": TaskStatus.NOT_START,
            "0.progress": None,
            "0.submit_time": None,
            "0.finish_time": None,
            "0.buttons.0.custom_id": "string",
            "0.buttons.0.style": 0,
            "0.is_terminal": False,
        },
    ),
    # -- aggregators ---------------------------------------------------------------------
    "agg_dmxapi_submit_accepted.json": Case(
        "agg",
        "imagine",
        {
            "code": 1,
            "task_id": "1747141695143320",
            "properties.discordInstanceId": "1371290282703978598",
            "properties.discordChannelId": "1371290282703978598",
        },
    ),
    "agg_dmxapi_task_imagine_success.json": Case(
        "agg",
        "fetch",
        {
            "id": "1747132423020537",
            "action": TaskAction.IMAGINE,
            "status": TaskStatus.SUCCESS,
            "progress": 100,
            "state": "",
            "fail_reason": None,
            "submit_time": datetime(2025, 5, 13, 10, 33, 43, 20000, tzinfo=UTC),
            "finish_time": datetime(2025, 5, 13, 10, 34, 23, 701000, tzinfo=UTC),
            "image_url": Prefix("https://cdn.gptbest.vip/mj/attachments/"),
            "final_prompt": Prefix("<https://s.mj.run/RdNm0xs6fRI> This is a video"),
            "properties.messageHash": "6dc7beb8-8310-4fd4-b46c-716b422ddffc",
            "properties.flags": 0,
            "raw.mode": "",
            "raw.imageHeight": 0,
        },
        buttons=GRID,
    ),
    "agg_147ai_submit_accepted_hex_instance.json": Case(
        "agg",
        "imagine",
        {
            "code": 1,
            "description": "Submit success",
            "task_id": "1762501146700502",
            "properties.discordInstanceId": "4c2dc1123d504d0a8d876d72d971a847",
        },
    ),
    "agg_147ai_task_imagine_in_progress.json": Case(
        "agg",
        "fetch",
        {
            "id": "1762500770151958",
            "status": TaskStatus.IN_PROGRESS,
            "progress": 40,
            "image_url": None,
            "fail_reason": None,
            "start_time": datetime(2025, 11, 7, 7, 32, 53, 5000, tzinfo=UTC),
            "finish_time": None,
            "final_prompt": Prefix("Draw a cute orange cat"),
            "raw.videoUrls": None,
            "is_terminal": False,
        },
        buttons=(),
    ),
    "agg_rixapi_submit_modal_21.json": Case(
        "agg",
        "action",
        {
            "code": 21,
            "description": "Waiting for window confirm",
            "task_id": "17381923542354",
            "needs_modal": True,
        },
    ),
    "agg_octopusx_submit_accepted.json": Case(
        "agg",
        "imagine",
        {"code": 1, "task_id": "1712158011464906", "properties": {}},
    ),
    "agg_octopusx_task_imagine_in_progress.json": Case(
        "agg",
        "fetch",
        {
            "id": "1712158011464906",
            "status": TaskStatus.IN_PROGRESS,
            "progress": 65,
            "submit_time": datetime(2025, 1, 1, tzinfo=UTC),
            "finish_time": None,
            "image_url": None,
            "state": "",
            "raw.imageUrls": [],
            "properties": {},
        },
        buttons=(),
    ),
}

# Expectations that were gaps once (strict xfails until fixed); kept as regression tests.
KNOWN_GAPS: list[Any] = [
    pytest.param(
        "oss_submit_exists_21.json",
        "needs_modal",
        False,
        id="oss-21-exists-is-not-a-modal",
    ),
    pytest.param(
        "oss_submit_exists_21.json",
        "existing",
        True,
        id="oss-21-exists-is-the-existing-task",
    ),
]

Call = Callable[[Client, bytes], Awaitable[Any]]


async def _notify(mj: Client, body: bytes) -> Task | None:
    result = await mj.handle_notification(body, token=TOKEN)
    assert result.status == 200, result.reason
    return result.task


CALLS: dict[str, Call] = {
    "imagine": lambda mj, _: mj.imagine("a cat"),
    "action": lambda mj, _: mj.action(PARENT, "MJ::Inpaint::1::0ddb91a0-af46::SOLO"),
    "simple_change": lambda mj, _: mj.submit("/submit/simple-change", {"content": "1 U1"}),
    "video": lambda mj, _: mj.submit("/submit/video", {"prompt": "a cat", "motion": "low"}),
    "fetch": lambda mj, _: mj.fetch(PARENT),
    "fetch_many": lambda mj, _: mj.fetch_many([PARENT]),
    "image_seed": lambda mj, _: mj.image_seed(PARENT),
    "notify": _notify,
}


def _response(name: str, status: int) -> Response:
    content = (REAL / name).read_bytes()
    kind = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
    return Response(status, {"content-type": kind}, content)


async def _run(name: str, case: Case) -> tuple[Any, MockTransport]:
    """Serve the body for every request and make the case's call; return what it gave."""
    transport = MockTransport(lambda _request: _response(name, case.status))
    async with Client(
        "http://mj.test",
        "k",
        transport=transport,
        retry=RETRY,
        notify_token=TOKEN,
        queue_full_wait=0,  # a refusal is raised at once, after one request
    ) as mj:
        call = CALLS[case.call]
        if case.raises is None:
            return await call(mj, (REAL / name).read_bytes()), transport
        with pytest.raises(case.raises) as info:
            await call(mj, (REAL / name).read_bytes())
        return info.value, transport


def _get(value: Any, path: str) -> Any:
    """Follow an attribute path: attributes, mapping keys, list indexes, ``len``."""
    for part in path.split(".") if path else ():
        if part == "len":
            value = len(value)
        elif isinstance(value, Mapping):
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit():
            value = value[int(part)]
        else:
            value = getattr(value, part)
    return value


def _check(value: Any, expect: Mapping[str, object]) -> None:
    for path, wanted in expect.items():
        actual = _get(value, path)
        if isinstance(wanted, Prefix):
            assert isinstance(actual, str), (path, actual)
            assert actual.startswith(wanted.text), (path, actual)
        else:
            assert actual == wanted, (path, actual, wanted)


# -- the corpus itself -------------------------------------------------------------------


def test_every_file_in_the_corpus_has_an_expectation() -> None:
    """The table covers exactly the bodies on disk, so no body is decoded by nobody."""
    on_disk = {path.name for path in REAL.iterdir() if path.name != "SOURCES.md"}

    assert on_disk == set(CORPUS)


def test_every_file_has_a_source_row() -> None:
    """SOURCES.md has one row per file, and the row's dialect matches the table's."""
    rows = re.findall(r"^\| `([^`]+)` \| (\w+)", (REAL / "SOURCES.md").read_text("utf-8"), re.M)

    assert sorted(name for name, _ in rows) == sorted(CORPUS)
    for name, dialect in rows:
        assert CORPUS[name].dialect == dialect
        assert name.startswith(f"{dialect}_")


def test_the_corpus_spans_every_dialect() -> None:
    """Bodies from each dialect, and JSON files that are valid JSON."""
    assert {case.dialect for case in CORPUS.values()} == DIALECTS
    for name in CORPUS:
        if name.endswith(".json"):
            json.loads((REAL / name).read_text("utf-8"))


# -- decoding each body --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CORPUS), ids=lambda name: name.rsplit(".", 1)[0])
async def test_real_body_decodes_to_what_it_means(name: str) -> None:
    """Each body, served as the server sent it, yields the documented fields or error."""
    case = CORPUS[name]
    result, transport = await _run(name, case)

    assert result is not None
    if case.raises is not None:
        assert type(result) is case.raises
    _check(result, case.expect)
    if case.buttons is not None:
        assert tuple(button.name for button in result.buttons) == case.buttons
    # Only "not now" (queue full) may be resent; every other answer is final. A
    # notification is pushed to us: with nobody waiting it costs no request.
    sent = {"notify": 0}.get(case.call, 1)
    assert len(transport.requests) == sent


@pytest.mark.parametrize(("name", "path", "wanted"), KNOWN_GAPS)
async def test_known_gaps(name: str, path: str, wanted: object) -> None:
    """Expectations the SDK once missed (see KNOWN_GAPS)."""
    result, _ = await _run(name, CORPUS[name])

    assert _get(result, path) == wanted


async def test_a_real_failure_raises_task_failed_with_its_reason() -> None:
    """The captured FAILURE snapshot ends a wait with TaskFailedError and MJ's reason."""
    task, _ = await _run(
        "oss_task_imagine_failure_invalid_form_body.json",
        CORPUS["oss_task_imagine_failure_invalid_form_body.json"],
    )
    async with Client("http://mj.test", "k", transport=MockTransport(_unreachable)) as mj:
        with pytest.raises(TaskFailedError) as info:
            await mj.await_task(task)

    assert info.value.reason == "Invalid Form Body"


def _unreachable(request: Request) -> Response:
    msg = f"a finished task needs no request, got {request.method} {request.url}"
    raise AssertionError(msg)
