"""HL7 v2 over MLLP: an asyncio server that answers each message once it is durable.

Framing per the MLLP spec (VT … FS CR), tolerant of what real senders do: bytes before VT
are skipped, a missing CR after FS is accepted, several frames in one read or one frame over
many reads are both fine. Frames of one connection are handled in order; while a connection
has too many frames waiting, reading from it pauses (TCP backpressure) rather than dropping.

ACKs: original mode (AA/AE/AR), or enhanced mode when MSH-15/MSH-16 ask (the accept ACK
CA/CE/CR once durable, then the application ACK once transformed, on the same connection);
`ack: after_transform` holds the original-mode ACK until the transform is done. Batches
(FHS/BHS … BTS/FTS) are split, each message journaled, and answered with one batch of ACKs.

A sender that half-closes (sends its frames, then shuts its write side, as `nc -N` does) still
gets an answer to every frame it sent; then the connection closes. Limits: connections in total
and per source address (refused ones are counted in a metric and summed up in one log line per
10 s, not journaled one by one), a frame must be complete `frame_timeout_s` after its first byte,
and a connection without a complete frame for `idle_timeout_s` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import ssl
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter

from channels.mllp_frames import CR, FS, VT, frame
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import ConnectionEvents, InputPorts, Receipt
from engine.connectors.toolkit import (
    ChannelConfig,
    Message,
    batch_ack,
    build_ack,
    enhanced_modes,
    error_fields,
    is_batch,
    message_id,
    metrics,
    split_batch,
    wants,
)
from engine.errors import ConfigError, ParseError

__all__ = ["MLLPInput", "frame"]

_log = structlog.get_logger("wasla.mllp")
_MAX_PENDING = 32
_SPLIT_ON_LOOP = 256 * 1024  # larger batches are split on the executor
_REFUSAL_LOG_S = 10.0  # at most one refusal line per channel this often: refusals can come by the thousand
_REFUSED = Counter("wasla_mllp_connections_refused", "MLLP connections refused, by reason",
                   ["channel", "reason"], registry=metrics.REGISTRY)


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


def ack_for(receipt: Receipt, now: datetime, code: str, text: str = "") -> bytes:
    """The ACK for a receipt with this MSA-1 code; errors carry ERR with the code and location."""
    control = receipt.message_id.replace("-", "")[:20]
    if code in ("AA", "CA"):
        return build_ack(receipt.message, code, control_id=control, now=now).encode("utf-8")
    e = receipt.error
    if e is not None and code in ("AR", "CR"):
        return build_ack(receipt.message, code, control_id=control, now=now, text=e.message, error_code=e.code,
                         segment=e.segment, sequence=e.sequence, field=e.field).encode("utf-8")
    return build_ack(receipt.message, code, control_id=control, now=now, text=text or receipt.reason,
                     error_code="207").encode("utf-8")


class _Connection(asyncio.Protocol):
    def __init__(self, server: MLLPInput) -> None:
        self.server = server
        self.buffer = bytearray()
        self.frames: deque[bytes | None] = deque()  # None: answer what came before, then stop
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.worker: asyncio.Task[None] | None = None
        self.peer = ""
        self.subject = ""
        self.senders: frozenset[str] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.frame_started: float | None = None  # when the first byte of the frame being read came
        self.frame_timer: asyncio.TimerHandle | None = None
        self.source = ""  # the peer's address, counted against max_connections_per_source
        self.replies: set[asyncio.Task[None]] = set()  # this connection's application ACKs in flight
        self.busy = False
        self.draining = False  # the listener is stopping: read nothing more, answer what was read
        self.count = 0
        self.id = message_id()
        self.sent_application_acks: set[str] = set()  # their commit ACKs for these are not answered
        self.outcome = "closed"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.source = str(peer[0]) if peer else ""
        srv = self.server
        refusal = srv.refuse(self.source)
        if refusal:
            srv.refused(refusal, self.source)  # counted, not journaled: a flood must not fill the journal
            transport.abort()
            return
        self.subject = _subject(transport.get_extra_info("peercert"))
        self.senders = srv.senders_for(self.subject)
        srv.connections.add(self)
        srv.per_source[self.source] = srv.per_source.get(self.source, 0) + 1
        self.worker = asyncio.ensure_future(self._work())
        self._touch()
        srv.record(lambda j: j.connection_opened(self.id, srv.channel.id, self.peer, self.subject))
        _log.info("mllp_connection_open", channel=srv.channel.id, connection=self.id, client=self.subject or None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self not in self.server.connections:
            return
        srv = self.server
        srv.connections.discard(self)
        left = srv.per_source.get(self.source, 1) - 1
        if left > 0:
            srv.per_source[self.source] = left
        else:
            srv.per_source.pop(self.source, None)
        for timer in (self.idle, self.frame_timer):
            if timer is not None:
                timer.cancel()
        self.frames.append(None)  # finish what is queued (journaled; its answer cannot be sent), then stop
        self.wakeup.set()
        outcome = f"error: {exc.__class__.__name__}" if exc and self.outcome == "closed" else self.outcome
        self.server.record(lambda j: j.connection_closed(self.id, self.count, outcome))
        _log.info("mllp_connection_closed", channel=self.server.channel.id, connection=self.id,
                  messages=self.count, outcome=outcome)

    def eof_received(self) -> bool | None:
        """The sender shut its write side (`shutdown(SHUT_WR)`, `nc -N`): it still reads. Answer every
        frame already read, then close. A frame cut in half is not answered: the sender resends it."""
        if self.buffer:
            _log.warning("mllp_frame_incomplete", channel=self.server.channel.id, connection=self.id,
                         received=len(self.buffer))
            self.buffer.clear()
        self._finish()
        # TLS has no half-close in asyncio: returning True there only earns a warning, and the transport
        # closes (the frames read are still journaled; their ACKs cannot be sent).
        return None if self.transport is not None and self.transport.get_extra_info("sslcontext") else True

    def _finish(self) -> None:
        """Read nothing more; the worker answers the frames already read, then closes the connection."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError, AttributeError):  # already paused, or reading already ended
                self.transport.pause_reading()
        self.paused = True
        self.draining = True
        self.frames.append(None)
        self.wakeup.set()

    def _touch(self) -> None:
        """Note activity; one timer per connection re-arms itself instead of one timer per read."""
        timeout = self.server.idle_timeout
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        self.last_active = loop.time()
        if self.idle is None:
            self.idle = loop.call_later(timeout, self._idle_check)

    def _idle_check(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self.last_active + self.server.idle_timeout - loop.time()
        if remaining > 0 or self.frames or self.busy or self.buffer:  # a frame being read: frame_timeout_s
            self.idle = loop.call_later(max(remaining, 0.05), self._idle_check)
            return
        self.idle = None
        _log.info("mllp_idle_timeout", channel=self.server.channel.id, connection=self.id)
        self.outcome = "idle_timeout"
        if self.transport is not None:
            self.transport.close()

    def _frame_check(self) -> None:
        """A frame not complete `frame_timeout_s` after its first byte (a sender trickling bytes, one
        that stopped mid-frame): dropped, the frames before it answered, the connection closed."""
        loop = asyncio.get_running_loop()
        self.frame_timer = None
        if self.frame_started is None or self.draining:
            return
        remaining = self.frame_started + self.server.frame_timeout - loop.time()
        if remaining > 0 or self.paused:  # paused: we are the slow side, not the sender
            self.frame_timer = loop.call_later(max(remaining, 0.05), self._frame_check)
            return
        _log.warning("mllp_frame_timeout", channel=self.server.channel.id, connection=self.id,
                     received=len(self.buffer), limit_s=self.server.frame_timeout)
        self.outcome = "frame_timeout"
        self.buffer.clear()
        self.frame_started = None
        self._finish()

    def _frame_clock(self) -> None:
        """Start the frame timer at a frame's first byte; a frame complete (nothing left) stops it."""
        if not self.buffer:
            self.frame_started = None
            return
        timeout = self.server.frame_timeout
        if self.frame_started is not None or timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        self.frame_started = loop.time()
        if self.frame_timer is None:
            self.frame_timer = loop.call_later(timeout, self._frame_check)

    def data_received(self, data: bytes) -> None:
        if self.draining:  # stopping, timed out or half-closed: nothing more is read
            return
        self.buffer += data
        try:
            self._read_frames()
        finally:
            self._frame_clock()

    def _read_frames(self) -> None:
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
            self.frame_started = None  # the next frame's clock starts at its own first byte
            self._touch()
            if len(payload) > limit:
                self._too_large()
                return
            self.frames.append(payload)
            self.wakeup.set()
            if len(self.frames) >= _MAX_PENDING and not self.paused and self.transport:
                self.transport.pause_reading()
                self.paused = True

    def _too_large(self) -> None:
        _log.warning("mllp_frame_too_large", channel=self.server.channel.id, connection=self.id,
                     limit=self.server.max_bytes)
        self.outcome = "too_large"
        text = build_ack(None, "AR", control_id="", now=self.server.clock(), error_code="207",
                         text=f"message larger than {self.server.max_bytes} bytes")
        if self.transport:
            self.transport.write(frame(text.encode()))
            self.transport.close()
        self.buffer.clear()

    async def _work(self) -> None:
        while True:
            while not self.frames:
                self.wakeup.clear()
                await self.wakeup.wait()
            payload = self.frames.popleft()
            if payload is None:
                if self.replies:  # application ACKs still owed on this connection (bounded by ack_timeout_s)
                    await asyncio.gather(*self.replies, return_exceptions=True)
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.close()
                return
            if self.paused and not self.draining and len(self.frames) < _MAX_PENDING // 2 and self.transport:
                self.transport.resume_reading()
                self.paused = False
            self.busy = True
            try:
                if is_batch(payload):
                    await self._batch(payload)
                else:
                    await self._message(payload)
            except Exception as exc:  # noqa: BLE001 - the sender gets AE, the operator the error class
                _log.error("mllp_intake_error", channel=self.server.channel.id, **error_fields(exc))
                self._write(build_ack(None, "AE", control_id="", now=self.server.clock(), error_code="207",
                                      text="message not accepted: journal unavailable, resend later").encode())
            self.busy = False
            self._touch()

    def _write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(frame(data))
        return True

    async def _message(self, payload: bytes) -> None:
        srv = self.server
        started = asyncio.get_running_loop().time()
        self.count += 1
        receipt = await srv.intake.receive_async(
            srv.channel, payload, peer=self.peer, senders=self.senders, client=self.subject,
            executor=srv.executor, wait_if=srv.waits_for_outcome)
        msg = receipt.message
        if msg is not None and receipt.accepted and self._acknowledges_ours(msg):
            # the sender's commit ACK for one of our application ACKs: journaled (filtered), never answered
            _log.info("mllp_ack_received", channel=srv.channel.id, control_id=msg.control_id)
            return
        modes = enhanced_modes(msg) if srv.acknowledgment == "auto" else None
        waits = receipt.watching is not None
        if modes is not None:
            accept, application = modes
            code = "CA" if receipt.accepted else ("CR" if receipt.error is not None else "CE")
            if wants(accept, code):
                self._answer(receipt, code, ack_for(receipt, srv.clock(), code), started)
            if waits:
                task = asyncio.ensure_future(self._application_ack(receipt, application, started))
                srv.tasks.add(task)
                task.add_done_callback(srv.tasks.discard)
                self.replies.add(task)
                task.add_done_callback(self.replies.discard)
            return
        if waits and srv.after_transform:
            code, reply = await self._after_transform(receipt)
        else:
            code = "AA" if receipt.accepted else ("AR" if receipt.error is not None else "AE")
            reply = ack_for(receipt, srv.clock(), code)
        self._answer(receipt, code, reply, started)

    def _acknowledges_ours(self, msg: Message) -> bool:
        """An ACK whose MSA-2 is the control id of an application ACK we sent on this connection."""
        if not self.sent_application_acks or msg.message_type.split("^")[0] != "ACK":
            return False
        msa = msg.first("MSA")
        ref = msa.field(2).text if msa is not None else ""
        if ref in self.sent_application_acks:
            self.sent_application_acks.discard(ref)
            return True
        return False

    async def _after_transform(self, receipt: Receipt) -> tuple[str, bytes]:
        """Wait for the transform: AA when converted, AE with the mapping error (or the timeout) when not."""
        srv = self.server
        assert receipt.watching is not None
        outcome = await srv.intake.wait_outcome(receipt.message_id, receipt.watching, srv.ack_timeout)
        if outcome.ok:
            return "AA", ack_for(receipt, srv.clock(), "AA")
        return "AE", ack_for(receipt, srv.clock(), "AE", outcome.reason)

    async def _application_ack(self, receipt: Receipt, condition: str, started: float) -> None:
        """Enhanced mode: the application ACK once the transform is done, if MSH-16 asks for this outcome."""
        code, reply = await self._after_transform(receipt)
        if wants(condition, code):
            self.sent_application_acks.add(receipt.message_id.replace("-", "")[:20])
            self._answer(receipt, code, reply, started, stage="application_ack")

    def _answer(self, receipt: Receipt, code: str, reply: bytes, started: float, stage: str = "ack") -> None:
        """Send an ACK and journal it: code and latency (an event nobody waits for)."""
        if not self._write(reply):
            return
        latency = (asyncio.get_running_loop().time() - started) * 1000
        with contextlib.suppress(Exception):  # the journal being down already answered AE
            self.server.intake.events.note(receipt.message_id, stage, code, {
                "latency_ms": round(latency, 3), "connection": self.id,
                **({"duplicate": True} if receipt.duplicate_of else {})})

    async def _batch(self, payload: bytes) -> None:
        """A batch: every message journaled (one group commit for all), one batch of ACKs back, in order."""
        srv = self.server
        started = asyncio.get_running_loop().time()
        try:
            if len(payload) > _SPLIT_ON_LOOP:  # linear, but ~0.7 s a MB of short lines: not on the loop
                batch = await asyncio.get_running_loop().run_in_executor(srv.executor, split_batch, payload)
            else:
                batch = split_batch(payload)
        except ParseError as exc:
            receipt = await srv.intake.receive_async(srv.channel, payload, peer=self.peer, client=self.subject,
                                                     executor=srv.executor)  # journaled as failed: not HL7 v2
            self._answer(receipt, "AR", build_ack(None, "AR", control_id=receipt.message_id.replace("-", "")[:20],
                                                  now=srv.clock(), text=exc.message, error_code=exc.code,
                                                  segment=exc.segment).encode(), started)
            return
        self.count += len(batch.messages)
        receipts = await asyncio.gather(*(srv.intake.receive_async(
            srv.channel, raw, peer=self.peer, senders=self.senders, client=self.subject, executor=srv.executor)
            for raw in batch.messages))
        now = srv.clock()
        acks = []
        for r in receipts:
            code = "AA" if r.accepted else ("AR" if r.error is not None else "AE")
            acks.append((r, code, ack_for(r, now, code).decode("utf-8")))
        control = receipts[0].message_id.replace("-", "")[:20] if receipts else message_id().replace("-", "")[:20]
        reply = batch_ack(batch, [a for _, _, a in acks], control_id=control, now=now).encode("utf-8")
        if not self._write(reply):
            return
        latency = round((asyncio.get_running_loop().time() - started) * 1000, 3)
        for r, code, _ in acks:
            with contextlib.suppress(Exception):
                srv.intake.events.note(r.message_id, "ack", code, {"latency_ms": latency, "connection": self.id,
                                                                   "batch": True})
        _log.info("mllp_batch", channel=srv.channel.id, connection=self.id, messages=len(receipts),
                  declared=batch.declared)


_TLS = (
    Field("cert", "string", required=True, path=True, description="Server certificate chain (PEM)."),
    Field("key", "string", required=True, path=True, description="Server private key (PEM)."),
    Field("client_ca", "string", path=True, description="CA bundle that client certificates must chain to."),
    Field("require_client_cert", "boolean", default=True),
    Field("client_facilities", "object",
          schema={"additionalProperties": {"type": "array", "items": {"type": "string"}}},
          description="Client certificate CN → the MSH-4 values it may send for. Others get AR and an audit event."),
)

MLLP_OPTIONS = (
    Field("host", "string", default="127.0.0.1", description="Address to listen on."),
    Field("port", "integer", required=True, minimum=1, maximum=65535, description="TCP port.", examples=(2575,),
          claim="port"),
    Field("max_message_bytes", "integer", minimum=1024, default=16777216,
          description="Larger frames are refused with AR."),
    Field("idle_timeout_s", "number", minimum=0, default=300,
          description="Close a connection without a complete frame for this long (bytes outside a frame do not "
                      "count); 0 never."),
    Field("frame_timeout_s", "number", minimum=0, default=120,
          description="A frame must be complete this long after its first byte, else it is dropped (not answered, "
                      "never journaled), the frames before it answered and the connection closed; 0 never."),
    Field("max_connections", "integer", minimum=1, default=100,
          description="Connections at once, all sources together; further ones are closed at once (counted in "
                      "wasla_mllp_connections_refused_total, not journaled)."),
    Field("max_connections_per_source", "integer", minimum=1, default=10,
          description="Connections at once from one source address, so that one sender cannot take every slot; "
                      "further ones are closed at once (counted, not journaled)."),
    Field("allow", "array", items={"type": "string", "pattern": "^[0-9a-fA-F:.]+(/[0-9]+)?$",
                                   "x-expected": "an IP address or CIDR like 10.0.0.0/8"},
          description="Source addresses allowed to connect; empty: any."),
    Field("tls", "object", fields=_TLS, description="TLS; with client_ca, mutual TLS."),
    Field("duplicate_window_s", "integer", minimum=0, default=86400,
          description="A message with the same MSH-4 and MSH-10 within this many seconds is answered AA again and "
                      "not processed twice; 0 turns this off."),
    Field("ack", "string", enum=("on_receipt", "after_transform"), default="on_receipt",
          description="on_receipt: answer once the message is durable (journal commit, broker confirm). "
                      "after_transform: once it is transformed too; AE with the mapping error when it cannot be."),
    Field("ack_timeout_s", "number", exclusive_minimum=0, default=30,
          description="How long an after_transform ACK or an enhanced-mode application ACK waits for the "
                      "transform; then AE says the message is journaled and will be processed."),
    Field("acknowledgment", "string", enum=("auto", "original"), default="auto",
          description="auto: original mode (AA/AE/AR), or enhanced mode (CA/CE/CR, then the application ACK) "
                      "when MSH-15/MSH-16 ask for it. original: one original-mode ACK whatever MSH-15/MSH-16 say, "
                      "for senders that set them but wait for a single reply."),
    Field("encoding", "string", enum=("auto", "ascii", "latin-1", "utf-8", "cp1252"), default="auto",
          description="auto follows MSH-18; set it when a sender's MSH-18 lies."),
)


class MLLPInput:
    """The inbound connector `mllp`: listens on `host:port` for one channel.

    Owns its listening socket and connections; its options are `MLLP_OPTIONS`, read once into `self.options`.
    """

    description = "HL7 v2 over MLLP (TCP)."
    options_spec = MLLP_OPTIONS

    def __init__(self, channel: ChannelConfig, intake: InputPorts, executor: Executor,
                 clock: Callable[[], datetime] = _now) -> None:
        self.channel = channel
        self.intake = intake
        self.executor = executor
        self.clock = clock
        o = self.options = options_of(self, channel.input)
        self.host = str(o.host)
        self.port = int(o.port)
        self.max_bytes = int(o.max_message_bytes)
        self.connections: set[_Connection] = set()
        self.idle_timeout = float(o.idle_timeout_s)
        self.max_connections = int(o.max_connections)
        self.max_per_source = int(o.max_connections_per_source)
        self.frame_timeout = float(o.frame_timeout_s)
        self.per_source: dict[str, int] = {}
        self._refusals: dict[str, int] = {}  # refused since the last refusal line, by reason
        self._refusal_logged = float("-inf")
        self._refusal_flush: asyncio.TimerHandle | None = None
        self._refused_from = ""
        self.allow = [ipaddress.ip_network(n, strict=False) for n in o.allow or ()]
        bound = (o.tls.client_facilities if o.tls else None) or {}
        self.bindings: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in bound.items()}
        self.after_transform = o.ack == "after_transform"
        self.ack_timeout = float(o.ack_timeout_s)
        self.acknowledgment = str(o.acknowledgment)
        self.tasks: set[asyncio.Task[None]] = set()  # enhanced-mode application ACKs in flight
        self._server: asyncio.base_events.Server | None = None

    def waits_for_outcome(self, msg: Message) -> bool:
        """Whether this message's answer waits for its transform: after_transform, or an application ACK asked for."""
        if self.acknowledgment == "auto":
            modes = enhanced_modes(msg)
            if modes is not None:
                return modes[1] != "NE"
        return self.after_transform

    def record(self, write: Callable[[ConnectionEvents], None]) -> None:
        """Journal a connection event; the journal being down must not break the connection itself."""
        try:
            write(self.intake.events)
        except Exception as exc:  # noqa: BLE001 - logged; the connection goes on
            _log.warning("mllp_event_not_journaled", channel=self.channel.id, **error_fields(exc))

    def refuse(self, ip: str) -> str:
        """Why a new connection from `ip` is refused (a metric label), or '' to accept it."""
        if self.allow and not any(_in(ip, net) for net in self.allow):
            return "allow"
        if self.per_source.get(ip, 0) >= self.max_per_source:
            return "max_connections_per_source"
        if len(self.connections) >= self.max_connections:
            return "max_connections"
        return ""

    def refused(self, reason: str, ip: str) -> None:
        """Count a refused connection; log at most one line per `_REFUSAL_LOG_S` with the counts since the last."""
        _REFUSED.labels(self.channel.id, reason).inc()
        self._refusals[reason] = self._refusals.get(reason, 0) + 1
        self._refused_from = ip
        loop = asyncio.get_running_loop()
        wait = self._refusal_logged + _REFUSAL_LOG_S - loop.time()
        if wait <= 0:
            self._log_refusals()
        elif self._refusal_flush is None:
            self._refusal_flush = loop.call_later(wait, self._log_refusals)

    def _log_refusals(self) -> None:
        self._refusal_flush = None
        if not self._refusals:
            return
        self._refusal_logged = asyncio.get_running_loop().time()
        _log.warning("mllp_connections_refused", channel=self.channel.id, refused=dict(self._refusals),
                     last_source=self._refused_from, connections=len(self.connections),
                     max_connections=self.max_connections, max_connections_per_source=self.max_per_source)
        self._refusals = {}

    def senders_for(self, subject: str) -> frozenset[str] | None:
        """MSH-4 values this client certificate may send for; None when the channel binds none."""
        if not self.bindings:
            return None
        return frozenset(self.bindings.get(subject, ()))

    def _ssl(self) -> ssl.SSLContext | None:
        tls = self.options.tls
        if not tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        if tls.client_ca:
            ctx.load_verify_locations(str(tls.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
        return ctx

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port,
                                                    reuse_address=True, ssl=self._ssl())
        except OSError as exc:  # port taken, address not on this host, certificate file unreadable
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {why}",
                              file=self.channel.file, field="input.mllp") from exc
        _log.info("mllp_listening", channel=self.channel.id, host=self.host, port=self.port,
                  tls=bool(self.options.tls))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop gracefully: accept no connection and read no byte more, answer the frames already
        read (their messages are journaled and ACKed), then close. A frame cut in half is not
        answered: the sender resends it, as it must for anything not ACKed."""
        if self._server is None:
            return
        self._server.close()
        if self._refusal_flush is not None:
            self._refusal_flush.cancel()
            self._log_refusals()
        for conn in list(self.connections):
            conn.draining = True
            if conn.transport and not conn.transport.is_closing():
                conn.transport.pause_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while any(c.frames or c.busy for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport:
                conn.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
