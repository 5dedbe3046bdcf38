"""Every nomenclature of an installation, loaded once at start into in-memory indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.nomenclature.codesets import CodeSet, load_codeset, read_meta
from engine.nomenclature.identifiers import IdentifierSystem, Verdict, load_authorities, load_identifier_systems
from engine.nomenclature.localmaps import LocalMap, load_local_map

__all__ = ["Registry", "empty_registry", "load_registry"]


@dataclass(frozen=True)
class Registry:
    """Every nomenclature of an installation, loaded once: code sets, identifier systems (by key, URI
    and assigning authority) and local-code maps. Lookups by sender and by CX are memoised; a reload
    builds a new Registry rather than changing this one.
    """

    folder: Path
    codesets: dict[str, CodeSet]                 # by name (ma-regions); several may share a URL
    identifiers: dict[str, IdentifierSystem]     # by key (cin)
    by_uri: dict[str, IdentifierSystem]
    authorities: dict[tuple[str, str], IdentifierSystem]   # (CX-4.1 or *, CX-5) → system
    local_maps: dict[str, LocalMap] = field(default_factory=dict)  # by name
    metas: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder name → its _meta.yaml
    _cx_seen: dict[tuple[str, str], IdentifierSystem | None] = field(default_factory=dict, repr=False)
    _maps_seen: dict[tuple[str, str], LocalMap | None] = field(default_factory=dict, repr=False)

    def local_map(self, facility: str, application: str = "") -> LocalMap | None:
        """The local-code map of a sender (MSH-4, and MSH-3 when the map names one); answers are kept."""
        key = (facility, application)
        if key not in self._maps_seen:
            self._maps_seen[key] = self._find_local_map(facility, application)
        return self._maps_seen[key]

    def _find_local_map(self, facility: str, application: str) -> LocalMap | None:
        f, a = facility.upper(), application.upper()
        found = None
        for m in self.local_maps.values():
            if m.facility == f and m.application in ("", a):
                if m.application == a:
                    return m
                found = m
        return found

    def for_cx(self, authority: str, id_type: str) -> IdentifierSystem | None:
        """The identifier system a v2 CX belongs to, by assigning authority and type; None if unknown.

        Asked for every CX of every message: answers are kept (a feed has a handful of pairs).
        """
        key = (authority, id_type)
        try:
            return self._cx_seen[key]
        except KeyError:
            pass
        t = id_type.upper()
        found = (self.authorities.get((authority.upper(), t)) or self.authorities.get(("*", t))) if t else None
        if len(self._cx_seen) < 10_000:
            self._cx_seen[key] = found
        return found

    def codeset(self, name: str) -> CodeSet:
        found = self.codesets.get(name)
        if found is None:
            raise KeyError(f"no code set '{name}' (known: {', '.join(sorted(self.codesets))})")
        return found

    def identifier_system(self, key_or_uri: str) -> IdentifierSystem:
        found = self.identifiers.get(key_or_uri) or self.by_uri.get(key_or_uri)
        if found is None:
            raise KeyError(f"no identifier system '{key_or_uri}' (known: {', '.join(sorted(self.identifiers))})")
        return found

    def validate_id(self, key_or_uri: str, value: str) -> Verdict:
        return self.identifier_system(key_or_uri).validate(value)


def load_registry(folder: Path, base: str) -> Registry:
    """Load every folder of `folder` by the kind its `_meta.yaml` declares.

    `hl7v2-fhir/` (v2 → FHIR vocabulary maps) is read by the mapping compiler, and `kind: Tariffs` folders
    (`ma-tnr/`: key-letter values and claim rules) by `engine/claims`, not here.
    """
    codesets: dict[str, CodeSet] = {}
    identifiers: dict[str, IdentifierSystem] = {}
    authorities: dict[tuple[str, str], IdentifierSystem] = {}
    local_maps: dict[str, LocalMap] = {}
    metas: dict[str, dict[str, Any]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        meta = read_meta(sub, base)
        metas[sub.name] = meta
        kind = meta["kind"]
        if kind == "CodeSystem":
            cs = load_codeset(sub, base)
            if cs.name != sub.name:
                raise ConfigError(f"name '{cs.name}' should be the folder name '{sub.name}'",
                                  file=str(sub / "_meta.yaml"), line=1)
            codesets[cs.name] = cs
        elif kind == "IdentifierSystems":
            systems = load_identifier_systems(sub, base)
            identifiers.update(systems)
            authorities.update(load_authorities(sub, systems))
        elif kind == "LocalCodeMap":
            if meta["name"] != sub.name:
                raise ConfigError(f"name '{meta['name']}' should be the folder name '{sub.name}'",
                                  file=str(sub / "_meta.yaml"), line=1)
            local_maps[meta["name"]] = load_local_map(sub, meta, base)
        elif kind not in ("VocabularyMaps", "Tariffs"):
            raise ConfigError(f"unknown kind '{kind}' (CodeSystem, IdentifierSystems, LocalCodeMap, Tariffs, "
                              "VocabularyMaps)",
                              file=str(sub / "_meta.yaml"), line=1)
    _check_references(codesets)
    return Registry(folder, codesets, identifiers, {s.uri: s for s in identifiers.values()}, authorities,
                    local_maps, metas)


def empty_registry(folder: Path) -> Registry:
    return Registry(folder, {}, {}, {}, {})


def _check_references(codesets: dict[str, CodeSet]) -> None:
    """`references: {region: ma-regions}`: every value of that column is a code of that set."""
    for cs in codesets.values():
        for column, target in (cs.meta.get("references") or {}).items():
            other = codesets.get(target)
            where = str(cs.meta.get("_file", cs.name))
            if other is None:
                raise ConfigError(f"references: no code set '{target}'", file=where)
            bad = sorted(c.code for c in cs.concepts.values() if c.properties.get(column) not in other.concepts)
            if bad:
                raise ConfigError(f"{column} of {', '.join(bad)} is not a code of {target}", file=where)
