"""Independent oracle for `mappings/rde` (and `mappings/rds`): assertions taken from LinuxForHealth's pharmacy tests
(issue 25).

Source: github.com/LinuxForHealth/hl7v2-fhir-converter (mirror commit 567864c), src/test/java/io/github/
linuxforhealth/hl7/segments/Hl7MedicationRequestFHIRConversionTest.java; each test names its Java method. LFH's
input messages are used as they are, except MSH: where LFH's MSH has no sending facility (`MSH|^~\\&||||||S1|…`)
the PID-3 without authority would have no namespace (Wasla refuses such a key), so MSH-3/4 are filled.

The HL7 v2-to-FHIR IG 1.0.0 (github.com/HL7/v2-to-fhir 8c9b414) has no RDE message map and no RXE segment map; it
has RXO[MedicationRequest], TQ1[MedicationRequest] and RXR[MedicationRequest]. Where those rows, or for what they
do not cover microsoft/FHIR-Converter's templates (70fd328, data/Templates/Hl7v2/Resource/
_MedicationRequest.liquid, which Wasla follows), disagree with LFH, the test asserts Wasla's source and says
"IG-DEVIATION" or "FHIR-CONVERTER-DEVIATION" (LFH's behaviour, then the row). Not asserted, by design: resource
ids, identifier systems (LFH's urn:id:...), resource counts that include Wasla's Provenance.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only as _one
from tests.mappings.bundles import resources as _all
from tests.mappings.conftest import NOW

MSH = "MSH|^~\\&|APP|FAC|WHIA|IBM|20180622230000||RDE^O11^RDE_O11|MSGID221xx0xcnvMed31|T|2.6"
PID = "PID|||1234^^^^MR||DOE^JANE^|||F||||||||||||||||||||||"
RXO = "RXO|RX800006^Test15 SODIUM 100 MG CAPSULE|100||mg|||||G||10||5"
RXE = "RXE|^^^20180622230000^^R|62756-017^Testosterone Cypionate^NDC|100||mg|||||10||5"


def _orc(control: str, status: str = "") -> str:
    return f"ORC|{control}|F800006^OE|P800006^RX||{status}|E|10^BID^D4^^^R||20180622230000"


def _convert(converter: Converter, *segments: str, mapping: str = "rde") -> dict[str, Any]:
    result = converter.convert(mapping, parse(decode("\r".join(segments).encode() + b"\r")), NOW)
    bundle: dict[str, Any] = orjson.loads(result.bundle)
    return bundle


def _fullurl(bundle: dict[str, Any], res: dict[str, Any]) -> str:
    (url,) = [e["fullUrl"] for e in bundle["entry"] if e["resource"] is res]
    return str(url)


class TestMedicationRequest:
    """Hl7MedicationRequestFHIRConversionTest.java"""

    def test_patient_and_no_service_request(self, converter: Converter) -> None:
        """test_medicationreq_patient: one Patient, one MedicationRequest whose subject is that Patient, and no
        ServiceRequest for an RDE^O11."""
        b = _convert(converter, MSH, PID, _orc("NW"), RXO, RXE)
        patient = _one(b, "Patient")
        mr = _one(b, "MedicationRequest")
        assert mr["subject"] == {"reference": _fullurl(b, patient)}
        assert _all(b, "ServiceRequest") == []

    def test_status_from_orc5(self, converter: Converter) -> None:
        """test_medicationreq_status: ORC-5 A → active, CM → completed, ER → entered-in-error.

        FHIR-Converter CodeSystem/MedicationOrderStatus agrees (the IG has no MedicationRequest status map)."""
        for orc5, status in (("A", "active"), ("CM", "completed"), ("ER", "entered-in-error")):
            b = _convert(converter, MSH, PID, _orc("NW", orc5), RXO, RXE)
            assert _one(b, "MedicationRequest")["status"] == status, orc5

    def test_status_from_orc1(self, converter: Converter) -> None:
        """test_medicationreq_status: no ORC-5, ORC-1 NW → active, RP → unknown, DC → stopped, CA → cancelled.

        FHIR-Converter CodeSystem/OrderControlCode_RequestStatus agrees (RP → unknown: Wasla's map leaves RP out
        and the rule's default, unknown, is written)."""
        for orc1, status in (("NW", "active"), ("RP", "unknown"), ("DC", "stopped"), ("CA", "cancelled")):
            b = _convert(converter, MSH, PID, _orc(orc1), RXO, RXE)
            assert _one(b, "MedicationRequest")["status"] == status, orc1
            assert _all(b, "ServiceRequest") == []

    def test_rde_with_rxo_and_rxe(self, converter: Converter) -> None:
        """test_medicationCodeableConcept_authoredOn_and_intent_in_rde_with_rxO_with_rxe (RDE^O11 and O25): the
        medication is RXE-2 (not RXO-1), code DUONEB3INH, authoredOn ORC-9 2018-06-22T23:00.

        FHIR-CONVERTER-DEVIATION: LFH says intent "order"; FHIR-Converter's _MedicationRequest.liquid writes
        filler-order when an RXE is sent (the IG's RXO row 0, original-order, is the placer's RXO).
        IG-DEVIATION: LFH copies CWE.2 into the text; the IG's CWE[CodeableConcept] makes CWE.2 the coding's display
        and takes text from CWE.9 only."""
        for trigger in ("O11", "O25"):
            b = _convert(converter, f"MSH|^~\\&|APP|FAC||||S1|RDE^{trigger}||T|2.6|||||||||", PID, _orc("NW"),
                         "RXO|RX800006^Test15 SODIUM 100 MG CAPSULE^NDC||100||mg|||||G||10||5",
                         "RXE||DUONEB3INH^3 ML PLAS CONT : IPRATROPIUM-ALBUTEROL 0.5-2.5 (3) MG/3ML IN SOLN^ADS"
                         "||||||||||||||||||||||||||||||||||||||")
            mr = _one(b, "MedicationRequest")
            assert mr["authoredOn"] == "2018-06-22T23:00:00+01:00"
            assert mr["intent"] == "filler-order"
            coding = mr["medicationCodeableConcept"]["coding"][0]
            assert coding["code"] == "DUONEB3INH"
            assert coding["display"] == "3 ML PLAS CONT : IPRATROPIUM-ALBUTEROL 0.5-2.5 (3) MG/3ML IN SOLN"
            assert "text" not in mr["medicationCodeableConcept"]

    def test_rde_with_just_rxe31(self, converter: Converter) -> None:
        """test_medicationCodeableConcept_authoredOn_and_intent_in_rde_with_just_rxe: with RXE-2 empty the
        medication is RXE-31 (as LFH: the only source that names it here).

        FHIR-CONVERTER-DEVIATION: LFH takes authoredOn from RXE-32 (2018-06-22T23:00) before ORC-9; FHIR-Converter
        writes ORC-9 for a new order (ORC-1 NW) and RXE-32 only without ORC-9: 2019-06-22T16:00."""
        b = _convert(converter, MSH, PID, "ORC|NW|F800006^OE|P800006^RX|||E|10^BID^D4^^^R||20190622160000",
                     "RXE|||3||mL|47||||1|PC||||||||||||||||||||DUONEB3INH^3 ML PLAS CONT : IPRATROPIUM-ALBUTEROL "
                     "0.5-2.5 (3) MG/3ML IN SOLN^ADS|20180622230000||||||||")
        mr = _one(b, "MedicationRequest")
        assert mr["medicationCodeableConcept"]["coding"][0]["code"] == "DUONEB3INH"
        assert mr["authoredOn"] == "2019-06-22T16:00:00+01:00"
        dose = mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
        assert dose["value"] == 3 and dose["code"] == "mL"   # RXE-3 with RXE-5 (RXO.csv rows 2, 4 read for RXE)
        assert mr["dispenseRequest"]["quantity"]["value"] == 1   # RXE-10 (RXO.csv row 11)

    def test_identifiers_and_dispense(self, converter: Converter) -> None:
        """test_medicationreq_patient's message: ORC-2 → identifier PLAC F800006, ORC-3 → FILL P800006 (LFH's
        identifier_5 and identifier_4; FHIR-Converter the same), RXE-10 → dispenseRequest.quantity 10 and RXE-12 →
        numberOfRepeatsAllowed 5 (IG RXO.csv rows 11, 13 read for RXE)."""
        b = _convert(converter, MSH, PID, _orc("NW"), RXO, RXE)
        mr = _one(b, "MedicationRequest")
        ids = {i["type"]["coding"][0]["code"]: i["value"] for i in mr["identifier"] if "coding" in i.get("type", {})}
        assert ids == {"PLAC": "F800006", "FILL": "P800006"}
        assert mr["dispenseRequest"]["quantity"]["value"] == 10
        assert mr["dispenseRequest"]["numberOfRepeatsAllowed"] == 5
        assert mr["medicationCodeableConcept"]["coding"][0] == {
            "system": "http://hl7.org/fhir/sid/ndc", "code": "62756-017", "display": "Testosterone Cypionate"}


class TestRDEMessage:
    """Hl7RDEMessageTest.java (each test for RDE^O11 and RDE^O25; MSH-3/4 filled: see the module docstring)."""

    ORC = "ORC|RE|||3200|||||20210407191342||2799^BY^VERIFIED||||20210407191342||||||ORDERING FAC NAME||||||||I"
    RXE = ("RXE|^Q24H&0600^^20210407191342^^ROU|DEFAULTMED^cefTRIAXone (ROCEPHIN) 2 g in sodium chloride 0.9 % 50 mL "
           "IVPB|2||g||||||||")

    def test_minimum_patient_and_order(self, converter: Converter) -> None:
        """testRdeMinimumPatientAndMinimumOrder: one Patient, one MedicationRequest and nothing else (LFH counts 2;
        Wasla adds its Provenance). RXR-1 IM → dosageInstruction.route (IG RXR.csv sort order 1); RXE-3/5 2 g →
        doseQuantity (RXO.csv sort orders 2, 4 read for RXE)."""
        for trigger in ("O11", "O25"):
            b = _convert(converter, f"MSH|^~\\&|APP|FAC|||20210407191342||RDE^{trigger}|1|T|2.6", PID, self.ORC,
                         self.RXE, "RXR|IM")
            assert {r["resourceType"] for r in (e["resource"] for e in b["entry"])} == {
                "Patient", "MedicationRequest", "Provenance"}
            dosage = _one(b, "MedicationRequest")["dosageInstruction"][0]
            assert dosage["route"] == {"coding": [{"code": "IM"}]}
            assert dosage["doseAndRate"][0]["doseQuantity"] == {
                "value": 2, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}

    def test_minimum_order_without_rxr(self, converter: Converter) -> None:
        """testRdeMinimumPatientAndMinimumOrderWithoutRXR: still one Patient and one MedicationRequest (no route)."""
        b = _convert(converter, "MSH|^~\\&|APP|FAC|||20210407191342||RDE^O11|1|T|2.6", PID, self.ORC, self.RXE)
        assert len(_all(b, "Patient")) == 1
        assert "route" not in _one(b, "MedicationRequest")["dosageInstruction"][0]

    def test_patient_visit(self, converter: Converter) -> None:
        """testRdePatientWithPatientVisitAndMinimumOrder: Patient, Encounter, MedicationRequest; the request's
        encounter is the visit (FHIR-Converter RDE_O11.liquid)."""
        b = _convert(converter, "MSH|^~\\&|APP|FAC|||20210407191342||RDE^O25|1|T|2.6", PID,
                     "PV1||I|||||||||||||||||Visit_0a4d960d-c528-45c9-bb10-7e9929968247|||||||||||||||||||||||||"
                     "20210407191342", self.ORC, self.RXE, "RXR|IM")
        encounter = _one(b, "Encounter")
        assert _one(b, "MedicationRequest")["encounter"] == {"reference": _fullurl(b, encounter)}


OMP_MSH = ("MSH|^~\\&|WHI_LOAD_GENERATOR|IBM_TORONTO_LAB|MEDORDER|IBM|20210407191342|9022934|OMP^O09|"
           "MSGID_bae9ce6a-e35d-4ff5-8d50-c5dde19cc1aa|T|2.5.1")


class TestOMPMessage:
    """Hl7OMPMessageTest.java and the OMP tests of Hl7MedicationRequestFHIRConversionTest.java (mapping omp)."""

    def test_minimum_patient_and_order(self, converter: Converter) -> None:
        """testOMPO09MinimumPatientAndMinimumOrderGroups: one Patient, one MedicationRequest (LFH counts 2
        resources; Wasla adds its Provenance)."""
        b = _convert(converter, OMP_MSH, PID, "ORC|OP|1000|9999999||||^3 times daily^^20210401",
                     "RXO|50111032701^hydrALAZINE HCl 25 MG Oral Tablet^NDC^^^^^^hydrALAZINE (APRESOLINE) 25 MG TABS"
                     "|||||||||||||||||||||||", mapping="omp")
        assert len(_all(b, "Patient")) == 1
        mr = _one(b, "MedicationRequest")
        assert {r["resourceType"] for r in (e["resource"] for e in b["entry"])} == {
            "Patient", "MedicationRequest", "Provenance"}
        # RXO.csv sort order 1, CWE[CodeableConcept]: NDC code, CWE.2 display, CWE.9 text
        assert mr["medicationCodeableConcept"] == {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50111032701",
                        "display": "hydrALAZINE HCl 25 MG Oral Tablet"}],
            "text": "hydrALAZINE (APRESOLINE) 25 MG TABS"}

    def test_omp_makes_no_service_request(self, converter: Converter) -> None:
        """medicationFromOMPTest: one MedicationRequest, no ServiceRequest. Also, from its message: RXR-1 PO →
        dosageInstruction.route (IG RXR.csv sort order 1), RXO-11/12 → dispenseRequest.quantity 4 tablet (RXO.csv
        sort orders 11, 12), ORC-12 → requester (FHIR-Converter; RXO-14, RXO.csv sort order 14, is the fallback)."""
        b = _convert(converter,
                     "MSH|^~\\&|WHI_LOAD_GENERATOR|IBM_TORONTO_LAB|MEDORDER|IBM|20210101000000|90103687|OMP^O09|MSGID"
                     "|T|2.6", "PID|||1234||DOE^JANE^|||F||||||||||||||||||||||",
                     "PV1||I|^^^Toronto^^5642 Hilly Av||||2905^Doctor^Attending^M^IV^^M.D|5755^Doctor^Referring^^Sr|"
                     "770542^Doctor^Consulting^Jr||||||||59367^Doctor^Admitting||Visit_111|||||||||||||||||||||||||"
                     "20210101000000",
                     "ORC|OP|1234|1234|0827|||^Every 6 hours^^20210101||20210101000000|2739^BY^ENTERED|"
                     "2799^BY^VERIFIED|3122^PROVIDER^ORDERING|||20210101000000||||||ORDERING FAC NAME|"
                     "ADDR^^CITY^STATE^ZIP^USA|(9",
                     "RXO|00054418425^Dexamethasone 4 MG Oral Tablet^NDC^^^^^^dexamethasone (DECADRON) 4 MG TABS||||||"
                     "Take 1 tablet by mouth every 6 (six) hours.||G||4|tablet^tablet|0|222^JONES^JON^E.||||||||||"
                     "^DECADRON", "RXR|PO^Oral", mapping="omp")
        mr = _one(b, "MedicationRequest")
        assert _all(b, "ServiceRequest") == []
        assert mr["dosageInstruction"][0]["route"]["coding"][0]["code"] == "PO"
        assert mr["dispenseRequest"]["quantity"] == {"value": 4, "unit": "tablet"}
        requester = next(e["resource"] for e in b["entry"] if e["fullUrl"] == mr["requester"]["reference"])
        assert requester["identifier"][0]["value"] == "3122"

    def test_intent_and_code_in_omp(self, converter: Converter) -> None:
        """test_medicationCodeableConcept_and_intent_in_OMP_and_ORM (OMP^O09): code RX800006 under NDC with display
        "Test15 SODIUM 100 MG CAPSULE"; no authoredOn (ORC-9 empty).

        IG-DEVIATION: LFH says intent "order"; the IG's RXO row 0 (RXO.csv sort order 0) assigns original-order.
        IG-DEVIATION: LFH copies CWE.2 into the text; CWE[CodeableConcept] takes text from CWE.9 only."""
        b = _convert(converter, "MSH|^~\\&|APP|FAC||||S1|OMP^O09||T|2.6|||||||||", PID,
                     "ORC|NW|F800006^OE|P800006^RX|||E|10^BID^D4^^^R||",
                     "RXO|RX800006^Test15 SODIUM 100 MG CAPSULE^NDC||100||mg|||||G||10||5", mapping="omp")
        mr = _one(b, "MedicationRequest")
        assert mr["intent"] == "original-order"
        assert mr["medicationCodeableConcept"] == {"coding": [{"system": "http://hl7.org/fhir/sid/ndc",
                                                               "code": "RX800006",
                                                               "display": "Test15 SODIUM 100 MG CAPSULE"}]}
        assert "authoredOn" not in mr
