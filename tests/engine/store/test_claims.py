"""The journal's claims tables on SQLite and PostgreSQL: keys lead to one claim, a message applied twice
changes nothing, a later message's resource wins, one writer per claim, operators' requests, answers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from engine.store import Journal
from engine.store.claims import Decision

T0 = datetime(2026, 11, 3, 10, tzinfo=UTC)


def _part(n: int, note: str = "") -> tuple[str, bytes]:
    return (f"ChargeItem/{n}", orjson.dumps({"resource": {"resourceType": "ChargeItem", "id": str(n), "note": note}}))


@pytest.fixture
def journal(store_url: str):  # type: ignore[no-untyped-def]
    j = Journal(store_url)
    yield j
    j.close()


def test_any_key_leads_to_the_claim_and_new_keys_are_linked(journal: Journal) -> None:
    """Any key leads to the claim and new keys are linked."""
    row, changed = journal.claims.apply("d", ["visit:V1"], "c1", [_part(1)], message_id="m1", received_at=T0)
    assert changed and row.id == "c1" and row.status == "open" and not row.closed
    row, _ = journal.claims.apply("d", ["visit:V1", "account:A1"], "c2", [_part(2)], message_id="m2", received_at=T0)
    assert row.id == "c1"
    row, _ = journal.claims.apply("d", ["account:A1"], "c3", [_part(3)], message_id="m3", received_at=T0)
    assert row.id == "c1" and len(journal.claims.parts("c1")) == 3
    other, _ = journal.claims.apply("e", ["visit:V1"], "c9", [_part(1)], message_id="m4", received_at=T0)
    assert other.id == "c9"  # another claims destination keeps its own claims


def test_a_message_applied_twice_changes_nothing_and_an_older_one_never_overwrites(journal: Journal) -> None:
    """A message applied twice changes nothing and an older one never overwrites."""
    journal.claims.apply("d", ["visit:V1"], "c1", [_part(1, "new")], message_id="m2", received_at=T0)
    _, changed = journal.claims.apply("d", ["visit:V1"], "c1", [_part(1, "new")], message_id="m2", received_at=T0)
    assert not changed
    _, changed = journal.claims.apply("d", ["visit:V1"], "c1", [_part(1, "old")], message_id="m1",
                                      received_at=T0 - timedelta(hours=1))
    assert not changed and journal.claims.parts("c1")[0]["resource"]["note"] == "new"
    _, changed = journal.claims.apply("d", ["visit:V1"], "c1", [_part(1, "newer")], message_id="m3",
                                      received_at=T0 + timedelta(hours=1))
    assert changed and journal.claims.parts("c1")[0]["resource"]["note"] == "newer"


def test_closing_happens_once_and_records_the_event(journal: Journal) -> None:
    """Closing happens once and records the event."""
    row, _ = journal.claims.apply("d", ["visit:V1"], "c1", [], message_id="m1", received_at=T0, close="ADT^A03")
    assert row.closed and row.status == "closed" and row.close_reason == "ADT^A03"
    assert not journal.claims.close("c1", "quiet")
    assert [r.id for r in journal.claims.pending("d")] == ["c1"]


def test_decisions_are_written_with_the_row_held_one_writer_at_a_time(journal: Journal, store_url: str) -> None:
    """Two journals on one database, as two worker processes have (each its own writer: one process's group
    commit cannot be what serialises them): each decision sees the version the one before wrote."""
    other = Journal(store_url)
    try:
        journal.claims.apply("d", ["visit:V1"], "c1", [_part(1)], message_id="m1", received_at=T0, close="ADT^A03")
        inside = []
        lock = threading.Lock()

        def decide(row, parts):  # type: ignore[no-untyped-def]
            with lock:
                inside.append(row.version)
            return Decision("submitted", "CNSS", "50.00", 1, content_sha=f"sha{row.version}", message_id="x",
                            version=row.version + 1)

        threads = [threading.Thread(target=j.claims.decide, args=("c1", decide)) for j in (journal, other) * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(inside) == [0, 1, 2, 3]  # each saw the version the one before wrote: none interleaved
        row = journal.claims.get("c1")
        assert row is not None and row.version == 4 and row.status == "submitted" and row.total == "50.00"
    finally:
        other.close()


def test_requests_answers_and_searches(journal: Journal) -> None:
    """Requests answers and searches."""
    journal.claims.apply("d", ["visit:V1"], "c1abc", [_part(1)], message_id="m1", received_at=T0)
    assert journal.claims.request("c1abc", "close") and not journal.claims.request("nope", "close")
    assert [r.requested for r in journal.claims.pending("d")] == ["close"]
    journal.claims.decide("c1abc", lambda row, parts: None)  # nothing decided: the request is cleared anyway
    assert journal.claims.pending("d") == []
    assert not journal.claims.respond("d", "c1abc", "accepted", "m9")  # never sent: no answer can accept it
    journal.claims.decide("c1abc", lambda row, parts: Decision("submitted", content_sha="s", message_id="x",
                                                               version=1))
    assert not journal.claims.respond("e", "c1abc", "accepted", "m9")  # another claims stage's answer
    assert journal.claims.respond("d", "c1abc", "accepted", "m9")
    row = journal.claims.get("c1abc")
    assert row is not None and row.status == "accepted" and row.response_id == "m9"
    assert [r.id for r in journal.claims.find("c1a")] == ["c1abc"] and journal.claims.find("%") == []
    assert [r.id for r in journal.claims.search(statuses=("accepted",))] == ["c1abc"]
    assert journal.claims.search(statuses=("parked",)) == []
    assert journal.claims.quiet("d", T0 + timedelta(days=3650)) == []  # accepted, not open
