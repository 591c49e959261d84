"""Buttons: the `Button` model, the semantic names of customIds, and implied buttons.

A finished task offers its buttons as Discord components (``customId``, emoji, label);
`button_name` turns a customId into a stable name (``U1``, ``vary_region``…) that
`Task.button` and `Client.action` accept. novicezk's open-source proxy sends no buttons
at all: `implied_buttons` offers the ones its ``/submit/change`` route can press.
"""

import functools
import re

import attrs

__all__ = [
    "CHANGE_PARENT_ACTIONS",
    "Button",
    "button_name",
    "change_of",
    "implied_buttons",
]

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


# -- novicezk's legacy /submit/change: the buttons its tasks imply ---------------------

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


def change_of(button: Button) -> tuple[str, int] | None:
    """What ``/submit/change`` sends for *button*, or None when it cannot press it."""
    if button.implied and button.change_action is not None:
        return button.change_action, button.change_index or 1
    name = button.name
    if name is None:
        return None
    if name == "reroll":
        return "REROLL", 1
    if len(name) == 2 and name[0] in "UV" and name[1] in "1234":
        return ("UPSCALE" if name[0] == "U" else "VARIATION"), int(name[1])
    return None
