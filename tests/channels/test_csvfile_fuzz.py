"""Fuzzing the CSV reader: any file gives Rows and RowErrors (with a line number and a reason),
never an exception: one bad row must not stop a file, and a bad file must not stop the channel."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from channels.csvfile import Layout, Limits, Row, RowError, Start, rows

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


# -- resuming and bounds: what exactly-once and bounded memory rest on ---------------------------------
_SMALL = Limits(max_columns=8, max_row_bytes=64)


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Files made to grow fields and rows: long cells, unclosed quotes, no line ends, many separators."""
    parts = draw(st.lists(st.one_of(
        st.sampled_from([b'"', b'""', b";", b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xc3"]),
        st.binary(max_size=40),
        st.builds(lambda c, n: c * n, st.sampled_from([b"a", b";", b'"', b"\n"]), st.integers(0, 400))),
        max_size=30))
    return b"a;b;c\n" + b"".join(parts)


def _read(data: bytes, **kw: object) -> list[Row | RowError]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drop.csv"
        path.write_bytes(data)
        return list(rows(path, Layout(), limits=_SMALL, **kw))  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(data=hostile())
def test_no_row_is_larger_than_the_row_limit(data: bytes) -> None:
    """Whatever the bytes, a Row holds at most max_row_bytes of cells: nothing accumulates without bound."""
    for item in _read(data):
        assert sum(len(c) for c in item.raw) <= _SMALL.max_row_bytes
        assert len(item.raw) <= max(_SMALL.max_row_bytes, _SMALL.max_columns)


@settings(max_examples=300, deadline=None)
@given(data=hostile(), pick=st.integers(0, 1000))
@example(data=b'a;b;c\n"\r\n\xff' + b"\n" * 63, pick=0)  # found: a too-long row's bad line reported again after it
def test_resuming_after_any_row_reads_the_same_rows_after_it(data: bytes, pick: int) -> None:
    """Reading on from a row's end offset and next line gives exactly the rows a full read gives after it:
    a file resumed after a crash gets no row twice and loses none."""
    full = _read(data, encoding="utf-8")
    if not full:
        return
    i = pick % len(full)
    rest = _read(data, encoding="utf-8", start=Start(full[i].end, full[i].next_line))
    assert [(r.line, r.raw, r.end) for r in rest] == [(r.line, r.raw, r.end) for r in full[i + 1:]]


@settings(max_examples=300, deadline=None)
@given(data=hostile(), cut=st.integers(0, 2000))
def test_reading_to_an_end_offset_stops_there(data: bytes, cut: int) -> None:
    """With `end` (the size a file had when claimed) nothing after it is read."""
    end = min(cut, len(data))
    for item in _read(data, encoding="utf-8", end=end):
        assert item.end <= end


def test_a_million_columns_are_counted_in_linear_time(tmp_path: Path) -> None:
    """The header check is linear: a header of a million names is refused with the reason, not hung on."""
    path = tmp_path / "wide.csv"
    path.write_bytes(";".join(f"c{i % 10}" for i in range(1_000_000)).encode() + b"\n1;2\n")
    got = list(rows(path, Layout(), limits=Limits(max_columns=2_000_000, max_row_bytes=64 << 20)))
    assert [(r.line, r.reason) for r in got] == [(1, "header names column 'c0' more than once")]
    got = list(rows(path, Layout(), limits=Limits(max_row_bytes=64 << 20)))
    assert [(r.line, r.reason) for r in got] == [(1, "header has 1000000 columns, more than max_columns (1000)")]
