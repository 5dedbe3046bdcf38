"""CSV files as producers write them: encodings, BOM, delimiters, quoted fields, line numbers of bad rows."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from channels.csvfile import Layout, Row, RowError, rows
from tests.support import ROOT

SAMPLE = (ROOT / "mappings/csv_lab/fixtures/resultats.csv").read_text(encoding="utf-8")


DEFAULT = Layout()


def _values(path: Path, layout: Layout = DEFAULT) -> list[dict[str, str] | str]:
    return [r.values if isinstance(r, Row) else f"{r.line}: {r.reason}" for r in rows(path, layout)]


def test_utf8_bom_and_windows_1252_read_the_same(tmp_path: Path) -> None:
    """French accents in all three; the Arabic first name only where the encoding can hold it (UTF-8)."""
    latin = SAMPLE.replace("يوسف", "Youssef")
    (tmp_path / "utf8.csv").write_text(latin, encoding="utf-8")
    (tmp_path / "bom.csv").write_bytes(codecs.BOM_UTF8 + latin.encode("utf-8"))
    (tmp_path / "cp1252.csv").write_bytes(latin.encode("cp1252"))
    results = [_values(tmp_path / f"{n}.csv") for n in ("utf8", "bom", "cp1252")]
    assert results[0] == results[1] == results[2]
    assert results[0][0]["libelle_analyse"] == "Glycémie à jeun"  # type: ignore[index]
    (tmp_path / "arabic.csv").write_text(SAMPLE, encoding="utf-8")
    assert _values(tmp_path / "arabic.csv")[2]["prenom"] == "يوسف"  # type: ignore[index]


def test_declared_encoding_refuses_undecodable_bytes_with_the_line(tmp_path: Path) -> None:
    data = SAMPLE.replace("يوسف", "Youssef") + "LAB-6003;IPP1;ZZ;A;;F;NA;Sodium;140;mmol/l;135-145;21/11/2026 09:00\n"
    path = tmp_path / "bad.csv"
    path.write_bytes(data.encode("cp1252"))
    got = _values(path, Layout(encoding="utf-8"))
    assert got[:3] == ["2: bytes not valid utf-8 at column 54",   # the "é" of Glycémie, in Windows-1252
                       "3: bytes not valid utf-8 at column 53", "4: bytes not valid utf-8 at column 53"]
    assert isinstance(got[3], dict) and got[3]["code_analyse"] == "NA"   # an ASCII row is read


def test_quoted_fields_commas_and_wrong_widths(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('a,b,c\n1,"x, with comma",3\n"multi\nline",2,3\n4,5\n6,7,8\n', encoding="utf-8")
    got = _values(path)
    assert got == [{"a": "1", "b": "x, with comma", "c": "3"}, {"a": "multi\nline", "b": "2", "c": "3"},
                   "5: expected 3 columns, got 2", {"a": "6", "b": "7", "c": "8"}]


def test_positional_columns_without_header(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("1|2\n3|4\n", encoding="utf-8")
    assert _values(path, Layout(header=False, columns=("x", "y"), delimiter="|")) == [{"x": "1", "y": "2"},
                                                                                      {"x": "3", "y": "4"}]


@pytest.mark.parametrize("sep", [";", ",", "\t", "|"])
def test_delimiter_is_detected(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(f"a{sep}b\n1{sep}2\n", encoding="utf-8")
    assert _values(path) == [{"a": "1", "b": "2"}]


def test_errors_carry_the_cells_for_the_reject_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a,b\n1\n", encoding="utf-8")
    (err,) = list(rows(path, Layout()))
    assert isinstance(err, RowError) and err.raw == ["1"] and err.line == 2
