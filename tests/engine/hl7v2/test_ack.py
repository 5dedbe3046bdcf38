"""ACKs, enhanced-mode conditions and batches, checked field by field against HL7 v2.5 chapter 2."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.errors import ParseError
from engine.hl7v2 import parse
from engine.hl7v2.ack import build_ack, enhanced_modes, wants
from engine.hl7v2.batch import batch_ack, is_batch, split_batch

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
def message(m15: str = "", m16: str = "") -> str:
    return f"MSH|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124110000||ORU^R01^ORU_R01|CTRL-1|P|2.5.1|||{m15}|{m16}\rPID|1\r"


def fields(text: str, seg: str) -> list[str]:
    line = next(s for s in text.split("\r") if s.startswith(seg))
    return line.split("|")


def test_original_ack_swaps_sender_and_echoes() -> None:
    ack = build_ack(parse(message()), "AA", control_id="ACK1", now=NOW)
    msh = fields(ack, "MSH")
    # MSH-3..6 swapped, MSH-9 ACK^<trigger>^ACK, MSH-10 ours, MSH-11 echoed, MSH-12 echoed
    assert msh[2:6] == ["WASLA", "HUB", "LIS", "CHU-RABAT"]
    assert msh[8:12] == ["ACK^R01^ACK", "ACK1", "P", "2.5.1"]
    assert fields(ack, "MSA")[1:3] == ["AA", "CTRL-1"]
    assert "ERR" not in ack


def test_error_ack_has_err_with_table_0357_and_location() -> None:
    ack = build_ack(parse(message()), "AE", control_id="A", now=NOW, text="bad | value",
                    error_code="103", segment="PID", sequence=1, field=8)
    err = fields(ack, "ERR")
    assert err[2] == "PID^1^8" and err[3] == "103^Table value not found^HL70357" and err[4] == "E"
    assert err[8] == "bad \\F\\ value"  # our text is escaped, never splits a field


def test_frame_bytes_echoed_from_the_message_are_escaped() -> None:
    """A \\X1C\\ escape in MSH-9 unescapes to FS; echoed into the ACK it would end the MLLP frame early."""
    msg = parse("MSH|^~\\&|A|B|C|D|20261124||ADT^\\X1C\\|C1|P|2.5\r")
    ack = build_ack(msg, "AA", control_id="X", now=NOW)
    assert "\x1c" not in ack and "\x0b" not in ack


@pytest.mark.parametrize(("m15", "m16", "expected"), [
    ("", "", None), ("AL", "NE", ("AL", "NE")), ("", "AL", ("AL", "AL")), ("er", "su", ("ER", "SU")),
])
def test_enhanced_modes(m15: str, m16: str, expected: tuple[str, str] | None) -> None:
    assert enhanced_modes(parse(message(m15, m16))) == expected


@pytest.mark.parametrize(("condition", "code", "sent"), [
    ("AL", "CA", True), ("NE", "CA", False), ("NE", "CR", False), ("ER", "CA", False), ("ER", "CE", True),
    ("ER", "AR", True), ("SU", "AA", True), ("SU", "AE", False),
])
def test_table_0155_conditions(condition: str, code: str, sent: bool) -> None:
    assert wants(condition, code) is sent


BATCH = (b"FHS|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||||FILE-7\r"
         b"BHS|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||||BATCH-9\r"
         b"MSH|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||ORU^R01|M1|P|2.5\rPID|1\n"
         b"MSH|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||ORU^R01|M2|P|2.5\r\nPID|2\r"
         b"BTS|2\rFTS|1\r")


def test_split_batch_keeps_each_message_bytes() -> None:
    assert is_batch(BATCH) and not is_batch(b"MSH|^~\\&|")
    batch = split_batch(BATCH)
    assert batch.messages == [b"MSH|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||ORU^R01|M1|P|2.5\rPID|1\n",
                              b"MSH|^~\\&|LIS|CHU-RABAT|WASLA|HUB|20261124||ORU^R01|M2|P|2.5\r\nPID|2\r"]
    assert batch.declared == 2


def test_batch_ack_references_the_senders_batch() -> None:
    batch = split_batch(BATCH)
    acks = [build_ack(parse(m.decode()), "AA", control_id=f"A{i}", now=NOW) for i, m in enumerate(batch.messages)]
    text = batch_ack(batch, acks, control_id="OURS", now=NOW)
    segs = [s.split("|")[0] for s in text.strip("\r").split("\r")]
    assert segs == ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"]
    bhs = fields(text, "BHS")
    # BHS-3..6 swapped, BHS-11 our control id, BHS-12 the sender's BHS-11
    assert bhs[2:6] == ["WASLA", "HUB", "LIS", "CHU-RABAT"] and bhs[10:12] == ["OURS", "BATCH-9"]
    assert fields(text, "FHS")[11] == "FILE-7"
    assert fields(text, "BTS")[1] == "2"
    assert [f[2] for f in (s.split("|") for s in text.split("\r")) if f[0] == "MSA"] == ["M1", "M2"]


def test_segment_outside_a_message_is_an_error() -> None:
    with pytest.raises(ParseError, match="outside any message"):
        split_batch(b"BHS|^~\\&\rPID|1\rBTS|0\r")


class TestNoContentInErrors:
    """An AR/AE names the segment, its sequence, the field and what was expected; never a value."""

    def test_unreadable_line_is_located_by_sequence_only(self) -> None:
        """A wrapped line starting with a patient's name: ERR-2 is `^3` (third segment), not `DUP^3`."""
        text = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|C1|P|2.5\rPID|1||X\rDUPONT^JEAN\r"
        with pytest.raises(ParseError) as info:
            parse(text)
        e = info.value
        ack = build_ack(None, "AR", control_id="X", now=NOW, text=e.message, error_code=e.code,
                        segment=e.segment, sequence=e.sequence, field=e.field)
        err = fields(ack, "ERR")
        assert err[2] == "^3" and "DUP" not in ack and "JEAN" not in ack

    def test_a_segment_that_is_not_an_id_is_left_out(self) -> None:
        """Whatever a caller passes as the segment, only a segment id shape reaches ERR-2."""
        for bad in ("Dup", "DUPONT", "12A", "é&x"):
            ack = build_ack(None, "AR", control_id="X", now=NOW, segment=bad, sequence=4, field=5)
            assert fields(ack, "ERR")[2] == "^4^5" and bad not in ack
        assert fields(build_ack(None, "AR", control_id="X", now=NOW, segment="ZPI", sequence=4), "ERR")[2] == "ZPI^4"

    def test_error_text_is_bounded(self) -> None:
        """A reason quoting something long (an MSH-9 of 100 KB in a mapping error) is cut in the ACK."""
        ack = build_ack(parse(message()), "AE", control_id="X", now=NOW, text="unsupported type " + "Z" * 100_000)
        assert len(fields(ack, "ERR")[8]) <= 300

    def test_batch_line_outside_a_message_is_not_quoted(self) -> None:
        """A batch line outside any message is named by its number, not by its first characters."""
        with pytest.raises(ParseError) as info:
            split_batch(b"BHS|^~\\&\rDUPONT^JEAN\rBTS|0\r")
        assert info.value.sequence == 2 and info.value.segment is None and "DUP" not in info.value.message
