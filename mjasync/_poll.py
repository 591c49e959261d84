"""PollPolicy and the coalescing poller behind `await_task` and `watch`."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["PollPolicy"]


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        msg = f"{attribute.name} must be > 0, got {value!r}"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the client's one poller asks the server about tasks.

    Attributes:
        interval: seconds between polls of a task that is running.
        max_interval: the longest gap for a task that is queued or not started.
        batch_size: ids per ``list-by-condition`` request.
    """

    interval: float = attrs.field(default=2.0, validator=_positive)
    max_interval: float = attrs.field(default=10.0, validator=_positive)
    batch_size: int = attrs.field(default=100, validator=_positive)
