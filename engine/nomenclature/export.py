"""The nomenclatures as FHIR R4 terminology resources, so a terminology server holds the same truth.

- a code set Wasla defines (its URI under the installation's base) → CodeSystem + ValueSet;
- a subset of someone else's system (ISO 3166-2 regions) → ValueSet only: we do not redefine ISO;
- each identifier system → NamingSystem (the project URI preferred; an OID where one is official);
- each local-code map and each HL7 v2 → FHIR vocabulary map → ConceptMap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any

from engine.nomenclature.codesets import CodeSet
from engine.nomenclature.identifiers import IdentifierSystem
from engine.nomenclature.localmaps import LocalMap
from engine.nomenclature.registry import Registry
from engine.nomenclature.vocab import load_vocab

__all__ = ["export"]

_JURISDICTION = {"MA": {"coding": [{"system": "urn:iso:std:iso:3166", "code": "MA"}]},
                 "FR": {"coding": [{"system": "urn:iso:std:iso:3166", "code": "FR"}]}}


def _computable(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", name)[:64]


def _date(meta: dict[str, Any]) -> str:
    d = meta.get("date")
    return d.isoformat() if isinstance(d, date) else str(d)


def export(registry: Registry, base: str) -> Iterator[dict[str, Any]]:
    """Every resource, one dict each, in a stable order."""
    for cs in registry.codesets.values():
        own = cs.url.startswith(base)
        if own:
            yield _codesystem(cs)
        yield _valueset(cs, base)
    ids_date = _date(registry.metas.get("identifier-systems", {}))
    for ids in registry.identifiers.values():
        yield _namingsystem(ids, ids_date)
    for lm in registry.local_maps.values():
        yield _local_conceptmap(lm)
    yield from _vocab_conceptmaps(registry, base)


def _codesystem(cs: CodeSet) -> dict[str, Any]:
    props = sorted({k for c in cs.concepts.values() for k in c.properties})
    resource: dict[str, Any] = {
        "resourceType": "CodeSystem", "id": _id(cs.name), "url": cs.url, "version": cs.version,
        "name": _computable(cs.name), "title": cs.title, "status": "active", "date": _date(cs.meta),
        "publisher": str(cs.meta["publisher"]), "description": str(cs.meta["source"]).strip(),
        "copyright": str(cs.meta["licence"]).strip(), "caseSensitive": True, "content": "complete",
        "count": len(cs),
    }
    if props:
        resource["property"] = [{"code": p, "type": "string"} for p in props]
    resource["concept"] = [
        {"code": c.code, "display": c.display,
         **({"property": [{"code": k, "valueString": v} for k, v in c.properties.items() if v]}
            if any(c.properties.values()) else {})}
        for c in cs.concepts.values()]
    return resource


def _valueset(cs: CodeSet, base: str) -> dict[str, Any]:
    include: dict[str, Any] = {"system": cs.url}
    if not cs.url.startswith(base):  # a subset of another's system: list the codes we mean
        include["concept"] = [{"code": c.code, "display": c.display} for c in cs.concepts.values()]
    return {
        "resourceType": "ValueSet", "id": _id(cs.name), "url": f"{base}/ValueSet/{cs.name}", "version": cs.version,
        "name": _computable(cs.name), "title": cs.title, "status": "active", "date": _date(cs.meta),
        "publisher": str(cs.meta["publisher"]), "description": str(cs.meta["source"]).strip(),
        "copyright": str(cs.meta["licence"]).strip(), "compose": {"include": [include]},
    }


def _namingsystem(ids: IdentifierSystem, when: str) -> dict[str, Any]:
    unique = []
    if ids.uri.startswith("urn:oid:"):
        unique.append({"type": "oid", "value": ids.uri.removeprefix("urn:oid:"), "preferred": True})
        unique.append({"type": "uri", "value": ids.uri, "preferred": False})
    else:
        unique.append({"type": "uri", "value": ids.uri, "preferred": True})
    country = "FR" if ids.key.startswith("ins-") else "MA"
    resource: dict[str, Any] = {
        "resourceType": "NamingSystem", "id": _id(f"ns-{ids.key}"), "name": _computable(ids.key),
        "status": "active", "kind": "identifier", "date": when,
        "description": ids.label + (f" (format confidence {ids.confidence})" if ids.confidence != "P" else ""),
        "jurisdiction": [_JURISDICTION[country]], "uniqueId": unique,
    }
    if ids.v2_types:
        resource["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                        "code": ids.v2_types[0]}]}
    return resource


def _local_conceptmap(lm: LocalMap) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for local, display, system, code, target_display, equivalence in lm.all_rows:
        target: dict[str, Any] = {"equivalence": equivalence}
        if code:
            target = {"code": code, **({"display": target_display} if target_display else {}), **target}
        element = {"code": local, **({"display": display} if display else {}), "target": [target]}
        groups.setdefault(system or str(lm.meta.get("target", "")), []).append(element)
    return {
        "resourceType": "ConceptMap", "id": _id(lm.name), "url": lm.url, "version": str(lm.meta["version"]),
        "name": _computable(lm.name), "title": lm.title, "status": "active", "date": _date(lm.meta),
        "publisher": str(lm.meta["publisher"]), "description": str(lm.meta["source"]).strip(),
        "copyright": str(lm.meta["licence"]).strip(),
        "group": [{"source": lm.source_system, "target": t, "element": els} for t, els in groups.items()],
    }


def _vocab_conceptmaps(registry: Registry, base: str) -> Iterator[dict[str, Any]]:
    """The HL7 v2 → FHIR maps the mappings use (nomenclatures/hl7v2-fhir), as the IG publishes them."""
    folder = registry.folder / "hl7v2-fhir"
    meta = registry.metas.get("hl7v2-fhir")
    if meta is None:
        return
    for name, info in (meta.get("maps") or {}).items():
        source = str(info.get("source", ""))
        if not source.startswith("http"):
            continue  # a national table without a published v2 code system URI: not exported
        vm = load_vocab(folder, name)
        groups: dict[str, list[dict[str, Any]]] = {}
        for code, targets in vm.rows.items():
            for t in targets:
                target = {"code": t.code, **({"display": t.display} if t.display else {}), "equivalence": "equivalent"}
                groups.setdefault(t.system, []).append({"code": code, "target": [target]})
        yield {
            "resourceType": "ConceptMap", "id": _id(name), "url": f"{base}/ConceptMap/{name}",
            "version": str(meta.get("version", "")), "name": _computable(name), "title": f"{name} ({info.get('ig')})",
            "status": "active", "date": _date(meta), "publisher": str(meta.get("publisher", "")),
            "description": str(info.get("note") or f"HL7 v2-to-FHIR IG vocabulary map {info.get('ig')}"),
            "copyright": str(meta.get("licence", "")),
            "group": [{"source": source, "target": system, "element": els} for system, els in groups.items()],
        }
