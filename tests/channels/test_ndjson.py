"""The NDJSON destination: fsynced lines, and never the same message twice, even across a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from channels.ndjson import NDJSONOutput
from engine.config import DestinationConfig
from engine.errors import TransientDeliveryError
from engine.ids import message_id
from engine.store import Journal
from engine.types import Inbound


def _setup(tmp_path: Path) -> tuple[NDJSONOutput, Journal, str]:
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    mid = message_id()
    journal.receive(Inbound(mid, "c", datetime.now(UTC), b"raw"))
    journal.transformed(mid, {"out": b'{"a":1}'})
    dest = DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"}))
    return NDJSONOutput(dest, tmp_path), journal, mid


class TestNDJSON:
    def test_writes_one_line(self, tmp_path: Path) -> None:
        """A delivery appends the body and a newline, and reports file:offset."""
        out, journal, mid = _setup(tmp_path)
        try:
            location = out.deliver(mid, b'{"a":1}', journal)
            assert location is not None and location.endswith(":0")
            (f,) = (tmp_path / "files").glob("*.ndjson")
            assert f.read_bytes() == b'{"a":1}\n'
        finally:
            journal.close()

    def test_crash_between_write_and_commit(self, tmp_path: Path) -> None:
        """Written but not marked delivered (the crash window): redelivery recognises the line and writes nothing."""
        out, journal, mid = _setup(tmp_path)
        try:
            first = out.deliver(mid, b'{"a":1}', journal)  # journal says "writing" at first's offset
            assert journal.output(mid, "out").status == "writing"
            assert out.deliver(mid, b'{"a":1}', journal) is None
            (f,) = (tmp_path / "files").glob("*.ndjson")
            assert f.read_bytes().count(b"\n") == 1 and first
        finally:
            journal.close()

    def test_torn_line_is_cut_at_start(self, tmp_path: Path) -> None:
        """A partial last line left by a crash mid-write is removed when the destination opens."""
        folder = tmp_path / "files"
        folder.mkdir()
        (folder / "bundles-2026-01-01.ndjson").write_bytes(b'{"ok":1}\n{"torn":')
        dest = DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"}))
        NDJSONOutput(dest, tmp_path)
        assert (folder / "bundles-2026-01-01.ndjson").read_bytes() == b'{"ok":1}\n'


class _Message:
    """The broker message a Delivery wraps; records which of ack/reject/requeue was called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ack(self) -> None:
        self.calls.append("ack")

    def reject(self, requeue: bool = False) -> None:
        self.calls.append("reject")

    def requeue(self) -> None:
        self.calls.append("requeue")


class _FailsAfterWriting(NDJSONOutput):
    """Writes the batch, then fails once as an fsync error would: the retry must not write it again."""

    failed = False

    def deliver_batch(self, items, journal):  # type: ignore[no-untyped-def]
        results = super().deliver_batch(items, journal)
        if not self.failed:
            self.failed = True
            raise TransientDeliveryError("fsync failed")
        return results


def test_retry_after_a_failed_write_does_not_write_twice(tmp_path: Path) -> None:
    from engine.broker import Delivery
    from engine.deliver import Deliverer

    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        mids = []
        for _ in range(3):
            mid = message_id()
            journal.receive(Inbound(mid, "c", datetime.now(UTC), b"raw"))
            journal.transformed(mid, {"out": b'{"m":"' + mid.encode() + b'"}'})
            mids.append(mid)
        out = _FailsAfterWriting(DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"})),
                                 tmp_path)
        msgs = [_Message() for _ in mids]
        batch = [Delivery(b'{"m":"' + mid.encode() + b'"}', {"message_id": mid}, m)
                 for mid, m in zip(mids, msgs, strict=True)]
        Deliverer(out, journal).handle(batch)
        (f,) = (tmp_path / "files").glob("*.ndjson")
        assert f.read_bytes().count(b"\n") == 3
        assert [m.calls for m in msgs] == [["ack"]] * 3
        assert {journal.output(mid, "out").status for mid in mids} == {"delivered"}
    finally:
        journal.close()
