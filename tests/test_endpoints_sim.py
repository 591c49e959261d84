"""Every endpoint against the simulator, in each dialect that has it (reference §2 catalogue)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from _shared import AUTH, FAST_POLL, KEY, png
from _shared import QUICK_RETRY as RETRY
from _shared import simulated as shared_simulated

import mjasync
from mjasync import (
    AuthenticationError,
    ModalRequiredError,
    RateLimitError,
    RetryPolicy,
    RouteNotFoundError,
    ServerError,
    Task,
    TaskCancelledError,
    TaskFailedError,
    TaskNotFoundError,
    TaskStatus,
    TransportError,
)
from mjasync.simulator import Simulator

ALL = ("plus", "trueai", "newapi", "oss")
NOT_OSS = ("plus", "trueai", "newapi")
POLL = attrs.evolve(FAST_POLL, first_poll=0.0, not_found_grace=0.05)
# A fast simulator of a dialect and a client speaking its auth style.
simulated = functools.partial(shared_simulated, api_key=KEY, poll=POLL, retry=RETRY)
WAIT = 10.0


def per_dialect(present: tuple[str, ...]) -> list[Any]:
    """Parametrize over all dialects, marking whether the route exists in each."""
    return [
        pytest.param(d, d in present, id=f"{d}-{'has' if d in present else 'lacks'}") for d in ALL
    ]


async def expect_route(present: bool, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run *call*; a dialect without the route must answer with RouteNotFoundError.

    Spring's 404 JSON (oss), an empty 404 (trueai) and new-api's 200 web page all mean
    "no such route", never "no such task".
    """
    if present:
        return await call()
    with pytest.raises(RouteNotFoundError) as info:
        await call()
    assert not isinstance(info.value, TaskNotFoundError)
    return None


async def grid_of(mj: mjasync.Client) -> Task:
    """Imagine a grid and wait for it."""
    return await mj.await_task(await mj.imagine("a lighthouse in a storm"), timeout=WAIT)


# -- submits ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ALL)
async def test_imagine_runs_to_success(dialect: str) -> None:
    """imagine -> await_task returns a SUCCESS grid with an image and its U/V/reroll buttons."""
    async with simulated(dialect) as (sim, mj):
        submission = await mj.imagine("a lighthouse in a storm", state="job-1")
        grid = await mj.await_task(submission, timeout=WAIT)

    assert submission.code in {1, 22}
    assert grid.id == submission.task_id
    assert grid.status is TaskStatus.SUCCESS
    assert grid.progress == 100
    assert grid.image_url
    assert grid.state == "job-1"
    assert grid.finish_time is not None
    if dialect == "oss":
        # No buttons on the wire: the nine /submit/change implies, without customIds.
        assert all(b.implied and not b.custom_id for b in grid.buttons)
    assert {b.name for b in grid.buttons} >= {"U1", "U2", "U3", "U4", "V1", "reroll"}
    assert sim.requests["POST /mj/submit/imagine"] == 1


@pytest.mark.parametrize("dialect", ALL)
async def test_imagine_with_reference_image(dialect: str) -> None:
    """imagine with a reference image is accepted by every dialect."""
    async with simulated(dialect) as (_, mj):
        task = await mj.await_task(await mj.imagine("a cat", images=[png()]), timeout=WAIT)

    assert task.status is TaskStatus.SUCCESS


@pytest.mark.parametrize("dialect", ALL)
async def test_blend(dialect: str) -> None:
    """blend of two images with dimensions runs to SUCCESS."""
    async with simulated(dialect) as (_, mj):
        submission = await mj.blend(
            [png(pixel=b"\x00"), png(pixel=b"\xff")], dimensions="LANDSCAPE"
        )
        task = await mj.await_task(submission, timeout=WAIT)

    assert task.status is TaskStatus.SUCCESS
    assert task.action in {"BLEND", mjasync.TaskAction.BLEND}


