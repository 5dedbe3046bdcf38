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
    """A hex digest of `raw` with segment terminators normalised, empty segments and a leading
    UTF-8 BOM dropped, and MSH-7 blanked (when the bytes start with an MSH segment).

    Works on bytes, before any decoding: cheap (one pass to split, one to hash) and the same for
    any character set whose field separator is one byte.
    """
    data = raw.removeprefix(_BOM)
    segments = [s for s in data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r") if s]
    if segments and segments[0].startswith(b"MSH") and len(segments[0]) > 3:
        sep = segments[0][3:4]
        fields = segments[0].split(sep)
        if len(fields) > 6:  # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1]
            fields[6] = b""
            segments[0] = sep.join(fields)
    return hashlib.blake2b(b"\r".join(segments), digest_size=16).hexdigest()
