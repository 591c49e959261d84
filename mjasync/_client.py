"""`Client`: the one façade of mjasync, and its waits, chains and downloads.

`Client` is assembled from mixins, one module per group of the contract's methods:
`_base.BaseClient` (configuration, lifecycle, requests), `_submits.SubmitRoutes`,
`_actions.ActionRoutes` (buttons), `_queries.TaskQueries`, `_notify.NotifyRoutes` (the
webhook route, the poller it wakes, the bus). What is here needs them all: the waits
(`await_task`, `watch`), the chains (`run_action`, `upscale_all`, whose flows are in
`_chains`) and `download`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, overload

from . import _chains
from ._actions import ActionRoutes
from ._base import AuthStyle
from ._buttons import Button
from ._checks import check_timeout
from ._detect import NOTIFY_SILENCE_TASKS
from ._download import download_result
from ._errors import InvalidRequestError, TaskCancelledError, TaskFailedError
from ._images import ImageInput
from ._media import MediaKind, check_kind, default_kind, media_url
from ._models import Task, TaskRef, outcome, resolve_button, task_id_of
from ._notify import NotifyRoutes
from ._policy import PollStats
from ._queries import TaskQueries
from ._transport import same_origin
from ._waiters import ProgressCallback, TaskWatch, await_waiter

# AuthStyle lives in _base; it is named here too, where it always was.
__all__ = ["AuthStyle", "Client"]

logger = logging.getLogger("mjasync")


class Client(ActionRoutes, TaskQueries, NotifyRoutes):
    """An asyncio client for one midjourney-proxy base URL.

    Use it as ``async with mjasync.Client(...) as mj:``; it owns one aiohttp session
    (or uses yours, which it then never closes) and one poller shared by every wait.

    Args:
        base_url: ``https://host``; a trailing ``/`` or ``/mj`` is tolerated.
            Defaults to ``$MJ_BASE_URL``.
        api_key: the key; defaults to ``$MJ_API_KEY``. Never printed, logged or put
            in an exception.
        auth: ``"bearer"`` (``Authorization: Bearer KEY``, aggregators),
            ``"authorization"`` (``Authorization: KEY``, trueai) or ``"mj-api-secret"``
            (novicezk's proxies). Defaults to ``$MJ_AUTH`` or ``"bearer"``.
        mode: ``"fast"``, ``"relax"`` or ``"turbo"`` send every request under
            ``/mj-<mode>/mj/...``.
        timeout: seconds per HTTP request, counted once a pooled connection is free for
            it (connecting, sending, reading the answer).
        pool_timeout: seconds a request may wait for a free connection of the pool
            before `ConnectError` (None: no bound). Nothing was sent then, so even a
            submit is retried. Used by the default transport (not with ``transport=``).
        retry: which transient failures are retried and how long to back off.
        poll: how the shared poller batches and paces status requests.
        notify_hook: the public URL of your webhook route; every submit then carries
            ``<url>?token=<secret>`` so `handle_notification` can wake waiters early.
        notify_token: the secret for that URL; defaults to ``$MJ_NOTIFY_TOKEN``, else
            32 random bytes (url-safe). Every process that serves the webhook route
            must share it: a callback for a task submitted by another process carries
            that process's token.
        notify_bus: a `NotificationBus` (``mjasync.RedisBus(url)``) shared by every
            process of the app: each notification this client accepts is published
            once, and the ones other processes accepted wake this client's waiters the
            same way (a confirming fetch unless ``trust_notifications``). Started by
            ``async with`` (or the first wait) and closed by `aclose`; polling still
            finishes every wait when the bus is down.
        trust_notifications: resolve waiters from a terminal notification without
            confirming it with one fetch.
        headers: extra headers for every request.
        session: an aiohttp ``ClientSession`` you own.
        transport: any `AsyncTransport` (``mjasync.testing.MockTransport`` in tests).
        max_image_bytes: the largest image accepted as input.
        max_download_bytes: the largest image `download` accepts (default 50 MB).
        image_seed_timeout: seconds for `image_seed`, which a proxy may hold ~60 s.
        queue_full_wait: seconds one submit may spend waiting while the server says
            "not now" (queue full, 429): every submit of this client then pauses, with a
            backoff that doubles per round of refusals (from ``retry.backoff`` up to
            ``retry.max_backoff``, jitter, any ``Retry-After`` honoured), and the refused
            submit is sent again; a refused submit created nothing, so nothing is paid
            twice. When the time is up, the `QueueFullError` or `RateLimitError` is
            raised; 0 raises the first refusal at once. See `submit_gate`.
        clock: the clock of the poller and of every wait's deadline (default: the
            event loop's); ``mjasync.testing.VirtualClock`` runs them on virtual time.
    """

    # -- waiting ---------------------------------------------------------------------

    async def await_task(
        self,
        target: TaskRef,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Wait until a task finishes and return its SUCCESS snapshot.

        Every waiter of this client shares one poller, which batches all awaited ids
        into ``list-by-condition`` requests; with a ``notify_hook`` a notification wakes
        the waiter at once. *on_progress* (a function or a coroutine function) gets each
        changed snapshot (status, progress or preview URL), the final one included; if it
        raises, this call raises that and the poller goes on for everyone else.
        A `Task` that is already finished is judged without a request.

        Args:
            target: a `Submission`, a `Task` or a task id.
            timeout: seconds from now; None waits forever.
            on_progress: called once per changed snapshot.

        Raises:
            mjasync.TaskFailedError: the task ended in FAILURE (``.reason``).
            mjasync.TaskCancelledError: the task was cancelled.
            mjasync.ModalRequiredError: the task waits in MODAL (call `modal`).
            mjasync.TaskNotFoundError: the server does not know the id (after
                ``PollPolicy.not_found_grace``, not at the deadline).
            mjasync.TaskTimeoutError: *timeout* ran out; ``.last`` is the last snapshot.
            mjasync.ClientClosedError: the client was closed meanwhile.
        """
        task_id = task_id_of(target)
        check_timeout(timeout)
        if isinstance(target, Task) and target.is_terminal:
            return outcome(target)
        waiter = self._get_poller().register(
            task_id, keep_all=on_progress is not None, timeout=timeout
        )
        try:
            task = await await_waiter(waiter, on_progress)
        except (TaskFailedError, TaskCancelledError):
            self._task_finished()
            raise
        self._task_finished()
        return task

    def _task_finished(self) -> None:
        """Count a task waited on to its end; warn once if its notifyHook never came."""
        server = self._server
        server.finished_tasks += 1
        if (
            self._hooks.url is not None
            and not self._notify_warned
            and server.notifications == 0
            and server.finished_tasks >= NOTIFY_SILENCE_TASKS
        ):
            self._notify_warned = True
            logger.warning(
                "notify_hook is set, but no notification has arrived after %d finished "
                "tasks: the server or a relay may drop notifyHook (new-api strips it unless "
                "its operator enables it); waits fall back to polling",
                server.finished_tasks,
            )

    def watch(self, target: TaskRef, *, timeout: float | None = 600.0) -> TaskWatch:
        """Iterate over a task's changed snapshots, ending with the final one.

        ``async for task in mj.watch(sub): ...`` yields each new status, progress or
        preview URL, then the SUCCESS, FAILURE, CANCEL or MODAL snapshot, and stops.
        Unlike `await_task` it never raises for FAILURE: look at ``task.status``.
        Breaking out of the loop stops the polling at once; ``async with`` works too.
        The timeout starts at the first iteration.

        Raises (while iterating):
            mjasync.TaskTimeoutError: *timeout* ran out.
            mjasync.TaskNotFoundError: the server does not know the id.
            mjasync.ClientClosedError: the client was closed meanwhile.
        """
        task_id = task_id_of(target)
        check_timeout(timeout)
        return TaskWatch(
            lambda: self._get_poller().register(task_id, keep_all=True, timeout=timeout)
        )

    @property
    def poll_stats(self) -> PollStats:
        """Counters of this client's poller: ticks, status requests, snapshots…"""
        if self._poller is None:
            return PollStats()
        return self._poller.stats()

    # -- chains --------------------------------------------------------------------

    async def run_action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        prompt: str | None = None,
        mask: ImageInput | None = None,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        enable_remix: bool | None = None,
        state: str | None = None,
    ) -> Task:
        """Press a button, confirm the modal if one opens, and return the finished task.

        *button* is anything `action` takes (``"U2"``, ``"vary_region"``, a label, an
        emoji, a customId or a `Button`). When the server opens a modal (code 21, or the
        new task sits in MODAL because a relay rewrote the code), *prompt* and *mask*
        are sent with `modal` and the id it answers is followed; otherwise they are not
        used. Without either, a modal raises `ModalRequiredError`. Custom zoom and Vary
        (Region) always open one, so their inputs are checked before anything is sent.

        Args:
            task: the finished parent task (or its id, with a customId *button*).
            prompt: the modal's prompt; custom zoom needs ``--zoom`` between 1 and 2.
            mask: Vary (Region)'s mask: PNG bytes, a `Path` or a data URI
                (white = repaint).
            timeout: seconds for the whole chain; None waits forever.
            on_progress: gets each changed snapshot, as in `await_task`.
            enable_remix: trueai: force the modal for V/pan/reroll to edit the prompt.

        Raises:
            mjasync.InvalidRequestError: custom zoom without ``--zoom 1..2`` in *prompt*,
                Vary (Region) without *mask*, a blank prompt or a bad mask.
            mjasync.ButtonNotFoundError: the task has no such button.
            mjasync.ModalRequiredError: a modal opened and neither *prompt* nor *mask*
                was given; ``.task`` is the MODAL task, to pass to `modal`.
            mjasync.TaskFailedError, mjasync.TaskTimeoutError: as in `await_task`.
        """
        if timeout is not None and not timeout > 0:
            msg = f"timeout must be > 0 seconds or None, got {timeout!r}"
            raise InvalidRequestError(msg)
        pressed = resolve_button(task, button)
        _chains.check_modal_inputs(pressed, prompt, mask)
        # Encode the mask now: a bad mask found after the action was sent would strand a
        # MODAL task on the server.
        mask_uri = await self._mask(mask) if mask is not None else None
        return await _chains.run_action(
            self,
            task,
            pressed,
            prompt=prompt,
            mask_uri=mask_uri,
            timeout=timeout,
            on_progress=on_progress,
            enable_remix=enable_remix,
            state=state,
        )

    @overload
    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[Task]: ...

    @overload
    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: bool,
    ) -> list[Task | Exception]: ...

    async def upscale_all(
        self,
        task: Task | str,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        return_exceptions: bool = False,
    ) -> list[Task] | list[Task | Exception]:
        """Press U1..U4 concurrently and return the four upscales in U1..U4 order.

        All four always run to the end: one failure does not cancel the others (the
        server runs them anyway). With ``return_exceptions=True`` a failed upscale is
        its exception in the list; otherwise the first failure, in U order, is raised
        once all four are done, with a note naming the upscales that did finish.

        Args:
            task: a finished grid (or its id, fetched first for its buttons).
            timeout: seconds for each upscale chain; they run side by side.
            on_progress: gets every changed snapshot of all four.
            return_exceptions: return failures in the list instead of raising.

        Raises:
            mjasync.ButtonNotFoundError: the task lacks a U button; nothing was sent.
            mjasync.MJError: the first failed upscale (unless *return_exceptions*).
        """
        outcomes = await _chains.upscale_all(self, task, timeout=timeout, on_progress=on_progress)
        if return_exceptions:
            return outcomes
        failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        if failures:
            finished = [
                f"U{index} -> task {outcome.id}"
                for index, outcome in enumerate(outcomes, 1)
                if isinstance(outcome, Task)
            ]
            failures[0].add_note(
                f"upscale_all: {len(failures)} of 4 upscales failed; finished: "
                + (", ".join(finished) or "none")
            )
            raise failures[0]
        return [outcome for outcome in outcomes if isinstance(outcome, Task)]

    # -- downloads -----------------------------------------------------------------

    async def download(
        self,
        task: TaskRef,
        directory: str | os.PathLike[str],
        *,
        kind: MediaKind | None = None,
        filename: str | None = None,
        max_bytes: int | None = None,
    ) -> Path:
        """Save a finished task's final image or video in *directory* and return its path.

        *kind* is ``"image"`` or ``"video"``; by default a VIDEO task (or a task whose only
        result is a video, such as a video upscale) saves its video, every other task its
        image. A video is `Task.video_url`; trueai puts a VIDEO task's video in
        ``imageUrl`` too, and that is never saved as an image.

        The file is named `file_stem(task)` (the task id, made safe for a file name) or
        *filename*, with the suffix the content type calls for (``.png``, ``.jpg``,
        ``.webp``, ``.gif``; ``.mp4``, ``.webm``, ``.mov``). A name too long for the
        filesystem is shortened to a prefix plus a hash of the whole name. The body is
        streamed to a temporary file in *directory*, checked (HTTP status, content type,
        size cap, magic bytes, and completeness: an image's end marker, an MP4's box
        structure from its ``ftyp`` box to the end, a WebM's declared segment size) and
        renamed over the final name, so the final name only ever holds a complete file;
        every failure, cancellation included, removes the temporary file. A complete
        file already saved under that name is returned without downloading it again,
        so reruns are free. Transient failures (connection errors, 5xx, 429) are retried
        with the client's `RetryPolicy`. The API key is sent only when the file lives on
        this client's own origin, never to a CDN. Download promptly: result URLs expire.

        Args:
            task: a SUCCESS `Task`; an id or `Submission` is fetched first.
            directory: created if missing.
            kind: ``"image"`` or ``"video"`` (default: see above).
            filename: a plain file name (no path separators, no ``..``); an image or
                video suffix is replaced by the one that matches the content.
            max_bytes: the size cap (default: the client's ``max_download_bytes``).

        Raises:
            mjasync.InvalidRequestError: the task is not SUCCESS, has no URL for *kind*
                (a preview is never saved; ``kind="video"`` on a task without video), or
                *filename* is not a plain name.
            mjasync.DecodeError: the wrong type (an image where a video was asked for,
                and the reverse), not complete, or larger than the cap.
            mjasync.APIError: the host refused (``NotFoundError`` for a 404, typically an
                expired link).
            mjasync.LocalFileError: the filesystem refused (permission denied, disk full,
                a file where the directory should be); also an `OSError`.
        """
        self._check_open()
        kind = check_kind(kind)
        snapshot = task if isinstance(task, Task) else await self.fetch(task)
        chosen: MediaKind = kind if kind is not None else default_kind(snapshot)
        url = media_url(snapshot, chosen) if snapshot.status == "SUCCESS" else ""
        accept = "video/*" if chosen == "video" else "image/*"
        if url and same_origin(url, self._base_url):
            headers = {**self._headers, "Accept": accept}
        else:
            headers = {"User-Agent": self._headers["User-Agent"], "Accept": accept}
        return await download_result(
            snapshot,
            directory,
            kind=chosen,
            transport=self._transport,
            headers=headers,
            retry=self._retry,
            rng=self._rng,
            filename=filename,
            max_bytes=self._max_download_bytes if max_bytes is None else max_bytes,
        )
