"""Chains: press a button, confirm the modal if one opens, wait for the result.

A chain is one coroutine per image (``imagine -> U2 -> vary -> download``); a bulk job
runs thousands of them. `gather_chains` runs them under one anyio task group, so the
caller's cancellation reaches every chain, while one chain's failure is returned as
a value instead of cancelling its siblings (unless the caller asks for ``fail_fast``).

The modal flow (reference §5): ``/submit/action`` answers code 21 with the id of a
task waiting in MODAL, which ``/submit/modal`` confirms with a prompt and, for Vary
(Region), a mask; PLUS may answer the modal with a new id, trueai keeps the same one.
Aggregators rewrite most 21s to 1, so a MODAL status found while waiting means the
same thing as a 21.

The flows are typed against `ChainClient`, the few public calls they make: this module
does not import the client.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Iterable
from typing import Protocol, TypeVar, cast

import anyio
from anyio.abc import TaskGroup

from ._buttons import Button
from ._errors import InvalidRequestError, ModalRequiredError
from ._images import ImageInput
from ._models import Submission, Task, TaskRef
from ._waiters import ProgressCallback

__all__ = ["ChainClient", "check_modal_inputs", "gather_chains", "run_action", "upscale_all"]

_T = TypeVar("_T")
_ZOOM = re.compile(r"--zoom\s+(\S+)")
_MIN_WAIT = 0.001


class ChainClient(Protocol):
    """What the chains need of a client: `Client` is one."""

    async def action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        enable_remix: bool | None = ...,
        state: str | None = ...,
    ) -> Submission: ...

    async def modal(
        self,
        task_id: TaskRef,
        *,
        prompt: str | None = ...,
        mask: ImageInput | None = ...,
        state: str | None = ...,
    ) -> Submission: ...

    async def await_task(
        self,
        target: TaskRef,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
    ) -> Task: ...

    async def fetch(self, task_id: TaskRef) -> Task: ...

    async def run_action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
    ) -> Task: ...


def check_modal_inputs(button: Button, prompt: str | None, mask: ImageInput | None) -> None:
    """Refuse, before anything is sent, inputs the button's modal will certainly reject.

    Custom zoom's modal needs ``--zoom`` between 1 and 2 in the prompt, and Vary
    (Region)'s needs a mask; without them the proxy would leave a MODAL task behind
    and answer with a localized error, after the action was already sent.
    """
    if prompt is not None and (not isinstance(cast(object, prompt), str) or not prompt.strip()):
        msg = "prompt must be a non-empty string (leave it None to keep the suggested prompt)"
        raise InvalidRequestError(msg)
    if button.name == "custom_zoom":
        values = _ZOOM.findall(prompt or "")
        if not values:
            msg = (
                'custom_zoom needs prompt= containing "--zoom <1..2>", '
                'e.g. prompt="a red fox --zoom 1.5"'
            )
            raise InvalidRequestError(msg)
        for value in values:
            try:
                factor = float(value)
            except ValueError:
                factor = math.nan
            if not 1.0 <= factor <= 2.0:
                msg = f"custom_zoom needs --zoom between 1 and 2, got --zoom {value!r}"
                raise InvalidRequestError(msg)
    if button.name == "vary_region" and mask is None:
        msg = (
            "vary_region (Vary (Region)) needs mask=: a PNG the size of the image, "
            "white where it should be repainted, black where it should be kept"
        )
        raise InvalidRequestError(msg)


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - anyio.current_time(), _MIN_WAIT)


async def run_action(
    client: ChainClient,
    task: Task | str,
    pressed: Button,
    *,
    prompt: str | None,
    mask_uri: str | None,
    timeout: float | None,
    on_progress: ProgressCallback | None,
    enable_remix: bool | None,
    state: str | None,
) -> Task:
    """`Client.run_action` once its inputs are checked: action, modal if one opens, wait.

    *mask_uri* is the mask as a data URI: `Client.run_action` encodes it before anything
    is sent.
    """
    can_confirm = prompt is not None or mask_uri is not None
    # One deadline for the whole chain: action, modal and both waits.
    deadline = None if timeout is None else anyio.current_time() + timeout

    async def confirm(modal_task: Submission | Task | str) -> Task:
        answer = await client.modal(modal_task, prompt=prompt, mask=mask_uri, state=state)
        return await client.await_task(answer, timeout=_left(deadline), on_progress=on_progress)

    submission = await client.action(task, pressed, enable_remix=enable_remix, state=state)
    if submission.needs_modal and can_confirm:
        return await confirm(submission)
    try:
        return await client.await_task(submission, timeout=_left(deadline), on_progress=on_progress)
    except ModalRequiredError as error:
        # A relay rewrote code 21 to 1: the MODAL status is the only sign.
        if not can_confirm or error.task.id != submission.task_id:
            raise
        return await confirm(error.task)


async def upscale_all(
    client: ChainClient,
    task: Task | str,
    *,
    timeout: float | None,
    on_progress: ProgressCallback | None,
) -> list[Task | Exception]:
    """`Client.upscale_all`: U1..U4 concurrently, outcomes in U order."""
    grid = task if isinstance(task, Task) else await client.fetch(task)
    # Look every button up first, so a task without U buttons sends nothing at all.
    buttons = [grid.button(f"U{index}") for index in range(1, 5)]
    return await gather_chains(
        client.run_action(grid, button, timeout=timeout, on_progress=on_progress)
        for button in buttons
    )


def _close(awaitable: object) -> None:
    # An unstarted coroutine must be closed, or Python warns it was never awaited.
    if inspect.iscoroutine(awaitable):
        awaitable.close()


async def gather_chains(
    chains: Iterable[Awaitable[_T]],
    *,
    limit: int | None = None,
    fail_fast: bool = False,
) -> list[_T | Exception]:
    """Run awaitables concurrently under one task group; return outcomes in input order.

    Each outcome is the chain's result, or the `Exception` it raised: one failed chain
    does not disturb the others. Cancelling the caller cancels every chain.

    Args:
        chains: coroutines, typically ``[chain(p) for p in prompts]``. A generator is
            consumed lazily, so with *limit* only that many coroutines exist at once.
        limit: how many chains may run at the same time (None: all of them).
        fail_fast: on the first exception, cancel the other chains and raise it.

    Raises:
        mjasync.InvalidRequestError: *limit* is below 1.
        Exception: with ``fail_fast=True``, the first exception a chain raised.
    """
    if limit is not None and limit < 1:
        msg = f"limit must be >= 1 or None, got {limit!r}"
        raise InvalidRequestError(msg)
    slots = anyio.Semaphore(limit) if limit is not None else None
    outcomes: dict[int, _T | Exception] = {}
    unstarted: dict[int, Awaitable[_T]] = {}
    failures: list[Exception] = []
    source = iter(chains)
    lazy = source is chains
    count = 0

    async def run(index: int, group: TaskGroup) -> None:
        awaitable = unstarted.pop(index)
        try:
            outcomes[index] = await awaitable
        except Exception as error:
            outcomes[index] = error
            if fail_fast and not failures:
                failures.append(error)
                group.cancel_scope.cancel()
        finally:
            if slots is not None:
                slots.release()

    try:
        async with anyio.create_task_group() as group:
            for index, awaitable in enumerate(source):
                unstarted[index] = awaitable
                count = index + 1
                if slots is not None:
                    await slots.acquire()
                group.start_soon(run, index, group)
    finally:
        for awaitable in unstarted.values():
            _close(awaitable)
        if not lazy:
            for awaitable in source:
                _close(awaitable)
    if failures:
        raise failures[0]
    return [outcomes[index] for index in range(count)]
