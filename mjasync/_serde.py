"""The one cattrs converter, and every quirk of the wire parsed once, here.

The dialects disagree on nearly every scalar: ids arrive as strings or JSON numbers,
``progress`` as ``"45%"``, ``""`` or free text, times as epoch milliseconds with ``0`` or
``null`` meaning unset, ``buttons`` missing or null. The hooks below accept all of that
and raise `DecodeError` for anything that cannot be a model, never another exception.
`Task` has a hand-written hook because the poller decodes thousands of snapshots a
second and generated hooks with per-field error wrapping cost several times more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from ._errors import DecodeError, body_preview
from ._models import (
    AccountFilter,
    Button,
    Submission,
    Task,
    TaskAction,
    TaskStatus,
    implied_buttons,
)

__all__ = [
    "clear_caches",
    "converter",
    "decode_submission",
    "decode_task",
    "decode_tasks",
    "encode_account_filter",
    "epoch_ms",
    "parse_int",
    "parse_progress",
    "parse_time",
    "task_object",
    "video_links",
]

converter = cattrs.Converter()

_STATUSES = {status.value: status for status in TaskStatus}
_ACTIONS = {action.value: action for action in TaskAction}
# Epoch milliseconds past year 9999 overflow datetime; treat them as garbage, not a crash.
_MAX_EPOCH_MS = 253_402_300_799_000
# More digits than any id, code or time needs; int() would refuse > 4300 anyway.
_MAX_DIGITS = 30
# A percentage inside text: digits (a fraction is truncated), optional space, "%".
_PERCENT = re.compile(r"(?<![0-9.])([0-9]{1,10})(?:\.[0-9]+)?\s*%")


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def as_id(value: object) -> str | None:
    """A task id as a string: JSON numbers are accepted, floats only when integral."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def parse_int(text: str) -> int | None:
    """An optionally signed run of ASCII digits as an int; None for anything else.

    ``str.isdigit`` alone is not enough: it accepts ``"²"``, which ``int()`` rejects, and
    ``int()`` refuses strings over 4300 digits; both would escape as ValueError.
    """
    text = text.strip()
    digits = text[1:] if text[:1] == "-" else text
    if not digits or len(digits) > _MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(text)


def _as_int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        parsed = parse_int(value)
        return default if parsed is None else parsed
    return default


def parse_progress(value: object) -> int | None:
    """``"45%"`` -> 45; ``""``, text and garbage -> None; numbers are clamped to 0..100."""
    if isinstance(value, str):
        text = value.strip()
        number = text[:-1]
        if text.endswith("%") and 0 < len(number) <= 3 and number.isascii() and number.isdigit():
            return min(int(number), 100)
        # "12.5%", or free text such as "Waiting to start (45%)": the first "<n>%".
        match = _PERCENT.search(text)
        return min(int(match.group(1)), 100) if match is not None else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(0, min(value, 100))
    if isinstance(value, float) and math.isfinite(value):
        return max(0, min(int(value), 100))
    return None


