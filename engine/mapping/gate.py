"""The last check before a Bundle leaves the mapping: no empty value, no HL7 `""`, no required element missing,
no FHIR invariant the sender's data can break (an appointment booked with no time: app-3).

Per message (check_serialized): each resource's own required elements, and a byte scan of the JSON for
`""`, `{}` and `[]`; a suspect Bundle is walked (check_bundle) to name the element. Required elements
below the resource (Extension.url, Observation.component.code) come from the mappings' fixed values;
the walk checks them whenever it runs, `wasla mapping test` runs it on every fixture, and the property
test sends every generated Bundle through the official R4 validator.

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

__all__ = ["check_bundle", "check_serialized"]

_NULL = '""'
_PATIENT_REFS = frozenset(("subject", "patient", "beneficiary"))
_SHAPES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}


@cache
def _shape(type_name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(required element names, child name → FHIR type name) of a FHIR complex type or resource."""
    try:
        kids = children(type_name)
    except (KeyError, ValueError):
        return (), {}
    required = tuple(name for name, (_, req) in kids.items() if req)
    return required, {name: t for name, (t, _) in kids.items()}


_CHECKS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]] = {}


def _checks(rtype: str) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """A resource type's required elements, and its children whose own type has required elements."""
    required, kids = _shape(rtype)
    return required, tuple((name, req) for name, t in kids.items()
                           if name not in ("meta", "text", "contained") and (req := _shape(t)[0]))


def _app3(r: dict[str, Any]) -> bool:
    return ("start" in r and "end" in r) or r.get("status") in ("proposed", "cancelled", "waitlist")


# FHIR R4 invariants the sender's data can break whatever the mapping does (an appointment booked without
# a time): resource type → (invariant, test, what it asks). A dict lookup per entry for every other type.
_INVARIANTS: dict[str, tuple[tuple[str, Any, str], ...]] = {
    "Appointment": (("app-3", _app3, "start and end are required unless status is proposed, cancelled or "
                                     "waitlist"),),
}


def _invariants(resource: dict[str, Any], rtype: str, entry: int) -> None:
    for key, holds, what in _INVARIANTS.get(rtype, ()):
        if not holds(resource):
            raise MappingError(f"invalid FHIR: {rtype} breaks invariant {key}: {what} (entry {entry})",
                               field=f"{rtype} ({key})")


_SUSPECT = (b'""', b"{}", b"[]")   # an empty string (and the end of an escaped HL7 null "\"\""), object, list


def check_serialized(bundle: dict[str, Any], data: bytes) -> None:
    """The per-message check: each resource's own required elements, and a byte scan of the serialized
    Bundle for anything empty; only a suspect Bundle is walked (check_bundle), to name the element.

    The scan runs at C speed over bytes the engine writes anyway; a suspect that is not a fault (a text
    ending in an escaped quote) costs one walk and passes."""
    for i, entry in enumerate(bundle["entry"], start=1):
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if rtype in _INVARIANTS:
            _invariants(resource, rtype, i)
        checks = _CHECKS.get(rtype)
        if checks is None:
            checks = _CHECKS[rtype] = _checks(rtype)
        required, nested = checks
        for name in required:
            if name not in resource:
                check_bundle(bundle)
        for name, inner in nested:  # one level down: Encounter.location[].location …
            child = resource.get(name)
            if child is None:
                continue
            for item in child if child.__class__ is list else (child,):
                for r in inner:
                    if r not in item:
                        check_bundle(bundle)
    if b'""' in data or b"{}" in data or b"[]" in data:  # _SUSPECT, unrolled
        check_bundle(bundle)


def check_bundle(bundle: dict[str, Any]) -> None:
    """Raise MappingError naming the first empty or missing element of any entry's resource (a full walk)."""
    for i, entry in enumerate(bundle.get("entry", ())):
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType", "")
        bad = _node(resource, rtype)
        if bad is not None:
            path, what = bad
            raise MappingError(f"invalid FHIR: {rtype}{path} {what} (entry {i + 1})", field=f"{rtype}{path}")
        _invariants(resource, rtype, i + 1)
    for key in ("id", "timestamp"):
        if not bundle.get(key):
            raise MappingError(f"invalid FHIR: Bundle.{key} is empty", field=f"Bundle.{key}")


_Bad = tuple[str, str] | None   # (path below the node, what is wrong); the path is built only on failure


def _node(node: dict[str, Any], type_name: str) -> _Bad:
    shape = _SHAPES.get(type_name)
    if shape is None:
        shape = _SHAPES[type_name] = _shape(type_name) if type_name[:1].isupper() else ((), {})
    required, kids = shape
    for name in required:
        if name not in node:
            hint = " (the message has no patient: is PID missing?)" if name in _PATIENT_REFS else ""
            return f".{name}", "is required but missing" + hint
    for key, value in node.items():
        bad = _value(value, kids.get(key, ""))
        if bad is not None:
            return f".{key}{bad[0]}", bad[1]
    return None


def _value(value: Any, type_name: str) -> _Bad:
    cls = value.__class__
    if cls is str:
        if not value or value.isspace():
            return "", "is empty"
        if value == _NULL:
            return "", 'holds the HL7 null ""'
    elif cls is dict:
        if not value:
            return "", "is an empty object"
        return _node(value, type_name)
    elif cls is list:
        if not value:
            return "", "is an empty list"
        for i, item in enumerate(value):
            bad = _value(item, type_name)
            if bad is not None:
                return f"[{i}]{bad[0]}", bad[1]
    return None
