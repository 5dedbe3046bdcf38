"""Independent oracle for `mappings/ppr`: assertions taken from LinuxForHealth's PPR tests (issue 25).

Source: github.com/LinuxForHealth/hl7v2-fhir-converter (mirror commit 567864c, Apache-2.0),
src/test/java/io/github/linuxforhealth/hl7/segments/HL7ConditionFHIRConversionTest.java (the PRB unit tests)
and .../hl7/message/Hl7PPRMessageTest.java; each test names its Java method. LFH's input messages are used as
they are, with one change: LFH's PRB tests send an empty PID and no MSH-3/MSH-4, and Wasla refuses a patient
without an identifier or any namespace (README, "Resource ids"), so those tests add
`PID|||555444222111^^^MPI&GenHosp&L^MR` (the PID of LFH's own Hl7PPRMessageTest).

The HL7 v2-to-FHIR IG has no PPR message map and no PRB segment map (mirror HL7/v2-to-fhir 8c9b414), so LFH's
hl7/resource/Condition.yml is the reference the mapping follows; where Wasla still differs, the test says
"DEVIATION" and why. Not asserted, because Wasla does them differently by design: resource ids, Bundle type,
Wasla's Provenance (LFH counts entries without it), identifier systems (LFH's urn:id:extID), CodeableConcept.text.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.bundles import only as _one
from tests.mappings.bundles import resources as _all
from tests.mappings.conftest import NOW

MSH_PRB = "MSH|^~\\&|||||20040629164652|1|PPR^PC1|331|P|2.3.1||"
PID = "PID|||555444222111^^^MPI&GenHosp&L^MR||james^anderson|||M||||||||||||||"   # added, see the module docstring
PV1_EMPTY = "PV1||I||||||||||||||||||||||||||||||||||||||||||"
MSH_PPR = ("MSH|^~\\&|SendTest1|Sendfac1|Receiveapp1|Receivefac1|200603081747|security|PPR^PC1|1|P^I|2.6||||||"
           "ASCII||")
PV1_1400 = "PV1||I|||||||||||||||||1400|||||||||||||||||||||||||199501102300"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def _convert(converter: Converter, *segments: str, policy: dict[str, str] | None = None) -> dict[str, Any]:
    result = converter.convert("ppr", parse(decode("\r".join(segments).encode() + b"\r")), NOW,
                               policy or {"sender": "LFH"})
    bundle: dict[str, Any] = orjson.loads(result.bundle)
    bundle["_warnings"] = result.warnings
    return bundle


def _condition(converter: Converter, prb: str, *, pv1: bool = True) -> dict[str, Any]:
    segments = (MSH_PRB, PID, PV1_EMPTY, prb) if pv1 else (MSH_PRB, PID, prb)
    return _one(_convert(converter, *segments), "Condition")


class TestProblemSegment:
    """HL7ConditionFHIRConversionTest.java, the PRB unit tests."""

    HAPPY_ONE = ("PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||20100907175347||20180310074000|||"
                 "|confirmed^Confirmed^http://terminology.hl7.org/CodeSystem/condition-ver-status||"
                 "|20170102074000|textual representation of the time when the problem began|||||||||some prb detail|")

    def test_happy_one_dates(self, converter: Converter) -> None:
        """validateProblemHappyTestOne: recordedDate from PRB-2, abatement from PRB-9, onset from PRB-16 (PRB-17
        is then not used), the condition-assertedDate extension from PRB-7."""
        c = _condition(converter, self.HAPPY_ONE)
        assert c["recordedDate"].startswith("2017-01-10T07:40:00")
        assert c["abatementDateTime"].startswith("2018-03-10T07:40:00")
        assert c["onsetDateTime"].startswith("2017-01-02T07:40:00") and "onsetString" not in c
        assert [e["url"] for e in c["extension"]] == ["http://hl7.org/fhir/StructureDefinition/condition-assertedDate"]
        assert c["extension"][0]["valueDateTime"].startswith("2010-09-07T17:53:47")

    def test_happy_one_status_category_severity_references(self, converter: Converter) -> None:
        """validateProblemHappyTestOne: verificationStatus confirmed (PRB-13), one category problem-list-item,
        severity text "some prb detail" (PRB-26, no code system), encounter and subject references.

        DEVIATION: LFH writes PRB-26 as CodeableConcept.text only; Wasla's CWE.CodeableConcept keeps CWE.1 as
        the code (no system, CWE.3 empty): the same words, as coding.code."""
        c = _condition(converter, self.HAPPY_ONE)
        assert c["verificationStatus"]["coding"][0]["code"] == "confirmed"
        assert c["verificationStatus"]["coding"][0]["system"] == VER
        assert len(c["category"]) == 1
        assert c["category"][0]["coding"][0] == {"system": CATEGORY, "code": "problem-list-item",
                                                 "display": "Problem List Item"}
        assert c["severity"]["coding"][0]["code"] == "some prb detail"
        assert "system" not in c["severity"]["coding"][0]
        assert c["encounter"]["reference"].startswith("urn:uuid:")
        assert c["subject"]["reference"].startswith("urn:uuid:")

    def test_happy_two_code_and_clinical_status(self, converter: Converter) -> None:
        """validateProblemHappyTestTwo: code K80.00 "Cholelithiasis" from PRB-3, clinicalStatus remission (PRB-14).

        DEVIATION (system): LFH writes I10 as http://hl7.org/fhir/sid/icd-10-cm; in HL7 table 0396 I10 is WHO
        ICD-10 (I10C is ICD-10-CM), so Wasla's coding-system map gives http://hl7.org/fhir/sid/icd-10."""
        c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956||||||||||remission^"
                                  "Remission^http://terminology.hl7.org/CodeSystem/condition-clinical|||||||||||||")
        assert c["code"]["coding"][0]["code"] == "K80.00"
        assert c["code"]["coding"][0]["display"] == "Cholelithiasis"
        assert c["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
        assert c["clinicalStatus"]["coding"][0] == {"system": CLIN, "code": "remission", "display": "Remission"}

    def test_empty_and_invalid_statuses_are_left_out(self, converter: Converter) -> None:
        """validateProblemWithEmptyAndInvalidValues (its three cases): a PRB-13 or PRB-14 that is no
        condition-ver-status / condition-clinical code gives no verificationStatus, no clinicalStatus.
        Wasla adds what LFH does not: each left-out code is a CODE_UNMAPPED warning (no silent drop)."""
        for prb in (
            "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956||||||||||BAD^Confirmed^"
            "http://terminology.hl7.org/CodeSystem/condition-ver-status|||||||||||||",
            "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956||||||||||C^Confirmed^Confirmation Status List"
            "|||||||||||||",
            "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||||||||BAD|INVALID|||||||||||||",
        ):
            b = _convert(converter, MSH_PRB, PID, PV1_EMPTY, prb)
            c = _one(b, "Condition")
            assert "verificationStatus" not in c and "clinicalStatus" not in c
            assert any(w["code"] == "CODE_UNMAPPED" and w["field"] in ("PRB-13", "PRB-14") for w in b["_warnings"])

    def test_one_word_statuses(self, converter: Converter) -> None:
        """validateProblemTestingOneWordGoodStatus: PRB-13 `confirmed`, PRB-14 `remission` alone → the coded
        statuses with their systems and displays."""
        c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||||||||confirmed|remission|")
        assert c["verificationStatus"]["coding"][0] == {"system": VER, "code": "confirmed", "display": "Confirmed"}
        assert c["clinicalStatus"]["coding"][0] == {"system": CLIN, "code": "remission", "display": "Remission"}

    def test_bad_status_systems_are_replaced(self, converter: Converter) -> None:
        """validateProblemTestingBadSystem: a wrong CWE-3 (BADCLINCALSTATUSSYSTEM …) does not matter, the code
        gets the FHIR status system."""
        c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||||||||confirmed^Confirmed^"
                                  "BADCLINCALSTATUSSYSTEM|remission^Remission^BADVERIFICATIONSTATUSSYSTEM|")
        assert c["verificationStatus"]["coding"][0]["system"] == VER
        assert c["clinicalStatus"]["coding"][0]["system"] == CLIN
        assert c["verificationStatus"]["coding"][0]["code"] == "confirmed"

    def test_one_category_only(self, converter: Converter) -> None:
        """validateOverloadedCodeField: one category, problem-list-item, its code not overloaded with the system."""
        c = _condition(converter, "PRB|AD|20210101000000|G47.31^Primary central sleep apnea^ICD-10-CM|28827016|",
                       pv1=False)
        assert c["category"] == [{"coding": [{"system": CATEGORY, "code": "problem-list-item",
                                              "display": "Problem List Item"}]}]

    def test_multiple_problems(self, converter: Converter) -> None:
        """validateProblemMultipleProblems: two PRB → two Conditions."""
        b = _convert(converter, MSH_PRB, PID,
                     "PRB|AD|20170110074000|N39.0^Urinary Tract Infection^I9|53957|E2|1|20090907175347|20150907175347"
                     "||||||||||||||||||",
                     "PRB|AD|20170110074000|C56.9^Ovarian Cancer^I10|53958|E3|2|20110907175347|20160907175347"
                     "||||||||||||||||||")
        assert [c["code"]["coding"][0]["code"] for c in _all(b, "Condition")] == ["N39.0", "C56.9"]

    def test_onset_date_wins_over_onset_text(self, converter: Converter) -> None:
        """validateProblemWithOnsetDateTimeWithNoOnsetString (both cases): onset is PRB-16, with or without PRB-17."""
        for tail in ("||", "|textual representation of the time when the problem began|"):
            c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956||||||||||||20180310074000"
                           + tail, pv1=False)
            assert c["onsetDateTime"].startswith("2018-03-10T07:40:00") and "onsetString" not in c

    def test_onset_text_and_resolved_from_resolution_date(self, converter: Converter) -> None:
        """validateProblemWithOnsetStringAndNoOnsetdateClinicalStatusResolved: no PRB-16 → onsetString PRB-17;
        PRB-9 valued, PRB-14 empty → clinicalStatus resolved."""
        c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||||20150907175347|||||||"
                                  "|textual representation of the time when the problem began|||||||||||", pv1=False)
        assert c["onsetString"] == "textual representation of the time when the problem began"
        assert c["clinicalStatus"]["coding"][0] == {"system": CLIN, "code": "resolved", "display": "Resolved"}

    def test_invalid_clinical_status_with_resolution_date(self, converter: Converter) -> None:
        """validateProblemWithInvalidClinicalStatusAndResolutionDate: PRB-9 valued, PRB-14 INVALID → resolved."""
        c = _condition(converter, "PRB|AD|20170110074000|K80.00^Cholelithiasis^I10|53956|||||20150907175347|||||"
                                  "INVALID|||||||||||||", pv1=False)
        assert c["clinicalStatus"]["coding"][0]["code"] == "resolved"


