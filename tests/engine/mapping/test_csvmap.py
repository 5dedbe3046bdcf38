"""CSV rows become the HL7 v2 message they stand for, then the same FHIR as that message would give."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from channels.csvfile import Layout, Row, rows
from engine.errors import ConfigErrors
from engine.hl7v2 import parse
from engine.mapping import Converter
from engine.mapping.csvmap import CsvMap, find_csvmap
from tests.engine.mapping.conftest import NOW
from tests.support import ROOT

FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y")
CSV = ROOT / "mappings/csv_lab/fixtures/resultats.csv"


@pytest.fixture(scope="module")
def csvmap() -> CsvMap:
    return find_csvmap(ROOT / "mappings", "csv_lab", ROOT / "config/schema")


def _groups(m: CsvMap) -> list[list[dict[str, str]]]:
    groups: list[list[dict[str, str]]] = []
    for r in rows(CSV, Layout()):
        assert isinstance(r, Row)
        if groups and m.group_key(groups[-1][0]) == m.group_key(r.values):
            groups[-1].append(r.values)
        else:
            groups.append([r.values])
    return groups


def _bundle(converter: Converter, m: CsvMap, group: list[dict[str, str]]) -> dict:  # type: ignore[type-arg]
    er7 = m.to_v2(group, sender="LABO-AL-AMAL", application="CSV", control_id=group[0]["numero_demande"],
                  date_formats=FORMATS)
    return orjson.loads(converter.convert(m.mapping, parse(er7), NOW).bundle)


def _observations(bundle: dict) -> list[dict]:  # type: ignore[type-arg]
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def test_rows_group_into_one_message_per_request(csvmap: CsvMap) -> None:
    assert [len(g) for g in _groups(csvmap)] == [2, 1]


def test_a_csv_result_reads_like_the_same_result_sent_as_oru(converter: Converter, csvmap: CsvMap) -> None:
    """Against the ORU fixture of the same lab (ma-labo-codes-locaux): the glucose Observation's code (local +
    LOINC from the lab's map), value with the precision sent, units, range, time and status are the same."""
    from_csv = _observations(_bundle(converter, csvmap, _groups(csvmap)[0]))[0]
    oru = orjson.loads((ROOT / "mappings/oru_r01/fixtures/ma-labo-codes-locaux.json").read_bytes())
    from_oru = _observations(oru)[0]
    for key in ("code", "valueQuantity", "referenceRange", "effectiveDateTime", "status"):
        assert from_csv[key] == from_oru[key], key


def test_built_bundles_are_valid_and_keep_arabic_names(converter: Converter, csvmap: CsvMap) -> None:
    bundle = _bundle(converter, csvmap, _groups(csvmap)[1])
    Bundle.model_validate(bundle)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["given"] == ["يوسف"] and patient["gender"] == "male"


def test_separators_in_cells_stay_text(converter: Converter, csvmap: CsvMap) -> None:
    group = [dict(_groups(csvmap)[1][0], libelle_analyse="Hb | total ^ sang & ~")]
    obs = _observations(_bundle(converter, csvmap, group))[0]
    assert obs["code"]["coding"][0]["display"] == "Hb | total ^ sang & ~"


@pytest.mark.parametrize(("change", "reason"), [
    ({"resultat": ""}, "column resultat: empty (required)"),
    ({"resultat": "12,3,4"}, "column resultat: expected a number, got 6 characters"),
    ({"date_prelevement": "2026-11-21"}, "column date_prelevement: expected a date as %d/%m/%Y %H:%M or %d/%m/%Y"),
])
def test_row_checks_name_the_column_never_the_value(csvmap: CsvMap, change: dict[str, str], reason: str) -> None:
    row = dict(_groups(csvmap)[0][0], **change)
    assert csvmap.check(row, FORMATS) == reason


def test_a_wrong_column_is_a_file_line_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    f = tmp_path / "mappings/csv_lab/csvmap.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace('"5": resultat', '"5": result'), encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        find_csvmap(tmp_path / "mappings", "csv_lab", ROOT / "config/schema")
    err = info.value.errors[0]
    assert "'result' is not a column" in err.message and err.file.endswith("csvmap.yaml") and err.line


def test_after_segments_follow_the_rows() -> None:
    """`after:` segments are written once, after every row's segments (a DFT's DG1 and IN1 follow its FT1s)."""
    m = find_csvmap(ROOT / "mappings", "csv_billing", ROOT / "config/schema")
    row = {"numero_sejour": "V1", "numero_compte": "A1", "ipp": "P1", "numero_transaction": "T1",
           "type_transaction": "CG", "date_acte": "20/11/2026", "code_acte": "C", "systeme_acte": "NGAP",
           "organisme": "CNSS", "immatriculation": "112233445", "diagnostic": "I10"}
    er7 = m.to_v2([row, {**row, "numero_transaction": "T2"}], sender="CHU", application="CSV", control_id="V1",
                  date_formats=("%d/%m/%Y",))
    assert [s[:3] for s in er7.strip("\r").split("\r")] == ["MSH", "PID", "PV1", "FT1", "FT1", "DG1", "IN1"]
    assert "|CNSS^^^AMO^NIIP|" in er7 and "112233445^^^CNSS^SB" in er7
