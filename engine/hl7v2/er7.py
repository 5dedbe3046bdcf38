"""A lazy ER7 parser for the hot path.

Segments are split once; fields, repetitions, components and subcomponents are split
only when asked for, and escapes (`\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\`) are undone
at read time. hl7apy is far too slow for every message (~75 msg/s); it stays for strict
validation and reference structures.

Positions are the standard's, 1-based: `MSH-9.2`, `PID-3[2].4.1`. MSH-1 is the field
separator and MSH-2 the encoding characters, so MSH-n is the n-th field like everywhere else.
"""

from __future__ import annotations

import re
from functools import cached_property

from engine.errors import ParseError
from engine.hl7v2.groups import GroupTree, build_tree, structure_name

__all__ = ["ENCODING_MISMATCH", "NUL_REMOVED", "Field", "Message", "Segment", "declared_charset", "decode",
           "decode_flagged", "parse"]

_CHARSETS = {
    "": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "CP1252": "cp1252", "WINDOWS-1252": "cp1252",
}
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


#: Flags `decode_flagged` raises: the message is kept and read, and the operator told.
ENCODING_MISMATCH = "ENCODING_MISMATCH"  # the declared charset (MSH-18 or the channel's) does not fit the bytes
NUL_REMOVED = "NUL_REMOVED"  # NUL bytes were dropped: they are no character FHIR can carry


def declared_charset(raw: bytes) -> str:
    """MSH-18's first component, upper-cased ('' when absent).

    Read by splitting the MSH line on its field separator: linear in the line's length whatever the
    bytes: a regular expression counting separators backtracks exponentially on an MSH without
    an 18th field (bench/results/2026-12-07-er7-adversarial.md).
    """
    head = raw.lstrip()
    if not head.startswith(b"MSH") or len(head) < 5:
        return ""
    sep = head[3:4]
    seps = [3]  # seps[i] ends MSH-(i + 1): MSH-1 is the separator itself
    while len(seps) < 18:
        found = head.find(sep, seps[-1] + 1)
        if found == -1:
            break
        seps.append(found)
    if len(seps) < 17:
        return ""
    start, stop = seps[16] + 1, seps[17] if len(seps) > 17 else len(head)
    for terminator in (b"\r", b"\n"):
        found = head.find(terminator, 4, stop)
        if found != -1:
            if found < start:
                return ""  # the MSH line ends before MSH-18: what follows is another segment
            stop = found
    value = head[start:stop]
    chars = head[4 : seps[1]]
    for delimiter in (chars[1:2], chars[0:1]):  # first repetition, then first component
        if delimiter:
            value = value.split(delimiter, 1)[0]
    return value.decode("ascii", "replace").strip().upper()


def decode(raw: bytes, override: str | None = None) -> str:
    """Bytes to text by MSH-18 (or the channel's override when a sender's MSH-18 lies); see `decode_flagged`."""
    return decode_flagged(raw, override)[0]


