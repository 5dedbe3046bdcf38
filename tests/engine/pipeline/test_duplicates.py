"""Duplicates by content (issue 23): the same channel, MSH-4 and MSH-10 is a duplicate only with the
same content (segment terminators normalised, MSH-7 ignored); the same key with other content is a new
message flagged CONTROL_ID_REUSED. Through the real intake, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.config import load_config
from engine.fingerprint import content_fingerprint
from engine.ids import message_id
from engine.pipeline.intake import Intake, Receipt
from engine.runtime import make_converter, routes_of
from engine.store import Journal
from engine.store.journal import REUSED, KeyMatch
from engine.transport import open_transport
from engine.types import Inbound
from tests.engine.pipeline.conftest import Door
from tests.support import CORPUS, make_project

# The eleven messages of the public corpus that share MSH-4 GHHSFacility and MSH-10 MSG00001 (issue 23).
ELEVEN = ["ADT-A01-01", "ADT-A02-01", "ADT-A03-01", "ADT-A04-01", "ADT-A08-01", "ADT-A08-02", "ADT-A11-01",
          "ADT-A13-01", "ADT-A28-01", "ADT-A31-01", "VXU-V04-01"]


def corpus(name: str) -> bytes:
    """A corpus file as a sender puts it on the wire: segments ended by \\r."""
    return (CORPUS / f"{name}.hl7").read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def with_msh7(raw: bytes, stamp: bytes) -> bytes:
    return re.sub(rb"^((?:[^|\r]*\|){6})[^|\r]*", lambda m: m.group(1) + stamp, raw, count=1)


class TestFingerprint:
    def test_terminators_and_msh7_do_not_count(self) -> None:
        """\\r, \\n and \\r\\n, a trailing terminator, a BOM and another MSH-7 give the same fingerprint."""
        raw = corpus("ADT-A01-01")
        same = [raw.replace(b"\r", b"\n"), raw.replace(b"\r", b"\r\n"), raw.rstrip(b"\r"), raw + b"\r\r",
                b"\xef\xbb\xbf" + raw, with_msh7(raw, b"20261201101010+0100")]
        assert with_msh7(raw, b"2026") != raw
        assert {content_fingerprint(r) for r in same} == {content_fingerprint(raw)}

    def test_any_other_difference_counts(self) -> None:
        """Another MSH-6, another PID field or another message gives another fingerprint."""
        raw = corpus("ADT-A01-01")
        others = [raw.replace(b"GHHRFacility", b"GHHXFacility", 1), raw.replace(b"PID|", b"PID|1", 1),
                  corpus("ADT-A02-01")]
        assert all(o != raw for o in others)
        assert len({content_fingerprint(r) for r in [raw, *others]}) == 4

    def test_bytes_that_are_not_hl7(self) -> None:
        """JSON or garbage is fingerprinted by its bytes (terminators normalised)."""
        assert content_fingerprint(b'{"a":\r\n1}') == content_fingerprint(b'{"a":\n1}')
        assert content_fingerprint(b"MSH") != content_fingerprint(b"MSX")


class TestReusedControlIds:
    def test_the_eleven_corpus_messages_are_eleven_messages(self, door: Door) -> None:
        """Eleven corpus messages with one MSH-4 + MSH-10: eleven journaled and queued, ten flagged
        CONTROL_ID_REUSED (naming the first), none dropped, each answered with its own id."""
        receipts = [door.send(corpus(name)) for name in ELEVEN]
        assert all(r.accepted and r.duplicate_of is None for r in receipts)
        rows = door.rows()
        assert [r.id for r in rows] == [r.message_id for r in receipts]
        assert [r.message_type.split("^")[:2] for r in rows] == [n.split("-")[:2] for n in ELEVEN]
        first = rows[0]
        assert first.reused_of == "" and receipts[0].reused_of is None
        assert [r.reused_of for r in rows[1:]] == [first.id] * 10
        assert [r.reused_of for r in receipts[1:]] == [first.id] * 10
        assert all(r.status == "received" and r.duplicates == 0 for r in rows)
        assert {r.id for r in door.journal.messages.search(reused=True, limit=100)} == {r.id for r in rows[1:]}
        (received,) = [e for e in door.journal.messages.events(rows[5].id) if e["stage"] == "intake"]
        assert received["detail"] == {"peer": "127.0.0.1:1", "flag": REUSED, "reused_of": first.id}
        assert [e["status"] for e in door.journal.messages.events(first.id)] == ["received"]  # no duplicate event

    def test_the_same_message_resent_is_one_message(self, door: Door) -> None:
        """Byte-identical, with \\n for \\r, with \\r\\n, with another MSH-7: a duplicate each time (AA, the
        original's id, not queued), counted on the original with a `duplicate` event each."""
        raw = corpus("ADT-A08-01")
        original = door.send(raw)
        again = [raw, raw.replace(b"\r", b"\n"), raw.replace(b"\r", b"\r\n"), with_msh7(raw, b"20270101000000")]
        receipts = [door.send(r) for r in again]
        assert [(r.accepted, r.duplicate_of, r.message_id) for r in receipts] == [
            (True, original.message_id, original.message_id)] * 4
        (row,) = door.rows()
        assert (row.id, row.duplicates, row.reused_of) == (original.message_id, 4, "")
        events = door.journal.messages.events(row.id)
        assert [e["status"] for e in events] == ["received"] + ["duplicate"] * 4
        assert all(e["detail"]["peer"] == "127.0.0.1:1" for e in events[1:])
        assert [r.id for r in door.journal.messages.search(duplicated=True)] == [row.id]
        assert door.journal.messages.search(reused=True) == []

    def test_a_resend_matches_its_own_content_not_the_first(self, door: Door) -> None:
        """A, then B (reused), then B and A again: B's resend is B's duplicate, A's is A's."""
        a, b = door.send(corpus("ADT-A01-01")), door.send(corpus("ADT-A02-01"))
        assert b.reused_of == a.message_id
        assert door.send(corpus("ADT-A02-01")).duplicate_of == b.message_id
        assert door.send(corpus("ADT-A01-01")).duplicate_of == a.message_id
        assert [(r.duplicates, r.reused_of) for r in door.rows()] == [(1, ""), (1, a.message_id)]

    def test_one_group_commit_holding_both(self, door: Door) -> None:
        """Messages of one loop iteration share a transaction: within it the later ones still see the
        earlier ones (a copy is a duplicate, other content is flagged)."""
        raws = [corpus("ADT-A01-01"), corpus("ADT-A02-01"), corpus("ADT-A01-01").replace(b"\r", b"\n")]

        async def main() -> list[Receipt]:
            out = await asyncio.gather(*(door.intake.receive_async(door.channel, r) for r in raws))
            door.journal.db.flush_loop()
            return list(out)

        a, b, c = asyncio.run(main())
        assert b.reused_of == a.message_id and c.duplicate_of == a.message_id
        assert len(door.rows()) == 2

    def test_window_zero_checks_nothing(self, tmp_path: Path, store_url: str) -> None:
        """With duplicate_window_s: 0 every message is journaled, unflagged, copies included."""
        project = make_project(tmp_path)
        ch = project / "config" / "channels" / "adt-mllp.yaml"
        ch.write_text(ch.read_text().replace("    port:", "    duplicate_window_s: 0\n    port:"))
        config = load_config(project / "config", env={"WASLA_STORE_URL": store_url})
        journal = Journal(config.store.url)
        try:
            intake = Intake(journal, open_transport(config.broker, routes_of(config)), make_converter(config))
            intake.broker.declare()
            for name in ("ADT-A01-01", "ADT-A01-01", "ADT-A02-01"):
                assert intake.receive(config.channels[0], corpus(name)).duplicate_of is None
            rows = journal.messages.search(control_id="MSG00001")
            assert len(rows) == 3 and all(r.reused_of == "" and r.duplicates == 0 for r in rows)
        finally:
            journal.close()


class TestJournalCheck:
    def _inbound(self, raw: bytes, control_id: str = "K1") -> Inbound:
        return Inbound(message_id(), "ch", datetime.now(UTC), raw, "ADT^A01", control_id, "FAC")

    def _receive(self, j: Journal, raw: bytes, **kw: Any) -> KeyMatch | None:
        work = j.messages.receive_work(self._inbound(raw), duplicate_since=datetime.now(UTC) - timedelta(hours=1),
                              fingerprint=content_fingerprint(raw), **kw)
        return j.db.commit(work)  # type: ignore[no-any-return]

    def test_rows_from_before_fingerprints_compare_by_bytes(self, store_url: str) -> None:
        """A message journaled before migration 0009 (no fingerprint) is matched by its exact bytes:
        resent as is, a duplicate; with another MSH-7, new and flagged (its content is not known)."""
        j = Journal(store_url)
        try:
            raw = corpus("ADT-A01-01")
            assert self._receive(j, raw) is None
            j.db.commit(lambda cur: cur.execute("UPDATE messages SET fingerprint = ''"))
            (old,) = j.messages.search(control_id="K1")
            assert self._receive(j, raw) == KeyMatch(old.id, True)
            assert self._receive(j, with_msh7(raw, b"2027")) == KeyMatch(old.id, False)
        finally:
            j.close()

    def test_failed_at_intake_is_no_original(self, store_url: str) -> None:
        """A message refused at intake (the sender was told to resend) neither matches nor is reused."""
        j = Journal(store_url)
        try:
            raw = b"MSH|^~\\&|A|FAC|B|C|2026||ADT^A01|K1|P|2.5\rPID|1\r"
            j.messages.receive(Inbound(message_id(), "ch", datetime.now(UTC), raw, "ADT^A01", "K1", "FAC",
                                       status="failed", reason="pipeline unavailable"))
            assert self._receive(j, raw) is None
            assert self._receive(j, raw) is not None
        finally:
            j.close()

    def test_one_statement_on_postgresql(self, postgres_url: str) -> None:
        """On PostgreSQL a checked receive is one statement (one round trip) whether the message is new,
        reuses a control id or is a duplicate (its count and event included)."""
        j = Journal(postgres_url)
        statements: list[str] = []

        class Counting:
            def __init__(self, cur: Any) -> None:
                self.cur = cur

            def execute(self, sql: str, params: Any = None) -> Any:
                statements.append(sql)
                return self.cur.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.cur, name)

        try:
            since = datetime.now(UTC) - timedelta(hours=1)
            found = []
            for raw in (b"MSH|^~\\&|A|FAC|||1||ADT^A01|K1|P|2.5\rPID|1\r",
                        b"MSH|^~\\&|A|FAC|||1||ADT^A01|K1|P|2.5\rPID|2\r",
                        b"MSH|^~\\&|A|FAC|||2||ADT^A01|K1|P|2.5\nPID|2\n"):
                work = j.messages.receive_work(self._inbound(raw), duplicate_since=since,
                                               fingerprint=content_fingerprint(raw))
                found.append(j.db.commit(lambda cur, w=work: w(Counting(cur))))
            assert len(statements) == 3
            first, second = sorted(j.messages.search(control_id="K1"), key=lambda r: r.id)
            assert found == [None, KeyMatch(first.id, False), KeyMatch(second.id, True)]
            assert (second.reused_of, second.duplicates) == (first.id, 1)
        finally:
            j.close()


