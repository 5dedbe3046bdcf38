"""HL7 v2 over MLLP: an asyncio server that answers each message once it is durable.

Framing per the MLLP spec (VT … FS CR), tolerant of what real senders do: bytes before VT
are skipped, a missing CR after FS is accepted, several frames in one read or one frame over
many reads are both fine. Frames of one connection are handled in order; while a connection
has too many frames waiting, reading from it pauses (TCP backpressure) rather than dropping.

This is the foundation's channel; the MLLP issue adds TLS, enhanced-mode ACKs, batches and
duplicate detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import structlog

from engine.config import ChannelConfig
from engine.hl7v2.ack import build_ack
from engine.intake import Intake, Receipt
from engine.logs import error_fields

__all__ = ["MLLPInput", "frame"]

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
_log = structlog.get_logger("wasla.mllp")
_MAX_PENDING = 32


def frame(payload: bytes) -> bytes:
    return VT + payload + FS + CR


def _now() -> datetime:
    return datetime.now(UTC)


def _subject(cert: dict[str, Any] | None) -> str:
    """The commonName of a verified client certificate ('' without one)."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def _in(ip: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


def ack_for(receipt: Receipt, now: datetime) -> bytes:
    control = receipt.message_id.replace("-", "")[:20]
    if receipt.accepted:
        text = build_ack(receipt.message, "AA", control_id=control, now=now)
    elif receipt.error is not None:
        e = receipt.error
        text = build_ack(receipt.message, "AR", control_id=control, now=now, text=e.message, error_code=e.code,
                         segment=e.segment, sequence=e.sequence, field=e.field)
    else:
        text = build_ack(receipt.message, "AE", control_id=control, now=now, text=receipt.reason, error_code="207")
    return text.encode("utf-8")


class _Connection(asyncio.Protocol):
    def __init__(self, server: MLLPInput) -> None:
        self.server = server
        self.buffer = bytearray()
        self.frames: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.worker: asyncio.Task[None] | None = None
        self.peer = ""
        self.subject = ""
        self.senders: frozenset[str] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.busy = False
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        srv = self.server
        refusal = srv.refuse(peer[0] if peer else "")
        if refusal:
            _log.warning("mllp_connection_refused", channel=srv.channel.id, peer=self.peer, reason=refusal)
            transport.abort()
            return
        self.subject = _subject(transport.get_extra_info("peercert"))
        self.senders = srv.senders_for(self.subject)
        srv.connections.add(self)
        self.worker = asyncio.ensure_future(self._work())
        self._touch()
        _log.info("mllp_connection_open", channel=srv.channel.id, peer=self.peer, client=self.subject or None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self not in self.server.connections:
            return
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.frames.append(b"")  # sentinel: finish what is queued, then stop
        self.wakeup.set()
        _log.info("mllp_connection_closed", channel=self.server.channel.id, peer=self.peer,
                  messages=self.count, error=exc.__class__.__name__ if exc else None)

    def _touch(self) -> None:
        timeout = self.server.idle_timeout
        if timeout <= 0:
            return
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(timeout, self._idle_close)

    def _idle_close(self) -> None:
        if self.frames or self.busy:
            self._touch()
            return
        _log.info("mllp_idle_timeout", channel=self.server.channel.id, peer=self.peer)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._touch()
        self.buffer += data
        limit = self.server.max_bytes
        while True:
            while self.buffer[:1] in (CR, b"\n"):  # the CR after FS that arrived late, or stray line ends
                del self.buffer[:1]
            start = self.buffer.find(VT)
            if start == -1:
                if self.buffer:
                    _log.warning("mllp_bytes_outside_frame", channel=self.server.channel.id, skipped=len(self.buffer))
                self.buffer.clear()
                return
            if start > 0:
                _log.warning("mllp_bytes_before_frame", channel=self.server.channel.id, skipped=start)
                del self.buffer[:start]
            end = self.buffer.find(FS, 1)
            if end == -1:
                if len(self.buffer) > limit + 1:
                    self._too_large()
                return
            payload = bytes(self.buffer[1:end])
            cut = end + 2 if self.buffer[end + 1 : end + 2] == CR else end + 1
            del self.buffer[:cut]
            if len(payload) > limit:
                self._too_large()
                return
            self.frames.append(payload)
            self.wakeup.set()
            if len(self.frames) >= _MAX_PENDING and not self.paused and self.transport:
                self.transport.pause_reading()
                self.paused = True

    def _too_large(self) -> None:
        _log.warning("mllp_frame_too_large", channel=self.server.channel.id, limit=self.server.max_bytes)
        text = build_ack(None, "AR", control_id="", now=self.server.clock(), error_code="207",
                         text=f"message larger than {self.server.max_bytes} bytes")
        if self.transport:
            self.transport.write(frame(text.encode()))
            self.transport.close()
        self.buffer.clear()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.frames:
                self.wakeup.clear()
                await self.wakeup.wait()
            payload = self.frames.popleft()
            if payload == b"" and self.transport is not None and self.transport.is_closing():
                return
            if self.paused and len(self.frames) < _MAX_PENDING // 2 and self.transport:
                self.transport.resume_reading()
                self.paused = False
            self.busy = True
            self.count += 1
            try:
                receipt = await loop.run_in_executor(self.server.executor, self.server.receive, payload, self.peer,
                                                     self.senders, self.subject)
                reply = ack_for(receipt, self.server.clock())
            except Exception as exc:  # noqa: BLE001 - the sender gets AE, the operator the error class
                _log.error("mllp_intake_error", channel=self.server.channel.id, **error_fields(exc))
                reply = build_ack(None, "AE", control_id="", now=self.server.clock(), error_code="207",
                                  text="message not accepted: journal unavailable, resend later").encode()
            self.busy = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame(reply))


