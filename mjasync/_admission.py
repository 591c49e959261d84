"""SubmitGate: one shared pause for every submit of a client after "not now" answers.

A full queue (novicezk/PLUS code 23, trueai's code 9 and its per-key caps) and a 429 are
properties of the server, not of one request: once one submit is refused, sending the
others at once only gets them refused too, and a few quick retries per submit (what
`RetryPolicy` does for transient failures) give up while the server is still busy. So
every refusal pauses all submits of the client; the pause doubles with each round of
refusals (full jitter on its upper half, at least any ``Retry-After``), and an accepted
submit resets it. Refused submits created nothing on the server, so sending them again
can never pay twice.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
from collections.abc import Iterator

import anyio

from ._errors import QueueFullError, RateLimitError
from ._policy import backoff

__all__ = ["SubmitGate", "admit_again"]

logger = logging.getLogger("mjasync")


class SubmitGate:
    """The pause every submit of one `Client` honours after queue-full or 429 answers.

    `Client` uses it by itself (see ``queue_full_wait``); the bulk runner and other code
    that sends submits can share it through `Client.submit_gate`: ``await gate.wait()``
    before sending, ``gate.push_back(retry_after)`` after a refusal, ``gate.ok()`` after
    an accepted submit. Code with a flow control of its own wraps its submits in
    `bypass`: they neither wait nor are resent, and raise the refusal at once.

    Args:
        base: seconds of the first pause.
        cap: the longest pause (a longer ``Retry-After`` is still honoured).
        rng: the random source of the jitter.
    """

    def __init__(self, *, base: float, cap: float, rng: random.Random | None = None) -> None:
        self._base = max(base, 0.0)
        self._cap = max(cap, self._base)
        self._rng = rng or random.Random()
        self._until = 0.0
        self._streak = 0
        self._pause = 0.0
        self._bypassed = contextvars.ContextVar(f"mjasync_gate_bypass_{id(self)}", default=False)
        # Counters for tests and logs: refusals reported, callers held back by a pause.
        self.refusals = 0
        self.waits = 0

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        """Submits made in this block (this task and what it awaits) skip the waiting.

        A queue-full or 429 answer is raised at once, as with ``queue_full_wait=0``, for
        a caller that paces itself (the bulk runner's adaptive limit); the refusal still
        pauses the client's other submits.
        """
        token = self._bypassed.set(True)
        try:
            yield
        finally:
            self._bypassed.reset(token)

    @property
    def bypassed(self) -> bool:
        """True inside `bypass` in the current task."""
        return self._bypassed.get()

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause ends (0 when submits may go)."""
        return max(0.0, self._until - anyio.current_time())

    async def wait(self, *, limit: float | None = None) -> float:
        """Sleep until the pause ends, or at most *limit* seconds; return the seconds slept.

        Callers released by the end of one pause are spread over a quarter of it, so a
        server that just freed one slot does not get every waiting submit at once.
        """
        start = anyio.current_time()
        deadline = None if limit is None else start + max(limit, 0.0)
        held = False
        # The end may move while we sleep (another refusal), so look again after each nap.
        for _ in range(10_000):
            now = anyio.current_time()
            delay = self._until - now
            if delay <= 0:
                break
            if not held:
                held = True
                self.waits += 1
                delay += self._rng.random() * self._pause * 0.25
            if deadline is not None:
                delay = min(delay, deadline - now)
                if delay <= 0:
                    break
            await anyio.sleep(delay)
        return anyio.current_time() - start

    def push_back(self, retry_after: float | None = None) -> float:
        """Record one refusal; return how long submits now pause.

        Refusals that arrive while a pause is running answer submits sent before it
        began: they do not lengthen it (except to honour a longer ``Retry-After``).
        """
        self.refusals += 1
        now = anyio.current_time()
        if now >= self._until:
            self._streak += 1
            self._pause = backoff(self._streak, base=self._base, cap=self._cap, rng=self._rng)
            self._until = now + self._pause
        if retry_after is not None and now + retry_after > self._until:
            self._pause = retry_after
            self._until = now + retry_after
        return self._until - now

    def ok(self) -> None:
        """Record an accepted submit: the next refusal starts from the shortest pause."""
        self._streak = 0


def admit_again(
    gate: SubmitGate,
    error: QueueFullError | RateLimitError,
    *,
    started: float,
    budget: float,
    max_retry_after: float,
    where: str,
) -> None:
    """After a "not now" to a submit: pause every submit, or raise *error* when it is over.

    *budget* is ``queue_full_wait``: the seconds one submit may spend being refused since
    *started*. A ``Retry-After`` longer than what is left (or than *max_retry_after*) is
    raised at once. The raised error says how long it waited and that nothing was created.
    """
    spent = anyio.current_time() - started
    left = budget - spent
    retry_after = error.retry_after if isinstance(error, RateLimitError) else None
    if left <= 0 or (retry_after is not None and retry_after > min(left, max_retry_after)):
        if budget > 0:
            error.add_note(
                f'mjasync: the server said "not now" for {spent:.1f}s '
                f"(queue_full_wait={budget:g}); nothing was created, "
                "so this submit can be sent again later"
            )
        raise error
    pause = gate.push_back(retry_after)
    logger.info(
        "%s: %s; pausing this client's submits %.2fs (%.0fs of %gs waited)",
        where,
        type(error).__name__,
        pause,
        spent,
        budget,
    )
