"""NDJSON file destination: FHIR as newline-delimited JSON, fsync before "delivered".

Layouts (`layout:`):
- `bundle` (default): one transaction Bundle per line, in `bundles-<period>.ndjson`.
- `resources`: FHIR bulk-data style, each resource of the Bundle on a line of
  `<ResourceType>-<period>.ndjson` (Patient-2026-11-25.ndjson, Observation-…).

A new file per UTC `period` (day or hour); with `max_bytes`, a file that would grow past it is
followed by `<name>.1.ndjson`, `<name>.2.ndjson` … Files are never rewritten, only appended.

Exactly once across crashes: under exclusive locks on every file a batch touches, the
destination records in the journal the offsets it is about to write at, writes each file's
lines in one call, fsyncs each, and only then is the output marked delivered. A redelivered
message whose recorded offsets already hold its lines is recognised and not written again
(only the lines missing after a crash between two files are written); a torn last line
(crash mid-write) is cut at start.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger, OutputRow
from engine.connectors.toolkit import DestinationConfig
from engine.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

__all__ = ["NDJSONOutput"]

_PERIODS = {"day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}


def _now() -> datetime:
    return datetime.now(UTC)


NDJSON_OPTIONS = (
    Field("path", "string", required=True, min_length=1, description="Folder, relative to the working directory.",
          examples=("var/out/archive",)),
    Field("fsync", "boolean", default=True, description="fsync before a message counts as delivered."),
    Field("layout", "string", enum=("bundle", "resources"), default="bundle",
          description="bundle: one transaction Bundle per line in bundles-<period>.ndjson; resources: each resource "
                      "on a line of <Type>-<period>.ndjson."),
    Field("period", "string", enum=("day", "hour"), default="day", description="A new file per UTC day or hour."),
    Field("max_bytes", "integer", minimum=1024,
          description="Rotate to <name>.<n>.ndjson when a file would grow past this size."),
)


class NDJSONOutput:
    """The outbound connector `ndjson`: owns the files of its folder, each line a whole Bundle or resource,
    written (and fsynced) before a message counts as delivered. Options: `NDJSON_OPTIONS`."""

    description = ("FHIR as newline-delimited JSON files: whole Bundles (layout bundle) or one file per resource "
                   "type (layout resources, as FHIR bulk data), one file per period, rotated by size.")
    options_spec = NDJSON_OPTIONS
    capabilities = Capabilities()

    def __init__(self, config: DestinationConfig, root: Path, clock: Callable[[], datetime] = _now) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.folder = (root / str(o.path)).resolve()
        self.fsync = bool(o.fsync)
        self.layout = str(o.layout)
        self.period = _PERIODS[str(o.period)]
        self.max_bytes = int(o.max_bytes or 0)
        self.clock = clock
        self._part: dict[str, int] = {}  # file stem → the rotation number being appended to
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.glob("*.ndjson"):
            self._repair(path)

    # -- naming -------------------------------------------------------------------------------
    def _stem(self, kind: str) -> str:
        return f"{kind}-{self.clock():{self.period}}"

    def _name(self, stem: str, part: int) -> str:
        return f"{stem}.ndjson" if part == 0 else f"{stem}.{part}.ndjson"

    def _current_part(self, stem: str) -> int:
        part = self._part.get(stem)
        if part is None:  # after a restart: continue the highest part on disk
            found = [int(m.group(1) or 0) for p in self.folder.glob(f"{stem}*.ndjson")
                     if (m := re.fullmatch(re.escape(stem) + r"(?:\.(\d+))?\.ndjson", p.name))]
            part = self._part[stem] = max(found, default=0)
        return part

    def _lines(self, body: bytes) -> list[tuple[str, bytes]]:
        """(kind, line) pairs a message writes: its Bundle, or each of its resources."""
        if self.layout == "bundle":
            return [("bundles", body + b"\n")]
        doc = orjson.loads(body)
        if doc.get("resourceType") != "Bundle":
            return [(str(doc.get("resourceType", "Resource")), orjson.dumps(doc) + b"\n")]
        return [(str(e["resource"].get("resourceType", "Resource")), orjson.dumps(e["resource"]) + b"\n")
                for e in doc.get("entry", []) if isinstance(e.get("resource"), dict)]

    # -- recovery -----------------------------------------------------------------------------
    @staticmethod
    def _repair(path: Path) -> None:
        """Cut a torn last line left by a crash in the middle of a write."""
        with path.open("rb+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                fh.seek(pos - step)
                chunk = fh.read(step)
                nl = chunk.rfind(b"\n")
                if nl != -1:
                    fh.truncate(pos - step + nl + 1)
                    return
                pos -= step
            fh.truncate(0)

    def _holds(self, location: str, line: bytes) -> bool:
        name, _, offset = location.rpartition(":")
        try:
            with open(self.folder / name, "rb") as fh:
                fh.seek(int(offset))
                return fh.read(len(line)) == line
        except (OSError, ValueError):
            return False

    # -- delivery -----------------------------------------------------------------------------
    def deliver(self, message_id: str, body: bytes, journal: OutputLedger) -> str | None:
        result = self.deliver_batch([(message_id, body, journal.output(message_id, self.id))], journal)[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    def deliver_batch(self, items: list[tuple[str, bytes, OutputRow | None]],
                      journal: OutputLedger) -> list[str | None | DeliveryError]:
        """Append every line in one write and one fsync per file, after one journal commit of their offsets."""
        results: list[str | None | DeliveryError] = [None] * len(items)
        todo: list[tuple[int, str, list[tuple[str, bytes]], list[str]]] = []
        for i, (mid, body, prior) in enumerate(items):
            if b"\n" in body:
                results[i] = PermanentDeliveryError("bundle contains a newline; NDJSON needs one document per line")
                continue
            try:
                lines = self._lines(body)
            except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError):
                results[i] = PermanentDeliveryError("not a FHIR JSON document")
                continue
            kept: list[str] = []
            if prior is not None and prior.status == "writing" and prior.location:
                placed = prior.location.split(" ")
                if len(placed) == len(lines):  # written before a crash: keep what is there, write the rest
                    held = [self._holds(loc, line) for loc, (_, line) in zip(placed, lines, strict=True)]
                    if all(held):
                        continue  # None: already written
                    kept = [loc if ok else "" for loc, ok in zip(placed, held, strict=True)]
                    lines = [ln if not ok else ("", b"") for ln, ok in zip(lines, held, strict=True)]
            todo.append((i, mid, lines, kept))
        if todo:
            for i, location in self._append(todo, journal):
                results[i] = location
        return results

    def _open(self, kind: str, adding: int) -> tuple[int, str]:
        """The file a kind's lines go to now, opened and locked (rotated when it would pass max_bytes)."""
        stem = self._stem(kind)
        while True:
            part = self._current_part(stem)
            name = self._name(stem, part)
            try:
                fd = os.open(self.folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                raise TransientDeliveryError(f"cannot open {name}: {exc.strerror}") from exc
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if not self.max_bytes or size == 0 or size + adding <= self.max_bytes:
                return fd, name
            os.close(fd)
            self._part[stem] = part + 1

    def _append(self, todo: list[tuple[int, str, list[tuple[str, bytes]], list[str]]],
                journal: OutputLedger) -> list[tuple[int, str]]:
        per_kind: dict[str, list[bytes]] = {}
        for _, _, lines, _ in todo:
            for kind, line in lines:
                if kind:
                    per_kind.setdefault(kind, []).append(line)
        opened: dict[str, tuple[int, str, int]] = {}  # kind → (fd, name, next offset)
        try:
            for kind in sorted(per_kind):
                fd, name = self._open(kind, sum(map(len, per_kind[kind])))
                opened[kind] = (fd, name, os.fstat(fd).st_size)
            placed: list[tuple[int, str, str]] = []
            offsets = {k: off for k, (_, _, off) in opened.items()}
            for i, mid, lines, kept in todo:
                locs = []
                for n, (kind, line) in enumerate(lines):
                    if not kind:
                        locs.append(kept[n])
                        continue
                    locs.append(f"{opened[kind][1]}:{offsets[kind]}")
                    offsets[kind] += len(line)
                placed.append((i, mid, " ".join(locs)))
            journal.outputs_writing(self.id, [(mid, loc) for _, mid, loc in placed])
            for kind, (fd, name, start) in opened.items():
                data = b"".join(per_kind[kind])
                written = os.write(fd, data)
                if written != len(data):
                    os.ftruncate(fd, start)
                    raise TransientDeliveryError(f"short write to {name} (disk full?)")
                if self.fsync:
                    os.fsync(fd)
            return [(i, loc) for i, _, loc in placed]
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write {self.folder.name}: {exc.strerror}") from exc
        finally:
            for fd, _, _ in opened.values():
                os.close(fd)

    def close(self) -> None:
        return None


def resources_in(folder: Path) -> dict[str, int]:
    """Lines per resource type in a `resources` layout folder (for tests and operators' checks)."""
    counts: dict[str, int] = {}
    for path in folder.glob("*.ndjson"):
        kind = path.name.split("-", 1)[0]
        with path.open("rb") as fh:
            counts[kind] = counts.get(kind, 0) + sum(1 for _ in fh)
    return counts

