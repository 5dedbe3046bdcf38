"""Taking in one CSV file: rows checked against the CSV map, grouped into messages, journaled exactly once.

Consecutive good rows with the same group key become one journaled record (converted in the
transform like an HL7 v2 message); a bad row goes to the reject file with its reason and is
journaled as failed, and the good rows go on.

Exactly once: groups and rejected rows are journaled in the same transaction as the file's progress
(`engine.store.files`): the byte offset and line of the next row, the reject file's length and the
counts. A commit happens only where a group ends, so after a crash or a stop the file is read again
from that offset and the reject file cut back to that length: no row is journaled twice, none is lost.

Memory is bounded whatever the file's shape. A row is at most `max_row_bytes` (csvfile.Limits). A
group is kept as the CSV text it is journaled as, at most `max_group_rows` rows and `max_group_bytes`
bytes: a longer one is rejected whole (each of its rows in the reject file, streamed, and one failed
record in the journal). It is not split: a group is one message (a lab request and its report), and
two messages under one key would each write the report with half its results. Commits happen every
`_BATCH` groups or `_BATCH_BYTES` bytes, and reading waits while the embedded broker holds more than
`_BACKLOG` messages. Peak: about one open group plus one batch (2 × 16 MiB with the defaults), plus
at most `_HELD_REJECTS` rejected rows' records (a group split early when more sit inside one group).
"""

from __future__ import annotations

import csv
import io
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

import structlog

from channels.csvfile import CSV_READ_OPTIONS, Layout, Limits, Row, RowError, Start, rows
from engine.connectors.fields import build_options
from engine.connectors.ports import FileLedger, FileProgress, FileStep, InputPorts
from engine.connectors.toolkit import ChannelConfig, CsvMap

__all__ = ["FileIngest", "Rejects", "Stopped", "Superseded", "Tail", "Tally"]

_log = structlog.get_logger("wasla.csv_drop")
_BATCH = 200                # groups journaled per commit
_BATCH_BYTES = 8 << 20      # or fewer, once their bodies add up to this
_HELD_REJECTS = 10_000      # rejected rows held uncommitted inside one open group
_BACKLOG = 2000             # messages waiting in the in-process queues before reading pauses


class Superseded(Exception):
    """Another taker moved this file's progress on (a copy of it, or another engine): this one stops."""


class Stopped(Exception):
    """The channel is stopping: what was committed stays, the rest is read at the next start."""


@dataclass
class Tally:
    """What one file's ingest counted: rows read, messages journaled, rows rejected. Plain counters,
    owned by the one ingest that reads the file (not thread-safe).
    """

    rows: int = 0
    messages: int = 0
    rejected: int = 0


