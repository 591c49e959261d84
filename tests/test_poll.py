"""await_task / watch and the one coalescing poller per client."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator

import anyio
import attrs
import pytest
from _fakeproxy import FakeProxy

import mjasync
from mjasync import _poll
from mjasync._serde import decode_task
from mjasync.simulator import Simulator
from mjasync.testing import VirtualClock, json_response

FAST = mjasync.PollPolicy(
    interval=0.01, max_interval=0.02, first_poll=0.0, not_found_grace=0.05, jitter=0.0
)


def client_for(proxy: FakeProxy, poll: mjasync.PollPolicy = FAST, **kw: object) -> mjasync.Client:
    return mjasync.Client("http://mj.test", "key", poll=poll, transport=proxy.transport, **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> VirtualClock:
    """Virtual time for the poller: the tests below move it, nobody waits for it."""
    return VirtualClock()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(
        dialect="plus", time_scale=0.002, slots=2000, queue_size=20000, progress_steps=3
    ) as server:
        yield server


# -- policy ------------------------------------------------------------------------------


def test_policy_defaults_and_validation() -> None:
    """The contract defaults hold, millisecond intervals are fine, nonsense is refused."""
    policy = mjasync.PollPolicy()
    assert (policy.interval, policy.max_interval, policy.batch_size) == (2.0, 10.0, 100)
    assert 0 < policy.first_poll < policy.interval
    assert 1 <= policy.not_found_grace <= 5
    mjasync.PollPolicy(interval=0.002, max_interval=0.005, first_poll=0.0)
    for bad in ({"interval": 0}, {"batch_size": 0}, {"jitter": 1.0}, {"first_poll": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            mjasync.PollPolicy(**bad)  # type: ignore[arg-type]


# -- results -----------------------------------------------------------------------------


async def test_await_task_returns_success_and_reports_each_change_once(sim: Simulator) -> None:
    """on_progress (sync or async) sees each changed snapshot once, in order, ending SUCCESS."""
    async with mjasync.Client(sim.base_url, "k", poll=FAST) as mj:
        sub = await mj.imagine("a red fox")
        seen: list[tuple[str, int | None, str | None]] = []

        async def record(task: mjasync.Task) -> None:
            seen.append((task.status, task.progress, task.image_url))

        task = await mj.await_task(sub, on_progress=record)
        assert task.status == "SUCCESS"
        assert task.id == sub.task_id
        assert seen[-1][0] == "SUCCESS"
        assert len(seen) == len(set(seen)), "a snapshot was reported twice"
        ranks = {"NOT_START": 0, "SUBMITTED": 1, "IN_PROGRESS": 2, "SUCCESS": 3}
        order = [(ranks[s], p or 0) for s, p, _ in seen]
        assert order == sorted(order), "status or progress went backwards"

        plain: list[str] = []
        again = await mj.await_task(sub.task_id or "", on_progress=lambda t: plain.append(t.status))
        assert again.status == "SUCCESS"
        assert plain == ["SUCCESS"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("FAILURE", mjasync.TaskFailedError),
        ("CANCEL", mjasync.TaskCancelledError),
        ("MODAL", mjasync.ModalRequiredError),
    ],
)
async def test_final_statuses_raise(
    status: str, error: type[mjasync.TaskError], clock: VirtualClock
) -> None:
    """FAILURE, CANCEL and MODAL end the wait with the matching TaskError."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS")
    async with client_for(proxy, clock=clock) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(0.03)
        proxy.set("1", status, failReason="Job action restricted")
        with pytest.raises(error) as caught:
            await clock.run(waiting)
        assert caught.value.task.status == status
        if status == "FAILURE":
            assert caught.value.reason == "Job action restricted"  # type: ignore[attr-defined]


async def test_finished_task_is_judged_without_a_request() -> None:
    """A Task that is already terminal needs no poll."""
    proxy = FakeProxy()
    async with client_for(proxy) as mj:
        done = mjasync.Task(id="9", status=mjasync.TaskStatus.SUCCESS)
        assert await mj.await_task(done) is done
        with pytest.raises(mjasync.TaskFailedError):
            await mj.await_task(attrs.evolve(done, status=mjasync.TaskStatus.FAILURE))
    assert proxy.log == []


