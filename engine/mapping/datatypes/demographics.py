"""A person's name, address and telecom: v2 XPN → FHIR HumanName, XAD → Address, XTN → ContactPoint
(IG XPN[HumanName], XAD[Address], XTN[ContactPoint]).

Name use, address use and type, and contact-point system and use come from the v2 tables' CSV maps;
validity dates become a Period at the precision sent.
"""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes._common import _human_name
from engine.mapping.timestamps import v2_datetime, zone


def _code(ctx: Context, vocab: str, code: str, system: str | None = None) -> str | None:
    if not code:
        return None
    t = ctx.vocab(vocab).first(code, system)
    return t.code if t else None


def xpn_human_name(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    name = _human_name(f, 1, 6)
    if not name:
        return None
    use = _code(ctx, "v2-0200.name-use", f.component(7))
    return {"use": use, **name} if use else name


def _period(ctx: Context, start: str, end: str) -> dict[str, str] | None:
    """Two v2 DTM → a FHIR Period (IG DR[Period]: DR.1 start, DR.2 end), each at the precision sent."""
    if not (start or end):
        return None
    tz, out = zone(ctx), {}
    if start:
        out["start"] = v2_datetime(start, tz)
    if end:
        out["end"] = v2_datetime(end, tz)
    return out


def xad_address(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG XAD[Address] (datatypes/XAD[Address].csv)."""
    out: dict[str, Any] = {}
    for t in ctx.vocab("v2-0190.address").lookup(f.component(7)) if f.component(7) else ():
        key = "use" if t.system.endswith("/address-use") else "type"
        out.setdefault(key, t.code)
    # XAD.1 → line[1-3], XAD.2 → line[4], XAD.19 Addressee → line[5] (IG row 19: "line[5]")
    lines = [x for x in (f.component(1, 1), f.component(2), f.component(19)) if x]
    if lines:
        out["line"] = lines
    for comp, key in ((3, "city"), (9, "district"), (4, "state"), (5, "postalCode"), (6, "country")):
        if f.component(comp):
            out[key] = f.component(comp)
    if not (out.keys() - {"use", "type"}):
        return None
    # IG row 12: XAD.12 Address Validity Range (DR) → period (DR[Period]); rows 13/14: XAD.13 Effective Date →
    # period.start, XAD.14 Expiration Date → period.end (they replace XAD.12's, deprecated since v2.5)
    period = _period(ctx, f.component(13) or f.component(12, 1), f.component(14) or f.component(12, 2))
    if period:
        out["period"] = period
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
    # IG XTN[ContactPoint] row 18: XTN.18 Preference Order (NM) → rank (NM[PositiveInt])
    rank = f.component(18).strip()
    if rank:
        if rank.isdigit() and int(rank) > 0:
            out["rank"] = int(rank)
        else:
            where = ctx.field_spec.replace("[*]", "") + ".18"
            ctx.warn("VALUE_INVALID", ctx.rule, where, "preference order: not a positive integer")
    # rows 13/14: XTN.13 Effective Start Date → period.start, XTN.14 Expiration Date → period.end (DTM[DateTime])
    period = _period(ctx, f.component(13), f.component(14))
    if period:
        out["period"] = period
    return {k: out[k] for k in ("system", "value", "use", "rank", "period") if k in out}
