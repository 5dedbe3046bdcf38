"""Text from messages made safe for the operator's terminal.

Anything a sender controls (MSH-10, MSH-4, a reason quoting a field, a destination's answer, the
raw message) can carry control characters: ESC starts a terminal escape sequence (colours, cursor
moves, window titles, on some terminals worse), CR rewrites the line already printed, and the
8-bit C1 controls (U+0080–U+009F; U+009B is a one-character CSI) do the same on terminals that
honour them. Bidirectional overrides reorder what the eye reads. Every CLI line holding such text
goes through `printable` (or `json_printable` for JSON output), which shows them as `\\x1b`,
`\\r`, `\\x9b`, `\\u202e`: visible, never acted on.
"""

from __future__ import annotations

__all__ = ["json_printable", "printable"]

_C0_C1 = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
# Bidirectional controls and line/paragraph separators: they change how a line reads or where it ends.
_LAYOUT = [0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]

_ALL: dict[int, str] = ({c: f"\\x{c:02x}" for c in _C0_C1} | {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
                       | {c: f"\\u{c:04x}" for c in _LAYOUT})
_LINES = {c: v for c, v in _ALL.items() if c != 0x0A}
# In JSON text C0 controls are already escaped by the encoder; the rest become JSON escapes, so
# the output stays valid JSON with the same value.
_JSON = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), *_LAYOUT)}


def printable(text: str, *, lines: bool = False) -> str:
    """`text` with every control character shown as an escape; with `lines`, newlines are kept."""
    return text.translate(_LINES if lines else _ALL)


def json_printable(text: str) -> str:
    """JSON text (from orjson) with the characters `printable` escapes written as JSON \\u escapes."""
    return text.translate(_JSON)
