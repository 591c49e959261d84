"""The two policies a `Client` takes, the poller's counters, and the one backoff formula.

`PollPolicy` paces the poller, `RetryPolicy` the resending of failed requests; both are
frozen attrs classes whose fields are checked by attrs validators when built. `PollStats`
is what the poller reports back (`Client.poll_stats`).

`backoff` is the only place a pause after repeated failures is computed: request
retries, the submit gate's shared pause, the poller after a failed status request, and
the bulk runner's pacing all call it.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
from attrs import validators

__all__ = ["PollPolicy", "PollStats", "RetryPolicy", "backoff"]


def _finite(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    # gt(0) lets inf through, and an infinite gap would never poll again.
    if not math.isfinite(value):
        msg = f"'{attribute.name}' must be a finite number of seconds, got {value!r}"
        raise ValueError(msg)


# 2**60 times any base is far above any cap; the exponent stops there so that a long
# streak of refusals never overflows a float.
_MAX_DOUBLINGS = 60


def backoff(
    failures: int, *, base: float, cap: float, rng: random.Random, jitter: float = 0.5
) -> float:
    """Seconds to pause after *failures* failures in a row (1 after the first).

    The ceiling doubles from *base* with each failure, up to *cap*; the pause is drawn
    uniformly from ``[ceiling * (1 - jitter), ceiling]``. The default keeps the upper
    half of "full jitter", which would allow 0 s: callers released together spread
    out, yet every pause still backs off.
    """
    ceiling = min(cap, base * 2.0 ** min(max(failures - 1, 0), _MAX_DOUBLINGS))
    return ceiling * ((1 - jitter) + jitter * rng.random())


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the client's one poller asks the server about tasks.

    The poller paces the client, not each task: every tick asks about all the ids that
    are due in as few ``list-by-condition`` requests as *batch_size* allows, and fills
    the room left in the last request with the ids due soonest. Ticks come every *tick*
    while a task is near its estimated finish, every *interval* while the running tasks
    are far from it, and ever less often (up to *max_interval*) while every task is
    queued. So with the defaults the client sends at most one request per 100 awaited
    ids per half second (2 requests/s for up to 100 waits), and never more than
    *max_requests_per_second*. See the waiting guide for the whole schedule.

    Every duration is in seconds; values down to a few milliseconds are allowed.

    Attributes:
        tick: the gap between polls of a task near its estimated finish (the poller's
            fastest pace; never longer than *interval*). A task polled at this pace
            stays at it until it ends, so a late finish is seen within one tick.
        interval: the longest gap between polls of a running (IN_PROGRESS) task; a task
            whose finish cannot be estimated yet is polled at this pace.
        max_interval: the longest gap for a task that is queued or not started; the gap
            grows from *interval* towards it while the task waits, and starts again
            from *interval* on any change of status.
        batch_size: ids per ``list-by-condition`` request.
        first_poll: delay before the first poll of a newly awaited id, so an immediate
            FAILURE or MODAL is seen at once (never longer than *interval*).
        not_found_grace: how long an id the server does not know is re-checked before
            `TaskNotFoundError` is raised (relays lag behind the proxy they front).
        max_requests_per_second: ceiling on status requests for the whole client; when
            the due ids need more, the ticks stretch.
        webhook_interval: the safety-net gap used when the client has a ``notify_hook``
            and a notification has arrived: they wake waiters, polling only covers lost
            callbacks. Until the first one arrives the normal intervals apply, so a relay
            that strips hooks costs nothing.
        predict: estimate each running task's finish (from its progress steps and the
            durations of finished tasks of the same action on this client) and poll it
            every *tick* from shortly before then. False: running tasks are polled every
            *interval*.
        jitter: the spread of the backoff after a failed poll (a random part of up to
            this fraction). It no longer scales the poll gaps: ids that share a tick
            share its requests, and a random gap per id would pull them apart.
    """

    tick: float = attrs.field(default=0.5, validator=[validators.gt(0), _finite])
    interval: float = attrs.field(default=2.0, validator=[validators.gt(0), _finite])
    max_interval: float = attrs.field(default=10.0, validator=[validators.gt(0), _finite])
    batch_size: int = attrs.field(default=100, validator=validators.gt(0))
    first_poll: float = attrs.field(default=0.5, validator=[validators.ge(0), _finite])
    not_found_grace: float = attrs.field(default=3.0, validator=[validators.ge(0), _finite])
    max_requests_per_second: float = attrs.field(
        default=20.0, validator=[validators.gt(0), _finite]
    )
    webhook_interval: float = attrs.field(default=15.0, validator=[validators.gt(0), _finite])
    predict: bool = attrs.field(default=True, validator=validators.instance_of(bool))
    jitter: float = attrs.field(default=0.1, validator=[validators.ge(0), validators.lt(1)])


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: tries in all, the first included (1 disables retries).
        backoff: seconds before the first retry; doubles each time, with jitter (see
            `backoff`).
        max_backoff: cap on one computed backoff.
        max_retry_after: the longest ``Retry-After`` honoured; a longer one raises
            `RateLimitError` (with ``retry_after``) instead of waiting.
    """

    attempts: int = attrs.field(default=3, validator=validators.ge(1))
    backoff: float = attrs.field(default=0.5, validator=validators.ge(0))
    max_backoff: float = attrs.field(default=8.0, validator=validators.ge(0))
    max_retry_after: float = attrs.field(default=60.0, validator=validators.ge(0))


@attrs.frozen(kw_only=True)
class PollStats:
    """Counters of one client's poller since it started (see `Client.poll_stats`).

    Attributes:
        ticks: scheduling rounds that sent at least one status request.
        status_requests: batch and single-task requests the poller sent.
        max_requests_per_tick: the most status requests one tick sent.
        snapshots: task snapshots received from polls, changed or not.
        changes: snapshots that were newer than the last one and woke waiters.
        notifications: accepted notifications that named an awaited task.
        polled_ids: ids being polled right now.
        waiters: waiters registered right now.
    """

    ticks: int = 0
    status_requests: int = 0
    max_requests_per_tick: int = 0
    snapshots: int = 0
    changes: int = 0
    notifications: int = 0
    polled_ids: int = 0
    waiters: int = 0
