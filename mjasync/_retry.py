"""Which failed requests are safe to send again, when, and the loop that does it.

midjourney-proxy has no idempotency keys: a submit that reached the server may have
started a paid job, so it is resent only when it provably never arrived
(`Delivery.NOT_SENT`: connect refused, DNS, no pooled connection in time) or the server
explicitly said "not now" (429, queue full). Queries (fetch, list-by-condition,
image-seed) are retried on any transient failure. Every decision is logged at DEBUG.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import TypeVar

import anyio

from ._errors import (
    Delivery,
    MJError,
    QueueFullError,
    RateLimitError,
    ServerError,
    TransportError,
    delivery_of,
)
from ._policy import RetryPolicy, backoff

__all__ = [
    "RequestKind",
    "is_retryable",
    "parse_retry_after",
    "retry_delay",
    "with_retries",
]

logger = logging.getLogger("mjasync")
_T = TypeVar("_T")


class RequestKind(Enum):
    """What resending a request could cost."""

    QUERY = "query"  # reads, batch polls, cancel: resending is harmless
    SUBMIT = "submit"  # may start a paid job: resend only on provable non-delivery


def is_retryable(kind: RequestKind, error: MJError) -> bool:
    """May a request of *kind* that failed with *error* be sent again?"""
    if isinstance(error, RateLimitError | QueueFullError):
        return True  # the server explicitly said "not now"
    if not isinstance(error, TransportError | ServerError):
        return False  # a verdict on the request itself: sending it again changes nothing
    if kind is RequestKind.QUERY:
        return True
    # A read timeout, 5xx or dropped connection may hide an accepted (paid) job.
    return delivery_of(error) is Delivery.NOT_SENT


def retry_delay(
    policy: RetryPolicy, kind: RequestKind, error: MJError, attempt: int, rng: random.Random
) -> float | None:
    """Seconds to wait before try number ``attempt + 1``, or None to give up.

    ``attempt`` counts the tries made so far (1 after the first failure).
    """
    if attempt >= policy.attempts or not is_retryable(kind, error):
        return None
    delay = backoff(attempt, base=policy.backoff, cap=policy.max_backoff, rng=rng)
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        if error.retry_after > policy.max_retry_after:
            return None
        delay = max(delay, error.retry_after)
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        from datetime import UTC, datetime

        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


async def with_retries(
    policy: RetryPolicy,
    kind: RequestKind,
    rng: random.Random,
    attempt: Callable[[], Awaitable[_T]],
    *,
    what: str,
) -> _T:
    """Await *attempt* until it succeeds or `retry_delay` says to give up.

    *what* names the request in debug logs; it must never contain a secret.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except MJError as error:
            delay = retry_delay(policy, kind, error, tries, rng)
            if delay is None:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "giving up on %s after %s (try %d of %d): %s",
                        what,
                        type(error).__name__,
                        tries,
                        policy.attempts,
                        _why_not(policy, kind, error, tries),
                    )
                raise
            logger.debug(
                "retrying %s in %.2fs after %s (try %d of %d)",
                what,
                delay,
                type(error).__name__,
                tries + 1,
                policy.attempts,
            )
            await anyio.sleep(delay)


def _why_not(policy: RetryPolicy, kind: RequestKind, error: MJError, tries: int) -> str:
    """Why `retry_delay` said no, in words for the debug log."""
    if is_retryable(kind, error):
        if tries >= policy.attempts:
            return "no tries left"
        return "its Retry-After is longer than RetryPolicy.max_retry_after"
    if kind is RequestKind.SUBMIT and isinstance(error, TransportError | ServerError):
        return "the submit may have reached the server, so resending it could pay twice"
    return "the server refused the request itself, so resending changes nothing"
