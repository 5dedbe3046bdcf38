"""Outputs on SQLite and PostgreSQL: delivered counts by destination and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.ids import message_id
from engine.store import Journal
from engine.types import Inbound


def _id_at(when: datetime) -> str:
    """A UUIDv7 text whose time is `when` (the engine's ids carry the receipt time)."""
    import uuid

    x, r = f"{int(when.timestamp() * 1000):012x}", uuid.uuid4().hex
    return f"{x[:8]}-{x[8:]}-7{r[:3]}-8{r[3:6]}-{r[6:18]}"


class TestDeliveredSince:
    def test_counts_come_from_the_journal_by_destination_and_time(self, store_url: str) -> None:
        """The dashboard's delivered count per destination: what any process delivered, for the
        messages received in the window (their UUIDv7 ids), never pending or older ones."""
        import time

        j = Journal(store_url)
        try:
            def one(mid: str, when: datetime, outs: dict[str, bool]) -> None:
                j.messages.receive(Inbound(mid, "c", when, b"MSH|x", "ADT^A01", mid[-6:], "FAC", "pk"))
                j.outputs.transformed(mid, {d: b"{}" for d in outs})
                for d, sent in outs.items():
                    if sent:
                        j.outputs.delivered(mid, d, "loc")

            now = datetime.now(UTC)
            for _ in range(3):
                one(message_id(), now, {"fhir": True, "amqp": True})
            one(message_id(), now, {"fhir": True, "amqp": False})  # amqp still pending
            one(_id_at(now - timedelta(days=2)), now - timedelta(days=2), {"fhir": True, "amqp": True})  # too old
            since = time.time() - 86400
            assert j.outputs.delivered_since(["fhir", "amqp", "ndjson"], since) == {"fhir": 4, "amqp": 3, "ndjson": 0}
            assert j.outputs.delivered_since(["fhir"], time.time() - 3 * 86400) == {"fhir": 5}
        finally:
            j.close()