async def test_on_progress_error_fails_only_its_waiter() -> None:
    """A raising callback ends its own wait; the poller and the other waiters go on."""
    proxy = FakeProxy()
    for i in "123":
        proxy.set(i, "IN_PROGRESS", "10%")

    def boom(task: mjasync.Task) -> None:
        raise KeyError("callback broke")

    async with client_for(proxy) as mj:
        others = [asyncio.ensure_future(mj.await_task(i)) for i in "23"]
        with pytest.raises(KeyError, match="callback broke"):
            await mj.await_task("1", on_progress=boom)
        for i in "123":
            proxy.set(i, "SUCCESS")
        assert [t.status for t in await asyncio.gather(*others)] == ["SUCCESS", "SUCCESS"]


# -- coalescing --------------------------------------------------------------------------


@pytest.mark.slow
async def test_thousand_waiters_share_batched_requests(sim: Simulator) -> None:
    """1,000 waiters: at most ceil(1000 / batch_size) status requests per tick."""
    policy = mjasync.PollPolicy(
        interval=0.02, max_interval=0.05, first_poll=0.01, max_requests_per_second=10_000
    )
    async with mjasync.Client(sim.base_url, "k", poll=policy) as mj:
        subs = await asyncio.gather(*(mj.imagine(f"fox {i}") for i in range(1000)))
        sim.reset_counters()
        tasks = await asyncio.gather(*(mj.await_task(s) for s in subs))
        assert {t.status for t in tasks} == {"SUCCESS"}
        stats = mj.poll_stats
    bound = math.ceil(1000 / policy.batch_size)
    assert stats.max_requests_per_tick <= bound
    batches = sim.requests["POST /mj/task/list-by-condition"]
    assert batches == stats.status_requests
    assert batches <= stats.ticks * bound
    assert sim.requests["GET /mj/task/{id}/fetch"] == 0
    assert stats.waiters == 0
    assert stats.polled_ids == 0


@pytest.mark.parametrize(
    ("disabled", "route", "sim_key"),
    [
        (set(), "list-by-condition", "POST /mj/task/list-by-condition"),
        ({"list-by-condition"}, "list-by-ids", "POST /mj/task/list-by-ids"),
        ({"list-by-condition", "list-by-ids"}, "fetch", "GET /mj/task/{id}/fetch"),
    ],
)
async def test_fallback_chain_is_followed_and_remembered(
    disabled: set[str], route: str, sim_key: str
) -> None:
    """A server without list-by-condition is polled by list-by-ids, then per-id fetch."""
    async with (
        Simulator(dialect="plus", time_scale=0.002, slots=50, disabled_routes=disabled) as sim,
        mjasync.Client(sim.base_url, "k", poll=FAST) as mj,
    ):
        subs = await asyncio.gather(*(mj.imagine(f"owl {i}") for i in range(12)))
        tasks = await asyncio.gather(*(mj.await_task(s) for s in subs))
        assert {t.status for t in tasks} == {"SUCCESS"}
        assert mj.batch_route == route
        assert sim.requests[sim_key] > 0
        # The missing route was tried once, then never again.
        if "list-by-condition" in disabled:
            assert sim.requests["POST /mj/task/list-by-condition"] == 1
        if "list-by-ids" in disabled:
            assert sim.requests["POST /mj/task/list-by-ids"] == 1


@pytest.mark.parametrize("status", [404, 405])
async def test_fallback_on_missing_route_status(status: int) -> None:
    """404 and 405 both mean "no such route"; per-id fetch polls with bounded concurrency."""
    proxy = FakeProxy(routes=("fetch",), missing_status=status)
    for i in range(20):
        proxy.set(str(i), "SUCCESS")
    async with client_for(proxy) as mj:
        tasks = await asyncio.gather(*(mj.await_task(str(i)) for i in range(20)))
        assert len(tasks) == 20
        assert mj.batch_route == "fetch"
    assert proxy.count("list-by-condition") == 1
    assert proxy.count("list-by-ids") == 1
    assert proxy.count("fetch") == 20


