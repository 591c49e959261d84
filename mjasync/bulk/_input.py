"""Reading bulk input: JSONL (one job object a line) or plain text (one prompt a line)."""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import attrs

from mjasync import DEFAULT_MAX_IMAGE_BYTES, Button, InvalidRequestError, sniff_mime

__all__ = [
    "GRID_BUTTONS",
    "InputError",
    "Job",
    "check_jobs",
    "load_jobs",
    "parse_actions",
    "parse_jobs",
]

# Keys end up in file names and in the 255-character `state` tag, so keep them tame.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_JOB_FIELDS = frozenset({"prompt", "images", "actions", "key"})
_MAX_REPORTED = 5
_BOM = "\ufeff"

# Bulk actions are pressed on the finished imagine grid, so the names that can work are
# those of the buttons a grid carries: its customIds, named by `Button.name`.
_GRID_CUSTOM_IDS = (
    *(f"MJ::JOB::upsample::{index}::h" for index in range(1, 5)),
    *(f"MJ::JOB::variation::{index}::h" for index in range(1, 5)),
    "MJ::JOB::reroll::0::h::SOLO",
)
GRID_BUTTONS: tuple[str, ...] = tuple(
    name for name in (Button(custom_id).name for custom_id in _GRID_CUSTOM_IDS) if name
)
"""The buttons of an imagine grid, as `Button.name` calls them: U1..U4, V1..V4, reroll."""

# The rest of `Button.name`'s catalogue: real buttons, but of other tasks (an upscaled
# image, a describe or shorten answer, a video), never of the grid a bulk job presses.
_OTHER_BUTTONS = frozenset(
    {
        "upscale_subtle", "upscale_creative", "upscale_2x", "upscale_4x", "vary_subtle",
        "vary_strong", "vary_region", "zoom_out_2x", "zoom_out_1.5x", "make_square",
        "custom_zoom", "pan_left", "pan_right", "pan_up", "pan_down", "animate_high",
        "animate_low", "extend_high", "extend_low", "video_U1", "video_U2", "video_U3",
        "video_U4", "imagine_1", "imagine_2", "imagine_3", "imagine_4", "imagine_all",
        "describe_retry", "bookmark", *(f"shorten_{index}" for index in range(1, 6)),
    }
)  # fmt: skip
_GRID_BY_FOLDED = {name.casefold(): name for name in GRID_BUTTONS} | {"🔄": "reroll"}
_GRID_LISTING = "U1..U4, V1..V4 or reroll"


