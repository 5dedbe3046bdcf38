"""The MLLP inbound channel on a real socket, with the real intake (SQLite journal, embedded broker)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from channels.mllp import MLLPInput
from engine.broker import Broker
from engine.config import load_config
from engine.intake import Intake
from engine.runtime import make_converter, routes_of
from engine.store import Journal
from tests.support import adt, make_project, mllp_read, msa


class Server:
    def __init__(self, project: Path) -> None:
        config = load_config(project / "config", env={})
        self.journal = Journal(config.store.url)
        broker = Broker(config.broker, routes_of(config))
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
        (row,) = server.journal.search(control_id="DURABLE")
        assert row.raw == payload and row.channel == server.channel.id

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
