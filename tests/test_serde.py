"""Tolerant decoding: every quirk of the wire, parsed once, and nothing but models or MJError."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _shared import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjasync import (
    AccountFilter,
    DecodeError,
    MJError,
    Response,
    Submission,
    Task,
    TaskAction,
    TaskStatus,
)
from mjasync._json import decode_json
from mjasync._responses import read_body, submission_or_raise
from mjasync._serde import (
    decode_submission,
    decode_task,
    decode_tasks,
    encode_account_filter,
    parse_progress,
    parse_time,
)

PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> Any:
    """Parse one captured payload from tests/payloads."""
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def minimal(**fields: Any) -> dict[str, Any]:
    """A bare task object with an id, plus *fields*."""
    return {"id": "1700000000000001", **fields}


# -- the captured payloads ---------------------------------------------------------------


def test_plus_success_grid_decodes_every_field() -> None:
    """The captured PLUS imagine SUCCESS (§12d) decodes into typed fields and 9 buttons."""
    task = decode_task(load("task_imagine_success_plus.json"))

    assert task.id == "1748339029401828"
    assert task.status is TaskStatus.SUCCESS
    assert task.action is TaskAction.IMAGINE
    assert task.progress == 100
    assert task.prompt == "dog playing ball --v 7 --p m7318879261434052637"
    assert task.submit_time == datetime(2025, 5, 27, 9, 43, 49, 401000, tzinfo=UTC)
    assert task.finish_time is not None
    assert task.finish_time.tzinfo is UTC
    assert task.image_url is not None
    assert task.image_url.startswith("https://cdn.discordapp.com/")
    assert task.fail_reason is None
    assert task.state is None
    assert [b.name for b in task.buttons] == [
        *("U1", "U2", "U3", "U4", "reroll"),
        *("V1", "V2", "V3", "V4"),
    ]
    assert task.properties["flags"] == 0
    assert task.final_prompt == "dog playing ball --v 7.0 --p 77724z8"
    assert task.raw["imageWidth"] == 2048
    assert task.is_terminal


def test_newapi_in_progress_reads_zero_times_and_empty_strings_as_unset() -> None:
    """NEWAPI IN_PROGRESS (§12e): finishTime 0, imageUrl "" and failReason "" are unset."""
    task = decode_task(load("task_imagine_in_progress_newapi.json"))

    assert task.status is TaskStatus.IN_PROGRESS
    assert task.progress == 40
    assert task.finish_time is None
    assert task.start_time == datetime(2025, 11, 7, 7, 32, 53, 5000, tzinfo=UTC)
    assert task.image_url is None
    assert task.fail_reason is None
    assert task.buttons == ()
    assert task.raw["maskBase64"] == ""
    assert not task.is_terminal


def test_newapi_failure_reports_100_percent_but_is_a_failure() -> None:
    """A NEWAPI FAILURE carries progress "100%": the status, not the progress, decides."""
    task = decode_task(load("task_imagine_failure_newapi.json"))

    assert task.status is TaskStatus.FAILURE
    assert task.progress == 100
    assert task.fail_reason == "上游任务超时（超过1小时）"
    assert task.is_terminal


def test_trueai_extras_stay_in_raw() -> None:
    """trueai's many extra TaskInfo fields (§6.5) are kept in Task.raw, not dropped or fatal."""
    payload = load("task_upscale_success_trueai.json")

    task = decode_task(payload)

    assert task.action is TaskAction.UPSCALE
    assert task.state == "job-42"
    assert task.raw == payload
    assert task.raw["imageUrls"][0]["url"].startswith("https://cdn.midjourney.com/")
    assert task.raw["displays"]["mode"] == "快速"
    assert task.properties["action_index"] == 1
    assert len(task.buttons) == 15


def test_modal_task_is_not_terminal() -> None:
    """A MODAL task is blocked, not finished."""
    task = decode_task(load("task_modal_plus.json"))

    assert task.status is TaskStatus.MODAL
    assert task.action is TaskAction.INPAINT
    assert task.progress == 0
    assert not task.is_terminal
    assert task.properties["remix"] is True


def test_describe_result_exposes_the_four_prompts() -> None:
    """A describe result's prompts are in final_prompt and its buttons have names."""
    task = decode_task(load("task_describe_success_plus.json"))

    assert task.final_prompt is not None
    assert task.final_prompt.count("️⃣") == 4
    assert [b.name for b in task.buttons] == [
        *("imagine_1", "imagine_2", "imagine_3", "imagine_4"),
        *("describe_retry", "imagine_all"),
    ]


