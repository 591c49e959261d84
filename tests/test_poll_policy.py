"""PollPolicy defaults that must not make small intervals or stripped hooks slow."""

from __future__ import annotations

import mjasync
from mjasync.simulator import Simulator

FAST = mjasync.PollPolicy(interval=0.005, max_interval=0.02)


async def test_first_poll_is_never_later_than_the_interval() -> None:
    """A first_poll longer than the interval is capped to it (a 30 s delay would time out)."""
    policy = mjasync.PollPolicy(interval=0.005, max_interval=0.02, first_poll=30.0)
    async with (
        Simulator(dialect="plus", time_scale=0.001) as sim,
        mjasync.Client(sim.base_url, poll=policy) as mj,
    ):
        task = await mj.await_task(await mj.imagine("a quick fox"), timeout=5)
    assert task.status == mjasync.TaskStatus.SUCCESS


async def test_stripped_hooks_do_not_slow_polling_down() -> None:
    """A relay that drops notifyHook leaves waits on the normal intervals, not the 15 s net."""
    async with Simulator(dialect="newapi", time_scale=0.001) as sim:
        async with mjasync.Client(
            sim.base_url, poll=FAST, notify_hook="http://127.0.0.1:9/hook"
        ) as mj:
            submission = await mj.imagine("a fox behind a relay")
            task = await mj.await_task(submission, timeout=5)
        assert sim.notifications == []
    assert task.status == mjasync.TaskStatus.SUCCESS