class TestPPRMessage:
    """Hl7PPRMessageTest.java: which resources a PPR^PC1 makes."""

    def test_min_visit_and_problem(self, converter: Converter) -> None:
        """test_ppr_pc1_with_min_VISIT_and_PROBLEM_groups: one Patient, one Condition, nothing else (LFH: 2
        entries; Wasla adds its Provenance)."""
        b = _convert(converter, MSH_PPR, PID, "PRB|AD|200603150625|aortic stenosis|53692||2||200603150625")
        assert sorted(e["resource"]["resourceType"] for e in b["entry"]) == ["Condition", "Patient", "Provenance"]

    def test_problem_observations(self, converter: Converter) -> None:
        """test_ppr_pc1_with_min_VISIT_and_PROBLEM_with_multiple_PROBLEM_OBSERVATION_groups: Patient, Encounter,
        one Condition, two Observations (PROBLEM_OBSERVATION), LFH's 5 entries; the Condition's evidence names
        both Observations (Condition.yml evidence) and its note is the problem's NTE."""
        b = _convert(converter, MSH_PPR, PID, PV1_1400, "PRB|AD|200603150625|aortic stenosis|53692||2||200603150625",
                     "NTE|1|P|Problem Comments", "OBX|1|ST|100||First Problem Observation|||||||X",
                     "OBX|2|ST|101||Second Problem Observation|||||||X")
        assert len(_all(b, "Patient")) == 1 and len(_all(b, "Encounter")) == 1
        c = _one(b, "Condition")
        obs = _all(b, "Observation")
        assert [o["valueString"] for o in obs] == ["First Problem Observation", "Second Problem Observation"]
        urls = {e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation"}
        assert {d["reference"] for ev in c["evidence"] for d in ev["detail"]} == urls
        assert c["note"] == [{"text": "Problem Comments"}]
        assert len(b["entry"]) == 6   # LFH's 5 and Wasla's Provenance

    def test_multiple_problems_with_orders(self, converter: Converter) -> None:
        """test_ppr_pc1_with_multiple_PROBLEM_with_ORDER_groups: three PROBLEM groups → three Conditions.

        DEVIATION: LFH also makes a ServiceRequest per ORC (PPR_PC1.yml ServiceRequest); Wasla's ppr mapping does
        not map the ORDER groups yet: their fields are reported (FIELDS_NOT_MAPPED), never dropped silently."""
        b = _convert(converter, MSH_PPR, PID,
                     "PRB|AD|200603150625|aortic stenosis|53692||2||200603150625",
                     "ORC|NW|1001^OE|99999990^RX|||E|^Q6H^D10^^^R", "ORC|NW|1002^OE|99999991^RX|||E|^Q6H^D10^^^R",
                     "PRB|AD|200603150625|aortic stenosis|53692||2||200603150625",
                     "ORC|NW|1003^OE|99999992^RX|||E|^Q6H^D10^^^R",
                     "PRB|AD|200603150625|aortic stenosis|53692||2||200603150625")
        assert len(_all(b, "Condition")) == 3
        assert _all(b, "ServiceRequest") == []
        assert any(w["code"] == "FIELDS_NOT_MAPPED" and "ORC" in w["field"].split(", ") for w in b["_warnings"])
        # LFH's three PRB share PRB-4 53692: three Conditions all the same, the second and third warned
        assert sum(w["code"] == "DUPLICATE_BUSINESS_KEY" for w in b["_warnings"]) == 2


class TestProblemDelete:
    """PC3 (LFH's PPR_PC3.yml makes the same Condition as PC1; no LFH test covers it): Wasla marks it."""

    def test_pc3_is_entered_in_error_on_the_same_condition(self, converter: Converter) -> None:
        """The PC3 of a problem rewrites the Condition the PC1 made (same PRB-4, same patient) with
        verificationStatus entered-in-error and no clinicalStatus (R4 con-5)."""
        prb = "PRB|{}|20170110074000|K80.00^Cholelithiasis^I10|53956||||||||||remission|"
        add = _convert(converter, MSH_PRB, PID, prb.format("AD"))
        delete = _convert(converter, MSH_PRB.replace("PPR^PC1", "PPR^PC3"), PID, prb.format("DE"))
        c_add, c_del = _one(add, "Condition"), _one(delete, "Condition")
        assert c_add["id"] == c_del["id"]
        assert c_del["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
        assert "clinicalStatus" not in c_del and c_add["clinicalStatus"]["coding"][0]["code"] == "remission"
