"""The journaled submit: intent written, request sent once, outcome written; paced by `Flow`.

Every paid submit is a ``sending`` row before its request leaves and its outcome after
(`delivery_status`: accepted, never sent, rejected or unknown), so a crash at any
point leaves a journal that says whether a task may exist. Refusals that say "not now"
(queue full, 429) or "not reached" are sent again after `Flow` allows; an answer every
other job would get too stops the run.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable

import anyio

from mjasync import (
    APIError,
    ConnectError,
    DecodeError,
    Delivery,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    Submission,
    delivery_of,
)

from ._base import NOT_NOW, STOPS_RUN, JobFailed, JobUnknown, Stopped, describe, unknown_reason
from ._events import EventKind
from ._input import Job
from ._journal import ACCEPTED, NEVER_SENT, REJECTED, UNKNOWN, JobRecord, StepRecord, StepStatus
from ._reach import host_of, unreachable_reason
from ._recovery import Recovery

__all__ = ["JournaledSubmit", "delivery_status", "pushback"]


def delivery_status(error: Exception) -> StepStatus:
    """Whether a failed submit reached the server, as a journal status.

    The one place that decides it, from `mjasync.delivery_of`: ``UNKNOWN`` when a task
    may exist (a timeout, a 5xx, a dropped connection, a garbled answer); ``REJECTED``
    when the server answered and refused this submit for good (a banned prompt, an
    unknown parent task); ``NEVER_SENT`` when no task exists and sending again may
    work: never delivered, caught by the client before sending, refused for now (queue
    full, 429), or refused for the configuration (the key, a base URL with no proxy
    behind it), which a rerun with the configuration fixed sends normally.
    """
    delivery = delivery_of(error)
    if delivery is Delivery.MAYBE_SENT:
        return UNKNOWN
    if delivery is Delivery.NOT_SENT or isinstance(error, (*NOT_NOW, *STOPS_RUN)):
        return NEVER_SENT
    return REJECTED


def pushback(error: BaseException) -> bool:
    """A refusal that is worth sending again after a pause: the server was busy or away."""
    return isinstance(error, QueueFullError | RateLimitError | ConnectError)


class JournaledSubmit(Recovery):
    """Submitting one step until accepted, journaled and paced (a `BulkRunner` mixin)."""

    async def _submit(
        self,
        job: Job,
        record: JobRecord,
        step: str,
        submit: Callable[[str], Awaitable[Submission]],
    ) -> str:
        """Submit until accepted; the caller then owns the task's place in the flow."""
        # A fresh nonce per paid intent: after --retry-failed or --resubmit-unknown, a
        # lost answer must not be "recovered" as the earlier task of the same step.
        tag = f"mjasync:{self.journal.run_id}:{job.key}:{step}:{secrets.token_hex(4)}"
        flow = self._flow
        last = ""
        for _ in range(self.max_submit_attempts):
            if not flow.has_room():
                self._emit_flow("task_queued", job, step)
            sent_in = await flow.acquire()
            if self._fatal is not None:
                # The send below is shielded, so it is no checkpoint: without this, a
                # stopping run would go on sending until something else awaited.
                flow.release()
                raise Stopped
            try:
                status, task_id, error, retry_after = await self._send_once(
                    job.key, step, tag, submit
                )
            except BaseException:
                flow.release()
                raise
            if status == ACCEPTED:
                assert task_id is not None
                flow.accepted()
                record.steps[step] = StepRecord(step, ACCEPTED, task_id, tag)
                self._emit("task_submitted", job, step, message=task_id)
                return task_id
            assert error is not None
            last = describe(error)
            record.steps[step] = StepRecord(step, status, None, tag, error=last)
            if status == UNKNOWN:
                if isinstance(error, RequestTimeoutError) and not self._reach.answered:
                    # Sent, never answered, and nothing else of this run was either: a
                    # host that takes connections and says nothing. Every further submit
                    # would be one more that may be paid and stays unknown.
                    flow.release()
                    self._stop(self._reach.silent(host_of(self.client.base_url, error)))
                    raise JobUnknown(unknown_reason(step, last))
                found = await self._recover(job, step, tag)
                if found is None:
                    flow.release()
                    raise JobUnknown(unknown_reason(step, last))
                flow.accepted()
                record.steps[step] = StepRecord(step, ACCEPTED, found, tag)
                return found
            if isinstance(error, STOPS_RUN):
                flow.release()
                self._stop(error)
                raise Stopped
            reason = unreachable_reason(error)
            lasted = self._reach.give_up() if reason is not None else None
            if reason is not None and lasted is not None:
                flow.release()
                host = host_of(self.client.base_url, error)
                self._stop(self._reach.unreachable(host, reason, lasted))
                raise Stopped
            if status == REJECTED or not pushback(error):
                flow.release()
                if status == REJECTED:
                    raise JobFailed(f"{step}: {last}", permanent=True)
                # Refused by the client itself (a bad input, a button the grid lacks):
                # nothing was sent, so a rerun with the input fixed runs it again.
                raise JobFailed(f"{step}: {last} (nothing was sent)", permanent=False)
            congestion = isinstance(error, QueueFullError | RateLimitError)
            delay = flow.refused(sent_in, retry_after, congestion=congestion)
            flow.release()
            why = (
                "server queue full"
                if isinstance(error, QueueFullError)
                else "rate limited, HTTP 429"
                if congestion
                else "server not reached"
            )
            self._emit_flow("backoff", job, step, message=f"{why} ({last})", delay=delay)
        raise JobFailed(
            f"{step}: not accepted after {self.max_submit_attempts} attempts ({last}); "
            "a rerun will try again",
            permanent=False,
        )

    def _emit_flow(
        self, kind: EventKind, job: Job, step: str, *, message: str = "", delay: float = 0.0
    ) -> None:
        flow = self._flow
        self._emit(
            kind,
            job,
            step,
            message=message,
            delay=delay,
            limit=max(1, math.floor(flow.limit)),
            in_flight=flow.in_flight,
        )

    async def _send_once(
        self, key: str, step: str, tag: str, submit: Callable[[str], Awaitable[Submission]]
    ) -> tuple[StepStatus, str | None, BaseException | None, float | None]:
        """One journaled submit: intent, request, outcome. Returns (status, id, error, retry_after).

        Shielded from cancellation as a whole: Ctrl-C while a submit is on the wire
        would otherwise leave a 'sending' row for a task that may well exist.
        """
        journal = self.journal
        retry_after: float | None = None
        task_id: str | None = None
        error: BaseException | None = None
        with anyio.CancelScope(shield=True):
            await journal.step_sending(key, step, tag, self._requests)
            try:
                # The runner paces itself (Flow): a queue-full or 429 answer comes back
                # at once instead of being waited through by the client's gate, which
                # still pauses the client's other submits.
                with self.client.submit_gate.bypass():
                    submission = await submit(tag)
            except Exception as failed:
                status, error = delivery_status(failed), failed
                if isinstance(failed, RateLimitError):
                    retry_after = failed.retry_after
                if isinstance(failed, APIError):
                    self._reach.answer()
            else:
                self._reach.answer()
                task_id = submission.task_id
                if task_id is None:
                    status = UNKNOWN
                    error = DecodeError(f"accepted (code {submission.code}) without a task id")
                else:
                    status = ACCEPTED
            await journal.set_step(
                key,
                step,
                status,
                requests=self._requests,
                task_id=task_id,
                error=describe(error) if error is not None else None,
            )
        return status, task_id, error, retry_after