class MLLPInput:
    """The inbound connector `mllp`: listens on `host:port` for one channel."""

    def __init__(self, channel: ChannelConfig, intake: Intake, executor: Executor,
                 clock: Callable[[], datetime] = _now) -> None:
        self.channel = channel
        self.intake = intake
        self.executor = executor
        self.clock = clock
        self.host = str(channel.input.get("host", "127.0.0.1"))
        self.port = int(channel.input["port"])
        self.max_bytes = int(channel.input.get("max_message_bytes", 16 * 1024 * 1024))
        self.connections: set[_Connection] = set()
        self.idle_timeout = float(channel.input.get("idle_timeout_s", 300))
        self.max_connections = int(channel.input.get("max_connections", 100))
        self.allow = [ipaddress.ip_network(n, strict=False) for n in channel.input.get("allow", ())]
        tls = channel.input.get("tls") or {}
        bound = tls.get("client_facilities") or {}
        self.bindings: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in bound.items()}
        self._server: asyncio.base_events.Server | None = None

    def receive(self, payload: bytes, peer: str, senders: frozenset[str] | None = None, client: str = "") -> Receipt:
        return self.intake.receive(self.channel, payload, peer=peer, senders=senders, client=client)

    def refuse(self, ip: str) -> str:
        """Why a new connection from `ip` is refused, or '' to accept it."""
        if self.allow and not any(_in(ip, net) for net in self.allow):
            return "source address not in allow list"
        if len(self.connections) >= self.max_connections:
            return f"max_connections ({self.max_connections}) reached"
        return ""

    def senders_for(self, subject: str) -> frozenset[str] | None:
        """MSH-4 values this client certificate may send for; None when the channel binds none."""
        if not self.bindings:
            return None
        return frozenset(self.bindings.get(subject, ()))

    def _ssl(self) -> ssl.SSLContext | None:
        tls = self.channel.input.get("tls")
        if not tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        if tls.get("client_ca"):
            ctx.load_verify_locations(str(tls["client_ca"]))
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.get("require_client_cert", True) else ssl.CERT_OPTIONAL
        return ctx

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port, reuse_address=True,
                                                ssl=self._ssl())
        _log.info("mllp_listening", channel=self.channel.id, host=self.host, port=self.port,
                  tls=bool(self.channel.input.get("tls")))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport:
                    conn.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
