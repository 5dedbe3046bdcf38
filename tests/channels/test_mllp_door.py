"""The MLLP door under hostile or careless senders: half-close, connection limits per source, frame
timeout, refusals counted rather than journaled. Real sockets, the real intake (SQLite journal)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import structlog

from engine import metrics
from tests.channels.test_mllp import configure, running, wait_for
from tests.support import adt, make_project, mllp_read, msa


def _frame(control_id: str) -> bytes:
    return b"\x0b" + adt(control_id) + b"\x1c\r"


def _read_to_end(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def _connect_from(source: str, port: int) -> socket.socket:
    """A client socket bound to `source` (all of 127/8 routes to lo on Linux)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _refused(channel: str, reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("wasla_mllp_connections_refused_total",
                                             {"channel": channel, "reason": reason}) or 0.0


class TestHalfClose:
    def test_ack_after_shutdown_wr(self, tmp_path: Path) -> None:
        """A sender that sends its frame then shuts its write side (`nc -N`) still gets its AA, then a close."""
        with running(make_project(tmp_path)) as srv, srv.connect() as s:
            s.sendall(_frame("HALF-1"))
            s.shutdown(socket.SHUT_WR)
            assert msa(mllp_read(s))[1:3] == ["AA", "HALF-1"]
            assert _read_to_end(s) == b""

    def test_every_frame_read_before_the_shutdown_is_answered(self, tmp_path: Path) -> None:
        """Three frames then SHUT_WR: three ACKs in order; a frame cut in half at the shutdown is not answered."""
        with running(make_project(tmp_path)) as srv, srv.connect() as s:
            s.sendall(b"".join(_frame(f"HALF-{i}") for i in range(3)) + _frame("CUT")[:50])
            s.shutdown(socket.SHUT_WR)
            assert [msa(mllp_read(s))[1:3] for _ in range(3)] == [["AA", f"HALF-{i}"] for i in range(3)]
            assert _read_to_end(s) == b""
            assert srv.journal.messages.search(control_id="CUT") == []
            assert len(srv.journal.messages.search(control_id="HALF-2")) == 1


class TestConnectionLimits:
    def test_idle_connections_from_one_source_do_not_lock_out_another(self, tmp_path: Path) -> None:
        """100 idle connections from 127.0.0.1 fill only that address's share; 127.0.0.2 still gets AA."""
        with running(make_project(tmp_path)) as srv:
            channel = srv.channel.id
            before = _refused(channel, "max_connections_per_source")
            idle: list[socket.socket] = []
            try:
                for _ in range(100):
                    with contextlib.suppress(OSError):
                        idle.append(_connect_from("127.0.0.1", srv.input.port))
                wait_for(lambda: _refused(channel, "max_connections_per_source") - before >= 90)
                with _connect_from("127.0.0.2", srv.input.port) as other:
                    other.sendall(_frame("OTHER-SOURCE"))
                    assert msa(mllp_read(other))[1:3] == ["AA", "OTHER-SOURCE"]
            finally:
                for s in idle:
                    s.close()
            assert _refused(channel, "max_connections_per_source") - before == 90  # the default share is 10

    def test_refusals_are_counted_and_logged_once_not_journaled(self, tmp_path: Path) -> None:
        """Refused connections are a metric and one log line per 10 s, not a journal row and a line each."""
        project = configure(make_project(tmp_path), "    max_connections_per_source: 2\n")
        with running(project) as srv, structlog.testing.capture_logs() as logs:
            kept = [_connect_from("127.0.0.1", srv.input.port) for _ in range(2)]
            try:
                for _ in range(30):
                    with contextlib.suppress(OSError), _connect_from("127.0.0.1", srv.input.port) as s:
                        s.settimeout(5)
                        with contextlib.suppress(ConnectionResetError):
                            assert s.recv(10) == b""
                wait_for(lambda: len(srv.journal.connections.recent()) >= 2)
                time.sleep(0.3)  # lazy journal writes settle
                assert len(srv.journal.connections.recent()) == 2  # the two accepted ones, no refused row
            finally:
                for s in kept:
                    s.close()
        lines = [e for e in logs if e["event"] == "mllp_connections_refused"]
        assert len(lines) == 1  # the first; the rest wait for the next 10 s window (flushed at stop)
        assert lines[0]["refused"] == {"max_connections_per_source": 1}
        assert lines[0]["last_source"] == "127.0.0.1"
        assert not [e for e in logs if e["event"] == "mllp_connection_refused"]

    def test_total_limit_still_applies(self, tmp_path: Path) -> None:
        """Past max_connections (all sources together) a new connection is closed at once."""
        extra = "    max_connections: 2\n    max_connections_per_source: 5\n"
        with running(configure(make_project(tmp_path), extra)) as srv:
            with _connect_from("127.0.0.1", srv.input.port), _connect_from("127.0.0.2", srv.input.port):
                wait_for(lambda: len(srv.input.connections) == 2)
                with _connect_from("127.0.0.3", srv.input.port) as third, \
                        contextlib.suppress(ConnectionResetError):
                    assert third.recv(10) == b""
            assert _refused(srv.channel.id, "max_connections") >= 1


class TestFrameTimeout:
    def test_trickling_sender_is_cut_at_the_frame_timeout(self, tmp_path: Path) -> None:
        """A frame sent one byte at a time that is not complete frame_timeout_s after its first byte: the
        frames before it are answered, the connection closes, the partial frame is not journaled."""
        extra = "    frame_timeout_s: 0.5\n"
        with running(configure(make_project(tmp_path), extra)) as srv, srv.connect() as s:
            s.sendall(_frame("BEFORE-TRICKLE"))
            assert msa(mllp_read(s))[1:3] == ["AA", "BEFORE-TRICKLE"]
            started = time.monotonic()
            closed = False
            for byte in _frame("TRICKLE"):
                try:
                    s.sendall(bytes([byte]))
                except OSError:  # reset once the server has closed
                    closed = True
                    break
                time.sleep(0.05)
                if time.monotonic() - started > 20:
                    break
            if not closed:
                s.settimeout(5)
                with contextlib.suppress(ConnectionResetError):
                    assert s.recv(10) == b""
            assert time.monotonic() - started < 20  # the frame would have needed ~40 s at this pace
            assert srv.journal.messages.search(control_id="TRICKLE") == []
            done = wait_for(lambda: [c for c in srv.journal.connections.recent() if c["closed_at"]])
            assert isinstance(done, list) and done[0]["outcome"] == "frame_timeout" and done[0]["messages"] == 1

    def test_bytes_outside_frames_do_not_keep_a_connection_open(self, tmp_path: Path) -> None:
        """Junk trickled without a frame is no activity: the connection closes at idle_timeout_s."""
        with running(configure(make_project(tmp_path), "    idle_timeout_s: 0.5\n")) as srv, srv.connect() as s:
            started = time.monotonic()
            with contextlib.suppress(OSError):
                while time.monotonic() - started < 20:
                    s.sendall(b"x")
                    time.sleep(0.05)
            assert time.monotonic() - started < 20

    def test_slow_but_steady_frames_are_fine(self, tmp_path: Path) -> None:
        """Each frame completing within frame_timeout_s keeps the connection, however many follow."""
        with running(configure(make_project(tmp_path), "    frame_timeout_s: 1\n")) as srv, srv.connect() as s:
            for i in range(3):
                data = _frame(f"STEADY-{i}")
                s.sendall(data[:20])
                time.sleep(0.4)
                s.sendall(data[20:])
                assert msa(mllp_read(s))[1:3] == ["AA", f"STEADY-{i}"]


class TestNoContentInAcks:
    def test_ar_names_the_line_by_position_never_by_its_content(self, tmp_path: Path) -> None:
        """A message with a wrapped line starting with a patient's name gets AR whose ERR-2 is the
        segment's sequence (`^4`), with no character of that line anywhere in the ACK."""
        raw = adt("WRAPPED").replace(b"\nNK1|", b"\nDUCKWORTH^HUEY^JR\nNK1|", 1)
        with running(make_project(tmp_path)) as srv, srv.connect() as s:
            s.sendall(b"\x0b" + raw + b"\x1c\r")
            ack = mllp_read(s)
        err = next(seg for seg in ack.split(b"\r") if seg.startswith(b"ERR|")).split(b"|")
        assert msa(ack)[1] == "AR" and err[2] == b"^4"
        assert b"DUCKW" not in ack and b"HUEY" not in ack


class TestLargeBatch:
    def test_a_batch_over_256_kb_is_split_off_the_event_loop_and_answered(self, tmp_path: Path) -> None:
        """A 1.2 MB batch (its lines split on the executor, not the loop) gets its batch of ACKs."""
        msg = adt("BIG-B1").replace(b"\n", b"\r") + b"ZZZ|1\r" * 100_000
        batch = b"BHS|^~\\&|LIS|CHU|WASLA|HUB|20261124||||B-1\r" + msg + adt("BIG-B2").replace(b"\n", b"\r") \
            + b"BTS|2\r"
        with running(make_project(tmp_path)) as srv, srv.connect() as s:
            s.settimeout(60)
            s.sendall(b"\x0b" + batch + b"\x1c\r")
            reply = mllp_read(s)
        msas = [seg.split(b"|")[1:3] for seg in reply.split(b"\r") if seg.startswith(b"MSA|")]
        assert reply.startswith(b"BHS") and msas == [[b"AA", b"BIG-B1"], [b"AA", b"BIG-B2"]]
