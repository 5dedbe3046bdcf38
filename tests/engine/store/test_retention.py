"""Retention on SQLite and PostgreSQL: bodies, then messages, then the disk."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ids import message_id
from engine.store import Journal, Pruned
from engine.types import Inbound


class TestRetention:
    def test_bodies_then_messages_go_on_time_and_the_disk_is_reclaimed(self, store_url: str) -> None:
        """After bodies_days the raw and FHIR bodies are erased (metadata kept); after metadata_days the
        message goes with its events and outputs; on SQLite the file shrinks."""
        import os
        import random
        from datetime import timedelta

        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        j = Journal(store_url, clock=lambda: now)
        try:
            rng = random.Random(5)
            noise = bytes(rng.getrandbits(8) for _ in range(4000))  # incompressible: the file really grows
            ages = {"old": 400, "middle": 60, "new": 1}
            kept: dict[str, list[str]] = {}
            for label, days in ages.items():
                kept[label] = []
                for n in range(300):
                    msg = Inbound(message_id(), "adt", now - timedelta(days=days, minutes=n), noise + bytes([n % 256]),
                                  "ADT^A01", f"{label}{n}", "FAC", "pk")
                    j.messages.receive(msg)
                    j.outputs.transformed(msg.id, {"fhir": noise})
                    kept[label].append(msg.id)
            other = Inbound(message_id(), "lab", now - timedelta(days=400), b"x", "ORU^R01", "L", "FAC", "")
            j.messages.receive(other)
            path = store_url.removeprefix("sqlite:///") if store_url.startswith("sqlite") else None
            j.retention.reclaim()
            before = os.path.getsize(path) if path else 0

            done = j.retention.prune("adt", bodies_days=30, metadata_days=365)
            assert (done.messages, done.bodies) == (300, 300)
            assert j.messages.get(kept["old"][0]) is None and j.messages.events(kept["old"][0]) == []
            middle = j.messages.get(kept["middle"][0])
            assert middle is not None and middle.raw == b"" and middle.status == "transformed"  # metadata kept
            assert j.outputs.get(kept["middle"][0], "fhir").body == b""  # type: ignore[union-attr]
            assert j.messages.get(kept["new"][0]).raw == noise + bytes([0])  # type: ignore[union-attr]
            assert j.messages.get(other.id) is not None  # another channel, another retention
            assert j.retention.prune("adt", bodies_days=30, metadata_days=365) == Pruned()  # nothing left to do
            if not path:  # PostgreSQL: where autovacuum is off (as here), reclaim vacuums what was pruned
                autovacuum = j.db.query("SHOW autovacuum")[0][0]
                j.retention.reclaim()
                if autovacuum == "off":
                    import time

                    deadline = time.monotonic() + 5
                    while not j.db.query("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables"
                                         " WHERE relname = 'messages'")[0][0] and time.monotonic() < deadline:
                        time.sleep(0.1)
                    dead = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'messages'"
                    assert j.db.query(dead)[0][0] == 0
            if path:
                j.retention.reclaim()
                after = os.path.getsize(path)
                # 600 raw + 600 FHIR bodies of 4 KB gone: at least 4 MB back
                assert before - after > 4_000_000, (before, after)
        finally:
            j.close()
