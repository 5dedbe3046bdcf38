"""The vxu mapping against the IG rows it implements, one condition per test (issue 25).

IG: github.com/HL7/v2-to-fhir 8c9b414, mappings/segments/HL7 Segment - FHIR R4_ RXA[Immunization] - RXA.csv
(sort orders 17, 20, 21, 22), ORC[Immunization] - ORC.csv (sort order 9), mappings/datatypes/HL7 Data Type -
FHIR R4_ CWE[Organization] - Sheet1.csv, mappings/codesystems/HL7 Concept Map_ CompletionStatus - Sheet1.csv.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import ConfigErrors, MappingError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

MSH = "MSH|^~\\&|SIPNI|CS-TEST^^L|WASLA|DRS|20261120093000||VXU^V04^VXU_V04|T-1|P|2.5.1"
PID = "PID|1||IPP-1^^^CS-TEST^PI||Test^Enfant||20250101|F"
ORC = "ORC|RE||PNI-1^CS-TEST||||||20261120090000"


def _rxa(**fields: str) -> str:
    values = {1: "0", 2: "1", 3: "20261120091000", 5: "19^BCG^CVX", **{int(k[1:]): v for k, v in fields.items()}}
    return "RXA|" + "|".join(values.get(i, "") for i in range(1, max(values) + 1))


def _immunization(converter: Converter, *segments: str) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = "\r".join([MSH, PID, *segments]).encode() + b"\r"
    bundle = orjson.loads(converter.convert("vxu", parse(decode(raw)), NOW).bundle)
    (imm,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Immunization"]
    return bundle, imm


@pytest.mark.parametrize(("rxa20", "status"), [("CP", "completed"), ("PA", "completed"), ("RE", "not-done"),
                                               ("NA", "not-done")])
def test_rxa20_completion_status(converter: Converter, rxa20: str, status: str) -> None:
    """RXA.csv 20 (first row): CompletionStatus, all four rows of the concept map."""
    _, imm = _immunization(converter, ORC, _rxa(f20=rxa20))
    assert imm["status"] == status


def test_rxa20_not_valued_is_completed(converter: Converter) -> None:
    """RXA.csv 20 (second row): IF NOT VALUED AND RXA-21 NOT EQUALS D → "completed"."""
    _, imm = _immunization(converter, ORC, _rxa(f21="A"))
    assert imm["status"] == "completed"


def test_rxa21_delete_is_entered_in_error(converter: Converter) -> None:
    """RXA.csv 21: IF RXA-21 EQUALS D → "entered-in-error", whatever RXA-20 says."""
    _, imm = _immunization(converter, ORC, _rxa(f20="CP", f21="D"))
    assert imm["status"] == "entered-in-error"


def test_rxa22_recorded_for_an_added_record_else_orc9(converter: Converter) -> None:
    """RXA.csv 22 (IF RXA-21 EQUALS A) → recorded; ORC.csv 9 → recorded otherwise."""
    _, added = _immunization(converter, ORC, _rxa(f21="A", f22="20261120100000"))
    assert added["recorded"] == "2026-11-20T10:00:00+01:00"
    _, updated = _immunization(converter, ORC, _rxa(f21="U", f22="20261120100000"))
    assert updated["recorded"] == "2026-11-20T09:00:00+01:00"


def test_rxa17_manufacturer_cwe_organization(converter: Converter) -> None:
    """IG CWE[Organization]: CWE.1 → identifier.value, CWE.3 → identifier.system (MVX), CWE.2 → name."""
    bundle, imm = _immunization(converter, ORC, _rxa(f17="PMC^sanofi pasteur^MVX"))
    (org,) = [e["resource"] for e in bundle["entry"] if e["fullUrl"] == imm["manufacturer"]["reference"]]
    assert org["identifier"] == [{"system": "http://hl7.org/fhir/sid/mvx", "value": "PMC"}]
    assert org["name"] == "sanofi pasteur"


def test_rxa20_unknown_code_fails_the_message(converter: Converter) -> None:
    """Immunization.status is 1..1 with no "unknown" value: an RXA-20 code outside table 0322 leaves it empty,
    and the last gate fails the message rather than guess completed or not-done."""
    with pytest.raises(MappingError, match="Immunization.status is required"):
        _immunization(converter, ORC, _rxa(f20="XX"))


# No IG row: the national PNI set beside the sender's codes (nomenclatures/ma-pni-vaccins, `codeset` option).
PNI = "https://fhir.wasla.ma/CodeSystem/ma-pni-vaccin"


def test_a_pni_code_alone_gets_its_cvx_and_atc(converter: Converter) -> None:
    """RXA-5 `VPI^…^PNI` (no CVX from the sender): the PNI coding, then CVX 10 and ATC J07BF03 from its row."""
    _, imm = _immunization(converter, ORC, _rxa(f5="vpi^Polio injectable^PNI", f20="CP"))
    assert imm["vaccineCode"]["coding"] == [
        {"system": PNI, "code": "VPI", "display": "Polio injectable"},
        {"system": "http://hl7.org/fhir/sid/cvx", "code": "10", "display": "IPV"},
        {"system": "http://www.whocc.no/atc", "code": "J07BF03",
         "display": "poliomyelitis, trivalent, inactivated, whole virus"},   # codes.csv row VPI
    ]


def test_a_cvx_code_alone_gets_no_pni_code(converter: Converter) -> None:
    """A CVX code does not say which PNI dose it was (HB0 is the birth dose): no national code guessed."""
    _, imm = _immunization(converter, ORC, _rxa(f5="08^Hep B, adolescent or pediatric^CVX", f20="CP"))
    assert [c["system"] for c in imm["vaccineCode"]["coding"]] == ["http://hl7.org/fhir/sid/cvx"]


def test_an_unknown_pni_code_is_kept_and_reported(converter: Converter) -> None:
    raw = "\r".join([MSH, PID, ORC, _rxa(f5="XYZ^Inconnu^PNI", f20="CP")]).encode() + b"\r"
    result = converter.convert("vxu", parse(decode(raw)), NOW)
    imm = next(e["resource"] for e in orjson.loads(result.bundle)["entry"]
               if e["resource"]["resourceType"] == "Immunization")
    assert [c["code"] for c in imm["vaccineCode"]["coding"]] == ["XYZ"]
    assert any(w["code"] == "CODE_UNMAPPED" and w["field"] == "RXA-5" and "ma-pni-vaccins" in w["detail"]
               for w in result.warnings)


@pytest.mark.parametrize("name", ["ma-pni-nope", "local-labo-al-amal"])   # absent; a local code map, no code set
def test_an_unknown_code_set_is_refused_at_load(tmp_path: Path, name: str) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    f = tmp_path / "mappings/segments/rxa_immunization.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("codeset: ma-pni-vaccins", f"codeset: {name}"),
                 encoding="utf-8")
    converter = Converter(tmp_path / "mappings", ROOT / "config/schema", ROOT / "nomenclatures/hl7v2-fhir",
                          base="https://fhir.wasla.ma", timezone="Africa/Casablanca")
    with pytest.raises(ConfigErrors, match=f"rxa_immunization.yaml:.*no code set '{name}'"):
        converter.spec("vxu")


def test_person_observation_is_about_the_patient(converter: Converter) -> None:
    """VXU_V04 11.1 and 11.3: PERSON_OBSERVATION.OBX → Observation[1] with subject the Patient (no partOf: it is
    about the person, not a dose), its NTE a note (NTE[ServiceRequest] row NTE-3 → note.text)."""
    msh = MSH.replace("|2.5.1", "|2.8")
    raw = "\r".join([msh, PID, "OBX|1|CWE|64994-7^Vaccine funding program eligibility^LN|1|V02^VFC eligible^HL70064"
                     "||||||F|||20261120", "NTE|1||Éligibilité vérifiée au centre", ORC,
                     _rxa(f20="CP")]).encode() + b"\r"
    result = converter.convert("vxu", parse(decode(raw)), NOW)
    bundle = orjson.loads(result.bundle)
    (obs,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    patient = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert obs["subject"] == {"reference": patient} and "partOf" not in obs
    assert obs["code"]["coding"][0]["code"] == "64994-7"
    assert obs["note"] == [{"text": "Éligibilité vérifiée au centre"}]
    assert not [w for w in result.warnings if w["code"] == "SEGMENT_NOT_MAPPED"]
