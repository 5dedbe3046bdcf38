"""MLLP forward: the destination `mllp` sends each message's original HL7 v2 to a remote receiver.

Pass-through routing: what goes out is the bytes the sender gave us (segment terminators made
CR, a leading BOM dropped), never a re-encoding. One connection per destination is kept open
and reused; it is dropped after an error, a timeout or `keep_alive_s` of silence.

The remote's ACK decides the outcome:

    AA / CA                 delivered (the location records MSA-2 and the remote's MSH-10)
    AE / AR / CE / CR       PermanentDeliveryError with the remote's MSA-3 / ERR text
    no answer in time,      TransientDeliveryError: retried in-process, then dead-lettered and
    refused, reset,         replayable; the connection is dropped because its stream can no
    MSA-2 not ours          longer be trusted to pair answers with messages

Exactly once is the receiver's duplicate check on (MSH-4, MSH-10) after a resend, as MLLP
itself offers: the journal records the attempt before the bytes leave.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from pathlib import Path

import structlog

from channels.mllp_frames import CR, FS, VT, frame
from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger
from engine.connectors.toolkit import CLIENT_TLS, DestinationConfig, Message, client_ssl_context, decode, parse
from engine.errors import ParseError, PermanentDeliveryError, TransientDeliveryError

__all__ = ["MLLPOutput", "read_ack", "refusal"]

_ACCEPTED = ("AA", "CA")
_log = structlog.get_logger("wasla.mllp.out")


def outbound(raw: bytes) -> bytes:
    """The message as it goes on the wire: CR between segments, no BOM, no trailing blank lines."""
    body = raw.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return body.rstrip(b"\r") + b"\r"


def read_ack(payload: bytes) -> Message:
    """Parse the remote's answer; an answer that is no ACK is the remote's fault, not the message's."""
    try:
        ack = parse(decode(payload))
    except ParseError as exc:
        raise TransientDeliveryError(f"unreadable answer from the remote: {exc.message}") from exc
    if ack.first("MSA") is None:
        raise TransientDeliveryError("the remote answered without an MSA segment")
    return ack


def refusal(ack: Message) -> str:
    """What the remote said when it did not accept: `MSA-1[: MSA-3] (ERR code; texts …)`."""
    msa = ack.first("MSA")
    assert msa is not None
    said = msa.field(1).text + (f": {msa.field(3).text}" if msa.field(3).text else "")
    details: list[str] = []
    for err in ack.all("ERR"):
        # ERR-1 (v2.3/2.4 location^^^code&text), ERR-3 code^text, ERR-7 diagnostic, ERR-8 user message
        for value in (err.field(1).component(4, 1), err.field(1).component(4, 2), err.field(3).component(1),
                      err.field(3).component(2), err.field(7).text, err.field(8).text):
            if value and value not in details:
                details.append(value)
    return said + (f" ({'; '.join(details)})" if details else "")


class _Link:
    """One open connection to the remote, with the bytes of a frame still being read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.last_used = time.monotonic()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            end = self.buffer.find(FS)
            if end != -1:
                start = self.buffer.find(VT)
                payload = bytes(self.buffer[start + 1 if start != -1 and start < end else 0:end])
                rest = self.buffer[end + 1:]
                del self.buffer[:]
                self.buffer += rest.removeprefix(CR)
                return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the remote closed the connection")
            self.buffer += chunk

    def stale(self) -> bool:
        """True when the remote closed or sent something unasked since the last answer."""
        if self.buffer:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


MLLP_OUT_OPTIONS = (
    Field("host", "string", required=True, min_length=1, examples=("lis.chu-rabat.ma",)),
    Field("port", "integer", required=True, minimum=1, maximum=65535),
    Field("connect_timeout_s", "number", exclusive_minimum=0, default=5),
    Field("ack_timeout_s", "number", exclusive_minimum=0, default=30,
          description="No ACK in this time: the connection is dropped and the message retried."),
    Field("keep_alive_s", "number", minimum=0, default=60,
          description="Reuse the open connection if it was used within this time; 0 opens one per message."),
    CLIENT_TLS,
)


class MLLPOutput:
    """The outbound connector `mllp`: forwards the original message and reads the remote ACK.

    Owns one connection at a time, one message in flight on it; options: `MLLP_OUT_OPTIONS`.
    """

    description = ("MLLP forward: the original HL7 v2 message to a remote receiver; its ACK decides delivered "
                   "(AA/CA) or failed (AE/AR/CE/CR).")
    options_spec = MLLP_OUT_OPTIONS

    capabilities = Capabilities(forwards_v2=True)  # the original v2: also what no mapping converted

    def __init__(self, config: DestinationConfig, root: Path) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.host = str(o.host)
        self.port = int(o.port)
        self.connect_timeout = float(o.connect_timeout_s)
        self.ack_timeout = float(o.ack_timeout_s)
        self.keep_alive = float(o.keep_alive_s)
        self.tls = client_ssl_context(o.tls, root)
        self.server_name = str((o.tls.server_name if o.tls else None) or self.host)
        self._link: _Link | None = None
        self._lock = threading.Lock()  # one message in flight per connection: answers pair by order

    def _connect(self) -> _Link:
        if self._link is not None:
            idle = time.monotonic() - self._link.last_used
            if idle < self.keep_alive and not self._link.stale():
                return self._link
            self._drop("idle" if idle >= self.keep_alive else "remote closed or sent unasked bytes")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except ssl.SSLError as exc:
            raise TransientDeliveryError(f"TLS handshake with {self.host}:{self.port} failed: {exc.reason}") from exc
        except OSError as exc:
            raise TransientDeliveryError(f"cannot connect to {self.host}:{self.port}: "
                                         f"{exc.strerror or exc.__class__.__name__}") from exc
        self._link = _Link(sock)
        _log.info("mllp_out_connected", destination=self.id)
        return self._link

    def _drop(self, why: str) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
            _log.info("mllp_out_disconnected", destination=self.id, reason=why)

    def deliver(self, message_id: str, body: bytes, journal: OutputLedger) -> str | None:
        row = journal.get(message_id)
        if row is None:
            raise TransientDeliveryError("the message is not in the journal (yet)")
        payload = outbound(row.raw)
        with self._lock:
            link = self._connect()
            journal.output_writing(message_id, self.id, f"mllp://{self.host}:{self.port}")
            try:
                link.send(payload)
                answer = link.receive(self.ack_timeout)
            except TimeoutError as exc:
                self._drop("no ACK in time")
                raise TransientDeliveryError(f"no ACK from {self.host}:{self.port} within {self.ack_timeout:g} s") \
                    from exc
            except OSError as exc:
                self._drop(exc.__class__.__name__)
                raise TransientDeliveryError(f"connection to {self.host}:{self.port} lost: "
                                             f"{exc.strerror or exc.__class__.__name__}") from exc
            link.last_used = time.monotonic()
            try:
                ack = read_ack(answer)
            except TransientDeliveryError:
                self._drop("unreadable answer")
                raise
        msa = ack.first("MSA")
        assert msa is not None
        if msa.field(2).text != row.control_id:
            self._drop("ACK for another message")
            raise TransientDeliveryError(f"the remote acknowledged control id {msa.field(2).text!r}, "
                                         f"not {row.control_id!r}")
        code = msa.field(1).text
        if code not in _ACCEPTED:
            raise PermanentDeliveryError(f"{self.host}:{self.port} refused the message: {refusal(ack)}")
        return f"mllp://{self.host}:{self.port} {code} {ack.control_id}"

    def close(self) -> None:
        with self._lock:
            self._drop("closing")
