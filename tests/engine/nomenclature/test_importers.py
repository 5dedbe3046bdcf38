"""Importers read the publishers' own formats (synthetic files here: no licensed content in the tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.nomenclature import load_registry
from tests.support import WASLA, make_project

LOINC_CSV = (
    '"LOINC_NUM","COMPONENT","PROPERTY","TIME_ASPCT","SYSTEM","SCALE_TYP","METHOD_TYP","CLASS","STATUS",'
    '"LONG_COMMON_NAME"\n'
    '"99991-1","Analyte A","MCnc","Pt","Ser/Plas","Qn","","CHEM","ACTIVE","Analyte A [Mass/volume] in Serum"\n'
    '"99992-9","Analyte, B","SCnc","Pt","Bld","Qn","","HEM","DEPRECATED","Analyte, B [Moles/volume] in Blood"\n')
CLAML = """<?xml version="1.0" encoding="UTF-8"?>
<ClaML version="2.0.0"><Title name="ICD-10" version="2019">test</Title>
<Class code="I" kind="chapter"><Rubric kind="preferred"><Label>Chapter one</Label></Rubric></Class>
<Class code="Z98" kind="category"><Rubric kind="preferred"><Label>Synthetic <Term>category</Term></Label></Rubric>
  <Rubric kind="inclusion"><Label>not this</Label></Rubric></Class>
<Class code="Z98.1" kind="category"><Rubric kind="preferred"><Label>Synthetic subcategory</Label></Rubric></Class>
</ClaML>"""


def _import(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "nomenclature", "import", *args, "--config", str(project / "config")],
                          cwd=project, capture_output=True, text=True, timeout=60)


def test_loinc_table_import(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    src = tmp_path / "Loinc.csv"
    src.write_text(LOINC_CSV, encoding="utf-8")
    result = _import(project, "loinc", str(src), "--version", "2.80")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 codes written to")
    loinc = load_registry(project / "nomenclatures", "https://x").codeset("loinc")
    assert loinc.url == "http://loinc.org" and loinc.version == "2.80"
    b = loinc.lookup("99992-9")
    assert b is not None and b.display == "Analyte, B [Moles/volume] in Blood"
    assert b.properties["status"] == "DEPRECATED"
    assert "loinc.org/license" in loinc.meta["licence"]
    again = _import(project, "loinc", str(src), "--version", "2.81")
    assert again.returncode == 2 and "--replace" in again.stderr
    assert _import(project, "loinc", str(src), "--version", "2.81", "--replace").returncode == 0


def test_icd10_claml_import_takes_categories_only(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    src = tmp_path / "icd10.xml"
    src.write_text(CLAML, encoding="utf-8")
    assert _import(project, "icd10-claml", str(src), "--version", "2019").returncode == 0
    icd = load_registry(project / "nomenclatures", "https://x").codeset("icd10")
    assert {c.code: c.display for c in icd.concepts.values()} == {"Z98": "Synthetic category",
                                                                   "Z98.1": "Synthetic subcategory"}


def test_a_wrong_file_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    src = tmp_path / "other.csv"
    src.write_text("a,b\n1,2\n", encoding="utf-8")
    result = _import(project, "loinc", str(src), "--version", "1")
    assert result.returncode == 2 and "not a LOINC table: no column LOINC_NUM" in result.stderr
    assert "Traceback" not in result.stderr


def test_imported_sets_are_never_committed() -> None:
    from tests.support import ROOT

    ignored = (ROOT / "nomenclatures/.gitignore").read_text(encoding="utf-8").split()
    assert {"/loinc/", "/icd10/", "/ma-gmr/"} <= set(ignored)


def test_gmr_csv_semicolons_and_windows_1252(tmp_path: Path) -> None:
    """A French-locale spreadsheet export: `;`, Windows-1252 accents; synthetic drugs."""
    project = make_project(tmp_path / "p")
    src = tmp_path / "gmr.csv"
    src.write_bytes("CODE;NOM;DCI1;DOSAGE1;UNITE_DOSAGE1;FORME;PRESENTATION;PPV;TAUX_REMBOURSEMENT\n"
                    "6110000000001;ZZ-DOLIPRANE TEST;PARACETAMOL;500;MG;COMPRIMÉ;BOITE DE 16;15.00;70\n"
                    .encode("cp1252"))
    result = _import(project, "gmr", str(src), "--version", "2023-06")
    assert result.returncode == 0, result.stderr
    gmr = load_registry(project / "nomenclatures", "https://fhir.wasla.ma").codeset("ma-gmr")
    drug = gmr.lookup("6110000000001")
    assert drug is not None and drug.display == "ZZ-DOLIPRANE TEST 500 MG COMPRIMÉ"
    assert drug.properties["dci1"] == "PARACETAMOL" and drug.properties["taux_remboursement"] == "70"
    assert gmr.url == "https://fhir.wasla.ma/CodeSystem/ma-gmr"


def test_any_table_by_naming_its_columns(tmp_path: Path) -> None:
    """A `|`-separated export in Windows-1252, the shape of national CIM-10 files; synthetic codes."""
    project = make_project(tmp_path / "p")
    src = tmp_path / "cim.txt"
    src.write_bytes("CODE|AUTRE|LIBELLE\nZ990|x|Maladie synthétique un\nZ991|y|Maladie  synthétique deux\n"
                    .encode("cp1252"))
    result = subprocess.run([WASLA, "nomenclature", "import-table", str(src), "--name", "cim10-test",
                             "--url", "{base}/CodeSystem/cim10-test", "--code-column", "CODE",
                             "--display-column", "LIBELLE", "--version", "2026", "--config", str(project / "config")],
                            cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    cs = load_registry(project / "nomenclatures", "https://fhir.wasla.ma").codeset("cim10-test")
    assert cs.url == "https://fhir.wasla.ma/CodeSystem/cim10-test"
    assert {c.code: c.display for c in cs.concepts.values()} == {"Z990": "Maladie synthétique un",
                                                                  "Z991": "Maladie synthétique deux"}
    wrong = subprocess.run([WASLA, "nomenclature", "import-table", str(src), "--name", "x", "--url", "u",
                            "--code-column", "CODE", "--display-column", "LABEL", "--version", "1",
                            "--config", str(project / "config")], cwd=project, capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2 and "no column LABEL (the file has: CODE, AUTRE, LIBELLE)" in wrong.stderr
