"""Building HL7 v2 acknowledgements (original mode) by the standard.

MSH with sending and receiving application/facility swapped, MSH-9 `ACK^<trigger>^ACK`,
MSH-10 a fresh control id, MSH-12 echoing the version; MSA-1/MSA-2; for AE/AR an ERR with
an HL7 table 0357 code and the error location (ERR-2..4 from v2.5, ERR-1 before).

Built as text rather than through hl7apy: an ACK is six fields and one lookup, and the
sender is waiting. Enhanced mode (table 0155 conditions in MSH-15/MSH-16) is decided here too.
"""

from __future__ import annotations

import re
from datetime import datetime

from engine.hl7v2.er7 import Message

__all__ = ["ERROR_TEXT", "build_ack", "enhanced_modes", "wants"]

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_MAX_TEXT = 300  # our error sentences are shorter; a longer one quotes something it should not

#: HL7 table 0357 (message error condition codes) used by Wasla.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def _esc(value: str, msg: Message | None) -> str:
    """Escape delimiters in free text we put into the ACK (our own error messages)."""
    if msg is None:
        fs, cs, rs, es, ss = "|", "^", "~", "\\", "&"
    else:
        e = msg.encoding
        fs, cs, rs, es, ss = e.field, e.component, e.repetition, e.escape or "\\", e.subcomponent
    out = value.replace(es, f"{es}E{es}")
    for ch, code in ((fs, "F"), (cs, "S"), (rs, "R"), (ss, "T")):
        out = out.replace(ch, f"{es}{code}{es}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(
    msg: Message | None,
    code: str,
    *,
    control_id: str,
    now: datetime,
    text: str = "",
    error_code: str | None = None,
    segment: str | None = None,
    sequence: int | None = None,
    field: int | None = None,
) -> str:
    """Return the ACK as ER7 text (segments joined by CR, no MLLP framing).

    `msg` is None when the inbound bytes could not even be parsed: the ACK is then
    addressed with empty MSH-3..6 and MSA-2 empty, which is what a sender can still match on
    the connection.
    """
    fs = msg.encoding.field if msg else "|"
    enc = msg.text[4 : msg.text.find(fs, 4)] if msg else "^~\\&"
    cs = enc[0]
    ts = now.strftime("%Y%m%d%H%M%S")
    if msg:
        h = msg.msh
        version = h.field(12).raw or "2.5"
        trigger = h.field(9).component(2)
        sending = (h.field_raw(5), h.field_raw(6), h.field_raw(3), h.field_raw(4))
        processing = h.field_raw(11) or "P"
        their_id = h.field_raw(10)
    else:
        version, trigger, sending, processing, their_id = "2.5", "", ("", "", "", ""), "P", ""
    msh = fs.join(["MSH", enc, *sending, ts, "", f"ACK{cs}{trigger}{cs}ACK", control_id, processing, version])
    old = _version_tuple(version) < (2, 5)
    msa_fields = ["MSA", code, their_id]
    if old and text:
        msa_fields.append(_esc(_bounded(text), msg))
    segments = [msh, fs.join(msa_fields)]
    if code not in ("AA", "CA"):
        ec = error_code or "207"
        err_text = _esc(_bounded(text or ERROR_TEXT.get(ec, "")), msg)
        location = cs.join([_segment_id(segment), str(sequence or ""), str(field or "")]).rstrip(cs)
        if old:
            ss = enc[3] if len(enc) > 3 else "&"
            segments.append(fs.join(["ERR", cs.join([location, ss.join([ec, err_text, "HL70357"])])]))
        else:
            severity = "E"
            segments.append(fs.join(["ERR", "", location, cs.join([ec, ERROR_TEXT.get(ec, ""), "HL70357"]),
                                     severity, "", "", "", err_text]))
    text = "\r".join(segments) + "\r"
    # Values echoed from the message are unescaped on read: a \X1C\ there must not end our frame.
    return text.replace("\x0b", "\\X0B\\").replace("\x1c", "\\X1C\\") if "\x0b" in text or "\x1c" in text else text


def enhanced_modes(msg: Message | None) -> tuple[str, str] | None:
    """(MSH-15, MSH-16) when the sender asks for enhanced mode, None for original mode.

    Both empty means original mode (HL7 v2.5 §2.9.2); when only one is valued, the empty one
    is taken as AL (always), so a sender asking for an application ACK still gets the accept ACK.
    """
    if msg is None:
        return None
    accept, application = msg.msh.field(15).text.upper(), msg.msh.field(16).text.upper()
    if not accept and not application:
        return None
    return accept or "AL", application or "AL"


def wants(condition: str, code: str) -> bool:
    """Whether an acknowledgment with MSA-1 `code` is sent under HL7 table 0155 `condition`."""
    if condition == "NE":
        return False
    if condition == "ER":
        return code in ("CE", "CR", "AE", "AR")
    if condition == "SU":
        return code in ("CA", "AA")
    return True  # AL, or a value outside table 0155: answering is the safe side


def _segment_id(segment: str | None) -> str:
    """ERR-2.1 names a segment by its id; anything else there (the start of an unreadable line: a
    patient's name) is content, never echoed: the sequence number still says which line."""
    return segment if segment and _SEGMENT_ID.fullmatch(segment) else ""


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("^")[0].split(".")[:2])
    except ValueError:
        return (2, 5)