@pytest.mark.parametrize("dialect", ALL)
async def test_describe(dialect: str) -> None:
    """describe runs to SUCCESS with the prompts in final_prompt."""
    async with simulated(dialect) as (_, mj):
        task = await mj.await_task(await mj.describe(png()), timeout=WAIT)

    assert task.status is TaskStatus.SUCCESS
    assert task.action == "DESCRIBE"
    assert task.final_prompt


@pytest.mark.parametrize(("dialect", "present"), per_dialect(NOT_OSS))
async def test_shorten(dialect: str, present: bool) -> None:
    """shorten runs to SUCCESS where the dialect has it, NotFoundError where not."""
    async with simulated(dialect) as (_, mj):
        submission = await expect_route(present, lambda: mj.shorten("a very long prompt"))
        if submission is not None:
            task = await mj.await_task(submission, timeout=WAIT)
            assert task.status is TaskStatus.SUCCESS
            assert task.action == "SHORTEN"


@pytest.mark.parametrize(("dialect", "present"), per_dialect(NOT_OSS))
async def test_action_upscale(dialect: str, present: bool) -> None:
    """action U2 on a grid yields an UPSCALE task, through /submit/change where /action lacks.

    novicezk has no /submit/action: a customId /submit/change cannot press (a zoom) is
    RouteNotFoundError, and from then on U2 goes straight to /submit/change.
    """
    async with simulated(dialect) as (sim, mj):
        grid = await grid_of(mj)
        if not present:
            zoom = "MJ::Outpaint::50::1::x::SOLO"
            await expect_route(False, lambda: mj.action(grid.id, zoom))
        upscale = await mj.await_task(await mj.action(grid, "U2"), timeout=WAIT)

    assert upscale.status is TaskStatus.SUCCESS
    assert upscale.action == "UPSCALE"
    assert upscale.id != grid.id
    assert sim.requests["POST /mj/submit/action"] == 1
    assert sim.requests["POST /mj/submit/change"] == (0 if present else 1)


@pytest.mark.parametrize(("dialect", "code"), [("plus", 3), ("trueai", 3), ("newapi", 4)])
async def test_action_on_unknown_parent_is_task_not_found(dialect: str, code: int) -> None:
    """An action on an unknown parent raises TaskNotFoundError with the code as sent.

    3 from PLUS and trueai (trueai's with HTTP 404), new-api's own 400 code 4
    ``task_not_found`` (relay/mjproxy_handler.go).
    """
    async with simulated(dialect) as (_, mj):
        with pytest.raises(TaskNotFoundError) as info:
            await mj.action("1700000000000999", "MJ::JOB::upsample::1::nope")

    assert info.value.code == code
    assert info.value.task_id == "1700000000000999"


@pytest.mark.parametrize("dialect", NOT_OSS)
async def test_vary_region_modal_flow(dialect: str) -> None:
    """Vary (Region) opens a MODAL task; modal(prompt, PNG mask) completes it."""
    async with simulated(dialect) as (_, mj):
        grid = await grid_of(mj)
        upscale = await mj.await_task(await mj.action(grid, "U1"), timeout=WAIT)
        opened = await mj.action(upscale, "vary_region")
        assert opened.task_id is not None
        with pytest.raises(ModalRequiredError) as info:
            await mj.await_task(opened, timeout=WAIT)
        assert info.value.task.status is TaskStatus.MODAL
        confirmed = await mj.modal(opened, prompt="a red door", mask=png(pixel=b"\xff"))
        task = await mj.await_task(confirmed, timeout=WAIT)

    if dialect != "newapi":
        assert opened.code == 21
    assert task.status is TaskStatus.SUCCESS


@pytest.mark.parametrize(("dialect", "present"), per_dialect(NOT_OSS))
async def test_upload_returns_urls(dialect: str, present: bool) -> None:
    """upload returns one URL per image where the dialect has the route."""
    async with simulated(dialect) as (_, mj):
        urls = await expect_route(present, lambda: mj.upload([png(), png(pixel=b"\x09")]))

    if present:
        assert len(urls) == 2
        assert all(url.startswith("http") for url in urls)


