"""A sender's local codes get the national coding beside them, from that sender's map only."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from engine.errors import ConfigError
from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from engine.nomenclature import load_registry
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT

LOCAL = (ROOT / "mappings/oru_r01/fixtures/ma-labo-codes-locaux.hl7").read_bytes()
LOINC = "http://loinc.org"
LAB = "https://fhir.wasla.ma/CodeSystem/local/labo-al-amal"


def _codes(converter: Converter, raw: bytes) -> tuple[list[list[tuple[str, str]]], list[dict]]:  # type: ignore[type-arg]
    result = converter.convert("oru_r01", parse(decode(raw)), NOW)
    entries = orjson.loads(result.bundle)["entry"]
    obs = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Observation"]
    return [[(c["system"], c["code"]) for c in o["code"]["coding"]] for o in obs], result.warnings


def test_mapped_codes_keep_the_local_coding_and_gain_loinc(converter: Converter) -> None:
    codes, _ = _codes(converter, LOCAL)
    assert codes[:3] == [[(LAB, "GLY"), (LOINC, "14771-0")], [(LAB, "CREA"), (LOINC, "2160-0")],
                         [(LAB, "HBA1C"), (LOINC, "4548-4")]]


def test_an_unmapped_local_code_is_kept_and_reported(converter: Converter) -> None:
    codes, warnings = _codes(converter, LOCAL)
    assert codes[3] == [(LAB, "VITD-X")]
    assert [w for w in warnings if w["code"] == "LOCAL_CODE_UNMAPPED"] == [
        {"code": "LOCAL_CODE_UNMAPPED", "rule": "OBX-3", "field": "OBX-3", "detail": "local-labo-al-amal: VITD-X",
         "code_map": "local-labo-al-amal", "local_code": "VITD-X"}]


def test_another_sender_has_no_map(converter: Converter) -> None:
    codes, warnings = _codes(converter, LOCAL.replace(b"|LIS|LABO-AL-AMAL|", b"|LIS|LABO-AUTRE|"))
    assert all(len(c) == 1 for c in codes)
    assert not [w for w in warnings if w["code"] == "LOCAL_CODE_UNMAPPED"]


def test_codes_already_national_are_left_alone(converter: Converter) -> None:
    raw = LOCAL.replace(b"|GLY^Glyc\xc3\xa9mie \xc3\xa0 jeun^L|", b"|14771-0^Glucose^LN|")
    codes, _ = _codes(converter, raw)
    assert codes[0] == [(LOINC, "14771-0")]


def test_a_bad_equivalence_names_file_and_line(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "nomenclatures", tmp_path / "n")
    f = tmp_path / "n/local-labo-al-amal/map.csv"
    f.write_text(f.read_text(encoding="utf-8").replace(",equivalent\n", ",same\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="equivalence: expected one of") as info:
        load_registry(tmp_path / "n", "https://x")
    assert info.value.file.endswith("local-labo-al-amal/map.csv") and info.value.line == 2


def test_the_shipped_map_agrees_with_the_loinc_subset() -> None:
    """Every LOINC target of the template map is in loinc-core with the same Long Common Name."""
    reg = load_registry(ROOT / "nomenclatures", "https://fhir.wasla.ma")
    loinc = reg.codeset("loinc-core")
    for codings in reg.local_maps["local-labo-al-amal"].rows.values():
        for c in codings:
            concept = loinc.lookup(c["code"])
            assert concept is not None and concept.display == c["display"], c
