"""Code sets: one folder under `nomenclatures/` with `_meta.yaml` (what it is, where it comes from,
under which licence) and `codes.csv` (one row per code). Loaded whole into a dict: a lookup is one
hash probe.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.config.yamlfile import load_yaml
from engine.errors import ConfigError
from engine.nomenclature.csvrows import rows

__all__ = ["META_REQUIRED", "CodeSet", "Concept", "load_codeset"]

META_REQUIRED = ("kind", "name", "title", "url", "version", "publisher", "licence", "source", "date")


@dataclass(frozen=True, slots=True)
class Concept:
    """One code of a code set: its code, display and the other columns of its row. Immutable."""

    code: str
    display: str
    properties: MappingProxyType[str, str]   # the other columns (region, type …)


@dataclass(frozen=True)
class CodeSet:
    """One code set from `nomenclatures/<name>/`: its canonical URL, metadata and concepts, indexed by
    code and by upper-cased code, so a lookup is one or two hash probes. Immutable after loading.
    """

    name: str
    url: str                 # canonical URI ({base} already replaced)
    title: str
    version: str
    meta: dict[str, Any]
    concepts: dict[str, Concept] = field(repr=False)
    folded: dict[str, Concept] = field(repr=False)  # upper-cased codes: senders write "cs" for "Cs"

    def lookup(self, code: str) -> Concept | None:
        """The concept for `code`: exact first, then case-insensitively."""
        key = code.strip()
        return self.concepts.get(key) or self.folded.get(key.upper())

    def __len__(self) -> int:
        return len(self.concepts)


def read_meta(folder: Path, base: str) -> dict[str, Any]:
    file = folder / "_meta.yaml"
    if not file.exists():
        raise ConfigError("every nomenclature folder needs a _meta.yaml (source, licence …)", file=str(folder))
    doc = load_yaml(file)
    meta = dict(doc.data or {})
    missing = [k for k in META_REQUIRED if not meta.get(k)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}", file=doc.file, line=1)
    meta["url"] = str(meta["url"]).replace("{base}", base)
    meta["_file"] = str(folder / "codes.csv")
    return meta


def load_codeset(folder: Path, base: str) -> CodeSet:
    """Read one code-set folder; any problem names the file and line."""
    meta = read_meta(folder, base)
    path = folder / "codes.csv"
    display = str(path)
    with path.open(encoding="utf-8", newline="") as fh:
        extra = (next(csv.reader(fh), None) or [])[2:]   # the set's own columns after code,display
    concepts: dict[str, Concept] = {}
    for lineno, row in rows(path, ["code", "display"], prefix=True):
        code = row[0]
        if not code:
            raise ConfigError("empty code", file=display, line=lineno)
        if code in concepts:
            raise ConfigError(f"code {code} listed twice", file=display, line=lineno)
        concepts[code] = Concept(code, row[1], MappingProxyType(dict(zip(extra, row[2:], strict=True))))
    unknown = [c for c in meta.get("equivalents") or {} if c not in extra]
    if unknown:
        raise ConfigError(f"equivalents name column(s) {', '.join(unknown)} that codes.csv does not have",
                          file=str(folder / "_meta.yaml"))
    folded: dict[str, Concept] = {}
    for code, concept in concepts.items():
        folded.setdefault(code.upper(), concept)
    return CodeSet(meta["name"], meta["url"], meta["title"], str(meta["version"]), meta, concepts, folded)
