"""Midjourney button sets and the parsing of customIds back into simulated job kinds."""

from __future__ import annotations

import dataclasses

from ._state import Button

NUMBER_EMOJI = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")

# Job kinds whose result is a 2x2 grid (and so carries U/V/reroll buttons).
GRID_KINDS = frozenset(
    {
        "imagine",
        "blend",
        "variation",
        "low_variation",
        "high_variation",
        "reroll",
        "pan",
        "outpaint",
        "custom_zoom",
        "inpaint",
        "pic_reader",
        "prompt_analyzer",
        "edit",
    }
)
SINGLE_KINDS = frozenset({"upsample", "upsample_hd", "swap_face", "video_upscale"})
# Kinds that open a modal whatever the account's remix setting is.
ALWAYS_MODAL = frozenset({"custom_zoom", "inpaint", "pic_reader", "prompt_analyzer"})
# Kinds that open a modal only when the account has remix on.
REMIX_MODAL = frozenset({"variation", "low_variation", "high_variation", "reroll", "pan"})


def grid_buttons(h: str) -> list[Button]:
    """U1..U4, reroll, V1..V4, in the order Discord lists them."""
    buttons = [Button(f"MJ::JOB::upsample::{i}::{h}", f"U{i}") for i in range(1, 5)]
    buttons.append(Button(f"MJ::JOB::reroll::0::{h}::SOLO", "", "🔄"))
    buttons += [Button(f"MJ::JOB::variation::{i}::{h}", f"V{i}") for i in range(1, 5)]
    return buttons


def upscaled_buttons(h: str) -> list[Button]:
    """The v6 post-upscale rows: HD upscales, vary, zoom, pan."""
    return [
        Button(f"MJ::JOB::upsample_v6_2x_subtle::1::{h}::SOLO", "Upscale (Subtle)"),
        Button(f"MJ::JOB::upsample_v6_2x_creative::1::{h}::SOLO", "Upscale (Creative)"),
        Button(f"MJ::JOB::low_variation::1::{h}::SOLO", "Vary (Subtle)"),
        Button(f"MJ::JOB::high_variation::1::{h}::SOLO", "Vary (Strong)"),
        Button(f"MJ::Inpaint::1::{h}::SOLO", "Vary (Region)", "🖌️"),
        Button(f"MJ::Outpaint::50::1::{h}::SOLO", "Zoom Out 2x", "🔍"),
        Button(f"MJ::Outpaint::75::1::{h}::SOLO", "Zoom Out 1.5x", "🔍"),
        Button(f"MJ::CustomZoom::{h}", "Custom Zoom", "🔍"),
        Button(f"MJ::JOB::pan_left::1::{h}::SOLO", "", "⬅️"),
        Button(f"MJ::JOB::pan_right::1::{h}::SOLO", "", "➡️"),
        Button(f"MJ::JOB::pan_up::1::{h}::SOLO", "", "⬆️"),
        Button(f"MJ::JOB::pan_down::1::{h}::SOLO", "", "⬇️"),
    ]


def describe_buttons(dialect: str) -> list[Button]:
    """PicReader 1..4, retry, and (trueai only) "Imagine all"."""
    buttons = [Button(f"MJ::Job::PicReader::{i}", "", NUMBER_EMOJI[i - 1]) for i in range(1, 5)]
    buttons.append(Button("MJ::Picread::Retry", "", "🔄"))
    # trueai copies Discord's buttons, "🎉 Imagine all" included, and serves it
    # (TaskService.cs SubmitAction: "MJ::Job::PicReader::all"). PLUS offers no such button
    # (issue #7), and new-api's upstream here is PLUS-like.
    if dialect == "trueai":
        buttons.append(Button("MJ::Job::PicReader::all", "Imagine all", "🎉"))
    return buttons


def shorten_buttons() -> list[Button]:
    """PromptAnalyzer 1..5 (one per shortened prompt)."""
    return [Button(f"MJ::Job::PromptAnalyzer::{i}", "", NUMBER_EMOJI[i - 1]) for i in range(1, 6)]


def video_buttons(h: str) -> list[Button]:
    """Virtual upscales of each of the four generated videos."""
    return [Button(f"MJ::JOB::video_virtual_upscale::{i}::{h}", f"U{i}") for i in range(1, 5)]


def buttons_for(kind: str, h: str, dialect: str = "plus") -> list[Button]:
    """The buttons a successful task of ``kind`` carries in ``dialect``."""
    if kind in GRID_KINDS:
        return grid_buttons(h)
    if kind in {"upsample", "upsample_hd"}:
        return upscaled_buttons(h)
    if kind in {"describe", "picread_retry"}:
        return describe_buttons(dialect)
    if kind == "shorten":
        return shorten_buttons()
    if kind == "video":
        return video_buttons(h)
    return []


@dataclasses.dataclass(frozen=True)
class ParsedAction:
    """What pressing a customId asks for: the job ``kind`` and its numeric argument."""

    kind: str
    index: int | None = None
    # The zoom factor implied by an Outpaint button (50 -> 2x, 75 -> 1.5x, 100 -> square).
    zoom: int | None = None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_custom_id(custom_id: str) -> ParsedAction | None:
    """Map a customId to the job it starts; ``None`` for ids the simulator does not know."""
    parts = custom_id.split("::")
    if len(parts) < 3 or parts[0] != "MJ":
        return None
    head = parts[1]
    if head == "JOB":
        name = parts[2]
        index = _int(parts[3]) if len(parts) > 3 else None
        simple = {
            "upsample": "upsample",
            "variation": "variation",
            "reroll": "reroll",
            "low_variation": "low_variation",
            "high_variation": "high_variation",
            "video_virtual_upscale": "video_upscale",
        }
        if name in simple:
            return ParsedAction(simple[name], index)
        if name.startswith("upsample_"):
            return ParsedAction("upsample_hd", index)
        if name.startswith("pan_"):
            return ParsedAction("pan", index)
        return None
    if head == "Outpaint":
        return ParsedAction("outpaint", 1, zoom=_int(parts[2]))
    if head == "CustomZoom":
        return ParsedAction("custom_zoom", 1)
    if head == "Inpaint":
        return ParsedAction("inpaint", 1)
    if head == "Picread" and parts[2] == "Retry":
        return ParsedAction("picread_retry")
    if head == "Job" and parts[2] == "PicReader" and len(parts) > 3:
        if parts[3] == "all":
            return ParsedAction("pic_reader_all")
        return ParsedAction("pic_reader", _int(parts[3]))
    if head == "Job" and parts[2] == "PromptAnalyzer" and len(parts) > 3:
        return ParsedAction("prompt_analyzer", _int(parts[3]))
    return None
