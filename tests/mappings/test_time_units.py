"""Issue 22: offset-less times take MSH-7's offset, units are coded with a real UCUM parser, and the XAD/XTN
components the IG maps (XAD-12/13/14/19, XTN-13/14/18) are no longer dropped."""

from __future__ import annotations

import csv
from typing import Any

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from engine.mapping.timestamps import zone
from engine.mapping.ucum import is_ucum
from tests.mappings.conftest import NOW
from tests.support import ROOT

UCUM = "http://unitsofmeasure.org"


def _oru(msh7: str, obx: list[str]) -> bytes:
    lines = [f"MSH|^~\\&|LIS|LABO-TEST|WASLA|CHU-TEST|{msh7}||ORU^R01^ORU_R01|T-1|P|2.5.1|||AL|NE||UNICODE UTF-8",
             "PID|1||IPP1^^^CHU-TEST^PI||ZZTEST^Test",
             "ORC|RE|CMD-1^CHU-TEST|LAB-1^LABO-TEST||CM",
             "OBR|1|CMD-1^CHU-TEST|LAB-1^LABO-TEST|2823-3^K^LN|||20261120073000|||||||||||||||20261120091500|||F",
             *obx]
    return "\r".join(lines).encode() + b"\r"


def _adt(msh7: str, pid_extra: str) -> bytes:
    lines = [f"MSH|^~\\&|HIS|CHU-TEST|WASLA|MS|{msh7}||ADT^A01^ADT_A01|T-2|P|2.5",
             "EVN|A01|20261103101500",
             f"PID|1||IPP2^^^CHU-TEST^PI||ZZTEST^Test||19850214|F|||{pid_extra}",
             "PV1|1|I|CARDIO^101^A^CHU-TEST||||||||||||||||V1^^^CHU-TEST^VN"]
    return "\r".join(lines).encode() + b"\r"


def _convert(converter: Converter, mapping: str, raw: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    result = converter.convert(mapping, parse(decode(raw)), NOW)
    return result.bundle, result.warnings


def _resources(bundle: bytes, rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in orjson.loads(bundle)["entry"] if e["resource"]["resourceType"] == rtype]


def _obs(converter: Converter, msh7: str, obx: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bundle, warnings = _convert(converter, "oru_r01", _oru(msh7, obx))
    return _resources(bundle, "Observation"), warnings


# ── time ──────────────────────────────────────────────────────────────────────────────────────────────────────

def _effective(converter: Converter, msh7: str, obx14: str) -> str:
    obs, _ = _obs(converter, msh7, [f"OBX|1|NM|2823-3^K^LN||4.2|mmol/L^^UCUM|||||F|||{obx14}"])
    return obs[0]["effectiveDateTime"]


@pytest.mark.parametrize(("msh7", "written"), [
    ("20261120093000+0100", "2026-11-20T07:30:00+01:00"),
    ("20261120093000-0500", "2026-11-20T07:30:00-05:00"),   # the sender's zone, not Africa/Casablanca's +01:00
    ("20261120093000", "2026-11-20T07:30:00+01:00"),        # no MSH-7 offset: the configured zone
])
def test_an_offset_less_time_takes_msh7s_offset(converter: Converter, msh7: str, written: str) -> None:
    assert _effective(converter, msh7, "20261120073000") == written


def test_without_msh7_offset_the_zone_is_the_configured_one_at_that_date(converter: Converter) -> None:
    """Africa/Casablanca is +00:00 during Ramadan (1 March 2026): a zone, not a fixed +01:00."""
    assert _effective(converter, "20260301093000", "20260301073000") == "2026-03-01T07:30:00+00:00"
    assert _effective(converter, "20260301093000+0100", "20260301073000") == "2026-03-01T07:30:00+01:00"


def test_a_time_with_its_own_offset_keeps_it(converter: Converter) -> None:
    assert _effective(converter, "20261120093000-0500", "20261120073000+0300") == "2026-11-20T07:30:00+03:00"


@pytest.mark.parametrize(("sent", "written"), [
    ("20261120", "2026-11-20"),                              # date only: no time, no offset invented
    ("202611", "2026-11"),
    ("202611200730", "2026-11-20T07:30:00-05:00"),           # minutes: FHIR needs seconds once a time is given
    ("20261120073012.25", "2026-11-20T07:30:12.25-05:00"),
])
def test_precision_is_never_invented(converter: Converter, sent: str, written: str) -> None:
    assert _effective(converter, "20261120093000-0500", sent) == written


def test_msh7s_zone_is_worked_out_once_per_message(converter: Converter) -> None:
    ctx = converter.context(parse(decode(_oru("20261120093000-0500", []))), NOW)
    first = zone(ctx)
    assert first.utcoffset(None).total_seconds() == -5 * 3600
    assert zone(ctx) is first and ctx.memo["zone"] is first
    plain = converter.context(parse(decode(_oru("20261120093000", []))), NOW)
    assert zone(plain) is plain.tz
    bad = converter.context(parse(decode(_oru("20261120093000+2500", []))), NOW)
    assert zone(bad) is bad.tz  # not an offset: the configured zone, not a crash


# ── units ─────────────────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("unit", ["mg/L", "g/L", "m[IU]/L", "[IU]/L", "umol/L", "10*3/uL", "%", "{ratio}",
                                  "mL/min/{1.73_m2}", "mm[Hg]", "Cel", "/min", "mosm/kg", "g/(24.h)"])
