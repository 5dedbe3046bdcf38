"""Fuzzing the CSV reader: any file gives Rows and RowErrors (with a line number and a reason),
never an exception: one bad row must not stop a file, and a bad file must not stop the channel."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.csvfile import Layout, Row, RowError, rows

_CELL = st.one_of(st.text(max_size=10), st.sampled_from(['"', '""', '"a;b"', "\n", "\r", "\r\n", "\x00", ";", ",",
                                                         "|", "\t", "é", "\ufeff", "€"]))
_LAYOUT = st.builds(Layout, delimiter=st.sampled_from(["auto", ";", ",", "|", "\t"]),
                    quote=st.sampled_from(['"', "'"]), header=st.booleans(),
                    columns=st.sampled_from([(), ("a",), ("a", "b", "c")]),
                    encoding=st.sampled_from(["auto", "utf-8", "cp1252", "latin-1"]))


@st.composite
def files(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    lines = draw(st.lists(st.lists(_CELL, max_size=6), max_size=12))
    sep = draw(st.sampled_from([";", ",", "|", "\t"]))
    text = "\n".join(sep.join(cells) for cells in lines)
    return text.encode(draw(st.sampled_from(["utf-8", "cp1252", "utf-8-sig"])), "replace")


def test_a_header_naming_a_column_twice_refuses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes(b"ipp;nom;ipp\n1;A;2\n")
    assert list(rows(path, Layout())) == [RowError(1, "header names column 'ipp' more than once",
                                                   ["ipp", "nom", "ipp"])]


def test_a_carriage_return_inside_a_field_is_a_row_error_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes(b"ipp;nom\n1;A\rB\n2;C\n")
    got = list(rows(path, Layout()))
    assert isinstance(got[0], RowError) and got[0].line == 2 and got[0].reason.startswith("not CSV")
    assert got[1:] == [Row(3, {"ipp": "2", "nom": "C"}, ["2", "C"])]


@settings(max_examples=800, deadline=None)
@given(data=files(), layout=_LAYOUT)
def test_any_file_gives_rows_or_row_errors(data: bytes, layout: Layout) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drop.csv"
        path.write_bytes(data)
        got = list(rows(path, layout))
    for item in got:
        assert isinstance(item, Row | RowError)
        assert item.line >= 1
        if isinstance(item, RowError):
            assert item.reason
        else:  # every named column has its value (unnamed trailing columns share the key "")
            assert len(item.raw) >= len(item.values) >= len([k for k in item.values if k])
