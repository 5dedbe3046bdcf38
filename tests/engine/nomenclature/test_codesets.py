"""Code sets: the columns a set's `_meta.yaml` names as equivalents must be in its codes.csv (issue 25)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.nomenclature.codesets import load_codeset
from tests.support import ROOT

PNI = ROOT / "nomenclatures/ma-pni-vaccins"


def test_the_pni_set_names_its_equivalents() -> None:
    cs = load_codeset(PNI, "https://fhir.wasla.ma")
    assert cs.url == "https://fhir.wasla.ma/CodeSystem/ma-pni-vaccin"
    assert cs.meta["equivalents"] == {"cvx": "http://hl7.org/fhir/sid/cvx", "atc": "http://www.whocc.no/atc"}
    penta = cs.lookup("penta")
    assert penta is not None and (penta.properties["cvx"], penta.properties["atc"]) == ("102", "J07CA11")


def test_an_equivalent_column_the_csv_lacks_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ma-pni-vaccins"
    shutil.copytree(PNI, folder)
    meta = folder / "_meta.yaml"
    meta.write_text(meta.read_text(encoding="utf-8").replace("  atc: ", "  snomed: "), encoding="utf-8")
    with pytest.raises(ConfigError, match="equivalents name column.*snomed.*codes.csv does not have"):
        load_codeset(folder, "https://fhir.wasla.ma")
