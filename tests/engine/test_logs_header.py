"""Values from a message header in log lines (issue 23): a mutated frame put 100 KB, an address and a
phone number in MSH-10. Such a value is logged only when it is shaped like what it claims to be and
short; otherwise a marker with its length."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from engine.logs import header_fields, header_value
from tests.support import adt, engine, make_project, mllp_read, msa, port_of

ADDRESS = "12 RUE DES ORANGERS 20000 CASABLANCA TEL 0612345678 "


class TestHeaderValue:
    @pytest.mark.parametrize(("key", "value"), [
        ("control_id", "MSG00001"), ("control_id", "20261201101500.123-7"), ("control_id", "a1b2:c3/d4#5+6_7"),
        ("type", "ADT^A01"), ("message_type", "ORU^R01^ORU_R01"), ("type", "FHIR^Patient"),
        ("type", "CSV^lab_results"), ("sender", "CHU IBN SINA"), ("sending_facility", "LAB-01"),
    ])
    def test_ordinary_values_pass(self, key: str, value: str) -> None:
        """Control ids, message types and facility names as senders write them are logged as they are."""
        assert header_value(key, value) == value

    @pytest.mark.parametrize(("key", "value"), [
        ("control_id", "X" * 65), ("control_id", ADDRESS), ("control_id", "ID\x1b[31mRED"), ("control_id", "a b"),
        ("control_id", "jean@example.ma"), ("type", "ADT^A01^ADT_A01^X"), ("type", "ADT A01"),
        ("message_type", "ADT^A01\r\nPID"), ("sender", "CHU\nINJECTED"), ("control_id", "DUPONT\u202eJEAN"),
    ])
    def test_anything_else_is_a_marker(self, key: str, value: str) -> None:
        """Too long, spaces, control characters, an e-mail, a wrong shape: `<invalid: N chars>`, nothing else."""
        assert header_value(key, value) == f"<invalid: {len(value)} chars>"

    def test_other_keys_and_empty_values_pass_unchanged(self) -> None:
        """Only header keys are judged; '' and non-strings are left alone."""
        event = {"event": "x", "channel": "lab central", "size": 10 ** 6, "control_id": "", "type": None,
                 "message_id": "018f-ab"}
        assert header_fields(None, "info", dict(event)) == event


def test_a_100kb_msh10_is_a_short_field_in_the_engine_log(tmp_path: Path) -> None:
    """A real engine takes a message whose MSH-10 is 100 KB of an address and a phone number: it is
    answered, and no line of the log holds the value, a part of it, or any line over 2 KB."""
    project = make_project(tmp_path)
    hostile = (ADDRESS * (100_000 // len(ADDRESS) + 1))[:100_000]
    raw = adt("HOSTILE-ID").replace(b"|HOSTILE-ID|", b"|" + hostile.encode() + b"|")
    with engine(project) as proc, socket.create_connection(("127.0.0.1", port_of(project)), timeout=30) as s:
        s.sendall(b"\x0b" + raw + b"\x1c\r")
        assert msa(mllp_read(s))[1] == "AA"
        s.sendall(b"\x0b" + raw.replace(b"ADT^A01", b"ADT^A01\x1b[2J" + b"^" * 50, 1) + b"\x1c\r")
        assert msa(mllp_read(s))[1] in ("AA", "AE", "AR")
    log = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    received = [e for e in lines if e["event"] == "received"]
    assert len(received) == 2
    assert {e["control_id"] for e in received} == {"<invalid: 100000 chars>"}
    assert max(len(line) for line in log.splitlines()) < 2000
    assert "ORANGERS" not in log and "0612345678" not in log and not re.search(r"\x1b|\\u001b", log)
