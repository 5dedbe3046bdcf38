"""The last check before a Bundle leaves the mapping: no empty value, no HL7 `""`, no required element missing.

Whatever a mapping rule does, a Bundle that a FHIR server would refuse (or, worse, accept with an empty
identifier) never leaves the engine: the message fails with the element's path instead. The shape of
each FHIR type (its required elements and its children's types) is read once from the FHIR R4 models
and cached; per message this is one walk over plain dicts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from engine.errors import MappingError
from engine.mapping.fhirmodel import children

__all__ = ["check_bundle"]

_NULL = '""'


@cache
def _shape(type_name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(required element names, child name → FHIR type name) of a FHIR complex type or resource."""
    try:
        kids = children(type_name)
    except (KeyError, ValueError):
        return (), {}
    required = tuple(name for name, (_, req) in kids.items() if req)
    return required, {name: t for name, (t, _) in kids.items()}


def check_bundle(bundle: dict[str, Any]) -> None:
    """Raise MappingError naming the first empty or missing element of any entry's resource."""
    for i, entry in enumerate(bundle.get("entry", ())):
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType", "")
        _walk(resource, rtype, f"{rtype}", i)
    for key in ("id", "timestamp"):
        if not bundle.get(key):
            raise MappingError(f"invalid FHIR: Bundle.{key} is empty", field=f"Bundle.{key}")


def _fail(path: str, entry: int, what: str) -> None:
    raise MappingError(f"invalid FHIR: {path} {what} (entry {entry + 1})", field=path)


def _walk(node: dict[str, Any], type_name: str, path: str, entry: int) -> None:
    required, kids = _shape(type_name) if type_name else ((), {})
    for name in required:
        if name not in node:
            _fail(f"{path}.{name}", entry, "is required but missing")
    for key, value in node.items():
        _value(value, kids.get(key, ""), f"{path}.{key}", entry)


def _value(value: Any, type_name: str, path: str, entry: int) -> None:
    cls = value.__class__
    if cls is str:
        if not value or value == _NULL or not value.strip():
            _fail(path, entry, "is empty" if value != _NULL else 'holds the HL7 null ""')
    elif cls is dict:
        if not value:
            _fail(path, entry, "is an empty object")
        _walk(value, type_name if type_name[:1].isupper() else "", path, entry)
    elif cls is list:
        if not value:
            _fail(path, entry, "is an empty list")
        for i, item in enumerate(value):
            _value(item, type_name, f"{path}[{i}]", entry)