def _csv_line(values: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


class Rejects:
    """The reject file: a header, then `line, reason, cells…` per rejected row. Its length is part of the
    progress, so a file read again after a crash cuts it back and writes those rows once more."""

    def __init__(self, opener: Callable[[bool], IO[bytes]], header: list[str], size: int = 0) -> None:
        self._opener = opener     # opener(resume) → a binary handle, created or reopened
        self._header = header
        self._fh: IO[bytes] | None = None
        self.size = size

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self._fh = self._opener(self.size > 0)
            self._fh.truncate(self.size)
            self._fh.seek(self.size)
            if self.size == 0:
                self._put(_csv_line(["line", "reason", *self._header]))
        return self._fh

    def _put(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        self.size += len(data)

    def write(self, line: int, reason: str, cells: list[str]) -> None:
        self._open()
        self._put(_csv_line([str(line), reason, *cells]))

    def cut(self, size: int) -> None:
        """Back to `size` bytes (rows written since the last commit will be written again)."""
        if self._fh is not None:
            self._fh.flush()
            self._fh.truncate(size)
            self._fh.seek(size)
        self.size = size

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None

    @property
    def opened(self) -> bool:
        return self._fh is not None or self.size > 0


@dataclass
class _Group:
    key: tuple[str, ...]
    first: int                                   # line of its first row
    last: int = 0
    body: bytearray = field(default_factory=bytearray)  # the CSV text journaled: header, then rows
    lines: array[int] = field(default_factory=lambda: array("L"))
    rows: int = 0
    limit: str = ""                              # the limit it went past, if it did
    oversized: str = ""                          # then: why each of its rows is rejected


@dataclass
class Tail:
    """What a reading pass left uncommitted: the rows after the last group boundary it committed."""

    progress: FileProgress                      # where the pass ended (rows, offset, reject file length)
    groups: list[tuple[bytes, str]]
    failed: list[tuple[bytes, str, str]]
    group: _Group | None
    partial: bool                               # the last row had no line end: the file may still grow


class FileIngest:
    """One file, read from its committed progress on; its groups and rejected rows journaled exactly once.

    With `files` (the file's ledger) and `sha256`, each commit carries the file's progress
    (`InputPorts.admit_file_records` with a `FileStep`); without them, the records alone.
    """

    def __init__(self, channel: ChannelConfig, intake: InputPorts, csvmap: CsvMap, fh: BinaryIO, name: str,
                 rejects: Rejects, *, sha256: str = "", files: FileLedger | None = None,
                 committed: FileProgress | None = None, encoding: str | None = None,
                 stop: threading.Event | None = None) -> None:
        cfg = build_options(CSV_READ_OPTIONS, dict(channel.input))  # whatever the connector: csv_drop, rest
        self.channel, self.intake, self.csvmap, self.fh, self.name = channel, intake, csvmap, fh, name
        self.layout, self.limits = Layout.of(cfg), Limits.of(cfg)
        self.formats = tuple(cfg.date_formats)
        self.sender = str(cfg.sender)
        self.header = list(csvmap.columns)
        self.head = _csv_line(self.header)
        self.mtype = f"CSV^{csvmap.name}"
        self.rejects, self.sha256, self.files = rejects, sha256, files
        self.committed = committed or FileProgress()
        self.encoding = encoding or None
        self.stop = stop or threading.Event()

    # -- reading -------------------------------------------------------------------------------
    def read(self, end: int | None) -> Tail:
        """Read from the committed progress up to `end`, committing at group boundaries; the rest is the Tail."""
        p = self.committed
        self.rejects.cut(p.rejects_bytes)
        tally = Tally(p.rows, p.messages, p.rejected)
        groups: list[tuple[bytes, str]] = []
        held = 0
        failed: list[tuple[bytes, str, str]] = []
        group: _Group | None = None
        here = (p.offset, p.line)                # just after the last row seen
        items: Iterator[Row | RowError] = rows(self.fh, self.layout, limits=self.limits,
                                               start=Start(p.offset, p.line), end=end, encoding=self.encoding)
        for item in items:
            values = item.values if isinstance(item, Row) else {}
            reason = item.reason if isinstance(item, RowError) else self.csvmap.check(values, self.formats)
            key = None if reason else self.csvmap.group_key(values)
            if group is not None and (len(failed) >= _HELD_REJECTS or (key is not None and key != group.key)):
                held += self._close(group, groups, failed, tally)
                group = None
            if group is None and (len(groups) >= _BATCH or held >= _BATCH_BYTES or len(failed) >= _BATCH):
                self._commit(groups, failed, FileProgress(here[0], here[1], self.rejects.size, tally.rows,
                                                          tally.messages, tally.rejected))
                groups, failed, held = [], [], 0
            tally.rows += 1
            if not tally.rows % 1024 and self.stop.is_set():  # a long group commits nothing for a while
                raise Stopped
            here = (item.end, item.next_line)
            if reason:
                self._reject(item.line, reason, item.raw, failed, tally)
                continue
            if group is None:
                group = _Group(key, item.line)  # type: ignore[arg-type]  # key is set when there is no reason
                group.body += self.head
            self._add(group, item, values, tally)
        partial = end is not None and not self._ends_line(end)
        return Tail(FileProgress(here[0], here[1], self.rejects.size, tally.rows, tally.messages, tally.rejected),
                    groups, failed, group, partial)

    def _ends_line(self, offset: int) -> bool:
        if offset <= 0:
            return True
        at = self.fh.tell()
        self.fh.seek(offset - 1)
        last = self.fh.read(1)
        self.fh.seek(at)
        return last in (b"\n", b"\r")

    def _reject(self, line: int, reason: str, raw: list[str], failed: list[tuple[bytes, str, str]],
                tally: Tally) -> None:
        self.rejects.write(line, reason, raw)
        failed.append((_csv_line(["line", "reason"]) + _csv_line([str(line), reason]), f"{self.name}:{line}",
                       f"{self.name} line {line}: {reason}"))
        tally.rejected += 1

    def _add(self, group: _Group, item: Row | RowError, values: dict[str, str], tally: Tally) -> None:
        group.rows += 1
        group.last = item.line
        if group.oversized:
            self.rejects.write(item.line, group.oversized, [values.get(c, "") for c in self.header])
            tally.rejected += 1
            return
        group.body += _csv_line([values.get(c, "") for c in self.header])
        group.lines.append(item.line)
        lim = self.limits
        if group.rows > lim.max_group_rows:
            group.limit = f"more than max_group_rows ({lim.max_group_rows}) rows"
        elif len(group.body) > lim.max_group_bytes:
            group.limit = f"more than max_group_bytes ({lim.max_group_bytes}) bytes"
        else:
            return
        group.oversized = f"in a group of {group.limit} from line {group.first}: not taken in"
        # the rows held so far go to the reject file, and the group holds nothing more
        buffered = csv.reader(io.StringIO(group.body.decode("utf-8")))
        next(buffered, None)
        for line, cells in zip(group.lines, buffered, strict=False):
            self.rejects.write(line, group.oversized, cells)
            tally.rejected += 1
        group.body, group.lines = bytearray(), array("L")

    def _close(self, group: _Group, groups: list[tuple[bytes, str]], failed: list[tuple[bytes, str, str]],
               tally: Tally) -> int:
        """The group ends: one message, or (oversized) one failed record for all its rows."""
        if group.oversized:
            reason = (f"{self.name} lines {group.first}-{group.last}: a group of {group.rows} rows, {group.limit}:"
                      " not taken in (its rows are in the reject file)")
            failed.append((_csv_line(["lines", "reason"]) + _csv_line([f"{group.first}-{group.last}", reason]),
                           f"{self.name}:{group.first}-{group.last}", reason))
            return 0
        groups.append((bytes(group.body), "/".join(group.key)))
        tally.messages += 1
        return len(group.body)

    # -- journaling ----------------------------------------------------------------------------
    def finish(self, tail: Tail, *, status: str = "processing", sha256_end: str = "") -> Tally:
        """The file is complete: its last group closed, everything left committed (with `status`)."""
        tally = Tally(tail.progress.rows, tail.progress.messages, tail.progress.rejected)
        if tail.group is not None:
            self._close(tail.group, tail.groups, tail.failed, tally)
        p = tail.progress
        self._commit(tail.groups, tail.failed, FileProgress(p.offset, p.line, self.rejects.size, tally.rows,
                                                            tally.messages, tally.rejected),
                     status=status, sha256_end=sha256_end)
        return tally

    def _commit(self, groups: list[tuple[bytes, str]], failed: list[tuple[bytes, str, str]], after: FileProgress,
                *, status: str = "processing", sha256_end: str = "") -> None:
        """Journal these records and the progress in one transaction, then queue the groups."""
        if self.stop.is_set():
            raise Stopped
        step = (FileStep(self.sha256, self.committed, after, status, sha256_end)
                if self.files is not None and self.sha256 else None)
        if not self.intake.admit_file_records(self.channel, groups, failed, message_type=self.mtype,
                                              sender=self.sender, detail={"file": self.name}, step=step):
            raise Superseded
        self.committed = after
        while self.intake.backpressure.backlog() > _BACKLOG:  # memory stays flat: read no faster than the pipeline
            if self.stop.wait(0.02):
                raise Stopped
