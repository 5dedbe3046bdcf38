"""Messages on SQLite and PostgreSQL: lifecycle, failures, NUL-bearing fields, head reads."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ids import message_id
from engine.store import Journal
from engine.types import Inbound, Status
from tests.engine.store.support import inbound


class TestMessages:
    """Received, transformed, delivered or failed: the message and its events."""

    def test_lifecycle(self, store_url: str) -> None:
        """received → transformed (one pending output per destination) → delivered when all outputs are."""
        j = Journal(store_url)
        try:
            msg = inbound()
            j.messages.receive(msg)
            j.outputs.transformed(msg.id, {"a": b"{}", "b": b"{}"})
            assert [r.id for r in j.messages.unfinished()] == [msg.id]
            assert j.outputs.delivered(msg.id, "a", "loc-a") is False
            assert j.messages.get(msg.id).status == Status.TRANSFORMED
            assert j.outputs.delivered(msg.id, "b", "loc-b") is True
            assert j.messages.get(msg.id).status == Status.DELIVERED
            assert list(j.messages.unfinished()) == []
            assert [e["status"] for e in j.messages.events(msg.id)] == ["received", "transformed", "delivered",
                                                                        "delivered"]
        finally:
            j.close()

    def test_failed_keeps_reason(self, store_url: str) -> None:
        """A failed message keeps its stage and reason and is searchable by status."""
        j = Journal(store_url)
        try:
            msg = inbound()
            j.messages.receive(msg)
            j.messages.failed(msg.id, "transform", "rule PID-7 at PID-7: expected a valid calendar date")
            (row,) = j.messages.search(status="failed")
            assert (row.id, row.stage, row.reason) == (msg.id, "transform",
                                                       "rule PID-7 at PID-7: expected a valid calendar date")
        finally:
            j.close()

    def test_a_nul_in_a_message_field_is_written_not_refused_for_ever(self, store_url: str) -> None:
        """PostgreSQL text and jsonb refuse NUL; a sender's MSH-10 can hold one. Refused, intake's
        commit failed at every resend and a transform batch was held for ever. It is written as
        U+FFFD in PostgreSQL's text and in JSON details (SQLite's text keeps it); the raw bytes keep it."""
        j = Journal(store_url)
        try:
            kept = "\x00" if store_url.startswith("sqlite") else "\ufffd"
            msg = Inbound(message_id(), "c", datetime.now(UTC), b"MSH|^~\\&|\x00", "ADT^A01", "C\x001", "F\x00", "pk")
            j.messages.receive(msg)
            j.outputs.transformed_many([(msg.id, {"out": b"{}"},
                                         {"warnings": [{"local_code": "A\x00B", "note": "q\\u0000"}]})])
            j.messages.failed(msg.id, "deliver", "server said \x00")
            row = j.messages.get(msg.id)
            assert row is not None and (row.control_id, row.sender, row.reason) == (
                f"C{kept}1", f"F{kept}", f"server said {kept}")
            assert row.raw == b"MSH|^~\\&|\x00"
            (warned,) = [e for e in j.messages.events(msg.id) if e["status"] == Status.TRANSFORMED]
            assert warned["detail"]["warnings"] == [{"local_code": "A\ufffdB", "note": "q\\u0000"}]  # JSON: both stores
        finally:
            j.close()


class TestHeadReads:
    def test_a_head_read_gives_the_first_bytes_and_the_whole_size(self, store_url: str, monkeypatch: object) -> None:
        """`head` and `output(limit=)`: what a page shows of a large body, sealed or not, without the rest."""
        import base64
        import os

        for key in (None, base64.b64encode(os.urandom(32)).decode()):
            if key:
                monkeypatch.setenv("WASLA_JOURNAL_KEY", key)  # type: ignore[attr-defined]
            j = Journal(store_url)
            raw = b"MSH|^~\\&|HIS|CHU\r" + b"".join(b"ZBN|%07d\r" % n for n in range(200_000))
            msg = inbound(raw=raw)
            j.messages.receive(msg)
            bundle = b'{"resourceType":"Bundle","entry":[' + b",".join(b'{"n":%d}' % n for n in range(100_000)) + b"]}"
            j.outputs.transformed(msg.id, {"fhir": bundle})
            row = j.messages.head(msg.id, 1000)
            assert row is not None and row.raw == raw[:1000] and row.size == len(raw)
            assert j.messages.head(msg.id, len(raw) + 1).raw == raw  # type: ignore[union-attr]
            assert j.outputs.get(msg.id, "fhir", 500).body == bundle[:500]  # type: ignore[union-attr]
            assert j.outputs.get(msg.id, "fhir").body == bundle  # type: ignore[union-attr]
            assert j.messages.head("no-such-message", 10) is None
            j.close()