def test_notify_hook_payload_decodes_like_a_fetch() -> None:
    """The PLUS notifyHook body (§12f) is a task object like any other."""
    task = decode_task(load("notify_imagine_success_plus.json"))

    assert task.id == "14001929738841620"
    assert task.prompt_en == "Cat"
    assert task.buttons == ()


@pytest.mark.parametrize(
    ("name", "code", "task_id", "queue"),
    [
        pytest.param("submit_accepted_oss.json", 1, "8498455807619990", None, id="accepted"),
        pytest.param("submit_queued_oss.json", 22, "0741798445574458", 1, id="queued"),
        pytest.param("submit_modal_plus.json", 21, "14001929738841620", None, id="modal"),
        pytest.param("image_seed_plus.json", 1, "636646138", None, id="image-seed"),
        pytest.param("submit_queue_full_plus.json", 23, None, 10, id="queue-full"),
    ],
)
def test_submit_answers_decode(
    name: str, code: int, task_id: str | None, queue: int | None
) -> None:
    """Captured submit answers (§12a-c, g) decode into a Submission with code, id and queue."""
    submission = decode_submission(load(name))

    assert submission.code == code
    assert submission.task_id == task_id
    assert submission.queue_position == queue
    assert submission.needs_modal is (code == 21)


def test_imagine_all_comma_list_becomes_task_ids() -> None:
    """trueai's "imagine all" comma-joined result yields every id, the first as task_id."""
    submission = decode_submission(load("submit_imagine_all_trueai.json"))

    assert submission.task_ids == (
        "1762933500000101",
        "1762933500000102",
        "1762933500000103",
        "1762933500000104",
    )
    assert submission.task_id == "1762933500000101"


def test_trueai_result_fail_shape_takes_message_as_description() -> None:
    """The {success:false, code:-1, message} shape decodes with message as the description."""
    submission = decode_submission(load("error_trueai_result_fail.json"))

    assert submission.code == -1
    assert submission.description == "并发数已达上限"
    assert submission.task_id is None


# -- ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param("1320098173412546", "1320098173412546", id="string"),
        pytest.param(1320098173412546, "1320098173412546", id="json-number"),
        pytest.param(1320098173412546.0, "1320098173412546", id="integral-float"),
        pytest.param("  42  ", "42", id="padded-string"),
    ],
)
def test_task_id_is_always_a_string(wire: object, expected: str) -> None:
    """Task ids sent as JSON numbers are stored as strings."""
    assert decode_task({"id": wire}).id == expected


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(None, id="null"),
        pytest.param("", id="empty"),
        pytest.param(True, id="bool"),
        pytest.param(1.5, id="fraction"),
        pytest.param([1], id="list"),
    ],
)
def test_task_without_usable_id_is_a_decode_error(wire: object) -> None:
    """A task whose id is missing or not an id raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_task({"id": wire, "status": "SUCCESS"})


def test_submission_result_as_json_number() -> None:
    """A submit result printed as a JSON number (aggregator docs) becomes a string id."""
    submission = decode_submission({"code": 1, "description": "ok", "result": 1320098173412546})

    assert submission.task_id == "1320098173412546"


def test_submission_code_as_string_is_accepted() -> None:
    """A code sent as a numeric string still decodes."""
    assert decode_submission({"code": "22", "result": "7"}).code == 22


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"description": "no code"}, id="missing"),
        pytest.param({"code": True}, id="bool"),
        pytest.param({"code": "abc"}, id="text"),
        pytest.param([1, 2], id="array"),
        pytest.param("ok", id="string"),
    ],
)
def test_submission_without_integer_code_is_a_decode_error(body: object) -> None:
    """A submit answer without an integer code raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_submission(body)


# -- open status and action sets -----------------------------------------------------------


