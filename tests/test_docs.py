"""The documentation stays true: reference pages cover the public API, links resolve, and
the troubleshooting page quotes the messages the code really produces.

The site itself is built by ``mkdocs build --strict`` in CI (.ci/run); these checks need
no MkDocs and run in well under a second.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable
from pathlib import Path
from types import ModuleType

import pytest
from _shared import FAST_POLL

import mjasync
import mjasync.bulk
import mjasync.simulator
import mjasync.testing
from mjasync.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.mark.parametrize(
    "module", [mjasync, mjasync.bulk, mjasync.simulator, mjasync.testing], ids=lambda m: m.__name__
)
def test_every_public_name_has_a_reference_entry(module: ModuleType) -> None:
    """Each name in a public module's ``__all__`` is rendered by a ``::: module.Name`` line."""
    directives = set(
        re.findall(
            r"^::: ([\w.]+)\s*$",
            "\n".join(p.read_text("utf-8") for p in (DOCS / "reference").glob("*.md")),
            re.M,
        )
    )
    missing = [
        name
        for name in module.__all__
        if name != "__version__" and f"{module.__name__}.{name}" not in directives
    ]
    assert missing == [], f"add these to a page in docs/reference/: {missing}"


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text("utf-8"), flags=re.S)
    return [
        target
        for target in re.findall(r"\]\(([^)\s]+)\)", text)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


def test_readme_links_resolve() -> None:
    """Every relative link in README.md points at a file of the repository (as on GitHub)."""
    links = _relative_links(ROOT / "README.md")
    assert links, "README.md links to the docs pages"
    broken = [link for link in links if not (ROOT / link.split("#")[0]).is_file()]
    assert broken == []


def _section(text: str, heading: str) -> str:
    """The text under *heading* (a whole line, e.g. ``## Quickstart``) up to the next
    heading of the same or a higher level, fenced code skipped when looking."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start:end]).strip()
    return "\n".join(lines[start:]).strip()


def test_docs_copies_of_the_readme_match() -> None:
    """The site repeats the README's pitch, set-up and quickstart word for word (GitHub shows
    docs/*.md as they are, so they are copies rather than includes): edit both."""
    readme = (ROOT / "README.md").read_text("utf-8")
    started = (DOCS / "getting-started.md").read_text("utf-8")
    for heading in ("## Set-up: two commands", "## Quickstart"):
        assert _section(started, heading) == _section(readme, heading), heading
    index = (DOCS / "index.md").read_text("utf-8")
    pitch = _section(index, "# mjasync").split("\n## Install")[0].strip()
    assert pitch == _section(readme, "# mjasync").split("\n## ")[0].strip()


_LIST_ITEM = re.compile(r"^ *([-*+]|\d+\.) ")


def _site_sources() -> list[Path]:
    """Every Markdown file the site renders, included ones too."""
    return [
        *sorted(DOCS.rglob("*.md")),
        *(ROOT / p for p in ("README.md", "CHANGELOG.md")),
        ROOT / "benchmarks" / "README.md",
    ]


def test_lists_render_the_same_on_the_site_and_on_github() -> None:
    """Python-Markdown (the site) needs what GitHub does not: four-space nested list items
    and blocks, and a blank line before a list; without them a list silently falls apart."""
    problems = []
    for path in _site_sources():
        previous, fenced = "", False
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not fenced:
                where = f"{path.relative_to(ROOT)}:{number}"
                if re.match(r"^ {1,3}[-*+] ", line):
                    problems.append(f"{where}: indent a nested list item by 4 spaces")
                elif re.match(r"^ {1,3}\S", line) and not previous.strip():
                    problems.append(f"{where}: indent a list item's next block by 4 spaces")
                elif (
                    _LIST_ITEM.match(line)
                    and previous.strip()
                    and not _LIST_ITEM.match(previous)
                    and not previous.startswith(" ")
                ):
                    problems.append(f"{where}: put a blank line before the list")
            if line.lstrip().startswith("```"):
                fenced = not fenced
            previous = line
    assert problems == []


# Parts of a message that change from run to run: the port, task ids, new-api's request id,
# a wait's length and last status.
_VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\('127\.0\.0\.1', \d+\)"), "('127.0.0.1', PORT)"),
    (re.compile(r"\b\d{12,}\b"), "ID"),
    (re.compile(r"request id: [^)]*"), "request id: X"),
    (re.compile(r"within [\d.]+ s \(last status \w+\)"), "within N s (last status S)"),
]


def _normal(message: str) -> str:
    for pattern, replacement in _VOLATILE:
        message = pattern.sub(replacement, message)
    return message


async def _error_of(call: Awaitable[object]) -> str:
    with pytest.raises(mjasync.MJError) as info:
        await call
    return str(info.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _real_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Provoke each situation the troubleshooting page describes; return the messages."""
    messages = []
    for dialect, auth, key in [
        ("oss", "bearer", "right"),
        ("trueai", "bearer", "right"),
        ("newapi", "bearer", "wrong"),
        ("oss", "bearer", None),
    ]:
        async with (
            Simulator(dialect=dialect, api_key="right", time_scale=0.01) as sim,
            mjasync.Client(sim.base_url, key, auth=auth) as mj,
        ):
            messages.append(await _error_of(mj.imagine("a cat")))
    # A base URL with a path the proxy does not have; a route new-api does not relay.
    for dialect, path, call in [("plus", "/api", "imagine"), ("newapi", "", "cancel")]:
        async with (
            Simulator(dialect=dialect, time_scale=0.01) as sim,
            mjasync.Client(sim.base_url + path, "k") as mj,
        ):
            target = mj.imagine("a cat") if call == "imagine" else mj.cancel("123")
            messages.append(await _error_of(target))
    with pytest.raises(mjasync.InvalidRequestError) as no_base:
        mjasync.Client(None, "k")
    messages.append(str(no_base.value))
    port = _free_port()
    retry = mjasync.RetryPolicy(attempts=1)
    async with mjasync.Client(f"http://127.0.0.1:{port}", "k", retry=retry) as mj:
        messages.append(await _error_of(mj.imagine("a cat")))
    # One slot and a queue of one: the third submit finds the queue full.
    for dialect, key, auth in [("plus", "k", "bearer"), ("trueai", None, "authorization")]:
        async with (
            Simulator(dialect=dialect, time_scale=1.0, slots=1, queue_size=1) as sim,
            mjasync.Client(sim.base_url, key, auth=auth, queue_full_wait=0) as mj,
        ):
            await mj.imagine("one")
            await mj.imagine("two")
            messages.append(await _error_of(mj.imagine("three")))
    async with (
        Simulator(dialect="plus", time_scale=1.0) as sim,
        mjasync.Client(sim.base_url, "k", poll=FAST_POLL) as mj,
    ):
        sub = await mj.imagine("a cat")
        messages.append(await _error_of(mj.await_task(sub, timeout=0.05)))
        messages.append(await _error_of(mj.fetch("nope")))
    # notifyHook set, but the server never calls it.
    async with (
        Simulator(dialect="plus", time_scale=0.001, notify=False) as sim,
        mjasync.Client(
            sim.base_url, "k", poll=FAST_POLL, notify_hook="http://127.0.0.1:9/hook"
        ) as mj,
    ):
        with caplog.at_level(logging.WARNING, logger="mjasync"):
            for prompt in ("one", "two", "three"):
                await mj.await_task(await mj.imagine(prompt))
        messages.extend(r.getMessage() for r in caplog.records if "notify_hook" in r.getMessage())
    return messages


async def test_troubleshooting_quotes_the_real_messages(caplog: pytest.LogCaptureFixture) -> None:
    """Each ```text block of troubleshooting.md is a message the code produces, and back."""
    page = (DOCS / "troubleshooting.md").read_text("utf-8")
    quoted = {_normal(block.strip()) for block in re.findall(r"```text\n(.*?)```", page, re.S)}
    real = {_normal(message) for message in await _real_messages(caplog)}
    assert real - quoted == set(), "messages changed: update docs/troubleshooting.md"
    assert quoted - real == set(), "the page quotes messages no check produces"
