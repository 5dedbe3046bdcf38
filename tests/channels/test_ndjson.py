"""The NDJSON destination: fsynced lines, and never the same message twice, even across a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from channels.ndjson import NDJSONOutput
from engine.config import DestinationConfig
from engine.errors import TransientDeliveryError
from engine.ids import message_id
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.store import Journal
from engine.types import Inbound
from tests.support import BrokerMessage


def _setup(tmp_path: Path) -> tuple[NDJSONOutput, Journal, str]:
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    mid = message_id()
    journal.messages.receive(Inbound(mid, "c", datetime.now(UTC), b"raw"))
    journal.outputs.transformed(mid, {"out": b'{"a":1}'})
    dest = DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"}))
    return NDJSONOutput(dest, tmp_path), journal, mid


class TestNDJSON:
    def test_writes_one_line(self, tmp_path: Path) -> None:
        """A delivery appends the body and a newline, and reports file:offset."""
        out, journal, mid = _setup(tmp_path)
        try:
            location = out.deliver(mid, b'{"a":1}', JournalOutputLedger(journal))
            assert location is not None and location.endswith(":0")
            (f,) = (tmp_path / "files").glob("*.ndjson")
            assert f.read_bytes() == b'{"a":1}\n'
        finally:
            journal.close()

    def test_crash_between_write_and_commit(self, tmp_path: Path) -> None:
        """Written but not marked delivered (the crash window): redelivery recognises the line and writes nothing."""
        out, journal, mid = _setup(tmp_path)
        try:
            # the journal says "writing" at first's offset
            first = out.deliver(mid, b'{"a":1}', JournalOutputLedger(journal))
            assert journal.outputs.get(mid, "out").status == "writing"
            assert out.deliver(mid, b'{"a":1}', JournalOutputLedger(journal)) is None
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
    from engine.pipeline.deliver import Deliverer
    from engine.transport import Delivery

    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        mids = []
        for _ in range(3):
            mid = message_id()
            journal.messages.receive(Inbound(mid, "c", datetime.now(UTC), b"raw"))
            journal.outputs.transformed(mid, {"out": b'{"m":"' + mid.encode() + b'"}'})
            mids.append(mid)
        out = _FailsAfterWriting(DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"})),
                                 tmp_path)
        msgs = [BrokerMessage() for _ in mids]
        batch = [Delivery(b'{"m":"' + mid.encode() + b'"}', {"message_id": mid}, m)
                 for mid, m in zip(mids, msgs, strict=True)]
        Deliverer(out, journal).handle(batch)
        (f,) = (tmp_path / "files").glob("*.ndjson")
        assert f.read_bytes().count(b"\n") == 3
        assert [m.calls for m in msgs] == [["ack"]] * 3
        assert {journal.outputs.get(mid, "out").status for mid in mids} == {"delivered"}
    finally:
        journal.close()


_BUNDLE = (b'{"resourceType":"Bundle","type":"transaction","entry":['
           b'{"resource":{"resourceType":"Patient","id":"p1"}},'
           b'{"resource":{"resourceType":"Encounter","id":"e1"}},'
           b'{"resource":{"resourceType":"Observation","id":"o1"}},'
           b'{"resource":{"resourceType":"Observation","id":"o2"}}]}')


def _resources(tmp_path: Path, journal: Journal, clock: datetime, **options: object) -> NDJSONOutput:
    dest = DestinationConfig("out", "x.yaml", "ndjson",
                             MappingProxyType({"path": "bulk", "layout": "resources", **options}))
    return NDJSONOutput(dest, tmp_path, clock=lambda: clock)


def _received(journal: Journal, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        mid = message_id()
        journal.messages.receive(Inbound(mid, "c", datetime.now(UTC), b"raw"))
        journal.outputs.transformed(mid, {"out": _BUNDLE})
        ids.append(mid)
    return ids


class TestResourcesLayout:
    def test_one_file_per_resource_type_and_period(self, tmp_path: Path) -> None:
        """FHIR bulk-data style: each resource on a line of <Type>-<period>.ndjson; a new hour, new files."""
        journal = Journal(f"sqlite:///{tmp_path}/j.db")
        try:
            (a, b) = _received(journal, 2)
            out = _resources(tmp_path, journal, datetime(2026, 11, 25, 9, 59, tzinfo=UTC), period="hour")
            location = out.deliver(a, _BUNDLE, JournalOutputLedger(journal))
            assert location == ("Patient-2026-11-25T09.ndjson:0 Encounter-2026-11-25T09.ndjson:0"
                                " Observation-2026-11-25T09.ndjson:0 Observation-2026-11-25T09.ndjson:41")
            out.clock = lambda: datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
            out.deliver(b, _BUNDLE, JournalOutputLedger(journal))
            names = sorted(p.name for p in (tmp_path / "bulk").iterdir())
            assert names == [f"{t}-2026-11-25T{h}.ndjson" for t in ("Encounter", "Observation", "Patient")
                             for h in ("09", "10")]
            obs = (tmp_path / "bulk" / "Observation-2026-11-25T09.ndjson").read_bytes()
            assert obs == b'{"resourceType":"Observation","id":"o1"}\n{"resourceType":"Observation","id":"o2"}\n'
        finally:
            journal.close()

    def test_rotation_by_size(self, tmp_path: Path) -> None:
        """A file that would pass max_bytes is followed by <name>.1.ndjson, .2 …; no line is split."""
        journal = Journal(f"sqlite:///{tmp_path}/j.db")
        try:
            ids = _received(journal, 30)
            out = _resources(tmp_path, journal, datetime(2026, 11, 25, tzinfo=UTC), max_bytes=1024)
            for mid in ids:
                out.deliver(mid, _BUNDLE, JournalOutputLedger(journal))
            files = sorted((tmp_path / "bulk").glob("Observation-*"))
            # two 41-byte Observation lines per message: 12 messages (984 bytes) fit in 1,024
            assert {f.name: f.stat().st_size for f in files} == {
                "Observation-2026-11-25.ndjson": 984, "Observation-2026-11-25.1.ndjson": 984,
                "Observation-2026-11-25.2.ndjson": 492}
            lines = [ln for f in files for ln in f.read_bytes().splitlines()]
            assert len(lines) == 60 and all(ln.startswith(b'{"resourceType":"Observation"') for ln in lines)
            again = _resources(tmp_path, journal, datetime(2026, 11, 25, tzinfo=UTC), max_bytes=1024)
            assert again._current_part("Observation-2026-11-25") == 2  # a restart appends to the last
        finally:
            journal.close()

    def test_crash_between_write_and_acknowledgement(self, tmp_path: Path) -> None:
        """Written to every file but not marked delivered: the redelivery writes nothing again; after a
        crash between two files, only the missing lines are written."""
        journal = Journal(f"sqlite:///{tmp_path}/j.db")
        try:
            (a, b) = _received(journal, 2)
            out = _resources(tmp_path, journal, datetime(2026, 11, 25, tzinfo=UTC))
            # the journal says "writing", never "delivered": the crash window
            out.deliver(a, _BUNDLE, JournalOutputLedger(journal))
            assert out.deliver(a, _BUNDLE, JournalOutputLedger(journal)) is None
            assert sum(f.read_bytes().count(b"\n") for f in (tmp_path / "bulk").iterdir()) == 4
            out.deliver(b, _BUNDLE, JournalOutputLedger(journal))
            patient = tmp_path / "bulk" / "Patient-2026-11-25.ndjson"
            patient.write_bytes(patient.read_bytes()[:patient.read_bytes().index(b"\n") + 1])  # b's Patient line lost
            location = out.deliver(b, _BUNDLE, JournalOutputLedger(journal))
            assert location is not None and location.startswith("Patient-2026-11-25.ndjson:37 ")
            counts = {f.name.split("-")[0]: f.read_bytes().count(b"\n") for f in (tmp_path / "bulk").iterdir()}
            assert counts == {"Patient": 2, "Encounter": 2, "Observation": 4}
        finally:
            journal.close()
