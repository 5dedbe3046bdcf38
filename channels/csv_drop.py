"""The inbound connector `csv_drop`: CSV files left in a folder, taken in once each, nothing lost.

    folder/            where producers drop files (only `pattern` matches are taken)
    folder/processing/ a file being taken in (claimed by an atomic rename: two engines never share one)
    folder/done/       taken in; its rejected rows, if any, in failed/<name>.rejects.csv
    folder/failed/     could not be read at all (with <name>.error.txt saying why)

A file is taken once it has settled (same size and mtime for `settle_s`), or at once when
`<name>.ready` exists beside it. Its bytes' SHA-256 is journaled: the same file dropped again, under
any name, goes to done/ untouched. Rows are read one at a time (constant memory) and checked against
the channel's CSV map; consecutive good rows with the same group key become one journaled record,
converted in the transform like an HL7 v2 message; a bad row goes to the reject file with its reason
and is journaled as failed, and the good rows go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from channels.csvfile import Layout, Row, RowError, rows
from engine.config import ChannelConfig
from engine.intake import Intake
from engine.logs import error_fields
from engine.mapping.csvmap import CsvMap, find_csvmap

__all__ = ["CSVDropInput", "ingest_file"]

_log = structlog.get_logger("wasla.csv_drop")
_BATCH = 200      # groups journaled per commit
_BACKLOG = 2000   # groups waiting in the in-process queue before reading pauses


@dataclass
class Tally:
    rows: int = 0
    messages: int = 0
    rejected: int = 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _csv_text(header: list[str], records: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(records)
    return buf.getvalue().encode("utf-8")


def ingest_file(path: Path, channel: ChannelConfig, intake: Intake, csvmap: CsvMap, rejects: Path,
                sha256: str = "") -> Tally:
    """Take in one claimed file: every good group journaled and queued, every bad row rejected with its reason."""
    cfg = channel.input
    layout = Layout.of(dict(cfg))
    formats = tuple(cfg.get("date_formats", ("%d/%m/%Y %H:%M", "%d/%m/%Y")))
    sender = str(cfg.get("sender", ""))
    header = list(csvmap.columns)
    tally = Tally()
    group: list[list[str]] = []
    key: tuple[str, ...] | None = None
    reject_out: csv.writer | None = None  # type: ignore[valid-type]
    reject_fh = None
    mtype = f"CSV^{csvmap.name}"

    pending: list[tuple[bytes, str]] = []
    rejected: list[tuple[bytes, str, str]] = []

    def flush_rejected() -> None:
        if rejected:
            intake.reject_records(channel, rejected, message_type=mtype, sender=sender, detail={"file": path.name})
            rejected.clear()

    def flush(final: bool = False) -> None:
        if group and key is not None:
            pending.append((_csv_text(header, group), "/".join(key)))
        if pending and (final or len(pending) >= _BATCH):
            intake.receive_records(channel, pending, message_type=mtype, sender=sender, detail={"file": path.name})
            tally.messages += len(pending)
            pending.clear()
            if sha256:
                intake.journal.file_progress(channel.id, sha256, tally.rows, tally.messages, tally.rejected)
            while intake.broker.backlog() > _BACKLOG:  # memory stays flat: read no faster than the pipeline
                time.sleep(0.02)

    try:
        for item in rows(path, layout):
            tally.rows += 1
            values = item.values if isinstance(item, Row) else {}
            reason = item.reason if isinstance(item, RowError) else csvmap.check(values, formats)
            if reason:
                if reject_out is None:
                    reject_fh = rejects.open("w", encoding="utf-8", newline="")
                    reject_out = csv.writer(reject_fh)
                    reject_out.writerow(["line", "reason", *(header if layout.header else [])])
                reject_out.writerow([item.line, reason, *item.raw])
                rejected.append((_csv_text(["line", "reason"], [[str(item.line), reason]]),
                                 f"{path.name}:{item.line}", f"{path.name} line {item.line}: {reason}"))
                tally.rejected += 1
                if len(rejected) >= _BATCH:
                    flush_rejected()
                continue
            row_key = csvmap.group_key(values)
            if row_key != key:
                flush()
                group, key = [], row_key
            group.append([values.get(c, "") for c in header])
        flush(final=True)
        flush_rejected()
    finally:
        if reject_fh is not None:
            reject_fh.close()
    return tally


class CSVDropInput:
    """Watches `folder`: inotify (through watchdog) wakes the scan as soon as a file is written or renamed;
    a scan every `poll_s` stays as the fallback, since inotify sees nothing on network shares."""

    def __init__(self, channel: ChannelConfig, intake: Intake, executor: Executor) -> None:
        self.channel = channel
        self.intake = intake
        self.executor = executor
        cfg = channel.input
        self.folder = Path(str(cfg["folder"]))
        self.pattern = str(cfg.get("pattern", "*.csv"))
        self.settle_s = float(cfg.get("settle_s", 2.0))
        self.poll_s = float(cfg.get("poll_s", 1.0))
        self.csvmap: CsvMap | None = None
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._observer: Any = None

    async def start(self) -> None:
        for sub in ("processing", "done", "failed"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        conv = self.intake.converter
        self.csvmap = find_csvmap(conv.mappings_dir, str(self.channel.input["csv_map"]), conv.schema_dir)
        for leftover in sorted((self.folder / "processing").glob(self.pattern)):  # a crash mid-file: take it again
            await self._take(leftover, claimed=True)
        self._observer = self._inotify(asyncio.get_running_loop())
        self._task = asyncio.create_task(self._watch())
        _log.info("csv_drop_watching", channel=self.channel.id, folder=str(self.folder),
                  inotify=self._observer is not None)

    def _inotify(self, loop: asyncio.AbstractEventLoop) -> Any:
        """A watchdog observer that wakes the scan on any change in the folder; None where it cannot run."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return None
        wake = self._wake

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                loop.call_soon_threadsafe(wake.set)

        try:
            observer = Observer()
            observer.schedule(_Wake(), str(self.folder), recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as exc:  # inotify limits reached, unsupported filesystem: polling alone
            _log.warning("csv_drop_no_inotify", channel=self.channel.id, **error_fields(exc))
            return None
        return observer

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                for path in self._ready():
                    await self._take(path)
            except Exception as exc:  # noqa: BLE001 - a bad turn is logged; the next one tries again
                _log.error("csv_drop_scan_failed", channel=self.channel.id, **error_fields(exc))
            with contextlib.suppress(TimeoutError):  # woken by inotify, or the next poll
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    def _ready(self) -> list[Path]:
        """Files that have settled (same size and mtime for settle_s) or have their .ready marker."""
        now = asyncio.get_running_loop().time()
        out = []
        for path in sorted(self.folder.glob(self.pattern)):
            if not path.is_file():
                continue
            st = path.stat()
            marker = path.with_name(path.name + ".ready")
            sig = (st.st_size, st.st_mtime_ns)
            seen = self._seen.get(path.name)
            if marker.exists():
                out.append(path)
            elif seen is None or seen[:2] != sig:
                self._seen[path.name] = (*sig, now)
            elif now - seen[2] >= self.settle_s:
                out.append(path)
        return out

    async def _take(self, path: Path, *, claimed: bool = False) -> None:
        work = self.folder / "processing" / path.name
        if not claimed:
            try:
                os.rename(path, work)  # atomic on one filesystem: only one taker wins
            except FileNotFoundError:
                return
            self._seen.pop(path.name, None)
            path.with_name(path.name + ".ready").unlink(missing_ok=True)
        await asyncio.get_running_loop().run_in_executor(self.executor, self._ingest, work)

    def _ingest(self, work: Path) -> None:
        journal, name = self.intake.journal, work.name
        sha = _sha256(work)
        earlier = journal.file_claim(self.channel.id, sha, name)
        if earlier is not None:
            os.replace(work, self.folder / "done" / name)
            _log.info("csv_file_duplicate", channel=self.channel.id, sha256=sha[:16])  # names may carry PHI
            return
        assert self.csvmap is not None
        try:
            tally = ingest_file(work, self.channel, self.intake, self.csvmap,
                                self.folder / "failed" / f"{name}.rejects.csv", sha)
        except (OSError, UnicodeError, ValueError) as exc:
            (self.folder / "failed" / f"{name}.error.txt").write_text(f"{exc.__class__.__name__}: {exc}\n")
            os.replace(work, self.folder / "failed" / name)
            journal.file_done(self.channel.id, sha, "failed", 0, 0, 0)
            _log.error("csv_file_failed", channel=self.channel.id, sha256=sha[:16], **error_fields(exc))
            return
        os.replace(work, self.folder / "done" / name)
        journal.file_done(self.channel.id, sha, "done", tally.rows, tally.messages, tally.rejected)
        _log.info("csv_file_done", channel=self.channel.id, sha256=sha[:16], rows=tally.rows,
                  messages=tally.messages, rejected=tally.rejected)