async def test_missing_id_is_checked_by_one_fetch() -> None:
    """An id a batch answer leaves out is fetched once before anything is concluded."""
    proxy = FakeProxy()
    proxy.set("7", "SUCCESS")
    proxy.hidden.add("7")
    async with client_for(proxy) as mj:
        task = await mj.await_task("7")
    assert task.status == "SUCCESS"
    assert proxy.count("list-by-condition") == 1
    assert proxy.count("fetch") == 1


# -- not found ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["plus", "trueai", "newapi", "oss"])
async def test_unknown_id_fails_fast_in_every_dialect(dialect: str) -> None:
    """Each dialect's not-found shape ends the wait after the grace, long before the deadline."""
    grace = 0.1
    policy = attrs.evolve(FAST, not_found_grace=grace)
    async with (
        Simulator(dialect=dialect, time_scale=0.002) as sim,  # type: ignore[arg-type]
        mjasync.Client(sim.base_url, "k", poll=policy) as mj,
    ):
        started = time.monotonic()
        with pytest.raises(mjasync.TaskNotFoundError) as caught:
            await mj.await_task("1700000000999999", timeout=30)
        elapsed = time.monotonic() - started
        assert caught.value.task_id == "1700000000999999"
        assert grace <= elapsed < grace + 1.0
        with pytest.raises(mjasync.TaskNotFoundError):
            async for _ in mj.watch("1700000000999998", timeout=30):
                pass


async def test_lagging_relay_within_grace_is_not_an_error(clock: VirtualClock) -> None:
    """An id unknown at first but known before the grace ends is waited for normally."""
    proxy = FakeProxy(clock=clock)
    policy = attrs.evolve(FAST, not_found_grace=1.0)
    async with client_for(proxy, policy, clock=clock) as mj:
        waiting = asyncio.ensure_future(mj.await_task("5"))
        await clock.advance(0.9)
        assert not waiting.done()
        assert proxy.count("fetch") > 1  # asked again and again within the grace
        proxy.set("5", "SUCCESS")
        assert (await clock.run(waiting)).status == "SUCCESS"


# -- deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.05, 0.2])
async def test_deadline_is_accurate(timeout: float, clock: VirtualClock) -> None:
    """TaskTimeoutError: not before the deadline, within one poll interval after it."""
    proxy = FakeProxy(clock=clock)
    proxy.set("3", "IN_PROGRESS", "40%")
    policy = attrs.evolve(FAST, interval=0.05, max_interval=0.05)
    async with client_for(proxy, policy, clock=clock) as mj:
        started = clock.now()
        with pytest.raises(mjasync.TaskTimeoutError) as caught:
            await clock.run(mj.await_task("3", timeout=timeout))
        elapsed = clock.now() - started
    assert timeout <= elapsed < timeout + policy.interval
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert not isinstance(error, mjasync.RequestTimeoutError)
    assert error.task_id == "3"
    assert error.last is not None
    assert error.last.progress == 40


async def test_watch_times_out_with_last_snapshot(clock: VirtualClock) -> None:
    """watch raises TaskTimeoutError when its timeout runs out, after yielding what it saw."""
    proxy = FakeProxy(clock=clock)
    proxy.set("4", "SUBMITTED")
    async with client_for(proxy, clock=clock) as mj:
        seen: list[str] = []

        async def consume() -> None:
            async for task in mj.watch("4", timeout=5):
                seen.append(task.status)  # noqa: PERF401 -- must survive the raise

        with pytest.raises(mjasync.TaskTimeoutError) as caught:
            await clock.run(consume())
        assert clock.now() == pytest.approx(5, abs=FAST.max_interval)
        assert seen == ["SUBMITTED"]
        assert caught.value.last is not None
        assert mj.poll_stats.polled_ids == 0