@pytest.mark.parametrize(("dialect", "present"), per_dialect(NOT_OSS))
async def test_swap_face(dialect: str, present: bool) -> None:
    """swap_face runs to SUCCESS where the dialect has /insight-face/swap."""
    async with simulated(dialect) as (_, mj):
        submission = await expect_route(present, lambda: mj.swap_face(png(), png(pixel=b"\xc8")))
        if submission is not None:
            task = await mj.await_task(submission, timeout=WAIT)
            assert task.status is TaskStatus.SUCCESS
            assert task.action == "SWAP_FACE"


@pytest.mark.parametrize(("dialect", "present"), per_dialect(("trueai", "newapi")))
async def test_edit(dialect: str, present: bool) -> None:
    """edit runs to SUCCESS where the dialect has /submit/edits."""
    async with simulated(dialect) as (_, mj):
        submission = await expect_route(present, lambda: mj.edit("make it blue", png()))
        if submission is not None:
            task = await mj.await_task(submission, timeout=WAIT)
            assert task.status is TaskStatus.SUCCESS


@pytest.mark.parametrize(("dialect", "present"), per_dialect(("trueai", "newapi")))
async def test_video(dialect: str, present: bool) -> None:
    """video runs to SUCCESS where the dialect has /submit/video."""
    async with simulated(dialect) as (_, mj):
        submission = await expect_route(
            present, lambda: mj.video("waves", image=png(), motion="low")
        )
        if submission is not None:
            task = await mj.await_task(submission, timeout=WAIT)
            assert task.status is TaskStatus.SUCCESS
            assert task.action == "VIDEO"


@pytest.mark.parametrize("dialect", ALL)
async def test_submit_raw_escape_hatch(dialect: str) -> None:
    """submit() sends a raw body to any route; the simulator treats it like imagine."""
    async with simulated(dialect) as (_, mj):
        submission = await mj.submit("submit/imagine", {"prompt": "raw cat", "state": None})
        task = await mj.await_task(submission, timeout=WAIT)

    assert task.prompt == "raw cat"


@pytest.mark.parametrize("dialect", ALL)
async def test_banned_prompt(dialect: str) -> None:
    """A banned word is refused at submit (code 24) or fails the task, per dialect."""
    async with simulated(dialect) as (_, mj):
        if dialect == "trueai":  # checked later, in the queue worker (reference §3.1)
            submission = await mj.imagine("a gore scene")
            with pytest.raises(TaskFailedError) as failed:
                await mj.await_task(submission, timeout=WAIT)
            assert failed.value.reason
            return
        with pytest.raises(mjasync.BannedPromptError) as banned:
            await mj.imagine("a gore scene")

    assert banned.value.code == 24


# -- queries ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ALL)
async def test_fetch_and_fetch_many(dialect: str) -> None:
    """fetch and fetch_many return snapshots through list-by-condition in every dialect."""
    async with simulated(dialect) as (sim, mj):
        first, second = await mj.imagine("one"), await mj.imagine("two")
        one = await mj.fetch(first)
        both = await mj.fetch_many([first, second, "1700000000000404"])

    assert one.id == first.task_id
    assert {t.id for t in both} == {first.task_id, second.task_id}
    assert mj.batch_route == "list-by-condition"
    assert sim.requests["POST /mj/task/list-by-condition"] == 1


@pytest.mark.parametrize(
    ("dialect", "route"),
    [
        pytest.param("plus", "list-by-ids", id="plus"),
        pytest.param("trueai", "list-by-ids", id="trueai"),
        pytest.param("newapi", "fetch", id="newapi"),
        pytest.param("oss", "fetch", id="oss"),
    ],
)
async def test_fetch_many_falls_back_without_list_by_condition(dialect: str, route: str) -> None:
    """Without list-by-condition, fetch_many falls back to list-by-ids or per-id fetch."""
    async with simulated(dialect, disabled_routes=frozenset({"list-by-condition"})) as (_, mj):
        submission = await mj.imagine("a cat")
        tasks = await mj.fetch_many([submission])
        again = await mj.fetch_many([submission])

    assert [t.id for t in tasks] == [t.id for t in again] == [submission.task_id]
    assert mj.batch_route == route


