"""The wire models: `Task`, `Submission`, `AccountFilter`, `TaskStatus` (buttons: `_buttons`).

Decoding lives in `_serde.py`; these classes only hold parsed values. Status and action
are open sets on the wire, so fields typed ``TaskStatus | str`` keep unknown values as
plain strings instead of failing. Beside them: how far along each status is
(`STATUS_RANKS`, `is_final`, `outcome`), what names a task (`TaskRef`, `task_id_of`),
and which `Button` a caller means (`resolve_button`).
"""

import enum
import re
import unicodedata
from datetime import datetime
from typing import Any
from urllib.parse import quote

import attrs

from ._buttons import Button, implied_buttons
from ._checks import require_text
from ._errors import (
    ButtonNotFoundError,
    InvalidRequestError,
    ModalRequiredError,
    TaskCancelledError,
    TaskFailedError,
)

# Button and implied_buttons live in _buttons; they are named here too for the modules
# that import them from here (_serde.py, the package's __init__).
__all__ = [
    "FINAL_RANK",
    "STATUS_RANKS",
    "TERMINAL_STATUSES",
    "AccountFilter",
    "Button",
    "Submission",
    "Task",
    "TaskAction",
    "TaskRef",
    "TaskStatus",
    "implied_buttons",
    "is_final",
    "outcome",
    "resolve_button",
    "task_id_of",
    "task_path",
]


class TaskStatus(enum.StrEnum):
    """Task statuses every dialect is known to send; values are the wire strings."""

    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    MODAL = "MODAL"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCEL = "CANCEL"


class TaskAction(enum.StrEnum):
    """Task actions seen across dialects; the wire may send others, kept as plain strings."""

    IMAGINE = "IMAGINE"
    UPSCALE = "UPSCALE"
    UPSCALE_HD = "UPSCALE_HD"
    VARIATION = "VARIATION"
    HIGH_VARIATION = "HIGH_VARIATION"
    LOW_VARIATION = "LOW_VARIATION"
    REROLL = "REROLL"
    ZOOM = "ZOOM"
    CUSTOM_ZOOM = "CUSTOM_ZOOM"
    PAN = "PAN"
    OUTPAINT = "OUTPAINT"
    INPAINT = "INPAINT"
    DESCRIBE = "DESCRIBE"
    BLEND = "BLEND"
    SHORTEN = "SHORTEN"
    SWAP_FACE = "SWAP_FACE"
    VIDEO = "VIDEO"
    VIDEO_EXTEND = "VIDEO_EXTEND"
    EDIT = "EDIT"
    EDITS = "EDITS"
    RETEXTURE = "RETEXTURE"
    MODAL = "MODAL"
    ACTION = "ACTION"
    UPLOAD = "UPLOAD"


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCEL})
"""Statuses after which a task never changes: SUCCESS, FAILURE, CANCEL (MODAL is not one)."""


