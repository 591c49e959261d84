"""Whether the server can be reached at all: a run against a dead address ends, bounded.

A refused connection is not push-back. Queue-full and 429 answers come from a server that
works and is busy, and waiting on them pays off; a host that refuses every connection (a
typo in the URL, a server that is down) will refuse the next one too. So the runner stops
at the first such failure when the server never answered this run, and after
``unreachable_timeout`` seconds of nothing but such failures when it did (a restart, a
network blip). Nothing was sent, so a rerun submits those jobs normally.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio

from mjasync import ConnectError, TransportError

__all__ = ["Reach", "UnreachableError", "host_of", "unreachable_reason"]


def unreachable_reason(error: BaseException) -> str | None:
    """Why *error* says the server cannot be reached (``"connection refused"``...), or None.

    None for everything that is not a `ConnectError`, and for a `ConnectError` that is
    about this process (no free pooled connection in time): that one is congestion here.
    """
    if not isinstance(error, ConnectError) or error.reason == "no free connection":
        return None
    return error.reason


def host_of(base_url: str, error: BaseException | None = None) -> str:
    """``host:port`` of the server *error* names (a `ConnectError`'s ``host``), else of
    the client's *base_url* (checked when the client was built, credentials left out)."""
    if isinstance(error, ConnectError) and error.host:
        return error.host
    return urlsplit(base_url).netloc.rpartition("@")[2] or base_url


class UnreachableError(TransportError):
    """A bulk run stopped because the server could not be reached, or never answered.

    Attributes:
        host: ``host:port`` of the server.
        reason: ``"connection refused"``, ``"host name not found (DNS)"``,
            ``"connection timed out"``, ``"no answer"``...
        maybe_sent: False when nothing reached the server (every connection failed), so
            a rerun submits the jobs normally; True when a submit was sent and never
            answered (its job is recorded as unknown until a rerun looks it up).
    """

    def __init__(self, message: str, *, host: str, reason: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.host = host
        self.reason = reason
        self.maybe_sent = maybe_sent


class Reach:
    """What the runner knows about reaching the server, and when to give up on it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.answered = False
        self._failing_since: float | None = None

    def answer(self) -> None:
        """The server answered something (an accepted submit, a refusal, a poll)."""
        self.answered = True
        self._failing_since = None

    def give_up(self) -> float | None:
        """Record a failed connection; the seconds it has lasted when it is time to stop.

        None means keep trying: the server answered earlier in this run, and has been
        unreachable for less than ``timeout`` seconds.
        """
        now = anyio.current_time()
        if self._failing_since is None:
            self._failing_since = now
        lasted = now - self._failing_since
        if not self.answered or lasted >= self.timeout:
            return lasted
        return None

    def unreachable(self, host: str, reason: str, lasted: float) -> UnreachableError:
        """The error that stops a run once `give_up` said so (after *lasted* seconds)."""
        if self.answered:
            when = f"it answered earlier in this run, then refused every attempt for {lasted:.0f} s"
        else:
            when = "it never answered this run"
        msg = (
            f"cannot reach {host}: {reason} ({when}); the run stopped. Nothing was sent to "
            "it, so a rerun submits the remaining jobs normally"
        )
        return UnreachableError(msg, host=host, reason=reason, maybe_sent=False)

    @staticmethod
    def silent(host: str) -> UnreachableError:
        """The error that stops a run whose first submits were sent and never answered."""
        msg = (
            f"no answer from {host}: it takes connections but answered nothing this run, "
            "and a submit timed out; the run stopped. The submits already sent may have "
            "reached it: their jobs are unknown, and a rerun looks them up first"
        )
        return UnreachableError(msg, host=host, reason="no answer", maybe_sent=True)
