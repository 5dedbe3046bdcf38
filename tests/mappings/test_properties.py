"""Property test: for generated ADT and ORU messages, conversion is deterministic and raises only
declared conversion errors (MappingError; ParseError for what cannot be read)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import MappingError, ParseError
from engine.hl7v2 import parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW

# field text: printable, accents and Arabic, the separators and escapes v2 senders really send
_TOKENS = [*"AZaz09 .-/,:<>éèçءب^&~\\", "\\T\\", "\\F\\", "\\.br\\", "\\X41\\", '""']
_TEXT = st.lists(st.sampled_from(_TOKENS), max_size=12).map("".join)
_ID = st.from_regex(r"\A[A-Z0-9][A-Z0-9-]{0,9}\Z")
_VALID_DATE = st.from_regex(r"\A(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])([01]\d[0-5]\d([0-5]\d)?)?\Z")
_DATE = st.one_of(st.just(""), _VALID_DATE, _VALID_DATE, _VALID_DATE, _TEXT)
_CLASS = st.one_of(st.sampled_from(["I", "O", "E", "P", "R", "B", "N", ""]), st.just("Q"))
_CODE = st.one_of(st.sampled_from(["", "F", "M", "P", "C", "X", "N", "NM", "SN", "ST", "CWE", "TX", "ED"]), _TEXT)


@st.composite
def adt(draw: st.DrawFn) -> str:
    trigger = draw(st.sampled_from(["A01", "A02", "A03", "A04", "A08", "A11", "A28", "A31", "A40"]))
    segs = [f"MSH|^~\\&|HIS|{draw(_TEXT)}|W|W|{draw(_DATE)}||ADT^{trigger}|{draw(_ID)}|P|2.5",
            f"PID|1||{draw(_ID)}^^^{draw(_TEXT)}^{draw(_CODE)}||{draw(_TEXT)}^{draw(_TEXT)}||{draw(_DATE)}|"
            f"{draw(_CODE)}|||{draw(_TEXT)}^^{draw(_TEXT)}||{draw(_TEXT)}^{draw(_CODE)}^{draw(_CODE)}"]
    for _ in range(draw(st.integers(0, 2))):
        segs.append(draw(st.sampled_from([
            f"NK1|1|{draw(_TEXT)}|{draw(_CODE)}", f"AL1|1|{draw(_CODE)}|{draw(_TEXT)}|{draw(_CODE)}",
            f"DG1|1||{draw(_TEXT)}^{draw(_TEXT)}^{draw(_CODE)}", f"IN1|1|{draw(_TEXT)}|{draw(_TEXT)}|{draw(_TEXT)}",
            f"MRG|{draw(_TEXT)}", f"ZBE|{draw(_TEXT)}"])))
    segs.append(f"PV1|1|{draw(_CLASS)}|{draw(_TEXT)}^{draw(_TEXT)}|||||{draw(_TEXT)}^{draw(_TEXT)}"
                + "|" * 11 + draw(_TEXT) + "|" * 25 + f"{draw(_DATE)}|{draw(_DATE)}")
    return "\r".join(segs)


@st.composite
def oru(draw: st.DrawFn) -> str:
    segs = [f"MSH|^~\\&|LIS|{draw(_TEXT)}|W|W|{draw(_DATE)}||ORU^R01|{draw(_ID)}|P|2.5.1",
            f"PID|1||{draw(_ID)}^^^{draw(_TEXT)}||{draw(_TEXT)}"]
    for g in range(draw(st.integers(1, 3))):
        segs.append(f"OBR|{g}|{draw(_TEXT)}|{draw(_TEXT)}|{draw(_TEXT)}^{draw(_TEXT)}^{draw(_CODE)}|||{draw(_DATE)}"
                    + "|" * 15 + draw(_DATE) + "|||" + draw(_CODE))
        for i in range(draw(st.integers(0, 3))):
            segs.append(f"OBX|{i}|{draw(_CODE)}|{draw(_TEXT)}^{draw(_TEXT)}^LN|{draw(_TEXT)}|{draw(_TEXT)}|"
                        f"{draw(_TEXT)}|{draw(_TEXT)}|{draw(_CODE)}|||{draw(_CODE)}|||{draw(_DATE)}")
            if draw(st.booleans()):
                segs.append(draw(st.sampled_from([f"NTE|1||{draw(_TEXT)}", f"ZLB|{draw(_TEXT)}"])))
        if draw(st.booleans()):
            segs.append(f"SPM|1|{draw(_TEXT)}||{draw(_TEXT)}^^HL70487")
    return "\r".join(segs)


def _check(converter: Converter, mapping: str, text: str) -> None:
    try:
        msg = parse(text)
    except ParseError:
        return
    try:
        first = converter.convert(mapping, msg, NOW)
    except MappingError as exc:
        assert "Traceback" not in str(exc)
        return
    again = converter.convert(mapping, parse(text), NOW)
    assert first.bundle == again.bundle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=adt())
def test_adt_deterministic_and_only_declared_errors(converter: Converter, text: str) -> None:
    _check(converter, "adt", text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=oru())
def test_oru_deterministic_and_only_declared_errors(converter: Converter, text: str) -> None:
    _check(converter, "oru_r01", text)
