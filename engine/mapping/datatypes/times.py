"""Time converters: v2 DTM → FHIR date, dateTime or instant, TM → time, DR → its start (IG DTM[…], TM[time], DR).

Dates and times are read by `engine.mapping.timestamps`, in the sender's zone when no offset is sent.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from engine.errors import MappingError
from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.timestamps import v2_date, v2_datetime, v2_instant, zone


def dtm_date(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    return v2_date(f.text) if f.text else None


def dtm_datetime(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """`in_component: N` reads the DTM held in component N (DLN.3 of PID-20)."""
    text = f.component(int(opts["in_component"])) if opts.get("in_component") else f.text
    return v2_datetime(text, zone(ctx)) if text else None


_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


def tm_time(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """v2 TM `HH[MM[SS[.S]]][+/-ZZZZ]` → FHIR time `HH:MM:SS[.S]` (FHIR time has no offset: it is dropped)."""
    text = f.text.strip()
    if not text:
        return None
    m = _TM.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59 or int(m.group(3) or 0) > 59:
        raise MappingError(f"expected a v2 time HH[MM[SS[.S]]][+/-ZZZZ], got {len(text)} characters")
    hh, mm, ss, frac = m.group(1), m.group(2) or "00", m.group(3) or "00", m.group(4)
    return f"{hh}:{mm}:{ss}" + (f".{frac}" if frac else "")


def dtm_instant(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """`in_component: N` reads the DTM held in component N (TQ.4 start of SCH-11)."""
    text = f.component(int(opts["in_component"])) if opts.get("in_component") else f.text
    if not text:
        return None
    value = v2_instant(text, zone(ctx))
    if value is None:  # FHIR instant needs seconds; a v2 time to the minute is still a valid v2 time
        written = v2_datetime(text.strip(), zone(ctx))
        if "T" in written:  # a time to the minute or hour: seconds written 00, as for every dateTime
            return written
        ctx.warn("INSTANT_IMPRECISE", ctx.rule, ctx.field_spec, "a FHIR instant needs a time; value not written")
    return value


def dtm_time_part(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """DTM → dateTime only when it carries a time (IG PID-7: birthTime `IF PID-7 LENGTH GREATER THAN 8`)."""
    return dtm_datetime(f, ctx, opts) if len(f.text.strip()) > 8 else None


def dr_start(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """DR (date range) → its start as dateTime (SPM-17 collection time)."""
    v = f.component(1)
    return v2_datetime(v, zone(ctx)) if v else None


# v2 duration units (AIL-10, AIP-10, AIG-12: CNE, ISO+/UCUM codes) → seconds; the standard reads no unit as minutes
_UNIT_SECONDS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "wk": 604800}


def nm_end_after(f: Field, ctx: Context, opts: dict[str, Any]) -> str | None:
    """The end of a period that starts at `start` (a DTM path) and lasts this NM in `units` (a path, minutes when
    not valued): IG AIL-9/AIP-9 → participant.period.end "= start + duration". Written to the start's precision
    (seconds) with its offset; nothing when the start is a date alone or the unit is no unit of time."""
    amount = f.text.strip()
    if opts.get("start") is None:
        raise MappingError("NM.endAfter needs options.start: the path of the period's start")
    start = opts["start"].text(ctx).strip()
    if not amount or not start:
        return None
    begin = v2_datetime(start, zone(ctx))
    if "T" not in begin:
        return None
    unit = opts["units"].text(ctx).strip() if opts.get("units") is not None else ""
    seconds = _UNIT_SECONDS.get(unit or "min")
    try:
        value = float(amount)
    except ValueError:
        raise MappingError(f"expected a number (NM), got {len(amount)} characters") from None
    if seconds is None:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "duration units not a unit of time: end not written")
        return None
    end = datetime.fromisoformat(begin) + timedelta(seconds=value * seconds)
    text = end.strftime("%Y-%m-%dT%H:%M:%S")
    offset = end.strftime("%z")
    return text + (f"{offset[:3]}:{offset[3:]}" if offset else "")
