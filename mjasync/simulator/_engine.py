"""The task lifecycle: slots, the waiting queue and one timer-driven scheduler for all tasks.

Every pending transition is one entry in a heap; a single ``loop.call_at`` handle is armed
for the earliest entry. Ten thousand tasks therefore cost ten thousand heap entries and
one timer, never a coroutine each.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import Callable

from ._buttons import GRID_KINDS, buttons_for
from ._config import SimulatorConfig
from ._state import (
    CANCEL,
    FAILURE,
    IN_PROGRESS,
    MODAL,
    NOT_START,
    SUBMITTED,
    SUCCESS,
    IdFactory,
    SimTask,
    now_ms,
)

log = logging.getLogger("mjasync.simulator")

BANNED_FAILURE = "可能包含敏感词"
# The loop may run a timer a hair before its deadline (clock resolution); treat those as due.
_EARLY = 1e-3


def image_url(task: SimTask, preview_pct: int | None = None) -> str:
    """Where the simulator serves this task's final image (or one of its previews)."""
    if preview_pct is None:
        return f"{task.origin}/sim/images/{task.id}.png"
    return f"{task.origin}/sim/images/{task.id}-preview-{preview_pct}.png"


def video_url(task: SimTask) -> str:
    """Where the simulator serves this task's (fake) video."""
    return f"{task.origin}/sim/videos/{task.id}.mp4"


