"""Number converters: v2 NM → FHIR Quantity, integer or positiveInt; SN → Quantity, Range, Ratio or string;
OBX-7 → a reference range (IG NM[…], SN[…], CWE[Quantity] for the units of OBX-6).

Numbers keep the precision sent (`11.20` stays 11.20). Units are UCUM when the sender's code is UCUM or
the `ucum-aliases` map gives it, else kept as text with UNIT_NOT_UCUM.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

from engine.errors import MappingError
from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.ucum import is_ucum

_NUMBER = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?$")


@lru_cache(maxsize=8192)
def _decimal(text: str) -> orjson.Fragment | None:
    """A v2 NM as a JSON number with the precision sent: `11.20` stays 11.20 (FHIR decimals keep their
    trailing zeros; a float would make it 11.2). A decimal comma (`5,4`) is read as a point."""
    t = text.strip().replace(",", ".") if text.count(",") == 1 and "." not in text else text.strip()
    m = _NUMBER.match(t)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac = m.group(1), m.group(2).lstrip("0") or "0", m.group(3)
    number = ("-" if sign == "-" else "") + whole + (f".{frac}" if frac else "")
    return orjson.Fragment(number.encode())


UCUM = "http://unitsofmeasure.org"


def _units(ctx: Context, opts: dict[str, Any]) -> dict[str, Any]:
    """OBX-6 (CWE) → unit/system/code (IG CWE[Quantity]: unit = CWE.2, else CWE.1).

    The code: CWE.1 as sent when the sender says UCUM and it is valid UCUM; else the alias table's
    (ucum-aliases: French and local spellings, `mUI/L` → `m[IU]/L`); else CWE.1 itself when it is valid
    UCUM (`mg/L`); else no system/code, the unit text kept, and UNIT_NOT_UCUM (once per OBX-6).
    """
    path = opts.get("units")
    if path is None:
        return {}
    fields = path.fields(ctx)
    if not fields:
        return {}
    u = fields[0]
    return unit_of(u.component(1), u.component(2), u.component(3), ctx, path.spec, id(u))


def unit_of(code: str, text: str, system: str, ctx: Context, spec: str, key: int) -> dict[str, Any]:
    """A CWE unit (code, text, coding system) → unit/system/code; `key` names the field for a single warning."""
    out: dict[str, Any] = {"unit": text or code} if (text or code) else {}
    if not code:
        return out
    if system.upper() == "UCUM" and is_ucum(code):
        out.update(system=UCUM, code=code)
        return out
    t = ctx.vocab("ucum-aliases").first(code)
    if t:
        out.update(system=UCUM, code=t.code)
    elif is_ucum(code) and not code.isdigit():  # `43^mg/hr`: a bare number is the sender's unit id, not UCUM
        out.update(system=UCUM, code=code)
    else:
        warned = ctx.memo.setdefault("units_warned", set())
        if key not in warned:  # OBX-5 and OBX-7 both read this OBX-6: one warning
            warned.add(key)
            ctx.warn("UNIT_NOT_UCUM", ctx.rule, spec, f"not UCUM and not in ucum-aliases: {code}")
    return out


def nm_quantity(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG NM[Quantity] (+ CWE[Quantity] for OBX-6)."""
    if not f.text:
        return None
    value = _decimal(f.text)
    if value is None:
        raise MappingError("expected a number (NM)")
    return {"value": value, **_units(ctx, opts)}


_COMPARATORS = {"<", ">", "<=", ">="}