@pytest.mark.parametrize("status", [s.value for s in TaskStatus])
def test_known_statuses_become_enum_members(status: str) -> None:
    """Every known wire status decodes to its TaskStatus member."""
    assert decode_task(minimal(status=status)).status is TaskStatus(status)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param("PAUSED", "PAUSED", id="unknown"),
        pytest.param("", "", id="newapi-pre-sync"),
        pytest.param(None, "", id="null"),
    ],
)
def test_unknown_status_is_kept_as_plain_string(wire: object, expected: str) -> None:
    """Unknown and empty statuses are kept as strings, never a crash, and are not terminal."""
    task = decode_task(minimal(status=wire))

    assert task.status == expected
    assert not isinstance(task.status, TaskStatus)
    assert not task.is_terminal


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param("UPSCALE_HD", TaskAction.UPSCALE_HD, id="trueai"),
        pytest.param("HIGH_VARIATION", TaskAction.HIGH_VARIATION, id="newapi"),
        pytest.param("PIC_READER", "PIC_READER", id="unknown"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="null"),
    ],
)
def test_action_is_an_open_set(wire: object, expected: object) -> None:
    """Known actions become TaskAction members; unknown ones stay strings; empty is None."""
    action = decode_task(minimal(action=wire)).action

    assert action == expected
    if isinstance(expected, TaskAction):
        assert action is expected


# -- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param("0%", 0, id="zero"),
        pytest.param("45%", 45, id="percent"),
        pytest.param("100%", 100, id="full"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="null"),
        pytest.param("Waiting to start", None, id="text"),
        pytest.param("paused", None, id="paused"),
        pytest.param("Waiting to start (45%)", 45, id="percent-in-text"),
        pytest.param(" 45% ", 45, id="padded"),
        pytest.param("12.5%", 12, id="fraction"),
        pytest.param("250%", 100, id="clamped"),
        pytest.param(45, 45, id="json-int"),
        pytest.param(45.7, 45, id="json-float"),
        pytest.param(-3, 0, id="negative"),
        pytest.param(True, None, id="bool"),
        pytest.param("%", None, id="lone-percent"),
        pytest.param("²%", None, id="unicode-digit"),
        pytest.param("9" * 5000 + "%", None, id="huge"),
    ],
)
def test_progress_parsing(wire: object, expected: int | None) -> None:
    """progress: "45%" -> 45, "" and text -> None, numbers clamped to 0..100, never an exception."""
    assert parse_progress(wire) == expected
    assert decode_task(minimal(progress=wire)).progress == expected


# -- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(1748339029401, datetime(2025, 5, 27, 9, 43, 49, 401000, tzinfo=UTC), id="ms"),
        pytest.param(
            "1748339029401", datetime(2025, 5, 27, 9, 43, 49, 401000, tzinfo=UTC), id="str"
        ),
        pytest.param(1748339029401.0, datetime(2025, 5, 27, 9, 43, 49, 401000, tzinfo=UTC), id="f"),
        pytest.param(0, None, id="zero-means-unset"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty"),
        pytest.param(-5, None, id="negative"),
        pytest.param(10**20, None, id="past-year-9999"),
        pytest.param(float("inf"), None, id="inf"),
        pytest.param(True, None, id="bool"),
        pytest.param("2025-05-27", None, id="iso-text"),
        pytest.param("²", None, id="unicode-digit"),
        pytest.param("9" * 5000, None, id="huge-digit-string"),
    ],
)
def test_time_parsing(wire: object, expected: datetime | None) -> None:
    """Times are epoch ms -> aware UTC datetimes; 0, null and garbage -> None."""
    assert parse_time(wire) == expected
    task = decode_task(minimal(submitTime=wire, startTime=wire, finishTime=wire))
    assert task.submit_time == task.start_time == task.finish_time == expected


# -- buttons --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(minimal(), id="missing"),
        pytest.param(minimal(buttons=None), id="null"),
        pytest.param(minimal(buttons=[]), id="empty"),
        pytest.param(minimal(buttons="U1"), id="string"),
        pytest.param(minimal(buttons={"customId": "MJ::x"}), id="object"),
    ],
)
def test_buttons_missing_or_odd_decode_as_empty(payload: dict[str, Any]) -> None:
    """buttons missing (OSS), null or not a list decode to an empty tuple."""
    assert decode_task(payload).buttons == ()


def test_link_buttons_and_junk_entries_are_dropped() -> None:
    """Link buttons (no customId) and non-object entries cannot be pressed, so they are dropped."""
    payload = minimal(
        buttons=[
            {"customId": "MJ::JOB::upsample::1::h", "label": "U1", "type": 2, "style": 2},
            {"url": "https://www.midjourney.com/jobs/h", "label": "Web", "type": 2, "style": 5},
            {"customId": "", "label": "empty"},
            {"customId": None, "label": "null"},
            "MJ::JOB::upsample::2::h",
            None,
        ]
    )

    task = decode_task(payload)

    assert [b.custom_id for b in task.buttons] == ["MJ::JOB::upsample::1::h"]