async def test_invalid_timeout_is_refused() -> None:
    """A negative timeout is a usage error, raised before anything is sent."""
    proxy = FakeProxy()
    async with client_for(proxy) as mj:
        with pytest.raises(mjasync.InvalidRequestError):
            await mj.await_task("1", timeout=-1)
        with pytest.raises(mjasync.InvalidRequestError):
            mj.watch("1", timeout=-1)
    assert proxy.log == []


# -- watch -------------------------------------------------------------------------------


async def test_watch_yields_changes_and_ends_with_the_final_one(sim: Simulator) -> None:
    """Every yielded snapshot differs from the previous; the last one is terminal."""
    async with mjasync.Client(sim.base_url, "k", poll=FAST) as mj:
        sub = await mj.imagine("a heron")
        seen = [task async for task in mj.watch(sub, timeout=30)]
    keys = [(t.status, t.progress, t.image_url) for t in seen]
    assert len(keys) == len(set(keys))
    assert seen[-1].status == "SUCCESS"
    assert all(not t.is_terminal for t in seen[:-1])


async def test_leaving_watch_early_stops_polling_that_id(clock: VirtualClock) -> None:
    """break out of watch: the id is unregistered at once and never polled again."""
    proxy = FakeProxy(clock=clock)
    proxy.set("8", "IN_PROGRESS", "10%")
    proxy.set("9", "IN_PROGRESS", "10%")
    async with client_for(proxy, clock=clock) as mj:
        other = asyncio.ensure_future(mj.await_task("9"))

        async def first_of_eight() -> None:
            async for task in mj.watch("8"):
                assert task.id == "8"
                break

        await clock.run(first_of_eight())
        assert mj.poll_stats.polled_ids == 1
        mark = len(proxy.log)
        await clock.advance(1.0)
        assert "8" not in [i for _, _, ids in proxy.log[mark:] for i in ids]
        assert "9" in [i for _, _, ids in proxy.log[mark:] for i in ids]
        proxy.set("9", "SUCCESS")
        await clock.run(other)

        async def statuses() -> list[str]:
            async with mj.watch("9") as updates:
                return [t.status async for t in updates]

        assert await clock.run(statuses()) == ["SUCCESS"]


# -- cancellation and closing ------------------------------------------------------------


async def test_cancelled_waiter_unregisters_and_is_no_longer_polled(
    clock: VirtualClock,
) -> None:
    """An anyio cancel scope ends the wait at once; the abandoned id gets no more traffic."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS", "5%")
    async with client_for(proxy, clock=clock) as mj:
        with anyio.CancelScope() as scope:
            waiting = asyncio.ensure_future(clock.advance(0.05))
            waiting.add_done_callback(lambda _: scope.cancel())
            await mj.await_task("1", on_progress=lambda t: None)
        assert scope.cancelled_caught
        assert proxy.count("list-by-condition") > 1  # it was polled until then
        assert mj.poll_stats.waiters == 0
        assert mj.poll_stats.polled_ids == 0
        mark = len(proxy.log)
        await clock.advance(1.0)
        assert all("1" not in ids for _, _, ids in proxy.log[mark:])

        waiting = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(0.03)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert mj.poll_stats.polled_ids == 0


async def test_shared_id_keeps_polling_while_one_waiter_remains(clock: VirtualClock) -> None:
    """Two waiters on one id: cancelling one leaves the other served by the same requests."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS")
    async with client_for(proxy, clock=clock) as mj:
        first = asyncio.ensure_future(mj.await_task("1"))
        second = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(0.03)
        first.cancel()
        await clock.advance(0.03)
        assert mj.poll_stats.waiters == 1
        proxy.set("1", "SUCCESS")
        assert (await clock.run(second)).status == "SUCCESS"
    assert max(ids.count("1") for _, _, ids in proxy.log) == 1


