"""What the CLI prints for a failure, in its own words, and the exit code it ends with.

A wrong base URL, a refused key, an unreachable host: each is one line naming the cause,
then hints (``--auth mj-api-secret``, ``check --base-url``), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re

import attrs

from mjasync import (
    AuthenticationError,
    ButtonNotFoundError,
    ConnectError,
    InvalidRequestError,
    RouteNotFoundError,
    TaskError,
    TaskTimeoutError,
)
from mjasync.bulk import InputError, UnreachableError

from ._common import (
    AUTH_STYLES,
    EXIT_API,
    EXIT_FAILED,
    EXIT_USAGE,
    ErrorReport,
    UsageError,
)

__all__ = ["CHECK_URL", "describe_error", "exit_code", "unreachable", "unreachable_text"]


def exit_code(error: BaseException) -> int:
    if isinstance(error, InvalidRequestError | ButtonNotFoundError | UsageError):
        return EXIT_USAGE
    if isinstance(error, TaskError | TaskTimeoutError):
        return EXIT_FAILED
    return EXIT_API


# The library's parameters and the CLI's flags for them: a CLI user never typed prompt=.
_FLAGS = {"prompt": "--prompt", "mask": "--mask FILE"}
_PARAMETER = re.compile(r"(?<![\w-])(prompt|mask)=(\.\.\.)?(\"[^\"]*\")?")


def _cli_words(message: str) -> str:
    """A library message in the CLI's words: ``prompt="x"`` becomes ``--prompt "x"``."""

    def flag(match: re.Match[str]) -> str:
        value = match.group(3)
        return _FLAGS[match.group(1)] + (f" {value}" if value else "")

    return _PARAMETER.sub(flag, message)


_WHERE = re.compile(r"^([A-Z]+) (\S+?):? ")
CHECK_URL = "check --base-url or MJ_BASE_URL"
# Routes every midjourney-proxy serves: a miss on one of them means there is none.
_CORE_ROUTE = re.compile(r"^/(submit/imagine|task/[^/]+/fetch|task/list-by-condition)$")


def _api_root(url: str) -> tuple[str, str]:
    """``(API root, route)`` of a request URL: ``("http://h/mj", "/task/1/fetch")``."""
    cut = url.rfind("/mj/")
    if cut < 0:
        return url, ""
    return url[: cut + 3], url[cut + 3 :]


def _answer_shape(body: object) -> str:
    if body is None or body == "":
        return "an empty answer"
    if isinstance(body, str):
        return "a web page" if body.lstrip().startswith("<") else "text, not the proxy's JSON"
    return "JSON that is not the proxy's"


def _route_report(error: RouteNotFoundError) -> ErrorReport:
    """#9.4: a base URL with no proxy behind it reads as that, in one line."""
    match = _WHERE.match(error.message)
    method = match.group(1) if match else ""
    url = error.url or (match.group(2) if match else "")
    root, route = _api_root(url)
    answered = f"{method} {url}".strip() + (
        f" answered HTTP {error.status} with {_answer_shape(error.body)}"
    )
    if _CORE_ROUTE.match(route):
        message = f"no midjourney-proxy API at {root}: {answered}; {CHECK_URL}"
    else:
        message = (
            f"this server has no {method} /mj{route}: {answered}; {CHECK_URL}, or whether "
            "this server supports it (relays such as new-api serve only some routes)"
        )
    return ErrorReport(message, extra={"url": url, "status": error.status})


def _auth_choice(args: argparse.Namespace | None, style: str) -> str:
    """How *style* was chosen, in the user's terms: a flag, the environment or the default."""
    if args is not None and getattr(args, "auth", None):
        return f"--auth {style}"
    if os.environ.get("MJ_AUTH"):
        return f"MJ_AUTH={style}"
    return f"--auth {style}, the default"


def _auth_in_effect(args: argparse.Namespace | None) -> str:
    flag = getattr(args, "auth", None) if args is not None else None
    return str(flag or os.environ.get("MJ_AUTH") or "bearer")


