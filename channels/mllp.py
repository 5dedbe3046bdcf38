"""HL7 v2 over MLLP: an asyncio server that answers each message once it is durable.

This module is the listener `MLLPInput` (the entry point `wasla.inputs: mllp`): its options, who may
connect (an allow-list of source addresses, client certificates with the MSH-4 values each may send
for), how many connections at once, TLS, start and a graceful stop. Each connection is a
`channels.mllp_connection.Connection` (framing, timeouts, half-close, backpressure) whose frames are
answered by a `channels.mllp_ack.Acknowledger`.

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
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter

from channels.mllp_connection import Connection
from channels.mllp_frames import frame
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import ConnectionEvents, InputPorts
from engine.connectors.toolkit import ChannelConfig, Message, enhanced_modes, error_fields, metrics
from engine.errors import ConfigError

__all__ = ["MLLPInput", "frame"]

_log = structlog.get_logger("wasla.mllp")
_REFUSAL_LOG_S = 10.0  # at most one refusal line per channel this often: refusals can come by the thousand
_REFUSED = Counter("wasla_mllp_connections_refused", "MLLP connections refused, by reason",
                   ["channel", "reason"], registry=metrics.REGISTRY)


def _now() -> datetime:
    return datetime.now(UTC)


def _in(ip: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


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
    Guarantees: a connection it refuses (allow-list, `max_connections`, `max_connections_per_source`) is
    closed before any byte is read and counted, not journaled; `stop` reads nothing more and answers
    every frame already read (within its grace) before closing.
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
        self.connections: set[Connection] = set()
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
            self._server = await loop.create_server(lambda: Connection(self), self.host, self.port,
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
