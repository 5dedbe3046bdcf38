"""Parked messages on SQLite and PostgreSQL."""

from __future__ import annotations

from engine.store import Journal
from engine.types import Status
from tests.engine.store.support import inbound


class TestParking:
    """Messages held on an unmapped local code; released once, by one worker, when every code is mapped."""

    def test_park_group_and_release(self, store_url: str) -> None:
        j = Journal(store_url)
        try:
            a, b, c = inbound(raw=b"A"), inbound(raw=b"B"), inbound(raw=b"C")
            for m in (a, b, c):
                j.messages.receive(m)
            j.parked.park(a.id, "LAB", [("local-lab", "VITD")],
                          "local codes without a national mapping: local-lab VITD")
            j.parked.park(b.id, "LAB", [("local-lab", "VITD"), ("local-lab", "ZN")], "two codes")
            j.parked.park(c.id, "LAB", [("local-lab", "ZN")], "one code")
            row = j.messages.get(a.id)
            assert row is not None and row.status == Status.PARKED and "VITD" in row.reason
            groups = {(m, code): n for m, code, _, n, _, _ in j.parked.codes()}
            assert groups == {("local-lab", "VITD"): 2, ("local-lab", "ZN"): 2}
            released = j.parked.release("local-lab", lambda code: code == "VITD")
            assert [r.id for r in released] == [a.id] and released[0].raw == b"A"
            assert j.messages.get(a.id).status == Status.RECEIVED  # type: ignore[union-attr]
            assert j.messages.get(b.id).status == Status.PARKED  # type: ignore[union-attr]  # ZN still unmapped
            assert j.parked.release("local-lab", lambda code: code == "VITD") == []  # nothing twice
            assert sorted(r.id for r in j.parked.release("local-lab", lambda code: True)) == sorted([b.id, c.id])
            assert j.parked.codes() == []
            assert [e["status"] for e in j.messages.events(a.id)][-2:] == ["parked", "released"]
        finally:
            j.close()
