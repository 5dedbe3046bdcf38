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

__all__ = ["META_REQUIRED", "CodeSet", "Concept", "load_codeset"]

META_REQUIRED = ("kind", "name", "title", "url", "version", "publisher", "licence", "source", "date")


@dataclass(frozen=True, slots=True)
class Concept:
    code: str
    display: str
    properties: MappingProxyType[str, str]   # the other columns (region, type …)


@dataclass(frozen=True)
class CodeSet:
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
    concepts: dict[str, Concept] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:2] != ["code", "display"]:
            raise ConfigError("expected a header starting with code,display", file=display, line=1)
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ConfigError(f"expected {len(header)} columns ({','.join(header)}), got {len(row)}",
                                  file=display, line=lineno)
            code = row[0].strip()
            if not code:
                raise ConfigError("empty code", file=display, line=lineno)
            if code in concepts:
                raise ConfigError(f"code {code} listed twice", file=display, line=lineno)
            props = MappingProxyType({k: v.strip() for k, v in zip(header[2:], row[2:], strict=True)})
            concepts[code] = Concept(code, row[1].strip(), props)
    folded: dict[str, Concept] = {}
    for code, concept in concepts.items():
        folded.setdefault(code.upper(), concept)
    return CodeSet(meta["name"], meta["url"], meta["title"], str(meta["version"]), meta, concepts, folded)
