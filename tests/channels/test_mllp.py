"""The MLLP inbound channel on a real socket, with the real intake (SQLite journal, embedded broker)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from channels.mllp import MLLPInput
from engine.config import load_config
from engine.pipeline.intake import Intake
from engine.runtime import make_converter, routes_of
from engine.store import Journal
from engine.transport import open_transport
from tests.support import adt, make_project, mllp_read, msa


class Server:
    def __init__(self, project: Path) -> None:
        config = load_config(project / "config", env={})
        self.journal = Journal(config.store.url)
        broker = open_transport(config.broker, routes_of(config))
        broker.declare()
        intake = Intake(self.journal, broker, make_converter(config))
        self.channel = config.channels[0]
        self.loop = asyncio.new_event_loop()
        self.input = MLLPInput(self.channel, intake, ThreadPoolExecutor(4))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.input.start(), self.loop).result(10)

    def connect(self) -> socket.socket:
        return socket.create_connection((self.input.host, self.input.port), timeout=10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.input.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.journal.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(make_project(tmp_path))
    yield s
    s.close()


def configure(project: Path, extra: str) -> Path:
    """Add YAML lines (indented for the mllp block) to the sample channel."""
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("    port:", extra + "    port:"))
    return project


@contextmanager
def running(project: Path) -> Iterator[Server]:
    srv = Server(project)
    try:
        yield srv
    finally:
        srv.close()


class TestFraming:
    def test_several_frames_in_one_write(self, server: Server) -> None:
        """Three frames in one TCP write get three ACKs, in order."""
        with server.connect() as s:
            s.sendall(b"".join(b"\x0b" + adt(f"M{i}") + b"\x1c\r" for i in range(3)))
            assert [msa(mllp_read(s))[2] for _ in range(3)] == ["M0", "M1", "M2"]

    def test_frame_split_over_many_writes(self, server: Server) -> None:
        """A frame sent a few bytes at a time is reassembled."""
        data = b"\x0b" + adt("SPLIT") + b"\x1c\r"
        with server.connect() as s:
            for i in range(0, len(data), 7):
                s.sendall(data[i : i + 7])
            assert msa(mllp_read(s))[1:3] == ["AA", "SPLIT"]

    def test_junk_before_vt_and_missing_cr(self, server: Server) -> None:
        """Bytes before VT are skipped and a frame without CR after FS is accepted."""
        with server.connect() as s:
            s.sendall(b"noise\r\n\x0b" + adt("J1") + b"\x1c")
            assert msa(mllp_read(s))[1:3] == ["AA", "J1"]
            s.sendall(b"\x0b" + adt("J2") + b"\x1c\r")
            assert msa(mllp_read(s))[1:3] == ["AA", "J2"]

    def test_ack_is_sent_after_the_journal_commit(self, server: Server) -> None:
        """When AA arrives the exact bytes are already in the journal."""
        payload = adt("DURABLE")
        with server.connect() as s:
            s.sendall(b"\x0b" + payload + b"\x1c\r")
            assert msa(mllp_read(s))[1] == "AA"
        (row,) = server.journal.messages.search(control_id="DURABLE")
        stored = server.journal.messages.get(row.id)  # search reads metadata only; the body is read by id
        assert stored is not None and stored.raw == payload and row.channel == server.channel.id

    def test_too_large(self, tmp_path: Path) -> None:
        """A frame over max_message_bytes gets AR with the reason, then the connection closes."""
        project = make_project(tmp_path)
        ch = project / "config" / "channels" / "adt-mllp.yaml"
        ch.write_text(ch.read_text().replace("    port:", "    max_message_bytes: 2048\n    port:"))
        srv = Server(project)
        try:
            with srv.connect() as s:
                s.sendall(b"\x0b" + adt("BIG") + b"X" * 4096 + b"\x1c\r")
                ack = mllp_read(s)
                assert msa(ack)[1] == "AR" and b"larger than 2048 bytes" in ack
                assert s.recv(10) == b""
        finally:
            srv.close()


class TestDuplicates:
    def test_same_facility_and_control_id(self, server: Server) -> None:
        """The same MSH-4 + MSH-10 again gets AA again, is journaled once, and the repeat is an event."""
        with server.connect() as s:
            for _ in range(2):
                s.sendall(b"\x0b" + adt("DUP-1") + b"\x1c\r")
                assert msa(mllp_read(s))[1:3] == ["AA", "DUP-1"]
        (row,) = server.journal.messages.search(control_id="DUP-1")
        assert [e["status"] for e in server.journal.messages.events(row.id) if e["stage"] == "intake"] == ["received",
                                                                                              "duplicate"]

    def test_window_zero_turns_it_off(self, tmp_path: Path) -> None:
        """With duplicate_window_s: 0 every message is processed."""
        with running(configure(make_project(tmp_path), "    duplicate_window_s: 0\n")) as srv, srv.connect() as s:
            for _ in range(2):
                s.sendall(b"\x0b" + adt("DUP-2") + b"\x1c\r")
                assert msa(mllp_read(s))[1] == "AA"
            assert len(srv.journal.messages.search(control_id="DUP-2")) == 2


def wait_for(check: Callable[[], object], timeout: float = 5.0) -> object:
    """Poll until `check()` is truthy (lazy journal events commit within ~50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class TestJournalEvents:
    def test_ack_sent_event_has_code_and_latency(self, server: Server) -> None:
        """After the AA, the message's timeline holds an `ack` event with the code, latency and connection."""
        with server.connect() as s:
            s.sendall(b"\x0b" + adt("EV-1") + b"\x1c\r")
            assert msa(mllp_read(s))[1] == "AA"
        (row,) = server.journal.messages.search(control_id="EV-1")
        events = wait_for(lambda: [e for e in server.journal.messages.events(row.id) if e["stage"] == "ack"])
        assert isinstance(events, list)
        (ack,) = events
        assert ack["status"] == "AA"
        assert 0 < ack["detail"]["latency_ms"] < 5000
        (conn,) = server.journal.connections.recent()
        assert ack["detail"]["connection"] == conn["id"]

    def test_unreadable_message_ack_event_is_ar(self, server: Server) -> None:
        """Garbage is journaled as failed, answered AR, and the AR is on its timeline."""
        with server.connect() as s:
            s.sendall(b"\x0bNOT HL7 AT ALL\x1c\r")
            assert msa(mllp_read(s))[1] == "AR"
        (row,) = server.journal.messages.search(status="failed")
        wait_for(lambda: [e for e in server.journal.messages.events(row.id)
                          if e["stage"] == "ack" and e["status"] == "AR"])

    def test_connection_open_and_close(self, server: Server) -> None:
        """Each connection is a row: peer, opened, closed, how many messages, how it ended."""
        with server.connect() as s:
            for i in range(3):
                s.sendall(b"\x0b" + adt(f"EV-C{i}") + b"\x1c\r")
                assert msa(mllp_read(s))[1] == "AA"
        done = wait_for(lambda: [c for c in server.journal.connections.recent() if c["closed_at"]])
        assert isinstance(done, list)
        (conn,) = done
        assert conn["channel"] == server.channel.id and conn["peer"].startswith("127.0.0.1:")
        assert conn["messages"] == 3 and conn["outcome"] == "closed"
        assert conn["opened_at"] <= conn["closed_at"]

    def test_refused_connection_is_counted_not_journaled(self, tmp_path: Path) -> None:
        """A connection refused by the allow list is counted by reason; no journal row (a flood of them
        wrote 1,961 rows in 10 s)."""
        from engine import metrics

        def refused() -> float:
            return metrics.REGISTRY.get_sample_value(
                "wasla_mllp_connections_refused_total", {"channel": "adt-mllp", "reason": "allow"}) or 0.0

        before = refused()
        with running(configure(make_project(tmp_path), "    allow: [10.0.0.0/8]\n")) as srv:
            with contextlib.suppress(OSError), srv.connect() as s:
                s.settimeout(5)
                s.recv(10)
            wait_for(lambda: refused() == before + 1)
            time.sleep(0.2)  # lazy journal writes would have landed
            assert srv.journal.connections.recent() == []


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A second engine on the same port says which channel file and address, not a traceback."""
    import subprocess

    from tests.support import WASLA, engine, port_of

    project = make_project(tmp_path)
    with engine(project):
        done = subprocess.run([WASLA, "run", "--config", str(project / "config")], cwd=project, capture_output=True,
                              timeout=60)
    assert done.returncode == 2
    assert f"adt-mllp.yaml: input.mllp: cannot listen on 127.0.0.1:{port_of(project)}: Address already in use" \
        in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


class TestLimits:
    def test_idle_timeout(self, tmp_path: Path) -> None:
        """A silent connection is closed after idle_timeout_s."""
        with running(configure(make_project(tmp_path), "    idle_timeout_s: 0.3\n")) as srv, srv.connect() as s:
            s.settimeout(5)
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert 0.2 < time.monotonic() - t0 < 4

    def test_max_connections(self, tmp_path: Path) -> None:
        """Past max_connections a new connection is closed at once; the others keep working."""
        with running(configure(make_project(tmp_path), "    max_connections: 1\n")) as srv, srv.connect() as a:
            a.sendall(b"\x0b" + adt("MAX-1") + b"\x1c\r")
            assert msa(mllp_read(a))[1] == "AA"
            with srv.connect() as b:
                b.settimeout(5)
                with contextlib.suppress(ConnectionResetError):
                    assert b.recv(10) == b""

    def test_allow_list(self, tmp_path: Path) -> None:
        """A source address outside `allow` is refused before any byte is read."""
        with running(configure(make_project(tmp_path), "    allow: [10.0.0.0/8]\n")) as srv, srv.connect() as s:
            s.settimeout(5)
            try:
                s.sendall(b"\x0b" + adt("DENIED") + b"\x1c\r")
                assert s.recv(10) == b""
            except (ConnectionResetError, BrokenPipeError):
                pass
            assert srv.journal.messages.search(control_id="DENIED") == []


class TestTLS:
    @pytest.fixture
    def pki(self, tmp_path: Path) -> dict[str, Path]:
        from tests.channels.certs import pki

        return pki(tmp_path)

    def _project(self, tmp_path: Path, pki: dict[str, Path], extra: str = "") -> Path:
        project = make_project(tmp_path / "p")
        return configure(project, f"    tls:\n      cert: {pki['server']}\n      key: {pki['server_key']}\n"
                                  f"      client_ca: {pki['ca']}\n{extra}")

    def _client(self, pki: dict[str, Path], cert: str, port: int) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.load_cert_chain(str(pki[cert]), str(pki[f"{cert}_key"]))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def test_mutual_tls(self, tmp_path: Path, pki: dict[str, Path]) -> None:
        """A client with a certificate from the channel's CA is served over TLS."""
        with running(self._project(tmp_path, pki)) as srv, self._client(pki, "lab", srv.input.port) as s:
            s.sendall(b"\x0b" + adt("TLS-1") + b"\x1c\r")
            assert msa(mllp_read(s))[1:3] == ["AA", "TLS-1"]

    def test_rejected_client_certificate(self, tmp_path: Path, pki: dict[str, Path]) -> None:
        """A certificate from another CA fails the handshake; nothing is journaled."""
        with running(self._project(tmp_path, pki)) as srv:
            with pytest.raises((ssl.SSLError, ConnectionError)), self._client(pki, "rogue", srv.input.port) as s:
                s.sendall(b"\x0b" + adt("ROGUE") + b"\x1c\r")
                mllp_read(s)
            assert srv.journal.messages.search(control_id="ROGUE") == []

    def test_plain_tcp_to_tls_port(self, tmp_path: Path, pki: dict[str, Path]) -> None:
        """A client speaking plain MLLP to a TLS channel gets no ACK and nothing is journaled."""
        with running(self._project(tmp_path, pki)) as srv, srv.connect() as s:
            s.settimeout(5)
            s.sendall(b"\x0b" + adt("PLAIN") + b"\x1c\r")
            with contextlib.suppress(ConnectionResetError):
                assert b"MSA|" not in s.recv(100)
            assert srv.journal.messages.search(control_id="PLAIN") == []

    def test_facility_binding(self, tmp_path: Path, pki: dict[str, Path]) -> None:
        """A certificate bound to other facilities than MSH-4 gets AR; the refusal is journaled as an audit event."""
        extra = "      client_facilities:\n        lab-central: [LABCENTRAL]\n"
        with running(self._project(tmp_path, pki, extra)) as srv, self._client(pki, "lab", srv.input.port) as s:
            s.sendall(b"\x0b" + adt("BIND-1") + b"\x1c\r")  # MSH-4 is "1"
            ack = mllp_read(s)
            assert msa(ack)[1:3] == ["AR", "BIND-1"] and b"not authorised" in ack
            ok = adt("BIND-2").replace(b"|AccMgr|1|", b"|AccMgr|LABCENTRAL|")
            s.sendall(b"\x0b" + ok + b"\x1c\r")
            assert msa(mllp_read(s))[1:3] == ["AA", "BIND-2"]
            (row,) = srv.journal.messages.search(control_id="BIND-1")
            assert row.status == "failed"
            assert srv.journal.messages.events(row.id)[0]["detail"]["audit"] == "sender_mismatch"


class TestInterop:
    def test_python_hl7_mllp_send_whole_corpus(self, tmp_path: Path) -> None:
        """python-hl7's `mllp_send` sends all 139 corpus messages; each ACK parses and MSA-2 = its MSH-10.

        In `acknowledgment: original`: two corpus messages ask for no ACK at all (MSH-15/16 =
        NE/NE), which mllp_send, waiting for one reply per message, cannot take.
        """
        import subprocess
        import sys

        import hl7
        import hl7.client

        from engine.hl7v2 import decode, parse
        from tests.support import CORPUS

        blob = tmp_path / "corpus.hl7"
        blob.write_bytes(b"".join(p.read_bytes() + b"\n" for p in sorted(CORPUS.glob("*.hl7"))))
        with blob.open("rb") as fh:
            expected = [parse(decode(m)).control_id for m in hl7.client.read_loose(fh)]
        assert len(expected) == len(list(CORPUS.glob("*.hl7"))) == 139
        tool = Path(sys.executable).with_name("mllp_send")
        with running(configure(make_project(tmp_path / "p"), "    acknowledgment: original\n")) as server:
            result = subprocess.run([str(tool), "--loose", "--file", str(blob), "--port", str(server.input.port),
                                     "127.0.0.1"], capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr
        acks = [a for a in result.stdout.decode().replace("\n", "\r").split("MSH|") if a.strip()]
        assert len(acks) == 139
        seen = []
        for text in acks:
            ack = hl7.parse("MSH|" + text.strip("\r"))
            assert str(ack.segment("MSH")[9][0][0]) == "ACK"
            assert str(ack.segment("MSA")[1]) == "AA"
            seen.append(str(ack.segment("MSA")[2]))
        assert seen == expected
