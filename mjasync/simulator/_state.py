"""Server-side records: tasks, buttons, the request log and notification attempts."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from typing import Any, NamedTuple

# Statuses, as the wire spells them.
NOT_START = "NOT_START"
SUBMITTED = "SUBMITTED"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
MODAL = "MODAL"
CANCEL = "CANCEL"
TERMINAL = frozenset({SUCCESS, FAILURE, CANCEL})


@dataclasses.dataclass
class Button:
    """One Discord-like button of a task (``buttons[]`` on the wire)."""

    custom_id: str
    label: str = ""
    emoji: str = ""
    type: int = 2
    style: int = 2

    def to_json(self) -> dict[str, Any]:
        """The wire form: ``{customId, emoji, label, type, style}``."""
        return {
            "customId": self.custom_id,
            "emoji": self.emoji,
            "label": self.label,
            "type": self.type,
            "style": self.style,
        }


@dataclasses.dataclass
class SimTask:
    """Live server-side state of one simulated task.

    ``kind`` is the simulator's own fine-grained job type (``"imagine"``, ``"upsample"``,
    ``"low_variation"``, ``"custom_zoom"``...); the ``action`` each dialect reports is
    derived from it. Timestamps are epoch milliseconds; ``None`` means unset.
    """

    id: str
    kind: str
    action: str
    prompt: str
    origin: str
    message_hash: str
    submit_time: int
    status: str = NOT_START
    progress: str = "0%"
    prompt_en: str = ""
    description: str = ""
    state: str | None = None
    start_time: int | None = None
    finish_time: int | None = None
    image_url: str | None = None
    video_url: str | None = None
    fail_reason: str | None = None
    buttons: list[Button] = dataclasses.field(default_factory=list)
    final_prompt: str = ""
    # finalPrompt revealed on SUCCESS (describe's four prompts, shorten's analysis).
    result_text: str = ""
    # Prompts a describe/shorten result offers to its PicReader/PromptAnalyzer buttons.
    choices: list[str] = dataclasses.field(default_factory=list)
    parent_id: str | None = None
    custom_id: str = ""
    bot_type: str = "MID_JOURNEY"
    mode: str = "FAST"
    notify_hook: str | None = None
    index: int | None = None
    mask: str | None = None
    seed: str = ""
    nonce: str = ""
    message_id: str = ""
    instance_id: str = ""
    # For a MODAL task: the job kind that runs once /submit/modal confirms it.
    modal_kind: str | None = None
    # Fault and driving flags (not on the wire).
    planned_failure: str | None = None
    stuck: bool = False
    banned: bool = False
    stalled: bool = False
    holds_slot: bool = False
    generation: int = 0
    step: int = 0
    # This job's planned gaps in simulated seconds (Engine._plan): slot -> SUBMITTED,
    # SUBMITTED -> first progress step, then one per step, the last ending the job.
    timing: tuple[float, ...] = ()
    # The key (trueai) that submitted the task, or "guest:<ip>": trueai counts a user's
    # running/queued tasks per caller.
    owner: str = ""
    # The accountFilter the upstream received (new-api drops it unless told not to).
    account_filter: dict[str, Any] | None = None
    # A Discord interaction the server sends but Discord refuses (OSS /submit/change with an
    # index outside 1..4): accepted, then FAILURE with this reason when it starts.
    rejected_by_discord: str | None = None
    extra_properties: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        """True once the task is SUCCESS, FAILURE or CANCEL."""
        return self.status in TERMINAL

    def button(self, custom_id: str) -> Button | None:
        """The button with exactly this customId, if the task has it."""
        for button in self.buttons:
            if button.custom_id == custom_id:
                return button
        return None


class RequestRecord(NamedTuple):
    """One request seen by the simulator, in arrival order.

    ``time`` is the event loop's monotonic clock; ``route`` the template key
    (``"GET /mj/task/{id}/fetch"``); ``body`` the decoded JSON body, if any; ``faults``
    the fault kinds this request met (``"submit_fault_after"``, ``"latency_spike"``...),
    filled in once its answer is decided.
    """

    time: float
    method: str
    route: str
    path: str
    body: object | None
    faults: tuple[str, ...] = ()


class Notification(NamedTuple):
    """One notifyHook delivery: target URL, the task JSON sent, whether a 2xx came back."""

    url: str
    body: dict[str, Any]
    delivered_ok: bool


class IdFactory:
    """Task ids in the proxies' format: epoch milliseconds followed by three random digits."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last_ms = 0

    def task_id(self, taken: dict[str, SimTask]) -> str:
        """A fresh id that is not a key of ``taken``."""
        ms = max(int(time.time() * 1000), self._last_ms)
        while True:
            for _ in range(50):
                candidate = f"{ms}{self._rng.randrange(1000):03d}"
                if candidate not in taken:
                    self._last_ms = ms
                    return candidate
            # Over a thousand ids in one millisecond: borrow the next millisecond.
            ms += 1

    def message_hash(self) -> str:
        """A reproducible uuid4 (Midjourney's job id, used inside customIds)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def digits(self, n: int) -> str:
        """``n`` random decimal digits, first one non-zero (Discord snowflakes, seeds)."""
        return str(self._rng.randrange(10 ** (n - 1), 10**n))


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds, as the proxies report times."""
    return int(time.time() * 1000)
