"""Models: Button names for every customId of reference §7.1, Task.button lookups, Submission."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from mjasync import (
    TERMINAL_STATUSES,
    AccountFilter,
    Button,
    ButtonNotFoundError,
    MJError,
    Submission,
    Task,
    TaskStatus,
)
from mjasync.testing import decode_task

PAYLOADS = Path(__file__).parent / "payloads"
H = "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6"


def load(name: str) -> Any:
    """Parse one captured payload from tests/payloads."""
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("custom_id", "name"),
    [
        *(pytest.param(f"MJ::JOB::upsample::{i}::{H}", f"U{i}", id=f"U{i}") for i in range(1, 5)),
        *(pytest.param(f"MJ::JOB::variation::{i}::{H}", f"V{i}", id=f"V{i}") for i in range(1, 5)),
        pytest.param(f"MJ::JOB::reroll::0::{H}::SOLO", "reroll", id="reroll"),
        pytest.param(f"MJ::JOB::upsample_v6_2x_subtle::1::{H}::SOLO", "upscale_subtle", id="v6-s"),
        pytest.param(
            f"MJ::JOB::upsample_v6_2x_creative::1::{H}::SOLO", "upscale_creative", id="v6-c"
        ),
        pytest.param(
            f"MJ::JOB::upsample_v6r1_2x_subtle::1::{H}::SOLO", "upscale_subtle", id="v6.1-s"
        ),
        pytest.param(
            f"MJ::JOB::upsample_v6r1_2x_creative::1::{H}::SOLO", "upscale_creative", id="v6.1-c"
        ),
        pytest.param(f"MJ::JOB::upsample_v7_2x_subtle::1::{H}::SOLO", "upscale_subtle", id="v7-s"),
        pytest.param(
            f"MJ::JOB::upsample_v7_2x_creative::1::{H}::SOLO", "upscale_creative", id="v7-c"
        ),
        pytest.param(f"MJ::JOB::upsample_v5_2x::1::{H}::SOLO", "upscale_2x", id="v5-2x"),
        pytest.param(f"MJ::JOB::upsample_v5_4x::1::{H}::SOLO", "upscale_4x", id="v5-4x"),
        pytest.param(f"MJ::JOB::low_variation::1::{H}::SOLO", "vary_subtle", id="vary-subtle"),
        pytest.param(f"MJ::JOB::high_variation::1::{H}::SOLO", "vary_strong", id="vary-strong"),
        pytest.param(f"MJ::Inpaint::1::{H}::SOLO", "vary_region", id="vary-region"),
        pytest.param(f"MJ::Outpaint::50::1::{H}::SOLO", "zoom_out_2x", id="zoom-2x"),
        pytest.param(f"MJ::Outpaint::75::1::{H}::SOLO", "zoom_out_1.5x", id="zoom-1.5x"),
        pytest.param(f"MJ::Outpaint::100::1::{H}::SOLO", "make_square", id="make-square"),
        pytest.param(f"MJ::CustomZoom::{H}", "custom_zoom", id="custom-zoom-discord"),
        pytest.param(f"MJ::CustomZoom::1::{H}", "custom_zoom", id="custom-zoom-trueai"),
        pytest.param(f"MJ::JOB::pan_left::1::{H}::SOLO", "pan_left", id="pan-left"),
        pytest.param(f"MJ::JOB::pan_right::1::{H}::SOLO", "pan_right", id="pan-right"),
        pytest.param(f"MJ::JOB::pan_up::1::{H}::SOLO", "pan_up", id="pan-up"),
        pytest.param(f"MJ::JOB::pan_down::1::{H}::SOLO", "pan_down", id="pan-down"),
        pytest.param(f"MJ::JOB::animate_high::1::{H}::SOLO", "animate_high", id="animate-high"),
        pytest.param(f"MJ::JOB::animate_low::1::{H}::SOLO", "animate_low", id="animate-low"),
        pytest.param(f"MJ::JOB::animate_high_extend::1::{H}", "extend_high", id="extend-high"),
        pytest.param(f"MJ::JOB::animate_low_extend::1::{H}", "extend_low", id="extend-low"),
        *(
            pytest.param(f"MJ::JOB::video_virtual_upscale::{i}::{H}", f"video_U{i}", id=f"vU{i}")
            for i in range(1, 5)
        ),
        *(
            pytest.param(f"MJ::Job::PicReader::{i}", f"imagine_{i}", id=f"imagine-{i}")
            for i in range(1, 5)
        ),
        pytest.param("MJ::Job::PicReader::all", "imagine_all", id="imagine-all"),
        pytest.param("MJ::Picread::Retry", "describe_retry", id="describe-retry"),
        *(
            pytest.param(f"MJ::Job::PromptAnalyzer::{n}", f"shorten_{n}", id=f"shorten-{n}")
            for n in range(1, 6)
        ),
        pytest.param(f"MJ::BOOKMARK::{H}", "bookmark", id="bookmark"),
    ],
)
def test_button_name_for_every_known_custom_id(custom_id: str, name: str) -> None:
    """Every customId pattern of reference §7.1 maps to its stable semantic name."""
    assert Button(custom_id=custom_id).name == name


@pytest.mark.parametrize(
    "custom_id",
    [
        pytest.param("", id="empty"),
        pytest.param("U1", id="bare-label"),
        pytest.param("XX::JOB::upsample::1::h", id="not-mj"),
        pytest.param("MJ::JOB::upsample::5::h", id="index-5"),
        pytest.param("MJ::JOB::upsample::0::h", id="index-0"),
        pytest.param("MJ::JOB::brand_new::1::h", id="unknown-job"),
        pytest.param("MJ::Outpaint::33::1::h", id="unknown-zoom"),
        pytest.param("MJ::Something::1", id="unknown-kind"),
        pytest.param("MJ::JOB", id="truncated"),
    ],
)
def test_unknown_custom_ids_have_no_name(custom_id: str) -> None:
    """A customId the table does not know has name None rather than a guess or a crash."""
    assert Button(custom_id=custom_id).name is None


def test_button_describe_falls_back_from_name_to_label_to_emoji() -> None:
    """describe() prefers the name, then the label, then the emoji, then the customId."""
    assert Button(f"MJ::JOB::upsample::1::{H}", label="U1").describe() == "U1"
    assert Button("MJ::New::x", label="Shiny").describe() == "Shiny"
    assert Button("MJ::New::x", emoji="✨").describe() == "✨"
    assert Button("MJ::New::x").describe() == "MJ::New::x"


@pytest.fixture
def grid() -> Task:
    """The captured PLUS imagine grid with its nine buttons."""
    return decode_task(load("task_imagine_success_plus.json"))


@pytest.fixture
def upscaled() -> Task:
    """The trueai upscale result with the post-upscale button rows."""
    return decode_task(load("task_upscale_success_trueai.json"))


@pytest.mark.parametrize(
    ("key", "custom_id"),
    [
        pytest.param("U2", f"MJ::JOB::upsample::2::{H}", id="name"),
        pytest.param("u2", f"MJ::JOB::upsample::2::{H}", id="name-case-insensitive"),
        pytest.param(" V3 ", f"MJ::JOB::variation::3::{H}", id="padded"),
        pytest.param("reroll", f"MJ::JOB::reroll::0::{H}::SOLO", id="reroll-name"),
        pytest.param("🔄", f"MJ::JOB::reroll::0::{H}::SOLO", id="emoji"),
        pytest.param(f"MJ::JOB::variation::4::{H}", f"MJ::JOB::variation::4::{H}", id="customId"),
    ],
)
def test_task_button_on_the_grid(grid: Task, key: str, custom_id: str) -> None:
    """Task.button finds a grid button by name, label, emoji or customId."""
    assert grid.button(key).custom_id == custom_id


@pytest.mark.parametrize(
    ("key", "name"),
    [
        pytest.param("vary_region", "vary_region", id="name"),
        pytest.param("Vary (Region)", "vary_region", id="label"),
        pytest.param("vary (region)", "vary_region", id="label-folded"),
        pytest.param("🖌️", "vary_region", id="emoji"),
        pytest.param("zoom_out_1.5x", "zoom_out_1.5x", id="zoom-name"),
        pytest.param("Zoom Out 2x", "zoom_out_2x", id="zoom-label"),
        pytest.param("⬅️", "pan_left", id="pan-emoji"),
        pytest.param("pan_down", "pan_down", id="pan-name"),
        pytest.param("Upscale (Creative)", "upscale_creative", id="hd-label"),
        pytest.param("❤️", "bookmark", id="bookmark-emoji"),
    ],
)
def test_task_button_on_an_upscale(upscaled: Task, key: str, name: str) -> None:
    """Task.button finds post-upscale buttons by name, label or emoji."""
    assert upscaled.button(key).name == name


def test_shared_emoji_finds_the_first_button(upscaled: Task) -> None:
    """An emoji shared by several buttons (🔍) finds the first of them."""
    assert upscaled.button("🔍").name == "zoom_out_2x"


def test_missing_button_raises_and_lists_what_the_task_has(grid: Task) -> None:
    """A missing button raises ButtonNotFoundError (an MJError and LookupError) listing buttons."""
    with pytest.raises(ButtonNotFoundError) as exc_info:
        grid.button("vary_region")

    error = exc_info.value
    assert isinstance(error, MJError)
    assert isinstance(error, LookupError)
    assert error.key == "vary_region"
    assert error.available == ("U1", "U2", "U3", "U4", "reroll", "V1", "V2", "V3", "V4")
    assert "U1, U2, U3, U4, reroll, V1, V2, V3, V4" in str(error)
    assert grid.id in str(error)


def test_missing_button_on_a_task_without_buttons_says_none() -> None:
    """A task with no buttons says so in the error."""
    task = decode_task(load("task_imagine_in_progress_newapi.json"))

    with pytest.raises(ButtonNotFoundError, match="its buttons: none"):
        task.button("U1")


def test_button_not_found_pickles_with_its_fields(grid: Task) -> None:
    """ButtonNotFoundError survives pickling with key and available intact."""
    with pytest.raises(ButtonNotFoundError) as exc_info:
        grid.button("nope")

    clone = pickle.loads(pickle.dumps(exc_info.value))  # noqa: S301 (our own objects)

    assert (clone.key, clone.available, str(clone)) == (
        "nope",
        exc_info.value.available,
        str(exc_info.value),
    )


def test_terminal_statuses_are_exactly_success_failure_cancel() -> None:
    """Terminal statuses are SUCCESS, FAILURE and CANCEL; MODAL is not terminal."""
    assert {TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCEL} == TERMINAL_STATUSES
    assert TaskStatus.MODAL not in TERMINAL_STATUSES


def test_task_status_compares_equal_to_the_wire_string() -> None:
    """TaskStatus members are the wire strings, so plain comparisons work."""
    assert TaskStatus.SUCCESS == "SUCCESS"
    assert Task(id="1", status="SUCCESS").is_terminal


def test_task_pickles_and_copies() -> None:
    """A decoded Task pickles and compares equal after the round trip."""
    task = decode_task(load("task_upscale_success_trueai.json"))

    clone = pickle.loads(pickle.dumps(task))  # noqa: S301 (our own objects)

    assert clone == task
    assert clone.raw == task.raw
    assert clone.buttons == task.buttons


def test_submission_needs_modal_only_for_code_21() -> None:
    """needs_modal is true for code 21 and false for the accepted codes."""
    assert Submission(code=21, task_id="1").needs_modal
    assert not Submission(code=1, task_id="1").needs_modal
    assert not Submission(code=22, task_id="1").needs_modal


def test_account_filter_is_keyword_only_and_frozen() -> None:
    """AccountFilter takes keywords only and cannot be mutated after construction."""
    account_filter = AccountFilter(remark="a")

    with pytest.raises(TypeError):
        AccountFilter("c1")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        account_filter.remark = "b"  # type: ignore[misc]


def test_task_repr_shows_button_names_not_custom_ids(grid: Task) -> None:
    """repr(Task): id, action, status, progress and the button names, in the wire order."""
    assert repr(grid) == (
        f"Task(id={grid.id!r}, action='IMAGINE', status='SUCCESS', progress=100, "
        "buttons=[U1 U2 U3 U4 reroll V1 V2 V3 V4])"
    )
    assert "MJ::" not in repr(grid)


def test_task_repr_of_a_failure_and_a_video() -> None:
    """A failure shows its reason; a video task how many videos it has; long ids are cut."""
    failed = Task(id="9" * 300, status="FAILURE", fail_reason="banned prompt")
    video = Task(id="1", action="VIDEO", status="SUCCESS", progress=100, video_urls=("a", "b"))
    assert repr(failed) == (
        f"Task(id={'9' * 59 + '…'!r}, status='FAILURE', progress=None, "
        "fail_reason='banned prompt', buttons=[])"
    )
    assert repr(video) == (
        "Task(id='1', action='VIDEO', status='SUCCESS', progress=100, videos=2, buttons=[])"
    )


def test_button_repr_shows_the_name_else_label_and_emoji() -> None:
    """repr(Button) is its semantic name; unknown buttons show label/emoji, else the customId."""
    assert repr(Button(f"MJ::JOB::upsample::1::{H}", label="U1")) == "Button(name='U1')"
    assert repr(Button("MJ::New::x", label="Shiny", emoji="✨")) == (
        "Button(label='Shiny', emoji='✨')"
    )
    assert repr(Button("MJ::New::x", emoji="✨")) == "Button(emoji='✨')"
    assert repr(Button("MJ::New::x")) == "Button(custom_id='MJ::New::x')"


def test_video_url_is_the_first_video() -> None:
    """Task.video_url is video_urls[0], or None without videos."""
    assert Task(id="1", video_urls=("a", "b")).video_url == "a"
    assert Task(id="1").video_url is None
