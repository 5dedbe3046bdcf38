"""Deliver keeps a patient's order when the same message reaches it twice in one batch, and survives a
connector's bug (a transient failure, counted by the circuit breaker)."""

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


class _Buggy:
    """A destination whose connector has a bug: every write raises something no connector should."""

    id = "out"

    def __init__(self) -> None:
        self.capabilities = Capabilities()
        self.calls = 0

    def deliver(self, message_id: str, body: bytes, journal: Journal) -> str | None:
        self.calls += 1
        raise ValueError("a bug")

    def close(self) -> None:
        pass


class _BuggyBatch(_Buggy):
    """The same bug in a connector that writes batches."""

    def deliver_batch(self, items: list[tuple[str, bytes, object]], journal: Journal) -> list[str | None]:
        self.calls += 1
        raise ValueError("a bug")


@pytest.mark.parametrize("output", [_Buggy, _BuggyBatch])
def test_a_connector_bug_counts_as_a_transient_failure(tmp_path: Path, output: type[_Buggy]) -> None:
    """A connector raising an unexpected exception does not stop the destination: each try counts against
    the circuit breaker, and with no retry round left the message is a dead letter saying what was raised."""
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        mid = message_id()
        journal.messages.receive(Inbound(mid, "adt", datetime.now(UTC), b"raw", patient_key="p1"))
        journal.outputs.transformed(mid, {"out": b"{}"})
        out = output()
        msg = BrokerMessage()
        dl = Deliverer(out, journal, attempts=2)
        dl.handle([Delivery(b"{}", {"message_id": mid, "patient_key": "p1", "destinations": "out"}, msg)])
        dl.close()
        assert out.calls == 2
        assert dl.breaker.consecutive == 2
        assert msg.calls == ["reject"]
        row = journal.outputs.get(mid, "out")
        assert row is not None and row.status == "dead"
        (message,) = journal.messages.search(limit=10)
        assert "unexpected ValueError in the connector" in message.reason
    finally:
        journal.close()
