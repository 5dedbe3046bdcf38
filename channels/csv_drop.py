"""The inbound connector `csv_drop`: CSV files left in a folder, taken in once each, nothing lost.

    folder/            where producers drop files (only `pattern` matches are taken; .hidden ones never)
    folder/processing/ a file being taken in (claimed by an atomic move: two engines never share one)
    folder/done/       taken in; its rejected rows, if any, in failed/<name>.rejects.csv
    folder/failed/     could not be read at all (with <name>.error.txt saying why), or not a regular file

A file is taken once it has settled (same size and mtime for `settle_s`), or at once when
`<name>.ready` exists beside it. The SHA-256 of its bytes is journaled: the same file dropped again,
under any name, goes to done/ untouched. Its rows are read one at a time (channels.csv_ingest) and
journaled exactly once: a file found half-read in processing/ after a crash (or dropped again while
its claim is still being read) resumes after the last row journaled.

A file still being written when it was claimed is noticed: its size and mtime are checked again
once its rows are read, and a last line without its line end makes the channel wait `settle_s` more.
When it grew, the channel waits until it settles again, checks that the bytes it read are unchanged
(the hash of that prefix), and reads on from the last row journaled: the open group is read again
whole, so no row is lost or split. A file rewritten in place is not read further: it goes to failed/
with what was taken in (rows up to the last journaled line).

Links are never followed and a bad file fails alone (channels.dropdir): a link or other non-file
dropped in the folder goes to failed/ as it is, outputs are created exclusively, and a subfolder
replaced by a link stops moves there (the file stays in processing/) instead of moving files elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import os
import stat
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from channels.csv_ingest import FileIngest, Rejects, Stopped, Superseded, Tally
from channels.csvfile import CSV_LAYOUT_OPTIONS, CSV_LIMIT_OPTIONS
from channels.dropdir import DropDir, NotRegular, fit, kind
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import FileClaim, InputPorts
from engine.connectors.toolkit import ChannelConfig, CsvMap, error_fields, find_csvmap

__all__ = ["CSVDropInput", "ingest_file"]

_log = structlog.get_logger("wasla.csv_drop")
_CHUNK = 1 << 20


class _Rewritten(Exception):
    """The bytes already read changed under the reader (a file rewritten in place, not appended to)."""


def ingest_file(path: Path, channel: ChannelConfig, intake: InputPorts, csvmap: CsvMap, rejects: Path,
                sha256: str = "") -> Tally:
    """Take in one complete file (a REST upload): every good group journaled and queued, every bad row
    rejected with its reason in `rejects`; with `sha256`, its progress goes with its rows (engine.store.files)."""
    out = Rejects(lambda _resume: rejects.open("w+b"), list(csvmap.columns))
    with path.open("rb") as fh:
        ing = FileIngest(channel, intake, csvmap, fh, path.name, out, sha256=sha256,
                         files=intake.files if sha256 else None)
        try:
            return ing.finish(ing.read(None))
        finally:
            out.close()


def _why(exc: BaseException) -> str:
    """An error in words, without the file name an OSError carries (names may hold PHI)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.__class__.__name__}: {exc.strerror}"
    return f"{exc.__class__.__name__}: {exc}"


def _digests(fh: BinaryIO, sizes: set[int], end: int) -> tuple[dict[int, str], Any]:
    """SHA-256 of the first n bytes for each n in `sizes` (≤ end), in one pass; and the hash object at `end`."""
    h = hashlib.sha256()
    found: dict[int, str] = {}
    fh.seek(0)
    pos = 0
    for stop in sorted({s for s in sizes if 0 <= s <= end} | {end}):
        while pos < stop and (chunk := fh.read(min(_CHUNK, stop - pos))):
            h.update(chunk)
            pos += len(chunk)
        found[stop] = h.hexdigest()
    fh.seek(0)
    return found, h


def _encoding(fh: BinaryIO, end: int) -> str:
    from channels.csvfile import detect_encoding

    fh.seek(0)
    return detect_encoding(fh, end)


