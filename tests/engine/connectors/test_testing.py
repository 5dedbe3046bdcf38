"""Connectors against the in-memory twins of their ports: a real socket or file, no journal, no broker."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

import pytest

from channels.amqp import AMQPOutput
from channels.fhir import FHIROutput
from channels.mllp import MLLPInput
from channels.ndjson import NDJSONOutput
from engine.config import ChannelConfig, DestinationConfig
from engine.connectors.capabilities import Capabilities
from engine.connectors.ports import FileProgress, FileStep
from engine.connectors.testing import MemoryInputPorts, MemoryOutputLedger
from engine.pipeline.deliver import Deliverer
from engine.types import Status
from tests.support import adt, free_port, mllp_read, msa


class _Listening:
    """An MLLP input on its own event loop thread, admitting into a `MemoryInputPorts`."""

    def __init__(self, ports: MemoryInputPorts) -> None:
        self.channel = ChannelConfig("adt", "adt.yaml", "mllp", MappingProxyType({"port": free_port()}), "adt_a01",
                                     ())
        self.input = MLLPInput(self.channel, ports, ThreadPoolExecutor(2))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.input.start(), self.loop).result(10)

    def send(self, *frames: bytes) -> list[list[str]]:
        with socket.create_connection((self.input.host, self.input.port), timeout=10) as s:
            s.sendall(b"".join(b"\x0b" + f + b"\x1c\r" for f in frames))
            return [msa(mllp_read(s)) for _ in frames]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.input.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def ports() -> MemoryInputPorts:
    return MemoryInputPorts()


@pytest.fixture
def listening(ports: MemoryInputPorts) -> Iterator[_Listening]:
    srv = _Listening(ports)
    yield srv
    srv.close()


class TestMLLPInputOnTheTwin:
    def test_each_message_is_admitted_and_acknowledged_in_order(self, ports: MemoryInputPorts,
                                                                listening: _Listening) -> None:
        """Two frames are admitted in order, each answered AA with its own control id."""
        answers = listening.send(adt("M1"), adt("M2"))
        assert [(a[1], a[2]) for a in answers] == [("AA", "M1"), ("AA", "M2")]
        assert [(a.control_id, a.status) for a in ports.admitted] == [("M1", Status.RECEIVED),
                                                                      ("M2", Status.RECEIVED)]

    def test_a_resent_message_is_a_duplicate_not_admitted_twice(self, ports: MemoryInputPorts,
                                                                listening: _Listening) -> None:
        """The same bytes twice: both answered AA, one record admitted."""
        assert [a[1] for a in listening.send(adt("M1"), adt("M1"))] == ["AA", "AA"]
        assert len(ports.admitted) == 1

    def test_unreadable_bytes_are_refused_and_recorded_failed(self, ports: MemoryInputPorts,
                                                              listening: _Listening) -> None:
        """Bytes that are not HL7 v2 get AR, and are kept as failed with the reason."""
        (answer,) = listening.send(b"not a message")
        assert answer[1] == "AR"
        assert [a.status for a in ports.admitted] == [Status.FAILED] and ports.admitted[0].reason

    def test_acks_and_connections_are_noted(self, ports: MemoryInputPorts, listening: _Listening) -> None:
        """The ACK sent is noted on the message; the connection's opening and closing are recorded."""
        listening.send(adt("M1"))
        mid = ports.admitted[0].message_id
        for _ in range(100):  # the close is recorded when the server sees the socket go
            if [k for _, k, _ in ports.events.connections] == ["opened", "closed"]:
                break
            threading.Event().wait(0.02)
        assert [(m, stage, code) for m, stage, code, _ in ports.events.notes] == [(mid, "ack", "AA")]
        assert [k for _, k, _ in ports.events.connections] == ["opened", "closed"]


class TestFileRecordsOnTheTwin:
    def test_progress_moves_only_from_where_it_was(self, ports: MemoryInputPorts) -> None:
        """Records with a file step are admitted once; the same step again (a second taker) is refused."""
        channel = ChannelConfig("lab", "lab.yaml", "csv_drop", MappingProxyType({}), "csv_lab", ())
        claim = ports.files.claim("lab", "abc", "f.csv", size=10, mtime_ns=0, encoding="")
        step = FileStep("abc", claim.progress, FileProgress(10, 3, 0, 2, 1, 1))
        kw = {"message_type": "CSV^lab", "sender": "S", "detail": {"file": "f.csv"}, "step": step}
        assert ports.admit_file_records(channel, [(b"g", "k")], [(b"r", "f.csv:2", "bad date")], **kw)
        assert not ports.admit_file_records(channel, [(b"g", "k")], [], **kw)
        assert [(a.control_id, a.status) for a in ports.admitted] == [("k", Status.RECEIVED),
                                                                      ("f.csv:2", Status.FAILED)]
        got = ports.files.get("lab", "abc")
        assert got is not None and got.progress.offset == 10


class TestOutputsOnTheTwin:
    def test_ndjson_records_its_intent_before_writing(self, tmp_path: Path) -> None:
        """The NDJSON output records file:offset in the ledger, then writes the line there."""
        ledger = MemoryOutputLedger()
        out = NDJSONOutput(DestinationConfig("out", "x.yaml", "ndjson", MappingProxyType({"path": "files"})),
                           tmp_path)
        location = out.deliver("m1", b'{"a":1}', ledger)
        assert location is not None and ledger.writing == [("m1", "out", location)]
        (f,) = (tmp_path / "files").glob("*.ndjson")
        assert f.read_bytes() == b'{"a":1}\n'


class TestCapabilities:
    def test_outputs_declare_what_the_deliverer_reads(self) -> None:
        """AMQP takes headers, NDJSON is one at a time, FHIR's concurrency comes from its options."""
        assert AMQPOutput.capabilities == Capabilities(takes_headers=True)
        assert NDJSONOutput.capabilities == Capabilities()
        fhir = FHIROutput(DestinationConfig("f", "f.yaml", "fhir", MappingProxyType(
            {"base_url": "http://127.0.0.1:9", "concurrency": 3})))
        try:
            assert fhir.capabilities == Capabilities(concurrency=3)
            dl = Deliverer(fhir, None)  # type: ignore[arg-type]
            assert dl.concurrency == 3
            dl.close()
        finally:
            fhir.close()
