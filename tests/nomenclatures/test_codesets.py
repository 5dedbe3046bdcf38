"""Shipped code sets: regions and provinces as the decree lists them, chapters, metadata and licences."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.nomenclature import Registry, load_registry
from tests.support import ROOT, WASLA

DECREE_COUNTS = {"MA-01": 8, "MA-02": 8, "MA-03": 9, "MA-04": 7, "MA-05": 5, "MA-06": 9, "MA-07": 8, "MA-08": 5,
                 "MA-09": 6, "MA-10": 4, "MA-11": 4, "MA-12": 2}


def test_twelve_regions_round_trip(registry: Registry) -> None:
    regions = registry.codeset("ma-regions")
    assert len(regions) == 12
    for concept in regions.concepts.values():
        assert regions.lookup(concept.code) is concept
        assert regions.lookup(concept.code.lower()) is concept
        assert concept.properties["region_number"] == concept.code[3:]
    assert regions.lookup("MA-06").display == "Casablanca-Settat"


def test_75_prefectures_and_provinces_per_the_decree(registry: Registry) -> None:
    provinces = registry.codeset("ma-provinces")
    assert len(provinces) == 75
    assert Counter(c.properties["type"] for c in provinces.concepts.values()) == {"province": 62, "prefecture": 13}
    assert Counter(c.properties["region"] for c in provinces.concepts.values()) == DECREE_COUNTS
    for concept in provinces.concepts.values():
        assert provinces.lookup(concept.code) is concept


def test_the_iso_codes_errors_are_corrected(registry: Registry) -> None:
    """iso-codes puts Nouaceur under 04 and Chtouka-Aït Baha under 06; the decree says 06 and 09."""
    provinces = registry.codeset("ma-provinces")
    assert provinces.lookup("MA-NOU").properties["region"] == "MA-06"
    assert provinces.lookup("MA-CHT").properties["region"] == "MA-09"
    names = [c.display for c in provinces.concepts.values()] + \
        [c.display for c in registry.codeset("ma-regions").concepts.values()]
    assert not [n for n in names if "(EH" in n]


def test_icd10_chapters_cover_a_to_z_in_order(registry: Registry) -> None:
    chapters = list(registry.codeset("icd10-chapters").concepts.values())
    assert len(chapters) == 22 and chapters[0].properties["first"] == "A00"
    assert all(c.display == f"{c.properties['first']}–{c.properties['last']}" for c in chapters)


def test_every_folder_states_source_and_licence(registry: Registry) -> None:
    for folder in (ROOT / "nomenclatures").iterdir():
        if folder.is_dir():
            text = (folder / "_meta.yaml").read_text(encoding="utf-8")
            assert "source:" in text and "licence:" in text, folder.name


def test_no_tariffs_and_no_full_cim10_shipped(registry: Registry) -> None:
    """The research note's licence table: no TNR values, no CIM-10/ICD-10 content, no SNOMED CT code set."""
    shipped = " ".join(p.read_text(encoding="utf-8", errors="replace").lower()
                       for p in (ROOT / "nomenclatures").rglob("*.csv"))
    assert not [cs for cs in registry.codesets.values() if "snomed" in cs.url]
    assert len(list((ROOT / "nomenclatures").rglob("*cim10*"))) == 0
    assert "unit_value_mad" not in shipped and "tnr" not in shipped
    assert set(registry.codeset("icd10-chapters").concepts["I"].properties) == {"first", "last"}  # no titles


def test_a_bad_reference_names_the_file(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "nomenclatures", tmp_path / "n")
    f = tmp_path / "n/ma-provinces/codes.csv"
    f.write_text(f.read_text(encoding="utf-8").replace("MA-CAS,Casablanca,prefecture,MA-06",
                                                       "MA-CAS,Casablanca,prefecture,MA-66"), encoding="utf-8")
    with pytest.raises(ConfigError, match="region of MA-CAS is not a code of ma-regions") as info:
        load_registry(tmp_path / "n", "https://x")
    assert info.value.file.endswith("ma-provinces/codes.csv")


def test_a_bad_row_names_file_and_line(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "nomenclatures", tmp_path / "n")
    f = tmp_path / "n/ma-regions/codes.csv"
    f.write_text(f.read_text(encoding="utf-8") + "MA-13,Nowhere\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected 3 columns") as info:
        load_registry(tmp_path / "n", "https://x")
    assert info.value.line == 14


def _wasla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "nomenclature", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_lookup_and_validate() -> None:
    found = _wasla("lookup", "ma-provinces", "ma-nou")
    assert found.returncode == 0 and found.stdout.strip() == \
        "urn:iso:std:iso:3166:-2|MA-NOU  Nouaceur  type=province  region=MA-06"
    missing = _wasla("lookup", "ma-regions", "MA-99")
    assert missing.returncode == 1 and "MA-99 is not a code of ma-regions" in missing.stderr
    assert _wasla("validate-id", "inpe", "123456789").stdout.startswith("ok: inpe")
    bad = _wasla("validate-id", "inpe", "1234")
    assert bad.returncode == 1 and bad.stdout.startswith("invalid: inpe") and "1234" not in bad.stdout
    listing = _wasla("list")
    assert listing.returncode == 0 and "ma-provinces" in listing.stdout and "id:cin" in listing.stdout
