"""Message search on SQLite and PostgreSQL: every filter, newest first, cursor pages, patients by hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.ids import message_id
from engine.store import Journal
from engine.types import Inbound


def _fill(j: Journal) -> list[Inbound]:
    start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    made = []
    for n in range(30):
        kind = ("ADT^A01", "ADT^A08", "ORU^R01")[n % 3]
        channel = "lab" if kind.startswith("ORU") else "adt"
        pk = j.keys.patient_key("https://fhir.wasla.ma/sid/chu/pi", f"IPP{n % 5}")
        msg = Inbound(message_id(), channel, start + timedelta(minutes=n), f"raw {n}".encode(), kind, f"C{n}",
                      "CHU" if n % 2 else "CLINIQUE", pk)
        j.messages.receive(msg)
        made.append(msg)
    j.outputs.transformed(made[3].id, {"fhir": b"{}"})
    j.messages.failed(made[4].id, "transform", "bad")
    return made


def test_filters_order_and_pages(store_url: str) -> None:
    j = Journal(store_url)
    try:
        made = _fill(j)
        ids = [m.id for m in made]
        newest_first = ids[::-1]
        assert [r.id for r in j.messages.search(limit=5)] == newest_first[:5]
        assert {r.control_id for r in j.messages.search(channel="lab", limit=100)} == {f"C{n}" for n in range(2, 30, 3)}
        assert [r.control_id for r in j.messages.search(message_type="ADT^A08", limit=3)] == ["C28", "C25", "C22"]
        assert len(j.messages.search(message_type="ADT", limit=100)) == 20  # every trigger
        assert all(r.sender == "CHU" for r in j.messages.search(sender="CHU", limit=100))
        assert [r.control_id for r in j.messages.search(status="failed")] == ["C4"]
        assert [r.control_id for r in j.messages.search(destination="fhir")] == ["C3"]
        assert [r.control_id for r in j.messages.search(destination="fhir", output_status="pending")] == ["C3"]
        assert j.messages.search(destination="fhir", output_status="dead") == []
        assert [r.control_id for r in j.messages.search(control_id="C17")] == ["C17"]
        window = j.messages.search(since=made[10].received_at, until=made[13].received_at, limit=100)
        assert [r.control_id for r in window] == ["C12", "C11", "C10"]
        patient = j.keys.patient_key("https://fhir.wasla.ma/sid/chu/pi", "IPP2")
        assert [r.control_id for r in j.messages.search(patient_key=patient, limit=100)] == [
            f"C{n}" for n in (27, 22, 17, 12, 7, 2)]
        assert all(r.raw == b"" for r in window)  # metadata only: the body is read by id, where audited
        pages, cursor = [], None
        while True:
            page = j.messages.search(limit=7, before=cursor)
            pages += [r.id for r in page]
            if len(page) < 7:
                break
            cursor = (page[-1].received_at, page[-1].id)
        assert pages == newest_first
    finally:
        j.close()
