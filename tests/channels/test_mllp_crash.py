"""kill -9 of the engine while four MLLP senders stream messages, then a restart.

The senders behave like real MLLP clients: a message without an ACK (connection reset, engine
gone) is resent on a new connection until it gets one. After the restart every message that got
AA is delivered, and none twice: each control id appears exactly once in the NDJSON output and
the journal holds exactly one row per message, all delivered.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from engine.store import Journal
from tests.support import adt, make_project, mllp_read, msa, out_lines, port_of, start_engine, stop_engine, wait_port

SENDERS, PER_SENDER, KILL_AFTER = 4, 300, 400


class Sender(threading.Thread):
    """Stop-and-wait MLLP client that resends what was not acknowledged, as a LIS does."""

    def __init__(self, port: int, name: str, count: int) -> None:
        super().__init__(daemon=True)
        self.port, self.prefix, self.count = port, name, count
        self.acked: list[str] = []
        self.resends = 0
        self.refused: list[str] = []
        self.deadline = time.monotonic() + 180

    def run(self) -> None:
        sock: socket.socket | None = None
        i = 0
        while i < self.count and time.monotonic() < self.deadline:
            control = f"{self.prefix}-{i}"
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.sendall(b"\x0b" + adt(control, patient=f"{self.prefix}{i % 20}") + b"\x1c\r")
                code = msa(mllp_read(sock))[1]
            except OSError:  # refused while the engine is down, reset by the kill, timeout
                if sock is not None:
                    sock.close()
                    sock, self.resends = None, self.resends + 1
                time.sleep(0.05)
                continue
            if code == "AA":
                self.acked.append(control)
                i += 1
            else:
                self.refused.append(f"{control}: {code}")
                time.sleep(0.05)
        if sock is not None:
            sock.close()


def _bundle_controls(project: Path) -> Counter[str]:
    return Counter(orjson.loads(line)["identifier"]["value"] for line in out_lines(project))


def _crash_and_restart(project: Path, env: dict[str, str]) -> Journal:
    port = port_of(project)
    first = start_engine(project, env, name="first")
    try:
        wait_port(port, proc=first)
        senders = [Sender(port, f"S{n}", PER_SENDER) for n in range(SENDERS)]
        for s in senders:
            s.start()
        while sum(len(s.acked) for s in senders) < KILL_AFTER and any(s.is_alive() for s in senders):
            time.sleep(0.01)
    finally:
        stop_engine(first, signal.SIGKILL)
    acked_at_kill = sum(len(s.acked) for s in senders)
    second = start_engine(project, env, name="second")
    try:
        for s in senders:
            s.join(200)
        expected = {c for s in senders for c in s.acked}
        assert len(expected) == SENDERS * PER_SENDER, [s.refused for s in senders]
        assert acked_at_kill < SENDERS * PER_SENDER, "the kill came after the last message: nothing was tested"
        assert sum(s.resends for s in senders) >= 1, "no sender had a message in flight at the kill"
        deadline = time.monotonic() + 90
        while sum(_bundle_controls(project).values()) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # would a second copy of anything arrive?
        delivered = _bundle_controls(project)
        assert set(delivered) == expected
        assert [c for c, n in delivered.items() if n > 1] == []
    finally:
        stop_engine(second)
    return Journal(env.get("WASLA_STORE_URL") or f"sqlite:///{project / 'var' / 'wasla.db'}")


class TestKill9UnderLoad:
    def test_embedded(self, tmp_path: Path) -> None:
        """memory:// + SQLite: the journal alone brings back what the dead process held in memory."""
        j = _crash_and_restart(make_project(tmp_path), {})
        try:
            assert j.messages.counts() == {"delivered": SENDERS * PER_SENDER}
        finally:
            j.close()

    @pytest.mark.rabbitmq
    @pytest.mark.postgres
    def test_rabbitmq_postgres(self, tmp_path: Path, rabbitmq_url: str, postgres_url: str) -> None:
        env = {"WASLA_BROKER_URL": rabbitmq_url, "WASLA_STORE_URL": postgres_url}
        j = _crash_and_restart(make_project(tmp_path), env)
        try:
            assert j.messages.counts() == {"delivered": SENDERS * PER_SENDER}
        finally:
            j.close()
