"""HL7 v2 datatype → FHIR datatype converters (HL7 v2-to-FHIR IG datatype maps).

Each converter reads one field repetition and returns a FHIR JSON value, or None when the
field carries nothing. Every converter names the FHIR type it produces so the compiler can
check it against the target element in the FHIR R4 model. Vocabulary comes from CSV maps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import MappingError
from engine.hl7v2.er7 import Field
from engine.mapping.context import Context

__all__ = ["CONVERTERS", "Converter", "v2_date", "v2_datetime", "v2_instant"]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")
_SLUG = re.compile(r"[^a-z0-9]+")

Convert = Callable[[Field, Context, dict[str, Any]], Any]


@dataclass(frozen=True)
class Converter:
    name: str
    fhir_type: str
    fn: Convert
    ig: str
    vocab: tuple[str, ...] = ()


def _dtm_parts(value: str, what: str) -> re.Match[str]:
    m = _DTM.match(value.strip())
    if not m:
        raise MappingError(f"expected a v2 {what} YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ], got {len(value)} characters")
    return m


def _offset(sign_hhmm: str | None, local: datetime, tz: ZoneInfo) -> str:
    if sign_hhmm:
        return f"{sign_hhmm[:3]}:{sign_hhmm[3:]}"
    off = tz.utcoffset(local) or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def v2_date(value: str) -> str:
    """v2 DT/DTM → FHIR date at the precision sent (YYYY, YYYY-MM or YYYY-MM-DD)."""
    m = _dtm_parts(value, "date")
    y, mo, d = m.group(1), m.group(2), m.group(3)
    try:
        datetime(int(y), int(mo or 1), int(d or 1))
    except ValueError as exc:
        raise MappingError("expected a valid calendar date") from exc
    return "-".join(p for p in (y, mo, d) if p)


def v2_datetime(value: str, tz: ZoneInfo) -> str:
    """v2 DTM/TS → FHIR dateTime.

    FHIR needs seconds and an offset once a time is given: missing minutes/seconds become 00,
    and a missing offset is the configured zone's at that local time (Africa/Casablanca by default).
    Date-only values keep their precision.
    """
    m = _dtm_parts(value, "date/time")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if hh is None:
        return v2_date(value)
    try:
        local = datetime(int(y), int(mo), int(d), int(hh), int(mi or 0), int(ss or 0))
    except (TypeError, ValueError) as exc:
        raise MappingError("expected a valid calendar date and time") from exc
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "")
    return text + _offset(off, local, tz)


def v2_instant(value: str, tz: ZoneInfo) -> str | None:
    """v2 DTM → FHIR instant, or None when the value is not precise to the second."""
    m = _DTM.match(value.strip())
    if not m or m.group(6) is None:
        return None
    return v2_datetime(value, tz)


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-") or "unknown"


def identifier_system(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """CX.4 (HD) → a system URI: ISO OIDs and URIs as sent, otherwise under the installation's base."""
    hd_ns, hd_uid, hd_type = f.component(4, 1), f.component(4, 2), f.component(4, 3).upper()
    if hd_uid and hd_type == "ISO":
        return f"urn:oid:{hd_uid}"
    if hd_uid and hd_type in ("UUID", "GUID"):
        return f"urn:uuid:{hd_uid.lower()}"
    if hd_uid and hd_type == "URI":
        return hd_uid
    authority = hd_ns or hd_uid or ctx.msg.sending_facility
    if not authority:
        return None
    id_type = f.component(5) or opts.get("type", "") or "id"
    template = opts.get("system", "{base}/sid/{authority}/{type}")
    return template.format(base=ctx.base, authority=slug(authority), type=slug(id_type))


def cx_identifier(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    value = f.component(1)
    if not value:
        return None
    out: dict[str, Any] = {}
    id_type = f.component(5) or opts.get("type", "")
    if id_type:
        out["type"] = {"coding": [{"system": V2_0203, "code": id_type}]}
    system = identifier_system(f, ctx, opts)
    if system:
        out["system"] = system
    out["value"] = value
    return out


def _code(ctx: Context, vocab: str, code: str, system: str | None = None) -> str | None:
    if not code:
        return None
    t = ctx.vocab(vocab).first(code, system)
    return t.code if t else None


def xpn_human_name(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    use = _code(ctx, "v2-0200.name-use", f.component(7))
    if use:
        out["use"] = use
    if f.component(1):
        out["family"] = f.component(1)
    given = [g for g in (f.component(2), f.component(3)) if g]
    if given:
        out["given"] = given
    if f.component(5):
        out["prefix"] = [f.component(5)]
    suffix = [s for s in (f.component(4), f.component(6)) if s]
    if suffix:
        out["suffix"] = suffix
    if not (out.keys() - {"use"}):
        return None
    return out


def xad_address(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for t in ctx.vocab("v2-0190.address").lookup(f.component(7)) if f.component(7) else ():
        key = "use" if t.system.endswith("/address-use") else "type"
        out.setdefault(key, t.code)
    lines = [x for x in (f.component(1, 1), f.component(2)) if x]
    if lines:
        out["line"] = lines
    for comp, key in ((3, "city"), (9, "district"), (4, "state"), (5, "postalCode"), (6, "country")):
        if f.component(comp):
            out[key] = f.component(comp)
    if not (out.keys() - {"use", "type"}):
        return None
    return out


def xtn_contact_point(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    equipment = f.component(3)
    value = f.component(4) if equipment.upper() in ("INTERNET", "X.400") else ""
    value = value or f.component(12) or f.component(1)
    if not value and f.component(7):
        parts = [f"+{f.component(5)}" if f.component(5) else "", f.component(6), f.component(7)]
        value = " ".join(p for p in parts if p) + (f" X{f.component(8)}" if f.component(8) else "")
    if not value:
        return None
    out: dict[str, Any] = {}
    for t in ctx.vocab("v2-0202.contact-point-system").lookup(equipment) if equipment else ():
        key = "use" if t.system.endswith("/contact-point-use") else "system"
        out.setdefault(key, t.code)
    use = _code(ctx, "v2-0201.contact-point-use", f.component(2))
    if use:
        out["use"] = use
    out.setdefault("system", opts.get("system", "phone"))
    out["value"] = value
    # IG: PID-13 is home and PID-14 work only when XTN.2 is empty
    if "use" not in out and not f.component(2) and opts.get("use"):
        out["use"] = opts["use"]
    return {k: out[k] for k in ("system", "value", "use") if k in out}


def dtm_date(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    return v2_date(f.text) if f.text else None


def dtm_datetime(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    return v2_datetime(f.text, ctx.tz) if f.text else None


def st_string(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    return f.text or None


CONVERTERS: dict[str, Converter] = {
    c.name: c
    for c in (
        Converter("CX.Identifier", "Identifier", cx_identifier, "CX[Identifier]"),
        Converter("XPN.HumanName", "HumanName", xpn_human_name, "XPN[HumanName]", ("v2-0200.name-use",)),
        Converter("XAD.Address", "Address", xad_address, "XAD[Address]", ("v2-0190.address",)),
        Converter("XTN.ContactPoint", "ContactPoint", xtn_contact_point, "XTN[ContactPoint]",
                  ("v2-0201.contact-point-use", "v2-0202.contact-point-system")),
        Converter("DTM.date", "date", dtm_date, "DTM[date]"),
        Converter("DTM.dateTime", "dateTime", dtm_datetime, "DTM[dateTime]"),
        Converter("ST.string", "string", st_string, "ST[string]"),
    )
}