def test_button_fields_with_odd_types_get_defaults() -> None:
    """A button's emoji/label null and type/style as strings or garbage still decode."""
    payload = minimal(
        buttons=[
            {"customId": "MJ::JOB::reroll::0::h::SOLO", "emoji": None, "label": None},
            {"customId": "MJ::JOB::upsample::1::h", "type": "2", "style": "3"},
            {"customId": "MJ::JOB::upsample::2::h", "type": "x", "style": 1.5},
        ]
    )

    reroll, used, odd = decode_task(payload).buttons

    assert (reroll.emoji, reroll.label, reroll.type, reroll.style) == ("", "", 2, 2)
    assert (used.type, used.style) == (2, 3)
    assert (odd.type, odd.style) == (2, 2)


# -- properties, raw and other fields ------------------------------------------------------


def test_properties_with_odd_value_types_are_kept_as_sent() -> None:
    """properties values of any JSON type are kept verbatim; precision-damaged ids too."""
    properties = {
        "discordChannelId": 8774786694361674000,
        "flags": 64,
        "remix": True,
        "nested": {"a": [1, None]},
        "numberOfQueues": "3",
        "finalPrompt": None,
    }

    task = decode_task(minimal(properties=properties))

    assert task.properties == properties
    assert task.final_prompt is None


@pytest.mark.parametrize("wire", [None, [], "text", 5])
def test_properties_that_are_not_an_object_become_empty(wire: object) -> None:
    """properties null, a list or a scalar decode to an empty dict."""
    assert decode_task(minimal(properties=wire)).properties == {}


def test_unknown_fields_are_kept_in_raw() -> None:
    """Fields the model does not know are in Task.raw, untouched."""
    payload = minimal(videoUrl="https://v.example/1.mp4", videoUrls=[{"url": "u"}], seed=None)

    task = decode_task(payload)

    assert task.raw["videoUrl"] == "https://v.example/1.mp4"
    assert task.raw["videoUrls"] == [{"url": "u"}]
    assert "seed" in task.raw


def test_text_fields_with_scalar_values_are_stringified() -> None:
    """prompt/state/description sent as numbers or bools become strings; objects become None."""
    task = decode_task(minimal(prompt=42, state=True, description={"x": 1}, failReason=[1]))

    assert task.prompt == "42"
    assert task.state == "true"
    assert task.description is None
    assert task.fail_reason is None


def test_task_equality_ignores_raw_and_properties() -> None:
    """Two snapshots equal in every typed field compare equal even if raw differs."""
    a = decode_task(minimal(status="SUCCESS", extra=1))
    b = decode_task(minimal(status="SUCCESS", extra=2))

    assert a == b


def test_submission_queue_position_tolerates_odd_values() -> None:
    """queue_position reads numberOfQueues as an int or a digit string, else None."""
    cases = {5: 5, "7": 7, True: None, "many": None, "²": None, None: None, "9" * 5000: None}
    for wire, expected in cases.items():
        submission = Submission(code=22, task_id="1", properties={"numberOfQueues": wire})
        assert submission.queue_position == expected, wire


# -- lists ----------------------------------------------------------------------------------


def test_decode_tasks_skips_entries_that_are_not_tasks() -> None:
    """A list-by-condition array decodes every task and skips junk entries."""
    good = load("task_imagine_success_plus.json")

    tasks = decode_tasks([good, None, {"status": "SUCCESS"}, "x", minimal(status="SUBMITTED")])

    assert [t.id for t in tasks] == ["1748339029401828", "1700000000000001"]


