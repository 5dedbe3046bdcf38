"""Converters that make a resource and return a reference to it: v2 XCN and NDL → Practitioner, XON →
Organization, EI → Device, PL and DLD → Location (IG XCN[Practitioner], NDL[PractitionerRole].practitioner,
XON[Organization], EI[Identifier-Extension], PL[Location], DLD[Location-Discharge]).

Each resource is made once per message through `Context.emit`, keyed so that one doctor, organisation,
instrument or place named in several fields is one resource.
"""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes._common import V2_0203, _human_name
from engine.mapping.systems import assigner_system, coding_system, fallback_authority, hd_system, slug


def xcn_practitioner(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG XCN[Practitioner]: a Practitioner (conditional create on XCN.1 + XCN.9) and a reference to it.

    One doctor named in PV1-7, ORC-12 and OBR-16 is one Practitioner: the key is the identifier,
    or the name within the sender when the sender gives no identifier.
    """
    ident = f.component(1)
    name = _human_name(f, 2, None) or None
    if not ident and not name:
        return None
    body: dict[str, Any] = {}
    identifier = None
    if ident:
        # a national identifier (INPE: authority INPE or ANAM, type PRN) takes the registry's system, as a CX does
        known = (ctx.registry.for_cx(f.component(9, 1), f.component(13))
                 if ctx.registry is not None and f.component(13) else None)
        system = known.uri if known is not None else assigner_system(f, 9, ctx, "practitioner")
        if known is not None:
            verdict = known.validate(ident)
            if not verdict.ok:  # kept and flagged, as for a CX (engine.mapping.datatypes.identifiers)
                code = "IDENTIFIER_INVALID" if verdict.level == "invalid" else "IDENTIFIER_SUSPECT"
                ctx.warn(code, ctx.rule, ctx.field_spec, f"{known.key}: {verdict.reason}", identifier_system=known.key)
        entry: dict[str, Any] = {}
        if f.component(13):
            entry["type"] = {"coding": [{"system": V2_0203, "code": f.component(13)}]}
        entry["system"] = system
        entry["value"] = ident
        body["identifier"] = [entry]
        identifier = f"{system}|{ident}"
        key = [identifier]
    else:
        key = ["name", fallback_authority(ctx), f.raw]
    if name:
        body["name"] = [name]
    return ctx.emit("Practitioner", key, body, identifier)


def ndl_practitioner(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG NDL[PractitionerRole] NDL.1 → CNN[Practitioner]: the Practitioner named in NDL.1 and a reference to it.

    NDL.1 is a CNN sent as subcomponents (id, family, given, middle, suffix, prefix, degree; CNN.9-11 the assigning
    authority). Many senders put the CNN in the components instead (OBR-32 `3065^Mahoney^Paul^J`): when NDL.1 has
    no subcomponents and NDL.2 (a DTM) does not start with a digit, the components are read as the CNN. Keyed like
    XCN.Practitioner, so one doctor in OBR-16 and OBR-32 is one Practitioner. The IG's PractitionerRole (NDL.2-3
    period, NDL.4-11 location) is not made: the reference goes to the Practitioner.
    """
    as_components = not f.component(1, 2) and not f.component(2)[:1].isdigit()

    def part(i: int) -> str:
        return f.component(i) if as_components else f.component(1, i)

    ident = part(1)
    name: dict[str, Any] = {}
    if part(2):
        name["family"] = part(2)
    given = [g for g in (part(3), part(4)) if g]
    if given:
        name["given"] = given
    if part(6):
        name["prefix"] = [part(6)]
    suffix = [s for s in (part(5), part(7)) if s]
    if suffix:
        name["suffix"] = suffix
    if not ident and not name:
        return None
    body: dict[str, Any] = {}
    identifier = None
    if ident:
        system = hd_system(part(9), part(10), part(11)) or \
            f"{ctx.base}/sid/{slug(part(9) or fallback_authority(ctx) or 'unknown')}/practitioner"
        body["identifier"] = [{"system": system, "value": ident}]
        identifier = f"{system}|{ident}"
        key = [identifier]
    else:
        key = ["name", fallback_authority(ctx), *(part(i) for i in range(2, 8))]
    if name:
        body["name"] = [name]
    return ctx.emit("Practitioner", key, body, identifier)


def ei_device(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG OBX-18 → device(Device.identifier), EI[Identifier-Extension]: a Device identified by the EI; a reference.

    EI.1 is the value, EI.2-4 (the assigning authority) the system, else the sender's namespace: one instrument
    of one sender, named in several OBX, is one Device.
    """
    value = f.component(1)
    if not value:
        return None
    ns = f.component(2) or f.component(3) or fallback_authority(ctx) or "unknown"
    system = hd_system(f.component(2), f.component(3), f.component(4)) or f"{ctx.base}/sid/{slug(ns)}/device"
    identifier = f"{system}|{value}"
    return ctx.emit("Device", [identifier], {"identifier": [{"system": system, "value": value}]}, identifier)


def xon_organization(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG XON[Organization]: XON.1 name, XON.10 (else XON.3) identifier under XON.6; a reference to it."""
    name, ident = f.component(1), f.component(10) or f.component(3)
    if not name and not ident:
        return None
    body: dict[str, Any] = {}
    identifier = None
    if ident:
        system = assigner_system(f, 6, ctx, "organization")
        body["identifier"] = [{"system": system, "value": ident}]
        identifier = f"{system}|{ident}"
        key = [identifier]
    else:
        key = ["name", fallback_authority(ctx), name]
    if name:
        body["name"] = name
    return ctx.emit("Organization", key, body, identifier)


def cwe_organization(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG CWE[Organization]: CWE.1 identifier.value under CWE.3 (a coding-system name: MVX), CWE.9 else CWE.2 the name.

    One manufacturer (RXA-17 `PMC^Sanofi Pasteur^MVX`) named in several orders is one Organization, keyed by
    its code in its system, else by its name within the sender.
    """
    code, name = f.component(1), f.component(9) or f.component(2)
    if not code and not name:
        return None
    body: dict[str, Any] = {}
    identifier = None
    if code:
        system = coding_system(ctx, f.component(3))
        body["identifier"] = [{"system": system, "value": code} if system else {"value": code}]
        identifier = f"{system}|{code}" if system else None
        key = [identifier] if identifier else ["cwe", fallback_authority(ctx), code]
    else:
        key = ["name", fallback_authority(ctx), name]
    if name:
        body["name"] = name
    return ctx.emit("Organization", key, body, identifier)


_PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def pl_location(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG PL[Location], flattened: one Location for the most precise place given (bed, room, point of care).

    The IG chains one Location per component with partOf; we keep the whole place in one
    Location's name and identify it by facility + point of care + room + bed, which is what the
    receiving record needs to tell two beds apart.
    """
    parts = [f.component(i) for i in (1, 2, 3)]
    if not any(parts):
        return None
    facility = f.component(4, 1) or fallback_authority(ctx) or "unknown"
    body: dict[str, Any] = {"name": " ".join(p for p in parts if p), "mode": "instance"}
    if parts[1] or parts[2]:  # IG: PL.2 room (ro), PL.3 bed (bd); a point of care alone has no physical type
        body["physicalType"] = {"coding": [{"system": _PHYSICAL, "code": "bd" if parts[2] else "ro"}]}
    if f.component(9):
        body["description"] = f.component(9)
    return ctx.emit("Location", ["pl", facility, *parts], body, None)


def dld_location(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG DLD[Location-Discharge]: a Location whose type is DLD.1, a CWE sent as subcomponents (PV1-37).

    DLD.2 (effective date) has no IG target. One discharge place (code or text) of a sender is one Location.
    """
    code, text, system = (f.component(1, s) for s in (1, 2, 3))
    if not (code or text):
        return None
    concept: dict[str, Any] = {}
    if code:
        coding = {"system": coding_system(ctx, system), "code": code, "display": text}
        concept["coding"] = [{k: v for k, v in coding.items() if v}]
    else:
        concept["text"] = text
    facility = ctx.msg.sending_facility or "unknown"
    return ctx.emit("Location", ["dld", facility, system, code or text], {"type": [concept]}, None)
