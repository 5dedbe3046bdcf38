"""HL7 v2 input: read with the channel's encoding override wherever it is read, keyed by the channel's
mapping exactly as before the formats existed, converted by that mapping (issue 24)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from engine.config import Config
from engine.errors import ParseError
from engine.formats import Formats, NotConverted, NotMapped
from engine.hl7v2.er7 import NUL_REMOVED, decode, parse
from tests.engine.formats.conftest import Remembers
from tests.support import adt

ROOT = Path(__file__).resolve().parents[3]
ORU = ROOT / "mappings" / "oru_r01" / "fixtures"
HEADERS = {"received_at": "2026-12-01T12:00:00+00:00", "message_id": "m-1", "patient_key": "k-1"}

#: (system, value) of each input's patient key, computed with the code before engine/formats
#: (Converter.patient_key as Intake._patient_key called it).
REFERENCE_KEYS = {
    "empty-control-id.hl7": ("https://fhir.wasla.ma/sid/labo-a/pi", "1234"),
    "ma-labo-3-groupes.hl7": ("https://fhir.wasla.ma/sid/chu-ibn-sina/pi", "IPP778899"),
    "ma-labo-codes-locaux.hl7": ("https://fhir.wasla.ma/sid/chu-ibn-sina/pi", "IPP445566"),
    "obx5-repetitions.hl7": ("https://fhir.wasla.ma/sid/chu-ibn-sina/pi", "IPP778899"),
    "specimen-obx-two-patients.hl7": ("https://fhir.wasla.ma/sid/labo-a/pi", "1234"),
    "two-labs-a.hl7": ("https://fhir.wasla.ma/sid/labo-a/pi", "1234"),
    "two-labs-b.hl7": ("https://fhir.wasla.ma/sid/labo-b/pi", "1234"),
    "units-fr.hl7": ("https://fhir.wasla.ma/sid/chu-test/pi", "IPP900003"),
}


def cp1252_adt(control_id: str = "CP-1") -> bytes:
    """An ADT without MSH-18 whose family name has a cp1252-only letter (Œ, 0x8C; Latin-1 reads a control)."""
    return (b"MSH|^~\\&|LAB|FAC|WASLA|HUB|20261201101500||ADT^A01^ADT_A01|" + control_id.encode()
            + b"|P|2.5\rEVN|A01|20261201101500\rPID|1||4711^^^FAC^MR||" + "CŒUR^ZOÉ".encode("cp1252")
            + b"||19800101|M\rPV1|1|I\r")


class TestRead:
    def test_the_channel_override_decides_the_text(self, formats: Formats, config: Config) -> None:
        """cp1252 bytes on a cp1252 channel read as cp1252; without an override, as MSH-18 and the fallbacks say."""
        raw = cp1252_adt()
        msg = formats.hl7v2.read(raw, config.channel("adt-mllp"), {})
        assert msg.first("PID").field(5).component(1) == "CŒUR"  # type: ignore[union-attr]
        plain = formats.hl7v2.read(raw, config.channel("lab-mllp"), {})
        assert plain.first("PID").field(5).component(1) == "C\x8cUR"  # type: ignore[union-attr]
        assert formats.hl7v2.read(raw, None, {}).first("PID").field(5).component(1) == "C\x8cUR"  # type: ignore[union-attr]

    def test_intake_reads_with_the_override_and_the_flags(self, formats: Formats, config: Config) -> None:
        """What intake reads is what the transform reads, with the decoding flags beside it."""
        msg, flags = formats.hl7v2.read_flagged(cp1252_adt().replace(b"ZO", b"Z\x00O"), config.channel("adt-mllp"))
        assert msg.first("PID").field(5).component(1) == "CŒUR" and flags == (NUL_REMOVED,)  # type: ignore[union-attr]

    def test_bytes_that_do_not_parse_are_a_parse_error(self, formats: Formats, config: Config) -> None:
        """Not HL7 v2: a ParseError, which intake journals as failed."""
        with pytest.raises(ParseError):
            formats.hl7v2.read_flagged(b"hello", config.channel("adt-mllp"))


class TestPatientKey:
    def test_adt_keys_are_as_before(self, formats: Formats, config: Config) -> None:
        """The ADT sample and the same with another identifier: the keys computed before the formats existed."""
        ch = config.channel("adt-mllp")
        assert formats.hl7v2.patient_key(ch, parse(decode(adt()))) == ("https://fhir.wasla.ma/sid/1/mr", "10006579")
        assert formats.hl7v2.patient_key(ch, parse(decode(adt("X1", "P42")))) == ("https://fhir.wasla.ma/sid/1/mr",
                                                                                   "P42")

    @pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
    def test_oru_keys_are_as_before(self, formats: Formats, config: Config, name: str) -> None:
        """Each ORU fixture: the key computed before the formats existed."""
        ch = config.channel("lab-mllp")
        msg = formats.hl7v2.read((ORU / name).read_bytes(), ch, {})
        assert formats.hl7v2.patient_key(ch, msg) == REFERENCE_KEYS[name]

    def test_no_mappings_no_key(self, config: Config) -> None:
        """A reader without mappings finds no key rather than failing."""
        assert Formats(None).hl7v2.patient_key(config.channel("adt-mllp"), parse(decode(adt()))) is None


class TestConvert:
    def test_the_bundle_is_the_mappings_of_the_message_read_with_the_override(self, formats: Formats,
                                                                                config: Config) -> None:
        """The Bundle holds the cp1252 name, equals the mapping's conversion, and is remembered for the patient."""
        ch, memory = config.channel("adt-mllp"), Remembers()
        converted = formats.hl7v2.convert(cp1252_adt(), HEADERS, ch, memory)
        assert "CŒUR" in converted.bundle.decode("utf-8")
        msg = formats.hl7v2.read(cp1252_adt(), ch, {})
        assert formats.converter is not None
        at = datetime.fromisoformat(HEADERS["received_at"])
        expected = formats.converter.convert(ch.mapping, msg, at, ch.policy())
        assert converted.bundle == expected.bundle and converted.warnings == expected.warnings
        assert (converted.mapping, converted.message_type, converted.control_id) == ("adt", "ADT^A01", "CP-1")
        assert converted.sending_facility == "FAC" and converted.received_at == HEADERS["received_at"]
        assert memory.written == [("k-1", converted.bundle)]

    def test_unreadable_bodies_fail_with_the_reason_as_before(self, formats: Formats, config: Config) -> None:
        """Not HL7 v2: the parse error; no receipt time: a malformed pipeline message."""
        ch = config.channel("adt-mllp")
        with pytest.raises(NotConverted) as parse_failed:
            formats.hl7v2.convert(b"hello", HEADERS, ch, Remembers())
        assert parse_failed.value.reason == str(_parse_error(b"hello"))
        with pytest.raises(NotConverted) as no_time:
            formats.hl7v2.convert(cp1252_adt(), {}, ch, Remembers())
        assert no_time.value.reason == "malformed pipeline message (KeyError)"