@pytest.mark.parametrize("dialect", ALL)
async def test_fetch_unknown_id_is_task_not_found(dialect: str) -> None:
    """Every dialect's unknown-id answer raises TaskNotFoundError after one request."""
    async with simulated(dialect) as (sim, mj):
        with pytest.raises(TaskNotFoundError) as info:
            await mj.fetch("1700000000000404")

    assert info.value.task_id == "1700000000000404"
    assert sim.requests["GET /mj/task/{id}/fetch"] == 1


@pytest.mark.parametrize("dialect", ALL)
async def test_await_unknown_id_fails_fast(dialect: str) -> None:
    """await_task on an unknown id raises TaskNotFoundError within the grace, not the timeout."""
    async with simulated(dialect) as (_, mj):
        with pytest.raises(TaskNotFoundError):
            await mj.await_task("1700000000000404", timeout=WAIT)


@pytest.mark.parametrize(("dialect", "present"), per_dialect(NOT_OSS))
async def test_image_seed(dialect: str, present: bool) -> None:
    """image_seed returns a digit string where the dialect has the route."""
    async with simulated(dialect) as (_, mj):
        grid = await grid_of(mj)
        seed = await expect_route(present, lambda: mj.image_seed(grid))

    if present:
        assert seed.isdigit()


@pytest.mark.parametrize(("dialect", "present"), per_dialect(("plus", "trueai")))
async def test_cancel(dialect: str, present: bool) -> None:
    """cancel ends a task (plus: CANCEL, trueai: FAILURE) where the dialect has the route."""
    async with simulated(dialect, queue_delay=1000.0) as (_, mj):
        submission = await mj.imagine("a slow cat")
        await expect_route(present, lambda: mj.cancel(submission))
        if not present:
            return
        with pytest.raises((TaskCancelledError, TaskFailedError)) as info:
            await mj.await_task(submission, timeout=WAIT)

    expected = TaskStatus.CANCEL if dialect == "plus" else TaskStatus.FAILURE
    assert info.value.task.status is expected


# -- auth and faults -------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ALL)
async def test_wrong_key_is_authentication_error(dialect: str) -> None:
    """A wrong key raises AuthenticationError in every dialect, unretried."""
    async with (
        Simulator(dialect=dialect, api_key=KEY, time_scale=0.005) as sim,
        mjasync.Client(
            sim.base_url,
            "wrong",
            auth=AUTH[dialect],  # type: ignore[arg-type]
            retry=RETRY,
        ) as mj,
    ):
        with pytest.raises(AuthenticationError):
            await mj.imagine("a cat")
        with pytest.raises(AuthenticationError):
            await mj.fetch("1")

    assert mj.requests_sent == 2


@pytest.mark.parametrize("dialect", ALL)
async def test_rate_limited_submit_is_retried(dialect: str) -> None:
    """An injected 429 on imagine is retried and the retry succeeds."""
    async with simulated(dialect) as (sim, mj):
        sim.inject("imagine", "rate_limit", retry_after=0.01)
        submission = await mj.imagine("a cat")

    assert submission.task_id
    assert sim.requests["POST /mj/submit/imagine"] == 2


@pytest.mark.parametrize("dialect", ALL)
async def test_rate_limit_beyond_max_retry_after_raises(dialect: str) -> None:
    """A Retry-After above the policy's cap raises RateLimitError with retry_after."""
    retry = RetryPolicy(attempts=3, backoff=0.001, max_retry_after=1.0)
    async with simulated(dialect, retry=retry) as (sim, mj):
        sim.inject("imagine", "rate_limit", retry_after=30)
        with pytest.raises(RateLimitError) as info:
            await mj.imagine("a cat")

    assert info.value.retry_after == 30
    assert sim.requests["POST /mj/submit/imagine"] == 1


