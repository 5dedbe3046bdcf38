"""HL7 v2 DT/DTM/TS values → FHIR date, dateTime and instant, in the sender's zone when no offset is sent."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from engine.errors import MappingError
from engine.mapping.context import Context

__all__ = ["v2_date", "v2_datetime", "v2_instant", "zone"]

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


def _dtm_parts(value: str, what: str) -> re.Match[str]:
    m = _DTM.match(value.strip())
    if not m:
        raise MappingError(f"expected a v2 {what} YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ], got {len(value)} characters")
    return m


def _offset(sign_hhmm: str | None, local: datetime, tz: tzinfo) -> str:
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


@lru_cache(maxsize=4096)
def v2_datetime(value: str, tz: tzinfo) -> str:
    """v2 DTM/TS → FHIR dateTime.

    FHIR needs seconds and an offset once a time is given: missing minutes/seconds become 00,
    and a missing offset is `tz`'s at that local time (`zone(ctx)`: MSH-7's offset, else the configured
    zone). Date-only values keep their precision: no time and no offset is invented for them.
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


def v2_instant(value: str, tz: tzinfo) -> str | None:
    """v2 DTM → FHIR instant, or None when the value is not precise to the second."""
    m = _DTM.match(value.strip())
    if not m or m.group(6) is None:
        return None
    return v2_datetime(value, tz)


@lru_cache(maxsize=64)
def _fixed_zone(sign_hhmm: str) -> timezone:
    minutes = int(sign_hhmm[1:3]) * 60 + int(sign_hhmm[3:5])
    return timezone(timedelta(minutes=-minutes if sign_hhmm[0] == "-" else minutes))


def zone(ctx: Context) -> tzinfo:
    """The zone of a time sent without an offset: MSH-7's offset when MSH-7 has one (HL7 v2 DTM:
    an offset-less time is in the sender's zone, which MSH-7 states), else the channel's configured zone.
    Worked out once per message (ctx.memo)."""
    tz = ctx.memo.get("zone")
    if tz is None:
        m = _DTM.match(ctx.msg.msh.field(7).text.strip())
        off = m.group(8) if m else None
        valid = off is not None and int(off[1:3]) < 24 and int(off[3:5]) < 60  # else not an offset: the zone
        tz = ctx.memo["zone"] = _fixed_zone(off) if valid else ctx.tz
    return tz