SIU = (b"MSH|^~\\&|AGENDA|FAC|WASLA|HUB|20261201101500||SIU^S12^SIU_S12|SIU-1|P|2.5\r"
       b"SCH|1\rPID|1||4711^^^FAC^MR||DOE^JOHN\r")


class TestDispatch:
    """The mapping is the one the channel gives the message's type (`ChannelConfig.mapping_for`), issue 25."""

    def test_each_type_goes_to_its_mapping(self, formats: Formats, config: Config) -> None:
        """ADT to adt, ORU to oru_r01 on one channel; each keyed by its own mapping's patient key."""
        ch = replace(config.channel("lab-mllp"), mapping="",
                     mappings=MappingProxyType({"ADT^*": "adt", "ORU^R01": "oru_r01"}))
        oru = (ORU / "two-labs-a.hl7").read_bytes()
        assert formats.hl7v2.convert(adt(), HEADERS, ch, Remembers()).mapping == "adt"
        assert formats.hl7v2.convert(oru, HEADERS, ch, Remembers()).mapping == "oru_r01"
        assert formats.hl7v2.patient_key(ch, formats.hl7v2.read(oru, ch)) == REFERENCE_KEYS["two-labs-a.hl7"]
        assert formats.hl7v2.patient_key(ch, formats.hl7v2.read(SIU, ch)) is None

    def test_a_type_no_mapping_takes_fails_or_passes(self, formats: Formats, config: Config) -> None:
        """unmapped_types reject: NotConverted at MSH-9, as an unaccepted type always failed; pass: NotMapped."""
        ch = replace(config.channel("lab-mllp"), mapping="",
                     mappings=MappingProxyType({"ADT^*": "adt", "ORU^R01": "oru_r01"}))
        with pytest.raises(NotConverted) as failed:
            formats.hl7v2.convert(SIU, HEADERS, ch, Remembers())
        assert not isinstance(failed.value, NotMapped)
        assert failed.value.reason == ("at MSH-9: unsupported message type SIU^S12: no mapping of channel lab-mllp"
                                       " takes it (it maps ADT^*, ORU^R01)")
        with pytest.raises(NotMapped) as passed:
            formats.hl7v2.convert(SIU, HEADERS, replace(ch, unmapped_types="pass"), Remembers())
        assert passed.value.reason == "no mapping for SIU^S12"
        assert passed.value.message.control_id == "SIU-1"

    def test_one_mapping_fails_a_type_it_does_not_accept_as_before(self, formats: Formats, config: Config) -> None:
        """`mapping: oru_r01` and the default reject: the mapping's own refusal, word for word."""
        with pytest.raises(NotConverted) as failed:
            formats.hl7v2.convert(SIU, HEADERS, config.channel("lab-mllp"), Remembers())
        assert failed.value.reason == "at MSH-9: unsupported message type SIU^S12: mapping oru_r01 accepts ORU^R01"