def sn_value(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """IG SN[Quantity|Range|Ratio|string]: `<^5`, `^10^-^20`, `^1^:^128`, `^2^+`, `^7.2`.

    Returns {"valueX": …} for a value[x] target.
    """
    comparator, n1, sep, n2 = (f.component(i).strip() for i in (1, 2, 3, 4))
    if not (n1 or n2):
        return None
    units = _units(ctx, opts)
    a, b = _decimal(n1), _decimal(n2)
    if sep in (":", "/") and a is not None and b is not None:
        return {"valueRatio": {"numerator": {"value": a}, "denominator": {"value": b}}}
    if sep == "-" and a is not None and b is not None and not comparator:
        return {"valueRange": {"low": {"value": a, **units}, "high": {"value": b, **units}}}
    if not sep and not n2 and a is not None and comparator in _COMPARATORS | {"", "="}:
        q: dict[str, Any] = {"value": a}
        if comparator in _COMPARATORS:
            q["comparator"] = comparator
        return {"valueQuantity": {**q, **units}}
    text = "".join(p for p in (comparator, n1, sep, n2))
    return {"valueString": text}


_RANGE = ((re.compile(r"^\s*(-?[\d.,]+)\s*-\s*(-?[\d.,]+)\s*$"), "both"),
          (re.compile(r"^\s*<=?\s*(-?[\d.,]+)\s*$"), "high"),
          (re.compile(r"^\s*>=?\s*(-?[\d.,]+)\s*$"), "low"))


def st_reference_range(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """OBX-7 → referenceRange: text always; low/high when it reads `3.5-5.0`, `<5` or `>2` (IG: "if parseable")."""
    text = f.text.strip()
    if not text:
        return None
    out: dict[str, Any] = {}
    parsed = _range(text)
    if parsed is not None:
        units = _units(ctx, opts)
        kind, nums = parsed
        if kind == "both":
            out["low"], out["high"] = {"value": nums[0], **units}, {"value": nums[1], **units}
        else:
            out[kind] = {"value": nums[0], **units}
    out["text"] = text
    return out


@lru_cache(maxsize=4096)
def _range(text: str) -> tuple[str, tuple[orjson.Fragment, ...]] | None:
    """`3.9-6.1` → ("both", (3.9, 6.1)); a lab sends the same few hundred ranges all day."""
    for pattern, kind in _RANGE:
        m = pattern.match(text)
        if not m:
            continue
        nums = tuple(_decimal(g) for g in m.groups())
        return None if any(n is None for n in nums) else (kind, nums)  # type: ignore[return-value]  # any() cannot narrow
    return None


_INTEGER = re.compile(r"^[+-]?\d+$")


def nm_integer(f: Field, ctx: Context, opts: dict[str, Any]) -> int | None:
    """NM → integer (PID-25 birth order, DG1-15 priority); a non-integer is reported, not guessed."""
    text = f.text.strip()
    if not text:
        return None
    if not _INTEGER.match(text):
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "not an integer; value not written")
        return None
    return int(text)


def nm_positive_int(f: Field, ctx: Context, opts: dict[str, Any]) -> int | None:
    value = nm_integer(f, ctx, opts)
    if value is not None and value < 1:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "not a positive integer; value not written")
        return None
    return value


def cp_money(f: Field, ctx: Context, opts: dict[str, Any]) -> dict[str, Any] | None:
    """CP (composite price) → Money: CP.1 is an MO, its quantity (CP.1.1) the value and its denomination
    (CP.1.2, ISO 4217: MAD, USD) the currency. The price type and range (CP.2-CP.6) are not read."""
    text = f.component(1, 1).strip()
    if not text:
        return None
    value = _decimal(text)
    if value is None:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "not a number (CP.1.1); amount not written")
        return None
    out: dict[str, Any] = {"value": value}
    currency = f.component(1, 2).strip().upper()
    if currency:
        if _CURRENCY.match(currency):
            out["currency"] = currency
        else:
            ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "CP.1.2 is no ISO 4217 code; currency not written")
    return out


_CURRENCY = re.compile(r"^[A-Z]{3}$")


def decimal_of(text: str) -> orjson.Fragment | None:
    """A v2 NM as a FHIR decimal with the precision sent, or None when it is no number."""
    return _decimal(text)


def nm_unsigned_int(f: Field, ctx: Context, opts: dict[str, Any]) -> int | None:
    """NM → unsignedInt (RXO-13 number of refills): a negative or non-integer number is reported, not written."""
    value = nm_integer(f, ctx, opts)
    if value is not None and value < 0:
        ctx.warn("VALUE_INVALID", ctx.rule, ctx.field_spec, "not an unsigned integer; value not written")
        return None
    return value
