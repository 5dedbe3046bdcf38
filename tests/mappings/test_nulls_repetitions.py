"""HL7 `""` (delete), repetitions, CWE display/version, and unmapped HL7 table codes as channel policy (issue 22)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.errors import MappingError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW
from tests.support import ROOT

FIXTURES = ROOT / "mappings"


def _convert(converter: Converter, name: str, lines: list[str],
             policy: dict[str, str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    conversion = converter.convert(name, parse(decode("\r".join(lines).encode())), NOW, policy)
    return orjson.loads(conversion.bundle), conversion.warnings


def _resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


MSH = "MSH|^~\\&|HIS|CHU-IBN-SINA|WASLA|MS|20261103101500||ADT^A01^ADT_A01|MSG-T-01|P|2.5|||AL|NE||UNICODE UTF-8"
PV1 = "PV1|1|I|CARDIO^101^A^CHU-IBN-SINA||||||||||||||||V2026-0001^^^CHU-IBN-SINA^VN"


def test_explicit_null_is_left_out_never_written(converter: Converter) -> None:
    """`""` in a field (PID-8), a component (PID-5.2, XAD.2) and a repetition (PID-13[1], PID-5[2])."""
    pid = ('PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^""^^^Mme^^L~""||19850214|""|||12 Rue^""^Salé^^11000^MA^H'
           '||""~0537000000^PRN^PH')
    bundle, _ = _convert(converter, "adt", [MSH, pid, PV1])
    texts = _strings(bundle)
    assert '""' not in texts and "" not in texts
    patient = _resources(bundle, "Patient")[0]
    assert "gender" not in patient
    assert patient["name"] == [{"use": "official", "family": "ZZTEST", "prefix": ["Mme"]}]
    assert patient["address"][0]["line"] == ["12 Rue"]
    assert [t["value"] for t in patient["telecom"]] == ["0537000000"]


def test_explicit_null_in_a_subcomponent_and_a_vocab_field(converter: Converter) -> None:
    pid = 'PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^Amina||19850214|F||||||||""'
    pv1 = 'PV1|1|""|CARDIO^101^A^CHU-IBN-SINA||||||||||||||||V2026-0001^^^""&""&ISO^VN'
    bundle, warnings = _convert(converter, "adt", [MSH, pid, pv1])
    assert '""' not in _strings(bundle)
    assert "maritalStatus" not in _resources(bundle, "Patient")[0]
    assert not [w for w in warnings if w["code"] == "CODE_UNMAPPED"]  # `""` is no code, so nothing unmapped


def test_obx5_repetitions_are_joined(converter: Converter) -> None:
    raw = (FIXTURES / "oru_r01/fixtures/obx5-repetitions.hl7").read_bytes()
    conversion = converter.convert("oru_r01", parse(decode(raw)), NOW)
    obs = _resources(orjson.loads(conversion.bundle), "Observation")[0]
    assert obs["valueString"] == "Ligne un\nLigne deux"
    assert not [w for w in conversion.warnings if w["code"] == "REPETITIONS_NOT_MAPPED"]


def test_repeated_performing_organizations_each_an_element(converter: Converter) -> None:
    """OBX-23 → performer[] (0..*): every repetition, not the first only."""
    raw = (FIXTURES / "oru_r01/fixtures/obx5-repetitions.hl7").read_bytes().decode()
    raw = raw.replace("||||||F|||20261120073000", "||||||F|||20261120073000" + "|" * 9 + "LABO A~LABO B")
    bundle = orjson.loads(converter.convert("oru_r01", parse(raw), NOW).bundle)
    names = sorted(o["name"] for o in _resources(bundle, "Organization"))
    assert names == ["LABO A", "LABO B"]
    assert len(_resources(bundle, "Observation")[0]["performer"]) == 2


def test_cwe_display_and_version_kept_on_a_vocab_mapped_field(converter: Converter) -> None:
    pid = "PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^Amina||19850214|F||||||||M^Mariée^HL70002^^^^2.5.1"
    bundle, _ = _convert(converter, "adt", [MSH, pid, PV1])
    marital = _resources(bundle, "Patient")[0]["maritalStatus"]
    assert marital["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}
    assert marital["coding"][1] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0002", "version": "2.5.1",
                                    "code": "M", "display": "Mariée"}


def test_cwe_text_kept_when_no_display_says_it(converter: Converter) -> None:
    pid = "PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^Amina||19850214|F||||||||M^Mariée"
    bundle, _ = _convert(converter, "adt", [MSH, pid, PV1])
    assert _resources(bundle, "Patient")[0]["maritalStatus"]["text"] == "Mariée"


def test_cwe_without_coding_system_gets_no_invented_system(converter: Converter) -> None:
    al1 = "AL1|1|DA|ASP^Aspirine"
    bundle, _ = _convert(converter, "adt", [MSH, "PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^Amina", PV1, al1])
    code = _resources(bundle, "AllergyIntolerance")[0]["code"]
    assert code == {"coding": [{"code": "ASP", "display": "Aspirine"}]}
    assert "CodeSystem/local" not in orjson.dumps(bundle).decode()


UNMAPPED = [MSH, "PID|1||IPP1^^^CHU-IBN-SINA^PI||ZZTEST^Amina||19850214|X||||||||Q^Pacsée",
            "PV1|1|IP|CARDIO^101^A^CHU-IBN-SINA||||||||||||||||V2026-0001^^^CHU-IBN-SINA^VN",
            "AL1|1|XX|ASP^Aspirine"]


@pytest.mark.parametrize("policy", [None, {"unmapped_codes": "pass"}, {"unmapped_codes": "park"}])
def test_unmapped_table_codes_pass_by_default(converter: Converter, policy: dict[str, str] | None) -> None:
    bundle, warnings = _convert(converter, "adt", UNMAPPED, policy)
    patient = _resources(bundle, "Patient")[0]
    encounter = _resources(bundle, "Encounter")[0]
    assert "gender" not in patient                                   # a code target: left out
    assert patient["maritalStatus"] == {"coding": [{"code": "Q", "display": "Pacsée"}], "text": "Pacsée"}
    assert encounter["class"] == {"code": "IP"}                        # a Coding: the code as sent, no system
    assert encounter["status"] == "in-progress"
    assert "category" not in _resources(bundle, "AllergyIntolerance")[0]
    unmapped = {(w["field"], w["detail"]) for w in warnings if w["code"] == "CODE_UNMAPPED"}
    assert unmapped >= {("PID-8", "not in v2-0001.administrative-gender"), ("PID-16", "not in v2-0002.marital-status"),
                        ("PV1-2", "not in v2-0004.encounter-class"), ("AL1-2", "not in v2-0127.allergy-category")}
    assert all("Pacs" not in str(w) and w.get("detail") != "IP" for w in warnings)  # paths and tables, no values


def test_unmapped_table_code_rejects_with_reject_policy(converter: Converter) -> None:
    with pytest.raises(MappingError, match="code not in map v2-0001.administrative-gender"):
        _convert(converter, "adt", UNMAPPED, {"unmapped_codes": "reject"})
