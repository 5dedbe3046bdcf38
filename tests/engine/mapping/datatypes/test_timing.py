"""engine/mapping/datatypes/timing.py: CQ → Quantity or Duration, RPT → Timing, read through the rde mapping."""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.engine.mapping.conftest import NOW

HEAD = ("MSH|^~\\&|PHARMA|CHU-IBN-SINA^^L|WASLA|DRS|20261120091500||RDE^O11^RDE_O11|T1|P|2.5.1",
        "PID|1||IPP-1^^^CHU-IBN-SINA^PI||Bennani^Samira",
        "ORC|NW|P-1^CHU-IBN-SINA",
        "RXE||AMOX1G^Amoxicilline 1 g^L|1||g^gramme^UCUM")


def _dosage(converter: Converter, tq1: str) -> tuple[dict[str, Any], list[str]]:
    text = "\r".join((*HEAD, tq1)) + "\r"
    result = converter.convert("rde", parse(decode(text.encode())), NOW)
    mr = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
              if e["resource"]["resourceType"] == "MedicationRequest")
    return mr["dosageInstruction"][0], [w["code"] for w in result.warnings]


class TestRptTiming:
    def test_code_alone_is_table_0335(self, converter: Converter) -> None:
        """A bare repeat pattern (`TID`) is a v2-0335 code, with no repeat invented from it."""
        dosage, _ = _dosage(converter, "TQ1|1||TID")
        assert dosage["timing"] == {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0335",
                                                         "code": "TID"}]}}

    def test_period_event_and_offset(self, converter: Converter) -> None:
        """RPT.5/6 → period/periodUnit, RPT.8 → when, RPT.9 in RPT.10's unit → offset in minutes."""
        dosage, _ = _dosage(converter, "TQ1|1||Q6H&every 6 hours&HL70335^^^^6^H^^PCM^30^min")
        repeat = dosage["timing"]["repeat"]
        assert repeat == {"period": 6, "periodUnit": "h", "when": ["PCM"], "offset": 30}
        assert dosage["timing"]["code"]["coding"][0]["display"] == "every 6 hours"

    def test_period_unit_that_is_no_time_is_left_out(self, converter: Converter) -> None:
        """RPT.6 `mg` is no unit of time: no period written, VALUE_INVALID."""
        dosage, warnings = _dosage(converter, "TQ1|1||X^^^^6^mg")
        assert "repeat" not in dosage["timing"]
        assert "VALUE_INVALID" in warnings


class TestCq:
    def test_duration_of_days(self, converter: Converter) -> None:
        """TQ1-6 `7^d&jour&UCUM` (no start, no end) → boundsDuration 7 d, UCUM."""
        dosage, _ = _dosage(converter, "TQ1|1||TID|||7^d&jour&UCUM")
        assert dosage["timing"]["repeat"]["boundsDuration"] == {
            "value": 7, "unit": "jour", "system": "http://unitsofmeasure.org", "code": "d"}

    def test_duration_needs_a_unit_of_time(self, converter: Converter) -> None:
        """A CQ whose unit is no time cannot be a Duration (R4 drt-1): left out, VALUE_INVALID."""
        dosage, warnings = _dosage(converter, "TQ1|1||TID|||7^mg&mg&UCUM")
        assert "boundsDuration" not in dosage["timing"].get("repeat", {})
        assert "VALUE_INVALID" in warnings

    def test_quantity_with_units_in_subcomponents(self, converter: Converter) -> None:
        """TQ1-2 `2^mL&millilitre&UCUM` → doseQuantity when the RXE gives no amount (CQ[Quantity])."""
        text = "\r".join((*HEAD[:3], "RXE||AMOX1G^Amoxicilline 1 g^L", "TQ1|1|2^mL&millilitre&UCUM")) + "\r"
        result = converter.convert("rde", parse(decode(text.encode())), NOW)
        mr = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
                  if e["resource"]["resourceType"] == "MedicationRequest")
        assert mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
            "value": 2, "unit": "millilitre", "system": "http://unitsofmeasure.org", "code": "mL"}

    def test_bare_number_unit_is_not_ucum(self, converter: Converter) -> None:
        """RXE-5 `43^mg/hr`: `43` is the sender's unit id, not a UCUM unit: unit text only, UNIT_NOT_UCUM."""
        text = "\r".join((*HEAD[:3], "RXE||AMOX1G^Amoxicilline 1 g^L|5||43^mg/hr")) + "\r"
        result = converter.convert("rde", parse(decode(text.encode())), NOW)
        mr = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
                  if e["resource"]["resourceType"] == "MedicationRequest")
        assert mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {"value": 5, "unit": "mg/hr"}
        assert "UNIT_NOT_UCUM" in [w["code"] for w in result.warnings]
