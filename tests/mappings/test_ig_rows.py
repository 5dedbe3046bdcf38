"""Issue 22: IG rows that were wrong or dropped, each asserted on the value the IG row gives.

Source of truth: HL7/v2-to-fhir `mappings/segments|messages|codesystems/*.csv` (the row is named in
each test). The fixtures are under mappings/adt/fixtures/ig-*.hl7; these tests assert the values, not
the ids (ids belong to the key scheme and change with it).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

FIXTURES = ROOT / "mappings" / "adt" / "fixtures"
MSH = "MSH|^~\\&|HIS|CLINIQUE-TEST|WASLA|MS|20261120090000||{type}|IGT-{n}|P|2.5"
PV1 = "PV1|1|{cls}|MED^12^1^CLINIQUE-TEST||||||||||||||||V-{n}^^^CLINIQUE-TEST^VN"


def _bundle(converter: Converter, text: str, mapping: str = "adt") -> dict[str, Any]:
    raw = text.replace("\n", "\r").encode()
    return orjson.loads(converter.convert(mapping, parse(decode(raw)), NOW).bundle)


def _fixture(converter: Converter, name: str) -> dict[str, Any]:
    return orjson.loads(converter.convert("adt", parse(decode((FIXTURES / f"{name}.hl7").read_bytes())), NOW).bundle)


def _of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _adt(trigger: str, pv1_class: str, *extra: str, n: str = "1") -> str:
    return "\n".join([MSH.format(type=f"ADT^{trigger}^ADT_A01", n=n), f"EVN|{trigger}|20261120090000",
                      f"PID|1||IPP-{n}^^^CLINIQUE-TEST^PI||TEST^Ig^^^^^L||19700101|M",
                      PV1.format(cls=pv1_class, n=n), *extra])


class TestWrongValues:
    def test_dg1_5_is_onset(self, converter: Converter) -> None:
        """DG1[Condition] DG1-5 → onsetDateTime; recordedDate comes from DG1-19 only."""
        cond = _of(_fixture(converter, "ig-dg1-onset"), "Condition")[0]
        assert cond["onsetDateTime"] == "2026-10-15"
        assert "recordedDate" not in cond

    def test_dg1_19_is_recorded_date_and_asserted_date(self, converter: Converter) -> None:
        """DG1[Condition] DG1-19 → recordedDate and the condition-assertedDate extension."""
        cond = _of(_fixture(converter, "ig-adt-rows"), "Condition")[0]
        assert cond["recordedDate"] == "2026-11-20T10:15:00+01:00"
        assert cond["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate",
                                      "valueDateTime": "2026-11-20T10:15:00+01:00"}]

    def test_in1_2_is_identifier_and_in1_15_type(self, converter: Converter) -> None:
        """IN1[Coverage] IN1-2 (CWE[Identifier]) → identifier.value; IN1-15 → type."""
        cov = _of(_fixture(converter, "ig-in1-identifier"), "Coverage")[0]
        assert cov["identifier"][0] == {"value": "AMO-SAL"}
        assert {"value": "POL-55512"} in cov["identifier"]
        assert cov["type"]["coding"][0]["code"] == "HMO"
        assert cov["period"] == {"start": "2026-01-01", "end": "2026-12-31"}

    def test_al1_4_severity(self, converter: Converter) -> None:
        """AL1[AllergyIntolerance] AL1-4: criticality (SV → high, MO → none) and the sent code in
        criticality's alternate-codes extension (AllergySeverity[criticality-original])."""
        moderate, severe = _of(_fixture(converter, "ig-al1-severity"), "AllergyIntolerance")
        assert "criticality" not in moderate
        assert severe["criticality"] == "high"
        for resource, code, display in ((moderate, "MO", "Moderate"), (severe, "SV", "Severe")):
            assert resource["_criticality"] == {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/alternate-codes",
                "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0128",
                                                     "code": code, "display": display}]}}]}
            assert "severity" not in resource["reaction"][0]