def decode_flagged(raw: bytes, override: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Bytes to text by MSH-18 (or the channel's override), and the flags an operator should see.

    ASCII senders routinely send accents; we therefore read "ASCII" that is not ASCII as UTF-8
    when the bytes are valid UTF-8, else as Latin-1, and never fail on a declared charset we do not know:
    we fall back to UTF-8 and then Latin-1 (which cannot fail), so the raw bytes kept in the
    journal stay the authority. A known charset the bytes do not fit (declared UTF-8 that is not)
    is read the same way but flagged `ENCODING_MISMATCH`; NUL bytes are dropped and flagged `NUL_REMOVED`.
    """
    flags: list[str] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        override = override or "utf-8"
    text: str | None = None
    if override and override != "auto":
        try:
            text = raw.decode(override)
        except UnicodeDecodeError:
            # A byte the channel's charset has no character for (0x81 in cp1252, a stray byte in
            # "utf-8") becomes U+FFFD rather than failing the message: the journal keeps the bytes.
            text = raw.decode(override, "replace")
            flags.append(ENCODING_MISMATCH)
    else:
        codec = _CHARSETS.get(declared_charset(raw))
        if codec == "ascii" and not raw.isascii():
            codec = None  # "ASCII" that is not: valid UTF-8 first, then Latin-1 (routine, not flagged)
        if codec is not None:
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                flags.append(ENCODING_MISMATCH)
        if text is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")  # cannot fail: every byte is a character
    if "\x00" in text:
        text = text.replace("\x00", "")
        flags.append(NUL_REMOVED)
    return text, tuple(flags)


class Encoding:
    """A message's delimiters (field, component, repetition, escape, subcomponent, truncation) from
    MSH-1 and MSH-2, and the unescaping of values written with them. Immutable after construction.
    """

    __slots__ = ("component", "escape", "field", "repetition", "subcomponent", "truncation", "_unescape_re")

    def __init__(self, field: str, chars: str) -> None:
        self.field = field
        self.component = chars[0]
        self.repetition = chars[1]
        self.escape = chars[2] if len(chars) > 2 else ""
        self.subcomponent = chars[3] if len(chars) > 3 else "&"
        self.truncation = chars[4] if len(chars) > 4 else ""
        esc = re.escape(self.escape) if self.escape else None
        self._unescape_re = re.compile(f"{esc}([^{esc}]*){esc}") if esc else None

    def unescape(self, value: str) -> str:
        if not self._unescape_re or self.escape not in value:
            return value
        return self._unescape_re.sub(self._replace, value)

    def _replace(self, m: re.Match[str]) -> str:
        code = m.group(1)
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition,
                  "E": self.escape, "P": self.truncation, ".br": "\n", "H": "", "N": ""}
        if code in simple:
            return simple[code]
        if code[:1] == "X" and len(code) % 2 == 1:
            try:
                return bytes.fromhex(code[1:]).decode("latin-1").replace("\x00", "")  # \X00\: no NUL in FHIR
            except ValueError:
                return m.group(0)
        return m.group(0)  # unknown escapes (\Cxxyy\, \.sp\ …) are kept as sent, never dropped


def _null(value: str) -> str:
    """HL7's explicit null `""` ("delete the value") reads as nothing: it is never data, so no mapping
    can write it as text; the element it would have filled is left out."""
    return "" if value == '""' else value


class Field:
    """One repetition of a field: split into unescaped components on first read.

    A field, component or subcomponent sent as `""` (explicit null) reads as empty: `bool(field)` is
    False for a `""` repetition and `component()` gives ''.

    Mappings read the same field many times (a CX for the key, the identifier, the system), so
    the first read splits every component at once and later reads are one list index.
    """

    __slots__ = ("_comps", "_enc", "raw")

    def __init__(self, raw: str, enc: Encoding) -> None:
        self.raw = raw
        self._enc = enc
        self._comps: list[str | list[str]] | None = None  # a list where the component has subcomponents

    def __bool__(self) -> bool:
        return self.raw != "" and self.raw != '""'

    def _split(self) -> list[str | list[str]]:
        enc = self._enc
        sub = enc.subcomponent
        unescape = enc.unescape if enc.escape and enc.escape in self.raw else None
        comps: list[str | list[str]] = []
        for part in self.raw.split(enc.component):
            if sub in part:
                subs = [_null(s.rstrip(" ")) for s in part.split(sub)]  # legacy senders pad to fixed widths
                comps.append([unescape(s) for s in subs] if unescape else subs)
            else:
                part = part.rstrip(" ")
                if part == '""':  # _null, inlined: the commonest path of every read
                    part = ""
                comps.append(unescape(part) if unescape else part)
        self._comps = comps
        return comps

    def component(self, c: int = 1, s: int = 1) -> str:
        """Unescaped text of component `c`, subcomponent `s` (1-based); '' when absent."""
        comps = self._comps
        if comps is None:
            comps = self._split()
        if c > len(comps):
            return ""
        value = comps[c - 1]
        if value.__class__ is str:
            return value if s == 1 else ""
        return value[s - 1] if s <= len(value) else ""

    def components(self) -> int:
        comps = self._comps
        return len(comps if comps is not None else self._split())

    @property
    def text(self) -> str:
        return self.component(1, 1)


class Segment:
    """One segment: its raw text, name and position in the message. Fields are split on first read and
    kept, so reading the same field again costs a lookup; not thread-safe.
    """

    __slots__ = ("_enc", "_fields", "_reps", "_valued", "name", "raw", "sequence")

    def __init__(self, raw: str, enc: Encoding, sequence: int) -> None:
        self.raw = raw
        self.name = raw[:3]
        self.sequence = sequence
        self._enc = enc
        self._fields: list[str] | None = None
        self._reps: dict[int, list[Field]] = {}
        self._valued: dict[int, list[Field]] = {}

    def _split(self) -> list[str]:
        if self._fields is None:
            parts = self.raw.split(self._enc.field)
            if self.name == "MSH":  # MSH-1 is the separator itself, MSH-2 the encoding characters
                parts = ["MSH", self._enc.field, *parts[1:]]
            self._fields = parts
        return self._fields

    def raw_fields(self) -> list[str]:
        """Every field as sent, split once; index n is field n (MSH-1 included). Do not modify."""
        return self._split()

    def field_raw(self, n: int) -> str:
        parts = self._split()
        return parts[n] if n < len(parts) else ""

    def repetitions(self, n: int) -> list[Field]:
        """The repetitions of field `n`, split once per segment (mappings read PID-3 for every key)."""
        reps = self._reps.get(n)
        if reps is not None:
            return reps
        raw = self.field_raw(n)
        if raw == "":
            reps = []
        elif self.name == "MSH" and n in (1, 2):
            reps = [Field(raw, _LITERAL)]
        elif self._enc.repetition not in raw:
            reps = [Field(raw, self._enc)]
        else:
            reps = [Field(r, self._enc) for r in raw.split(self._enc.repetition)]
        self._reps[n] = reps
        return reps

    def valued(self, n: int) -> list[Field]:
        """The repetitions of field `n` that carry a value (not empty, not `""`)."""
        found = self._valued.get(n)
        if found is None:
            found = self._valued[n] = [r for r in self.repetitions(n) if r]
        return found

    def field(self, n: int, rep: int = 1) -> Field:
        reps = self.repetitions(n)
        return reps[rep - 1] if rep <= len(reps) else Field("", self._enc)

    def __len__(self) -> int:
        return len(self._split()) - 1


_LITERAL = Encoding("\x00", "\x01\x02")


class Message:
    """A parsed ER7 message. Cheap to build: only segments are split up front."""

    def __init__(self, text: str) -> None:
        text = text.lstrip("\ufeff \t\r\n\x0b")
        if not text.startswith("MSH"):
            raise ParseError("message does not start with an MSH segment", segment="MSH", sequence=1, code="100")
        if len(text) < 8:
            raise ParseError("MSH segment is truncated", segment="MSH", sequence=1, field=2, code="101")
        sep = text[3]
        if sep.isalnum() or not sep.isprintable() or sep.isspace():  # control bytes would make an unreadable ACK
            raise ParseError("MSH-1 field separator is missing or invalid", segment="MSH", sequence=1, field=1,
                             code="102")
        end = text.find(sep, 4)
        chars = text[4:end] if end != -1 else ""
        if not 2 <= len(chars) <= 5 or len(set(chars + sep)) != len(chars) + 1 or any(
                c.isalnum() or not c.isprintable() or c.isspace() for c in chars):
            raise ParseError("MSH-2 encoding characters are missing or invalid", segment="MSH", sequence=1,
                             field=2, code="102")
        self.encoding = Encoding(sep, chars)
        lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
        self.segments: list[Segment] = []
        for line in lines:
            line = line.strip("\ufeff").rstrip(" ")  # a stray BOM (concatenated files) is not a segment
            if not line.strip():
                continue
            seq = len(self.segments) + 1
            if not _SEGMENT_ID.match(line[:3]) or (len(line) > 3 and line[3] != sep):
                # never the line's first characters: on a broken line they are data (a name), not an id
                raise ParseError(f"segment {seq} has no valid segment id (expected 3 capitals or digits, the "
                                 "first a letter, then the field separator)", segment=None, sequence=seq, code="100")
            self.segments.append(Segment(line, self.encoding, seq))
        self.text = text

    @cached_property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None

    # The header values every stage needs, named for what they are.
    @cached_property
    def tree(self) -> GroupTree:
        """Segment groups by the message's reference structure (MSH-9.3, or the event's per table 0354)."""
        f = self.msh.field(9)
        name = structure_name(f.component(1), f.component(2), f.component(3))
        return build_tree(tuple(s.name for s in self.segments), self.version, name)

    @cached_property
    def control_id(self) -> str:
        value = self.msh.field(10).text
        return "" if value == '""' else value

    @cached_property
    def message_type(self) -> str:
        f = self.msh.field(9)
        return f"{f.component(1)}^{f.component(2)}" if f.component(2) else f.component(1)

    @cached_property
    def version(self) -> str:
        return self.msh.field(12).text

    @cached_property
    def sending_facility(self) -> str:
        return self.msh.field(4).text

    @cached_property
    def sending_application(self) -> str:
        return self.msh.field(3).text


def parse(text: str) -> Message:
    return Message(text)