def test_valid_ucum(unit: str) -> None:
    assert is_ucum(unit)


@pytest.mark.parametrize("unit", ["mUI/L", "UI/L", "µmol/L", "", " mg/L", "mg / L", "unité", "abc", "x" * 100])
def test_not_ucum(unit: str) -> None:
    assert not is_ucum(unit)


def test_the_validity_check_is_memoised() -> None:
    is_ucum("mmol/mol")
    before = is_ucum.cache_info().hits
    is_ucum("mmol/mol")
    assert is_ucum.cache_info().hits == before + 1


def test_every_alias_is_valid_ucum_and_no_alias_is_itself_ambiguous() -> None:
    with (ROOT / "nomenclatures/hl7v2-fhir/ucum-aliases.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 90
    assert [r["target_code"] for r in rows if not is_ucum(r["target_code"])] == []
    assert {r["target_system"] for r in rows} == {UCUM}
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(("obx6", "unit", "code"), [
    ("mg/L^^L", "mg/L", "mg/L"),                 # valid UCUM: coded as itself (91 of 150 results of a day)
    ("ng/dL", "ng/dL", "ng/dL"),                 # valid UCUM, in no alias row
    ("mUI/L^mUI/L^L", "mUI/L", "m[IU]/L"),       # French spellings through ucum-aliases.csv
    ("UI/L", "UI/L", "[IU]/L"),
    ("µmol/L", "µmol/L", "umol/L"),
    ("g/l", "g/l", "g/L"),
    ("mg/l", "mg/l", "mg/L"),
    ("mmol/l", "mmol/l", "mmol/L"),
    ("G/L^Giga/L^L", "Giga/L", "10*9/L"),        # a French hemogram's G/L is 10⁹/L, not gauss per litre
    ("mg/L^^UCUM", "mg/L", "mg/L"),              # the sender says UCUM and it is
    ("mUI/L^^UCUM", "mUI/L", "m[IU]/L"),         # the sender says UCUM but it is not: the alias
])
def test_units_are_coded(converter: Converter, obx6: str, unit: str, code: str) -> None:
    obs, warnings = _obs(converter, "20261120093000", [f"OBX|1|NM|2823-3^K^LN||4.2|{obx6}|||||F"])
    assert obs[0]["valueQuantity"] == {"value": 4.2, "unit": unit, "system": UCUM, "code": code}
    assert [w for w in warnings if w["code"] == "UNIT_NOT_UCUM"] == []


def test_a_unit_that_is_not_ucum_keeps_its_text_and_is_warned_once(converter: Converter) -> None:
    obs, warnings = _obs(converter, "20261120093000", ["OBX|1|NM|2823-3^K^LN||4,2|unités/L|3,5-5,1||||F",
                                                        "OBX|2|NM|2824-1^X^LN||1|mg/L|||||F"])
    assert obs[0]["valueQuantity"] == {"value": 4.2, "unit": "unités/L"}
    assert obs[0]["referenceRange"][0]["low"] == {"value": 3.5, "unit": "unités/L"}
    found = [w for w in warnings if w["code"] == "UNIT_NOT_UCUM"]
    assert len(found) == 1  # OBX-5 and OBX-7 read the same OBX-6; the second OBX's mg/L is UCUM
    assert found[0]["field"] == "OBX-6" and "unités/L" in found[0]["detail"]


def test_a_reference_range_with_decimal_commas_gives_numbers_with_a_point(converter: Converter) -> None:
    raw = _oru("20261120093000", ["OBX|1|NM|2823-3^K^LN||4,2|mmol/l|3,5-5,1||||F"])
    bundle, _ = _convert(converter, "oru_r01", raw)
    assert b'"low":{"value":3.5,' in bundle and b'"high":{"value":5.1,' in bundle
    rr = _resources(bundle, "Observation")[0]["referenceRange"][0]
    assert rr["low"]["code"] == rr["high"]["code"] == "mmol/L"
    assert rr["text"] == "3,5-5,1"  # the text is the lab's, as printed


# ── XAD / XTN components the IG maps ───────────────────────────────────────────────────────────────────────

def _patient(converter: Converter, pid11: str, pid13: str = "", msh7: str = "20261103101500") \
        -> tuple[dict[str, Any], list[dict[str, Any]]]:
    bundle, warnings = _convert(converter, "adt", _adt(msh7, f"{pid11}||{pid13}"))
    return _resources(bundle, "Patient")[0], warnings


def test_xad12_validity_range_is_the_period(converter: Converter) -> None:
    """IG XAD[Address] row 12: XAD.12 Address Validity Range (DR) → period (DR[Period])."""
    patient, _ = _patient(converter, "1 Rue A^^Rabat^^10000^MA^H^^^^^20200101&20251231")
    assert patient["address"][0]["period"] == {"start": "2020-01-01", "end": "2025-12-31"}


def test_xad13_xad14_are_period_start_and_end(converter: Converter) -> None:
    """IG XAD[Address] rows 13/14: effective date → period.start, expiration date → period.end (dateTime)."""
    patient, _ = _patient(converter, "1 Rue A^^Rabat^^10000^MA^H^^^^^20200101&20251231^202101011200^20261231",
                          msh7="20261103101500-0500")
    assert patient["address"][0]["period"] == {"start": "2021-01-01T12:00:00-05:00", "end": "2026-12-31"}


def test_xad19_addressee_is_the_last_line(converter: Converter) -> None:
    """IG XAD[Address] row 19: XAD.19 Addressee → line[5], after XAD.1 and XAD.2."""
    patient, _ = _patient(converter, "1 Rue A^Appt 3^Rabat^^10000^MA^H" + "^" * 12 + "Chez M. Test")
    assert patient["address"][0]["line"] == ["1 Rue A", "Appt 3", "Chez M. Test"]


def test_xtn18_is_the_rank_and_xtn13_14_the_period(converter: Converter) -> None:
    """IG XTN[ContactPoint] row 18: XTN.18 Preference Order → rank (NM[PositiveInt]); rows 13/14 → period."""
    xtn = "0537000000^PRN^PH^^^^^^^^^^20240101^20271231^^^^1~0661000000^ORN^CP^^^^^^^^^^^^^^^2"
    patient, warnings = _patient(converter, "1 Rue A^^Rabat^^10000^MA^H", xtn)
    home, mobile = patient["telecom"]
    assert home["rank"] == 1 and home["period"] == {"start": "2024-01-01", "end": "2027-12-31"}
    assert mobile["rank"] == 2 and "period" not in mobile
    assert not [w for w in warnings if w["code"] == "VALUE_INVALID"]


@pytest.mark.parametrize("rank", ["0", "x", "1.5"])
def test_a_rank_that_is_not_a_positive_integer_is_warned_and_left_out(converter: Converter, rank: str) -> None:
    patient, warnings = _patient(converter, "1 Rue A^^Rabat^^10000^MA^H", "0537000000^PRN^PH" + "^" * 15 + rank)
    assert "rank" not in patient["telecom"][0]
    assert [(w["code"], w["field"]) for w in warnings if w["code"] == "VALUE_INVALID"] == [("VALUE_INVALID",
                                                                                            "PID-13.18")]
