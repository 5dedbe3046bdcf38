"""Vocabulary maps (v2 code → FHIR code), read from CSV under `nomenclatures/`.

Facts live in the CSV files; this module only indexes them. The nomenclature registry
(engine.nomenclature.registry) covers the other code systems.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.errors import ConfigError
from engine.nomenclature.csvrows import rows

__all__ = ["Target", "VocabMap", "load_vocab"]

COLUMNS = ["code", "target_system", "target_code", "target_display"]


@dataclass(frozen=True, slots=True)
class Target:
    """One FHIR coding a v2 code maps to: system, code and display. Immutable."""

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
    """One vocabulary map (`<name>.csv`): v2 code → FHIR codings, indexed exactly and upper-cased, so a
    lookup is one or two hash probes. Immutable after loading.
    """

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
    found: dict[str, list[Target]] = {}
    for lineno, (code, system, target, target_display) in rows(path, COLUMNS):
        if not (code and system and target):
            raise ConfigError("code, target_system and target_code must be set", file=display, line=lineno)
        found.setdefault(code, []).append(Target(system, target, target_display))
    frozen = {k: tuple(v) for k, v in found.items()}
    folded: dict[str, tuple[Target, ...]] = {}
    for k, v in frozen.items():
        folded.setdefault(k.upper(), v)
    return VocabMap(name, display, frozen, folded)
