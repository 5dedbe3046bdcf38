"""MLLP forward against a receiver no one here wrote: python-hl7's asyncio MLLP server builds the ACKs.

Unit level (the destination alone, real journal, real sockets) for each ACK outcome, timeouts and
connection reuse; then end to end: the engine receives over MLLP and forwards to the remote.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import hl7
import hl7.mllp
import pytest

from channels.mllp_sender import MLLPOutput, outbound
from engine.config import DestinationConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.ids import message_id
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.store import Journal
from engine.types import Inbound, Status
from tests.support import adt, engine, free_port, make_project, mllp_send, msa

Answer = Callable[[hl7.Message], str | None]  # the ACK to send as ER7, or None to stay silent


def ack(code: str, err: str = "") -> Answer:
    def answer(message: hl7.Message) -> str:
        text = str(message.create_ack(ack_code=code, message_id="R" + str(message.segment("MSH")[10])))
        return text + ("\r" + err if err else "")
    return answer


def silent(message: hl7.Message) -> None:
    return None


class Remote:
    """python-hl7's MLLP server on a thread; answers with the next `answers` entry (the last one repeats)."""

    def __init__(self, answers: list[Answer], tls: ssl.SSLContext | None = None) -> None:
        self.answers = answers
        self.tls = tls
        self.port = free_port()
        self.received: list[str] = []
        self.connections = 0
        self.writers: list[hl7.mllp.HL7StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> asyncio.base_events.Server:
        return await hl7.mllp.start_hl7_server(self._client, "127.0.0.1", self.port, ssl=self.tls, encoding="utf-8")

    async def _client(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while not writer.is_closing():
                message = await reader.readmessage()
                answer = self.answers[min(len(self.received), len(self.answers) - 1)]
                self.received.append(str(message))
                reply = answer(message)
                if reply is not None:
                    writer.writeblock(reply.encode())
                    await writer.drain()
        writer.close()

    async def _stop(self) -> None:
        self.server.close()
        for w in self.writers:  # Server.close() leaves open connections open
            w.close()
        await self.server.wait_closed()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield j
    j.close()


def stored(journal: Journal, control: str = "CTRL1") -> str:
    mid = message_id()
    raw = adt(control).replace(b"\r", b"\n")  # as some senders send it: LF between segments
    journal.messages.receive(Inbound(mid, "adt", datetime.now(UTC), raw, "ADT^A01", control, "FAC", "pk"))
    return mid


def output(remote: Remote, **options: object) -> MLLPOutput:
    opts = {"host": "127.0.0.1", "port": remote.port, "ack_timeout_s": 2, **options}
    return MLLPOutput(DestinationConfig("lis", "lis.yaml", "mllp", MappingProxyType(opts)), Path("."))


@contextlib.contextmanager
def remote(*answers: Answer) -> Iterator[Remote]:
    r = Remote(list(answers))
    try:
        yield r
    finally:
        r.close()


class TestSender:
    def test_aa_is_delivered_with_the_original_bytes(self, journal: Journal) -> None:
        with remote(ack("AA")) as r:
            out = output(r)
            mid = stored(journal, "C-AA")
            location = out.deliver(mid, b"{}", JournalOutputLedger(journal))
            out.close()
        assert r.received == [outbound(adt("C-AA")).decode()]
        assert location == f"mllp://127.0.0.1:{r.port} AA RC-AA"

    def test_ae_is_permanent_with_the_remote_error_text(self, journal: Journal) -> None:
        err = "ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||Patient not registered here"
        with remote(ack("AE", err)) as r:
            out = output(r)
            with pytest.raises(PermanentDeliveryError) as caught:
                out.deliver(stored(journal), b"{}", JournalOutputLedger(journal))
            out.close()
        assert str(caught.value) == (f"127.0.0.1:{r.port} refused the message: "
                                     "AE (204; Unknown key identifier; Patient not registered here)")

    def test_ar_with_msa3_text(self, journal: Journal) -> None:
        def ar(message: hl7.Message) -> str:
            return ack("AR")(message).rstrip("\r") + "|Facility not allowed"  # MSA-3, appended to the MSA segment
        with remote(ar) as r:
            out = output(r)
            with pytest.raises(PermanentDeliveryError, match="refused the message: AR: Facility not allowed"):
                out.deliver(stored(journal), b"{}", JournalOutputLedger(journal))
            out.close()

    def test_no_ack_in_time_is_transient_and_the_connection_is_dropped(self, journal: Journal) -> None:
        with remote(silent, ack("AA")) as r:
            out = output(r, ack_timeout_s=0.3)
            mid = stored(journal, "C-T")
            with pytest.raises(TransientDeliveryError, match="no ACK from .* within 0.3 s"):
                out.deliver(mid, b"{}", JournalOutputLedger(journal))
            assert out.deliver(mid, b"{}", JournalOutputLedger(journal)) is not None  # resent on a new connection
            out.close()
        assert len(r.received) == 2 and r.connections == 2

    def test_connection_is_reused(self, journal: Journal) -> None:
        with remote(ack("AA")) as r:
            out = output(r)
            for i in range(5):
                out.deliver(stored(journal, f"C{i}"), b"{}", JournalOutputLedger(journal))
            out.close()
        assert len(r.received) == 5 and r.connections == 1

    def test_remote_closing_between_messages_is_noticed(self, journal: Journal) -> None:
        with remote(ack("AA")) as r:
            out = output(r)
            out.deliver(stored(journal, "C1"), b"{}", JournalOutputLedger(journal))
        with remote(ack("AA")) as r2:  # the first remote is gone; a new one on another port
            out.port = r2.port
            out.deliver(stored(journal, "C2"), b"{}", JournalOutputLedger(journal))
            out.close()
        assert len(r2.received) == 1

    def test_ack_for_another_message_is_transient(self, journal: Journal) -> None:
        def wrong(message: hl7.Message) -> str:
            return ack("AA")(message).replace("|C-W\r", "|OTHER\r").replace("|C-W", "|OTHER")
        with remote(wrong) as r:
            out = output(r)
            with pytest.raises(TransientDeliveryError, match="acknowledged control id 'OTHER', not 'C-W'"):
                out.deliver(stored(journal, "C-W"), b"{}", JournalOutputLedger(journal))
            out.close()

    def test_nobody_listening_is_transient(self, journal: Journal) -> None:
        port = free_port()
        out = MLLPOutput(DestinationConfig("lis", "lis.yaml", "mllp",
                                           MappingProxyType({"host": "127.0.0.1", "port": port})), Path("."))
        with pytest.raises(TransientDeliveryError, match=f"cannot connect to 127.0.0.1:{port}"):
            out.deliver(stored(journal), b"{}", JournalOutputLedger(journal))


class TestSenderTLS:
    @pytest.fixture
    def pki(self, tmp_path: Path) -> dict[str, Path]:
        from tests.channels.certs import pki

        return pki(tmp_path)

    def _remote(self, pki: dict[str, Path], server: str) -> Remote:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
        ctx.verify_mode = ssl.CERT_REQUIRED  # the remote insists on our client certificate
        ctx.load_cert_chain(str(pki[server]), str(pki[f"{server}_key"]))
        return Remote([ack("AA")], tls=ctx)

    def _output(self, pki: dict[str, Path], port: int) -> MLLPOutput:
        tls = {"ca": str(pki["ca"]), "cert": str(pki["lab"]), "key": str(pki["lab_key"]),
               "server_name": "localhost"}
        return MLLPOutput(DestinationConfig("lis", "lis.yaml", "mllp", MappingProxyType(
            {"host": "127.0.0.1", "port": port, "ack_timeout_s": 2, "tls": tls})), Path("."))

    def test_mutual_tls(self, journal: Journal, pki: dict[str, Path]) -> None:
        r = self._remote(pki, "server")
        try:
            out = self._output(pki, r.port)
            location = out.deliver(stored(journal, "TLS-1"), b"{}", JournalOutputLedger(journal))
            assert location == f"mllp://127.0.0.1:{r.port} AA RTLS-1"
            out.close()
        finally:
            r.close()

    def test_remote_certificate_from_another_ca_is_refused(self, journal: Journal, pki: dict[str, Path]) -> None:
        r = self._remote(pki, "rogue_server")
        try:
            out = self._output(pki, r.port)
            with pytest.raises(TransientDeliveryError, match="TLS handshake with 127.0.0.1:.* failed"):
                out.deliver(stored(journal), b"{}", JournalOutputLedger(journal))
        finally:
            r.close()
        assert r.received == []


def forwarding_project(tmp_path: Path, port: int) -> Path:
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "lis-forward.yaml").write_text(
        f"mllp:\n  host: 127.0.0.1\n  port: {port}\n  ack_timeout_s: 2\n")
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson", "  - archive-ndjson\n  - lis-forward"))
    return project


def wait_status(project: Path, control: str, timeout: float = 20.0) -> tuple[str, str]:
    start = time.monotonic()
    row = None
    while time.monotonic() - start < timeout:
        j = Journal(f"sqlite:///{project / 'var' / 'wasla.db'}")
        try:
            (row,) = j.messages.search(control_id=control) or (None,)
        finally:
            j.close()
        if row is not None and row.status in (Status.DELIVERED, Status.FAILED):
            return row.status, row.reason
        time.sleep(0.1)
    raise AssertionError(f"{control} not final after {timeout}s: {row}")


class TestForwardEndToEnd:
    def test_forwarded_and_refused(self, tmp_path: Path) -> None:
        err = "ERR||PV1^1^2|103^Table value not found^HL70357|E||||Unknown patient class"
        answers = {"FWD-OK": ack("AA"), "FWD-KO": ack("AE", err)}
        with remote(lambda m: answers[str(m.segment("MSH")[10])](m)) as r:
            project = forwarding_project(tmp_path, r.port)
            with engine(project):
                from tests.support import port_of
                assert msa(mllp_send(port_of(project), adt("FWD-OK")))[1] == "AA"
                assert msa(mllp_send(port_of(project), adt("FWD-KO", patient="777")))[1] == "AA"
                assert wait_status(project, "FWD-OK") == (Status.DELIVERED, "")
                status, reason = wait_status(project, "FWD-KO")
        assert status == Status.FAILED
        assert reason == (f"lis-forward: 127.0.0.1:{r.port} refused the message: AE (103; Table value not found; "
                          "Unknown patient class) (permanent)")
        assert [m.split("\r")[0].split("|")[9] for m in r.received] == ["FWD-OK", "FWD-KO"]


def test_refusal_reads_v23_err1_and_v25_err3() -> None:
    """ERR-1 (v2.3/2.4: location^^^code&text) and ERR-3/ERR-8 (v2.5+) both reach the failure reason."""
    from channels.mllp_sender import read_ack, refusal
    v23 = b"MSH|^~\\&|LIS|H|W|F|20260101||ACK|1|P|2.3\rMSA|AR|C1|Rejected\rERR|PID^1^3^204&Unknown key\r"
    v25 = b"MSH|^~\\&|LIS|H|W|F|20260101||ACK|1|P|2.5\rMSA|AE|C1\rERR||PID^1^7|102^Data type error|E|||bad date\r"
    assert refusal(read_ack(v23)) == "AR: Rejected (204; Unknown key)"
    assert refusal(read_ack(v25)) == "AE (102; Data type error; bad date)"
