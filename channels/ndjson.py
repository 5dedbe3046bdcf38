"""NDJSON file destination: one FHIR Bundle per line, one file per UTC day, fsync before "delivered".

Exactly once across crashes: under an exclusive lock the destination records in the journal
the offset it is about to write at, writes the whole line in one call, fsyncs, and only then
is the output marked delivered. A batch does the same for all its lines: one commit of their
offsets, one write, one fsync. A redelivered message whose recorded offset already holds its
line is recognised and not written again; a torn last line (crash mid-write) is cut at start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine.config import DestinationConfig
from engine.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from engine.store import Journal, OutputRow

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
        result = self.deliver_batch([(message_id, body, journal.output(message_id, self.id))], journal)[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    def deliver_batch(self, items: list[tuple[str, bytes, OutputRow | None]],
                      journal: Journal) -> list[str | None | DeliveryError]:
        """Append every line in one write and one fsync, after one journal commit of their offsets."""
        results: list[str | None | DeliveryError] = [None] * len(items)
        lines: list[tuple[int, str, bytes]] = []
        for i, (mid, body, prior) in enumerate(items):
            if b"\n" in body:
                results[i] = PermanentDeliveryError("bundle contains a newline; NDJSON needs one document per line")
                continue
            line = body + b"\n"
            if prior is not None and prior.status == "writing" and prior.location and self._holds(prior.location, line):
                continue  # None: already written before a crash
            lines.append((i, mid, line))
        if lines:
            for i, location in self._append(lines, journal):
                results[i] = location
        return results

    def _append(self, lines: list[tuple[int, str, bytes]], journal: Journal) -> list[tuple[int, str]]:
        path = self._path()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot open {path.name}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            offset = start = os.fstat(fd).st_size
            placed: list[tuple[int, str]] = []
            for i, _, line in lines:
                placed.append((i, f"{path}:{offset}"))
                offset += len(line)
            journal.outputs_writing(self.id, [(mid, loc) for (_, mid, _), (_, loc) in zip(lines, placed, strict=True)])
            data = b"".join(line for _, _, line in lines)
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, start)
                raise TransientDeliveryError(f"short write to {path.name} (disk full?)")
            if self.fsync:
                os.fsync(fd)
            return placed
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write {path.name}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def close(self) -> None:
        return None