class InputError(InvalidRequestError):
    """The jobs are malformed; the message names the file and line of each problem.

    Attributes:
        problems: every problem, one ``"<file>:<line>: <what>"`` string each (the
            message shows the first five).
    """

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    @classmethod
    def listing(cls, problems: Sequence[str]) -> InputError:
        """One error for many problems: the first five in the message, all in ``problems``."""
        more = len(problems) - _MAX_REPORTED
        message = "; ".join(problems[:_MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")
        return cls(message, problems=problems)


@attrs.frozen
class Job:
    """One bulk job: imagine *prompt*, then press *actions* on the grid, downloading all.

    Attributes:
        key: the job's identity in the journal and in file names. An explicit ``key``
            from the input, else a hash of the line, so a rerun finds the same jobs.
        prompt: the imagine prompt, parameters included.
        images: reference images (URLs, data URIs or paths relative to the input file).
        actions: buttons to press on the finished grid (``U1``..``U4``, ``V2``...), or
            None to use the runner's default.
        line: the 1-based line number in the input (0 when built in code).
    """

    key: str
    prompt: str
    images: tuple[str, ...] = ()
    actions: tuple[str, ...] | None = None
    line: int = 0

    def spec(self) -> dict[str, Any]:
        """What the job asks for, as stored in the journal to detect a changed input."""
        return {"prompt": self.prompt, "images": list(self.images), "actions": self.actions}


def _unknown_button(name: str) -> str:
    if name in _OTHER_BUTTONS:
        return (
            f"{name!r} is a button of another kind of task, not of the imagine grid "
            f"that bulk actions press ({_GRID_LISTING})"
        )
    folded = name.casefold()
    choices = {n.casefold(): n for n in (*GRID_BUTTONS, *_OTHER_BUTTONS)}
    close = difflib.get_close_matches(folded, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {choices[close[0]]}?" if close else ""
    return f"no button is called {name!r}; an imagine grid has {_GRID_LISTING}{hint}"


def parse_actions(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"U1,U2"``, ``"all"`` (U1..U4) or a list of grid buttons -> a tuple of names.

    Names are those of `Button.name` for the buttons of an imagine grid (`GRID_BUTTONS`),
    in any case; ``🔄`` is ``reroll``; ``none`` or an empty string means no action.

    Raises:
        mjasync.InvalidRequestError: a name no grid button has (``U9``, a typo, or a
            button of an upscaled image such as ``vary_region``), listing them all.
    """
    if text is None:
        return ()
    items: list[object] = list(text.split(",") if isinstance(text, str) else text)
    names: list[str] = []
    problems: list[str] = []
    for item in items:
        if not isinstance(item, str):
            problems.append(f"an action must be a button name such as U1, got {item!r}")
            continue
        name = item.strip()
        if not name or name.casefold() == "none":
            continue
        if name.casefold() == "all":
            names.extend(["U1", "U2", "U3", "U4"])
        elif name.casefold() in _GRID_BY_FOLDED:
            names.append(_GRID_BY_FOLDED[name.casefold()])
        else:
            problems.append(_unknown_button(name))
    if problems:
        raise InvalidRequestError("; ".join(problems))
    return tuple(dict.fromkeys(names))


def _content_key(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _job_from_object(obj: object, where: str, line: int) -> tuple[Job, bool]:
    """A Job from one decoded JSONL value; the bool says whether the key was explicit."""
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if not isinstance(obj, dict):
        msg = f'{where}: expected a JSON object such as {{"prompt": "..."}}'
        raise InputError(msg)
    unknown = set(obj) - _JOB_FIELDS
    if unknown:
        names = ", ".join(sorted(unknown))
        msg = f"{where}: unknown field(s) {names}; expected prompt, images, actions, key"
        raise InputError(msg)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        msg = f"{where}: prompt must be a non-empty string"
        raise InputError(msg)
    images = obj.get("images", [])
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        msg = f"{where}: images must be a list of URLs or paths"
        raise InputError(msg)
    actions: tuple[str, ...] | None = None
    if "actions" in obj and obj["actions"] is not None:
        raw = obj["actions"]
        if not isinstance(raw, str | list):
            msg = f'{where}: actions must be a list such as ["U1", "U2"] or a string "U1,U2"'
            raise InputError(msg)
        try:
            actions = parse_actions(raw)
        except InvalidRequestError as error:
            raise InputError(f"{where}: {error}") from None
    key = obj.get("key")
    explicit = key is not None
    if explicit:
        if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
            msg = (
                f"{where}: key must be 1-64 letters, digits, '.', '_' or '-' "
                f"(starting with a letter or digit), got {key!r}"
            )
            raise InputError(msg)
    else:
        canonical = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        key = _content_key(canonical)
    job = Job(key=key, prompt=prompt.strip(), images=tuple(images), actions=actions, line=line)
    return job, explicit


def _parse(
    lines: Iterable[str], name: str, jsonl: bool | None
) -> tuple[list[Job], list[tuple[int, str]]]:
    """The jobs of every good line, and (line, problem) for every bad one."""
    jobs: list[Job] = []
    errors: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    explicit_keys: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        # A UTF-8 byte order mark (Windows editors write one) is not part of line 1.
        text = (raw.removeprefix(_BOM) if number == 1 else raw).strip()
        if not text or text.startswith("#"):
            continue
        if jsonl is None:
            jsonl = text.startswith("{")
        where = f"{name}:{number}"
        try:
            if jsonl:
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as error:
                    raise InputError(f"{where}: not valid JSON ({error.msg})") from None
                job, explicit = _job_from_object(obj, where, number)
            else:
                job, explicit = Job(key=_content_key(text), prompt=text, line=number), False
        except InputError as error:
            errors.append((number, str(error)))
            continue
        if explicit:
            if job.key in explicit_keys:
                used = explicit_keys[job.key]
                errors.append((number, f"{where}: key {job.key!r} is already used on line {used}"))
                continue
            explicit_keys[job.key] = number
        else:
            count = seen.get(job.key, 0) + 1
            seen[job.key] = count
            if count > 1:
                job = attrs.evolve(job, key=f"{job.key}-{count}")
        jobs.append(job)
    return jobs, errors


def _refuse(name: str, jobs: list[Job], errors: list[tuple[int, str]]) -> None:
    if errors:
        raise InputError.listing([problem for _, problem in sorted(errors)])
    if not jobs:
        raise InputError(f"{name}: no jobs (the file has no prompts)")


def parse_jobs(
    lines: Iterable[str], *, name: str = "<input>", jsonl: bool | None = None
) -> list[Job]:
    """Jobs from the lines of a JSONL or plain-text input.

    *jsonl* None guesses: JSONL when the first non-blank, non-comment line starts
    with ``{``. In plain text every non-blank line not starting with ``#`` is a prompt.
    Identical lines without a key get ``-2``, ``-3``... suffixes so each is its own job.
    A UTF-8 byte order mark before the first line is ignored.

    Raises:
        InputError: every problem with its line number (``problems``).
    """
    jobs, errors = _parse(lines, name, jsonl)
    _refuse(name, jobs, errors)
    return jobs


def load_jobs(path: str | Path) -> list[Job]:
    """Jobs from a file: ``.jsonl``/``.ndjson`` is JSONL, ``.txt`` plain, else guessed.

    The file is read as UTF-8, with or without a byte order mark. Relative image paths
    are resolved against the file's directory, and every image file is checked: it
    must exist, be readable and be a PNG, JPEG, WEBP or GIF (`check_jobs` also checks
    sizes against the client's limit).

    Raises:
        InputError: the file is missing or unreadable, or lines are malformed or name
            bad images; ``problems`` lists every bad line, in line order.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    suffix = path.suffix.lower()
    jsonl = True if suffix in {".jsonl", ".ndjson"} else False if suffix == ".txt" else None
    jobs, errors = _parse(text.splitlines(), str(path), jsonl)
    base = path.parent

    def resolve(image: str) -> str:
        if re.match(r"(?i)(https?:|data:)", image):
            return image
        candidate = Path(image).expanduser()
        return str(candidate if candidate.is_absolute() else (base / candidate).resolve())

    jobs = [
        attrs.evolve(job, images=tuple(resolve(i) for i in job.images)) if job.images else job
        for job in jobs
    ]
    errors += [(job.line, problem) for job, problem in _image_problems(jobs, str(path), None)]
    _refuse(str(path), jobs, errors)
    return jobs


def _where(job: Job, name: str) -> str:
    return f"{name}:{job.line}" if job.line else f"job {job.key}"


def _image_problem(image: str, max_bytes: int | None) -> str | None:
    """What is wrong with one image input, checked without sending it; None if nothing.

    URLs are left to the submit (checking them would mean downloading them); files are
    opened and their first bytes sniffed, so a missing, unreadable, oversized or
    non-image file is caught before any job of the run is paid for.
    """
    if re.match(r"(?i)https?://", image):
        return None
    if image[:5].lower() == "data:":
        return (
            None if sniff_mime(_data_uri_head(image)) else "is not a base64 PNG, JPEG, WEBP or GIF"
        )
    path = Path(image)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory"
    except PermissionError:
        return "is not readable (permission denied)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if size == 0:
        return "is empty"
    if max_bytes is not None and size > max_bytes:
        return f"is {size:,} bytes; the limit is {max_bytes:,}"
    if sniff_mime(head) is None:
        return "is not a PNG, JPEG, WEBP or GIF image"
    return None


def _data_uri_head(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.endswith(";base64"):
        return b""
    try:
        return base64.b64decode(payload[:24], validate=True)
    except (binascii.Error, ValueError):
        return b""


def _image_problems(jobs: Sequence[Job], name: str, max_bytes: int | None) -> list[tuple[Job, str]]:
    problems: list[tuple[Job, str]] = []
    for job in jobs:
        for index, image in enumerate(job.images, 1):
            problem = _image_problem(image, max_bytes)
            if problem is not None:
                problems.append((job, f"{_where(job, name)}: image {index} ({image}) {problem}"))
    return problems


def _check_sync(jobs: Sequence[Job], name: str, max_bytes: int) -> list[str]:
    problems = [(job, problem) for job, problem in _image_problems(jobs, name, max_bytes)]
    for job in jobs:
        where = _where(job, name)
        if job.actions is not None:
            try:
                parse_actions(job.actions)
            except InvalidRequestError as error:
                problems.append((job, f"{where}: actions: {error}"))
        if not job.prompt.strip():
            problems.append((job, f"{where}: prompt must be a non-empty string"))
    return [problem for _, problem in sorted(problems, key=lambda item: item[0].line)]


async def check_jobs(
    jobs: Sequence[Job],
    *,
    actions: str | Sequence[str] | None = None,
    name: str = "<jobs>",
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> None:
    """Check every job before anything is submitted; refuse them all if one is bad.

    Each job's image files must exist, be readable and be images within
    *max_image_bytes*; its actions (or *actions*, for jobs naming none) must be buttons
    an imagine grid has. Files are only stat-ed and sniffed, in a worker thread.

    Raises:
        InputError: every problem, each with its line (``<name>:<line>``) or job key.
    """
    parse_actions(actions)  # the default for jobs naming none: its own, flag-level error
    problems = await anyio.to_thread.run_sync(_check_sync, list(jobs), name, max_image_bytes)
    if problems:
        raise InputError.listing(problems)