@attrs.frozen(slots=True)
class Task:
    """One task snapshot, as the server reported it at one moment.

    ``progress`` is the percentage as an int, or None when the wire had no number;
    times are timezone-aware UTC datetimes or None when unset; ``raw`` is the decoded
    JSON object, unknown fields included.

    ``video_urls`` holds every video link the task carries, first-seen order, without
    duplicates: ``videoUrl``, then ``imageUrl`` when that is a video (trueai puts a VIDEO
    task's video there, and a video upscale's), then ``videoUrls`` (strings or
    ``{"url": ...}`` objects). ``video_url`` is the first of them. ``image_url`` is always
    ``imageUrl`` as sent, even when it is a video link: `Client.download` tells them apart.
    """

    id: str
    action: TaskAction | str | None = None
    status: TaskStatus | str = ""
    progress: int | None = None
    prompt: str | None = None
    prompt_en: str | None = None
    description: str | None = None
    state: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    image_url: str | None = None
    fail_reason: str | None = None
    buttons: tuple[Button, ...] = ()
    properties: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    # Last, so positional construction of the fields above keeps working.
    video_urls: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Button names, not nine 60-character customIds; URLs and prompts stay in the fields.
        parts = [f"id={_short(self.id)!r}"]
        if self.action is not None:
            parts.append(f"action={str(self.action)!r}")
        parts.append(f"status={str(self.status)!r}")
        parts.append(f"progress={self.progress!r}")
        if self.fail_reason:
            parts.append(f"fail_reason={_short(self.fail_reason)!r}")
        if self.video_urls:
            parts.append(f"videos={len(self.video_urls)}")
        parts.append(f"buttons=[{' '.join(button.describe() for button in self.buttons)}]")
        return f"Task({', '.join(parts)})"

    @property
    def video_url(self) -> str | None:
        """The task's first video link, or None when it has no video."""
        return self.video_urls[0] if self.video_urls else None

    @property
    def is_terminal(self) -> bool:
        """SUCCESS, FAILURE or CANCEL: the task will not change again."""
        return self.status in TERMINAL_STATUSES

    @property
    def final_prompt(self) -> str | None:
        """``properties.finalPrompt``: the prompt as echoed (describe/shorten results)."""
        value = self.properties.get("finalPrompt")
        return value if isinstance(value, str) else None

    def button(self, key: str) -> Button:
        """Find a button by semantic name, label, emoji or customId.

        Names and labels match case-insensitively (``"u1"`` finds ``U1``).

        Raises:
            mjasync.ButtonNotFoundError: no button matches; the message lists the buttons.
        """
        folded = key.strip().casefold()
        for button in self.buttons:
            if button.custom_id == key:
                return button
        for attribute in ("name", "label"):
            for button in self.buttons:
                value = getattr(button, attribute)
                if value and value.casefold() == folded:
                    return button
        for button in self.buttons:
            if button.emoji and button.emoji == key.strip():
                return button
        available = tuple(button.describe() for button in self.buttons)
        listing = ", ".join(available) if available else "none"
        message = f"task {self.id} has no button {key!r}; its buttons: {listing}"
        raise ButtonNotFoundError(message, key=key, available=available)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Snapshots only move forward: a duplicate or late poll/hook answer never undoes a newer
# one. MODAL shares the top rank with the terminal statuses: it never moves by itself.
FINAL_RANK = 3
STATUS_RANKS: dict[str, int] = {
    "NOT_START": 0,
    "": 0,
    "SUBMITTED": 1,
    "IN_PROGRESS": 2,
    "MODAL": FINAL_RANK,
    "SUCCESS": FINAL_RANK,
    "FAILURE": FINAL_RANK,
    "CANCEL": FINAL_RANK,
}
"""How far along each status is; unknown statuses rank 0 (a wait ends only at FINAL_RANK)."""


def is_final(task: Task) -> bool:
    """True when *task* will not change by itself: SUCCESS, FAILURE, CANCEL or MODAL."""
    return STATUS_RANKS.get(task.status, 0) == FINAL_RANK


def outcome(task: Task) -> Task:
    """*task* when it is SUCCESS (or not final); otherwise the matching `TaskError`."""
    status = task.status
    if status == "FAILURE":
        raise TaskFailedError(task)
    if status == "CANCEL":
        raise TaskCancelledError(task)
    if status == "MODAL":
        raise ModalRequiredError(task)
    return task


@attrs.frozen(slots=True)
class Submission:
    """The answer to a submit: the business ``code`` and the new task's id.

    ``task_ids`` holds every id the server returned (trueai's "imagine all" returns
    several); ``queue_position`` is ``properties.numberOfQueues`` as sent.
    """

    code: int
    description: str = ""
    task_id: str | None = None
    task_ids: tuple[str, ...] = ()
    properties: dict[str, Any] = attrs.field(factory=dict, eq=False)
    result: object = attrs.field(default=None, eq=False, repr=False)

    @property
    def queue_position(self) -> int | None:
        """Tasks ahead of this one when it was queued (code 22), as the server sent it."""
        value = self.properties.get("numberOfQueues")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
            return int(value)
        return None

    @property
    def needs_modal(self) -> bool:
        """Code 21: the new task waits in MODAL for `Client.modal()` (unless `existing`)."""
        return self.code == 21 and not self.existing

    @property
    def existing(self) -> bool:
        """Old novicezk's code 21 "任务已存在": ``task_id`` is a task that already exists.

        Before commit b146e94 (March 2024) novicezk's ``/submit/change`` answered a repeated
        upscale with the earlier task: code 21, ``properties.status`` and
        ``properties.imageUrl``. That is a finished (or running) task, not a modal.
        """
        return self.code == 21 and _is_existing_task(self.description, self.properties)


@attrs.frozen(kw_only=True)
class AccountFilter:
    """Which proxy accounts may run a task; only the members you set are sent.

    Sending ``remix=True`` filters to remix accounts, so leave it None unless you mean it.
    """

    channel_id: str | None = None
    instance_id: str | None = None
    modes: tuple[str, ...] | None = None
    remark: str | None = None
    remix: bool | None = None
    niji_remix: bool | None = None
    remix_auto_considered: bool | None = None


