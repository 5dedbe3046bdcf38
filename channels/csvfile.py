"""Reading a CSV file as its producer wrote it: encoding, delimiter, header, one row at a time.

Lab exports come from spreadsheets and LIS on French-locale Windows as often as from Linux: UTF-8
with or without a BOM, Windows-1252, Latin-1, `;` or `,`. The file is streamed (constant memory):
`auto` encoding is decided by one pass over the bytes (valid UTF-8, else Windows-1252) before the
rows are read. Every row comes with its line number, so a rejected one can be found in the file,
and the byte offset where it ends, so reading can resume after the last row taken in.

Memory is bounded whatever the file holds: a row (all its lines, for a quoted field spanning several)
is at most `Limits.max_row_bytes`, a field at most the csv module's field limit, a header at most
`Limits.max_columns` names; past a limit the row is a RowError saying which, and reading goes on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.connectors.fields import Field, build_options
from engine.connectors.inputs import APPLICATION, DATE_FORMATS, ENCODING, SENDER

__all__ = ["CSV_LAYOUT_OPTIONS", "CSV_LIMIT_OPTIONS", "CSV_READ_OPTIONS", "Layout", "Limits", "Row", "RowError",
           "Start", "detect_encoding", "rows", "scan"]

_CHUNK = 1 << 20


CSV_LAYOUT_OPTIONS = (  # how a producer writes its files: csv_drop, and rest with csv_map
    APPLICATION,
    Field("delimiter", "string", default="auto", description="auto, or the character."),
    Field("quote", "string", default='"', max_length=1),
    Field("header", "boolean", default=True),
    Field("columns", "array", items={"type": "string"}, description="Column names by position, when header is false."),
    DATE_FORMATS,
)

CSV_LIMIT_OPTIONS = (  # what one file may hold (csv_drop)
    Field("max_columns", "integer", minimum=1, default=1000,
          description="A header with more columns refuses the file (line 1, with this reason)."),
    Field("max_row_bytes", "integer", minimum=64, default=1048576,
          description="A longer row (all its lines) is rejected with this reason; reading goes on."),
    Field("max_group_rows", "integer", minimum=1, default=10000,
          description="A group of more rows is rejected whole (not split: one group is one message); its rows go "
                      "to the reject file."),
    Field("max_group_bytes", "integer", minimum=1024, default=16777216,
          description="The same for a group whose CSV text is larger; with max_row_bytes it bounds the memory a "
                      "file takes."),
)

CSV_READ_OPTIONS = (  # everything reading a CSV file takes from a channel's input, whatever its connector
    *CSV_LAYOUT_OPTIONS, *CSV_LIMIT_OPTIONS,
    SENDER,
    ENCODING,
)


@dataclass(frozen=True)
class Layout:
    """How a producer writes its files (the channel's `input.csv_drop`)."""

    delimiter: str = "auto"          # auto: the most frequent of ; , | tab in the header line
    quote: str = '"'
    header: bool = True              # False: `columns` name the positions
    columns: tuple[str, ...] = ()
    encoding: str = "auto"           # auto | utf-8 | cp1252 | latin-1

    @classmethod
    def of(cls, cfg: Any) -> Layout:
        """The layout of a channel's input options (a dict, or Options already built)."""
        o = build_options(CSV_READ_OPTIONS, dict(cfg))
        return cls(delimiter=str(o.delimiter), quote=str(o.quote), header=bool(o.header),
                   columns=tuple(o.columns or ()), encoding=str(o.encoding))


@dataclass(frozen=True)
class Limits:
    """What one file may hold (the channel's `max_columns`, `max_row_bytes`, `max_group_rows`, `max_group_bytes`)."""

    max_columns: int = 1000
    max_row_bytes: int = 1 << 20
    max_group_rows: int = 10_000
    max_group_bytes: int = 16 << 20

    @classmethod
    def of(cls, cfg: Any) -> Limits:
        """The limits of a channel's input options (a dict, or Options already built)."""
        o = build_options(CSV_READ_OPTIONS, dict(cfg))
        return cls(int(o.max_columns), int(o.max_row_bytes), int(o.max_group_rows), int(o.max_group_bytes))


@dataclass(frozen=True, slots=True)
class Start:
    """Where reading resumes: the byte offset of the next row and its line number (1: the header)."""

    offset: int = 0
    line: int = 1


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row as read: its values by header name and its raw cells, with the line it starts on and
    where the next row begins (`end`, `next_line`), so a resumed read starts just after it. Immutable.
    """

    line: int                        # where the row starts in the file (1-based, the header is line 1)
    values: dict[str, str]
    raw: list[str]
    end: int = field(default=0, compare=False)  # the byte offset just after the row
    next_line: int = field(default=0, compare=False)  # the line number there


@dataclass(frozen=True, slots=True)
class RowError:
    """A CSV row that could not be read, with its line and the reason (naming columns, never values), and
    where the next row begins, so reading carries on after it. Immutable.
    """

    line: int
    reason: str
    raw: list[str]
    end: int = field(default=0, compare=False)
    next_line: int = field(default=0, compare=False)


def detect_encoding(fh: BinaryIO, end: int | None = None) -> str:
    """utf-8-sig (BOM), utf-8 when every byte (up to `end`) decodes, else cp1252; the position is restored."""
    start = fh.tell()
    try:
        if fh.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
        fh.seek(start)
        decoder = codecs.getincrementaldecoder("utf-8")()
        left = end - start if end is not None else -1
        try:
            while left and (chunk := fh.read(_CHUNK if left < 0 else min(_CHUNK, left))):
                left -= len(chunk) if left > 0 else 0
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
        return "utf-8"
    finally:
        fh.seek(start)


def scan(fh: BinaryIO, end: int) -> tuple[str, str]:
    """The SHA-256 of the first `end` bytes and the encoding `auto` would pick, in one pass."""
    fh.seek(0)
    h = hashlib.sha256()
    decoder: Any = codecs.getincrementaldecoder("utf-8")()
    encoding = ""
    left = end
    while left > 0 and (chunk := fh.read(min(_CHUNK, left))):
        if left == end and chunk.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        left -= len(chunk)
        h.update(chunk)
        if not encoding:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                encoding = "cp1252"
    if not encoding:
        try:
            decoder.decode(b"", final=True)
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
    fh.seek(0)
    return h.hexdigest(), encoding


class _TooLong(Exception):
    """A row went past max_row_bytes: raised through the csv reader, which starts afresh at the next call."""


class _Lines:
    """Decoded lines from a byte offset up to `end`, counting lines and bytes.

    A row's lines together are at most `max_bytes`: past that, the rest of the physical line is skipped
    and _TooLong raised. A line that does not decode is replaced by an empty one and reported by number.
    """

    def __init__(self, fh: BinaryIO, encoding: str, start: Start, end: int | None, max_bytes: int) -> None:
        self.fh, self.end, self.max_bytes = fh, end, max_bytes
        self.codec = "utf-8" if encoding == "utf-8-sig" else encoding
        self.bom = encoding == "utf-8-sig" and start.offset == 0
        self.pos = start.offset
        self.number = start.line - 1        # the last line handed out
        self.record = 0                     # bytes of the row being read so far
        self.errors: list[tuple[int, str]] = []
        fh.seek(start.offset)

    def at(self) -> tuple[int, int]:
        """The byte offset and line number just after what was handed out."""
        return self.pos, self.number + 1

    def forget_errors(self) -> list[tuple[int, str]]:
        """The decoding errors of the lines handed out so far (the row just read), removed from the list."""
        bad = [e for e in self.errors if e[0] <= self.number]
        self.errors[:] = [e for e in self.errors if e[0] > self.number]
        return bad

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        room = self.max_bytes - self.record + 1
        if self.end is not None:
            if self.pos >= self.end:
                raise StopIteration
            room = min(room, self.end - self.pos)
        raw = self.fh.readline(room)
        if not raw:
            raise StopIteration
        self.pos += len(raw)
        self.number += 1
        self.record += len(raw)
        if self.record > self.max_bytes:
            self._skip_line(raw)
            raise _TooLong
        if self.bom:
            self.bom = False
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            return raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            self.errors.append((self.number, f"bytes not valid {self.codec} at column {exc.start + 1}"))
            return "\n"

    def _skip_line(self, raw: bytes) -> None:
        """Read on to the end of this physical line without keeping it (constant memory)."""
        while not raw.endswith(b"\n"):
            size = _CHUNK if self.end is None else min(_CHUNK, self.end - self.pos)
            if size <= 0:
                return
            raw = self.fh.readline(size)
            if not raw:
                return
            self.pos += len(raw)


def rows(source: Path | BinaryIO, layout: Layout, *, limits: Limits | None = None, start: Start | None = None,
         end: int | None = None, encoding: str | None = None) -> Iterator[Row | RowError]:
    """Every data row of `source` as a Row, or a RowError saying why it cannot be read.

    `start` resumes after the rows already taken in (the header is read again for the column names);
    `end` stops at that byte offset (what was there when the file was claimed); `encoding` overrides
    the `auto` decision (kept from the first reading, so a resumed file is read the same way).
    """
    if isinstance(source, Path):
        with source.open("rb") as opened:
            yield from rows(opened, layout, limits=limits, start=start, end=end, encoding=encoding)
        return
    fh, limits, start = source, limits or Limits(), start or Start()
    fh.seek(0)
    if encoding is None:
        encoding = detect_encoding(fh, end) if layout.encoding == "auto" else layout.encoding
    head = _Lines(fh, encoding, Start(), end, limits.max_row_bytes)
    if layout.header:
        try:
            first = next(head, "")
        except _TooLong:
            yield RowError(1, f"header line longer than max_row_bytes ({limits.max_row_bytes} bytes)", [],
                           head.pos, 2)
            return
        delimiter = _delimiter(first, layout.delimiter)
        if first.count(delimiter) >= limits.max_columns:  # counted before any list of names is made
            yield RowError(1, f"header has {first.count(delimiter) + 1} columns, more than max_columns"
                              f" ({limits.max_columns})", [], head.pos, 2)
            return
        try:
            names = [n.strip() for n in next(csv.reader([first], delimiter=delimiter, quotechar=layout.quote), [])]
        except csv.Error as exc:
            yield RowError(1, f"header line is not CSV: {exc}", [first], head.pos, 2)
            return
        counts = Counter(n for n in names if n)  # ";;" at the end: unnamed, unused
        twice = [n for n in names if counts[n] > 1]
        if twice:  # values would be lost under one key: the file is refused, every row with it
            yield RowError(1, f"header names column '{twice[0]}' more than once", names, head.pos, 2)
            return
        body_start = head.pos
    else:
        names = list(layout.columns)
        delimiter = layout.delimiter if layout.delimiter != "auto" else ","
        body_start = 0
    if start.offset < body_start:
        start = Start(body_start, 2 if layout.header else 1)
    yield from _body(layout, limits, names, delimiter, _Lines(fh, encoding, start, end, limits.max_row_bytes))


def _body(layout: Layout, limits: Limits, names: list[str], delimiter: str,
          lines: _Lines) -> Iterator[Row | RowError]:
    reader = csv.reader(lines, delimiter=delimiter, quotechar=layout.quote)
    while True:
        line = lines.number + 1
        lines.record = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _TooLong:
            lines.forget_errors()  # this row's undecodable lines are rejected with it, not again with the next
            yield RowError(line, f"row longer than max_row_bytes ({limits.max_row_bytes} bytes)", [], *lines.at())
            continue
        except csv.Error as exc:  # e.g. a lone carriage return inside an unquoted field
            lines.forget_errors()
            yield RowError(line, f"not CSV: {exc}", [], *lines.at())
            continue
        bad = lines.forget_errors()
        if bad:
            yield RowError(bad[0][0], bad[0][1], cells, *lines.at())
            continue
        if not cells or not "".join(cells).strip():
            continue
        if len(cells) != len(names):
            yield RowError(line, f"expected {len(names)} columns, got {len(cells)}", cells, *lines.at())
            continue
        yield Row(line, {n: c.strip() for n, c in zip(names, cells, strict=True)}, cells, *lines.at())


def _delimiter(header: str, declared: str) -> str:
    if declared != "auto":
        return declared
    return max((";", ",", "|", "\t"), key=header.count)
