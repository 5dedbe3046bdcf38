"""A sender's local codes → national ones (a lab's `GLY` → LOINC 14771-0), ConceptMap-style.

One folder per sender under `nomenclatures/` (kind LocalCodeMap): `_meta.yaml` names the sender
(MSH-4, optionally MSH-3) and the target system; `map.csv` has one row per local code. The mappings
add the national coding beside the sender's own — they never replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.nomenclature.csvrows import rows

__all__ = ["EQUIVALENCES", "LocalMap", "load_local_map"]

COLUMNS = ["local_code", "local_display", "target_system", "target_code", "target_display", "equivalence"]
# FHIR R4 ConceptMap equivalences that say the local code means the target (others are not added)
EQUIVALENCES = ("equivalent", "equal", "wider", "narrower", "subsumes", "specializes", "inexact",
                "relatedto", "unmatched", "disjoint")
_ADDED = {"equivalent", "equal", "wider", "subsumes"}


@dataclass(frozen=True)
class LocalMap:
    """One sender's local codes mapped to national codings (ConceptMap-style): the sender (MSH-4, and
    MSH-3 when given), the source system and, per local code, the codings to add beside it. Immutable
    after loading.
    """

    name: str
    url: str
    title: str
    facility: str
    application: str
    source_system: str             # the URI local codes are written under
    meta: dict[str, Any]
    rows: dict[str, tuple[dict[str, str], ...]]   # local code → national codings to add
    all_rows: tuple[tuple[str, ...], ...]         # every CSV row, for export

    def national(self, code: str) -> tuple[dict[str, str], ...] | None:
        """Codings to add beside `code`; () when mapped as unmatched/narrower; None when not in the map."""
        return self.rows.get(code.strip())


def load_local_map(folder: Path, meta: dict[str, Any], base: str) -> LocalMap:
    path = folder / "map.csv"
    where = str(path)
    sender = meta.get("sender") or {}
    if not isinstance(sender, dict) or not sender.get("facility"):
        raise ConfigError("sender: {facility: MSH-4 value} is required", file=str(folder / "_meta.yaml"), line=1)
    national: dict[str, tuple[dict[str, str], ...]] = {}
    all_rows: list[tuple[str, ...]] = []
    for line, row in rows(path, COLUMNS):
        local, _, system, code, display, equivalence = row
        if equivalence not in EQUIVALENCES:
            raise ConfigError(f"equivalence: expected one of {', '.join(EQUIVALENCES)}", file=where, line=line)
        if equivalence != "unmatched" and not (system and code):
            raise ConfigError("target_system and target_code are required unless unmatched", file=where, line=line)
        all_rows.append(tuple(row))
        added = national.get(local, ())
        if equivalence in _ADDED:
            added = (*added, {"system": system, "code": code, **({"display": display} if display else {})})
        national[local] = added
    return LocalMap(meta["name"], meta["url"], meta["title"], str(sender["facility"]).upper(),
                    str(sender.get("application", "")).upper(),
                    str(meta.get("source_system", "")).replace("{base}", base), meta, national, tuple(all_rows))
