"""HL7 v2 batches: FHS/BHS … MSH … BTS/FTS split into messages, and the batch acknowledgement.

A batch is split on segment boundaries without re-encoding: each message keeps its exact
bytes (and line endings) from its MSH to the next MSH or trailer, so the journal holds what
the sender sent. The answer is a batch of ACKs (HL7 v2.5 §2.10.3): [FHS] BHS, one ACK per
message in order, BTS with the count, [FTS]; BHS-12/FHS-12 reference the sender's control ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from engine.errors import ParseError

__all__ = ["Batch", "batch_ack", "is_batch", "split_batch"]

_LINE = re.compile(rb"[^\r\n]*(?:[\r\n]+|$)")  # blank lines ride with the line before: one step, not one each
_HEADERS = (b"FHS", b"BHS")
_TRAILERS = (b"BTS", b"FTS")


@dataclass
class Batch:
    """A split HL7 v2 batch: its FHS and BHS segments as text, each message's exact bytes in order, and
    the count BTS-1 declared.
    """

    fhs: str | None = None
    bhs: str | None = None
    messages: list[bytes] = field(default_factory=list)
    declared: int | None = None  # BTS-1, when the sender gave it


def is_batch(raw: bytes) -> bool:
    return raw.lstrip(b"\xef\xbb\xbf\r\n ")[:3] in _HEADERS


def _text(segment: bytes) -> str:
    return segment.rstrip(b"\r\n").decode("latin-1")


def split_batch(raw: bytes) -> Batch:
    """Split a batch frame; segments outside any message (other than headers/trailers) are an error."""
    batch = Batch()
    start: int | None = None
    pos = 0
    for number, m in enumerate(_LINE.finditer(raw), 1):
        line, begin = m.group(), m.start()
        pos = m.end()
        if not line:
            break
        seg = line.lstrip(b"\xef\xbb\xbf")[:3]
        if seg in (b"MSH", *_HEADERS, *_TRAILERS) and start is not None:
            batch.messages.append(raw[start:begin])
            start = None
        if seg == b"MSH":
            start = begin
        elif seg == b"FHS":
            batch.fhs = _text(line.lstrip(b"\xef\xbb\xbf"))
        elif seg == b"BHS":
            batch.bhs = _text(line.lstrip(b"\xef\xbb\xbf"))
        elif seg == b"BTS":
            text = _text(line)
            count = text[4:].split(text[3:4] or "|")[0]
            batch.declared = int(count) if count.isdigit() else None
        elif seg in _TRAILERS or not line.strip():
            continue
        elif start is None:
            raise ParseError(f"line {number} of the batch is outside any message (expected MSH, BHS, BTS, FHS or FTS)",
                             sequence=number, code="100")  # never its first characters: they may be data
    if start is not None:
        batch.messages.append(raw[start:pos])
    return batch


def _header_ack(header: str | None, name: str, control_id: str, ts: str) -> str | None:
    """Our FHS/BHS for the answer: sender and receiver swapped, -12 referencing the sender's -11."""
    if header is None:
        return None
    fs = header[3:4] or "|"
    parts = header.split(fs)
    parts += [""] * (13 - len(parts))
    enc = parts[1] or "^~\\&"
    # parts[n - 1] is field n, as for MSH (field 1 is the separator itself)
    return fs.join([name, enc, parts[4], parts[5], parts[2], parts[3], ts, "", "", "", control_id, parts[10]])


def batch_ack(batch: Batch, acks: list[str], *, control_id: str, now: datetime) -> str:
    """The acknowledgement batch: `acks` are the per-message ACKs (ER7 text), in message order."""
    ts = now.strftime("%Y%m%d%H%M%S")
    fs = (batch.bhs or batch.fhs or "BHS|")[3:4] or "|"
    out: list[str] = []
    fhs = _header_ack(batch.fhs, "FHS", control_id, ts)
    if fhs:
        out.append(fhs)
    out.append(_header_ack(batch.bhs, "BHS", control_id, ts) or fs.join(["BHS", "^~\\&", "", "", "", "", ts]))
    out += [a.rstrip("\r") for a in acks]
    out.append(fs.join(["BTS", str(len(acks))]))
    if fhs:
        out.append(fs.join(["FTS", "1"]))
    return "\r".join(out) + "\r"