class TestLayout:
    def test_segments_are_shown_as_read_with_the_override(self, formats: Formats, config: Config) -> None:
        """The console's layout reads the channel's override: the name as it was converted."""
        layout = formats.hl7v2.layout(cp1252_adt(), config.channel("adt-mllp"))
        pid = next(s for s in layout.segments if s["name"] == "PID")
        assert {"n": 5, "label": "patient name", "value": "CŒUR^ZOÉ"} in [
            {**f, "label": f["label"].lower()} for f in pid["fields"]]

    def test_text_that_does_not_parse_is_shown_plain(self, formats: Formats, config: Config) -> None:
        """Not HL7 v2: the text, line by line; nothing for an erased body."""
        assert formats.hl7v2.layout(b"a\rb", config.channel("adt-mllp")).text == "a\nb"
        assert formats.hl7v2.layout(b"", None).segments == [] and formats.hl7v2.layout(b"", None).text == ""


def _parse_error(raw: bytes) -> ParseError:
    try:
        parse(decode(raw))
    except ParseError as exc:
        return exc
    raise AssertionError("parsed")


class TestLineage:
    def test_lineage_reads_with_the_override_and_names_at_most_limit_fields(self, formats: Formats,
                                                                             config: Config) -> None:
        """The explanation of the message as converted: rows, and no more unread fields named than asked."""
        at = datetime.fromisoformat(HEADERS["received_at"])
        raw = cp1252_adt().replace(b"PV1|1|I\r", b"PV1|1|I\rZXX|1|unread|also unread\r")
        found = formats.hl7v2.lineage(raw, config.channel("adt-mllp"), "adt", at, 1)
        assert found is not None and found.rows and len(found.not_read) == 1 and found.not_read_total >= 1
        assert formats.hl7v2.lineage(b"hello", config.channel("adt-mllp"), "adt", at) is None
        assert Formats(None).hl7v2.lineage(raw, config.channel("adt-mllp"), "adt", at) is None
