"""Chains against the simulator: run_action, the modal flow, upscale_all, gather_chains."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from _shared import png, simulated

import mjasync
from mjasync._chains import check_modal_inputs

ACTION = "POST /mj/submit/action"
MODAL = "POST /mj/submit/modal"


async def grid_of(mj: mjasync.Client, prompt: str = "a red fox") -> mjasync.Task:
    """A finished imagine grid."""
    return await mj.await_task(await mj.imagine(prompt), timeout=30)


async def upscaled(mj: mjasync.Client) -> mjasync.Task:
    """A finished single upscaled image (it carries zoom, pan and vary buttons)."""
    return await mj.run_action(await grid_of(mj), "U1", timeout=30)


async def test_run_action_upscales() -> None:
    """Pressing U2 sends one action, no modal, and returns the SUCCESS upscale."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        up = await mj.run_action(grid, "U2", timeout=30)
        assert up.status == mjasync.TaskStatus.SUCCESS
        assert sim.tasks[up.id].parent_id == grid.id
        assert sim.tasks[up.id].index == 2
        assert sim.requests[ACTION] == 1
        assert sim.requests[MODAL] == 0


async def test_run_action_by_id_and_custom_id() -> None:
    """A task id works with a customId; with a button name it is refused before sending."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        up = await mj.run_action(grid.id, grid.button("U3").custom_id, timeout=30)
        assert sim.tasks[up.id].index == 3
        with pytest.raises(mjasync.InvalidRequestError, match="customId"):
            await mj.run_action(grid.id, "U3")
        assert sim.requests[ACTION] == 1


@pytest.mark.parametrize("dialect", ["plus", "trueai"])
async def test_custom_zoom_follows_the_modal(dialect: str) -> None:
    """Custom zoom answers 21; run_action submits the modal and follows the id it answers."""
    async with simulated(dialect) as (sim, mj):
        image = await upscaled(mj)
        sim.reset_counters()
        zoomed = await mj.run_action(image, "custom_zoom", prompt="a red fox --zoom 1.5")
        assert zoomed.status == mjasync.TaskStatus.SUCCESS
        assert sim.requests[ACTION] == 1
        assert sim.requests[MODAL] == 1
        modal_ids = [t.id for t in sim.tasks.values() if t.kind == "custom_zoom"]
        if dialect == "plus":
            # PLUS closes the MODAL task and answers with a fresh id.
            assert len(modal_ids) == 2
            assert sim.tasks[modal_ids[0]].status == "CANCEL"
            assert zoomed.id == modal_ids[1]
        else:
            assert modal_ids == [zoomed.id]


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (None, "--zoom <1..2>"),
        ("a red fox", "--zoom <1..2>"),
        ("a red fox --zoom=1.5", "--zoom <1..2>"),
        ("a red fox --zoom 2.5", "between 1 and 2"),
        ("a red fox --zoom 0.9", "between 1 and 2"),
        ("a red fox --zoom big", "between 1 and 2"),
        ("a red fox --zoom 1.5 --zoom 3", "between 1 and 2"),
        ("   ", "non-empty"),
    ],
)
async def test_custom_zoom_checks_prompt_before_sending(prompt: str | None, match: str) -> None:
    """A custom zoom without a valid --zoom 1..2 raises InvalidRequestError, sending nothing."""
    async with simulated() as (sim, mj):
        image = await upscaled(mj)
        sim.reset_counters()
        with pytest.raises(mjasync.InvalidRequestError, match=match):
            await mj.run_action(image, "custom_zoom", prompt=prompt)
        assert sim.requests[ACTION] == 0


async def test_vary_region_needs_a_mask() -> None:
    """Vary (Region) without a mask, or with a non-PNG one, is refused before sending."""
    async with simulated() as (sim, mj):
        image = await upscaled(mj)
        sim.reset_counters()
        with pytest.raises(mjasync.InvalidRequestError, match="needs mask="):
            await mj.run_action(image, "vary_region", prompt="a blue fox")
        jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
        with pytest.raises(mjasync.InvalidRequestError, match="PNG"):
            await mj.run_action(image, "vary_region", mask=jpeg)
        assert sim.requests[ACTION] == 0


async def test_vary_region_with_mask() -> None:
    """With a PNG mask, Vary (Region) goes through action, modal and wait."""
    async with simulated() as (sim, mj):
        image = await upscaled(mj)
        sim.reset_counters()
        varied = await mj.run_action(
            image, "vary_region", prompt="a blue fox", mask=png(2, pixel=b"\xff")
        )
        assert varied.status == mjasync.TaskStatus.SUCCESS
        assert sim.requests[MODAL] == 1
        assert sim.tasks[varied.id].mask is not None


@pytest.mark.parametrize("dialect", ["plus", "newapi"])
async def test_remix_modal_without_prompt_raises(dialect: str) -> None:
    """With remix on, V1 opens a modal (21, or 1 + MODAL via new-api): no prompt raises."""
    async with simulated(dialect, remix=True) as (sim, mj):
        grid = await grid_of(mj)
        with pytest.raises(mjasync.ModalRequiredError) as caught:
            await mj.run_action(grid, "V1", timeout=30)
        assert caught.value.task.status == mjasync.TaskStatus.MODAL
        assert sim.requests[MODAL] == 0


@pytest.mark.parametrize("dialect", ["plus", "trueai", "newapi"])
async def test_remix_modal_with_prompt_is_confirmed(dialect: str) -> None:
    """With remix on and prompt= given, V1 is confirmed through the modal and finishes."""
    async with simulated(dialect, remix=True) as (sim, mj):
        grid = await grid_of(mj)
        varied = await mj.run_action(grid, "V1", prompt="a red fox, in snow", timeout=30)
        assert varied.status == mjasync.TaskStatus.SUCCESS
        assert sim.requests[MODAL] == 1
        assert "snow" in sim.tasks[varied.id].prompt


async def test_prompt_is_unused_without_a_modal() -> None:
    """A prompt given for a button that opens no modal is simply not sent."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        up = await mj.run_action(grid, "U1", prompt="ignored", timeout=30)
        assert up.status == mjasync.TaskStatus.SUCCESS
        assert sim.requests[MODAL] == 0


