"""System URIs: where an identifier's or a code's system comes from (assigning authority, table 0396).

A known system (nomenclatures/identifier-systems, the v2-0396 map) wins; an ISO OID, UUID or URI
is kept as sent; anything else is named under the installation's FHIR base, by a slug of its name.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context

__all__ = ["assigner_system", "coding_system", "fallback_authority", "hd_system", "identifier_system", "slug"]

_SLUG = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-") or "unknown"


def hd_system(hd_ns: str, hd_uid: str, hd_type: str) -> str | None:
    """An HD's universal id as a URI when it is one (ISO OID, UUID, URI); None otherwise."""
    hd_type = hd_type.upper()
    if hd_uid and hd_type == "ISO":
        return f"urn:oid:{hd_uid}"
    if hd_uid and hd_type in ("UUID", "GUID"):
        return f"urn:uuid:{hd_uid.lower()}"
    if hd_uid and hd_type == "URI":
        return hd_uid
    return None


def assigner_system(f: Field, comp: int, ctx: Context, kind: str) -> str:
    """The system of an identifier whose assigner is the HD in component `comp` (XCN.9, XON.6)."""
    return hd_system(f.component(comp, 1), f.component(comp, 2), f.component(comp, 3)) or \
        f"{ctx.base}/sid/{slug(f.component(comp, 1) or fallback_authority(ctx) or 'unknown')}/{kind}"


def identifier_system(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """CX.4 (HD) → a system URI: a known identifier system (CIN, INPE … by authority and type, from
    nomenclatures/identifier-systems), else ISO OIDs and URIs as sent, else under the installation's base."""
    known = ctx.registry.for_cx(f.component(4, 1), f.component(5)) if ctx.registry is not None else None
    if known is not None:
        return known.uri
    return _identifier_system(f.component(4, 1), f.component(4, 2), f.component(4, 3),
                              f.component(5) or opts.get("type", "") or ctx.policy.get("default_identifier_type")
                              or "id", fallback_authority(ctx),
                              opts.get("system", "{base}/sid/{authority}/{type}"), ctx.base)


def fallback_authority(ctx: Context) -> str:
    """Who issued an identifier without CX-4: the channel's declared sender, else MSH-4, else MSH-3."""
    known = ctx.memo.get("fallback_authority")
    if known is None:
        known = next((v for v in (ctx.policy.get("sender", ""), ctx.msg.sending_facility,
                                  ctx.msg.sending_application) if v and v != '""'), "")
        ctx.memo["fallback_authority"] = known
    return known


@lru_cache(maxsize=4096)
def _identifier_system(hd_ns: str, hd_uid: str, hd_type: str, id_type: str, facility: str, template: str,
                       base: str) -> str | None:
    """Memoised: a feed names a handful of assigning authorities, and every key and identifier asks."""
    system = hd_system(hd_ns, hd_uid, hd_type)
    if system:
        return system
    authority = hd_ns or hd_uid or facility
    if not authority:
        return None
    return template.format(base=base, authority=slug(authority), type=slug(id_type))


def _local_system(ctx: Context, name: str) -> str:
    sender = slug(ctx.msg.sending_facility or ctx.msg.sending_application or "unknown")
    return f"{ctx.base}/CodeSystem/local/{sender}" + (f"/{slug(name)}" if name and name.upper() != "L" else "")


def coding_system(ctx: Context, name: str) -> str | None:
    """A v2 coding system name (table 0396: LN, I10, UCUM, HL70078 …) → its URI; local ones under the base.

    None when the sender names no system (CWE.3 empty): the IG's CWE[CodeableConcept] takes the system
    from CWE.3 only, so the code is kept without one rather than under an invented system.
    """
    if not name:
        return None
    t = ctx.vocab("v2-0396.coding-system").first(name)
    if t:  # a national code set of ours (NGAP, NABM) lives under the installation's base
        return t.system.replace("{base}", ctx.base) if "{base}" in t.system else t.system
    upper = name.upper()
    if upper.startswith("HL7") and upper[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]:0>4}"
    return _local_system(ctx, name)


