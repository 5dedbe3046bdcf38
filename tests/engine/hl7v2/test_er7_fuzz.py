"""Fuzzing the ER7 reader: any bytes decode, and parse either gives a Message every accessor can
walk, or a ParseError with a code and a place. Nothing else may escape (it would reach a sender as
a dropped connection, or a worker as a crash)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.errors import ParseError
from engine.hl7v2.er7 import decode, parse

_DELIMS = st.sampled_from(["|^~\\&", "|^~\\&#", "#$%!@", "|", "|^", "|^~", "||||", "^|~\\&", "\r\r\r\r"])
_CHUNK = st.one_of(
    st.sampled_from(["|", "^", "~", "\\", "&", "\r", "\n", "\r\n", "\\F\\", "\\X0D\\", "\\H\\", "\\.br\\",
                     "MSH", "PID", "OBX", "PV1", "EVN", "BHS", "FHS", "ADT^A01^ADT_A01", "ORU^R01", "2.5",
                     "UNICODE UTF-8", "8859/1", "ASCII", "é", "\x00", "\x0b", "\x1c"]),
    st.text(max_size=12),
)


@st.composite
def er7_like(draw: st.DrawFn) -> bytes:
    """Messages that look like HL7 v2 closely enough to reach deep into the parser, or plain bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    head = "MSH" + draw(_DELIMS) + "".join(draw(st.lists(_CHUNK, max_size=30)))
    body = "".join(draw(st.lists(_CHUNK, max_size=80)))
    text = head + body
    codec = draw(st.sampled_from(["utf-8", "latin-1", "utf-16-le"]))
    return text.encode(codec, "replace")


def _walk(raw: bytes) -> None:
    text = decode(raw)
    assert isinstance(text, str) and "\x00" not in text  # NUL never reaches a field (nor a FHIR string)
    try:
        msg = parse(text)
    except ParseError as exc:
        assert exc.code and str(exc)  # an HL7 error code and a sentence for the ACK
        return
    for accessor in ("control_id", "message_type", "version", "sending_facility", "sending_application"):
        assert isinstance(getattr(msg, accessor), str)
    for seg in msg.segments:
        for n in range(0, len(seg) + 2):
            for field in seg.repetitions(n) + seg.valued(n):
                _ = field.text, field.components()
                for c in range(1, field.components() + 2):
                    assert isinstance(field.component(c, 1), str)
                    assert isinstance(field.component(c, 2), str)
    try:
        msg.tree  # noqa: B018 - group placement by the message structure must not crash either
    except ParseError as exc:
        assert exc.code


@settings(max_examples=1500, deadline=None)
@given(raw=er7_like())
def test_any_bytes_parse_or_fail_with_a_parse_error(raw: bytes) -> None:
    _walk(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64), override=st.sampled_from([None, "auto", "utf-8", "latin-1", "cp1252"]))
@example(raw=b"DUPR\x8dE", override="cp1252")  # found by this test: 0x8D has no character in cp1252
def test_decode_never_fails_with_a_known_override(raw: bytes, override: str | None) -> None:
    """A channel's declared charset that a byte does not fit gives U+FFFD there, not a failed intake."""
    text = decode(raw, override)
    assert isinstance(text, str)
    if override == "cp1252" and raw == b"DUPR\x8dE":
        assert text == "DUPR\ufffdE"
