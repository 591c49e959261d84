"""The ``speedups`` extra (#11): orjson parses poll answers and webhook bodies when it is
installed, and every result is the one the stdlib's json gives.

CI installs the extra (``dev`` includes it), so the orjson path runs in the rest of the
suite; here both parsers run side by side, the stdlib one forced through
`mjasync._json.use_json_parser`, and a child interpreter checks the fallback when
orjson cannot be imported at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from _fakeproxy import FakeProxy
from _shared import in_ci
from hypothesis import given, settings
from hypothesis import strategies as st

import mjasync
from mjasync import _json
from mjasync.testing import VirtualClock, task_payload

try:
    import orjson  # noqa: F401
except ImportError:
    if in_ci():  # CI installs the dev extra, speedups included: both parsers must be tested
        raise
    pytest.skip("the speedups extra is not installed", allow_module_level=True)

PAYLOADS = pathlib.Path(__file__).parent / "payloads"
CORPUS = sorted(p for p in PAYLOADS.rglob("*") if p.is_file())
PARSERS = ("orjson", "json")


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once with each parser, and restore orjson after it."""
    _json.use_json_parser(request.param)
    try:
        yield request.param
    finally:
        _json.use_json_parser("orjson")


def parse_with(parser: str, content: bytes | str) -> tuple[Any, bool]:
    _json.use_json_parser(parser)
    try:
        return _json.try_json(content)
    finally:
        _json.use_json_parser("orjson")


def same(a: object, b: object) -> bool:
    """Equal with types: ``1``, ``1.0`` and ``True`` differ, NaN equals NaN, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def assert_same_both_ways(content: bytes | str) -> None:
    fast = parse_with("orjson", content)
    slow = parse_with("json", content)
    assert fast[1] == slow[1], content[:80]
    assert same(fast[0], slow[0]), content[:80]


def test_the_extra_is_used_when_installed() -> None:
    """With orjson importable the parser is orjson, and it can be switched both ways."""
    assert _json.json_parser() == "orjson"
    _json.use_json_parser("json")
    try:
        assert _json.json_parser() == "json"
    finally:
        _json.use_json_parser("orjson")
    with pytest.raises(ValueError, match="parser must be"):
        _json.use_json_parser("simdjson")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(PAYLOADS)))
def test_payload_corpus_parses_identically(path: pathlib.Path) -> None:
    """Every captured and hand-written payload gives the same value (and types) both ways."""
    content = path.read_bytes()
    assert_same_both_ways(content)
    assert_same_both_ways(content.decode("utf-8", "replace"))
    # A batch answer of many of them, as list-by-condition sends it.
    value, parsed = parse_with("json", content)
    if parsed:
        assert_same_both_ways(json.dumps([value] * 3, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "content",
    [
        b'{"id": 123456789012345678901}',  # past 64 bits: orjson would give a float
        b'{"id": -9223372036854775809}',  # below int64
        b'{"id": 18446744073709551615, "n": -9223372036854775808}',  # the widest it keeps
        b'{"url": "https://cdn.discordapp.com/attachments/1119163227929595955/a-1.png"}',
        b'{"progress": NaN, "x": Infinity, "y": -Infinity}',  # the stdlib accepts these
        b'\xef\xbb\xbf{"id": "1"}',  # a UTF-8 BOM: the stdlib's bytes path strips it
        '\ufeff{"id": "1"}',  # a BOM in text: refused by both
        b'{"prompt": "\\ud83d"}',  # a lone surrogate escape
        b'{"prompt": "\xff"}',  # not UTF-8
        '{"a": "\x01"}',  # a raw control character
        b'{"a": 1, "a": 2}',  # a duplicate key: the last wins
        b"  [1, 2.5, -0.0, 1e400, 0.1e-400]  ",
        b'"\\u2028"',
        b"",
        b"   ",
        b'{"a": 1} x',
        b"[" * 200 + b"]" * 200,
        b"[" * 2000 + b"]" * 2000,  # too deep for either
        '{"prompt": "一只狐狸 🦊"}'.encode(),
        '{"prompt": "一只狐狸 🦊"}'.encode("utf-16"),
    ],
)
def test_edge_cases_parse_identically(content: bytes | str) -> None:
    """What orjson refuses or reads differently is decided by the stdlib's json."""
    assert_same_both_ways(content)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_any_json_parses_identically(value: object, ascii_only: bool, indent: int | None) -> None:
    """Any value json.dumps can write (NaN, wide ints, surrogates included) reads the same."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert_same_both_ways(text)
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate is no UTF-8 at all
        assert_same_both_ways(text.encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=64))
def test_any_bytes_parse_identically(content: bytes) -> None:
    """Arbitrary bytes: both parsers accept or refuse them alike."""
    assert_same_both_ways(content)


async def test_polling_and_webhooks_work_with_either_parser(
    parser: str, clock: VirtualClock
) -> None:
    """The poller's batch answers and a webhook body decode the same with each parser."""
    assert _json.json_parser() == parser
    proxy = FakeProxy(clock=clock)
    proxy.set("1748339029401123", "IN_PROGRESS", "40%")
    async with mjasync.Client(
        "http://mj.test", "key", transport=proxy.transport, clock=clock, notify_hook="http://h/x"
    ) as mj:
        seen: list[tuple[str, int | None]] = []
        waiting = asyncio.ensure_future(
            mj.await_task(
                "1748339029401123", on_progress=lambda t: seen.append((t.status, t.progress))
            )
        )
        await clock.advance(1)
        proxy.set("1748339029401123", "SUCCESS")
        task = await clock.run(waiting)
        assert task.status == "SUCCESS"
        assert task.buttons
        body = json.dumps(task_payload("1748339029401999", "FAILURE", failReason="x")).encode()
        result = await mj.handle_notification(body, token=mj.notify_token)
        assert result.status == 200
        assert result.task is not None
        assert result.task.status == "FAILURE"
        refused = await mj.handle_notification(b"{not json", token=mj.notify_token)
        assert refused.status == 400
    assert seen == [("IN_PROGRESS", 40), ("SUCCESS", 100)]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def test_without_orjson_the_stdlib_parses() -> None:
    """When orjson cannot be imported, mjasync imports, parses and polls with json alone."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["orjson"] = None  # what an interpreter without the extra sees
        from mjasync import _json
        assert _json.json_parser() == "json", _json.json_parser()
        assert _json.try_json(b'{"id": 123456789012345678901}') == (
            {"id": 123456789012345678901}, True)
        assert _json.try_json(b"{nope") == (None, False)
        try:
            _json.use_json_parser("orjson")
        except ValueError as error:
            assert "speedups" in str(error)
        else:
            raise AssertionError("orjson was accepted without being installed")
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