class Engine:
    """Owns the tasks and moves them through NOT_START -> ... -> SUCCESS/FAILURE.

    ``on_change`` is called after every change that the proxies push to a notifyHook
    (SUBMITTED, each IN_PROGRESS step, SUCCESS, FAILURE).
    """

    def __init__(
        self, config: SimulatorConfig, ids: IdFactory, on_change: Callable[[SimTask], None]
    ) -> None:
        self.config = config
        self.ids = ids
        self.tasks: dict[str, SimTask] = {}
        self._on_change = on_change
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._running = 0
        self._waiting: OrderedDict[str, None] = OrderedDict()
        # Its own stream, so that turning jitter on changes no id, prompt or fault roll.
        self._timing_rng = random.Random(f"{config.seed}:timing")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the running loop; transitions scheduled before this wait for it."""
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        """Cancel the timer; pending transitions stay in the heap but never fire."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    # -- capacity --------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Tasks holding a slot right now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Tasks waiting in NOT_START for a slot."""
        return len(self._waiting)

    def has_room(self, count: int = 1) -> bool:
        """Whether ``count`` more tasks fit into free slots plus free queue places."""
        free_slots = self.config.slots - self._running
        free_queue = self.config.queue_size - len(self._waiting)
        return count <= max(0, free_slots) + max(0, free_queue)

    def admit(self, task: SimTask) -> int:
        """Register a NOT_START task; returns its place in the waiting queue (0: it got a slot).

        The place counts from 1, so a task that must wait is always answered with code 22,
        even when the queue was empty and it only waits for a running task to finish.
        """
        self.tasks[task.id] = task
        task.status = NOT_START
        task.timing = self._plan()
        if self._running < self.config.slots and not self._waiting:
            self._take_slot(task)
            return 0
        self._waiting[task.id] = None
        return len(self._waiting)

    def _plan(self) -> tuple[float, ...]:
        """One job's gaps: queue, start, then one per progress step (simulated seconds)."""
        cfg = self.config
        render = [cfg.start_delay] + [cfg.step_delay] * cfg.steps
        rng = self._timing_rng
        # Real Midjourney jobs of one kind vary in length (server load, prompt, model),
        # so polls never line up with finishes the way a fixed lifecycle lets them.
        factor = 1.0
        if cfg.duration_jitter:
            factor = rng.uniform(1 - cfg.duration_jitter, 1 + cfg.duration_jitter)
        if cfg.step_jitter:
            # MJ edits its progress message at irregular moments, and its own queue wait
            # before the first step varies too: uneven gaps with the job's total kept.
            total = sum(render)
            weighted = [
                gap * rng.uniform(1 - cfg.step_jitter, 1 + cfg.step_jitter) for gap in render
            ]
            norm = sum(weighted)
            if norm > 0:
                render = [gap * total / norm for gap in weighted]
        return tuple(gap * factor for gap in [cfg.queue_delay, *render])

    def _gap(self, task: SimTask, index: int) -> float:
        """The planned gap ``index`` of *task* (an unplanned one falls back to the config)."""
        timing = task.timing
        if index < len(timing):
            return timing[index]
        cfg = self.config
        return (cfg.queue_delay, cfg.start_delay)[index] if index < 2 else cfg.step_delay

    def add_modal(self, task: SimTask) -> None:
        """Register a MODAL task: it takes no slot and never progresses by itself."""
        task.status = MODAL
        task.progress = "0%"
        self.tasks[task.id] = task

    def _take_slot(self, task: SimTask) -> None:
        self._running += 1
        task.holds_slot = True
        self._schedule(task, self._gap(task, 0))

    def _release(self, task: SimTask) -> None:
        self._waiting.pop(task.id, None)
        if task.holds_slot:
            task.holds_slot = False
            self._running -= 1
        while self._running < self.config.slots and self._waiting:
            task_id, _ = self._waiting.popitem(last=False)
            waiting = self.tasks.get(task_id)
            if waiting is None or waiting.status != NOT_START or waiting.stalled:
                continue
            self._take_slot(waiting)

    # -- scheduler -------------------------------------------------------------------------

    def _schedule(self, task: SimTask, simulated_delay: float) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        due = now + self.config.scaled(simulated_delay)
        heapq.heappush(self._heap, (due, next(self._seq), task.id, task.generation))
        self._arm()

    def _arm(self) -> None:
        if self._loop is None or not self._heap:
            return
        due = self._heap[0][0]
        if self._handle is not None:
            if self._armed_at <= due:
                return
            self._handle.cancel()
        self._armed_at = due
        self._handle = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self._loop is None:
            return
        try:
            now = self._loop.time() + _EARLY
            while self._heap and self._heap[0][0] <= now:
                _, _, task_id, generation = heapq.heappop(self._heap)
                task = self.tasks.get(task_id)
                if task is None or task.generation != generation or task.stalled:
                    continue
                self._advance(task)
        finally:
            self._arm()

    def _advance(self, task: SimTask) -> None:
        cfg = self.config
        if task.status == NOT_START:
            if task.banned:
                self._finish(task, FAILURE, BANNED_FAILURE)
                return
            if task.rejected_by_discord:
                # novicezk DiscordInstanceImpl.executeTask: a refused interaction fails the
                # task at once with Discord's message.
                task.start_time = now_ms()
                self._finish(task, FAILURE, task.rejected_by_discord)
                return
            task.status = SUBMITTED
            task.progress = "0%"
            task.start_time = now_ms()
            self._on_change(task)
            self._schedule(task, self._gap(task, 1))
        elif task.status in {SUBMITTED, IN_PROGRESS}:
            if task.step < cfg.steps:
                task.step += 1
                task.status = IN_PROGRESS
                pct = cfg.step_percent(task.step)
                task.progress = f"{pct}%"
                # novicezk StartAndProgressHandler.java: the job's first message (CREATE,
                # "0%") sets no imageUrl; each UPDATE after it carries a preview.
                if pct and task.kind not in {"describe", "picread_retry", "shorten"}:
                    task.image_url = image_url(task, pct)
                self._on_change(task)
                if not task.stuck:
                    self._schedule(task, self._gap(task, task.step + 1))
            elif task.stuck:
                task.status = IN_PROGRESS
            elif task.planned_failure:
                self._finish(task, FAILURE, task.planned_failure)
            else:
                self._finish(task, SUCCESS)

    # -- terminal transitions --------------------------------------------------------------

    def _finish(self, task: SimTask, status: str, reason: str | None = None) -> None:
        task.generation += 1
        task.status = status
        task.finish_time = now_ms()
        if status == SUCCESS:
            task.progress = "100%"
            task.fail_reason = None
            if task.result_text:
                task.final_prompt = task.result_text
            if task.kind == "shorten":
                task.image_url = None
            elif task.kind not in {"describe", "picread_retry"}:
                task.image_url = image_url(task)
            if task.kind in {"video", "video_upscale"}:
                task.video_url = video_url(task)
            task.buttons = buttons_for(task.kind, task.message_hash, self.config.dialect)
            if not task.seed:
                task.seed = self.ids.digits(10)
        else:
            task.progress = ""
            task.fail_reason = reason
        self._release(task)
        # PLUS never pushes CANCEL (it ranks below progress in its callback memo).
        if status != CANCEL:
            self._on_change(task)

    def _get_live(self, task_id: str) -> SimTask:
        task = self.tasks[task_id]
        if task.is_terminal:
            raise ValueError(f"task {task_id} is already {task.status}")
        return task

    def complete(self, task_id: str) -> SimTask:
        """Finish a task with SUCCESS now, whatever it was doing."""
        task = self._get_live(task_id)
        if task.start_time is None:
            task.start_time = now_ms()
        self._finish(task, SUCCESS)
        return task

    def fail(self, task_id: str, reason: str) -> SimTask:
        """Finish a task with FAILURE and ``reason`` now."""
        task = self._get_live(task_id)
        self._finish(task, FAILURE, reason)
        return task

    def cancel(self, task: SimTask, *, status: str, reason: str | None) -> None:
        """End a live task as CANCEL (plus) or FAILURE "取消任务" (trueai)."""
        self._finish(task, status, reason)

    def stall(self, task_id: str) -> SimTask:
        """Freeze a task where it is; it keeps any slot it holds."""
        task = self._get_live(task_id)
        task.stalled = True
        task.generation += 1
        self._waiting.pop(task.id, None)
        return task

    def confirm_modal(self, task: SimTask) -> int:
        """Move a MODAL task into the queue; returns its place in the queue (0: started)."""
        task.generation += 1
        task.progress = "0%"
        return self.admit(task)

    @staticmethod
    def is_grid(task: SimTask) -> bool:
        """Whether the task's images are 2x2 grids."""
        return task.kind in GRID_KINDS
