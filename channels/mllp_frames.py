"""The MLLP envelope, shared by the listener (`channels.mllp`) and the sender (`channels.mllp_sender`).

A frame is VT, the payload, FS, CR (HL7 v2 MLLP release 2 without its acknowledgment layer).
Reading frames is not here: the listener tolerates what real senders do and the sender reads
one answer at a time, so each reads in its own way; both write frames with `frame`.
"""

from __future__ import annotations

__all__ = ["CR", "FS", "VT", "frame"]

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


def frame(payload: bytes) -> bytes:
    """The payload in its MLLP envelope: VT payload FS CR."""
    return VT + payload + FS + CR
