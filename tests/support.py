"""Test helpers: a project copy in a temp dir, a real engine process, a real MLLP client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "hl7v2-microsoft"
TOOLS = SHARED / "tools"
WASLA = str(Path(sys.executable).with_name("wasla"))


class BrokerMessage:
    """What a Delivery wraps in place of a broker's message; records which of ack/reject/requeue was called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ack(self) -> None:
        self.calls.append("ack")

    def reject(self, requeue: bool = False) -> None:
        self.calls.append("reject")

    def requeue(self) -> None:
        self.calls.append("requeue")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_project(tmp: Path, port: int | None = None) -> Path:
    """A copy of the shipped config, mappings and nomenclatures, listening on a free port."""
    for name in ("config", "mappings", "nomenclatures"):
        shutil.copytree(ROOT / name, tmp / name)
    port = port or free_port()
    ch = tmp / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("port: 2575", f"port: {port}"))
    main = tmp / "config" / "wasla.yaml"  # the ops endpoint (/metrics) on a free port too
    main.write_text(main.read_text().replace("port: 9464", f"port: {free_port()}"))
    return tmp


def port_of(project: Path) -> int:
    text = (project / "config" / "channels" / "adt-mllp.yaml").read_text()
    return int(text.split("port:")[1].split()[0])


def mllp_send(port: int, payload: bytes, timeout: float = 15.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"\x0b" + payload + b"\x1c\r")
        return mllp_read(s)


_PENDING: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def mllp_read(s: socket.socket) -> bytes:
    """One MLLP frame's payload; bytes of the next frames read along with it are kept for the next call."""
    buf = _PENDING.pop(s, b"")
    while b"\x1c\r" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        buf += chunk
    frame, _, rest = buf.partition(b"\x1c\r")
    if rest:
        _PENDING[s] = rest
    start = frame.find(b"\x0b")
    return frame[start + 1:] if start != -1 else frame


def msa(ack: bytes) -> list[str]:
    for seg in ack.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.decode().split("|")
    raise AssertionError(f"no MSA in {ack!r}")


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"engine exited with {proc.returncode}: {read_log(proc)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


def read_log(proc: subprocess.Popen[bytes]) -> str:
    log = getattr(proc, "log_path", None)
    return Path(log).read_text(errors="replace")[-4000:] if log else ""


def start_engine(project: Path, env: dict[str, str] | None = None, roles: tuple[str, ...] = (),
                 name: str = "engine") -> subprocess.Popen[bytes]:
    args = [WASLA, "run", "--config", str(project / "config")]
    for r in roles:
        args += ["--role", r]
    log_path = project / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(args, cwd=project, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()  # the child holds its own descriptor
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def stop_engine(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def engine(project: Path, env: dict[str, str] | None = None, roles: tuple[str, ...] = (),
           name: str = "engine", wait: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_engine(project, env, roles, name)
    try:
        if wait:
            wait_port(port_of(project), proc=proc)
        yield proc
    finally:
        stop_engine(proc)


def out_lines(project: Path, destination: str = "archive-ndjson") -> list[bytes]:
    folder = project / "var" / "out" / destination
    lines: list[bytes] = []
    for f in sorted(folder.glob("*.ndjson")):
        complete = f.read_bytes().split(b"\n")[:-1]  # the text after the last newline is still being written
        lines += [ln for ln in complete if ln]
    return lines


def wait_lines(project: Path, count: int, timeout: float = 20.0) -> list[bytes]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        lines = out_lines(project)
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    return out_lines(project)


def adt(control_id: str = "599102", patient: str = "10006579") -> bytes:
    raw = (CORPUS / "ADT01-23.hl7").read_bytes()
    return raw.replace(b"|599102|", f"|{control_id}|".encode()).replace(b"10006579", patient.encode())


def ops_port(project: Path) -> int:
    """The project's ops port (console, /metrics, /health): make_project sets a free one."""
    text = (project / "config" / "wasla.yaml").read_text()
    return int(text.split("ops:", 1)[1].split("port:", 1)[1].split()[0])


def delete_wasla_queues(url: str) -> None:
    """Delete every wasla.* queue of the broker (tests and benchmarks start from nothing; retry queues
    carry TTLs that differ between runs, and a stale one would clash at declare)."""
    import contextlib

    from kombu import Connection

    names = {"wasla.transform.0", "wasla.deliver.archive-ndjson.0", "wasla.dead.transform",
             "wasla.dead.archive-ndjson", "wasla.test"}
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # rabbitmqctl needs the broker's host
        vhost = url.rsplit("/", 1)[1] or "/"  # the URL's virtual host: "/" unless WASLA_TEST_AMQP_URL names one
        listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name"], capture_output=True,
                                text=True, timeout=30, check=False).stdout.split()
        names |= {n for n in listed if n.startswith("wasla.")}
    with Connection(url, connect_timeout=5) as conn:
        for name in sorted(names):
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                conn.channel().queue_delete(name)
