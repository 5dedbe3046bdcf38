"""IG rows mapped last (issue 22): OBR-32 NDL → resultsInterpreter, OBX-18 → device, PID-20 and IN1-2 → identifier;
NTE-5 → ServiceRequest.note.authorReference; the vocabularies of PID-17, PV1-4, PV1-10 (PV1-36: none to apply)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

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


def _warnings_of(result: Any, code: str) -> list[dict[str, Any]]:
    return [w for w in result.warnings if w["code"] == code]


def test_nte5_service_request_note_author(converter: Converter) -> None:
    """IG NTE[ServiceRequest] (HL7 Segment - FHIR R4_ NTE[ServiceRequest] - NTE.csv) rows NTE-3 → note.text and
    NTE-5 Entered By → note.authorReference(Practitioner), XCN[Practitioner]: each NTE after the OBR is one note of
    the ServiceRequest (repetitions of NTE-3 joined), with its author when NTE-5 is sent; an NTE without NTE-3
    makes no note (Annotation.text is 1..1); the NTE after the OBX stays the Observation's."""
    raw = "\r".join((MSH, PID, "OBR|1|CMD-1^FAC|RES-1^FAC|X^Y^L",
                     "NTE|1|L|A jeun~depuis 12 h||INPE900^BIOLOGISTE^Amal^^^Dr^^^INPE",
                     "NTE|2|L|Prelevement difficile",
                     "NTE|3|L|||INPE901^SANSNOTE^Ali",
                     OBX, "NTE|1|L|Sur l'observation"))
    result = converter.convert("oru_r01", parse(decode(raw.encode())), NOW)
    entries = orjson.loads(result.bundle)["entry"]
    by_url = {e["fullUrl"]: e["resource"] for e in entries}
    request = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "ServiceRequest")
    author = request["note"][0]["authorReference"]["reference"]
    assert request["note"] == [{"text": "A jeun\ndepuis 12 h", "authorReference": {"reference": author}},
                               {"text": "Prelevement difficile"}]
    practitioner = by_url[author]
    assert practitioner["resourceType"] == "Practitioner"
    assert practitioner["identifier"][0]["value"] == "INPE900"
    assert practitioner["name"][0]["family"] == "BIOLOGISTE"
    assert not [r for r in by_url.values() if r["resourceType"] == "Practitioner"
                and r["identifier"][0]["value"] == "INPE901"]        # NTE-3 empty: no note, so no author either
    observation = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Observation")
    assert observation["note"] == [{"text": "Sur l'observation"}]


ADT = ("MSH|^~\\&|HIS|CLINIQUE-TEST|WASLA|MS|20261120100000||ADT^A01^ADT_A01|C1|P|2.5",
       "EVN|A01|20261120100000")