CSV_DROP_OPTIONS = (
    Field("folder", "string", required=True, path=True, claim="folder", examples=("var/in/lab",),
          description="Where producers drop files (relative to the project)."),
    Field("pattern", "string", default="*.csv"),
    Field("csv_map", "string", required=True, pattern="^[a-z0-9_]+$", expected="a CSV map name from mappings/",
          examples=("lab_results",)),
    Field("sender", "string", required=True, examples=("LABO_CENTRAL",),
          description="Who sends these files (MSH-4 of the messages they stand for; picks the local-code map)."),
    *CSV_LAYOUT_OPTIONS,
    Field("encoding", "string", enum=("auto", "utf-8", "utf-8-sig", "cp1252", "latin-1"), default="auto"),
    Field("settle_s", "number", minimum=0, default=2,
          description="A file is taken once its size and mtime have not changed for this long (or at once with a "
                      "<name>.ready marker)."),
    Field("poll_s", "number", exclusive_minimum=0, default=1),
    *CSV_LIMIT_OPTIONS,
)


class CSVDropInput:
    """Watches `folder`: inotify (through watchdog) wakes the scan as soon as a file is written or renamed;
    a scan every `poll_s` stays as the fallback, since inotify sees nothing on network shares.

    Owns its folder (no other channel may drop there); its options are `CSV_DROP_OPTIONS`, read once.
    """

    description = "CSV files dropped in a folder, read through a CSV map (mappings/<name>/csvmap.yaml)."
    options_spec = CSV_DROP_OPTIONS
    names_sender = True  # its `sender` option scopes the channel's identifiers (ChannelConfig.policy)
    drop_folder = "folder"  # `wasla ingest` drops a file into this option's folder (engine.connectors.inputs)

    def __init__(self, channel: ChannelConfig, intake: InputPorts, executor: Executor) -> None:
        self.channel = channel
        self.intake = intake
        self.executor = executor
        o = self.options = options_of(self, channel.input)
        self.folder = Path(str(o.folder))
        self.pattern = str(o.pattern)
        self.settle_s = float(o.settle_s)
        self.poll_s = float(o.poll_s)
        self.csvmap: CsvMap | None = None
        self.files = intake.files
        self.dir: DropDir | None = None
        self.stopping = threading.Event()
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._skip: set[str] = set()     # names that failed and could not be moved out: logged once
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._observer: Any = None

    async def start(self) -> None:
        self.dir = DropDir(self.folder)
        where = self.intake.mappings
        self.csvmap = find_csvmap(where.mappings_dir, str(self.options.csv_map), where.schema_dir)
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
        """Stop within a commit: a file being read keeps what was journaled and resumes at the next start."""
        self.stopping.set()
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.dir is not None:
            self.dir.close()

    async def _watch(self) -> None:
        assert self.dir is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):  # a crash mid-file: take it again, from its last journaled row
            for name, _ in list(self.dir.entries("processing", self.pattern)):
                if self._stop.is_set():
                    return
                await loop.run_in_executor(self.executor, self._one, name)
        while not self._stop.is_set():
            try:
                for name in self._ready(loop.time()):
                    if self._stop.is_set():
                        break
                    if self._claim(name):
                        await loop.run_in_executor(self.executor, self._one, name)
            except Exception as exc:  # noqa: BLE001 - a bad turn is logged; the next one tries again
                _log.error("csv_drop_scan_failed", channel=self.channel.id, **error_fields(exc))
            with contextlib.suppress(TimeoutError):  # woken by inotify, or the next poll
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    def _ready(self, now: float) -> list[str]:
        """Files that have settled (same size and mtime for settle_s) or have their .ready marker; anything
        else matching the pattern (a link, a pipe) goes to failed/ as it is, never opened."""
        assert self.dir is not None
        out = []
        for name, st in self.dir.entries(None, self.pattern):
            if name in self._skip:
                continue
            if not stat.S_ISREG(st.st_mode):
                self._fail(name, None, f"{kind(st.st_mode)}: not read", move=not stat.S_ISDIR(st.st_mode))
                continue
            sig = (st.st_size, st.st_mtime_ns)
            seen = self._seen.get(name)
            if self.dir.stat(None, name + ".ready") is not None:  # None too when name + .ready cannot exist
                out.append(name)
            elif seen is None or seen[:2] != sig:
                self._seen[name] = (*sig, now)
            elif now - seen[2] >= self.settle_s:
                out.append(name)
        return out

    def _claim(self, name: str) -> bool:
        """Move the file into processing/ (atomic: one taker wins); False when it is gone or the name taken."""
        assert self.dir is not None
        self._seen.pop(name, None)
        try:
            moved = self.dir.move(None, name, "processing", any_free=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._fail(name, None, f"cannot be claimed: {exc.__class__.__name__}")
            return False
        if moved is None:
            return False  # processing/ has one of that name: taken after it
        with contextlib.suppress(OSError):
            self.dir.unlink(None, name + ".ready")
        return True

    def _one(self, name: str) -> None:
        """Take in one claimed file; whatever goes wrong fails this file alone."""
        try:
            self._ingest(name)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the channel
            self._fail(name, "processing", _why(exc))

    def _fail(self, name: str, sub: str | None, reason: str, *, move: bool = True) -> None:
        """Put the file in failed/ with <name>.error.txt; one log line (with the reason, never the name)."""
        assert self.dir is not None
        _log.error("csv_file_failed", channel=self.channel.id, reason=reason)
        try:
            if move:
                self.dir.write_new("failed", fit(name, ".error.txt"), f"{reason}\n".encode())
                if self.dir.move(sub, name, "failed") is not None:
                    return
        except OSError as exc:
            _log.error("csv_file_not_moved", channel=self.channel.id, **error_fields(exc))
        self._skip.add(name)

    # -- one file, on an executor thread -----------------------------------------------------------
    def _ingest(self, name: str) -> None:
        assert self.dir is not None and self.csvmap is not None
        try:
            fh = self.dir.open_read("processing", name)
        except NotRegular as exc:
            self._fail(name, "processing", exc.strerror or "not a regular file")
            return
        with fh:
            st = os.fstat(fh.fileno())
            claim, h = self._claim_bytes(fh, name, st.st_size, st.st_mtime_ns)
            if claim.status != "processing":
                self._done(name)
                _log.info("csv_file_duplicate", channel=self.channel.id, sha256=claim.sha256[:16])  # names: PHI
                return
            work = f".{claim.sha256[:32]}.rejects"
            rejects = Rejects(lambda resume: self._rejects_file(work, resume), list(self.csvmap.columns),
                              claim.progress.rejects_bytes)
            ing = FileIngest(self.channel, self.intake, self.csvmap, fh, name, rejects, sha256=claim.sha256,
                             files=self.files, committed=claim.progress, encoding=claim.encoding or None,
                             stop=self.stopping)
            try:
                tally = self._read(fh, ing, claim, h, st.st_size, st.st_mtime_ns)
            except Stopped:
                return
            except Superseded:  # another taker has these bytes: ours is a copy
                rejects.close()
                self.dir.unlink("processing", work)
                self._done(name)
                _log.info("csv_file_duplicate", channel=self.channel.id, sha256=claim.sha256[:16])
                return
            except (_Rewritten, OSError, UnicodeError, ValueError, csv.Error) as exc:
                rejects.close()
                self.files.fail(self.channel.id, claim.sha256)
                self._rejects_out(name, work if rejects.opened else None)
                self._fail(name, "processing", f"{_why(exc)}; the rows before line {ing.committed.line} were"
                                               " taken in")
                return
            finally:
                rejects.close()
        self._rejects_out(name, work if rejects.opened else None)
        self._done(name)
        _log.info("csv_file_done", channel=self.channel.id, sha256=claim.sha256[:16], rows=tally.rows,
                  messages=tally.messages, rejected=tally.rejected)

    def _claim_bytes(self, fh: BinaryIO, name: str, size: int, mtime_ns: int) -> tuple[FileClaim, Any]:
        """The claim of these bytes: one of this name still being read whose bytes are the start of this
        file (it grew since), else the claim of its SHA-256 (new, or the earlier one)."""
        earlier = [c for c in self.files.processing(self.channel.id, name) if c.size <= size]
        digests, h = _digests(fh, {c.size for c in earlier}, size)
        for c in earlier:
            if digests[c.size] == c.sha256:
                return c, h
        auto = str(self.options.encoding) == "auto"
        claim = self.files.claim(self.channel.id, digests[size], name, size=size, mtime_ns=mtime_ns,
                                 encoding=_encoding(fh, size) if auto else "")
        return claim, h

    def _rejects_file(self, work: str, resume: bool) -> BinaryIO:
        assert self.dir is not None
        if resume:
            try:
                return self.dir.reopen("processing", work)
            except (FileNotFoundError, NotRegular):
                _log.warning("csv_rejects_restarted", channel=self.channel.id)
        return self.dir.create("processing", work, replace_link=True)

    def _read(self, fh: BinaryIO, ing: FileIngest, claim: FileClaim, h: Any, end: int, mtime_ns: int) -> Tally:
        """Read to `end`; when the file changed meanwhile (or ends mid-line and then grows), read on."""
        while True:
            tail = ing.read(end)
            st = os.fstat(fh.fileno())
            changed = (st.st_size, st.st_mtime_ns) != (end, mtime_ns)
            if not changed and tail.partial:  # a line without its end: maybe still being written
                if self.stopping.wait(self.settle_s):
                    raise Stopped
                st = os.fstat(fh.fileno())
                changed = (st.st_size, st.st_mtime_ns) != (end, mtime_ns)
            if not changed:
                return ing.finish(tail, status="done", sha256_end=h.hexdigest() if end != claim.size else "")
            _log.info("csv_file_grew", channel=self.channel.id, sha256=claim.sha256[:16])
            new_end, mtime_ns = self._settled(fh)
            h = self._extend(fh, h, end, new_end)
            end = new_end

    def _settled(self, fh: BinaryIO) -> tuple[int, int]:
        """Size and mtime once they have not changed for settle_s."""
        last = os.fstat(fh.fileno())
        while True:
            if self.stopping.wait(max(self.settle_s, 0.05)):
                raise Stopped
            st = os.fstat(fh.fileno())
            if (st.st_size, st.st_mtime_ns) == (last.st_size, last.st_mtime_ns):
                return st.st_size, st.st_mtime_ns
            last = st

    @staticmethod
    def _extend(fh: BinaryIO, h: Any, end: int, new_end: int) -> Any:
        """The hash at `new_end`, once the first `end` bytes are checked to be those already read."""
        if new_end < end:
            raise _Rewritten(f"the file shrank from {end} to {new_end} bytes while being read")
        digests, again = _digests(fh, {end}, new_end)
        if digests[end] != h.hexdigest():
            raise _Rewritten("the bytes already read changed (rewritten in place, not appended to)")
        return again

    def _rejects_out(self, name: str, work: str | None) -> None:
        """The reject file to failed/<name>.rejects.csv (or a free variant: nothing there is replaced)."""
        assert self.dir is not None
        if work is None:
            return
        try:
            self.dir.move("processing", work, "failed", fit(name, ".rejects.csv"))
        except OSError as exc:
            _log.error("csv_rejects_not_moved", channel=self.channel.id, **error_fields(exc))

    def _done(self, name: str) -> None:
        """The file to done/ (never replacing anything there); when done/ is not a folder it stays put."""
        assert self.dir is not None
        try:
            self.dir.move("processing", name, "done")
        except OSError as exc:  # done/ is not a folder (a link?): the file stays in processing/
            _log.error("csv_file_not_moved", channel=self.channel.id, **error_fields(exc))