def _is_existing_task(description: str, properties: dict[str, Any]) -> bool:
    # novicezk before b146e94, SubmitController.java change(): SubmitResultVO.of(EXISTED,
    # "任务已存在", id).setProperty("status", ...).setProperty("imageUrl", ...). A modal's 21
    # (PLUS, trueai) carries finalPrompt/remix instead, and its own description.
    return "status" in properties or "imageUrl" in properties or "任务已存在" in description


# -- what names a task, and which button a caller means -----------------------------------

_MAX_TASK_ID = 128
_PLAIN_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{_MAX_TASK_ID}}}")

TaskRef = Task | Submission | str
"""Anything that names a task: a `Task`, a `Submission` or a task id."""


def task_id_of(target: object) -> str:
    """The task id named by a `Task`, a `Submission` or an id string.

    Surrounding whitespace is dropped. An id that could not be a task id, or that would
    change the request's path if put in a URL (``/``, ``?``, ``#``, ``\\``, inner
    whitespace, control characters, ``.`` or ``..``, more than 128 characters), raises
    `InvalidRequestError`: nothing is sent.
    """
    if isinstance(target, Task):
        return _checked_id(target.id)
    if isinstance(target, Submission):
        if target.task_id is None:
            msg = f"submission (code {target.code}) carries no task id"
            raise InvalidRequestError(msg)
        return _checked_id(target.task_id)
    if isinstance(target, str) and target.strip():
        return _checked_id(target.strip())
    if isinstance(target, int) and not isinstance(target, bool):
        return str(target)
    msg = f"expected a Task, a Submission or a task id, got {type(target).__name__}"
    raise InvalidRequestError(msg)


def _checked_id(task_id: str) -> str:
    if _PLAIN_ID.fullmatch(task_id) and task_id not in {".", ".."}:
        return task_id  # the usual id (digits, a UUID): nothing below can object
    shown = repr(task_id) if len(task_id) <= 40 else repr(task_id[:40]) + "…"
    problem = None
    if not task_id or task_id in {".", ".."}:
        problem = "is empty, or a path step"
    elif len(task_id) > _MAX_TASK_ID:
        problem = f"is {len(task_id)} characters long (at most {_MAX_TASK_ID})"
    elif any(ch in "/?#\\" for ch in task_id):
        problem = "contains /, ?, # or \\"
    elif any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in task_id):
        problem = "contains whitespace or control characters"
    if problem is not None:
        msg = f"task id {shown} {problem}: not a task id"
        raise InvalidRequestError(msg)
    return task_id


def task_path(task_id: str, route: str) -> str:
    """``/task/{id}/{route}`` with the id percent-encoded (it is one path segment)."""
    return f"/task/{quote(task_id, safe='')}/{route}"


def resolve_button(task: Task | str, button: Button | str) -> Button:
    """The `Button` *button* names on *task*, checked before anything is sent.

    A `Button` is taken as it is, a customId (``MJ::...``) is sent as given, and any
    other key is looked up with `Task.button` (so it needs the `Task`, not its id).

    Raises:
        mjasync.ButtonNotFoundError: the task has no such button, or it ended in
            FAILURE or CANCEL.
        mjasync.InvalidRequestError: a blank key, a `Button` without a customId, or a
            key other than a customId with only the task's id.
    """
    if isinstance(task, Task) and task.status in {TaskStatus.FAILURE, TaskStatus.CANCEL}:
        key = button.describe() if isinstance(button, Button) else str(button)
        msg = f"task {task.id} ended in {task.status}: it has no buttons to press"
        raise ButtonNotFoundError(msg, key=key)
    if isinstance(button, Button):
        if not button.custom_id and not button.implied:
            msg = "this Button has no customId to press"
            raise InvalidRequestError(msg)
        return button
    key = require_text(button, "button")
    if key.startswith("MJ::"):
        # An explicit customId is sent as given, even when the snapshot lacks it
        # (relays may strip buttons); the server has the final word.
        return Button(custom_id=key)
    if isinstance(task, Task):
        return task.button(key)
    msg = (
        f"button {key!r} is not a customId; pass the Task (not its id) to press "
        "a button by name, label or emoji"
    )
    raise InvalidRequestError(msg)