async def test_run_action_failure_and_timeout() -> None:
    """A failed child raises TaskFailedError; a stuck one raises TaskTimeoutError on time."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        sim.inject(ACTION, "task_failure", reason="Job action restricted")
        with pytest.raises(mjasync.TaskFailedError, match="restricted"):
            await mj.run_action(grid, "U1", timeout=30)
        sim.inject(ACTION, "stuck")
        with pytest.raises(mjasync.TaskTimeoutError):
            await mj.run_action(grid, "U2", timeout=0.2)


async def test_run_action_reports_progress() -> None:
    """on_progress receives the child's snapshots, ending with SUCCESS."""
    seen: list[mjasync.Task] = []
    async with simulated() as (_sim, mj):
        grid = await grid_of(mj)
        up = await mj.run_action(grid, "U4", timeout=30, on_progress=seen.append)
    assert seen
    assert {task.id for task in seen} == {up.id}
    assert seen[-1].status == mjasync.TaskStatus.SUCCESS


async def test_upscale_all_in_order() -> None:
    """upscale_all returns the U1..U4 upscales, in that order, sent concurrently."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        ups = await mj.upscale_all(grid, timeout=30)
        assert [sim.tasks[up.id].index for up in ups] == [1, 2, 3, 4]
        assert all(up.status == mjasync.TaskStatus.SUCCESS for up in ups)
        assert sim.requests[ACTION] == 4


async def test_upscale_all_one_failure_does_not_cancel_the_rest() -> None:
    """One failed upscale is returned in place (or raised afterwards); the others finish."""
    async with simulated() as (sim, mj):
        grid = await grid_of(mj)
        sim.inject(ACTION, "task_failure", reason="boom")
        outcomes = await mj.upscale_all(grid, timeout=30, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, mjasync.TaskFailedError)]
        assert len(failed) == 1
        assert sum(isinstance(o, mjasync.Task) for o in outcomes) == 3

        sim.inject(ACTION, "task_failure", reason="boom")
        with pytest.raises(mjasync.TaskFailedError) as caught:
            await mj.upscale_all(grid, timeout=30)
        assert "3 of 4" not in str(caught.value.__notes__)
        assert "1 of 4 upscales failed" in caught.value.__notes__[0]
        children = [t for t in sim.tasks.values() if t.parent_id == grid.id]
        assert sorted(t.status for t in children) == ["FAILURE"] * 2 + ["SUCCESS"] * 6


async def test_upscale_all_without_u_buttons_sends_nothing() -> None:
    """An upscaled image has no U buttons: ButtonNotFoundError, and no action is sent."""
    async with simulated() as (sim, mj):
        image = await upscaled(mj)
        sim.reset_counters()
        with pytest.raises(mjasync.ButtonNotFoundError):
            await mj.upscale_all(image)
        assert sim.requests[ACTION] == 0


async def test_bulk_pattern_chains_with_downloads(tmp_path: Path) -> None:
    """Twelve imagine -> U1 -> download chains run concurrently; a failure stays local."""
    async with simulated(slots=6, queue_size=50) as (sim, mj):

        async def chain(i: int) -> Path:
            grid = await grid_of(mj, f"fox number {i}")
            if i == 5:
                sim.inject(ACTION, "task_failure", reason="moderation")
            up = await mj.run_action(grid, "U1", timeout=30)
            return await mj.download(up, tmp_path)

        outcomes = await mjasync.gather_chains((chain(i) for i in range(12)), limit=4)
    paths = [o for o in outcomes if isinstance(o, Path)]
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(paths) == 11
    assert len(errors) == 1
    assert isinstance(errors[0], mjasync.TaskFailedError)
    assert names_in(tmp_path) == sorted(p.name for p in paths)


def names_in(directory: Path) -> list[str]:
    """Every name in *directory*, sorted."""
    return sorted(p.name for p in directory.iterdir())


def _tracked(active: list[int], peak: list[int]) -> Callable[[float, object], Awaitable[object]]:
    async def job(delay: float, result: object) -> object:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            await anyio.sleep(delay)
        finally:
            active[0] -= 1
        if isinstance(result, Exception):
            raise result
        return result

    return job


async def test_gather_chains_keeps_order_and_returns_errors() -> None:
    """Outcomes come back in input order, exceptions as values, regardless of finish order."""
    active, peak = [0], [0]
    job = _tracked(active, peak)
    boom = ValueError("boom")
    outcomes = await mjasync.gather_chains(
        [job(0.03, "a"), job(0.0, boom), job(0.01, "c")],
    )
    assert outcomes == ["a", boom, "c"]
    assert peak[0] == 3


async def test_gather_chains_limit() -> None:
    """With limit=2 no more than two chains run at once, and all finish."""
    active, peak = [0], [0]
    job = _tracked(active, peak)
    outcomes = await mjasync.gather_chains([job(0.005, i) for i in range(7)], limit=2)
    assert outcomes == list(range(7))
    assert peak[0] == 2


async def test_gather_chains_fail_fast_cancels_and_closes() -> None:
    """fail_fast raises the first error, cancels running chains and closes unstarted ones."""
    active, peak = [0], [0]
    job = _tracked(active, peak)
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(i)
            raise
        return i

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chains: list[Awaitable[object]] = [slow(0), job(0.001, KeyError("first")), slow(2)]
        chains += [slow(i) for i in range(3, 8)]
        with anyio.fail_after(5), pytest.raises(KeyError, match="first"):
            await mjasync.gather_chains(chains, limit=3, fail_fast=True)
        del chains
        gc.collect()
    assert sorted(cancelled) == [0, 2]
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_gather_chains_caller_cancellation() -> None:
    """Cancelling the caller cancels every chain promptly."""
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(i)
            raise
        return i

    with anyio.move_on_after(0.05) as scope:
        await mjasync.gather_chains([slow(i) for i in range(5)])
    assert scope.cancelled_caught
    assert sorted(cancelled) == list(range(5))


async def test_gather_chains_rejects_bad_limit() -> None:
    """limit below 1 raises InvalidRequestError."""
    with pytest.raises(mjasync.InvalidRequestError):
        await mjasync.gather_chains([], limit=0)


async def test_gather_chains_empty() -> None:
    """No chains: an empty list."""
    assert await mjasync.gather_chains([]) == []


@pytest.mark.parametrize(
    ("prompt", "ok"),
    [
        ("x --zoom 1", True),
        ("x --zoom 2", True),
        ("x --zoom 1.25 --ar 3:2", True),
        ("x --zoom 2.01", False),
        ("x --zoom", False),
        ("x", False),
    ],
)
def test_check_modal_inputs_zoom(prompt: str, ok: bool) -> None:
    """--zoom must be present and every value between 1 and 2 for custom_zoom."""
    button = mjasync.Button(custom_id="MJ::CustomZoom::0ddb91a0-af46-4ae9-8e8e-c271074eb6e6")
    if ok:
        check_modal_inputs(button, prompt, None)
    else:
        with pytest.raises(mjasync.InvalidRequestError):
            check_modal_inputs(button, prompt, None)


# -- every chain on every server (#7) ---------------------------------------------------------

CHANGE = "POST /mj/submit/change"
DIALECTS = ["oss", "plus", "trueai", "newapi"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_imagine_upscales_varies_and_rerolls_on_every_dialect(dialect: str) -> None:
    """imagine -> U1..U4 -> V1 -> reroll, each press sent once, on all four servers.

    novicezk has no /submit/action and no buttons: its grid offers the buttons
    /submit/change implies, and every press goes there; the others press customIds.
    """
    async with simulated(dialect) as (sim, mj):
        grid = await grid_of(mj)
        ups = await mj.upscale_all(grid, timeout=30)
        varied = await mj.run_action(grid, "V1", timeout=30)
        rerolled = await mj.run_action(grid, "reroll", timeout=30)

    assert [sim.tasks[up.id].index for up in ups] == [1, 2, 3, 4]
    assert all(up.status == mjasync.TaskStatus.SUCCESS for up in ups)
    assert {up.action for up in ups} == {"UPSCALE"}
    assert varied.status == rerolled.status == mjasync.TaskStatus.SUCCESS
    assert varied.action == "VARIATION"
    assert sim.tasks[varied.id].index == 1
    assert len({grid.id, varied.id, rerolled.id, *(up.id for up in ups)}) == 7
    for task in (*ups, varied, rerolled):
        assert sim.tasks[task.id].parent_id == grid.id
    presses = (sim.requests[CHANGE], sim.requests[ACTION])
    assert presses == ((6, 0) if dialect == "oss" else (0, 6))
    assert sim.requests[MODAL] == 0


@pytest.mark.parametrize("dialect", ["oss", "newapi"])
async def test_gather_chains_of_whole_chains(dialect: str) -> None:
    """imagine -> U2 chains through gather_chains finish on novicezk and through new-api.

    (upscale_all runs its four presses through gather_chains on all four servers above.)
    """

    async def chain(prompt: str) -> mjasync.Task:
        return await mj.run_action(await grid_of(mj, prompt), "U2", timeout=30)

    async with simulated(dialect) as (sim, mj):
        outcomes = await mjasync.gather_chains([chain(f"a fox {i}") for i in range(4)], limit=2)

    assert all(isinstance(outcome, mjasync.Task) for outcome in outcomes)
    assert [sim.tasks[t.id].index for t in outcomes if isinstance(t, mjasync.Task)] == [2] * 4
    assert sim.requests[CHANGE] + sim.requests[ACTION] == 4


async def test_oss_buttons_that_cannot_exist_are_refused_before_sending() -> None:
    """On novicezk an upscale has no V1, a grid no zoom: ButtonNotFoundError, nothing sent."""
    async with simulated("oss") as (sim, mj):
        grid = await grid_of(mj)
        up = await mj.run_action(grid, "U1", timeout=30)
        sim.reset_counters()
        with pytest.raises(mjasync.ButtonNotFoundError, match="none"):
            await mj.run_action(up, "V1", timeout=30)
        with pytest.raises(mjasync.ButtonNotFoundError, match="U1, U2"):
            await mj.run_action(grid, "zoom_out_2x", timeout=30)
        with pytest.raises(mjasync.ButtonNotFoundError):
            await mj.upscale_all(up, timeout=30)

    assert sim.requests[CHANGE] == sim.requests[ACTION] == 0


async def test_oss_grid_buttons_are_implied_without_custom_ids() -> None:
    """novicezk's grid JSON has no buttons; the nine implied ones carry no customId."""
    async with simulated("oss") as (_, mj):
        grid = await grid_of(mj)

    assert "buttons" not in grid.raw
    assert [b.name for b in grid.buttons] == [
        "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "reroll",
    ]  # fmt: skip
    assert all(b.implied and b.custom_id == "" for b in grid.buttons)
    assert grid.button("u3").change_index == 3
    assert grid.button("V2").change_action == "VARIATION"
    assert grid.button("reroll").change_action == "REROLL"


