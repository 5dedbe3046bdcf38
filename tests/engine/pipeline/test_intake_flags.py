"""What decode could not honour reaches the operator (issue 23): declared UTF-8 that is not, NUL bytes.
The message is kept and read as before; its intake event says so. Real intake, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.hl7v2 import decode, parse
from tests.engine.pipeline.conftest import Door
from tests.support import adt

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def utf8_declared(control_id: str, family: bytes) -> bytes:
    return (b"MSH|^~\\&|LAB|FAC|WASLA|HUB|20261201101500||ADT^A01^ADT_A01|" + control_id.encode()
            + b"|P|2.5|||||MA|UNICODE UTF-8\rEVN|A01|20261201101500\rPID|1||4711^^^FAC^MR||" + family
            + b"^ALI||19800101|M\rPV1|1|I\r")


def test_declared_utf8_that_does_not_decode_is_flagged(door: Door) -> None:
    """MSH-18 UNICODE UTF-8 over a Latin-1 byte: accepted, read as Latin-1 as before, the exact bytes kept,
    and the intake event flagged ENCODING_MISMATCH."""
    raw = utf8_declared("ENC-1", "SAL\xc9".encode("latin-1"))
    receipt = door.send(raw)
    assert receipt.accepted and receipt.message is not None
    assert receipt.message.first("PID").field(5).component(1) == "SALÉ"  # type: ignore[union-attr]
    assert door.received(receipt)["flags"] == ["ENCODING_MISMATCH"]
    stored = door.journal.messages.get(receipt.message_id)
    assert stored is not None and stored.raw == raw


def test_nul_bytes_are_flagged_and_never_reach_fhir(door: Door) -> None:
    """NUL bytes in a name: the message is accepted and flagged NUL_REMOVED, and the FHIR Bundle made
    from it (the transform decodes the same way) holds no NUL."""
    raw = utf8_declared("NUL-1", b"SA\x00LE\x00")
    receipt = door.send(raw)
    assert receipt.accepted and door.received(receipt)["flags"] == ["NUL_REMOVED"]
    bundle = door.converter.convert(door.channel.mapping, parse(decode(raw)), NOW).bundle
    assert b"\\u0000" not in bundle and b"\x00" not in bundle and b"SALE" in bundle


def test_a_clean_message_has_no_flags(door: Door) -> None:
    """An ordinary message's intake event carries no flags."""
    receipt = door.send(adt("CLEAN-1"))
    assert receipt.accepted and "flags" not in door.received(receipt)
