"""IG rows mapped last (issue 22): OBR-32 NDL → resultsInterpreter, OBX-18 → device, PID-20 and IN1-2 → identifier."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW

MSH = "MSH|^~\\&|APP|FAC|||20240101120000||ORU^R01|C1|P|2.6"
PID = "PID|1||123^^^FAC^MR||DOE^JANE"
OBX = "OBX|1|ST|X^Y^L||text||||||F"


def _bundle(converter: Converter, obr: str) -> list[dict[str, Any]]:
    raw = "\r".join((MSH, PID, obr, OBX)).encode()
    return [e["resource"] for e in orjson.loads(converter.convert("oru_r01", parse(decode(raw)), NOW).bundle)["entry"]]


@pytest.mark.parametrize("obr32", ["3065&Mahoney&Paul&J^20240101", "3065^Mahoney^Paul^J"])
def test_obr32_results_interpreter(converter: Converter, obr32: str) -> None:
    """IG OBR-32 → resultsInterpreter, NDL.1 (CNN, subcomponents; or as components, as many senders do) → the
    Practitioner; the same doctor in OBR-16 (XCN) is the same Practitioner."""
    fields = ["OBR", "1", "", "F1", "X^Y^L"] + [""] * 28
    fields[16], fields[25], fields[32] = "3065^Mahoney^Paul", "F", obr32
    obr = "|".join(fields)
    resources = _bundle(converter, obr)
    practitioners = [r for r in resources if r["resourceType"] == "Practitioner"]
    assert len(practitioners) == 1
    assert practitioners[0]["name"][0]["family"] == "Mahoney"
    assert practitioners[0]["identifier"][0]["value"] == "3065"
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert len(report["resultsInterpreter"]) == 1


def test_obx18_device(converter: Converter) -> None:
    """IG OBX-18 → Observation.device(Device.identifier), EI[Identifier-Extension]: one Device per instrument (the
    same EI in two OBX is one Device), its system from EI.2-4; only the first repetition (device is 0..1)."""
    obr = "OBR|1||F1|X^Y^L"
    obx2 = "OBX|2|ST|Z^W^L||t||||||F|||||||AN-12^^1.2.3^ISO"
    raw = "\r".join((MSH, PID, obr, OBX + "|||||||AN-12^^1.2.3^ISO~AN-99", obx2))
    resources = [e["resource"] for e in orjson.loads(converter.convert("oru_r01", parse(decode(raw.encode())), NOW)
                                                     .bundle)["entry"]]
    devices = [r for r in resources if r["resourceType"] == "Device"]
    assert [d["identifier"] for d in devices] == [[{"system": "urn:oid:1.2.3", "value": "AN-12"}]]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert len(observations) == 2 and len({o["device"]["reference"] for o in observations}) == 1


def test_pid20_driver_licence(converter: Converter) -> None:
    """IG PID-20 → identifier, DLN[Identifier]: DLN.1 value, type DL, DLN.3 → period.end; no system (DLN.2)."""
    pid = "PID|1||123^^^FAC^MR||DOE^JANE|||||||||||||||D-1^MN^20301231"
    raw = "\r".join(("MSH|^~\\&|APP|FAC|||20240101120000||ADT^A04|C1|P|2.6", "EVN|A04|20240101120000", pid,
                     "PV1|1|O"))
    resources = [e["resource"] for e in orjson.loads(converter.convert("adt", parse(decode(raw.encode())), NOW)
                                                     .bundle)["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert [i for i in patient["identifier"] if i["value"] == "D-1"] == [{
        "value": "D-1", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}]},
        "period": {"end": "2030-12-31"}}]


def test_in1_2_identifiers(converter: Converter) -> None:
    """IG CWE[Identifier]: [1] CWE.1 value / CWE.3 system, [2] CWE.4 value / CWE.6 system; no system when none named."""
    raw = "\r".join(("MSH|^~\\&|APP|FAC|||20240101120000||ADT^A04|C1|P|2.6", "EVN|A04|20240101120000",
                     "PID|1||123^^^FAC^MR||DOE^JANE", "PV1|1|O", "IN1|1|P1^Plan^^A4^Alt^HL70072|INS1|Payer"))
    resources = [e["resource"] for e in orjson.loads(converter.convert("adt", parse(decode(raw.encode())), NOW)
                                                     .bundle)["entry"]]
    coverage = next(r for r in resources if r["resourceType"] == "Coverage")
    assert [i for i in coverage["identifier"] if i["value"] in ("P1", "A4")] == [
        {"value": "P1"}, {"system": "http://terminology.hl7.org/CodeSystem/v2-0072", "value": "A4"}]