@pytest.mark.parametrize("body", [None, {"ids": []}, "[]", 3])
def test_decode_tasks_rejects_non_arrays(body: object) -> None:
    """A batch answer that is not a JSON array raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_tasks(body)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b"\xff\xfe\x00garbage", id="bad-utf8"),
        pytest.param(b"[" * 100_000, id="deep-nesting"),
    ],
)
def test_decode_json_raises_decode_error(content: bytes) -> None:
    """decode_json raises DecodeError, never ValueError or RecursionError."""
    with pytest.raises(DecodeError):
        decode_json(content)


# -- account filter ------------------------------------------------------------------------


def test_account_filter_omits_unset_members() -> None:
    """An empty AccountFilter encodes to {}: remix must not be sent unless set."""
    assert encode_account_filter(AccountFilter()) == {}


def test_account_filter_encodes_set_members_camel_case() -> None:
    """Set members are sent in camelCase; False is sent (it is a choice), None is not."""
    account_filter = AccountFilter(
        channel_id="c1",
        instance_id="i1",
        modes=("FAST", "RELAX"),
        remark="pool-a",
        remix=False,
        niji_remix=True,
        remix_auto_considered=False,
    )

    assert encode_account_filter(account_filter) == {
        "channelId": "c1",
        "instanceId": "i1",
        "modes": ["FAST", "RELAX"],
        "remark": "pool-a",
        "remix": False,
        "nijiRemix": True,
        "remixAutoConsidered": False,
    }


def test_account_filter_with_only_modes_sends_no_remix() -> None:
    """Setting modes alone sends modes alone."""
    assert encode_account_filter(AccountFilter(modes=("RELAX",))) == {"modes": ["RELAX"]}


# -- arbitrary JSON: a model or an MJError, never another exception -----------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["", "45%", "100%", "²", "²%", "12.5%", "SUCCESS", "MODAL", "MJ::JOB::upsample::1::h"]
    )
)
task_keys = st.sampled_from(
    [
        "id",
        "action",
        "status",
        "progress",
        "prompt",
        "promptEn",
        "description",
        "state",
        "submitTime",
        "startTime",
        "finishTime",
        "imageUrl",
        "failReason",
        "buttons",
        "properties",
        "customId",
        "emoji",
        "label",
        "type",
        "style",
        "code",
        "result",
        "success",
        "message",
        "numberOfQueues",
        "bannedWord",
    ]
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(task_keys, children, max_size=5)
    ),
    max_leaves=8,
)
# Objects shaped like tasks, buttons and submit answers, so the interesting branches are
# reached; their values are one level deep, which keeps generation cheap.
shallow = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(task_keys, json_scalars, max_size=5)
    | st.lists(st.dictionaries(task_keys, json_scalars, max_size=5), max_size=3)
)
json_objects = st.dictionaries(task_keys, shallow, max_size=10)
json_anything = json_values | json_objects | st.lists(json_objects, max_size=3)


def assert_model_or_mjerror(decode: Any, data: object, model: type) -> None:
    """Call decode(data): it returns a *model* or raises an MJError, nothing else."""
    try:
        result = decode(data)
    except MJError:
        return
    if model is list:
        assert isinstance(result, list)
        assert all(isinstance(item, Task) for item in result)
    else:
        assert isinstance(result, model)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(json_anything)
def test_decode_task_never_raises_anything_but_mjerror(data: object) -> None:
    """decode_task on arbitrary JSON returns a Task or raises an MJError."""
    assert_model_or_mjerror(decode_task, data, Task)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(json_anything)
def test_decode_tasks_never_raises_anything_but_mjerror(data: object) -> None:
    """decode_tasks on arbitrary JSON returns a list of Tasks or raises an MJError."""
    assert_model_or_mjerror(decode_tasks, data, list)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(json_anything)
def test_decode_submission_never_raises_anything_but_mjerror(data: object) -> None:
    """decode_submission on arbitrary JSON returns a Submission or raises an MJError."""

    def decode(value: object) -> Submission:
        submission = decode_submission(value)
        _ = submission.queue_position  # the property parses too
        return submission

    assert_model_or_mjerror(decode, data, Submission)


@settings(max_examples=examples(200))
@given(st.binary(max_size=200) | json_anything.map(lambda v: json.dumps(v).encode()))
def test_decode_json_never_raises_anything_but_mjerror(content: bytes) -> None:
    """decode_json on arbitrary bytes returns a value or raises an MJError."""
    with contextlib.suppress(MJError):
        decode_json(content)


status_codes = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 405, 429, 500, 502, 503])
bodies = (
    st.binary(max_size=100)
    | json_anything.map(lambda v: json.dumps(v, ensure_ascii=False).encode())
    | st.just(b"")
)
retry_after = st.none() | st.text(max_size=30) | st.sampled_from(["5", "1e400", "-1", "nan"])


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(status=status_codes | st.integers(100, 599), content=bodies, retry=retry_after)
def test_response_mapper_never_raises_anything_but_mjerror(
    status: int, content: bytes, retry: str | None
) -> None:
    """read_body + submission_or_raise on any status and body: a Submission or an MJError."""
    headers = {} if retry is None else {"retry-after": retry}
    response = Response(status=status, headers=headers, content=content)
    for task_id in (None, "1700000000000001"):
        try:
            body = read_body(response, "POST /submit/imagine", task_id=task_id)
            submission = submission_or_raise(body, "POST /submit/imagine", status)
        except MJError:
            continue
        assert isinstance(submission, Submission)
        assert submission.code in {1, 21, 22}
        assert submission.task_id is not None


# -- video results (#7) ------------------------------------------------------------------

CDN = "https://cdn.midjourney.com/video/abc"


def test_trueai_video_task_lists_its_image_url_first() -> None:
    """trueai's filled VIDEO task: videoUrl == imageUrl, then the four cdn videos."""
    discord = "https://cdn.discordapp.com/attachments/1/2/video.mp4?ex=1"
    task = decode_task(
        minimal(
            action="VIDEO",
            status="SUCCESS",
            imageUrl=discord,
            videoUrl=discord,
            videoUrls=[
                {"url": f"{CDN}/0_{i}.mp4", "thumbnail": f"{CDN}/0_{i}.webp"} for i in range(4)
            ],
            contentType="video/mp4",
        )
    )
    assert task.video_url == discord
    assert task.video_urls == (discord, *(f"{CDN}/0_{i}.mp4" for i in range(4)))
    assert task.image_url == discord  # imageUrl as sent


