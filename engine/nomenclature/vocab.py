"""Vocabulary maps (v2 code → FHIR code), read from CSV under `nomenclatures/`.

Facts live in the CSV files; this module only indexes them. The nomenclature registry
(its own issue) generalises this to every code system.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["Target", "VocabMap", "load_vocab"]

COLUMNS = ["code", "target_system", "target_code", "target_display"]


@dataclass(frozen=True, slots=True)
class Target:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class VocabMap:
    name: str
    file: str
    rows: dict[str, tuple[Target, ...]]
    folded: dict[str, tuple[Target, ...]]

    def lookup(self, code: str) -> tuple[Target, ...]:
        """All targets of `code` (a multi-target row gives several); () when unmapped.

        Exact match first, then case-insensitive: senders write `INTERNET` where the IG says `Internet`.
        """
        key = code.strip()
        return self.rows.get(key) or self.folded.get(key.upper(), ())

    def first(self, code: str, system: str | None = None) -> Target | None:
        for t in self.lookup(code):
            if system is None or t.system == system:
                return t
        return None


@cache
def load_vocab(folder: Path, name: str) -> VocabMap:
    path = folder / f"{name}.csv"
    display = str(path)
    if not path.exists():
        raise ConfigError(f"no vocabulary map '{name}' ({path.name} not found)", file=str(folder))
    rows: dict[str, list[Target]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != COLUMNS:
            raise ConfigError(f"expected header {','.join(COLUMNS)}", file=display, line=1)
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(COLUMNS) or not row[0].strip() or not row[1].strip() or not row[2].strip():
                raise ConfigError("expected 4 columns with code, target_system and target_code set",
                                  file=display, line=lineno)
            rows.setdefault(row[0].strip(), []).append(Target(row[1].strip(), row[2].strip(), row[3].strip()))
    frozen = {k: tuple(v) for k, v in rows.items()}
    folded: dict[str, tuple[Target, ...]] = {}
    for k, v in frozen.items():
        folded.setdefault(k.upper(), v)
    return VocabMap(name, display, frozen, folded)