def _adt(converter: Converter, pid17: str, pv1_4: str, pv1_10: str, pv1_36: str) -> tuple[dict[str, Any], Any]:
    pid = "|".join(["PID", "1", "", "IPP-1^^^CLINIQUE-TEST^PI", "", "TEST^Vocab"] + [""] * 11 + [pid17])
    pv1 = ["PV1", "1", "I"] + [""] * 34
    pv1[4], pv1[10], pv1[19], pv1[36] = pv1_4, pv1_10, "V-1^^^CLINIQUE-TEST^VN", pv1_36
    result = converter.convert("adt", parse(decode("\r".join((*ADT, pid, "|".join(pv1))).encode())), NOW)
    resources = [e["resource"] for e in orjson.loads(result.bundle)["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    religion = next(x["valueCodeableConcept"] for x in patient["extension"]
                    if x["url"] == "http://hl7.org/fhir/StructureDefinition/patient-religion")
    return {"religion": religion, "type": encounter["type"][0], "serviceType": encounter["serviceType"],
            "dischargeDisposition": encounter.get("hospitalization", {}).get("dischargeDisposition")}, result


THO = "http://terminology.hl7.org/CodeSystem/"


def test_pid17_pv1_vocabularies(converter: Converter) -> None:
    """The vocabularies the IG's segment rows name (column "Vocabulary Mapping (IS, ID, CE, CNE, CWE)"):
    PID[Patient] PID-17 → patient-religion valueCodeableConcept, Religion (HL7 Concept Map_ Religion: MOS →
    v3-ReligiousAffiliation 1023 Islam); PV1[Encounter] PV1-4 → type, AdmissionType (HL7 Concept Map_
    AdmissionType: E → v2-0007 E, the identity); PV1-10 → serviceType, HospitalService (HL7 Concept Map_
    HospitalService: MED → service-type 382, SUR → v2-0069 SUR); PV1-36 → hospitalization.dischargeDisposition,
    DischargeDisposition, whose map has no v2 code to map from: CWE[CodeableConcept], HL70112 → v2-0112."""
    got, result = _adt(converter, "MOS^Muslim^HL70006", "E", "MED^Medecine^HL70069", "01^Domicile^HL70112")
    assert got == {
        "religion": {"coding": [{"system": f"{THO}v3-ReligiousAffiliation", "code": "1023", "display": "Islam"}],
                     "text": "Muslim"},
        "type": {"coding": [{"system": f"{THO}v2-0007", "code": "E", "display": "Emergency"}]},
        "serviceType": {"coding": [{"system": f"{THO}service-type", "code": "382", "display": "Medical Services"}],
                        "text": "Medecine"},
        "dischargeDisposition": {"coding": [{"system": f"{THO}v2-0112", "code": "01", "display": "Domicile"}]},
    }
    assert not _warnings_of(result, "CODE_UNMAPPED")
    got, _ = _adt(converter, "BAP", "U", "SUR", "01")
    assert got["religion"] == {"coding": [{"system": f"{THO}v3-ReligiousAffiliation", "code": "1009",
                                           "display": "Baptist"}]}
    assert got["type"] == {"coding": [{"system": f"{THO}v2-0007", "code": "U", "display": "Urgent"}]}
    assert got["serviceType"] == {"coding": [{"system": f"{THO}v2-0069", "code": "SUR", "display": "Surgical Service"}]}
    assert got["dischargeDisposition"] == {"coding": [{"code": "01"}]}   # no CWE.3: no system invented


def test_pid17_pv1_unmapped_codes_kept(converter: Converter) -> None:
    """A code the IG's map has no target for (Religion C Catholic has none; X and CHI are in no map) is kept as
    sent, with the system CWE.3 names (IG CWE[CodeableConcept] CWE.3; none invented without CWE.3), CWE.2 as display
    and text, with a CODE_UNMAPPED warning naming the row and the map."""
    got, result = _adt(converter, "C^Catholique^HL70006", "X", "CHI^Chirurgie^HL70069", "")
    assert got["religion"] == {"coding": [{"system": f"{THO}v2-0006", "code": "C", "display": "Catholique"}],
                               "text": "Catholique"}
    assert got["type"] == {"coding": [{"code": "X"}]}
    assert got["serviceType"] == {"coding": [{"system": f"{THO}v2-0069", "code": "CHI", "display": "Chirurgie"}],
                                  "text": "Chirurgie"}
    unmapped = {(w["rule"], w["field"], w["detail"]) for w in _warnings_of(result, "CODE_UNMAPPED")}
    assert unmapped == {("PID-17", "PID-17", "not in v2-0006.religion"),
                        ("PV1-4", "PV1-4", "not in v2-0007.admission-type"),
                        ("PV1-10", "PV1-10", "not in v2-0069.service-type")}


def test_an_order_note_in_a_non_repeating_subgroup_reaches_the_service_request(converter: Converter) -> None:
    """IG NTE[ServiceRequest] (NTE-3 → note.text): OML^O21 puts the NTE after OBR in OBSERVATION_REQUEST (ORM^O01
    in ORDER_DETAIL), a non-repeating subgroup of ORDER; it used to be read by no rule and reported by none. The NTE
    after an OBX stays the result's (OBSERVATION repeats: another world)."""
    raw = (ROOT / "mappings/orders/fixtures/OML-O21-01.hl7").read_bytes()
    bundle = orjson.loads(converter.convert("orders", parse(decode(raw)), NOW).bundle)
    notes = [e["resource"].get("note") for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    assert notes[0] == [{"text": "Urgent"}]
    assert "No Antibodies Detected" not in orjson.dumps(notes).decode()