class TestEncounterStatus:
    @pytest.mark.parametrize(("cls", "status"), [("I", "in-progress"), ("O", "in-progress"), ("E", "in-progress"),
                                                 ("P", "planned"), ("U", "unknown")])
    def test_a08_takes_the_patient_class(self, converter: Converter, cls: str, status: str) -> None:
        """ADT_A01 message map (A08's structure) has no MSH[Encounter]: PV1-2 via PatientClass[EncounterStatus]."""
        enc = _of(_bundle(converter, _adt("A08", cls)), "Encounter")[0]
        assert enc["status"] == status

    def test_a08_fixture_does_not_regress_the_a01(self, converter: Converter) -> None:
        a08 = _of(_fixture(converter, "ig-a08-status"), "Encounter")[0]
        a01 = _of(_bundle(converter, _adt("A01", "I")), "Encounter")[0]
        assert a08["status"] == a01["status"] == "in-progress"

    def test_a08_with_discharge_is_finished(self, converter: Converter) -> None:
        visit = "V-1^^^CLINIQUE-TEST^VN"
        text = _adt("A08", "I").replace(visit, visit + "|" * 25 + "20261120080000|20261121120000")  # PV1-44, PV1-45
        assert _of(_bundle(converter, text), "Encounter")[0]["status"] == "finished"

    @pytest.mark.parametrize(("trigger", "status"), [("A01", "in-progress"), ("A03", "finished"),
                                                     ("A04", "planned"), ("A11", "cancelled")])
    def test_other_triggers_keep_event_status(self, converter: Converter, trigger: str, status: str) -> None:
        """Event[EncounterStatus] still decides for the triggers it names."""
        assert _of(_bundle(converter, _adt(trigger, "I")), "Encounter")[0]["status"] == status


class TestPid:
    def test_birth_time(self, converter: Converter) -> None:
        """PID[Patient] PID-7 IF LENGTH > 8: birthDate + patient-birthTime extension on birthDate."""
        pat = _of(_fixture(converter, "ig-pid7-birthtime"), "Patient")[0]
        assert pat["birthDate"] == "2026-11-18"
        assert pat["_birthDate"] == {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                                    "valueDateTime": "2026-11-18T07:42:00+01:00"}]}

    def test_date_only_birth_has_no_birth_time(self, converter: Converter) -> None:
        pat = _of(_bundle(converter, _adt("A01", "I")), "Patient")[0]
        assert pat["birthDate"] == "1970-01-01"
        assert "_birthDate" not in pat

    def test_pid_rows(self, converter: Converter) -> None:
        """PID-2/3/4 identifiers, PID-9 alias name, PID-17 religion, PID-19 SB identifier, PID-23 birthPlace,
        PID-25 multipleBirthInteger (PID-24 only when PID-25 is empty), PD1-3/4 generalPractitioner."""
        b = _fixture(converter, "ig-adt-rows")
        pat = _of(b, "Patient")[0]
        assert [i["value"] for i in pat["identifier"]] == ["IPP-9006", "EXT-77", "ALT-55", "123456789"]
        assert pat["identifier"][3]["type"]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "SB"}
        assert pat["name"][1]["family"] == "TESTALIAS"
        ext = {e["url"].rsplit("/", 1)[1]: e for e in pat["extension"]}
        assert ext["patient-religion"]["valueCodeableConcept"]["coding"][0]["code"] == "MUS"
        assert ext["patient-birthPlace"]["valueAddress"] == {"text": "Fès"}
        assert pat["multipleBirthInteger"] == 2
        assert "multipleBirthBoolean" not in pat
        assert len(pat["generalPractitioner"]) == 2
        refs = {e["fullUrl"]: e["resource"] for e in b["entry"]}
        gp = [refs[r["reference"]] for r in pat["generalPractitioner"]]
        assert [g["resourceType"] for g in gp] == ["Organization", "Practitioner"]

    def test_multiple_birth_boolean(self, converter: Converter) -> None:
        text = _adt("A01", "I").replace("19700101|M", "19700101|M" + "|" * 16 + "Y")
        pat = _of(_bundle(converter, text), "Patient")[0]
        assert pat["multipleBirthBoolean"] is True


