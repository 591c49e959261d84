"""The fast `Task` decoder against the straightforward one it replaced, field by field.

`_serde._structure_task` has type fast paths and caches for the poller's hot path. The
reference below is the plain version it replaced (every value through the tolerant
helpers, no caches). On any task-shaped JSON both must agree: the same fields with the
same types, the same ``properties`` and ``raw``, or both a DecodeError.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from _shared import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjasync import Button, DecodeError, Task
from mjasync._serde import (
    _ACTIONS,
    _STATUSES,
    _as_int,
    _as_text,
    as_id,
    clear_caches,
    decode_task,
    decode_tasks,
    parse_progress,
)
from mjasync._serde import _parse_time_uncached as reference_time

PAYLOADS = Path(__file__).parent / "payloads"


def reference_button(data: Mapping[str, Any]) -> Button:
    return Button(
        custom_id=_as_text(data.get("customId")) or "",
        emoji=_as_text(data.get("emoji")) or "",
        label=_as_text(data.get("label")) or "",
        type=_as_int(data.get("type"), 2),
        style=_as_int(data.get("style"), 2),
    )


def reference_videos(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Video links, spelled out: videoUrl, imageUrl when it is a video, videoUrls."""

    def link(value: object) -> str | None:
        return (value.strip() or None) if isinstance(value, str) else None

    first = link(data.get("videoUrl"))
    items = data.get("videoUrls")
    listed = []
    for item in items if isinstance(items, list) else []:
        url = link(item.get("url") if isinstance(item, Mapping) else item)
        if url is not None:
            listed.append(url)
    image = link(_as_text(data.get("imageUrl")))
    content_type = data.get("contentType")
    action = _as_text(data.get("action"))
    status = _as_text(data.get("status")) or ""
    image_is_video = image is not None and (
        image == first
        or image in listed
        or (isinstance(content_type, str) and content_type.lower().startswith("video/"))
        or (
            action in {"VIDEO", "VIDEO_EXTEND"} and status == "SUCCESS" and not first and not listed
        )
    )
    out: list[str] = []
    for url in [first, image if image_is_video else None, *listed]:
        if url is not None and url not in out:
            out.append(url)
    return tuple(out)


def reference_task(data: object) -> Task:
    """The decoder as it was before the fast paths (mjasync 0.1.0 at commit 1a4edaa).

    Plus the video links added since, computed the plain way on every task.
    """
    if not isinstance(data, Mapping):
        raise DecodeError("not an object", body=data)
    task_id = as_id(data.get("id"))
    if task_id is None:
        raise DecodeError("no id", body=data)
    status_text = _as_text(data.get("status")) or ""
    action_text = _as_text(data.get("action"))
    properties = data.get("properties")
    buttons = data.get("buttons")
    return Task(
        id=task_id,
        action=_ACTIONS.get(action_text, action_text) if action_text else None,
        status=_STATUSES.get(status_text, status_text),
        progress=parse_progress(data.get("progress")),
        prompt=_as_text(data.get("prompt")),
        prompt_en=_as_text(data.get("promptEn")),
        description=_as_text(data.get("description")),
        state=_as_text(data.get("state")),
        submit_time=reference_time(data.get("submitTime")),
        start_time=reference_time(data.get("startTime")),
        finish_time=reference_time(data.get("finishTime")),
        image_url=_as_text(data.get("imageUrl")) or None,
        fail_reason=_as_text(data.get("failReason")) or None,
        buttons=tuple(
            reference_button(item)
            for item in (buttons if isinstance(buttons, list) else [])
            if isinstance(item, Mapping) and _as_text(item.get("customId"))
        ),
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        raw=data if isinstance(data, dict) else dict(data),
        video_urls=reference_videos(data),
    )


def fields(task: Task) -> list[tuple[str, type, object]]:
    """Every field with its exact type, the buttons' too (eq=False fields included)."""
    out: list[tuple[str, type, object]] = []
    for name in Task.__slots__:
        if name.startswith("__"):
            continue
        value = getattr(task, name)
        out.append((name, type(value), value))
    for button in task.buttons:
        out.extend(
            (name, type(v), v)
            for name, v in zip(Button.__slots__, button_values(button), strict=False)
        )
    return out


def button_values(button: Button) -> tuple[object, ...]:
    return (button.custom_id, button.emoji, button.label, button.type, button.style)


