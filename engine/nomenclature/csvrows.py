"""The one way nomenclature CSV files are read: a header that must match, blank lines skipped, every
row the header's width, and any problem reported at its file and line."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["rows"]


def rows(path: Path, columns: list[str], *, prefix: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each data row. `prefix`: the header need only start with
    `columns` (code sets add their own columns after code,display); rows then match the file's header."""
    where = str(path)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None) or []
        if (header[:len(columns)] if prefix else header) != columns:
            raise ConfigError(f"expected a header {'starting with ' if prefix else ''}{','.join(columns)}",
                              file=where, line=1)
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ConfigError(f"expected {len(header)} columns ({','.join(header)}), got {len(row)}",
                                  file=where, line=line)
            yield line, [c.strip() for c in row]
