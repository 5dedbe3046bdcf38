"""Every pattern that reads message bytes, under input shaped to make it backtrack: long headers,
many separators, no terminators, a megabyte of `|` or `^`. Each shape must decode, parse and be
walked (header accessors, group tree, a batch split); how long each takes is measured in
bench/er7_adversarial.py, never asserted here. The MSH-18 regex this replaced took 14 s on the
16 KB header below, and minutes on the 1 MB one, which runs in a child process with a ceiling."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ParseError
from engine.hl7v2.batch import is_batch, split_batch
from engine.hl7v2.er7 import declared_charset, decode, parse

ROOT = Path(__file__).resolve().parents[3]
MB = 1 << 20
_HEAD = b"MSH|^~\\&"
#: What read MSH-18 before issue 23 (exponential on an MSH without an 18th field): the reference here.
_OLD_MSH18 = re.compile(rb"^MSH(.)(?:[^\r\n]*?\1){16}([^\r\n|^]*)")

#: name -> bytes. "fields-15+16K" is the old MSH-18 regex's worst case found (15 fields, no 18th, a long tail).
SHAPES: dict[str, bytes] = {
    "plain-adt": _HEAD + b"|APP|FAC|RCV|RFAC|20261103101500||ADT^A01^ADT_A01|C1|P|2.5\rPID|1||A1^^^H^MR||DOE^JOHN\r",
    "fields-15+16K": _HEAD + b"|a" * 14 + b"x" * 16_000,
    "fields-15+1M": _HEAD + b"|a" * 14 + b"x" * MB,
    "separators-16+64K": b"MSH" + b"|" * 16 + b"x" * 65_536,
    "pipes-1M": b"MSH" + b"|" * MB,
    "hats-1M": _HEAD + b"|" + b"^" * MB,
    "msh18-hats-1M": _HEAD + b"|" * 16 + b"^" * MB,
    "escapes-1M": _HEAD + b"|A|F|" + b"\\" * MB,
    "escape-unclosed-1M": _HEAD + b"|A|F|\\" + b"x" * MB,
    "no-terminator-1M": _HEAD + b"|A|F|" + b"x" * MB,
    "segments-100K": _HEAD + b"|A|F|||||ADT^A01|C|P|2.5" + b"\rZZZ|1" * 100_000,
    "line-ends-1M": _HEAD + b"|A|F" + b"\r" * MB,
    "tildes-1M": _HEAD + b"|A|F|||||ADT^A01|C|P|2.5\rPID|1||" + b"~" * MB,
    "batch-lines-1M": b"BHS|^~\\&" + b"\n" * MB,
}


def _walk(raw: bytes) -> None:
    text = decode(raw)
    try:
        msg = parse(text)
    except ParseError as exc:
        assert exc.code
        return
    for accessor in ("control_id", "message_type", "version", "sending_facility", "sending_application"):
        assert isinstance(getattr(msg, accessor), str)
    for seg in msg.segments[:50]:
        for n in range(len(seg) + 1):
            for field in seg.repetitions(n)[:50]:
                assert isinstance(field.component(1), str)
    try:
        msg.tree  # noqa: B018
    except ParseError as exc:
        assert exc.code


@pytest.mark.parametrize("name", [n for n in SHAPES if n != "fields-15+1M"])
def test_hostile_shape_decodes_parses_and_walks(name: str) -> None:
    """Each shape is read to the end: a Message every accessor can walk, or a ParseError with a code."""
    raw = SHAPES[name]
    _walk(raw)
    if is_batch(raw):
        assert isinstance(split_batch(raw).messages, list)


def test_megabyte_header_without_msh18_completes() -> None:
    """The old pattern's worst shape at 1 MB (minutes before) decodes in a child process that has a
    ceiling 100 times what it needs: a hang fails the test instead of hanging the suite."""
    script = ("from tests.engine.hl7v2.test_er7_adversarial import SHAPES, _walk\n"
              "_walk(SHAPES['fields-15+1M'])\nprint('done')\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]


class TestDeclaredCharset:
    """MSH-18 read by splitting reads what the pattern read, on ordinary headers."""

    @pytest.mark.parametrize(("header", "charset"), [
        (_HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA|UNICODE UTF-8\rPID|1", "UNICODE UTF-8"),
        (_HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA|8859/1|FR\r", "8859/1"),
        (_HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA|unicode utf-8^x~8859/1", "UNICODE UTF-8"),
        (b"\r\n  " + _HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA| 8859/15 ", "8859/15"),
        (b"MSH#$*@%#A#B#C#D#2026##ADT$A01#1#P#2.3#####MA#UNICODE UTF-8$X", "UNICODE UTF-8"),
        (_HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5\rZZZ|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|UTF-8", ""),
        (_HEAD + b"|A|B|C|D|20260101||ADT^A01|1|P|2.5||||||", ""),
        (b"PID|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|UTF-8", ""),
        (b"MSH|", ""),
    ])
    def test_msh18(self, header: bytes, charset: str) -> None:
        """The first component of the first repetition of MSH-18, on the MSH line only."""
        assert declared_charset(header) == charset

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.text(alphabet="AB8|^\r\n -", max_size=6), max_size=24))
    def test_same_as_the_old_pattern(self, fields: list[str]) -> None:
        """On headers small enough for the old pattern, both read the same MSH-18 (no `~` in these:
        the old pattern did not know MSH-18 repeats)."""
        raw = _HEAD + b"|" + "|".join(fields).encode()
        old = _OLD_MSH18.match(raw.lstrip())
        expected = old.group(2).decode("ascii", "replace").strip().upper() if old else ""
        assert declared_charset(raw) == expected
