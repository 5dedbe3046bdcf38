"""Every group of an ORU^R01 keeps its own data (IG ORU_R01 message map, rows 4.1.1, 4.1.7.1, 4.2.7.2.1)."""

from __future__ import annotations

import orjson
import pytest

from engine.errors import MappingError
from engine.hl7v2 import parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW

TWO_PATIENTS = "\r".join([
    "MSH|^~\\&|LABX|HOPA|HIS|HOPA|20261201101010+0100||ORU^R01^ORU_R01|M2|P|2.5.1",
    "PID|1||111^^^HOPA^PI||UN^A||19800101|M",
    "ORC|RE|1000|2000",
    "OBR|1|1000|2000|GLU^Glucose^L|||20261201090000|||||||||||||||20261201100000|||F",
    "OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|3.9-6.1|N|||F",
    "PID|1||222^^^HOPA^PI||DEUX^B||19900101|F",
    "ORC|RE|1001|2001",
    "OBR|1|1001|2001|GLU^Glucose^L|||20261201090000|||||||||||||||20261201100000|||F",
    "OBX|1|NM|GLU^Glucose^L||7.1|mmol/L|3.9-6.1|H|||F",
])


def _convert(converter: Converter, text: str) -> tuple[list[dict], list[dict]]:  # type: ignore[type-arg]
    conv = converter.convert("oru_r01", parse(text), NOW)
    return [e for e in orjson.loads(conv.bundle)["entry"]], conv.warnings


def test_every_patient_result_has_its_own_patient(converter: Converter) -> None:
    entries, _ = _convert(converter, TWO_PATIENTS)
    patients = {e["resource"]["identifier"][0]["value"]: e["fullUrl"] for e in entries
                if e["resource"]["resourceType"] == "Patient"}
    assert set(patients) == {"111", "222"}
    by_value = {e["resource"]["valueQuantity"]["value"]: e["resource"]["subject"]["reference"] for e in entries
                if e["resource"]["resourceType"] == "Observation"}
    assert by_value == {5.4: patients["111"], 7.1: patients["222"]}
    reports = [e["resource"]["subject"]["reference"] for e in entries
               if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert sorted(reports) == sorted(patients.values())


def test_the_same_patient_in_two_groups_is_one_patient(converter: Converter) -> None:
    entries, warnings = _convert(converter, TWO_PATIENTS.replace("222^^^HOPA^PI", "111^^^HOPA^PI"))
    assert len([e for e in entries if e["resource"]["resourceType"] == "Patient"]) == 1
    assert not [w for w in warnings if w["code"] == "DUPLICATE_BUSINESS_KEY"]


SPECIMEN_OBX = "\r".join([
    "MSH|^~\\&|LABX|HOPA|HIS|HOPA|20261201101010+0100||ORU^R01^ORU_R01|M3|P|2.5.1",
    "PID|1||111^^^HOPA^PI||UN^A||19800101|M",
    "ORC|RE|1000|2000",
    "OBR|1|1000|2000|GLU^Glucose^L|||20261201090000|||||||||||||||20261201100000|||F",
    "OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|3.9-6.1|N|||F",
    "SPM|1|S1^^^^2000||BLD^Blood^HL70487",
    "OBX|1|NM|TEMP^Specimen temperature^L||4|Cel|||||F",
])


def test_an_obx_after_spm_is_an_observation_of_the_specimen(converter: Converter) -> None:
    """IG ORU_R01 4.2.7.2.1: Observation[3].subject = Patient, Observation[3].focus = Specimen[n]."""
    entries, warnings = _convert(converter, SPECIMEN_OBX)
    specimen = next(e["fullUrl"] for e in entries if e["resource"]["resourceType"] == "Specimen")
    temp = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Observation"
                and e["resource"]["code"]["coding"][0]["code"] == "TEMP")
    assert temp["focus"] == [{"reference": specimen}]
    assert temp["valueQuantity"]["value"] == 4 and temp["subject"]["reference"].startswith("urn:uuid:")
    assert not [w for w in warnings if w["code"] == "SEGMENT_NOT_MAPPED"]