async def test_close_ends_every_waiter_and_leaks_nothing(clock: VirtualClock) -> None:
    """aclose: waiters get ClientClosedError, the poller task is gone, later waits refuse."""
    proxy = FakeProxy(clock=clock)
    for i in range(5):
        proxy.set(str(i), "IN_PROGRESS")
    mj = client_for(proxy, clock=clock)
    waiting = [asyncio.ensure_future(mj.await_task(str(i))) for i in range(5)]
    watching = mj.watch("0")
    first = await clock.run(watching.__anext__())
    assert first.status == "IN_PROGRESS"
    await clock.advance(0.03)
    await mj.aclose()
    for result in await asyncio.gather(*waiting, return_exceptions=True):
        assert isinstance(result, mjasync.ClientClosedError)
    with pytest.raises(mjasync.ClientClosedError):
        await watching.__anext__()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "mjasync-poller"]
    with pytest.raises(mjasync.ClientClosedError):
        await mj.await_task("1")
    assert proxy.transport.closed


# -- errors while polling ----------------------------------------------------------------


async def test_server_errors_back_off_and_recover() -> None:
    """5xx answers do not kill the poller: it backs off and the wait still succeeds."""
    proxy = FakeProxy()
    proxy.set("1", "SUCCESS")
    proxy.queued = [json_response({"error": "busy"}, status=503) for _ in range(6)]
    policy = attrs.evolve(FAST, max_interval=0.02)
    async with client_for(
        proxy, policy, retry=mjasync.RetryPolicy(attempts=2, backoff=0.001)
    ) as mj:
        assert (await mj.await_task("1", timeout=10)).status == "SUCCESS"
    assert proxy.queued == []


async def test_authentication_error_fails_the_waiters() -> None:
    """A 401 while polling reaches the waiters it concerns as AuthenticationError."""
    proxy = FakeProxy()
    proxy.set("1", "IN_PROGRESS")
    proxy.queued = [json_response({"error": "bad key"}, status=401)]
    async with client_for(proxy) as mj:
        results = await asyncio.gather(
            mj.await_task("1"), mj.await_task("1"), return_exceptions=True
        )
    assert all(isinstance(r, mjasync.AuthenticationError) for r in results)
    assert results[0] is not results[1]


# -- pacing ------------------------------------------------------------------------------


async def test_queued_tasks_are_polled_less_often_than_running_ones(
    clock: VirtualClock,
) -> None:
    """Gaps grow towards max_interval while queued and return to interval when running."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "SUBMITTED")
    policy = mjasync.PollPolicy(interval=1.0, max_interval=8.0, first_poll=0.0, jitter=0.0)
    async with client_for(proxy, policy, clock=clock) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        await clock.advance(40)
        queued = [t for t, _, _ in proxy.log]
        proxy.set("1", "IN_PROGRESS", "20%")
        await clock.advance(8)
        mark = len(proxy.log)
        await clock.advance(10)
        running = [t for t, _, _ in proxy.log[mark:]]
        proxy.set("1", "SUCCESS")
        await clock.run(waiting)
    queued_gaps = [b - a for a, b in itertools.pairwise(queued)]
    assert queued_gaps[0] == pytest.approx(1.0)
    assert queued_gaps[1] == pytest.approx(1.5)  # growing by half each time...
    assert queued_gaps[-1] == pytest.approx(8.0)  # ...up to max_interval
    running_gaps = [b - a for a, b in itertools.pairwise(running)]
    assert running_gaps == pytest.approx([1.0] * len(running_gaps))
    assert len(running_gaps) >= 9


async def test_request_ceiling_holds_for_the_whole_client(clock: VirtualClock) -> None:
    """max_requests_per_second caps status traffic however many waiters are due."""
    proxy = FakeProxy(clock=clock)
    for i in range(50):
        proxy.set(str(i), "IN_PROGRESS")
    policy = mjasync.PollPolicy(
        interval=0.001, max_interval=0.001, first_poll=0.0, batch_size=1, max_requests_per_second=40
    )
    async with client_for(proxy, policy, clock=clock) as mj:
        waiting = [asyncio.ensure_future(mj.await_task(str(i))) for i in range(50)]
        await clock.advance(0.25)
        sent = len(proxy.log)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    # A one-second burst (40) plus 40/s for a quarter second, and nothing more.
    assert sent <= 40 + 10 + 2
    assert sent >= 40  # demand far above the ceiling: the whole burst was used


async def test_idle_poller_does_not_spin() -> None:
    """With a slow interval the loop sleeps: few wake-ups and almost no CPU."""
    proxy = FakeProxy()
    proxy.set("1", "IN_PROGRESS")
    policy = mjasync.PollPolicy(interval=0.1, max_interval=0.1, first_poll=0.0, jitter=0.0)
    async with client_for(proxy, policy) as mj:
        waiting = asyncio.ensure_future(mj.await_task("1"))
        cpu = time.process_time()
        await anyio.sleep(0.35)
        cpu = time.process_time() - cpu
        assert mj.poll_stats.ticks <= 5
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    assert cpu < 0.1


async def test_progress_never_goes_backwards(clock: VirtualClock) -> None:
    """An older snapshot from a lagging replica is ignored."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS", "60%")
    async with client_for(proxy, clock=clock) as mj:
        seen: list[tuple[str, int | None]] = []
        waiting = asyncio.ensure_future(
            mj.await_task("1", on_progress=lambda t: seen.append((t.status, t.progress)))
        )
        await clock.advance(0.03)
        proxy.set("1", "IN_PROGRESS", "30%")
        await clock.advance(0.03)
        proxy.set("1", "SUBMITTED")
        await clock.advance(0.03)
        proxy.set("1", "SUCCESS")
        await clock.run(waiting)
    assert seen == [("IN_PROGRESS", 60), ("SUCCESS", 100)]


