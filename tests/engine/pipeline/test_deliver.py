"""Deliver keeps a patient's order when the same message reaches it twice in one batch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.connectors.capabilities import Capabilities
from engine.ids import message_id
from engine.pipeline.deliver import Deliverer
from engine.store import Journal
from engine.transport import Delivery
from engine.types import Inbound
from tests.support import BrokerMessage


class _Recorder:
    """A destination that keeps what it was given, in the order given (each write is the patient's new state)."""

    id = "out"

    def __init__(self, concurrency: int) -> None:
        self.capabilities = Capabilities(concurrency=concurrency)
        self.written: list[str] = []

    def deliver(self, message_id: str, body: bytes, journal: Journal) -> str | None:
        self.written.append(body.decode())
        return f"out/{message_id}"

    def close(self) -> None:
        pass


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_second_copy_in_one_batch_is_skipped_not_written_after_later_messages(tmp_path: Path,
                                                                               concurrency: int) -> None:
    """Intake's recovery re-sends every unfinished message while the originals may still be queued, so
    one batch can hold ADMIT, MID, FINAL, then ADMIT and MID again. Writing the copies would leave the
    patient on MID (the kill -9 of intake fault run at full size: 2 patients of 1,200)."""
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        mids = {}
        for version in ("ADMIT", "MID", "FINAL"):
            mid = mids[version] = message_id()
            journal.messages.receive(Inbound(mid, "adt", datetime.now(UTC), b"raw", patient_key="p1"))
            journal.outputs.transformed(mid, {"out": version.encode()})
        out = _Recorder(concurrency)
        sent = ["ADMIT", "MID", "FINAL", "ADMIT", "MID"]
        msgs = [BrokerMessage() for _ in sent]
        batch = [Delivery(v.encode(), {"message_id": mids[v], "patient_key": "p1", "destinations": "out"}, m)
                 for v, m in zip(sent, msgs, strict=True)]
        Deliverer(out, journal).handle(batch)
        assert out.written == ["ADMIT", "MID", "FINAL"]
        assert [m.calls for m in msgs] == [["ack"]] * 5
        assert {journal.outputs.get(mid, "out").status for mid in mids.values()} == {"delivered"}
        skipped = [e for mid in mids.values() for e in journal.messages.events(mid)
                   if e["status"] == "duplicate_skipped"]
        assert len(skipped) == 2
    finally:
        journal.close()