class TestOtherDoors:
    def test_fhir_bundles_by_identifier_and_content(self, door: Door) -> None:
        """A FHIR Bundle's identifier is its key: the same Bundle again is a duplicate, another Bundle
        with that identifier is a new message flagged CONTROL_ID_REUSED."""
        one = b'{"resourceType":"Bundle","type":"transaction","identifier":{"value":"TX-1"},"entry":[]}'
        two = one.replace(b'"entry":[]', b'"entry":[{"resource":{"resourceType":"Patient"}}]')

        async def send(raw: bytes) -> Receipt:
            return await door.intake.receive_fhir_async(door.channel, raw, resource_type="Bundle",
                                                        control_id="TX-1", client="his")

        a, b, c = (asyncio.run(send(r)) for r in (one, two, one))
        assert b.duplicate_of is None and b.reused_of == a.message_id
        assert c.duplicate_of == a.message_id
        assert [r.reused_of for r in door.rows("TX-1")] == ["", a.message_id]

    def test_csv_records_are_never_checked(self, door: Door) -> None:
        """CSV groups (receive_records) are each a message, even with one control id: no check, no flag."""
        receipts = door.intake.receive_records(door.channel, [(b"a;1\n", "R1"), (b"a;1\n", "R1"), (b"b;2\n", "R1")],
                                               message_type="CSV^LAB", sender="LAB")
        assert all(r.accepted and r.duplicate_of is None for r in receipts)
        rows = door.rows("R1")
        assert len(rows) == 3 and all(r.reused_of == "" and r.duplicates == 0 for r in rows)
