"""One TCP connection to the MLLP listener: frames read, queued and handed on in order.

Framing per the MLLP spec (VT … FS CR), tolerant of what real senders do: bytes before VT
are skipped, a missing CR after FS is accepted, several frames in one read or one frame over
many reads are both fine. Frames of one connection are handled in order; while a connection
has too many frames waiting, reading from it pauses (TCP backpressure) rather than dropping.
What each frame is answered is `channels.mllp_ack`'s.

A sender that half-closes (sends its frames, then shuts its write side, as `nc -N` does) still
gets an answer to every frame it sent; then the connection closes. A frame must be complete
`frame_timeout_s` after its first byte, a frame over `max_message_bytes` is answered AR and the
connection closed, and a connection without a complete frame for `idle_timeout_s` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from channels.mllp_ack import Acknowledger
from channels.mllp_frames import CR, FS, VT, frame
from engine.connectors.toolkit import build_ack, message_id

if TYPE_CHECKING:
    from channels.mllp import MLLPInput

__all__ = ["Connection"]

_log = structlog.get_logger("wasla.mllp")
_MAX_PENDING = 32


def _subject(cert: dict[str, Any] | None) -> str:
    """The commonName of a verified client certificate ('' without one)."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


class Connection(asyncio.Protocol):
    """One connection to an `MLLPInput`: the asyncio protocol that reads its frames and hands them on.

    Owns its read buffer, its queue of frames read, its idle and frame timers, its worker task and
    its `Acknowledger`. Guarantees: a connection the listener refuses is aborted before any byte is
    read; frames are answered in the order they were read; at most `_MAX_PENDING` wait before reading
    pauses (nothing is dropped); after a half-close, a timeout or a stop, every frame already read is
    still journaled and answered before the connection closes; the connection's opening and closing
    are journaled and it counts against its source address while open.
    """

    def __init__(self, server: MLLPInput) -> None:
        self.server = server
        self.buffer = bytearray()
        self.frames: deque[bytes | None] = deque()  # None: answer what came before, then stop
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.worker: asyncio.Task[None] | None = None
        self.acks: Acknowledger | None = None  # once accepted
        self.peer = ""
        self.subject = ""
        self.idle: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.frame_started: float | None = None  # when the first byte of the frame being read came
        self.frame_timer: asyncio.TimerHandle | None = None
        self.source = ""  # the peer's address, counted against max_connections_per_source
        self.busy = False
        self.draining = False  # the listener is stopping: read nothing more, answer what was read
        self.id = message_id()
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
        self.acks = Acknowledger(srv, self.id, self.peer, self.subject, srv.senders_for(self.subject), self._write)
        srv.connections.add(self)
        srv.per_source[self.source] = srv.per_source.get(self.source, 0) + 1
        self.worker = asyncio.ensure_future(self._work(self.acks))
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
        count = self.acks.count if self.acks is not None else 0
        self.server.record(lambda j: j.connection_closed(self.id, count, outcome))
        _log.info("mllp_connection_closed", channel=self.server.channel.id, connection=self.id,
                  messages=count, outcome=outcome)

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

    async def _work(self, acks: Acknowledger) -> None:
        """Hand the frames on one at a time, in order; resume reading once the queue is half empty."""
        while True:
            while not self.frames:
                self.wakeup.clear()
                await self.wakeup.wait()
            payload = self.frames.popleft()
            if payload is None:
                await acks.settle()  # application ACKs still owed on this connection (bounded by ack_timeout_s)
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.close()
                return
            if self.paused and not self.draining and len(self.frames) < _MAX_PENDING // 2 and self.transport:
                self.transport.resume_reading()
                self.paused = False
            self.busy = True
            await acks.handle(payload)
            self.busy = False
            self._touch()

    def _write(self, data: bytes) -> bool:
        """Send one reply in its frame; False when the connection is already closing."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(frame(data))
        return True
