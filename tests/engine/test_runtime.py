"""SIGTERM under load: stop taking messages, finish the work in hand, exit 0; nothing ACKed is left behind."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx

from tests.delivery_support import adt_msg
from tests.support import make_project, mllp_read, ops_port, out_lines, port_of, start_engine, wait_port


def _sender(port: int, first: int, count: int, acked: list[str], stop: threading.Event) -> None:
    """Send until the engine closes the connection; keep the control ids that got AA."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for n in range(first, first + count):
                if stop.is_set():
                    return
                control = f"SD{n:06d}"
                s.sendall(b"\x0b" + adt_msg(n, "A01", control, "DOE") + b"\x1c\r")
                if b"MSA|AA|" + control.encode() in mllp_read(s):
                    acked.append(control)
    except OSError:
        return  # the listener closed: what was not ACKed, a real sender resends to another node


def test_sigterm_mid_load_drains_the_work_in_hand_and_exits_cleanly(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    proc = start_engine(project)
    port = port_of(project)
    wait_port(port, proc=proc)
    ready = f"http://127.0.0.1:{ops_port(project)}/health/ready"
    acked: list[str] = []
    stop = threading.Event()
    senders = [threading.Thread(target=_sender, args=(port, i * 100_000, 2_000, acked, stop)) for i in range(4)]
    for t in senders:
        t.start()
    while len(acked) < 300:
        time.sleep(0.01)
    seen: list[tuple[int, str]] = []

    def watch() -> None:  # readiness from SIGTERM until the port closes
        while proc.poll() is None:
            try:
                r = httpx.get(ready, timeout=1)
                seen.append((r.status_code, r.text))
            except httpx.HTTPError:
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0
    stop.set()
    for t in senders + [watcher]:
        t.join(10)

    lines = [json.loads(x) for x in out_lines(project)]
    controls = [b["identifier"]["value"] for b in lines]
    assert len(acked) >= 300
    assert sorted(controls) == sorted(acked), (len(controls), len(acked))  # all of them, once, before exit
    log = [json.loads(x) for x in (project / "engine.log").read_text().splitlines() if x.startswith("{")]
    events = [e["event"] for e in log]
    assert events.index("engine_stopping") < events.index("engine_drained")
    drained = next(e for e in log if e["event"] == "engine_drained")
    assert drained["left_in_memory"] == 0 and drained["in_flight"] == 0
    assert not any(code == 200 for code, _ in seen[1:]), seen  # never ready again once stopping
