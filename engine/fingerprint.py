"""The content fingerprint of an inbound message: what makes a resend the same message.

A sender that resends a message may end its segments with \\n or \\r\\n instead of \\r and stamps
a new MSH-7 (date/time of message); neither changes what the message says. Anything else does:
two messages with the same MSH-4 and MSH-10 but other content are two messages (intake flags the
second CONTROL_ID_REUSED), not a duplicate.
"""

from __future__ import annotations

import hashlib

__all__ = ["content_fingerprint"]

_BOM = b"\xef\xbb\xbf"


def content_fingerprint(raw: bytes) -> str:
    """A hex digest of `raw` with segment terminators normalised (\\n and \\r\\n read as \\r, empty
    segments and a leading UTF-8 BOM dropped) and MSH-7 blanked, when the bytes start with MSH.

    Works on bytes, before any decoding, the same for any character set whose field separator is
    one byte. Cheap: a few scans that copy nothing when the message is already plain \\r-ended,
    then SHA-256 (faster than BLAKE2 here; 128 bits kept). bench/duplicate_check.py measures it.
    """
    data = raw.removeprefix(_BOM)
    if b"\n" in data:
        data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    while b"\r\r" in data:
        data = data.replace(b"\r\r", b"\r")
    data = data.strip(b"\r")
    digest = hashlib.sha256()
    if data.startswith(b"MSH") and len(data) > 3:
        end = data.find(b"\r")
        end = len(data) if end < 0 else end
        sep = data[3:4]
        fields = data[:end].split(sep)
        if len(fields) > 6:  # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1]
            fields[6] = b""
            digest.update(sep.join(fields))
            digest.update(memoryview(data)[end:])
            return digest.hexdigest()[:32]
    digest.update(data)
    return digest.hexdigest()[:32]