def _auth_report(error: AuthenticationError, args: argparse.Namespace | None) -> ErrorReport:
    """#9.3: which header carried the key, and which --auth the server's answer points to."""
    status = error.status or 401
    match = _WHERE.match(error.message)
    where = f"{match.group(1)} {match.group(2)} " if match else ""
    said = f": {error.description_en}" if error.description_en else " with an empty body"
    message = f"authentication failed: {where}answered HTTP {status}{said}"
    shape, reads = error.refused_by, error.reads_auth
    style = error.auth_style
    details: list[str] = []
    if style is None:
        details.append("no API key was sent: pass --api-key or set MJ_API_KEY")
    else:
        header = (
            "Authorization: Bearer <key>" if style == "bearer" else f"{error.auth_header}: <key>"
        )
        details.append(f'the key was sent as "{header}" ({_auth_choice(args, style)})')
    if shape:
        details.append(shape)
    suggested = [s for s in error.suggested_auth if s != style]
    flags = " or ".join(f"--auth {s}" for s in suggested)
    if suggested and style is None:
        if suggested[0] != _auth_in_effect(args):
            details.append(
                f"add --auth {suggested[0]} (or MJ_AUTH={suggested[0]}): this server reads "
                "the key that way"
            )
    elif suggested:
        details.append(f"try {flags} (or MJ_AUTH={suggested[0]})")
    elif style is not None and reads:
        details.append(
            "the key went where this server looks for it: check the key itself "
            "(--api-key or MJ_API_KEY)"
        )
    elif style is not None:
        others = " or ".join(f"--auth {s}" for s in AUTH_STYLES if s != style)
        details.append(f"check the key (--api-key or MJ_API_KEY), or send it with {others}")
    extra = {
        "auth": {
            "sent": style,
            "header": error.auth_header,
            "suggested": list(error.suggested_auth),
        }
    }
    return ErrorReport(message, tuple(details), extra=extra)


def unreachable(error: BaseException) -> ConnectError | None:
    """*error* when it says the server cannot be reached; not when this process's own
    pool had no free connection (that is congestion here, not the server)."""
    if isinstance(error, ConnectError) and error.reason != "no free connection":
        return error
    return None


def unreachable_text(error: BaseException) -> str | None:
    """``cannot reach HOST: REASON`` for a connection that never got through, else None."""
    failed = unreachable(error)
    if failed is None:
        return None
    return f"cannot reach {failed.host or 'the server'}: {failed.reason}"


_RERUN = (
    "the batch stopped; rerun the same command once fixed: finished work is kept and the "
    "jobs not sent are sent normally, no flag needed"
)


def describe_error(error: BaseException, args: argparse.Namespace | None = None) -> ErrorReport:
    """The one-line message, and the lines under it, to print for *error*."""
    batch = args is not None and getattr(args, "command", None) == "batch"
    if isinstance(error, InputError) and len(error.problems) > 1:
        count = len(error.problems)
        message = f"{count} problems in the jobs; nothing was submitted"
        return ErrorReport(message, tuple(error.problems), details_key="problems")
    if isinstance(error, InputError):
        return ErrorReport(f"{error.problems[0]} (nothing was submitted)")
    if isinstance(error, AuthenticationError):
        report = _auth_report(error, args)
        return attrs.evolve(report, details=(*report.details, _RERUN)) if batch else report
    if isinstance(error, RouteNotFoundError):
        report = _route_report(error)
        return attrs.evolve(report, details=(_RERUN,)) if batch else report
    if isinstance(error, UnreachableError):
        hint = (
            f"{CHECK_URL}, and --timeout (the server never answered within it)"
            if error.maybe_sent
            else f"{CHECK_URL}, and that the server is running"
        )
        return ErrorReport(str(error), (hint,), extra={"host": error.host})
    if isinstance(error, ConnectError):
        text = unreachable_text(error)
        if text is not None:
            message = f"{text} ({CHECK_URL}, and that the server is running; nothing was sent)"
            return ErrorReport(message)
    text = str(error) or type(error).__name__
    if isinstance(error, InvalidRequestError):
        text = _cli_words(text)
    return ErrorReport(text)
