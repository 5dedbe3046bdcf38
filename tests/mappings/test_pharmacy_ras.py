"""mappings/ras: what the Moroccan fixture does not show (an order's RXE beside the administrations)."""

from __future__ import annotations

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only, resources
from tests.mappings.conftest import NOW

RAS = ("MSH|^~\\&|DXCARE|CHU-IBN-SINA^^L|WASLA|DRS|20261120141000||RAS^O17^RAS_O17|R1|P|2.5.1",
       "PID|1||IPP-1^^^CHU-IBN-SINA^PI||Bennani^Samira",
       "ORC|RE|PRESC-1^CHU-IBN-SINA",
       "RXE||AMOX1G^Amoxicilline 1 g^L|1||g^gramme^UCUM",
       "RXR|PO^Oral^HL70162",
       "RXA|0|1|20261120080000||AMOX1G^Amoxicilline 1 g^L|1|g^gramme^UCUM|||||||||||||CP",
       "RXR|PO^Oral^HL70162",
       "RXA|0|2|20261120140000|20261120141500|AMOX1G^Amoxicilline 1 g^L|1|g^gramme^UCUM|||||||||||||RE",
       "RXR|IV^Intravenous^HL70162")


def test_each_rxa_is_an_administration_of_the_rxe_request(converter: Converter) -> None:
    """Two RXA → two MedicationAdministrations (keyed by the order and RXA-1/RXA-2), each with its own RXR's route
    and `request` the MedicationRequest of the ORDER's RXE; RXA-3/RXA-4 → effectivePeriod, RE → not-done."""
    bundle = orjson.loads(converter.convert("ras", parse(decode(("\r".join(RAS) + "\r").encode())), NOW).bundle)
    request = only(bundle, "MedicationRequest")
    url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is request)
    first, second = resources(bundle, "MedicationAdministration")
    assert first["id"] != second["id"]
    assert first["request"] == second["request"] == {"reference": url}
    assert first["status"] == "completed" and first["effectiveDateTime"].startswith("2026-11-20T08:00")
    assert second["status"] == "not-done"
    assert second["effectivePeriod"] == {"start": "2026-11-20T14:00:00+01:00", "end": "2026-11-20T14:15:00+01:00"}
    assert [a["dosage"]["route"]["coding"][0]["code"] for a in (first, second)] == ["PO", "IV"]