class TestVisitAndProcedure:
    def test_pv1_pv2_rows(self, converter: Converter) -> None:
        enc = _of(_fixture(converter, "ig-adt-rows"), "Encounter")[0]
        assert enc["type"][0]["coding"][0]["code"] == "U"                              # PV1-4
        assert enc["serviceType"]["coding"][0]["code"] == "CHI"                        # PV1-10
        assert enc["hospitalization"]["admitSource"]["coding"][0]["code"] == "7"       # PV1-14
        assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "01"  # PV1-36
        assert enc["reasonCode"][0]["coding"][0]["code"] == "R10.4"                    # PV2-3
        assert enc["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival",
                                     "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0430",
                                                     "code": "A", "display": "Ambulance"}}]  # PV2-38


    def test_pv1_37_destination_location(self, converter: Converter) -> None:
        """PV1[Encounter] PV1-37 → hospitalization.destination, a new Location typed by DLD.1."""
        b = _fixture(converter, "ig-adt-rows")
        enc = _of(b, "Encounter")[0]
        loc = {e["fullUrl"]: e["resource"] for e in b["entry"]}[enc["hospitalization"]["destination"]["reference"]]
        assert loc["resourceType"] == "Location"
        assert loc["type"][0]["coding"][0]["code"] == "SSR"
        assert loc["type"][0]["coding"][0]["display"] == "Soins de suite et réadaptation"

    def test_encounter_diagnosis_per_dg1(self, converter: Converter) -> None:
        """ADT_A01 DG1[Encounter]: one diagnosis per DG1, its own Condition, DG1-6 → use (DiagnosisType
        A → AD), DG1-15 → rank."""
        b = _fixture(converter, "ig-adt-rows")
        enc = _of(b, "Encounter")[0]
        conditions = [e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Condition"]
        assert [d["condition"]["reference"] for d in enc["diagnosis"]] == conditions
        assert [d["rank"] for d in enc["diagnosis"]] == [1, 2]
        assert enc["diagnosis"][0]["use"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "AD",
            "display": "Admission Diagnosis"}

    def test_pr1_procedure(self, converter: Converter) -> None:
        """PR1[Procedure]: status unknown (no context), code, performedDateTime, category, performer functions."""
        b = _fixture(converter, "ig-adt-rows")
        proc = _of(b, "Procedure")[0]
        assert proc["status"] == "unknown"
        assert proc["code"]["coding"][0]["code"] == "0DTJ4ZZ"
        assert proc["performedDateTime"] == "2026-11-20T11:30:00+01:00"
        assert proc["category"]["coding"][0]["code"] == "S"
        assert [p["function"]["coding"][0]["code"] for p in proc["performer"]] == ["88189002", "304292004"]
        assert proc["identifier"][0]["value"] == "PROC-4401"
        assert proc["subject"] == _of(b, "Condition")[0]["subject"]


class TestResults:
    def test_nte_per_segment_with_author(self, converter: Converter) -> None:
        """NTE[Observation]: one note per NTE, NTE-5 → note.authorReference (a Practitioner)."""
        text = "\n".join([
            "MSH|^~\\&|LIS|LABO-TEST|WASLA|MS|20261120090000||ORU^R01^ORU_R01|IGT-NTE-1|P|2.5",
            "PID|1||IPP-77^^^LABO-TEST^PI||TEST^Note^^^^^L||19700101|F",
            "OBR|1|CMD-1^LABO-TEST|RES-1^LABO-TEST|718-7^Hemoglobine^LN|||20261120080000||||||||||||||20261120083000||LAB|F",
            "OBX|1|NM|718-7^Hemoglobine^LN||11.2|g/dL^g/dL^UCUM|12-16|L|||F|||20261120080000||||||BRAS^Bras^L|OBS-9^LABO-TEST",
            "NTE|1|L|Premier commentaire||INPE900^BIOLOGISTE^Amal",
            "NTE|2|L|Second commentaire",
        ])
        b = _bundle(converter, text, "oru_r01")
        obs = _of(b, "Observation")[0]
        assert [n["text"] for n in obs["note"]] == ["Premier commentaire", "Second commentaire"]
        author = {e["fullUrl"]: e["resource"] for e in b["entry"]}[obs["note"][0]["authorReference"]["reference"]]
        assert author["resourceType"] == "Practitioner"
        assert "authorReference" not in obs["note"][1]
        assert obs["bodySite"]["coding"][0]["code"] == "BRAS"                            # OBX-20
        ident = obs["identifier"][0]                                                     # OBX-21, type FILL
        assert ident["value"] == "OBS-9"
        assert ident["type"]["coding"][0]["code"] == "FILL"