def test_a_second_patient_where_the_structure_holds_one_fails_the_message(converter: Converter) -> None:
    """ORM^O01 holds one PATIENT: a second PID used to be warned (SEGMENT_NOT_MAPPED) while its order was filed
    under the first patient. A result or an order on the wrong patient is worse than none: the message fails,
    naming the segment, never the patient."""
    text = "\r".join([
        "MSH|^~\\&|HIS|HOPA|LAB|HOPA|20261201101010+0100||ORM^O01^ORM_O01|M4|P|2.5.1",
        "PID|1||111^^^HOPA^PI||UN^A||19800101|M",
        "ORC|NW|1000",
        "OBR|1|1000||GLU^Glucose^L",
        "PID|1||222^^^HOPA^PI||DEUX^B||19900101|F",
        "ORC|NW|1001",
        "OBR|1|1001||GLU^Glucose^L",
    ])
    with pytest.raises(MappingError) as exc:
        converter.convert("orders", parse(text), NOW)
    assert exc.value.field == "PID[2]"
    assert "second patient" in exc.value.message
    assert "222" not in exc.value.message and "DEUX" not in exc.value.message


def test_two_patients_for_one_visit_fail_and_an_a40_merges_each_pair(converter: Converter) -> None:
    """ADT^A01 with two PIDs: the Encounter's subject cannot be told (0..1 reference, two patients in sight), so the
    message fails rather than guess. ADT^A40 (ADT_A39: one PATIENT group per merge, even when MSH-9.3 says
    ADT_A40) links each surviving patient to its own MRG only (IG ADT_A39 map: Patient[1].link per group)."""
    a01 = "\r".join(["MSH|^~\\&|HIS|CHU|LIS|LAB|20261201101010||ADT^A01^ADT_A01|C1|P|2.5",
                     "PID|1||P1^^^CHU^PI||AAA^A", "PV1|1|I||||||||||||||||V1^^^CHU^VN", "PID|2||P2^^^CHU^PI||BBB^B"])
    with pytest.raises(MappingError, match="2 patients in sight"):
        converter.convert("adt", parse(a01), NOW)
    a40 = "\r".join(["MSH|^~\\&|HIS|CHU|EHR|CHU|20261201101010||ADT^A40^ADT_A40|C2|P|2.8",
                     "EVN|A40|20261201101010", "PID|1||12345^^^CHU^MR||A^B", "MRG|56789^^^CHU^MR",
                     "PID|1||145^^^CHU^MR||C^D", "MRG|569^^^CHU^MR"])
    bundle = orjson.loads(converter.convert("adt", parse(a40), NOW).bundle)
    patients = {e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"}
    by_value = {p["identifier"][0]["value"]: url for url, p in patients.items()}
    links = {p["identifier"][0]["value"]: sorted(patients[lk["other"]["reference"]]["identifier"][0]["value"]
                                                 for lk in p.get("link", [])) for p in patients.values()}
    assert links == {"12345": ["56789"], "145": ["569"], "56789": ["12345"], "569": ["145"]}
    assert len(by_value) == 4


@pytest.mark.parametrize("version", ["2.5.1", "2.8"])
def test_patient_and_specimen_observations_in_every_version(converter: Converter, version: str) -> None:
    """ORU_R01 4.1.7.1 and 4.2.7.2.1: an OBX after PID is about the patient, an OBX after SPM about the specimen.
    v2.7+ puts them in PATIENT_OBSERVATION and SPECIMEN_OBSERVATION groups; before issue 25's fix a v2.8 message's
    were named SEGMENT_NOT_MAPPED and not converted."""
    segs = [f"MSH|^~\\&|LIS|CHU|EHR|CHU|20260101120000||ORU^R01^ORU_R01|C1|P|{version}",
            "PID|1||123^^^CHU^MR||DOE^JOHN||19800101|M", "OBX|1|NM|29463-7^Body weight^LN||70|kg|||||F",
            "ORC|RE|P1^HIS|F1^LIS", "OBR|1|P1^HIS|F1^LIS|GLU^Glucose^L|||20260101110000",
            "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F", "SPM|1|S1^LIS||BLD^Blood^HL70487",
            "OBX|1|ST|SPEC-Q^Specimen quality^L||Hemolysed||||||F"]
    result = converter.convert("oru_r01", parse("\r".join(segs)), NOW)
    entries = [e for e in orjson.loads(result.bundle)["entry"]]
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in entries if e["resource"]["resourceType"] in
            ("Patient", "Specimen")}
    obs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in entries
           if e["resource"]["resourceType"] == "Observation"}
    assert sorted(obs) == ["29463-7", "GLU", "SPEC-Q"]
    assert obs["29463-7"]["subject"] == {"reference": urls["Patient"]} and "basedOn" not in obs["29463-7"]
    assert obs["SPEC-Q"]["focus"] == [{"reference": urls["Specimen"]}]
    assert not [w for w in result.warnings if w["code"] == "SEGMENT_NOT_MAPPED"]