def test_trueai_video_task_without_video_fields_uses_image_url() -> None:
    """A SUCCESS VIDEO task that lists its video nowhere else: imageUrl is the video."""
    task = decode_task(minimal(action="VIDEO", status="SUCCESS", imageUrl=f"{CDN}/grid.mp4"))
    assert task.video_urls == (f"{CDN}/grid.mp4",)


def test_video_task_in_progress_keeps_its_preview_out_of_the_videos() -> None:
    """While a VIDEO task runs, imageUrl is a preview image, not a video."""
    task = decode_task(minimal(action="VIDEO", status="IN_PROGRESS", imageUrl=f"{CDN}/p.webp"))
    assert task.video_urls == ()
    assert task.video_url is None


def test_trueai_video_upscale_puts_the_picked_video_first() -> None:
    """A video upscale (action UPSCALE) picks one of the parent's videos as imageUrl."""
    videos = [{"url": f"{CDN}/0_{i}.mp4"} for i in range(4)]
    task = decode_task(
        minimal(action="UPSCALE", status="SUCCESS", imageUrl=f"{CDN}/0_2.mp4", videoUrls=videos)
    )
    assert task.video_url == f"{CDN}/0_2.mp4"
    assert task.video_urls == tuple(f"{CDN}/0_{i}.mp4" for i in (2, 0, 1, 3))


def test_video_content_type_marks_image_url_as_a_video() -> None:
    """trueai's contentType video/mp4 (a Discord video attachment) makes imageUrl a video."""
    task = decode_task(minimal(action="UPSCALE", imageUrl=f"{CDN}/u.mp4", contentType="video/mp4"))
    assert task.video_urls == (f"{CDN}/u.mp4",)


def test_newapi_video_urls_as_url_objects_and_strings() -> None:
    """new-api's [{url}] items and plain strings both count; duplicates and junk are dropped."""
    task = decode_task(
        minimal(
            action="VIDEO",
            imageUrl="https://relay.test/mj/image/1",
            videoUrl=f"{CDN}/0_0.mp4",
            videoUrls=[{"url": f"{CDN}/0_0.mp4"}, f"{CDN}/0_1.mp4", {"url": ""}, 7, None, {}],
        )
    )
    assert task.video_urls == (f"{CDN}/0_0.mp4", f"{CDN}/0_1.mp4")
    assert task.image_url == "https://relay.test/mj/image/1"


@pytest.mark.parametrize(
    "payload",
    ["task_imagine_success_plus.json", "task_upscale_success_trueai.json"],
)
def test_image_tasks_have_no_video(payload: str) -> None:
    """Captured image tasks (trueai's null video fields, contentType image/png) have none."""
    task = decode_task(load(payload))
    assert task.video_urls == ()
    assert task.video_url is None


def test_newapi_empty_video_fields_mean_no_video() -> None:
    """new-api always sends videoUrl "" and videoUrls null."""
    task = decode_task(
        minimal(status="SUCCESS", imageUrl="https://x/a.png", videoUrl="", videoUrls=None)
    )
    assert task.video_urls == ()
