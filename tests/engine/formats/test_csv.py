"""CSV input: a journaled group of rows read as the HL7 v2 message its CSV map stands for, converted by the
map's mapping with its create_only resources (issue 24)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest

from engine.config import Config
from engine.formats import Formats, NotConverted
from engine.hl7v2.er7 import parse
from tests.engine.formats.conftest import Remembers

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "mappings" / "csv_lab" / "fixtures" / "resultats.csv"
HEADERS = {"received_at": "2026-12-01T12:00:00+00:00", "message_id": "m-csv", "message_type": "CSV^csv_lab",
           "control_id": "LAB-6001"}


def group(formats: Formats, request: str = "LAB-6001") -> bytes:
    """The rows of one request, journaled as the CSV channel does: the map's columns, UTF-8, one line each."""
    columns = list(formats.csv.csvmap("CSV^csv_lab").columns)
    rows = [r for r in csv.DictReader(io.StringIO(SAMPLE.read_text(encoding="utf-8")), delimiter=";")
            if r["numero_demande"] == request]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return buf.getvalue().encode("utf-8")


class TestRead:
    def test_a_group_reads_as_utf8_whatever_the_file_encoding(self, formats: Formats, config: Config) -> None:
        """The channel's cp1252 override was the file's: the journaled group is UTF-8 and reads with its accents."""
        msg = formats.csv.read(group(formats), config.channel("lab-csv"), HEADERS)
        assert msg.message_type.startswith("ORU^R01") and msg.control_id == "LAB-6001"
        assert msg.sending_facility == "LABO-AL-AMAL"
        assert any("Glycémie à jeun" in f for seg in msg.segments for f in seg.raw_fields())

    def test_without_a_control_id_the_group_key_is_the_control_id(self, formats: Formats, config: Config) -> None:
        """No control id journaled: the group's key stands for MSH-10, as before."""
        msg = formats.csv.read(group(formats), config.channel("lab-csv"), {**HEADERS, "control_id": ""})
        assert msg.control_id == "LAB-6001"


class TestPatientKey:
    def test_none_as_before(self, formats: Formats, config: Config) -> None:
        """CSV groups are journaled without a patient key, as before the formats existed."""
        msg = formats.csv.read(group(formats), config.channel("lab-csv"), HEADERS)
        assert formats.csv.patient_key(config.channel("lab-csv"), msg) is None


class TestConvert:
    def test_the_bundle_is_the_maps_mapping_with_create_only(self, formats: Formats, config: Config) -> None:
        """The group's v2 message through oru_r01, its report and order written create-only, as before."""
        ch, memory = config.channel("lab-csv"), Remembers()
        converted = formats.csv.convert(group(formats), HEADERS, ch, memory)
        csvmap = formats.csv.csvmap("CSV^csv_lab")
        text = csvmap.to_v2(list(csv.DictReader(io.StringIO(group(formats).decode("utf-8")))),
                            sender="LABO-AL-AMAL", application="CSV", control_id="LAB-6001",
                            date_formats=("%d/%m/%Y %H:%M", "%d/%m/%Y"))
        assert formats.converter is not None
        expected = formats.converter.convert(csvmap.mapping, parse(text), _at(), ch.policy(),
                                             requests=dict.fromkeys(csvmap.create_only, "conditional-create"))
        assert converted.bundle == expected.bundle
        assert converted.mapping == "oru_r01" and converted.control_id == "LAB-6001"
        assert b"ifNoneExist" in converted.bundle
        assert memory.written == [("", converted.bundle)]

    def test_an_unknown_map_fails_with_its_reason(self, formats: Formats, config: Config) -> None:
        """A type naming no CSV map: the journal records the configuration error."""
        with pytest.raises(NotConverted) as failed:
            formats.csv.convert(group(formats), {**HEADERS, "message_type": "CSV^nope"}, config.channel("lab-csv"),
                                Remembers())
        assert "no CSV map 'nope'" in failed.value.reason

    def test_a_ragged_row_is_a_malformed_pipeline_message(self, formats: Formats, config: Config) -> None:
        """A row with more cells than the header: failed as a malformed pipeline message, as before."""
        with pytest.raises(NotConverted) as failed:
            formats.csv.convert(b"a,b\n1,2,3\n", HEADERS, config.channel("lab-csv"), Remembers())
        assert failed.value.reason == "malformed pipeline message (ValueError)"


class TestLayout:
    def test_rows_are_shown_as_text(self, formats: Formats, config: Config) -> None:
        """The console shows a group's rows as they were journaled."""
        body = group(formats)
        assert formats.csv.layout(body, config.channel("lab-csv")).text == body.decode("utf-8")
        assert formats.csv.lineage(body, config.channel("lab-csv"), "oru_r01", _at()) is None


def _at() -> datetime:
    return datetime.fromisoformat(HEADERS["received_at"])

