"""Quantity/timing converters: v2 CQ → Quantity, RPT → Timing (IG CQ[Quantity], RPT[Timing]).

The pharmacy segments carry their amounts as CQ (`3^mg&milligram&UCUM`: the units are a CWE held in
subcomponents) and their repeat patterns as RPT (`TID`, `Q6H^^^^6^h`) in TQ1-3.
"""

from __future__ import annotations

from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes.quantities import decimal_of, unit_of
from engine.mapping.systems import coding_system

UCUM = "http://unitsofmeasure.org"
V2_0335 = "http://terminology.hl7.org/CodeSystem/v2-0335"

# RPT.6 / CQ units of time as senders write them (v2 table 0340-like letters, ISO+ and UCUM) → UCUM units of time
_PERIOD_UNITS = {"DAY": "d", "DAYS": "d", "HOUR": "h", "HOURS": "h", "WEEK": "wk", "MONTH": "mo", "YEAR": "a",
                 "S": "s", "M": "min", "MIN": "min", "H": "h", "HR": "h", "D": "d", "W": "wk", "WK": "wk",
                 "L": "mo", "MO": "mo", "Y": "a", "A": "a"}

# R4 EventTiming (value set event-timing, required by Timing.repeat.when): the v3 codes RPT.8 may carry
_EVENT_TIMING = frozenset(("HS", "WAKE", "C", "CM", "CD", "CV", "AC", "ACM", "ACD", "ACV", "PC", "PCM", "PCD", "PCV",
                           "MORN", "AFT", "EVE", "NIGHT", "PHS"))


def cq_quantity(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG CQ[Quantity]: CQ.1 → value, CQ.2 (a CWE in subcomponents) → unit, and its UCUM code when it has one.

    A CQ.1 that is no number is left out with VALUE_INVALID (the message goes on).
    """
    text = f.component(1).strip()
    if not text:
        return None
    value = decimal_of(text)
    if value is None:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "CQ.1 is not a number; value not written")
        return None
    units = unit_of(f.component(2, 1), f.component(2, 2), f.component(2, 3), ctx, ctx.field_spec, id(f))
    return {"value": value, **units}


def cq_duration(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG CQ[Quantity] where FHIR wants a Duration (TQ1-6 service duration): the unit must be a unit of time
    (`3^D&day&ISO+` → 3 d, UCUM), else the value is left out with VALUE_INVALID (R4 drt-1)."""
    text = f.component(1).strip()
    if not text:
        return None
    value = decimal_of(text)
    unit = period_unit(f.component(2, 1)) or period_unit(f.component(2, 2))
    if value is None or unit is None:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "not a number with a unit of time; value not written")
        return None
    return {"value": value, "unit": f.component(2, 2) or unit, "system": UCUM, "code": unit}


def period_unit(text: str) -> str | None:
    """A unit of time as sent (`D`, `d`, `Hr`, `min`) → the UCUM unit FHIR Timing takes, or None."""
    t = text.strip()
    if t in ("s", "min", "h", "d", "wk", "mo", "a"):
        return t
    return _PERIOD_UNITS.get(t.upper())


def rpt_timing(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG RPT[Timing]: RPT.1 → code (table 0335: `TID`, `Q6H`, kept as sent), RPT.5 → repeat.period,
    RPT.6 → repeat.periodUnit (a unit of time), RPT.8 → repeat.when (as sent, upper case), RPT.9 → repeat.offset
    (minutes, from RPT.10).

    RPT.2-4 (calendar alignment, phase range) and RPT.7, RPT.11 have no element written here: a code
    the map does not read is still in `code`. A period unit that is no unit of time is left out (VALUE_INVALID).
    """
    code, display, system = f.component(1, 1), f.component(1, 2), f.component(1, 3)
    out: dict[str, Any] = {}
    if code:
        coding: dict[str, str] = {}
        uri = V2_0335 if system.upper() in ("HL70335", "") else coding_system(ctx, system)
        if uri:
            coding["system"] = uri
        coding["code"] = code
        if display:
            coding["display"] = display
        out["code"] = {"coding": [coding]}
    repeat: dict[str, Any] = {}
    period = decimal_of(f.component(5)) if f.component(5) else None
    unit_text = f.component(6, 1)
    unit = period_unit(unit_text) if unit_text else None
    if period is not None and unit is not None:
        repeat.update(period=period, periodUnit=unit)
    elif f.component(5) or unit_text:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "RPT.5/RPT.6 is no period of time; not written")
    when = f.component(8).strip().upper()
    if when in _EVENT_TIMING:
        repeat["when"] = [when]
    elif when:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "RPT.8 is no EventTiming code; not written")
    offset = f.component(9).strip()
    if offset.isdigit():
        factor = {"min": 1, "h": 60, "d": 1440, "s": 0}.get(period_unit(f.component(10, 1)) or "min", 1)
        minutes = int(offset) * factor if factor else int(offset) // 60
        repeat["offset"] = minutes
    if repeat:
        out["repeat"] = repeat
    return out or None