def epoch_ms(value: object) -> int | None:
    """A wire time (epoch milliseconds, as a number or digits) as an int; None if unset.

    ``0``, ``null``, negative, past-year-9999 and non-numeric values are all "unset".
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = parse_int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if not isinstance(value, int) or value <= 0 or value > _MAX_EPOCH_MS:
        return None
    return value


def _parse_time_uncached(value: object) -> datetime | None:
    ms = epoch_ms(value)
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


# submitTime and startTime repeat in every snapshot of a task: a small cache of the
# datetimes built for recent epoch values (ints only; datetimes are immutable).
_TIME_CACHE: dict[int, datetime | None] = {}
_TIME_CACHE_SIZE = 4096
_MISSING = object()


def parse_time(value: object) -> datetime | None:
    """Epoch milliseconds -> aware UTC datetime; ``0``, ``null`` and garbage -> None."""
    if value is None:
        return None
    if type(value) is not int:
        return _parse_time_uncached(value)
    cache = _TIME_CACHE
    parsed = cache.get(value, _MISSING)
    if parsed is _MISSING:
        if len(cache) >= _TIME_CACHE_SIZE:
            cache.clear()
        parsed = cache[value] = _parse_time_uncached(value)
    return parsed  # type: ignore[return-value]


def _structure_button(data: object, _: type[Button] = Button) -> Button:
    if not isinstance(data, Mapping):
        msg = f"a button must be a JSON object, got {body_preview(data)}"
        raise DecodeError(msg, body=data)
    button = _button_or_none(data)
    if button is None:
        msg = "a button has no customId"
        raise DecodeError(msg, body=data)
    return button


# Buttons repeat in every snapshot of a finished task (a final notification and its
# confirming fetch, a watcher's snapshots): equal buttons share one frozen object.
_BUTTON_CACHE: dict[tuple[object, ...], Button] = {}
_BUTTON_CACHE_SIZE = 4096


def _button_or_none(data: Mapping[str, Any]) -> Button | None:
    """The button of one JSON object, or None when it has no customId (a link button)."""
    get = data.get
    custom_id = get("customId")
    if type(custom_id) is not str:
        custom_id = _as_text(custom_id)
    if not custom_id:
        return None
    emoji = get("emoji")
    if type(emoji) is not str:
        emoji = _as_text(emoji) or ""
    label = get("label")
    if type(label) is not str:
        label = _as_text(label) or ""
    kind = get("type", 2)
    if type(kind) is not int:
        kind = _as_int(kind, 2)
    style = get("style", 2)
    if type(style) is not int:
        style = _as_int(style, 2)
    key = (custom_id, emoji, label, kind, style)
    button = _BUTTON_CACHE.get(key)
    if button is None:
        if len(_BUTTON_CACHE) >= _BUTTON_CACHE_SIZE:
            _BUTTON_CACHE.clear()
        button = _BUTTON_CACHE[key] = Button(custom_id, emoji, label, kind, style)
    return button


def clear_caches() -> None:
    """Forget the cached datetimes and buttons (benchmarks measure cold decodes)."""
    _TIME_CACHE.clear()
    _BUTTON_CACHE.clear()


def _structure_buttons(value: object) -> tuple[Button, ...]:
    if not isinstance(value, list) or not value:
        return ()
    buttons = []
    for item in value:
        # Link buttons (no customId) cannot be pressed through the API: drop them.
        if type(item) is dict or isinstance(item, Mapping):
            button = _button_or_none(item)
            if button is not None:
                buttons.append(button)
    return tuple(buttons)


def _no_buttons(buttons: object, status: str, action: str | None) -> tuple[Button, ...]:
    # No "buttons" key (novicezk's Task.java has none) or null (new-api's copy of a task
    # its upstream sent no buttons for): the buttons /submit/change implies. An empty
    # list is a server saying "no buttons".
    return implied_buttons(status, action) if buttons is None else ()


def _text(value: object) -> str | None:
    return value if value is None or type(value) is str else _as_text(value)


# trueai (Models/TaskInfo.cs) and new-api (relay/mjproxy_handler.go) name video tasks VIDEO;
# trueai's enum also has VIDEO_EXTEND.
_VIDEO_ACTIONS = frozenset({"VIDEO", "VIDEO_EXTEND"})


def _link(value: object) -> str | None:
    # A link is a string; a number or an object in a URL field is no link at all.
    if type(value) is not str and not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def video_links(
    video_url: object,
    video_list: object,
    image_url: object,
    action: object,
    status: object,
    content_type: object,
) -> tuple[str, ...]:
    """Every video link of one task JSON object, first-seen order, no duplicates.

    ``videoUrl`` comes first; then ``imageUrl`` when it is a video: it is one of the
    listed videos (trueai copies a video upscale's pick from them), trueai's
    ``contentType`` says ``video/...``, or a SUCCESS VIDEO task lists its video nowhere
    else (trueai ``TaskInfo.SuccessAsync``: "ImageUrl本身就是视频链接"); then ``videoUrls``,
    whose items are strings or ``{"url": ...}`` objects (trueai adds ``thumbnail``).
    """
    first = _link(video_url)
    listed: list[str] = []
    if isinstance(video_list, list):
        for item in video_list:
            link = _link(item.get("url") if isinstance(item, Mapping) else item)
            if link is not None:
                listed.append(link)
    image = _link(image_url)
    if image is not None and not (
        image == first
        or image in listed
        or (isinstance(content_type, str) and content_type[:6].lower() == "video/")
        or (action in _VIDEO_ACTIONS and status == "SUCCESS" and first is None and not listed)
    ):
        image = None
    return tuple(dict.fromkeys(link for link in (first, image, *listed) if link is not None))


def _not_a_task(data: object) -> DecodeError:
    return DecodeError(f"a task must be a JSON object, got {body_preview(data)}", body=data)


def _no_task_id(data: object) -> DecodeError:
    return DecodeError(f"a task has no usable id: {body_preview(data)}", body=data)


def task_object(data: object) -> dict[str, Any]:
    """*data* as a JSON object `decode_task` accepts (one with a usable id); else DecodeError.

    The check `decode_task` makes first, for callers that keep the JSON undecoded.
    """
    if not isinstance(data, Mapping):
        raise _not_a_task(data)
    if as_id(data.get("id")) is None:
        raise _no_task_id(data)
    return data if type(data) is dict else dict(data)


def _structure_task(data: object, _: type[Task] = Task) -> Task:
    if type(data) is dict or isinstance(data, dict):
        raw: dict[str, Any] = data
    elif isinstance(data, Mapping):
        raw = dict(data)
    else:
        raise _not_a_task(data)
    get = data.get
    task_id = get("id")
    if type(task_id) is not str or not task_id or task_id != task_id.strip():
        task_id = as_id(task_id)
        if task_id is None:
            raise _no_task_id(data)
    status_text = get("status")
    if type(status_text) is not str:
        status_text = _as_text(status_text) or ""
    action_text = get("action")
    if type(action_text) is not str:
        action_text = _as_text(action_text)
    progress = get("progress")
    image_url = get("imageUrl")
    if image_url is not None and type(image_url) is not str:
        image_url = _as_text(image_url)
    fail_reason = get("failReason")
    if fail_reason is not None and type(fail_reason) is not str:
        fail_reason = _as_text(fail_reason)
    buttons = get("buttons")
    properties = get("properties")
    video_url = get("videoUrl")
    video_list = get("videoUrls")
    content_type = get("contentType")
    # Most tasks carry no video: new-api sends "" and null, trueai null and an image type.
    if (
        video_url
        or video_list
        or action_text in _VIDEO_ACTIONS
        or (isinstance(content_type, str) and content_type[:6].lower() == "video/")
    ):
        videos = video_links(
            video_url, video_list, image_url, action_text, status_text, content_type
        )
    else:
        videos = ()
    # Positional: Task's field order (its public constructor); about 1.5 µs cheaper
    # than keywords on the hot path.
    return Task(
        task_id,
        _ACTIONS.get(action_text, action_text) if action_text else None,
        _STATUSES.get(status_text, status_text),
        progress if type(progress) is int and 0 <= progress <= 100 else parse_progress(progress),
        _text(get("prompt")),
        _text(get("promptEn")),
        _text(get("description")),
        _text(get("state")),
        parse_time(get("submitTime")),
        parse_time(get("startTime")),
        parse_time(get("finishTime")),
        image_url or None,
        fail_reason or None,
        _structure_buttons(buttons) if buttons else _no_buttons(buttons, status_text, action_text),
        dict(properties) if type(properties) is dict or isinstance(properties, Mapping) else {},
        raw,
        videos,
    )


def _split_ids(result: object) -> tuple[str, ...]:
    if isinstance(result, list):
        return tuple(i for i in (as_id(item) for item in result) if i is not None)
    if isinstance(result, str) and "," in result:
        return tuple(part.strip() for part in result.split(",") if part.strip())
    single = as_id(result)
    return (single,) if single is not None else ()


def _structure_submission(data: object, _: type[Submission] = Submission) -> Submission:
    if not isinstance(data, Mapping):
        msg = f"a submit answer must be a JSON object, got {body_preview(data)}"
        raise DecodeError(msg, body=data)
    code = data.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        code = _as_int(code, -(10**9))
        if code == -(10**9):
            msg = f"a submit answer has no integer code: {body_preview(data)}"
            raise DecodeError(msg, body=data)
    result = data.get("result")
    task_ids = _split_ids(result) if not isinstance(result, list) else ()
    properties = data.get("properties")
    return Submission(
        code=code,
        description=_as_text(data.get("description")) or _as_text(data.get("message")) or "",
        task_id=task_ids[0] if task_ids else None,
        task_ids=task_ids,
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        result=result,
    )


converter.register_structure_hook(Task, _structure_task)
converter.register_structure_hook(Button, _structure_button)
converter.register_structure_hook(Submission, _structure_submission)
_camel_overrides: dict[str, Any] = {
    a.name: override(rename=_to_camel(a.name)) for a in attrs.fields(AccountFilter)
}
converter.register_unstructure_hook(
    AccountFilter,
    make_dict_unstructure_fn(
        AccountFilter, converter, _cattrs_omit_if_default=True, **_camel_overrides
    ),
)


def decode_task(data: object) -> Task:
    """Structure one task JSON object."""
    # The hook registered for Task, without the converter's dispatch.
    return _structure_task(data)


def decode_tasks(data: object) -> list[Task]:
    """Structure a JSON array of tasks; entries that are not tasks are skipped, not fatal."""
    if not isinstance(data, list):
        msg = f"expected a JSON array of tasks, got {body_preview(data)}"
        raise DecodeError(msg, body=data)
    tasks = []
    for item in data:
        try:
            tasks.append(_structure_task(item))
        except DecodeError:
            continue
    return tasks


def decode_submission(data: object) -> Submission:
    """Structure a submit answer ``{code, description, result, properties}``."""
    return converter.structure(data, Submission)


def encode_account_filter(account_filter: AccountFilter) -> dict[str, Any]:
    """camelCase, with unset members omitted (``remix: null`` must not become a filter)."""
    encoded: dict[str, Any] = converter.unstructure(account_filter)
    if "modes" in encoded:
        encoded["modes"] = list(encoded["modes"])
    return encoded
