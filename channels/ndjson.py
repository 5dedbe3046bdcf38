"""NDJSON file destination: one FHIR Bundle per line, one file per UTC day, fsync before "delivered".

Exactly once across crashes: under an exclusive lock the destination records in the journal
the offset it is about to write at, writes the whole line in one call, fsyncs, and only then
is the output marked delivered. A redelivered message whose recorded offset already holds its
line is recognised and not written again; a torn last line (crash mid-write) is cut at start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine.config import DestinationConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.store import Journal

__all__ = ["NDJSONOutput"]


def _now() -> datetime:
    return datetime.now(UTC)


class NDJSONOutput:
    def __init__(self, config: DestinationConfig, root: Path, clock: Callable[[], datetime] = _now) -> None:
        self.id = config.id
        self.folder = (root / str(config.options["path"])).resolve()
        self.fsync = bool(config.options.get("fsync", True))
        self.clock = clock
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.glob("*.ndjson"):
            self._repair(path)

    def _path(self) -> Path:
        return self.folder / f"bundles-{self.clock():%Y-%m-%d}.ndjson"

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

    @staticmethod
    def _holds(location: str, line: bytes) -> bool:
        path, _, offset = location.rpartition(":")
        try:
            with open(path, "rb") as fh:
                fh.seek(int(offset))
                return fh.read(len(line)) == line
        except (OSError, ValueError):
            return False

    def deliver(self, message_id: str, body: bytes, journal: Journal) -> str | None:
        if b"\n" in body:
            raise PermanentDeliveryError("bundle contains a newline; NDJSON needs one JSON document per line")
        line = body + b"\n"
        prior = journal.output(message_id, self.id)
        if prior is not None and prior.status == "writing" and prior.location and self._holds(prior.location, line):
            return None
        path = self._path()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot open {path.name}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            offset = os.fstat(fd).st_size
            location = f"{path}:{offset}"
            journal.output_writing(message_id, self.id, location)
            written = os.write(fd, line)
            if written != len(line):
                os.ftruncate(fd, offset)
                raise TransientDeliveryError(f"short write to {path.name} (disk full?)")
            if self.fsync:
                os.fsync(fd)
            return location
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write {path.name}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def close(self) -> None:
        return None
