"""Reading a CSV file as its producer wrote it: encoding, delimiter, header, one row at a time.

Lab exports come from spreadsheets and LIS on French-locale Windows as often as from Linux: UTF-8
with or without a BOM, Windows-1252, Latin-1, `;` or `,`. The file is streamed (constant memory):
`auto` encoding is decided by one pass over the bytes (valid UTF-8, else Windows-1252) before the
rows are read. Every row comes with its line number, so a rejected one can be found in the file.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["Layout", "Row", "RowError", "rows"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layout:
    """How a producer writes its files (the channel's `input.csv_drop`)."""

    delimiter: str = "auto"          # auto: the most frequent of ; , | tab in the header line
    quote: str = '"'
    header: bool = True              # False: `columns` name the positions
    columns: tuple[str, ...] = ()
    encoding: str = "auto"           # auto | utf-8 | cp1252 | latin-1

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> Layout:
        return cls(delimiter=str(cfg.get("delimiter", "auto")), quote=str(cfg.get("quote", '"')),
                   header=bool(cfg.get("header", True)), columns=tuple(cfg.get("columns", ())),
                   encoding=str(cfg.get("encoding", "auto")))


@dataclass(frozen=True, slots=True)
class Row:
    line: int                        # where the row starts in the file (1-based, the header is line 1)
    values: dict[str, str]
    raw: list[str]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str
    raw: list[str]


def detect_encoding(fh: BinaryIO) -> str:
    """utf-8-sig (BOM), utf-8 when every byte decodes, else cp1252; the file position is restored."""
    start = fh.tell()
    head = fh.read(3)
    if head == codecs.BOM_UTF8:
        fh.seek(start)
        return "utf-8-sig"
    fh.seek(start)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := fh.read(_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1252"
    finally:
        fh.seek(start)


def _lines(fh: BinaryIO, encoding: str, errors: list[tuple[int, str]]) -> Iterator[str]:
    """Decoded lines; a line that does not decode is replaced by an empty one and reported by number."""
    for number, raw in enumerate(fh, start=1):
        if number == 1 and encoding == "utf-8-sig":
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8" if encoding == "utf-8-sig" else encoding)
        except UnicodeDecodeError as exc:
            errors.append((number, f"bytes not valid {encoding} at column {exc.start + 1}"))
            yield "\n"


def rows(path: Path, layout: Layout) -> Iterator[Row | RowError]:
    """Every data row of `path` as a Row, or a RowError saying why it cannot be read."""
    with path.open("rb") as fh:
        encoding = detect_encoding(fh) if layout.encoding == "auto" else layout.encoding
        decode_errors: list[tuple[int, str]] = []
        lines = _lines(fh, encoding, decode_errors)
        if layout.header:
            first = next(lines, "")
            delimiter = _delimiter(first, layout.delimiter)
            try:
                names = [n.strip() for n in next(csv.reader([first], delimiter=delimiter, quotechar=layout.quote),
                                                 [])]
            except csv.Error as exc:
                yield RowError(1, f"header line is not CSV: {exc}", [first])
                return
            twice = sorted({n for n in names if n and names.count(n) > 1})  # ";;" at the end: unnamed, unused
            if twice:  # values would be lost under one key: the file is refused, every row with it
                reason = f"header names column '{twice[0]}' more than once"
                yield RowError(1, reason, names)
                return
        else:
            first, names = "", list(layout.columns)
            delimiter = layout.delimiter if layout.delimiter != "auto" else ","
        reader = csv.reader(lines, delimiter=delimiter, quotechar=layout.quote)
        offset = 1 if layout.header else 0
        previous = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a lone carriage return inside an unquoted field
                previous = reader.line_num
                yield RowError(reader.line_num + offset, f"not CSV: {exc}", [])
                continue
            line, previous = previous + 1 + offset, reader.line_num  # a quoted field may span lines
            end = reader.line_num + offset
            bad = [e for e in decode_errors if e[0] <= end]
            if bad:
                decode_errors[:] = [e for e in decode_errors if e[0] > end]
                yield RowError(bad[0][0], bad[0][1], cells)
                continue
            if not cells or not "".join(cells).strip():
                continue
            if len(cells) != len(names):
                yield RowError(line, f"expected {len(names)} columns, got {len(cells)}", cells)
                continue
            yield Row(line, {n: c.strip() for n, c in zip(names, cells, strict=True)}, cells)


def _delimiter(header: str, declared: str) -> str:
    if declared != "auto":
        return declared
    return max((";", ",", "|", "\t"), key=header.count)
