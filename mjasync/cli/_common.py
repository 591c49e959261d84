"""What every part of the CLI shares: exit codes, its own two errors, the failure report."""

from __future__ import annotations

from typing import Any, get_args

import attrs

from mjasync import AuthStyle

__all__ = [
    "AUTH_STYLES",
    "EXIT_API",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ErrorReport",
    "ServerUnreachableError",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130

# The client's auth= styles, in its order (the --auth choices).
AUTH_STYLES: tuple[str, ...] = get_args(AuthStyle)


class UsageError(Exception):
    """A mistake in how the command was called; printed as one line, exit code 2."""


class ServerUnreachableError(Exception):
    """The server stopped answering during a wait; printed as one line, exit code 3."""


@attrs.frozen
class ErrorReport:
    """What the CLI prints for a failure: one line, then indented details (and JSON)."""

    message: str
    details: tuple[str, ...] = ()
    details_key: str = "hints"
    extra: dict[str, Any] = attrs.field(factory=dict)
