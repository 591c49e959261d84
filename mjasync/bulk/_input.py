"""Reading bulk input: JSONL (one job object a line) or plain text (one prompt a line)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._errors import InvalidRequestError

__all__ = ["InputError", "Job", "load_jobs", "parse_actions", "parse_jobs"]

# Keys end up in file names and in the 255-character `state` tag, so keep them tame.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_JOB_FIELDS = frozenset({"prompt", "images", "actions", "key"})
_MAX_REPORTED = 5


class InputError(InvalidRequestError):
    """The jobs file is malformed; the message names the file and line of each problem."""


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


def parse_actions(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"U1,U2"``, ``"all"`` (U1..U4) or a list of button names -> a tuple of names."""
    if text is None:
        return ()
    items: list[object] = list(text.split(",") if isinstance(text, str) else text)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            msg = f"an action must be a button name such as U1, got {item!r}"
            raise InvalidRequestError(msg)
        name = item.strip()
        if not name:
            continue
        if name.lower() == "all":
            names.extend(["U1", "U2", "U3", "U4"])
        elif name.lower() == "none":
            continue
        else:
            names.append(name.upper() if re.fullmatch(r"[uUvV][1-4]", name) else name)
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


def parse_jobs(
    lines: Iterable[str], *, name: str = "<input>", jsonl: bool | None = None
) -> list[Job]:
    """Jobs from the lines of a JSONL or plain-text input.

    *jsonl* None guesses: JSONL when the first non-blank, non-comment line starts
    with ``{``. In plain text every non-blank line not starting with ``#`` is a prompt.
    Identical lines without a key get ``-2``, ``-3``... suffixes so each is its own job.

    Raises:
        InputError: listing up to five problems with their line numbers.
    """
    jobs: list[Job] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    explicit_keys: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
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
            errors.append(str(error))
            continue
        if explicit:
            if job.key in explicit_keys:
                errors.append(
                    f"{where}: key {job.key!r} is already used on line {explicit_keys[job.key]}"
                )
                continue
            explicit_keys[job.key] = number
        else:
            count = seen.get(job.key, 0) + 1
            seen[job.key] = count
            if count > 1:
                job = attrs.evolve(job, key=f"{job.key}-{count}")
        jobs.append(job)
    if errors:
        more = len(errors) - _MAX_REPORTED
        listing = "; ".join(errors[:_MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")
        raise InputError(listing)
    if not jobs:
        raise InputError(f"{name}: no jobs (the file has no prompts)")
    return jobs


def load_jobs(path: str | Path) -> list[Job]:
    """Jobs from a file: ``.jsonl``/``.ndjson`` is JSONL, ``.txt`` plain, else guessed.

    Relative image paths are resolved against the file's directory.

    Raises:
        InputError: the file is missing, unreadable or malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None
    suffix = path.suffix.lower()
    jsonl = True if suffix in {".jsonl", ".ndjson"} else False if suffix == ".txt" else None
    jobs = parse_jobs(text.splitlines(), name=str(path), jsonl=jsonl)
    base = path.parent

    def resolve(image: str) -> str:
        if re.match(r"(?i)(https?:|data:)", image):
            return image
        candidate = Path(image).expanduser()
        return str(candidate if candidate.is_absolute() else (base / candidate).resolve())

    return [
        attrs.evolve(job, images=tuple(resolve(i) for i in job.images)) if job.images else job
        for job in jobs
    ]