async def test_plain_waiter_wakes_only_for_the_final_snapshot() -> None:
    """Progress hints reach a watcher at once but never wake a plain await_task."""

    class Never:
        per_id = False

        async def fetch_batch(self, _: object) -> list[dict[str, object]]:
            await asyncio.sleep(3600)
            return []

        async def fetch_one(self, _: str) -> dict[str, object]:
            raise AssertionError

    poller = _poll.Poller(mjasync.PollPolicy(first_poll=3600), Never())
    plain = poller.register("1", keep_all=False, timeout=None)
    watcher = poller.register("1", keep_all=True, timeout=None)
    plain_next = asyncio.ensure_future(plain.next())
    watcher_next = asyncio.ensure_future(watcher.next())
    await asyncio.sleep(0)
    for percent in (20, 40):
        running = decode_task({"id": "1", "status": "IN_PROGRESS", "progress": f"{percent}%"})
        assert poller.notify(running, trust=True)
        await asyncio.sleep(0)
    assert (await watcher_next).progress == 20
    assert not plain_next.done()
    assert plain.last is not None
    assert plain.last.progress == 40
    assert poller.notify(decode_task({"id": "1", "status": "SUCCESS"}), trust=True)
    final = await asyncio.wait_for(plain_next, 1)
    assert final.status == "SUCCESS"
    plain.close()
    watcher.close()
    await poller.aclose()


async def test_a_virtual_clock_runs_ten_minutes_of_polling_at_once(clock: VirtualClock) -> None:
    """Client(clock=VirtualClock()): default 2 s polls and a 600 s deadline take no real time."""
    proxy = FakeProxy(clock=clock)
    proxy.set("1", "IN_PROGRESS", "40%")
    started = time.monotonic()
    async with client_for(proxy, mjasync.PollPolicy(jitter=0.0), clock=clock) as mj:
        with pytest.raises(mjasync.TaskTimeoutError) as caught:
            await clock.run(mj.await_task("1", timeout=600))
    assert time.monotonic() - started < 5
    assert 600 <= clock.now() < 602
    assert caught.value.last is not None
    assert caught.value.last.progress == 40
    gaps = [b - a for (a, _, _), (b, _, _) in itertools.pairwise(proxy.log)]
    assert gaps == pytest.approx([2.0] * len(gaps))
    assert len(proxy.log) == 300
