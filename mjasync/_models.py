"""The wire models: `Task`, `Button`, `Submission`, `AccountFilter`, `TaskStatus`.

Decoding lives in `_serde.py`; these classes only hold parsed values. Status and action
are open sets on the wire, so fields typed ``TaskStatus | str`` keep unknown values as
plain strings instead of failing.
"""

import enum
import functools
import re
from datetime import datetime
from typing import Any

import attrs

from ._errors import ButtonNotFoundError

__all__ = [
    "CHANGE_PARENT_ACTIONS",
    "TERMINAL_STATUSES",
    "AccountFilter",
    "Button",
    "Submission",
    "Task",
    "TaskAction",
    "TaskStatus",
    "button_name",
    "implied_buttons",
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

# customId second/third segment -> semantic name. Order matters where one prefix
# contains another (upsample_ before upsample, animate_*_extend before animate_*).
_JOB_NAMES: tuple[tuple[str, str], ...] = (
    ("low_variation", "vary_subtle"),
    ("high_variation", "vary_strong"),
    ("pan_left", "pan_left"),
    ("pan_right", "pan_right"),
    ("pan_up", "pan_up"),
    ("pan_down", "pan_down"),
    ("animate_high_extend", "extend_high"),
    ("animate_low_extend", "extend_low"),
    ("animate_high", "animate_high"),
    ("animate_low", "animate_low"),
)
_OUTPAINT_NAMES = {"50": "zoom_out_2x", "75": "zoom_out_1.5x", "100": "make_square"}
_HD_UPSCALE = re.compile(r"upsample_v[\w.]*?_(2x|4x)(?:_(subtle|creative))?$")


@functools.lru_cache(maxsize=4096)
def button_name(custom_id: str) -> str | None:
    """The stable semantic name of a button, derived from its customId; None if unknown.

    Names: ``U1``..``U4``, ``V1``..``V4``, ``reroll``, ``upscale_subtle``,
    ``upscale_creative``, ``upscale_2x``, ``upscale_4x``, ``vary_subtle``,
    ``vary_strong``, ``vary_region``, ``zoom_out_2x``, ``zoom_out_1.5x``,
    ``make_square``, ``custom_zoom``, ``pan_left``/``right``/``up``/``down``,
    ``animate_high``/``low``, ``extend_high``/``low``, ``video_U1``..``video_U4``,
    ``imagine_1``..``imagine_4``, ``imagine_all``, ``describe_retry``,
    ``shorten_1``..``shorten_5``, ``bookmark``.
    """
    parts = custom_id.split("::")
    if len(parts) < 2 or parts[0] != "MJ":
        return None
    kind = parts[1]
    if kind == "JOB" and len(parts) >= 3:
        job = parts[2]
        index = parts[3] if len(parts) >= 4 else ""
        if job == "upsample" and index in {"1", "2", "3", "4"}:
            return f"U{index}"
        if job == "variation" and index in {"1", "2", "3", "4"}:
            return f"V{index}"
        if job == "reroll":
            return "reroll"
        if job == "video_virtual_upscale" and index in {"1", "2", "3", "4"}:
            return f"video_U{index}"
        hd = _HD_UPSCALE.match(job)
        if hd is not None:
            return f"upscale_{hd.group(2) or hd.group(1)}"
        for prefix, name in _JOB_NAMES:
            if job == prefix:
                return name
        return None
    if kind == "Inpaint":
        return "vary_region"
    if kind == "Outpaint" and len(parts) >= 3:
        return _OUTPAINT_NAMES.get(parts[2])
    if kind == "CustomZoom":
        return "custom_zoom"
    if kind == "Job" and len(parts) >= 4:
        if parts[2] == "PicReader":
            return "imagine_all" if parts[3] == "all" else f"imagine_{parts[3]}"
        if parts[2] == "PromptAnalyzer":
            return f"shorten_{parts[3]}"
    if kind == "Picread" and len(parts) >= 3 and parts[2] == "Retry":
        return "describe_retry"
    if kind == "BOOKMARK":
        return "bookmark"
    return None


@attrs.frozen(slots=True)
class Button:
    """One button on a finished task; pass it (or its name) to `Client.action()`.

    A button the server sent carries its ``custom_id``. novicezk's open-source proxy sends
    no buttons at all; for its finished IMAGINE, VARIATION, REROLL and BLEND tasks mjasync
    offers the nine buttons that route implies (`implied`): ``custom_id`` is empty (no
    customId is ever made up), and ``change_action``/``change_index`` say what
    ``/submit/change`` sends when it is pressed (``UPSCALE`` 1-4, ``VARIATION`` 1-4,
    ``REROLL``).
    """

    custom_id: str
    emoji: str = ""
    label: str = ""
    type: int = 2
    style: int = 2
    change_action: str | None = None
    change_index: int | None = None

    @property
    def name(self) -> str | None:
        """Stable semantic name (``U1``, ``vary_region``, ``pan_left``…) or None if unknown."""
        if not self.custom_id and self.change_action is not None:
            return _change_name(self.change_action, self.change_index)
        return button_name(self.custom_id)

    @property
    def implied(self) -> bool:
        """True for a button the server did not send (pressed through ``/submit/change``)."""
        return not self.custom_id and self.change_action is not None

    def describe(self) -> str:
        """A short human form: the name, else the label, else the emoji, else the customId."""
        return self.name or self.label or self.emoji or self.custom_id

    def __repr__(self) -> str:
        # The customId is a long opaque hash; the semantic name is what a reader needs.
        name = self.name
        if name is not None:
            return f"Button(name={name!r})"
        shown = [
            f"{key}={value!r}"
            for key, value in (("label", self.label), ("emoji", self.emoji))
            if value
        ]
        return f"Button({', '.join(shown) or f'custom_id={self.custom_id!r}'})"


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


# -- novicezk's legacy /submit/change: the buttons its tasks imply --------------------------

# novicezk SubmitController.java change(): the parent must be SUCCESS and one of these.
CHANGE_PARENT_ACTIONS = frozenset({"IMAGINE", "VARIATION", "REROLL", "BLEND"})
"""Actions of the tasks novicezk's ``/submit/change`` accepts as a parent."""

_IMPLIED_BUTTONS: tuple[Button, ...] = (
    *(Button("", label=f"U{i}", change_action="UPSCALE", change_index=i) for i in range(1, 5)),
    *(Button("", label=f"V{i}", change_action="VARIATION", change_index=i) for i in range(1, 5)),
    Button(
        "",
        emoji="\N{ANTICLOCKWISE DOWNWARDS AND UPWARDS OPEN CIRCLE ARROWS}",
        change_action="REROLL",
    ),
)


def _change_name(action: str, index: int | None) -> str | None:
    if action == "REROLL":
        return "reroll"
    if index is not None and 1 <= index <= 4:
        if action == "UPSCALE":
            return f"U{index}"
        if action == "VARIATION":
            return f"V{index}"
    return None


def implied_buttons(status: object, action: object) -> tuple[Button, ...]:
    """The buttons a task without a ``buttons`` field implies (novicezk's open-source proxy).

    A finished IMAGINE, VARIATION, REROLL or BLEND task offers ``U1``…``U4``, ``V1``…``V4``
    and ``reroll`` through ``/submit/change``; any other task offers none.
    """
    if status != "SUCCESS" or action not in CHANGE_PARENT_ACTIONS:
        return ()
    return _IMPLIED_BUTTONS


def _is_existing_task(description: str, properties: dict[str, Any]) -> bool:
    # novicezk before b146e94, SubmitController.java change(): SubmitResultVO.of(EXISTED,
    # "任务已存在", id).setProperty("status", ...).setProperty("imageUrl", ...). A modal's 21
    # (PLUS, trueai) carries finalPrompt/remix instead, and its own description.
    return "status" in properties or "imageUrl" in properties or "任务已存在" in description