@pytest.mark.parametrize("dialect", ALL)
async def test_submit_server_error_is_not_resent(dialect: str) -> None:
    """A 500 after the submit created its task is raised, not resent (no double charge)."""
    async with simulated(dialect) as (sim, mj):
        sim.inject("imagine", "submit_fault_after")
        with pytest.raises(ServerError):
            await mj.imagine("a cat")

    assert sim.requests["POST /mj/submit/imagine"] == 1
    assert len(sim.tasks) == 1


@pytest.mark.parametrize("dialect", ALL)
async def test_dropped_submit_is_not_resent(dialect: str) -> None:
    """A submit whose connection drops after it arrived is a TransportError, sent once."""
    async with simulated(dialect) as (sim, mj):
        sim.inject("imagine", "submit_fault_after", drop=True)
        with pytest.raises(TransportError) as info:
            await mj.imagine("a cat")

    assert not isinstance(info.value, mjasync.ConnectError)
    assert sim.requests["POST /mj/submit/imagine"] == 1


@pytest.mark.parametrize("dialect", ALL)
async def test_query_server_errors_are_retried(dialect: str) -> None:
    """A fetch that meets two 503s is retried to success on the third try."""
    async with simulated(dialect) as (sim, mj):
        submission = await mj.imagine("a cat")
        sim.inject("fetch", "server_error", times=2, status=503)
        task = await mj.fetch(submission)

    assert task.id == submission.task_id
    assert sim.requests["GET /mj/task/{id}/fetch"] == 3


@pytest.mark.parametrize("dialect", ALL)
async def test_query_dropped_connection_is_retried(dialect: str) -> None:
    """A fetch whose connection is dropped is retried to success."""
    async with simulated(dialect) as (sim, mj):
        submission = await mj.imagine("a cat")
        sim.inject("fetch", "drop")
        task = await mj.fetch(submission)

    assert task.id == submission.task_id
    assert sim.requests["GET /mj/task/{id}/fetch"] >= 2


@pytest.mark.parametrize("dialect", ALL)
async def test_malformed_body_is_decode_error(dialect: str) -> None:
    """A truncated JSON body raises DecodeError (an APIError), not a JSON exception."""
    async with simulated(dialect, retry=RetryPolicy(attempts=1)) as (sim, mj):
        sim.inject("imagine", "malformed")
        with pytest.raises(mjasync.DecodeError):
            await mj.imagine("a cat")


@pytest.mark.parametrize("dialect", ALL)
async def test_task_failure_raises_task_failed(dialect: str) -> None:
    """An injected task failure ends await_task with TaskFailedError and its reason."""
    async with simulated(dialect) as (sim, mj):
        sim.inject("imagine", "task_failure", reason="Job action restricted")
        submission = await mj.imagine("a cat")
        with pytest.raises(TaskFailedError) as info:
            await mj.await_task(submission, timeout=WAIT)

    assert info.value.reason == "Job action restricted"


@pytest.mark.parametrize("mode", ["fast", "relax", "turbo"])
async def test_mode_prefix_reaches_the_simulator(mode: str) -> None:
    """mode= sends /mj-<mode>/mj/... and the trueai simulator serves it."""
    async with (
        Simulator(dialect="trueai", api_key=KEY, time_scale=0.005) as sim,
        mjasync.Client(
            sim.base_url, KEY, auth="authorization", mode=mode, poll=POLL, retry=RETRY
        ) as mj,
    ):
        task = await mj.await_task(await mj.imagine("a cat"), timeout=WAIT)

    assert task.status is TaskStatus.SUCCESS
    assert all(record.path.startswith(f"/mj-{mode}/mj/") for record in sim.request_log)
