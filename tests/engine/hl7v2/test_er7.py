"""The lazy ER7 parser: separators, escapes, line endings, charsets, and precise errors."""

from __future__ import annotations

import pytest

from engine.errors import ParseError
from engine.hl7v2 import decode, parse
from engine.hl7v2.er7 import ENCODING_MISMATCH, NUL_REMOVED, decode_flagged

MSG = "MSH|^~\\&|APP|FAC|RCV|RFAC|20261103101500||ADT^A01^ADT_A01|C1|P|2.5\rPID|1||A1^^^H^MR~B2^^^N^NNMAR||DOE^JOHN\r"


class TestParse:
    def test_msh_numbering(self) -> None:
        """MSH-1 is the separator, MSH-2 the encoding characters, MSH-9/10/12 where the standard says."""
        m = parse(MSG)
        assert m.msh.field(1).raw == "|" and m.msh.field(2).raw == "^~\\&"
        assert (m.message_type, m.control_id, m.version, m.sending_facility) == ("ADT^A01", "C1", "2.5", "FAC")

    def test_repetitions_and_components(self) -> None:
        """Repetitions split on ~, components on ^, subcomponents on &."""
        pid = parse(MSG).first("PID")
        assert pid is not None
        reps = pid.repetitions(3)
        assert [r.component(1) for r in reps] == ["A1", "B2"] and reps[1].component(5) == "NNMAR"
        assert pid.field(5).component(2) == "JOHN" and pid.field(5).component(9) == ""

    def test_escapes(self) -> None:
        """\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X..\\ and \\.br\\ are undone at read time; unknown ones are kept."""
        m = parse(MSG.replace("DOE^JOHN", "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F\\X41\\G\\.br\\H\\Z1\\"))
        assert m.first("PID").field(5).component(1) == "A|B^C&D~E\\FAG\nH\\Z1\\"

    @pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
    def test_line_endings(self, sep: str) -> None:
        """CR, LF and CRLF between segments all work."""
        assert [s.name for s in parse(MSG.replace("\r", sep)).segments] == ["MSH", "PID"]

    def test_other_delimiters(self) -> None:
        """Any delimiters declared in MSH-1/MSH-2 are honoured."""
        m = parse("MSH#$*@%#APP#FAC#x#y#20260101##ADT$A01#C9#P#2.3\rPID#1##A1$$$H\r")
        assert m.control_id == "C9" and m.first("PID").field(3).component(4) == "H"

    @pytest.mark.parametrize(("text", "code", "field"), [
        ("PID|1", "100", None),
        ("MSH", "101", 2),
        ("MSH|ab|x", "102", 2),
        ("MSH|^~\\&|A\rpi|x", "100", None),
        ("MSH\x00\x01\x02\x00APP\x00FAC", "102", 1),  # control bytes as delimiters (found by the fuzz test)
        ("MSH |^~&|APP", "102", 1),
        ("MSH|^\x01\\&|APP", "102", 2),
    ])
    def test_errors(self, text: str, code: str, field: int | None) -> None:
        """Unreadable input raises ParseError with an HL7 0357 code and the field at fault."""
        with pytest.raises(ParseError) as info:
            parse(text)
        assert info.value.code == code and info.value.field == field


class TestDecode:
    def test_utf8_bom_and_msh18(self) -> None:
        """A UTF-8 BOM is dropped; MSH-18 picks the charset."""
        raw = ("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA|UNICODE UTF-8\rPID|1||Salé\r").encode()
        assert "Salé" in decode(b"\xef\xbb\xbf" + raw)
        latin = raw.replace(b"UNICODE UTF-8", b"8859/1").replace("é".encode(), "é".encode("latin-1"))
        assert "Salé" in decode(latin)

    def test_ascii_that_lies(self) -> None:
        """Bytes that are not ASCII under a declared ASCII charset are read, not rejected."""
        raw = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||Salé\r".encode("latin-1")
        assert "Salé" in decode(raw)


class TestDecodeFlags:
    """What decode could not honour is flagged for the operator; the message is still read."""

    MSG = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5|||||MA|{charset}\rPID|1||{name}\r"

    def test_declared_utf8_that_is_not(self) -> None:
        """MSH-18 UNICODE UTF-8 over Latin-1 bytes: read as before (Latin-1), flagged ENCODING_MISMATCH."""
        raw = self.MSG.format(charset="UNICODE UTF-8", name="Salé").encode("latin-1")
        text, flags = decode_flagged(raw)
        assert "Salé" in text and flags == (ENCODING_MISMATCH,)
        assert decode(raw) == text

    def test_channel_charset_that_does_not_fit(self) -> None:
        """The channel's `encoding: utf-8` over a stray byte: U+FFFD there, flagged."""
        raw = self.MSG.format(charset="", name="Sal\xe9").encode("latin-1")
        text, flags = decode_flagged(raw, "utf-8")
        assert "Sal\ufffd" in text and flags == (ENCODING_MISMATCH,)

    @pytest.mark.parametrize(("charset", "codec"), [("UNICODE UTF-8", "utf-8"), ("8859/1", "latin-1"),
                                                    ("", "utf-8"), ("ASCII", "latin-1"), ("8859/2", "utf-8")])
    def test_no_flag_when_nothing_was_wrong(self, charset: str, codec: str) -> None:
        """A charset that fits, ASCII senders' accents (routine) and an unknown charset read as UTF-8: no flag."""
        raw = self.MSG.format(charset=charset, name="Salé").encode(codec)
        text, flags = decode_flagged(raw)
        assert "Salé" in text and flags == ()

    def test_nul_bytes_are_dropped_and_flagged(self) -> None:
        """NUL is no character a FHIR string may hold: dropped at decode, flagged NUL_REMOVED."""
        raw = self.MSG.format(charset="", name="DU\x00PONT\x00").encode()
        text, flags = decode_flagged(raw)
        assert "\x00" not in text and "DUPONT" in text and flags == (NUL_REMOVED,)
        both = self.MSG.format(charset="UNICODE UTF-8", name="\x00Salé").encode("latin-1")
        assert decode_flagged(both)[1] == (ENCODING_MISMATCH, NUL_REMOVED)

    def test_hex_escape_of_nul_gives_no_nul(self) -> None:
        """\\X00\\ in a field unescapes to nothing, \\X41\\ still to A."""
        msg = parse(self.MSG.format(charset="", name="DU\\X00\\P\\X41\\"))
        assert msg.first("PID").field(3).component(1) == "DUPA"  # type: ignore[union-attr]


class TestErrorLocations:
    def test_a_broken_line_is_named_by_position_not_by_its_first_characters(self) -> None:
        """A line that is not a segment (a wrapped patient name) is reported by its sequence; its first
        characters are data and are not the error's segment id."""
        with pytest.raises(ParseError) as info:
            parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||X\rDUPONT^JEAN^MARIE\r")
        err = info.value
        assert (err.segment, err.sequence, err.code) == (None, 3, "100")
        assert "DUP" not in err.message
