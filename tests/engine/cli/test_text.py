"""No text from a message reaches the operator's terminal raw (issue 23): control characters in a
control id, a sender, a reason, an event or the body are shown escaped by every `wasla messages`
output, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.cli.text import json_printable, printable
from engine.config import load_config
from engine.ids import message_id
from engine.store import Journal
from engine.types import Inbound
from tests.support import make_project

CONTROL_ID = "AB\x1b[31mRED\rX"
SENDER = "FAC\x9b2J"
REASON = "bad \x1b]0;pwned\x07 title"
RAW = b"MSH|^~\\&|A|FAC\xc2\x9b2J|B|C|2026||ADT^A01|AB\x1b[31mRED|P|2.5\rPID|1||\x1b[2J\r"
# Nothing a terminal acts on: C0 but newline, DEL, C1.
FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


class TestPrintable:
    def test_every_control_character_is_shown_escaped(self) -> None:
        """C0, DEL, C1 and bidirectional overrides become visible escapes; other text is unchanged."""
        assert printable("a\x1b[31mb\rc\x00\x7f\x9b\u202ed\ne\tf") == "a\\x1b[31mb\\rc\\x00\\x7f\\x9b\\u202ed\\ne\\tf"
        assert printable("é ü ^~\\& وصلة") == "é ü ^~\\& وصلة"
        assert printable("one\ntwo\rthree", lines=True) == "one\ntwo\\rthree"

    def test_json_stays_json_with_the_same_value(self) -> None:
        """`json_printable` writes C1 and bidi controls as JSON escapes: still valid, same value."""
        value = {"id": "A\x1b\x9b\u202eB", "n": [1, "\x85"]}
        text = json_printable(orjson.dumps(value).decode())
        assert not FORBIDDEN.search(text) and "\u202e" not in text
        assert orjson.loads(text) == value


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> tuple[Path, str]:
    """A project whose journal holds one hostile message; returns (config dir, its id)."""
    root = make_project(tmp_path)
    config = load_config(root / "config", env={"WASLA_STORE_URL": store_url})
    j = Journal(config.store.url)
    try:
        mid = message_id()
        j.messages.receive(Inbound(mid, "adt-mllp", datetime.now(UTC), RAW, "ADT^A01\x1b[0m", CONTROL_ID, SENDER,
                          reason=REASON), {"peer": "x\x9b6n"})
        j.messages.event(mid, "transform", "failed", {"reason": "field PID-3 = \x1b[2J\x85"})
    finally:
        j.close()
    return root / "config", mid


def _run(project: tuple[Path, str], store_url: str, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(project[0])], env={"WASLA_STORE_URL": store_url})
    assert not FORBIDDEN.search(result.output), repr(result.output)
    return result


def test_search_escapes_control_ids_senders_and_reasons(project: tuple[Path, str], store_url: str) -> None:
    """`wasla messages search` prints the ESC and the CR of a control id as \\x1b and \\r."""
    result = _run(project, store_url, "messages", "search")
    assert result.exit_code == 0, result.output
    assert "AB\\x1b[31mRED\\rX" in result.output and "\\x1b]0;pwned\\x07" in result.output


def test_show_escapes_every_line_and_the_raw_body(project: tuple[Path, str], store_url: str) -> None:
    """`wasla messages show --raw` escapes the header, the events and the body (segments still one a line)."""
    result = _run(project, store_url, "messages", "show", project[1], "--raw", "--by", "test")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "control id AB\\x1b[31mRED\\rX" in out and "sender FAC\\x9b2J" in out
    assert "\\x1b]0;pwned\\x07" in out and "ADT^A01\\x1b[0m" in out
    assert "\\u001b[2J\\x85" in out  # the event's JSON escapes C0 itself, the C1 is escaped here
    assert "x\\x9b6n" in out
    assert "MSH|^~\\&|A|FAC\\x9b2J" in out and "\nPID|1||\\x1b[2J\n" in out


def test_errors_quoting_input_are_escaped(project: tuple[Path, str], store_url: str) -> None:
    """An error naming what it was given (here an unknown id) escapes it too."""
    result = _run(project, store_url, "messages", "show", "nope\x1b[2J")
    assert result.exit_code == 1 and "no message nope\\x1b[2J" in result.output
