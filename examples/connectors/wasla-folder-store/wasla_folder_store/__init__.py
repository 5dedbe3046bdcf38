"""An example third-party output: each Bundle stored as `<folder>/<bucket>/<key>` (an object-store stub)."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.connectors import Field, options_of
from engine.errors import TransientDeliveryError

__all__ = ["FolderStoreOutput"]

OPTIONS = (
    Field("folder", "string", required=True, path=True, min_length=1, examples=("var/out/objects",),
          description="Local folder standing in for the object store (relative to the project)."),
    Field("bucket", "string", required=True, pattern="^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
          expected="an S3 bucket name (lowercase, digits, . -)", examples=("fhir-bundles",),
          description="Bucket: the first folder under `folder`."),
    Field("key", "string", default="{date}/{message_id}.json",
          description="Object key template: {message_id}, {date} (UTC, YYYY-MM-DD)."),
    Field("fsync", "boolean", default=True, description="fsync each object before it counts as delivered."),
)


class FolderStoreOutput:
    """The outbound connector `folder_store`: owns the objects under `<folder>/<bucket>`; each message is
    written whole (temporary file, then rename), so a reader never sees half a Bundle."""

    description = "Each FHIR Bundle stored as <bucket>/<key> in a folder (an S3-compatible object store stub)."
    options_spec = OPTIONS

    def __init__(self, config: Any, root: Path | None = None) -> None:
        o = self.options = options_of(self, config.options)
        self.id = str(config.id)
        self.bucket = (Path(root or ".") / str(o.folder) / str(o.bucket)).resolve()

    def deliver(self, message_id: str, body: bytes, journal: Any) -> str:
        """Store `body` as one object; its location is `<bucket>/<key>`."""
        key = str(self.options.key).format(message_id=message_id, date=datetime.now(UTC).strftime("%Y-%m-%d"))
        target = self.bucket / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                if self.options.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot store {key}: {exc.strerror or exc}") from exc
        return f"{self.options.bucket}/{key}"

    def close(self) -> None:
        """Nothing held open between messages."""
