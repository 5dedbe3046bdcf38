"""`wasla nomenclature export`: the same truth as FHIR terminology resources, valid R4."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.support import ROOT, TOOLS, WASLA


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    result = subprocess.run([WASLA, "nomenclature", "export", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return out


def _load(folder: Path, name: str) -> dict:  # type: ignore[type-arg]
    return orjson.loads((folder / name).read_bytes())


def test_iso_subsets_are_value_sets_not_a_redefined_iso(exported: Path) -> None:
    regions = _load(exported, "ValueSet-ma-regions.json")
    include = regions["compose"]["include"][0]
    assert include["system"] == "urn:iso:std:iso:3166:-2" and len(include["concept"]) == 12
    assert not list(exported.glob("CodeSystem-ma-regions*"))


def test_identifier_systems_become_naming_systems(exported: Path) -> None:
    cin = _load(exported, "NamingSystem-ns-cin.json")
    assert cin["kind"] == "identifier" and cin["jurisdiction"][0]["coding"][0]["code"] == "MA"
    assert cin["uniqueId"] == [{"type": "uri", "value": "https://fhir.wasla.ma/sid/ma/cin", "preferred": True}]
    nir = _load(exported, "NamingSystem-ns-ins-nir.json")
    assert nir["uniqueId"][0] == {"type": "oid", "value": "1.2.250.1.213.1.4.8", "preferred": True}


def test_local_map_is_a_concept_map_with_unmatched_rows(exported: Path) -> None:
    cm = _load(exported, "ConceptMap-local-labo-al-amal.json")
    by_target = {g["target"]: g for g in cm["group"]}
    gly = next(e for e in by_target["http://loinc.org"]["element"] if e["code"] == "GLY")
    assert gly["target"] == [{"code": "14771-0", "display": "Fasting glucose [Moles/volume] in Serum or Plasma",
                              "equivalence": "equivalent"}]
    bilan = next(e for g in cm["group"] for e in g["element"] if e["code"] == "BILAN")
    assert bilan["target"] == [{"equivalence": "unmatched"}]


@pytest.mark.skipif(not (TOOLS / "fhir-validate").exists(), reason="../shared/tools is absent")
def test_every_exported_resource_is_valid_r4(exported: Path) -> None:
    count = len(list(exported.glob("*.json")))
    check = subprocess.run([str(TOOLS / "fhir-validate"), str(exported)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and f"{count} valid, 0 invalid" in check.stdout, check.stdout