async def test_old_oss_code_21_returns_the_existing_upscale() -> None:
    """Old novicezk answers a repeated U1 with code 21 and the earlier task: no modal."""
    async with simulated("oss", oss_task_exists=True) as (sim, mj):
        grid = await grid_of(mj)
        first = await mj.run_action(grid, "U1", timeout=30)
        submission = await mj.action(grid, "U1")
        again = await mj.run_action(grid, "U1", prompt="ignored without a modal", timeout=30)

    assert submission.code == 21
    assert submission.existing
    assert not submission.needs_modal
    assert submission.task_id == first.id
    assert again.id == first.id
    assert again.status == mjasync.TaskStatus.SUCCESS
    assert sim.requests[CHANGE] == 3
    assert sim.requests[MODAL] == 0
    assert [t.kind for t in sim.tasks.values()].count("upsample") == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_change_where_the_server_has_it(dialect: str) -> None:
    """change() upscales and rerolls on novicezk, PLUS and new-api; trueai lacks the route.

    REROLL without an index sends 1: new-api refuses 0 ("index_is_required").
    """
    async with simulated(dialect) as (sim, mj):
        grid = await grid_of(mj)
        if dialect == "trueai":
            with pytest.raises(mjasync.RouteNotFoundError):
                await mj.change(grid, "UPSCALE", 2)
            return
        up = await mj.await_task(await mj.change(grid, "upscale", 2), timeout=30)
        again = await mj.await_task(await mj.change(grid.id, "REROLL"), timeout=30)

    assert sim.tasks[up.id].index == 2
    assert up.action == "UPSCALE"
    assert again.status == mjasync.TaskStatus.SUCCESS
    assert sim.requests[CHANGE] == 2