def assert_same(data: object) -> None:
    try:
        expected = reference_task(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_task(data)
        return
    for _ in range(2):  # cold, then with the time and button caches warm
        got = decode_task(data)
        assert fields(got) == fields(expected)
        assert got == expected
        assert got.properties == expected.properties
        assert got.properties is not data.get("properties")  # type: ignore[attr-defined]
        if isinstance(data, dict):
            assert got.raw is data
        else:
            assert got.raw == dict(data)  # type: ignore[call-overload]


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "",
            " 17 ",
            "1748339029401",
            "0",
            "45%",
            "100%",
            "²%",
            "12.5%",
            "Waiting (45%)",
            "SUCCESS",
            "IN_PROGRESS",
            "IMAGINE",
            "VIDEO",
            "VIDEO_EXTEND",
            "MJ::JOB::upsample::1::h",
        ]
    )
    | st.sampled_from([0, 1, 2, 45, 100, 101, -3, 1748339029401, 253_402_300_799_001])
)
links = st.sampled_from(
    ["https://v.test/0.mp4", " https://v.test/0.mp4 ", "https://v.test/1.mp4", ""]
)
video_lists = (
    st.lists(links | st.fixed_dictionaries({"url": links | scalars}) | scalars, max_size=4)
    | scalars
)
content_types = st.sampled_from(["video/mp4", "VIDEO/webm", "image/png", " video/mp4", "video"])
button_keys = st.sampled_from(["customId", "emoji", "label", "type", "style"])
buttons = (
    st.lists(st.dictionaries(button_keys, scalars, max_size=5) | scalars, max_size=4) | scalars
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
        "unknownField",
    ]
)
tasks = st.builds(
    lambda base, extra: {**base, **extra},
    st.dictionaries(task_keys, scalars, max_size=14),
    st.fixed_dictionaries(
        {},
        optional={
            "buttons": buttons,
            "properties": st.dictionaries(st.text(max_size=4), scalars, max_size=3) | scalars,
            "imageUrl": links | scalars,
            "videoUrl": links | scalars,
            "videoUrls": video_lists,
            "contentType": content_types | scalars,
            "status": st.sampled_from(["SUCCESS", "IN_PROGRESS"]),
            "action": st.sampled_from(["VIDEO", "VIDEO_EXTEND", "UPSCALE"]),
        },
    ),
)


@settings(max_examples=examples(1500), suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_fast_decoder_matches_the_reference(data: dict[str, Any]) -> None:
    """Any task-shaped object decodes exactly as the plain decoder did."""
    clear_caches()
    assert_same(data)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(tasks)
def test_fast_decoder_matches_the_reference_on_other_mappings(data: dict[str, Any]) -> None:
    """A framework's read-only mapping decodes the same (raw becomes a dict copy)."""
    assert_same(MappingProxyType(data))


EDGES: list[object] = [
    {"id": " 17 ", "progress": 101},
    {"id": 17.0, "progress": -3, "status": True, "action": 5},
    {"id": "1", "progress": 45.9, "submitTime": "1748339029401", "startTime": 1748339029401.0},
    {"id": "1", "progress": "100%", "finishTime": 253_402_300_799_001, "imageUrl": 0},
    {"id": "1", "imageUrl": "", "failReason": False, "prompt": 1.5, "state": None},
    {"id": "1", "buttons": [{"customId": 7, "type": "3", "style": True}, {"label": "x"}, 3]},
    {"id": "1", "buttons": {"customId": "a"}, "properties": [1]},
    {"id": "", "status": "SUCCESS"},
    {"id": True},
    OrderedDict(id="1", status="SUCCESS", progress="12.5%"),
    {"id": "1", "action": "VIDEO", "status": "SUCCESS", "imageUrl": "https://v.test/0.mp4"},
    {"id": "1", "action": "VIDEO", "status": "IN_PROGRESS", "imageUrl": "https://v.test/p.webp"},
    {
        "id": "1",
        "imageUrl": "https://v.test/1.mp4",
        "videoUrls": [{"url": "https://v.test/0.mp4"}, {"url": "https://v.test/1.mp4"}],
    },
    {"id": "1", "imageUrl": "https://v.test/0.mp4", "contentType": "video/mp4"},
    {"id": "1", "videoUrl": "", "videoUrls": None, "imageUrl": "https://v.test/0.png"},
    {"id": "1", "videoUrl": 5, "videoUrls": ["https://v.test/0.mp4", 3, {"url": None}, {}]},
]


@pytest.mark.parametrize("data", EDGES)
def test_edge_cases_match_the_reference(data: object) -> None:
    """Hand-picked values at each fast path's boundary."""
    clear_caches()
    assert_same(data)


@pytest.mark.parametrize(
    "path",
    sorted([*PAYLOADS.glob("task_*.json"), *PAYLOADS.glob("notify_*.json")]),
    ids=lambda p: p.name,
)
def test_captured_payloads_match_the_reference(path: Path) -> None:
    """Every captured task payload decodes exactly as before."""
    data = json.loads(path.read_text(encoding="utf-8"))
    clear_caches()
    assert_same(data)


def test_decode_tasks_matches_the_reference_on_a_list() -> None:
    """A batch with repeated and broken items: same tasks, same order, broken ones skipped."""
    grid = json.loads((PAYLOADS / "task_imagine_success_plus.json").read_text("utf-8"))
    items: list[object] = [grid, {"id": None}, dict(grid, id="2"), "nope", grid]
    got = decode_tasks(items)
    expected = [reference_task(item) for item in (grid, dict(grid, id="2"), grid)]
    assert [fields(t) for t in got] == [fields(t) for t in expected]


def test_cached_buttons_are_shared_but_equal() -> None:
    """Two snapshots of one finished task share Button objects; values are unchanged."""
    grid = json.loads((PAYLOADS / "task_imagine_success_plus.json").read_text("utf-8"))
    clear_caches()
    first, second = decode_task(grid), decode_task(json.loads(json.dumps(grid)))
    assert first.buttons == second.buttons
    assert all(a is b for a, b in zip(first.buttons, second.buttons, strict=True))
    assert first.submit_time is second.submit_time
