"""Property test: ≥ 50,000 random and mutated frames on one MLLP server.

It never crashes; every well-framed payload gets exactly one ACK, in order; arbitrary byte
streams (framing bytes included) get ACKs or a clean close; a valid message afterwards gets AA.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.channels.test_mllp import Server, configure
from tests.support import CORPUS, adt, make_project, mllp_read, msa

FRAMES = int(os.environ.get("WASLA_FUZZ_FRAMES", "50000"))
PER_EXAMPLE = 200  # a multiple of CONNECTIONS
CONNECTIONS = 4
SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("*.hl7"))[:40]]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A frame body with no framing bytes: random bytes, or a corpus message mutated."""
    kind = draw(st.sampled_from(["random", "mutate", "truncate", "header"]))
    if kind == "random":
        data = draw(st.binary(max_size=300))
    elif kind == "header":
        data = b"MSH" + draw(st.binary(max_size=40)) + b"\r" + draw(st.binary(max_size=80))
    else:
        data = bytearray(draw(st.sampled_from(SEEDS)))
        if kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            for _ in range(draw(st.integers(1, 8))):
                pos = draw(st.integers(0, max(len(data) - 1, 0)))
                data[pos:pos + 1] = draw(st.binary(min_size=0, max_size=3))
        data = bytes(data)
    return data.replace(b"\x0b", b"").replace(b"\x1c", b"")


def _exchange(port: int, bodies: list[bytes], out: list[int], errors: list[str]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"".join(b"\x0b" + b + b"\x1c\r" for b in bodies))
            for _ in bodies:
                reply = mllp_read(s)
                assert reply.startswith((b"BHS", b"FHS")) or msa(reply)[1] in ("AA", "AE", "AR")  # batch or one ACK
                out.append(1)
    except Exception as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(repr(exc))


def test_fuzz_frames(tmp_path: Path) -> None:
    """Every framed payload, however broken, gets one ACK; the server survives and still says AA."""
    # original mode: some corpus messages say MSH-15/16 = NE/NE (no ACK wanted); here every frame must get one
    server = Server(configure(make_project(tmp_path), "    acknowledgment: original\n"))
    sent = [0]
    try:
        @settings(max_examples=-(-FRAMES // PER_EXAMPLE) + 5, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(payloads(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
        def framed(bodies: list[bytes]) -> None:
            acks: list[int] = []
            errors: list[str] = []
            share = len(bodies) // CONNECTIONS
            threads = [threading.Thread(target=_exchange, args=(server.input.port, bodies[i * share:(i + 1) * share],
                                                                acks, errors)) for i in range(CONNECTIONS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == [] and len(acks) == share * CONNECTIONS
            sent[0] += len(acks)

        framed()

        @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.binary(max_size=2000))
        def raw_stream(data: bytes) -> None:
            with socket.create_connection(("127.0.0.1", server.input.port), timeout=30) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):  # ACKs, then a clean close
                    pass

        raw_stream()

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(payloads(), min_size=1, max_size=20))
        def half_closed(bodies: list[bytes]) -> None:
            """Frames, then shutdown(SHUT_WR) at once (nc -N): every frame is answered before the close."""
            with socket.create_connection(("127.0.0.1", server.input.port), timeout=60) as s:
                s.sendall(b"".join(b"\x0b" + b + b"\x1c\r" for b in bodies))
                s.shutdown(socket.SHUT_WR)
                for _ in bodies:
                    reply = mllp_read(s)
                    assert reply.startswith((b"BHS", b"FHS")) or msa(reply)[1] in ("AA", "AE", "AR")
                rest = b""
                while chunk := s.recv(65536):
                    rest += chunk
                assert rest == b""

        half_closed()
        assert sent[0] >= FRAMES
        with socket.create_connection(("127.0.0.1", server.input.port), timeout=30) as s:
            s.sendall(b"\x0b" + adt("AFTER-FUZZ") + b"\x1c\r")
            assert msa(mllp_read(s))[1:3] == ["AA", "AFTER-FUZZ"]
    finally:
        server.close()
